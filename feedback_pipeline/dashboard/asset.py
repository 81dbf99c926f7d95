"""The ``feedback_dashboard`` asset: redraws the dashboard file after the provider assets ran.

Unpartitioned and downstream of the provider assets (it reads all of ``FEEDBACK_DB``), so the
``feedback_ingest`` job, whose selection is the provider assets and everything downstream of
them, materializes it in the same run, after the provider step(s): Dagster lets an asset job
with a partitions definition hold unpartitioned assets (only the partitioned ones must share the
job's ``PartitionsDefinition`` and backfill policy: ``_infer_and_validate_common_partitions_def``
in ``dagster/_core/definitions/assets/job/asset_job.py`` skips assets without one; dagster PRs
#13472 and #21696), and runs them once per run whatever the partition range. It depends on the
asset keys only, so it works the same whether the providers are five assets or one multi-asset.

The querying and drawing run in a short-lived child process (``build.build_dashboard_in_child``):
Altair, vl-convert and the queries' memory stay out of the run's process, which has just synced.
The child gets the two paths and no secret; its failure fails the asset with its exception.
The provider step starts that child as soon as it has published (``publish_hook``, ``early.py``),
so the drawing overlaps Dagster's writing of the provider step's events; this step then only
waits for it and moves its page into place. The child is started warm at the step's first
changing commit: it loads Altair and vl-convert while the providers still sync.

When a provider step fails, Dagster does not run the steps downstream of it, so that run does
not draw the dashboard; the sensor in ``sensor.py`` requests a redraw then (and
``python -m feedback_pipeline.dashboard`` draws it at once by hand).
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation at runtime.
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from ..assets import PublishHook
from . import early
from .build import DashboardResult, build_dashboard_in_child
from .summary import summary_markdown

ASSET_NAME = "feedback_dashboard"
DEFAULT_DASHBOARD = "data/dashboard.html"


class DashboardResource(dg.ConfigurableResource):
    """Where the dashboard file goes (``FEEDBACK_DASHBOARD``; not secret)."""

    path: str = DEFAULT_DASHBOARD

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "DashboardResource":
        return cls(path=dg.EnvVar("FEEDBACK_DASHBOARD") if environ.get("FEEDBACK_DASHBOARD") else DEFAULT_DASHBOARD)


def build_dashboard_asset(upstream: Sequence[dg.AssetKey | str]) -> dg.AssetsDefinition:
    """The ``feedback_dashboard`` asset, downstream of ``upstream`` (the provider assets' keys).

    Needs the resources ``pipeline`` (where ``FEEDBACK_DB`` is) and ``dashboard``. A run whose
    providers changed nothing leaves the snapshot as it was, and the asset then leaves the file
    as it was (see ``build.py``); its data version is the snapshot's identity either way.
    """

    @dg.asset(
        key=ASSET_NAME,
        deps=list(upstream),
        group_name="feedback",
        kinds={"html"},
        required_resource_keys={"pipeline", "dashboard"},
        description=(
            "A self-contained HTML dashboard of the feedback (daily volume, status funnel, NPS per week, least helpful "
            "docs pages, most voted requests, rejects, freshness, latest texts), drawn from the analysts' snapshot "
            "FEEDBACK_DB into FEEDBACK_DASHBOARD (default data/dashboard.html). Opens offline in any browser."
        ),
    )
    def feedback_dashboard(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        db_path = Path(context.resources.pipeline.db_path)
        if not db_path.exists():
            raise dg.Failure(
                description=f"No snapshot at {db_path} to draw the dashboard from: materialize a provider asset first (FEEDBACK_DB).",
            )
        # The drawing the provider step started after publishing (early.py), if it shows the
        # snapshot as it is now; else one drawn now.
        started = early.take(context.run_id)
        result = started.finish(db_path) if started else None
        if result is None:
            result = build_dashboard_in_child(db_path, context.resources.dashboard.path)
        context.log.info(f"dashboard {'written to' if result.written else 'unchanged at'} {result.path} ({result.seconds:.2f} s)")
        return dg.MaterializeResult(
            metadata=dashboard_metadata(result),
            data_version=dg.DataVersion(result.key) if result.key else None,
        )

    return feedback_dashboard


def publish_hook() -> PublishHook:
    """What the provider step runs for a run that holds the ``feedback_dashboard`` asset (see
    ``early.py``): a warm child once its first commit changed the warehouse, the drawing once it
    has published, the warm child stopped when it failed."""

    def prepare(context: dg.AssetExecutionContext) -> None:
        early.prepare(context.run_id, context.resources.pipeline.db_path, context.resources.dashboard.path)

    def start(context: dg.AssetExecutionContext) -> None:
        early.start(context.run_id, context.resources.pipeline.db_path, context.resources.dashboard.path)

    def abandon(context: dg.AssetExecutionContext) -> None:
        early.abandon(context.run_id)

    return PublishHook(dg.AssetKey(ASSET_NAME), frozenset({"pipeline", "dashboard"}), start, prepare, abandon)


def dashboard_metadata(result: DashboardResult) -> dict[str, dg.MetadataValue]:
    """The file (path and a file:// link), whether it was redrawn, and a summary table."""
    path = result.path.resolve()
    return {
        "summary": dg.MetadataValue.md(summary_markdown(result)),
        "dashboard": dg.MetadataValue.path(str(path)),
        "open_in_browser": dg.MetadataValue.url(path.as_uri()),
        "redrawn": dg.MetadataValue.bool(result.written),
        "drawn_early": dg.MetadataValue.bool(result.early),  # started when the provider step published
        "snapshot": dg.MetadataValue.text(result.key or "unknown (always redrawn)"),
        "file_kib": dg.MetadataValue.float(round(result.bytes / 1024, 1)),
        "build_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "query_seconds": dg.MetadataValue.float(round(result.query_seconds, 3)),
        "draw_seconds": dg.MetadataValue.float(round(result.draw_seconds, 3)),
    }
