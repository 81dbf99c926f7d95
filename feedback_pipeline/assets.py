"""The five ``<provider>_feedback`` assets, materialized by ONE step.

One ``@multi_asset`` holds the five asset specs (``can_subset``: a run materializes any subset),
so a run over any selection and partition range is one step in one process: every account of the
selected providers syncs concurrently inside it (:mod:`feedback_pipeline.step`), and Dagster's
per-step bookkeeping is paid once per run, not once per provider. ``<provider>_feedback`` covers
every account of its provider: it is materialized when all of them finished, and its metadata
reports each account's counts (``accounts``) and their totals, with its checks' results
(:mod:`feedback_pipeline.checks`).
"""

# No `from __future__ import annotations` here: Dagster checks the `context` annotation at runtime.
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence, Set as AbstractSet
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any, Literal

import dagster as dg

from .budget import STOPPED_BY_BUDGET, STOPPED_TAG, RateBudget
from .checks import check_results, check_specs, unsynced_check_results
from .providers import asset_names, get_spec, names
from .providers.base import Provider, Window
from .resume import ACCOUNT_TAG
from .schema import COLUMN_DESCRIPTIONS, FEEDBACK_COLUMNS
from .settings import FULL_REFRESH_TAG, PROVIDERS_TAG, PUBLISHED_TAG, PipelineResource
from .step import AccountOutcome, AccountRef, StepOutcome, describe, failure, run_providers
from .sync import SyncReport
from .warehouse import PublishResult, Session, Warehouse, WindowStats

UTC = timezone.utc
WRITER_POOL = "feedback_duckdb_writer"
STEP_NAME = "feedback_sync"
# Runs of this schedule are paced (sync.paced_days): Dagster tags them with the schedule's name.
SCHEDULE_TAG = "dagster/schedule_name"
HOURLY_SCHEDULE = "feedback_ingest_hourly"
# The hourly schedule refreshes every asset each hour; two hours without a materialization means
# a tick was missed or failed.
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2))

TABLE_METADATA: dict[str, Any] = {
    "dagster/table_name": "feedback",
    "dagster/column_schema": dg.TableSchema(
        columns=[dg.TableColumn(name, sqltype.replace(" NOT NULL", ""), description=COLUMN_DESCRIPTIONS[name]) for name, sqltype, _ in FEEDBACK_COLUMNS]
    ),
}


def asset_key(provider: str) -> dg.AssetKey:
    return dg.AssetKey(get_spec(provider).asset_name)


def asset_spec(provider: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=asset_key(provider),
        group_name="feedback",
        kinds={"duckdb", "api"},
        description=get_spec(provider).description
        + " Rows land in the `feedback` table (one row per provider, account_id, feedback_id), partitioned by UTC collected date.",
        metadata=TABLE_METADATA,
        tags={"provider": provider},
        freshness_policy=FRESHNESS,
    )


def default_budgets() -> dict[str, RateBudget]:
    """The request budgets the provider specs declare, by provider."""
    return {name: budget for name in names() if (budget := get_spec(name).request_budget) is not None}


@dataclass(frozen=True)
class PublishHook:
    """Work of a later step of the same run that can begin once the provider step has published
    the analysts' snapshot (the dashboard's drawing: ``dashboard/early.py``). ``prepare`` runs
    when the step's first commit changes the warehouse (the run will publish), ``abandon`` when
    the step fails after that."""

    asset_key: dg.AssetKey  # started only in a run that materializes this asset
    resource_keys: frozenset[str]  # what the callables read from ``context.resources``
    start: Callable[[dg.AssetExecutionContext], None]
    prepare: Callable[[dg.AssetExecutionContext], None] | None = None
    abandon: Callable[[dg.AssetExecutionContext], None] | None = None


def build_feedback_assets(
    partitions_def: dg.PartitionsDefinition,
    *,
    accounts: Mapping[str, Sequence[str]] | None = None,
    budgets: Mapping[str, RateBudget] | None = None,
    after_publish: Sequence[PublishHook] = (),
) -> dg.AssetsDefinition:
    """The one step that materializes any subset of the five provider assets (module docstring).

    ``accounts`` maps each provider to the resource keys of its accounts (default: one account,
    the resource named like the provider); ``budgets`` are the request budgets by provider
    (default: the specs' own); ``after_publish`` starts once the step's accounts all succeeded
    and the snapshot is published, before the checks' query, the session's closing checkpoint
    and Dagster's writing of the step's events."""
    account_keys = {name: tuple((accounts or {}).get(name) or (name,)) for name in names()}
    budgets = default_budgets() if budgets is None else dict(budgets)
    hook_keys = {key for hook in after_publish for key in hook.resource_keys}

    @dg.multi_asset(
        name=STEP_NAME,
        specs=[asset_spec(p) for p in names()],
        check_specs=[spec for p in names() for spec in check_specs(asset_key(p))],
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        required_resource_keys={*(k for keys in account_keys.values() for k in keys), "pipeline", *hook_keys},
    )
    def feedback_sync(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetCheckEvaluation | dg.Output]:
        selected = [p for p in names() if asset_key(p) in context.selected_asset_keys]
        # The runs list shows which providers a run covers, however it was launched (job,
        # schedule, UI asset selection, CLI); jobs and schedule set it at creation too.
        context.instance.add_run_tags(context.run_id, {PROVIDERS_TAG: ",".join(selected)})
        pipeline: PipelineResource = context.resources.pipeline
        window = run_window(context, partitions_def, checks_only=not selected)
        full_refresh = str(context.run.tags.get(FULL_REFRESH_TAG, "")).lower() == "true"
        paced = context.run.tags.get(SCHEDULE_TAG) == HOURLY_SCHEDULE

        def account_id(ref: AccountRef) -> str:
            return getattr(context.resources, ref.key).get(get_spec(ref.provider).account) or ""

        def build(ref: AccountRef) -> Provider:
            return get_spec(ref.provider).provider(getattr(context.resources, ref.key), policy=pipeline.retry_policy())

        refs = [AccountRef(p, k) for p in selected for k in account_keys[p]]
        only = context.run.tags.get(ACCOUNT_TAG)
        others: list[AccountRef] = []  # accounts a one-account run leaves alone
        if only:
            others = [r for r in refs if account_id(r) != only]
            refs = [r for r in refs if account_id(r) == only]
            context.log.info(f"{ACCOUNT_TAG}={only}: syncing only that account of {', '.join(selected)}")

        selected_checks = context.selected_asset_check_keys
        # One session (the writer lock and one connection) for the whole step; one publish at its end.
        with Warehouse(pipeline.db_path, lock_timeout=pipeline.lock_timeout_seconds).session() as session:
            session.on_first_change(lambda: run_hooks(context, after_publish, "prepare"))
            outcome = StepOutcome([], None, 0.0)  # a launch of checks only (or of an account no selected provider has)
            try:
                if refs:
                    outcome = run_providers(
                        refs, build, session, window, full_refresh=full_refresh, paced=paced, budgets=budgets,
                        max_wait_seconds=pipeline.http_max_wait_seconds, account_id_of=account_id, logger=context.log,
                        lake=pipeline.lake_settings(), run_id=context.run_id,
                    )
            except BaseException:
                run_hooks(context, after_publish, "abandon")
                raise
            # The snapshot is final: what reads it can start now; after a failure, nothing does.
            run_hooks(context, after_publish, "abandon" if outcome.failed else "start")
            unsynced = unsynced_checks(selected_checks, outcome, session, window)
            behind = accounts_behind(others, session, window, account_id)
            # A one-account run's counts are its account's; the asset's rows are every account's.
            rows_in_window = {p: session.check_stats(p, None, window.first_day, window.last_day).rows_in_window for p in {r.provider for r in refs}} if only else {}
        if outcome.stopped_by_budget:
            context.instance.add_run_tags(context.run_id, {STOPPED_TAG: STOPPED_BY_BUDGET})
        if outcome.published is not None:
            context.instance.add_run_tags(context.run_id, {PUBLISHED_TAG: "true"})
        # Check results are yielded as evaluations (see `evaluations`), each provider's after its
        # materialization; the planned checks of a provider not synced in full get theirs too.
        partitions = planned_check_partitions(context.run)
        for provider, done_accounts in outcome.by_provider().items():
            if any(o.error is not None for o in done_accounts):
                continue  # the provider's partitions are not done: the Failure names the account
            if behind.get(provider):
                # A one-account run (feedback_resume's) finished its account, but the provider's
                # partitions are done only once every account has read them whole.
                context.log.warning(
                    f"{provider}: account {only} is done; the range is not marked materialized because "
                    f"account(s) {', '.join(behind[provider])} have not read all its days (a run of the provider reads them)"
                )
                continue
            done = merged(done_accounts)
            key = asset_key(provider)
            metadata = materialization_metadata(done, outcome.published, outcome.lake, publish_error=outcome.publish_error)
            metadata["accounts"] = dg.MetadataValue.md(accounts_table(done_accounts))
            if provider in rows_in_window:
                metadata["dagster/row_count"] = rows_in_window[provider]
            # The step's span over every account (a provider past the pool's size waits for a
            # slot) and its one publish: the run's own work, as against Dagster's around it.
            metadata["seconds_step_syncing_and_publishing"] = _seconds(outcome.seconds)
            # Dagster writes one materialization per partition of the range, each with the
            # result's metadata (serialized twice per event: the event row and the asset's
            # latest-materialization row). The run's full metadata goes on its last partition
            # only (the asset's latest materialization); the others carry a short pointer to it.
            # (A provider synced here means its asset was selected, so the run has partitions.)
            last_partition = context.partition_key_range.end
            context.add_asset_metadata(metadata, asset_key=key, partition_key=last_partition)
            yield dg.MaterializeResult(asset_key=key, metadata=partition_metadata(metadata, last_partition))
            results = check_results(key, done.report, done.stats, done.reasons, every_account=len(done_accounts) > 1)
            yield from evaluations(results, selected_checks, partitions, context.assets_def)
        yield from evaluations(unsynced, selected_checks, partitions, context.assets_def)
        if outcome.failed:
            raise failure(outcome) from outcome.failed[0].error

    return feedback_sync


def accounts_behind(refs: Sequence[AccountRef], session: Session, window: Window, account_id: Callable[[AccountRef], str]) -> dict[str, list[str]]:
    """Per provider, the accounts of ``refs`` that have not read every day of ``window`` whole
    (``pipeline_sync_days``): a provider's partitions are not done while any account lags."""
    behind: dict[str, list[str]] = {}
    days = len(window.days())
    with session.cursor() as cursor:
        for ref in refs:
            account = account_id(ref)
            if len(cursor.sync_days(ref.provider, account, window.first_day, window.last_day)) < days:
                behind.setdefault(ref.provider, []).append(account)
    return behind


def run_hooks(context: dg.AssetExecutionContext, hooks: Sequence[PublishHook], stage: Literal["prepare", "start", "abandon"]) -> None:
    """Run ``stage`` of each hook whose asset this run materializes. A hook that fails is logged,
    never fails the step: the later step does its work itself then."""
    in_run = context.job_def.asset_layer.selected_asset_keys
    for hook in hooks:
        action = getattr(hook, stage)
        if action is not None and hook.asset_key in in_run:
            try:
                action(context)
            except Exception as exc:  # noqa: BLE001 - an optimisation's failure is not the step's
                context.log.warning(f"could not {stage} {hook.asset_key.to_user_string()} early ({type(exc).__name__}: {exc}); its step will do it")


def run_window(context: dg.AssetExecutionContext, partitions_def: dg.PartitionsDefinition, *, checks_only: bool) -> Window:
    """The run's partitions as a UTC window. A launch of checks only without a partition (the
    Checks tab's "Execute": the checks are not partitioned) covers every partition."""
    if checks_only and not (context.has_partition_key or context.has_partition_key_range):
        assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
        keys = partitions_def.get_partition_keys()
        start = partitions_def.time_window_for_partition_key(keys[0]).start
        end = partitions_def.time_window_for_partition_key(keys[-1]).end
    else:
        start, end = context.partition_time_window
    return Window(start.astimezone(UTC), end.astimezone(UTC))


def unsynced_checks(selected_checks: AbstractSet[dg.AssetCheckKey], outcome: StepOutcome, session: Session, window: Window) -> list[dg.AssetCheckResult]:
    """Results for the planned checks of each provider this step did not sync in full: an
    account of it failed (all of them or some), or the launch selected its checks without the
    asset. A planned check left without a result reads "Execution failed" once the run fails
    (see checks.unsynced_check_results). The jobs plan no checks, so this serves asset launches
    from the UI, backfills and ``dagster asset materialize``."""
    by_provider = outcome.by_provider()
    results: list[dg.AssetCheckResult] = []
    for name in names():
        key = asset_key(name)
        planned = {k.name for k in selected_checks if k.asset_key == key}
        accounts = by_provider.get(name, [])
        failed = [o for o in accounts if o.error is not None]
        if not planned or (accounts and not failed):
            continue
        if failed:
            verb = "stopped on its request budget" if all(o.budget_stop for o in failed) else "failed"
            why = f"it {verb} in this run ({'; '.join(describe(o.label, o.error, o.provider) for o in failed if o.error is not None)})"
        else:  # its checks were selected without the asset (or without any of its accounts)
            why = "this run launched its checks without syncing it"
        stats = session.check_stats(name, None, window.first_day, window.last_day)
        reasons: Counter[str] = Counter()
        for o in accounts:
            reasons.update(o.reasons)
        received = sum(o.records_normalized for o in accounts)
        results += [r for r in unsynced_check_results(key, name, window, stats, reasons, received, why) if r.check_name in planned]
    return results


def planned_check_partitions(run: dg.DagsterRun) -> list[str | None]:
    """The rows Dagster planned for each selected check when it created the run: it resolves
    the run's partitions with the check's partitions definition (None: the checks are not
    partitioned) through ``DagsterRun.get_resolved_partitions_subset_for_events``, which returns
    the run's stored partition subset when it has one (a range: one row per partition), else
    nothing (one row without a partition). The same call gives the same rows."""
    subset = run.get_resolved_partitions_subset_for_events(None)
    return list(subset.get_partition_keys()) if subset is not None else [None]


def evaluations(
    results: Sequence[dg.AssetCheckResult], selected: AbstractSet[dg.AssetCheckKey], partitions: Sequence[str | None], step: dg.AssetsDefinition
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """Check results as evaluation events, so that no check row a run planned is left without one.

    A planned check gets one evaluation per planned row (``planned_check_partitions``): an
    ``AssetCheckResult`` carries no partition for a check that has none, so it would fill one
    row and leave the others planned, which Dagster shows as "Execution failed" once the run
    fails (``AssetCheckExecutionRecord.resolve_status``) and "Skipped" when it succeeds. Its
    (empty) step output is yielded too, as Dagster does for an ``AssetCheckResult``. A check the
    run did not plan (the jobs and the schedule plan none, see definitions.py) gets one
    evaluation; Dagster links it to the run's materialization (same run id)."""
    for result in results:
        key = dg.AssetCheckKey(result.asset_key, result.check_name or "")  # type: ignore[arg-type]
        planned = key in selected
        if planned:
            yield dg.Output(None, output_name=step.get_output_name_for_asset_check_key(key))
        for partition in partitions if planned else [None]:
            yield dg.AssetCheckEvaluation(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
                partition=partition,
            )


def _seconds(value: float) -> float:
    """Durations to the 0.1 ms: a small run normalizes in well under a millisecond."""
    return round(value, 4)


def merged(outcomes: Sequence[AccountOutcome]) -> AccountOutcome:
    """The accounts of one provider as one outcome: counts, requests and timings added up, the
    watermark the oldest (None when one account has none). One account is returned as it is."""
    if len(outcomes) == 1:
        return outcomes[0]
    first = outcomes[0]
    assert first.report is not None
    report = SyncReport(first.provider, first.account_id, first.report.window, first.report.full_refresh)
    stats = WindowStats(0, 0, 0)
    reasons: Counter[str] = Counter()
    watermarks = []
    for o in outcomes:
        r, st = o.report, o.stats
        assert r is not None and st is not None
        report.counts.add(r.counts)
        report.requests += r.requests
        report.retries += r.retries
        report.pages += r.pages
        report.records += r.records
        report.queries += [f"{o.account_id} {q}" for q in r.queries]
        report.resumed += [f"{o.account_id} {q}" for q in r.resumed]
        for part, seconds in r.seconds.items():
            report.seconds[part] += seconds
        report.duration = max(report.duration, r.duration)  # the accounts ran concurrently
        watermarks.append(r.watermark)
        stats = WindowStats(stats.rows_in_window + st.rows_in_window, stats.duplicate_keys + st.duplicate_keys, stats.bad_collected + st.bad_collected)
        reasons.update(o.reasons)
    report.watermark = None if any(w is None for w in watermarks) else min(w for w in watermarks if w is not None)
    return AccountOutcome(first.provider, first.key, first.account_id, report, stats, reasons)


def accounts_table(outcomes: Sequence[AccountOutcome]) -> str:
    """Each account's counts, as a markdown table (the materialization's ``accounts``)."""
    lines = [
        "| account_id | new | updated | unchanged | deleted | rejected | records | requests | rows in window |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        r, st = o.report, o.stats
        assert r is not None and st is not None
        c = r.counts
        account = o.account_id.replace("|", "\\|")
        lines.append(f"| {account} | {c.inserted} | {c.updated} | {c.unchanged} | {c.deleted} | {c.rejected} | {r.records} | {r.requests} | {st.rows_in_window} |")
    return "\n".join(lines)


def materialization_metadata(
    done: AccountOutcome, published: PublishResult | None, lake: Any = None, *, publish_error: BaseException | None = None
) -> dict[str, Any]:
    """A provider's full materialization metadata for the run: counts, requests, timings and the
    publish over the run's whole window (it goes on the run's last partition: see the step).
    ``publish_error``: the publish failed, so analysts do not see the rows yet."""
    report, stats = done.report, done.stats
    assert report is not None and stats is not None
    counts = report.counts
    snapshot = published is not None
    if publish_error is not None:
        publish = f"analysts' snapshot NOT published ({type(publish_error).__name__}): analysts see these rows once a later run publishes"
    else:
        publish = "analysts' snapshot published" if snapshot else "analysts' snapshot already current"
    return {
        "summary": (
            f"{counts.inserted} new, {counts.updated} updated, {counts.unchanged} unchanged, {counts.deleted} deleted, "
            f"{counts.rejected} rejected in {report.window.first_day}..{report.window.last_day} "
            f"from {report.records} records in {report.requests} requests; " + publish
        ),
        "window": f"{report.window.first_day}..{report.window.last_day}",
        "full_refresh": report.full_refresh,
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "rows_unchanged": counts.unchanged,
        "rows_deleted": counts.deleted,
        "rows_rejected": counts.rejected,
        "rows_suppressed": counts.suppressed,  # records of erased people dropped before storage
        "records_outside_window_skipped": counts.out_of_window,
        "records_received": report.records,
        "requests": report.requests,
        "retries": report.retries,
        "pages": report.pages,
        "queries": ", ".join(report.queries),
        "resumed_queries": ", ".join(report.resumed) or "none",
        "watermark": report.watermark.isoformat() if report.watermark else "none (window not fully synced)",
        "analyst_snapshot_published": snapshot,
        "publish_mode": published.mode if published else "none",
        "publish_rows_applied": published.rows_applied if published else 0,
        "seconds_publishing": _seconds(published.seconds) if published else 0.0,
        **(
            {
                "iceberg_snapshot_id": str(lake.snapshot_id),
                "iceberg_commit": f"{lake.mode}: {lake.keys_changed} keys, {lake.partitions_rewritten} partitions rewritten, {lake.seconds:.2f} s",
            }
            if lake is not None
            else {}
        ),
        "duration_seconds": _seconds(report.duration),
        "seconds_waiting_for_pages": _seconds(report.seconds["fetch_wait"]),
        "seconds_normalizing": _seconds(report.seconds["normalize"]),
        "seconds_committing": _seconds(report.seconds["commit"]),
        "dagster/row_count": stats.rows_in_window,
    }


# The entries every partition's materialization carries (a subset of the full metadata's names).
PARTITION_METADATA = ("summary", "window", "full_refresh")


def partition_metadata(full: Mapping[str, Any], last_partition: str) -> dict[str, Any]:
    """The metadata of each partition of a run but its last: what the run did over its window
    and where its full metadata is. A year's backfill writes 365 events per asset; the ~30
    entries of the full metadata on each cost more to serialize and store than the event itself."""
    out = {name: full[name] for name in PARTITION_METADATA}
    out["summary"] = f"{full['summary']} (whole run over {full['window']}; its full metadata is on partition {last_partition})"
    return out


def metadata_by_provider(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Each provider's materialization metadata (plain values) in a finished in-process run: the
    step materializes several assets, one event per partition; the last partition's event (the
    last one of its asset) carries the run's full metadata."""
    out: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        for provider, name in asset_names().items():
            if event.asset_key == dg.AssetKey(name):
                out[provider] = {k: v.value for k, v in event.materialization.metadata.items()}
    return out
