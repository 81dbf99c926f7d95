"""The feedback dashboard: one self-contained HTML file drawn from the analysts' snapshot.

    queries.py  what it shows, as SQL over the analyst views (aggregates, redacted texts)
    charts.py   Vega-Altair charts rendered to static SVG (vl-convert)
    page.py     the HTML page (inline CSS and SVG; no script, no external URL)
    build.py    build and write atomically; skip when the snapshot did not change
    early.py    the drawing started when the provider step publishes, kept if the snapshot is still that one
    asset.py    the ``feedback_dashboard`` asset and its settings (``FEEDBACK_DASHBOARD``)
    sensor.py   a redraw after a run that failed part-way (its dashboard step never ran)

Run by hand: ``python -m feedback_pipeline.dashboard [--force]``.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asset import ASSET_NAME, DEFAULT_DASHBOARD, DashboardResource, build_dashboard_asset
    from .build import DashboardResult, build_dashboard
    from .sensor import REFRESH_JOB, SENSOR_NAME, build_dashboard_refresh_sensor

# Name -> the module defining it, imported on first use: the asset's child process
# (``build.build_dashboard_in_child``) imports ``build`` without Dagster.
_EXPORTS = {
    "ASSET_NAME": "asset", "DEFAULT_DASHBOARD": "asset", "DashboardResource": "asset", "build_dashboard_asset": "asset",
    "DashboardResult": "build", "build_dashboard": "build",
    "REFRESH_JOB": "sensor", "SENSOR_NAME": "sensor", "build_dashboard_refresh_sensor": "sensor",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """An exported name, from its module (imported now if it was not yet)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
