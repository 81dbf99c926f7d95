"""FEEDBACK_ACCOUNTS_FILE: parsing, the account_id of each entry, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedback_pipeline.accounts import AccountsFileError, ProviderSettings, environment_account, load_accounts, setting_key
from feedback_pipeline.providers import get_spec, names

SPECS = {name: ProviderSettings(get_spec(name).settings, get_spec(name).account) for name in names()}
SECRET = "mint_this-is-the-secret-value"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str, environ: dict | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(AccountsFileError) as caught:
        load_accounts(path, SPECS, environ or {})
    message = str(caught.value)
    assert str(path) in message
    return message


def test_keys_are_the_variable_names_without_their_prefix():
    assert setting_key("MINTLIFY_PROJECT_ID") == "project_id"
    assert setting_key("FORMBRICKS_HUB_API_KEY") == "hub_api_key"
    assert setting_key("MAPBOX_ACCOUNT") == "account"
    assert setting_key("USERSNAP_JWT_KID") == "jwt_kid"
    assert setting_key("MINTLIFY_BASE_URL") == "base_url"


def test_the_issue_example_parses_into_accounts_with_secrets_as_variable_names(tmp_path: Path):
    path = write(tmp_path, """
mintlify:
  - project_id: docs-main
    api_key: {env: MINTLIFY_API_KEY_DOCS_MAIN}
  - project_id: docs-sdk
    api_key: {env: MINTLIFY_API_KEY_DOCS_SDK}
formbricks:
  - hub_url: https://hub.example.com
    tenant_id: acme
    hub_api_key: {env: HUB_KEY_ACME}
""")
    accounts = load_accounts(path, SPECS, {})
    assert [(a.provider, a.account_id) for a in accounts] == [("mintlify", "docs-main"), ("mintlify", "docs-sdk"), ("formbricks", "acme")]
    docs_sdk = accounts[1]
    assert docs_sdk.env_vars == {"api_key": "MINTLIFY_API_KEY_DOCS_SDK"}
    assert docs_sdk.values["base_url"] == "https://api.mintlify.com"  # the default
    assert "api_key" not in docs_sdk.values
    assert accounts[2].values["hub_url"] == "https://hub.example.com"


def test_optional_account_keys_take_their_defaults_and_numbers_become_text(tmp_path: Path):
    path = write(tmp_path, """
mapbox:
  - access_token: {env: MAPBOX_TOKEN_EU}
usersnap:
  - project_id: 4711
    jwt_kid: kid-1
    jwt_secret: {env: USERSNAP_SECRET_2}
""")
    mapbox, usersnap = load_accounts(path, SPECS, {})
    assert mapbox.account_id == "default"
    assert usersnap.account_id == "4711"


def test_an_account_key_read_from_a_variable_takes_its_value(tmp_path: Path):
    path = write(tmp_path, "feedbackkit:\n  - project: {env: FK_PROJECT}\n    api_key: {env: FK_KEY}\n")
    (account,) = load_accounts(path, SPECS, {"FK_PROJECT": "ios-app"})
    assert account.account_id == "ios-app"


def test_an_empty_file_declares_no_account(tmp_path: Path):
    assert load_accounts(write(tmp_path, ""), SPECS, {}) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mintlify:\n  - project_id: a\n    api_key: " + SECRET + "\n", "mintlify[1]: key 'api_key' is a secret written inline"),
        ("mintlify:\n  - project_id: a\n    api_key: {env: K}\n    colour: blue\n", "mintlify[1]: unknown key 'colour'"),
        ("mintlify:\n  - api_key: {env: K}\n", "mintlify[1]: required key 'project_id' is missing"),
        ("zendesk:\n  - api_key: {env: K}\n", "unknown provider 'zendesk'"),
        ("mintlify:\n  - project_id: a\n    api_key: {env: K}\n  - project_id: a\n    api_key: {env: L}\n", "mintlify[2] has account_id 'a'"),
        ("mintlify:\n  project_id: a\n", "mintlify must be a list"),
        ("- mintlify\n", "top level must map provider names"),
        ("mintlify:\n  - project_id: a\n    api_key: {env: K, default: x}\n", "key 'api_key' must be {env: VARIABLE_NAME}"),
        ("mintlify:\n  - project_id: a\n    api_key: {env: 'not a name'}\n", "key 'api_key' must be {env: VARIABLE_NAME}"),
        ("mintlify:\n  - project_id: [a, b]\n    api_key: {env: K}\n", "key 'project_id' must be a text value"),
        ("mintlify:\n  - project_id: {env: UNSET_PROJECT}\n    api_key: {env: K}\n", "key 'project_id' (the account_id) is empty"),
        ("mintlify: [\n", "not valid YAML at line"),
    ],
)
def test_a_bad_file_fails_naming_the_file_the_entry_and_the_key(tmp_path: Path, text: str, expected: str):
    message = refusal(tmp_path, text)
    assert expected in message
    assert SECRET not in message


def test_an_entry_duplicating_the_plain_variables_account_is_refused(tmp_path: Path):
    environ = {"MINTLIFY_API_KEY": SECRET, "MINTLIFY_PROJECT_ID": "docs-main"}
    plain = environment_account("mintlify", SPECS["mintlify"], environ)
    assert plain is not None and plain.account_id == "docs-main" and plain.env_vars["api_key"] == "MINTLIFY_API_KEY"
    path = write(tmp_path, "mintlify:\n  - project_id: docs-main\n    api_key: {env: OTHER}\n")
    with pytest.raises(AccountsFileError, match=r"already configured by environment"):
        load_accounts(path, SPECS, environ, existing=[plain])


def test_a_missing_file_fails_naming_it(tmp_path: Path):
    with pytest.raises(AccountsFileError, match="FEEDBACK_ACCOUNTS_FILE .*missing.yaml: cannot be read"):
        load_accounts(tmp_path / "missing.yaml", SPECS, {})


def test_the_plain_variables_configure_no_account_when_a_required_one_is_unset():
    assert environment_account("mintlify", SPECS["mintlify"], {"MINTLIFY_PROJECT_ID": "x"}) is None


# -- the file in the definitions ----------------------------------------------------------------

import dagster as dg  # noqa: E402

from feedback_pipeline.definitions import build_definitions  # noqa: E402

FILE = """
mintlify:
  - project_id: docs-sdk
    api_key: {env: MINTLIFY_API_KEY_DOCS_SDK}
    base_url: http://127.0.0.1:9/
mapbox:
  - account: eu
    access_token: {env: MAPBOX_TOKEN_EU}
"""


def job_assets(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_job_def("feedback_ingest").asset_layer.executable_asset_keys}


def test_each_file_account_is_a_resource_reading_its_secrets_through_envvar(tmp_path: Path):
    path = write(tmp_path, FILE)
    env = {"FEEDBACK_ACCOUNTS_FILE": str(path), "MINTLIFY_API_KEY_DOCS_SDK": SECRET, "MAPBOX_TOKEN_EU": "pk.eu-token",
           "MINTLIFY_API_KEY": "mint_plain", "MINTLIFY_PROJECT_ID": "docs-main"}
    defs = build_definitions(env)
    config = {key: defs.resources[key]._convert_to_config_dictionary() for key in ("mintlify", "mintlify__1", "mapbox__1")}
    assert config["mintlify"]["api_key"] == {"env": "MINTLIFY_API_KEY"} and config["mintlify"]["project_id"] == {"env": "MINTLIFY_PROJECT_ID"}
    assert config["mintlify__1"] == {"api_key": {"env": "MINTLIFY_API_KEY_DOCS_SDK"}, "project_id": "docs-sdk", "base_url": "http://127.0.0.1:9/"}
    assert config["mapbox__1"]["access_token"] == {"env": "MAPBOX_TOKEN_EU"} and config["mapbox__1"]["account"] == "eu"
    assert SECRET not in repr(config) and "pk.eu-token" not in repr(config)
    # A provider with accounts only in the file is configured: the job covers it.
    assert job_assets(defs) == {"mintlify_feedback", "mapbox_feedback", "feedback_dashboard"}
    step = defs.resolve_assets_def("mintlify_feedback")
    assert {"mintlify", "mintlify__1", "mapbox__1"} <= step.required_resource_keys


def test_failure_alerts_redact_the_file_accounts_secrets_too(tmp_path: Path):
    path = write(tmp_path, FILE)
    env = {"FEEDBACK_ACCOUNTS_FILE": str(path), "MINTLIFY_API_KEY_DOCS_SDK": SECRET, "MAPBOX_TOKEN_EU": "pk.eu-token",
           "FEEDBACK_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook"}
    sensor = next(s for s in build_definitions(env).sensors if s.name == "feedback_alert_on_failure")
    assert {"mintlify__1", "mapbox__1"} <= sensor.required_resource_keys


def test_a_bad_file_fails_when_the_definitions_load_naming_it(tmp_path: Path):
    path = write(tmp_path, "mintlify:\n  - project_id: a\n    api_key: " + SECRET + "\n")
    with pytest.raises(AccountsFileError) as caught:
        build_definitions({"FEEDBACK_ACCOUNTS_FILE": str(path)})
    assert str(path) in str(caught.value) and "mintlify[1]: key 'api_key'" in str(caught.value) and SECRET not in str(caught.value)


def test_an_entry_reading_an_unset_variable_fails_at_load_naming_entry_key_and_variable(tmp_path: Path):
    path = write(tmp_path, FILE)
    with pytest.raises(AccountsFileError, match=r"mapbox\[1\]: key 'access_token' reads variable MAPBOX_TOKEN_EU, which is not set"):
        build_definitions({"FEEDBACK_ACCOUNTS_FILE": str(path), "MINTLIFY_API_KEY_DOCS_SDK": SECRET})


def test_with_two_accounts_the_metadata_covers_both_the_rejects_query_and_a_one_account_runs_row_count(tmp_path: Path, monkeypatch):
    from datetime import datetime, timedelta, timezone

    import duckdb

    from feedback_pipeline.resume import ACCOUNT_TAG
    from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG

    from .conftest import make_sandbox

    server = make_sandbox(accounts=2)
    try:
        today = datetime.now(timezone.utc).date()
        env = {
            **server.env(), **server.write_accounts_file(tmp_path / "accounts.yaml"), "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
            "FEEDBACK_DASHBOARD": str(tmp_path / "d.html"), "FEEDBACK_START_DATE": (today - timedelta(days=40)).isoformat(),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        job = build_definitions(env).resolve_job_def("feedback_ingest")
        day = today - timedelta(days=20)  # a day the sandbox serves a bad record on, per account
        tags = {RANGE_START_TAG: day.isoformat(), RANGE_END_TAG: day.isoformat()}
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

        def query(sql: str) -> list[tuple]:
            con = duckdb.connect(env["FEEDBACK_DB"], read_only=True)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()

        both = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), tags=tags, run_config=quiet, asset_selection=[dg.AssetKey("mintlify_feedback")])
        [reject_rate] = [e for e in both.get_asset_check_evaluations() if e.check_name == "reject_rate"]
        listed = query(reject_rate.metadata["list_them"].value.strip("`\nsql"))
        assert len(listed) == reject_rate.metadata["records_rejected"].value == 2  # one bad record per account
        accounts = [a for (a,) in query("SELECT DISTINCT account_id FROM feedback WHERE provider = 'mintlify' ORDER BY 1")]
        one = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), tags={**tags, ACCOUNT_TAG: accounts[-1]}, run_config=quiet, asset_selection=[dg.AssetKey("mintlify_feedback")])
        [materialization] = one.get_asset_materialization_events()
        stored = query(f"SELECT count(*) FROM feedback WHERE provider = 'mintlify' AND collected_date = DATE '{day}'")[0][0]
        assert materialization.materialization.metadata["dagster/row_count"].value == stored
    finally:
        server.stop()
