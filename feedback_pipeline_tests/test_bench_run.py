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
    (directory / run.history_name(cfg["records"], "in_process", cfg["days"], cfg.get("latency_ms"))).write_text(json.dumps(data))


def test_history_names_keep_a_year_as_it_was_and_name_other_histories():
    assert run.history_name(200_000, "in_process") == "records-200000.json"
    assert run.history_name(1_000_000, "job", 1825) == "records-1000000-days-1825-job.json"
    assert run.history_name(20_075, "in_process", latency_ms=150) == "records-20075-latency-150ms.json"


def test_a_latency_mode_run_is_compared_only_with_latency_mode_runs(tmp_path: Path):
    plain_small, plain_large = _results(200_750, 365, 110, 0.2), _results(1_000_100, 365, 548, 0.4)
    late = _results(20_075, 365, 11, 1.3)
    late["config"]["latency_ms"] = 150
    late["backfill"]["peak_rss_mb"] = 286.0
    for data in (plain_small, plain_large, late):
        _write(tmp_path, data)

    assert [p["records"] for p in run.growth_curve(tmp_path, plain_large, "in_process")] == [200_750, 1_000_100]
    assert [p["records"] for p in run.memory_history(tmp_path, 1_000_100, 370.0, "in_process")] == [200_750, 1_000_100]
    assert [p["records"] for p in run.growth_curve(tmp_path, late, "in_process")] == [20_075]
    assert run.memory_history(tmp_path, 20_075, 286.0, "in_process", 150) == [{"records": 20_075, "peak_rss_mb": 286.0}]


def test_a_year_is_compared_with_years_and_a_longer_history_with_the_same_daily_volume(tmp_path: Path):
    year_small, year_large, five_years = _results(200_750, 365, 110, 0.2), _results(1_000_100, 365, 548, 0.4), _results(1_003_750, 1825, 110, 0.25)
    for data in (year_small, year_large, five_years):
        _write(tmp_path, data)

    curve = run.growth_curve(tmp_path, five_years, "in_process")
    assert [(p["records"], p["days"]) for p in curve] == [(200_750, 365), (1_003_750, 1825)]

    curve = run.growth_curve(tmp_path, year_large, "in_process")
    assert [(p["records"], p["days"]) for p in curve] == [(200_750, 365), (1_000_100, 365)]
    assert run._stored(curve[-1]) == "1,000,100" and run._stored(run._growth_point(five_years)) == "1,003,750 over 1825 days"
