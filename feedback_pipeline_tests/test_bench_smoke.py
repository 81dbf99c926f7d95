"""The benchmark cannot rot: ``python -m bench.run --quick --repeat 1`` runs end to end (sandbox
process, raw drain, backfill and incremental runs in child processes, normalization) and writes
JSON with every section. Numbers are not judged here (tiny data); ``make bench`` is the measurement.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from feedback_pipeline.providers import names

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = (
    "config",
    "raw_drain",
    "raw_drain_parse",
    "backfill",
    "incremental_no_change",
    "incremental_changed",
    "normalization",
    "sandbox",
    "targets",
)
PROVIDERS = names()


def run_bench(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` from the repository root; it must succeed."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    proc = run_bench("bench.run", "--quick", "--repeat", "1", "--output", str(output))

    result = json.loads(output.read_text())
    for section in SECTIONS:
        assert section in result, f"section {section} missing"
    assert result["config"]["quick"] is True
    total = result["config"]["records"]

    # The drain saw every record the sandbox generated, the backfill received and stored them all.
    assert result["raw_drain_parse"]["records"] >= 0.98 * total
    backfill = result["backfill"]
    assert backfill["records"] == result["raw_drain_parse"]["records"]
    assert backfill["wall_seconds"] > 0 and backfill["peak_rss_mb"] > 0
    for section in ("raw_drain", "raw_drain_parse", "backfill", "incremental_no_change", "incremental_changed"):
        assert set(result[section]["providers"]) == set(PROVIDERS), section
        assert len(result[section]["runs"]) == 1
    for name in PROVIDERS:
        step = backfill["providers"][name]
        assert step["requests"] >= step["min_requests"] >= 1
        assert result["incremental_no_change"]["providers"][name]["requests"] >= 1
        assert result["normalization"]["providers"][name]["records_per_second"] > 0
    assert result["incremental_no_change"]["asset_seconds"] > 0
    assert sum(result["incremental_changed"]["touched"].values()) > 0
    assert set(result["sandbox"]["records_per_second"]) == set(PROVIDERS)
    names = {t["name"] for t in result["targets"]}
    assert len(names) == 10 and all("pass" in t for t in result["targets"])
    files = result["incremental_changed"]["files"]
    assert files["working_mb"] > 0 and files["snapshot_a_mb"] > 0 and files["json_served_mb"] > 0
    assert result["backfill"]["publishes"] and result["incremental_no_change"]["publishes"] == []

    # The markdown table is printed and saved beside the JSON.
    assert "| measure | value | target | result |" in proc.stdout
    assert output.with_suffix(".md").exists()


def test_commit_stage_benchmark_times_the_commits_normalizing_and_duckdb_alone(tmp_path: Path) -> None:
    output = tmp_path / "commits.json"
    run_bench("bench.commits", "--records", "2000", "--floor", "--json", str(output))
    result = json.loads(output.read_text())
    assert result["records"] >= 2000 and result["commits"] >= len(PROVIDERS)
    assert result["commit_cpu_seconds"] > 0 and result["normalize_cpu_seconds"] > 0
    assert result["stages_cpu_seconds"]["normalize"] > 0 and result["stages_cpu_seconds"]["arrow"] > 0
    stored = sum(p["inserted"] for p in result["providers"].values())
    floors = result["floor_cpu_seconds"]
    assert len(floors) == 3
    for floor in floors.values():
        assert floor["rows"] == stored  # DuckDB alone stored every row the backfill stored
        assert floor["total"] > 0


def test_growth_benchmark_interleaves_touched_hourly_runs_of_both_sizes(tmp_path: Path) -> None:
    output = tmp_path / "growth.json"
    proc = run_bench("bench.growth", "--quick", "--output", str(output))
    result = json.loads(output.read_text())
    assert [(s["records"], s["days"]) for s in result["sizes"]] == [(4000, 20), (20000, 100)]
    for size in result["sizes"]:
        assert len(size["rounds"]) == result["rounds"] == 2
        for point in size["rounds"]:
            assert point["touched"] > 0 and point["rows_updated"] > 0
            assert point["sync_step_seconds"] >= point["paged_plus_publish_seconds"] - point["publish_seconds"] > 0
    low, high = (s["median"]["paged_plus_publish_seconds"] for s in result["sizes"])
    assert result["ratio"] == high / low and isinstance(result["pass"], bool)
    assert "largest / smallest" in proc.stdout


def test_growth_without_feedbackkit_configures_no_account_of_the_one_array_providers() -> None:
    from bench.growth import one_array_settings
    from feedback_pipeline.definitions import provider_accounts
    from feedback_pipeline.sandbox.app import Sandbox
    from feedback_pipeline.sandbox.core import SandboxState

    env = Sandbox(SandboxState(days=1, per_day=1)).env("http://127.0.0.1:9")
    left_out = one_array_settings()
    assert "FEEDBACKKIT_API_KEY" in left_out
    kept = {k: v for k, v in env.items() if k not in left_out}
    assert {a.provider for a in provider_accounts(env)} == set(PROVIDERS)
    assert {a.provider for a in provider_accounts(kept)} == set(PROVIDERS) - {"feedbackkit"}


def test_feedbackkit_benchmark_backfills_then_grades_the_later_of_two_unchanged_hourly_runs(tmp_path: Path) -> None:
    # Through a link (the loopback measure differs only in not asking the sandbox for one).
    output = tmp_path / "feedbackkit.json"
    proc = run_bench("bench.feedbackkit", "--records", "2000", "--repeat", "1", "--link-mbit", "160", "--output", str(output))
    [size] = json.loads(output.read_text())["sizes"]
    [run] = size["runs"]
    assert size["link_mbit"] == 160 and "through a 160 Mbit/s link" in proc.stdout
    assert run["download_seconds"] >= run["body_bytes"] / (160e6 / 8), "the download came through the link"
    backfill = run["backfill"]
    assert backfill["requests"] == 1 and backfill["records"] == size["records"]
    assert backfill["inserted"] + backfill["rejected"] == backfill["records"]
    for hourly in (run["first_hourly"], run["hourly"]):
        # One request for the whole array; only the window's records built; nothing changed.
        assert hourly["requests"] == 1 and 0 < hourly["records"] < backfill["records"]
        assert hourly["inserted"] == hourly["updated"] == hourly["deleted"] == 0
    assert run["hourly_ratio_to_download"] == run["hourly"]["seconds"] / run["download_seconds"]
    assert size["hourly_seconds"] == run["hourly"]["seconds"] and size["first_hourly_seconds"] == run["first_hourly"]["seconds"]
    assert "hourly run <= 1.5x the download" in proc.stdout


def test_memory_benchmark_samples_each_run_process_and_its_children(tmp_path: Path) -> None:
    output = tmp_path / "memory.json"
    proc = run_bench("bench.memory", "--records", "2000", "--output", str(output))
    result = json.loads(output.read_text())
    for run in ("backfill", "no_change", "changed"):
        numbers = result[run]
        assert numbers["run_process_vmhwm_mb"] >= numbers["rss_before_run_mb"] > 0, run
        assert numbers["sync_step_seconds"] > 0 and numbers["sync_step_peak_mb"] > 0, run
        assert numbers["tree_peak_mb"] >= numbers["sync_step_peak_mb"] > 0, run
    # The backfill draws the dashboard in a child process, which the sampler sees beside the run.
    assert result["backfill"]["largest_child_peak_mb"] > 0
    assert "| backfill |" in proc.stdout
