"""One run of the real ``feedback_ingest`` job in this (child) process: ``python -m bench.job_proc``.

Reads a JSON config on stdin::

    {"env": {...}, "first": "YYYY-MM-DD", "last": "YYYY-MM-DD", "result": "/path/out.json",
     "profile": null | "/path/prefix", "instance": "ephemeral" | "sqlite" | "project" | "home",
     "tags": {...}}  # optional: the run's tags besides its range

sets the environment (``EnvVar`` resolves from it at run time), builds the definitions, runs
``execute_in_process`` over the partition range as ONE run, and writes a JSON report to
``result`` (also printed as the last line of stdout): wall time of the run, peak resident memory
(``VmHWM``), CPU time, an RSS time series, per-step timings from the event log and every
materialization's metadata. With ``profile`` the run executes under pyinstrument: the main thread
and each prefetch ("fetch") thread get their own profiler; HTML and text renderings go to
``<profile>-main.*`` / ``<profile>-fetch.*`` and a categorized breakdown into the report.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import sys
import threading
import time
import warnings
from datetime import date
from typing import Any

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


class RssSampler:
    """Samples memory every ``interval`` seconds in a thread: this process's RSS, or with
    ``tree`` the summed PSS of this process and all its descendants (step processes forked from
    a forkserver share pages, so their RSS would be counted twice)."""

    def __init__(self, interval: float = 0.05, *, tree: bool = False):
        import psutil

        self._psutil = psutil
        self._proc = psutil.Process()
        self.tree = tree
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.max_rss: dict[int, int] = {}  # tree mode: per process, the largest RSS seen
        self.child_cpu: dict[int, float] = {}  # tree mode: descendants' CPU seconds, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)

    def measure(self) -> int:
        if not self.tree:
            return self._proc.memory_info().rss
        total = 0
        for proc in [self._proc, *self._proc.children(recursive=True)]:
            try:
                info = proc.memory_full_info()
                cpu = proc.cpu_times()
            except (self._psutil.Error, AttributeError):
                continue
            total += info.pss
            self.max_rss[proc.pid] = max(self.max_rss.get(proc.pid, 0), info.rss)
            if proc.pid != self._proc.pid:
                self.child_cpu[proc.pid] = cpu.user + cpu.system
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.measure()))
            self._stop.wait(self.interval)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), self.measure()))

    def peak_between(self, start: float, end: float) -> int | None:
        values = [rss for t, rss in self.samples if start <= t <= end]
        return max(values) if values else None


class _FetchProfiles:
    """Patches ``feedback_pipeline.sync.threading`` so every prefetch thread runs under its own
    pyinstrument profiler (pyinstrument profiles one thread per profiler)."""

    def __init__(self) -> None:
        self.sessions: list[Any] = []
        self._lock = threading.Lock()

    def install(self) -> None:
        import types

        from pyinstrument import Profiler

        from feedback_pipeline import sync

        collector = self

        class ProfiledThread(threading.Thread):
            def run(self) -> None:  # noqa: D401 - threading API
                profiler = Profiler(interval=0.001, async_mode="disabled")
                profiler.start()
                try:
                    super().run()
                finally:
                    session = profiler.stop()
                    with collector._lock:
                        collector.sessions.append(session)

        shim = types.ModuleType("threading_profiled")
        shim.__dict__.update({k: getattr(threading, k) for k in dir(threading) if not k.startswith("__")})
        shim.Thread = ProfiledThread  # type: ignore[attr-defined]
        sync.threading = shim  # type: ignore[attr-defined]

    def combined(self) -> Any:
        from pyinstrument.session import Session

        sessions = list(self.sessions)
        if not sessions:
            return None
        out = sessions[0]
        for session in sessions[1:]:
            out = Session.combine(out, session)
        return out


def peak_rss_bytes() -> int:
    """This process's peak RSS: ``VmHWM`` (the high-water mark of its own address space, reset by
    exec). ``ru_maxrss`` is not: Linux carries it across fork and exec, so a run process started
    by a parent that once held more (the benchmark after parsing every page of a 1M-record drain)
    reports the parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _metadata_value(value: Any) -> Any:
    raw = getattr(value, "value", value)
    if isinstance(raw, (str, int, float, bool)) or raw is None:
        return raw
    return str(raw)


def _render(session: Any, prefix: str) -> dict[str, str]:
    from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer

    html_path, text_path = prefix + ".html", prefix + ".txt"
    # Session.load(...) after gunzip: the raw session of a 365-partition run is ~200 MB of JSON.
    with gzip.open(prefix + ".pyisession.gz", "wt", encoding="utf-8") as handle:
        json.dump(session.to_json(), handle)
    with open(html_path, "w", encoding="utf-8") as handle:
        handle.write(HTMLRenderer().render(session))
    with open(text_path, "w", encoding="utf-8") as handle:
        handle.write(ConsoleRenderer(unicode=True, color=False, show_all=False, short_mode=False).render(session))
    return {"html": html_path, "text": text_path, "session": prefix + ".pyisession.gz"}


def main() -> int:
    config = json.loads(sys.stdin.read())
    # Only the benchmark's settings: a developer's own provider or pipeline variables stay out.
    for var in list(os.environ):
        if var.split("_")[0] in {"MINTLIFY", "USERSNAP", "FORMBRICKS", "MAPBOX", "FEEDBACKKIT"} or var.startswith("FEEDBACK_"):
            del os.environ[var]
    os.environ.update(config["env"])
    warnings.filterwarnings("ignore")
    t_start = time.monotonic()

    import dagster as dg

    from feedback_pipeline.definitions import build_definitions

    executor = config.get("executor") or "in_process"
    defs = build_definitions(dict(os.environ))
    job = defs.resolve_job_def("feedback_ingest")
    if executor == "job" or config.get("instance") == "sqlite":
        # The job's own executor needs a persistent instance (sqlite files, as dagster dev uses);
        # "sqlite" also runs in process on one, to time Dagster's event writes as `make ui` pays them.
        instance = dg.DagsterInstance.local_temp(tempdir=config["dagster_home"])
    elif config.get("instance") == "project":
        # What `make ui` and an operator's shell run: a DAGSTER_HOME holding the repository's
        # dagster.yaml (its SQLite event log storage: feedback_pipeline/dagster_storage.py).
        import shutil
        from pathlib import Path

        home = Path(config["dagster_home"])
        shutil.copyfile(Path(__file__).resolve().parent.parent / "dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
        instance = dg.DagsterInstance.get()
    elif config.get("instance") == "home":
        instance = dg.DagsterInstance.get()  # $DAGSTER_HOME/dagster.yaml (e.g. PostgreSQL storage)
    else:
        instance = dg.DagsterInstance.ephemeral()
    import_seconds = time.monotonic() - t_start

    sampler = RssSampler(0.1 if executor == "job" else 0.05, tree=executor == "job").start()
    rss_before = sampler._proc.memory_info().rss
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)

    profiler = fetch_profiles = None
    if config.get("profile") and executor == "in_process":
        from pyinstrument import Profiler

        fetch_profiles = _FetchProfiles()
        fetch_profiles.install()
        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()

    wall_start = time.time()
    t0 = time.monotonic()
    tags = {**config.get("tags", {}), RANGE_START_TAG: config["first"], RANGE_END_TAG: config["last"]}
    if executor == "job":
        from .jobdef import feedback_ingest

        result = dg.execute_job(dg.reconstructable(feedback_ingest), instance=instance, tags=tags, run_config=QUIET_RUN_CONFIG, raise_on_error=False)
    else:
        result = job.execute_in_process(tags=tags, instance=instance, run_config=QUIET_RUN_CONFIG, raise_on_error=False)
    wall = time.monotonic() - t0
    wall_end = time.time()
    main_session = profiler.stop() if profiler is not None else None
    sampler.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)

    # Per step: start/end from the event log (timestamps), peak RSS while it ran.
    steps: dict[str, dict[str, Any]] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        step = steps.setdefault(event.step_key, {})
        kind = event.event_type_value
        if kind == "STEP_START":
            step["start"] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            step["end"] = entry.timestamp
            step["status"] = kind
    step_report: dict[str, dict[str, Any]] = {}
    for key, step in steps.items():
        if "start" in step and "end" in step:
            peak = sampler.peak_between(step["start"], step["end"])
            step_report[key] = {
                "seconds": round(step["end"] - step["start"], 4),
                "start_offset": round(step["start"] - wall_start, 4),
                "end_offset": round(step["end"] - wall_start, 4),
                "peak_rss_bytes": peak,
                "status": step.get("status"),
            }

    from feedback_pipeline.assets import metadata_by_provider

    providers = {name: {k: _metadata_value(v) for k, v in meta.items()} for name, meta in metadata_by_provider(result).items()}

    failures = []
    for event in result.get_step_failure_events():
        data = event.event_specific_data
        error = data.error
        message = data.user_failure_data.description if data.user_failure_data else (error.cause.message if error.cause else error.message)
        failures.append(f"{event.step_key}: {message.strip()[:500]}")

    report: dict[str, Any] = {
        "success": result.success,
        "failures": failures,
        "first": config["first"],
        "partitions": (date.fromisoformat(config["last"]) - date.fromisoformat(config["first"])).days + 1,
        "last": config["last"],
        "wall_seconds": wall,
        "wall_start": wall_start,
        "wall_end": wall_end,
        "import_and_build_seconds": import_seconds,
        "executor": executor,
        # VmHWM of this process (peak_rss_bytes). With the job's executor the steps run in forked
        # processes: the peak is then the largest single process (children included) and
        # peak_tree_pss_bytes the largest sampled sum over the process tree.
        "peak_rss_bytes": max([peak_rss_bytes()] + ([children.ru_maxrss * 1024, *sampler.max_rss.values()] if executor == "job" else [])),
        "peak_tree_pss_bytes": max((rss for _, rss in sampler.samples), default=None) if executor == "job" else None,
        "rss_before_run_bytes": rss_before,
        "cpu_user_seconds": usage.ru_utime - cpu_before.ru_utime,
        "cpu_system_seconds": usage.ru_stime - cpu_before.ru_stime,
        "cpu_children_seconds": sum(sampler.child_cpu.values()) if executor == "job" else 0.0,
        "rss_samples": [(round(t - wall_start, 3), rss) for t, rss in sampler.samples[:: max(1, len(sampler.samples) // 400)]],
        "steps": step_report,
        "providers": providers,
    }

    if main_session is not None and fetch_profiles is not None:
        from .profiling import breakdown

        prefix = config["profile"]
        fetch_session = fetch_profiles.combined()
        report["profile"] = {
            "main": {"files": _render(main_session, prefix + "-main"), "breakdown": breakdown(main_session, "main")},
            "fetch": (
                {"files": _render(fetch_session, prefix + "-fetch"), "breakdown": breakdown(fetch_session, "fetch"), "threads": len(fetch_profiles.sessions)}
                if fetch_session is not None
                else None
            ),
        }

    text = json.dumps(report, default=str)
    with open(config["result"], "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text, flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The report is written: skip interpreter teardown (Dagster's instance and thread pools take
    # seconds to wind down and nothing of it is measured).
    os._exit(code)
