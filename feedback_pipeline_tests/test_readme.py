"""The README stays true: every SQL block runs against a synced warehouse, and the configuration
table names every variable of the contract."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.providers import get_spec, names, provider_from_env
from feedback_pipeline.warehouse import Warehouse

from .conftest import FAST_RETRIES, recent_window, run_sync

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SQL_BLOCKS = re.findall(r"```sql\n(.*?)```", README, flags=re.S)


@pytest.fixture(scope="module")
def analyst_db(sandbox_server, tmp_path_factory) -> Path:
    env = sandbox_server.env()
    wh = Warehouse(tmp_path_factory.mktemp("readme") / "feedback.duckdb")
    for name in names():
        run_sync(provider_from_env(name, env, policy=FAST_RETRIES), wh, recent_window(30))
    return wh.path


def test_the_readme_has_a_cookbook_of_at_least_ten_queries():
    assert len(SQL_BLOCKS) >= 10


@pytest.mark.parametrize("sql", SQL_BLOCKS, ids=[f"query{i + 1}" for i in range(len(SQL_BLOCKS))])
def test_every_readme_query_runs_read_only_and_returns_rows(analyst_db: Path, sql: str):
    con = duckdb.connect(str(analyst_db), read_only=True)
    try:
        assert con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_two_commands_come_first():
    head = README[:600]
    assert "make demo" in head and "make test" in head


def test_the_configuration_table_names_every_contract_variable():
    for name in names():
        for setting in get_spec(name).settings:
            assert f"`{setting.var}`" in README, setting.var
    for var in ("FEEDBACK_DB", "FEEDBACK_START_DATE", "FEEDBACK_LOOKBACK_DAYS", "FEEDBACK_LAKE_WAREHOUSE", "FEEDBACK_LAKE_CATALOG_URI"):
        assert f"`{var}`" in README
