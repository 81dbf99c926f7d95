"""Dagster's fixed cost through the command line users run.

Times, in fresh child processes, importing the definitions (``python -c "import
feedback_pipeline.definitions"``, median of 3) and a one-partition run of all five provider
assets through ``dagster asset materialize -m feedback_pipeline.definitions`` on a persistent
instance in a temporary ``DAGSTER_HOME`` holding the repository's ``dagster.yaml`` (what ``make ui``
and an operator's shell use).

Wall times on a shared machine swing with other processes' I/O (the CLI's SQLite event log
syncs each event to disk), so each child's CPU time (user + system, from ``getrusage``) is
measured too and the ratio is graded on CPU time; both medians are reported.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import common as C


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=C.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cli_one_partition(env: dict[str, str], day: str, workdir: Path) -> dict[str, Any]:
    """Import time of the definitions vs one five-asset, one-partition ``dagster asset materialize``."""
    home = workdir / "cli-dagster-home"
    home.mkdir(parents=True, exist_ok=True)
    # The instance an operator's shell and `make ui` use: the repository's dagster.yaml (its
    # event log storage included).
    shutil.copyfile(C.ROOT / "dagster.yaml", home / "dagster.yaml")
    child = {k: v for k, v in os.environ.items() if not (k.split("_")[0] in {"MINTLIFY", "USERSNAP", "FORMBRICKS", "MAPBOX", "FEEDBACKKIT"} or k.startswith("FEEDBACK_"))}
    child.update(env)
    child.update({"DAGSTER_HOME": str(home), "FEEDBACK_DB": str(workdir / "cli" / "feedback.duckdb"), "PYTHONWARNINGS": "ignore"})
    imports = [_timed([sys.executable, "-c", "import feedback_pipeline.definitions"], child) for _ in range(3)]
    select = ",".join(f"{p}_feedback" for p in C.PROVIDERS)
    dagster = str(Path(sys.executable).with_name("dagster"))
    argv = [dagster, "asset", "materialize", "-m", "feedback_pipeline.definitions", "--select", select, "--partition", day]
    first = _timed(argv, child)  # creates the instance's SQLite files: reported, not graded
    runs = [_timed(argv, child) for _ in range(3)]
    import_s, cli_s = statistics.median(w for w, _ in imports), statistics.median(w for w, _ in runs)
    import_cpu, cli_cpu = statistics.median(c for _, c in imports), statistics.median(c for _, c in runs)
    return {
        "import_seconds": import_s,
        "cli_seconds": cli_s,
        "cli_first_seconds": first[0],
        "wall_ratio": cli_s / import_s,
        "import_cpu_seconds": import_cpu,
        "cli_cpu_seconds": cli_cpu,
        "ratio": cli_cpu / import_cpu,
    }
