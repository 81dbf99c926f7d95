"""The benchmark's growth curve compares like with like: a year's sizes with each other, and a
longer history (``--days``) with the sizes of the same records per day."""

from __future__ import annotations

import json
from pathlib import Path

from bench import run


def _results(records: int, days: int, per_day: int, changed_seconds: float) -> dict:
    section = {"sync_step_seconds": changed_seconds, "providers": {"mintlify": {"duration_seconds": changed_seconds}}, "publish_seconds": 0.05}
    return {
        "config": {"records": records, "days": days, "per_day": per_day, "repeat": 1, "executor": "in_process"},
        "incremental_no_change": section,
        "incremental_changed": section,
        "backfill": {"peak_rss_mb": 400.0},
    }


def _write(directory: Path, data: dict) -> None:
    cfg = data["config"]
    (directory / run.history_name(cfg["records"], "in_process", cfg["days"])).write_text(json.dumps(data))


def test_history_names_keep_a_year_as_it_was_and_name_other_histories():
    assert run.history_name(200_000, "in_process") == "records-200000.json"
    assert run.history_name(1_000_000, "job", 1825) == "records-1000000-days-1825-job.json"


def test_a_year_is_compared_with_years_and_a_longer_history_with_the_same_daily_volume(tmp_path: Path):
    year_small, year_large, five_years = _results(200_750, 365, 110, 0.2), _results(1_000_100, 365, 548, 0.4), _results(1_003_750, 1825, 110, 0.25)
    for data in (year_small, year_large, five_years):
        _write(tmp_path, data)

    curve = run.growth_curve(tmp_path, five_years, "in_process")
    assert [(p["records"], p["days"]) for p in curve] == [(200_750, 365), (1_003_750, 1825)]

    curve = run.growth_curve(tmp_path, year_large, "in_process")
    assert [(p["records"], p["days"]) for p in curve] == [(200_750, 365), (1_000_100, 365)]
    assert run._stored(curve[-1]) == "1,000,100" and run._stored(run._growth_point(five_years)) == "1,003,750 over 1825 days"
