"""The sandbox's record store: sorted indexes that stay current after bulk changes."""

from __future__ import annotations

from typing import Any

import pytest

from feedback_pipeline.sandbox.app import Sandbox
from feedback_pipeline.sandbox.core import ProviderStore, SandboxState


def _store(n: int = 20) -> ProviderStore:
    store = ProviderStore("id")
    store.replace_all({"id": f"r{i:02d}", "t": i} for i in range(n))
    return store


def test_refresh_rebuilds_the_indexes_and_derived_values_requests_used():
    store, calls = _store(), {"key": 0, "build": 0}

    def key(record: dict[str, Any]) -> int:
        calls["key"] += 1
        return -record["t"]

    def build() -> dict[str, int]:
        calls["build"] += 1
        return {rid: k for k, rid in store.index("newest", key)}

    assert store.derived("positions", build)["r19"] == -19
    store.records["r00"] = {"id": "r00", "t": 99}
    store._touch()
    store.refresh()
    counted = dict(calls)
    # Requests after the refresh find everything current: nothing is sorted or built again.
    assert store.index("newest", key)[0] == (-99, "r00")
    assert store.derived("positions", build)["r00"] == -99
    assert calls == counted
    assert calls["build"] == 2


def test_refresh_builds_nothing_no_request_asked_for():
    store = _store()
    store.refresh()
    assert store._indexes == {} and store._derived == {}


def test_a_bulk_touch_leaves_every_used_index_current_and_sorted():
    sandbox = Sandbox(SandboxState(days=3, per_day=20))
    emulator = sandbox.emulators["usersnap"]
    store = emulator.store_for(1)
    emulator._index("updated_at")  # what a request for changes ordered by update time builds
    emulator._index("created_at")
    touched = set(sandbox.touch("usersnap", 0.25, seed=3))
    assert touched
    for name in ("updated_at", "created_at"):
        version, entries = store._indexes[name]
        assert version == store.version  # current: the next request sorts nothing
    # The touched records moved to the end of the update-time order (updated "now").
    newest = {rid for _, rid in store._indexes["updated_at"][1][-len(touched):]}
    assert newest == touched


@pytest.mark.parametrize("elapsed", [0.0, 0.3, 0.999, 1.5, 3600.0])
def test_todays_generated_times_never_lie_in_the_future_even_in_the_first_second_of_the_day(elapsed):
    # A record "touched now" must be the newest: within a second of midnight, today's records
    # once got times up to 00:00:01.
    import random
    from datetime import date, datetime, timedelta, timezone

    from feedback_pipeline.sandbox.data import day_times

    day = date(2026, 12, 8)
    now = datetime(2026, 12, 8, tzinfo=timezone.utc) + timedelta(seconds=elapsed)
    times = day_times(random.Random(1), day, 50, now)
    assert len(times) == 50 and all(t <= now for t in times)
