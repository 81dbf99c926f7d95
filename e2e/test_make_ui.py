"""``make ui`` (``feedback-pipeline ui``): the sandbox and the Dagster services with .dagster_home and
the repo's dagster.yaml. Stopping it with Ctrl-C is checked when the session fixture ends."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from feedback_pipeline.providers import names
from feedback_pipeline_tests.test_webserver import ASSET_NODES, INSTANCE

PROVIDERS = names()

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_feedback_pipeline_ui_serves_the_sandbox_and_dagster_with_the_repos_instance(ui):
    assert (ui.cwd / ".dagster_home" / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    assert f"DAGSTER_HOME={ui.cwd / '.dagster_home'}" in ui.webserver.log_path.read_text()

    health = httpx.get(f"{ui.sandbox_url}/_control/health", timeout=10).json()
    assert health["ok"] and sorted(health["providers"]) == sorted(PROVIDERS)

    instance = ui.webserver.graphql(INSTANCE)["instance"]  # dagster.yaml from .dagster_home is in force
    assert instance["runQueuingSupported"] and instance["poolConfig"] == {"poolGranularity": "run", "defaultPoolLimit": 1}

    nodes = [n for n in ui.webserver.graphql(ASSET_NODES)["assetNodes"] if n["assetKey"]["path"] != ["feedback_dashboard"]]
    first = ui.webserver.first_partition.isoformat()  # `--days 30` sets FEEDBACK_START_DATE to 29 days ago
    assert sorted(n["assetKey"]["path"][0] for n in nodes) == sorted(f"{p}_feedback" for p in PROVIDERS)
    assert {n["partitionKeys"][0] for n in nodes} == {first}
