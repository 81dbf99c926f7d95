"""``feedback_resume``: unfinished queries continue by themselves.

Why: a run can stop part-way for reasons that pass (a provider's request budget spent, an outage,
a killed worker). Its committed pages and the cursor after them are in ``pipeline_cursors``; a run
over the same window resumes there. Without this sensor an operator has to notice and relaunch,
and a Mintlify backfill that needs five hours of budget needs five relaunches.

Each evaluation reads the unfinished queries and the budgets' state, and requests one run per
unfinished query over exactly that query's window (same window, same query key, so the run
resumes the stored cursor), when:

* no run that covers the provider is queued or in progress, and
* the provider's request budget (where it has one) has room again.

The run carries ``feedback/account``: it syncs only that account of the provider (another
account's window would otherwise be re-read, which for an API without change queries spends the
budget the resumed query waits for).

A run key made of the cursor's position and the hour keeps a query from being requested twice
for the same progress within an hour, while a stuck query is retried once an hour.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, datetime, timezone

import dagster as dg
from filelock import Timeout

from .budget import RateBudget, least_room
from .warehouse import Warehouse
from .warehouse.model import utc

UTC = timezone.utc
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
REFRESH_PREFIX = "refresh:"
# The account a resumed run syncs (the step syncs only that account of the provider).
ACCOUNT_TAG = "feedback/account"
# How long an evaluation waits for the writer lock: a run holding it is writing, so the sensor
# skips this evaluation rather than wait for the run to end.
LOCK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Unfinished:
    """One row of ``pipeline_cursors``: a query that stopped before its end."""

    provider: str
    account_id: str
    query_key: str
    first_day: date
    last_day: date
    updated_at: datetime

    @property
    def full_refresh(self) -> bool:
        return self.query_key.startswith(REFRESH_PREFIX)


@dataclass(frozen=True)
class ResumeState:
    """What the sensor needs to know, read from the working database in one go.

    ``budget_room`` maps a provider with a request budget to the requests it may still send in
    the current window (the smallest room of its organizations); providers without a budget are
    absent. ``None`` for the whole state means the working database is busy (a run is writing).
    """

    unfinished: Sequence[Unfinished]
    budget_room: Mapping[str, int]


def plan_resumes(
    state: ResumeState,
    *,
    asset_names: Mapping[str, str],
    busy_providers: set[str],
    min_room: int,
    now: datetime,
    full_refresh_tag: str,
    providers_tag: str,
    accounts: Mapping[str, AbstractSet[str]] | None = None,
    also_select: Sequence[dg.AssetKey] = (),
) -> tuple[list[dg.RunRequest], list[str]]:
    """The run requests for ``state``, and a line per unfinished query that waits (and why).
    ``accounts`` (each provider's configured account ids) leaves out the queries of an account
    no longer configured: a run of it would sync nothing, and the sensor would ask again every
    hour. ``also_select``: assets every resume run materializes too (the dashboard, so what a
    resumed run publishes is drawn)."""
    requests: list[dg.RunRequest] = []
    waiting: list[str] = []
    for item in sorted(state.unfinished, key=lambda u: (u.provider, u.first_day, u.account_id, u.query_key)):
        label = f"{item.provider}/{item.account_id} {item.query_key}"
        if item.provider not in asset_names:
            waiting.append(f"{label}: provider no longer defined")
            continue
        if accounts is not None and item.account_id not in accounts.get(item.provider, ()):
            waiting.append(
                f"{label}: account no longer configured (`feedback-pipeline reset {item.provider} --account {item.account_id}` forgets it)"
            )
            continue
        if item.provider in busy_providers:
            waiting.append(f"{label}: a run covering {item.provider} is queued or in progress")
            continue
        room = state.budget_room.get(item.provider)
        if room is not None and room < min_room:
            waiting.append(f"{label}: request budget has {room} request(s) of room, waiting for {min_room}")
            continue
        tags = {
            RANGE_START_TAG: item.first_day.isoformat(),
            RANGE_END_TAG: item.last_day.isoformat(),
            providers_tag: item.provider,
            ACCOUNT_TAG: item.account_id,
            "feedback/resumed_query": item.query_key,
        }
        if item.full_refresh:
            tags[full_refresh_tag] = "true"
        run_key = f"resume:{item.provider}:{item.account_id}:{item.query_key}:{item.updated_at.astimezone(UTC):%Y%m%dT%H%M%S}:{now:%Y%m%d%H}"
        requests.append(dg.RunRequest(run_key=run_key, asset_selection=[dg.AssetKey(asset_names[item.provider]), *also_select], tags=tags))
        busy_providers = busy_providers | {item.provider}  # one resume run per provider at a time
    return requests, waiting


def read_resume_state(db_path: str | os.PathLike[str], budgets: Mapping[str, RateBudget], *, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> ResumeState | None:
    """The unfinished queries and each budget's room, from the working database under the writer
    lock (so never while a run writes: None then). No working database yet: nothing unfinished."""
    warehouse = Warehouse(db_path, lock_timeout=lock_timeout)
    if not warehouse.files.work.exists():
        return ResumeState([], {})
    try:
        # A quick read under the lock: an unfinished erasure's rewrite is left to the next run.
        with warehouse.session(finish_erasure=False) as session, session.cursor() as cursor:
            rows = cursor.query("SELECT provider, account_id, query_key, first_day, last_day, updated_at FROM pipeline_cursors")
            room = {provider: least_room(cursor.con, provider, budget) for provider, budget in budgets.items()}
    except Timeout:
        return None
    return ResumeState([Unfinished(p, a, k, first, last, utc(at)) for p, a, k, first, last, at in rows], room)


IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def busy_providers(instance: dg.DagsterInstance, asset_names: Mapping[str, str], providers_tag: str) -> set[str]:
    """Providers covered by a run that is queued or in progress (by run tag or asset selection)."""
    by_key = {dg.AssetKey(name): provider for provider, name in asset_names.items()}
    busy: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        tagged = run.tags.get(providers_tag)
        if tagged:
            busy.update(p for p in tagged.split(",") if p)
        elif run.asset_selection:
            busy.update(by_key[k] for k in run.asset_selection if k in by_key)
        else:
            busy.update(asset_names)  # a run of the whole job covers every provider
    return busy


def build_resume_sensor(
    *,
    target: dg.UnresolvedAssetJobDefinition,
    asset_names: Mapping[str, str],
    read_state: Callable[[], ResumeState | None],
    min_room: int,
    full_refresh_tag: str,
    providers_tag: str,
    accounts: Mapping[str, AbstractSet[str]] | None = None,
    also_select: Sequence[dg.AssetKey] = (),
    interval_seconds: int = 300,
) -> dg.SensorDefinition:
    """The ``feedback_resume`` sensor (see the module docstring). It ships running: it acts only
    when a query was left unfinished."""

    @dg.sensor(
        name="feedback_resume",
        job=target,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests a run for each query left unfinished (request budget spent, outage, killed run) over exactly "
            "its window, so it resumes from the stored cursor; waits while a run covers the provider or its request "
            "budget has no room."
        ),
    )
    def feedback_resume(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        state = read_state()
        if state is None:
            return dg.SkipReason("the working database is busy (a run is writing); trying again at the next evaluation")
        if not state.unfinished:
            return dg.SkipReason("no unfinished query")
        busy = busy_providers(context.instance, asset_names, providers_tag)
        requests, waiting = plan_resumes(
            state,
            asset_names=asset_names,
            busy_providers=busy,
            min_room=min_room,
            now=datetime.now(UTC),
            full_refresh_tag=full_refresh_tag,
            providers_tag=providers_tag,
            accounts=accounts,
            also_select=also_select,
        )
        if not requests:
            return dg.SkipReason("unfinished queries are waiting: " + "; ".join(waiting))
        for line in waiting:
            context.log.info(f"waiting: {line}")
        return dg.SensorResult(run_requests=requests)

    return feedback_resume
