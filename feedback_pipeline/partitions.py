"""The one partitioning every provider asset shares: UTC collected date, today included."""

from __future__ import annotations

from datetime import date

import dagster as dg


def feedback_partitions(start_date: date) -> dg.DailyPartitionsDefinition:
    """Daily partitions from ``start_date``; ``end_offset=1`` makes the current (partial) day a
    partition, so hourly runs can fill today."""
    return dg.DailyPartitionsDefinition(start_date=start_date.isoformat(), timezone="UTC", end_offset=1)
