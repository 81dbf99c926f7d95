"""The feedback dashboard: one self-contained HTML file drawn from the analysts' snapshot.

    queries.py  what it shows, as SQL over the analyst views (aggregates, redacted texts)
    charts.py   Vega-Altair charts rendered to static SVG (vl-convert)
    page.py     the HTML page (inline CSS and SVG; no script, no external URL)
    build.py    build and write atomically; skip when the snapshot did not change
    asset.py    the ``feedback_dashboard`` asset and its settings (``FEEDBACK_DASHBOARD``)
    sensor.py   a redraw after a run that failed part-way (its dashboard step never ran)

Run by hand: ``python -m feedback_pipeline.dashboard [--force]``.
"""

from .asset import ASSET_NAME, DEFAULT_DASHBOARD, DashboardResource, build_dashboard_asset
from .build import DashboardResult, build_dashboard
from .sensor import REFRESH_JOB, SENSOR_NAME, build_dashboard_refresh_sensor

__all__ = [
    "ASSET_NAME", "DEFAULT_DASHBOARD", "REFRESH_JOB", "SENSOR_NAME", "DashboardResource", "DashboardResult",
    "build_dashboard", "build_dashboard_asset", "build_dashboard_refresh_sensor",
]
