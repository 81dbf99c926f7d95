"""Property test: random histories of provider changes, runs and faults keep the invariants.

A hypothesis state machine drives a small sandbox of all five providers (8 days x 25 records, so
Mintlify's and Usersnap's 100-record pages span several pages and FeedbackKit answers with one
snapshot) through random sequences of

* provider mutations through the sandbox's Python API: add (a realistic record of a random day,
  visible now), update (a content field, hypothesis text included), delete, touch (bulk update);
* runs of the engine (``feedback_pipeline.sync.sync`` with a ``Warehouse`` in a temp dir and
  fast retries): backfills of random ranges, hourly-style incremental runs, full refreshes and
  no-change reruns;
* injected faults before a run: 429 with and without ``Retry-After`` (delta-seconds and
  HTTP-date), 5xx, dropped connections, HTML with 200, not JSON, a wrong envelope, each for a few
  requests or as an outage after N requests;
* small commit batches (``COMMIT_ROWS``), built into Arrow every 50 rows in some examples
  (``BUILD_ROWS``), and, in most examples, small pages (40 records, for
  every paged provider), so failures land between committed pages and later runs resume from
  stored cursors.

After every step: no key twice in ``feedback`` (working and published database), every row's
``collected_date`` is the UTC date of its ``collected_at``, the published snapshot equals the
working database, every stored row equals some version of that record the provider served, and
nothing outside the run's provider and range changed (``ingested_at`` included). After a
successful run over R: the provider's rows in R equal the sandbox's current records in R (rows of
records deleted at the provider may stay until a full refresh; FeedbackKit's snapshot drops them
at once; rejects excluded), rows whose content did not change keep their ``ingested_at``, and a
rerun with nothing changed changes nothing.

``make test`` runs a bounded number of examples (under ~90 s). A longer soak run::

    .venv/bin/python -m pytest -p feedback_pipeline_tests.test_properties --timeout=0 \\
        --hypothesis-profile=soak feedback_pipeline_tests/test_properties.py

(``-p`` registers the profiles before hypothesis's pytest plugin loads the one named; with the
line ``PROFILES_FOR_CONFTEST`` at the end of ``conftest.py`` the ``-p`` is not needed.)
``PROPERTY_SOAK_EXAMPLES`` overrides the soak profile's 300 examples (not a ``FEEDBACK_*`` name:
conftest.py clears those).
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

import feedback_pipeline.sync as sync_module
from feedback_pipeline.http import ProviderError, utc_http_date
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.providers import get_spec, provider_from_env, specs
from feedback_pipeline.providers.base import Provider, Window
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.sandbox.server import SandboxServer
from feedback_pipeline.schema import ROW_COLUMNS
from feedback_pipeline.warehouse import Warehouse

from .conftest import FAST_RETRIES, make_sandbox, run_sync, run_sync_published, uvicorn_errors_silenced, work_db

UTC = timezone.utc
PROVIDERS = ("mintlify", "usersnap", "feedbackkit", "formbricks", "mapbox")
DAYS = 8
PER_DAY = 25
# Native field names a mutation may change (never the id or a time: records keep their partition).
CHANGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mintlify": ("status", ("pending", "in_progress", "resolved", "dismissed", "archived")),
    "usersnap": ("status_type", ("open", "in_progress", "done", "waiting_for_customer")),
    "feedbackkit": ("status", ("pending", "approved", "completed", "rejected", "in_review")),
    "formbricks": ("field_type", ("text", "nps", "rating")),
    "mapbox": ("status", ("received", "fixed", "reviewed", "out_of_scope", "escalated")),
}
TEXT_FIELD = {"mintlify": "comment", "usersnap": "email", "feedbackkit": "description", "formbricks": "value_text", "mapbox": "feedback"}
FAULT_KINDS = ("rate_limit", "server_error", "drop", "html_200", "not_json", "bad_envelope")

# -- profiles ---------------------------------------------------------------------------------

_COMMON = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "print_blob": True,
}
settings.register_profile("feedback-properties", max_examples=12, stateful_step_count=12, **_COMMON)
settings.register_profile(
    "soak", max_examples=int(os.environ.get("PROPERTY_SOAK_EXAMPLES", "300")), stateful_step_count=18, **_COMMON
)
PROFILES_FOR_CONFTEST = 'import feedback_pipeline_tests.test_properties  # noqa: F401 (registers the "soak" profile)'


def active_settings() -> settings:
    """The soak profile when it was selected, else the bounded profile of ``make test``."""
    if settings.get_current_profile_name().startswith("soak"):
        return settings.get_profile("soak")
    return settings.get_profile("feedback-properties")


# Examples actually run (reported by the test so the count is visible with -s / -rA).
STATS = {"examples": 0, "checks": 0, "runs": 0, "failed_runs": 0, "resumed_runs": 0, "full_refreshes": 0}


# -- helpers ----------------------------------------------------------------------------------


def make_provider(name: str, env: dict[str, str]) -> Provider:
    return provider_from_env(name, env, policy=FAST_RETRIES)


def served(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as the API serves it (JSON round trip; Mintlify hides its stored time)."""
    data = orjson.loads(orjson.dumps(record))
    if name == "mintlify":
        data.pop("_at", None)
    return data


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def row_tuple(row: dict[str, Any]) -> tuple:
    return tuple(_utc(row[c]) for c in ROW_COLUMNS)


COL = {c: i for i, c in enumerate(ROW_COLUMNS)}


def normalize(provider: Provider, records: list[dict[str, Any]]) -> tuple[list[tuple], list[tuple[str, str]]]:
    """(rows, reject keys) the provider's normalizer makes of ``records`` as served."""
    batch = FeedbackBatch(provider.name, provider.account_id)
    provider.normalize([served(provider.name, r) for r in records], batch)
    rows = [row_tuple(r) for r in batch.rows().to_pylist()]
    rejects = [(r["record_key"], r["reason"]) for r in batch.rejects().to_pylist()]
    return rows, rejects


def read_tables(con: duckdb.DuckDBPyConnection) -> tuple[dict[tuple[str, str, str], tuple], list[tuple], list[tuple]]:
    """({key: row + (ingested_at,)}, duplicate keys, reject identities) of a database."""
    columns = ", ".join(ROW_COLUMNS)
    rows = con.execute(f"SELECT {columns}, ingested_at FROM feedback").fetchall()
    table: dict[tuple[str, str, str], tuple] = {}
    duplicates = []
    for raw in rows:
        row = tuple(_utc(v) for v in raw)
        key = (row[0], row[1], row[2])
        if key in table:
            duplicates.append(key)
        table[key] = row
    rejects = con.execute("SELECT provider, account_id, record_key, reason FROM feedback_rejects").fetchall()
    return table, duplicates, rejects


def open_published(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


# -- the state machine ------------------------------------------------------------------------

DAY_OFFSET = st.integers(0, DAYS + 1)  # days before today; DAYS and DAYS+1 hold no data
PROVIDER = st.sampled_from(PROVIDERS)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", "  spaced  ", "Robert'); DROP TABLE feedback;--", "$1 ? %s :name", "NUL\x00inside", "x" * 30_000, "😕 数据 עברית"]
)
FAULTS = st.lists(
    st.builds(
        Fault,
        kind=st.sampled_from(FAULT_KINDS),
        count=st.sampled_from([1, 2, 3, None, None]),
        after=st.integers(0, 4),
        status=st.sampled_from([500, 502, 503, 504]),
        retry_after=st.sampled_from([None, "0", utc_http_date(datetime(2001, 1, 1, tzinfo=UTC))]),
    ),
    max_size=2,
)
OUTAGES = st.builds(
    lambda kind, after, status: [Fault(kind=kind, count=None, after=after, status=status)],
    kind=st.sampled_from(FAULT_KINDS),
    after=st.integers(0, 6),
    status=st.sampled_from([500, 503]),
)
# No fault, transient faults (retried away), or an outage after N requests (the run fails).
RUN_FAULTS = st.one_of(st.just([]), FAULTS, OUTAGES)
# The connectors' own page sizes (the APIs' maxima), restored after each example.
PAGE_SIZES = {name: spec.page_size for name, spec in specs().items() if spec.page_size is not None}


class PipelineMachine(RuleBasedStateMachine):
    """One history: a fresh sandbox dataset and warehouse per example."""

    server: SandboxServer  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        STATS["examples"] += 1
        sandbox = self.server.sandbox
        state = sandbox.state
        state.clear_faults()
        state.clear_log()
        state.extra.clear()
        sandbox.generate()
        self.sandbox = sandbox
        self.env = self.server.env()
        self.providers = {name: make_provider(name, self.env) for name in PROVIDERS}
        self.tmp = Path(tempfile.mkdtemp(prefix="feedback-props-"))
        self.wh = Warehouse(self.tmp / "feedback.duckdb")
        self.today = datetime.now(UTC).date()
        # Every version of every record ever served: (provider, id) -> {normalized row}.
        self.versions: dict[tuple[str, str], set[tuple]] = {}
        self.reject_versions: set[tuple[str, str, str]] = set()
        self.last_mutation: dict[str, datetime] = {name: datetime.min.replace(tzinfo=UTC) for name in PROVIDERS}
        self.converged: dict[str, Window | None] = {name: None for name in PROVIDERS}
        self.failed: list[tuple[str, Window, bool]] = []
        self._snapshot: Snapshot | None = None
        self.saved_commit_rows = sync_module.COMMIT_ROWS
        self.saved_build_rows = sync_module.BUILD_ROWS
        for name in PROVIDERS:
            self._remember(name, list(self._store(name).records.values()))

    def teardown(self) -> None:
        sync_module.COMMIT_ROWS = self.saved_commit_rows
        sync_module.BUILD_ROWS = self.saved_build_rows
        for name, size in PAGE_SIZES.items():
            setattr(self._module(name), "PAGE_SIZE", size)
        self.server.sandbox.state.clear_faults()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- bookkeeping --------------------------------------------------------------------------

    def _store(self, name: str):
        return self.sandbox.emulators[name].store

    def _remember(self, name: str, records: list[dict[str, Any]]) -> None:
        provider = self.providers[name]
        rows, rejects = normalize(provider, records)
        for row in rows:
            self.versions.setdefault((name, row[COL["feedback_id"]]), set()).add(row)
        for key, reason in rejects:
            self.reject_versions.add((name, key, reason))

    def _mutated(self, name: str, records: list[dict[str, Any]]) -> None:
        self._remember(name, records)
        self.last_mutation[name] = datetime.now(UTC)
        self.converged[name] = None

    def _ids(self, name: str) -> list[str]:
        return sorted(self._store(name).records)

    def _expected(self, name: str, window: Window) -> dict[str, tuple]:
        rows, _ = normalize(self.providers[name], list(self._store(name).records.values()))
        out: dict[str, tuple] = {}
        for row in rows:
            if window.first_day <= row[COL["collected_date"]] <= window.last_day:
                out[row[COL["feedback_id"]]] = row
        return out

    # -- rules: the provider changes ---------------------------------------------------------

    @initialize(
        commit_rows=st.sampled_from([1, 1, 150, 20_000]),
        page_size=st.sampled_from([None, 40, 40]),
        build_rows=st.sampled_from([2_500, 50]),
    )
    def batch_and_page_size(self, commit_rows: int, page_size: int | None, build_rows: int) -> None:
        """Commit after every page or in bigger batches, built into Arrow at the default size or
        every 50 rows; the APIs' maximum page size, or small pages (40) so every provider, not
        only Mintlify and Usersnap, pages and resumes."""
        sync_module.COMMIT_ROWS = commit_rows
        sync_module.BUILD_ROWS = build_rows
        for name, size in PAGE_SIZES.items():
            setattr(self._module(name), "PAGE_SIZE", page_size or size)

    @staticmethod
    def _module(name: str) -> Any:
        return importlib.import_module(get_spec(name).provider.__module__)

    @rule(
        kind=st.sampled_from(["add", "add", "update", "update", "delete", "touch"]),
        name=PROVIDER,
        offset=DAY_OFFSET,
        seed=st.integers(0, 2**32 - 1),
        value=st.integers(0, 4),
        text=TEXT,
        fraction=st.sampled_from([0.02, 0.1, 0.3]),
    )
    def change_at_the_provider(self, kind: str, name: str, offset: int, seed: int, value: int, text: str, fraction: float) -> None:
        """add (a realistic record of a random day, visible now), update, delete or touch."""
        emulator = self.sandbox.emulators[name]
        field, values = CHANGES[name]
        ids = self._ids(name)
        if kind == "add" or not ids:
            now = datetime.now(UTC)
            record = emulator.generate_day(random.Random(seed), self.today - timedelta(days=offset), 1, now)[0]
            # A record that becomes visible now carries an update time of now (where the API has one).
            emulator.touch(record, now)
            self.sandbox.add(name, record)
            self._mutated(name, [record])
        elif kind == "update":
            changes = {field: values[value % len(values)], TEXT_FIELD[name]: text}
            self._mutated(name, [self.sandbox.update(name, ids[seed % len(ids)], changes)])
        elif kind == "delete":
            self.sandbox.delete(name, ids[seed % len(ids)])
            self._mutated(name, [])
        else:
            chosen = self.sandbox.touch(name, fraction, seed % 1000, {field: values[value % len(values)]})
            self._mutated(name, [self._store(name).records[i] for i in chosen])

    # -- rules: runs -------------------------------------------------------------------------

    @rule(name=PROVIDER, offset=DAY_OFFSET, length=st.integers(1, DAYS + 2), full_refresh=st.booleans(), faults=RUN_FAULTS)
    def backfill(self, name: str, offset: int, length: int, full_refresh: bool, faults: list[Fault]) -> None:
        last = self.today - timedelta(days=offset)
        first = last - timedelta(days=length - 1)
        self._run(name, Window.for_days(first, last), full_refresh, faults)

    @rule(name=PROVIDER, lookback=st.integers(0, 3), faults=RUN_FAULTS)
    def hourly_run(self, name: str, lookback: int, faults: list[Fault]) -> None:
        self._run(name, Window.for_days(self.today - timedelta(days=lookback), self.today), False, faults)

    @precondition(lambda self: bool(self.failed))
    @rule(pick=st.integers(0, 10), faults=RUN_FAULTS)
    def rerun_a_failed_run(self, pick: int, faults: list[Fault]) -> None:
        """The operator's next run over the range that failed (it resumes from the cursor)."""
        name, window, full_refresh = self.failed[pick % len(self.failed)]
        self._run(name, window, full_refresh, faults)

    @precondition(lambda self: any(self.converged.values()))
    @rule(pick=st.integers(0, 10))
    def rerun_with_nothing_changed(self, pick: int) -> None:
        """A rerun with nothing changed at the provider changes nothing, ingested_at included."""
        ready = [n for n in PROVIDERS if self.converged[n]]
        name = ready[pick % len(ready)]
        window = self.converged[name]
        before = self._read()
        report, published = run_sync_published(self.providers[name], self.wh, window, full_refresh=False)
        self._snapshot = None
        after = self._read()
        STATS["runs"] += 1
        assert report.counts.changed == 0, (name, window, report.counts)
        assert published is None
        assert after.rows == before.rows, f"{name} {window}: a no-change rerun changed rows"
        assert sorted(after.rejects) == sorted(before.rejects)

    def _run(self, name: str, window: Window, full_refresh: bool, faults: list[Fault]) -> None:
        STATS["runs"] += 1
        STATS["full_refreshes"] += full_refresh
        provider = self.providers[name]
        state = self.sandbox.state
        before = self._read()
        for fault in faults:
            state.add_fault(name, Fault(**vars(fault)))  # a copy: the sandbox consumes counts
        error: ProviderError | None = None
        report = None
        try:
            report = run_sync(provider, self.wh, window, full_refresh=full_refresh)
        except ProviderError as exc:  # anything else is a bug
            error = exc
        finally:
            state.clear_faults(name)
        self._snapshot = None
        after = self._read()
        failed = (name, window, full_refresh)
        if failed in self.failed:
            self.failed.remove(failed)

        # Nothing outside this provider's range changed, ingested_at included.
        def outside(table: dict) -> dict:
            return {
                k: v for k, v in table.items()
                if k[0] != name or not window.first_day <= v[COL["collected_date"]] <= window.last_day
            }

        assert outside(after.rows) == outside(before.rows), f"{name} {window}: rows outside the run's range changed"
        # Rows whose content did not change keep their ingested_at.
        for key, row in after.rows.items():
            old = before.rows.get(key)
            if old is not None and old[:-1] == row[:-1]:
                assert old[-1] == row[-1], f"{key}: unchanged row got a new ingested_at"

        if error is not None:
            STATS["failed_runs"] += 1
            # A failed run names the provider and says the next run resumes.
            assert name in str(error), str(error)
            self.converged[name] = None
            self.failed.append(failed)
            return

        assert report is not None
        STATS["resumed_runs"] += bool(report.resumed)
        resumed_since = min((before.cursors[(name, k)] for k in report.resumed if (name, k) in before.cursors), default=None)
        # A run that resumed a query begun before the provider changed keeps the pages that query
        # had committed as they were then (CONTRACT: it does not fetch them again); a later run
        # catches up. Everything else must equal the provider's current records exactly.
        strict = resumed_since is None or self.last_mutation[name] < resumed_since
        mine = {
            k[2]: v[:-1] for k, v in after.rows.items()
            if k[0] == name and window.first_day <= v[COL["collected_date"]] <= window.last_day
        }
        expected = self._expected(name, window)
        if strict:
            missing = sorted(set(expected) - set(mine))
            assert not missing, f"{name} {window}: records lost: {missing[:5]}"
            stale = [i for i in expected if mine[i] != expected[i]]
            assert not stale, f"{name} {window}: stale rows: {[(mine[i], expected[i]) for i in stale[:2]]}"
            extra = set(mine) - set(expected)
            current = set(self._store(name).records)
            assert not (extra & current), f"{name} {window}: rows the provider does not have in that range: {sorted(extra & current)[:5]}"
            if full_refresh or name == "feedbackkit":
                # A full refresh (and FeedbackKit's complete snapshot) removes deleted records.
                assert not extra, f"{name} {window}: deleted records survived a full read: {sorted(extra)[:5]}"
            self.converged[name] = window
        else:
            self.converged[name] = None
        if name == "feedbackkit":
            # The snapshot serves every record: every current reject is stored.
            _, rejects = normalize(provider, list(self._store(name).records.values()))
            stored = {(key, reason) for p, _, key, reason in after.rejects if p == "feedbackkit"}
            assert set(rejects) <= stored

    # -- invariants after every step -----------------------------------------------------------

    def _read(self) -> "Snapshot":
        """Read (and check) the working and the published database, once per database change."""
        if self._snapshot is not None:
            return self._snapshot
        with work_db(self.wh) as con:
            rows, duplicates, rejects = read_tables(con)
            bad_dates = con.execute(
                "SELECT count(*) FROM feedback WHERE collected_date IS DISTINCT FROM CAST(timezone('UTC', collected_at) AS DATE)"
            ).fetchone()[0]
            reject_dupes = con.execute(
                "SELECT count(*) FROM (SELECT 1 FROM feedback_rejects GROUP BY provider, account_id, record_key, reason HAVING count(*) > 1)"
            ).fetchone()[0]
            cursors = {(p, k): _utc(at) for p, k, at in con.execute("SELECT provider, query_key, started_at FROM pipeline_cursors").fetchall()}
        assert not duplicates, f"duplicate keys: {duplicates[:3]}"
        assert bad_dates == 0, "collected_date is not the UTC date of collected_at"
        assert reject_dupes == 0, "a reject is stored twice"
        for key, row in rows.items():
            assert row[:-1] in self.versions.get((key[0], key[2]), set()), f"{key}: stored row is no version the provider ever served: {row}"
        for provider, _, record_key, reason in rejects:
            assert (provider, record_key, reason) in self.reject_versions, f"reject never served: {record_key} {reason}"
        if self.wh.path.exists():
            # The analysts' snapshot is the working database as of the last commit (published
            # after every step that changed something, failed runs included).
            con = open_published(self.wh.path)
            try:
                published, pub_duplicates, pub_rejects = read_tables(con)
            finally:
                con.close()
            assert not pub_duplicates
            assert published == rows, "the published snapshot differs from the working database"
            assert sorted(pub_rejects) == sorted(rejects)
        self._snapshot = Snapshot(rows, rejects, cursors)
        return self._snapshot

    @invariant()
    def tables_are_consistent(self) -> None:
        STATS["checks"] += 1
        # Runs re-read (and check) both databases; provider changes leave them as they were.
        if self._snapshot is None and self.wh.files.work.exists():
            self._read()


class Snapshot:
    def __init__(self, rows: dict, rejects: list, cursors: dict):
        self.rows, self.rejects, self.cursors = rows, rejects, cursors


@pytest.fixture(scope="module")
def property_sandbox() -> Iterator[SandboxServer]:
    server = make_sandbox(PROVIDERS, days=DAYS, per_day=PER_DAY)
    with uvicorn_errors_silenced():  # injected dropped connections are expected here
        yield server
    server.stop()


def test_random_histories_of_changes_runs_and_faults_keep_every_invariant(property_sandbox: SandboxServer) -> None:
    PipelineMachine.server = property_sandbox
    for key in STATS:
        STATS[key] = 0
    started = time.monotonic()
    run_state_machine_as_test(PipelineMachine, settings=active_settings())
    print(
        f"\nproperty test ({settings.get_current_profile_name()} profile): {STATS['examples']} generated cases, "
        f"{STATS['checks']} invariant checks, {STATS['runs']} runs ({STATS['failed_runs']} failed, {STATS['resumed_runs']} resumed, "
        f"{STATS['full_refreshes']} full refreshes) in {time.monotonic() - started:.0f}s"
    )
    assert STATS["runs"] > 0


def test_the_machine_runs_the_soak_profile_when_it_is_loaded_else_the_bounded_one() -> None:
    current = settings.get_current_profile_name()
    try:
        settings.load_profile("soak")
        assert active_settings() is settings.get_profile("soak")
        settings.load_profile("default")
        assert active_settings() is settings.get_profile("feedback-properties")
    finally:
        settings.load_profile(current)
