"""Shared helpers of the benchmark: providers, page sizes, sizes of the data, statistics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from feedback_pipeline.providers import names, specs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

PROVIDERS: tuple[str, ...] = names()
# The maximum page size each API allows (what the connectors ask for); None = one request.
PAGE_SIZES: dict[str, int | None] = {name: spec.page_size for name, spec in specs().items()}
# The providers answering with one array (FeedbackKit): their API has no filter, so a run's cost
# follows their whole history whatever changed, and the targets set them aside.
ONE_ARRAY: frozenset[str] = frozenset(name for name, size in PAGE_SIZES.items() if size is None)
DAYS = 365
SEED = 7
LOOKBACK_DAYS = 7  # the hourly schedule's default range: today and the 7 days before
QUICK_DAYS = 10
QUICK_PER_DAY = 20
# Native field changes merged by ``POST /_control/{provider}/touch`` for the "1% changed" run
# (a provider not listed only gets its update time bumped).
TOUCH_CHANGES: dict[str, dict[str, Any]] = {
    "mintlify": {"status": "dismissed"},
    "usersnap": {"status_type": "done"},
    "formbricks": {"field_label": "Changed by the benchmark"},
    "mapbox": {"status": "out_of_scope"},
    "feedbackkit": {"status": "testflight"},
}
TOUCH_FRACTION = 0.01

# Targets of the issue.
TARGET_BACKFILL_RATIO = 1.25
TARGET_PEAK_MB_AT_1M = 400.0
TARGET_REQUESTS_SLACK = 0.01
TARGET_INCREMENTAL_SECONDS = 2.0
TARGET_SANDBOX_RPS = 20_000.0
# "100,000 records normalized in well under a second": at most 0.75 s for 100,000 records of the
# five providers' mix (equal parts), normalize + rows(), fastest of NORMALIZE_REPEAT repeats.
TARGET_NORMALIZE_SECONDS_PER_100K = 0.75
NORMALIZE_REPEAT = 7


def per_day_for(records: int, days: int = DAYS, providers: int = len(PROVIDERS)) -> int:
    """Records per provider and day so that the total is at least ``records``."""
    return max(1, math.ceil(records / (days * providers)))


def min_requests(records: int, page_size: int | None) -> int:
    """The fewest requests that can return ``records`` records at ``page_size`` per page."""
    if page_size is None:
        return 1
    return max(1, math.ceil(records / page_size))


def median(values: Iterable[float | int | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def median_dict(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Key-wise median of numeric leaves of equally-shaped dicts; other leaves from the first."""
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [r.get(key) for r in runs]
        if isinstance(first, bool) or first is None or isinstance(first, str):
            out[key] = first
        elif isinstance(first, (int, float)):
            out[key] = median(v for v in values if isinstance(v, (int, float)))
        elif isinstance(first, dict):
            out[key] = median_dict([v for v in values if isinstance(v, dict)])
        else:
            out[key] = first
    return out


def mb(value_bytes: float | None) -> float | None:
    return None if value_bytes is None else value_bytes / (1024 * 1024)
