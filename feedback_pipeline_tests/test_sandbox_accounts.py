"""Several accounts per provider in one sandbox: own records, own credentials, shared Mintlify
organization, the generated FEEDBACK_ACCOUNTS_FILE, and ``feedback-pipeline sandbox --accounts``.

Real HTTP over loopback against a sandbox serving two accounts of each provider. Each provider's
list endpoint is read with one account's settings (:meth:`Emulator.settings`), the way the
pipeline would be configured for that account.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import duckdb
import httpx
import jwt
import pytest

from feedback_pipeline.accounts import ACCOUNTS_FILE_VAR, ProviderSettings, environment_account, load_accounts
from feedback_pipeline.demo import _account_rows, _requests_by_account
from feedback_pipeline.providers import get_spec, names
from feedback_pipeline.sandbox import mintlify as mint
from feedback_pipeline.sandbox.app import Sandbox
from feedback_pipeline.sandbox.core import Fault, SandboxState
from feedback_pipeline.sandbox.server import SandboxServer

from .conftest import module_sandbox

PROVIDERS = names()
# Accounts read with one shared key, as upstream: a Mintlify admin key is organization-wide, a
# Formbricks Hub has one key per server (tenant_id picks the tenant). The others' keys are per account.
SHARED_KEY = ("mintlify", "formbricks")
SPECS = {name: ProviderSettings(get_spec(name).settings, get_spec(name).account) for name in PROVIDERS}
# Small data: every provider's whole account fits in one page of its largest size.
server = module_sandbox(days=3, per_day=5, accounts=2)


@pytest.fixture
def sb(server: SandboxServer) -> SandboxServer:
    return server.reset()


def settings(sb: SandboxServer, provider: str, account: int) -> dict[str, str]:
    return sb.sandbox.emulators[provider].settings(sb.url, account)


def usersnap_token(s: dict[str, str]) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 300}, s["jwt_secret"], algorithm="HS256", headers={"kid": s["jwt_kid"]})


# One request per provider reading the whole (small) account; returns the response.
LIST: dict[str, Callable[[dict[str, str]], httpx.Response]] = {
    "mintlify": lambda s: httpx.get(
        f"{s['base_url']}/api/external/v1/analytics/{s['project_id']}/feedback",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {s['api_key']}"},
    ),
    "feedbackkit": lambda s: httpx.get(f"{s['base_url']}/api/v1/feedbacks", params={"includeMerged": "true"}, headers={"X-API-Key": s["api_key"]}),
    "formbricks": lambda s: httpx.get(
        f"{s['hub_url']}/v1/feedback-records", params={"tenant_id": s["tenant_id"], "limit": 1000}, headers={"Authorization": f"Bearer {s['hub_api_key']}"}
    ),
    "mapbox": lambda s: httpx.get(f"{s['base_url']}/user-feedback/v1/feedback", params={"access_token": s["access_token"], "limit": 1000}),
    "usersnap": lambda s: httpx.get(
        f"{s['base_url']}/projects/{s['project_id']}/feedbacks", params={"limit": 100}, headers={"Authorization": f"Bearer {usersnap_token(s)}"}
    ),
}
ITEMS: dict[str, Callable[[object], list[dict]]] = {
    "mintlify": lambda body: body["feedback"],
    "feedbackkit": lambda body: body,
    "formbricks": lambda body: body["data"],
    "mapbox": lambda body: body["items"],
    "usersnap": lambda body: body["data"]["feedbacks"],
}


def served_ids(provider: str, response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    id_field = "feedback_id" if provider == "usersnap" else "id"
    return {item[id_field] for item in ITEMS[provider](response.json())}


def stored_ids(sb: SandboxServer, provider: str, account: int) -> set[str]:
    id_field = sb.sandbox.emulators[provider].id_field
    return {record[id_field] for record in sb.sandbox.records(provider, account)}


def secret_keys(provider: str) -> list[str]:
    spec = get_spec(provider)
    return [spec.key(s) for s in spec.settings if s.secret]


def test_every_provider_lists_its_emulator_here():
    assert set(LIST) == set(PROVIDERS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_account_is_served_its_own_records_with_its_own_settings(sb: SandboxServer, provider: str):
    first, second = stored_ids(sb, provider, 1), stored_ids(sb, provider, 2)
    assert len(first) == len(second) == 15
    assert not first & second, "the accounts' records are distinct"
    assert served_ids(provider, LIST[provider](settings(sb, provider, 1))) == first
    assert served_ids(provider, LIST[provider](settings(sb, provider, 2))) == second
    assert [e.account for e in sb.sandbox.state.requests_for(provider)] == [1, 2]


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p not in SHARED_KEY])
@pytest.mark.parametrize(("ids_of", "secrets_of"), [(2, 1), (1, 2)])
def test_one_accounts_credentials_never_read_the_other_accounts_records(sb: SandboxServer, provider: str, ids_of: int, secrets_of: int):
    mixed = {**settings(sb, provider, ids_of), **{k: settings(sb, provider, secrets_of)[k] for k in secret_keys(provider)}}
    response = LIST[provider](mixed)
    # Refused (Usersnap: the other account's project is not found), or served the key's own account.
    if response.status_code == 200:
        assert served_ids(provider, response) == stored_ids(sb, provider, secrets_of)
    else:
        assert response.status_code in (401, 403, 404), response.text


@pytest.mark.parametrize("provider", SHARED_KEY)
def test_shared_key_accounts_use_account_1s_key_and_refuse_a_wrong_one(sb: SandboxServer, provider: str):
    (key,) = secret_keys(provider)
    assert settings(sb, provider, 1)[key] == settings(sb, provider, 2)[key]
    response = LIST[provider]({**settings(sb, provider, 2), key: "mint_not_a_key" if provider == "mintlify" else "not-the-hub-key"})
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(("provider", "path"), [("mapbox", "/user-feedback/v1/feedback/{id}"), ("feedbackkit", "/api/v1/feedbacks/{id}")])
def test_a_record_of_account_2_is_not_found_by_id_with_account_1s_key(sb: SandboxServer, provider: str, path: str):
    record_id = sorted(i for i in stored_ids(sb, provider, 2) if i)[0]
    auth = {"params": {"access_token": settings(sb, provider, 1)["access_token"]}} if provider == "mapbox" else {"headers": {"X-API-Key": settings(sb, provider, 1)["api_key"]}}
    assert httpx.get(sb.url + path.format(id=record_id), **auth).status_code == 404
    own = {"params": {"access_token": settings(sb, provider, 2)["access_token"]}} if provider == "mapbox" else {"headers": {"X-API-Key": settings(sb, provider, 2)["api_key"]}}
    assert httpx.get(sb.url + path.format(id=record_id), **own).json()["id"] == record_id


def test_unknown_account_suffixes_are_refused(sb: SandboxServer):
    for suffix in ("-3", "-02", "-1", "-x", "2"):
        s = settings(sb, "feedbackkit", 1)
        assert LIST["feedbackkit"]({**s, "api_key": s["api_key"] + suffix}).status_code == 401, suffix
    assert LIST["mintlify"]({**settings(sb, "mintlify", 1), "project_id": mint.PROJECT_ID + "-3"}).status_code == 400
    # An unknown tenant is no account's: the Hub serves none of the accounts' own rows.
    served = served_ids("formbricks", LIST["formbricks"]({**settings(sb, "formbricks", 1), "tenant_id": "tenant-sandbox-3"}))
    assert not served & {r["id"] for a in (1, 2) for r in sb.sandbox.records("formbricks", a) if r["tenant_id"] != "tenant-other"}


def test_mintlify_projects_of_one_organization_refuse_another_organizations_key(sb: SandboxServer):
    second_key = {**settings(sb, "mintlify", 2), "api_key": mint.SECOND_KEY}
    assert served_ids("mintlify", LIST["mintlify"](second_key)) == stored_ids(sb, "mintlify", 2)
    other_org = {**settings(sb, "mintlify", 2), "api_key": mint.OTHER_ORG_KEY}
    response = LIST["mintlify"](other_org)
    assert response.status_code == 400 and response.json()["error"] == "Invalid project"


def test_mintlify_projects_share_one_organization_rate_limit(sb: SandboxServer):
    sb.reset(mintlify_rate_limit=3)
    first, second = settings(sb, "mintlify", 1), settings(sb, "mintlify", 2)
    statuses = [LIST["mintlify"](s).status_code for s in (first, first, second, second, first)]
    assert statuses == [200, 200, 200, 429, 429]


def test_a_fault_for_one_account_leaves_the_other_served(sb: SandboxServer):
    sb.sandbox.state.add_fault("usersnap", Fault(kind="server_error", count=None, account=2))
    assert LIST["usersnap"](settings(sb, "usersnap", 2)).status_code == 503
    assert LIST["usersnap"](settings(sb, "usersnap", 1)).status_code == 200
    assert LIST["usersnap"](settings(sb, "usersnap", 2)).status_code == 503


def test_the_control_api_reads_and_writes_one_account_by_query_parameter(sb: SandboxServer):
    records = httpx.get(f"{sb.url}/_control/mapbox/records", params={"account": 2}).json()
    assert {r["id"] for r in records} == stored_ids(sb, "mapbox", 2)
    assert {r["id"] for r in httpx.get(f"{sb.url}/_control/mapbox/records").json()} == stored_ids(sb, "mapbox", 1)
    added = {**records[0], "id": "0190d2c5-0000-7000-8000-00000000abcd", "feedback": "added to account 2"}
    assert httpx.post(f"{sb.url}/_control/mapbox/records", params={"account": 2}, json=added).status_code == 200
    assert added["id"] in served_ids("mapbox", LIST["mapbox"](settings(sb, "mapbox", 2)))
    assert added["id"] not in served_ids("mapbox", LIST["mapbox"](settings(sb, "mapbox", 1)))
    changed = httpx.patch(f"{sb.url}/_control/mapbox/records/{added['id']}", params={"account": 2}, json={"status": "fixed"})
    assert changed.json()["status"] == "fixed"
    assert httpx.patch(f"{sb.url}/_control/mapbox/records/{added['id']}", json={"status": "fixed"}).status_code == 404
    assert httpx.delete(f"{sb.url}/_control/mapbox/records/{added['id']}", params={"account": 2}).json() == {"ok": True}
    assert httpx.post(f"{sb.url}/_control/mapbox/touch", params={"account": 2}, json={"fraction": 0.2}).json()["touched"] == 3
    for bad in ("3", "0", "two"):
        assert httpx.get(f"{sb.url}/_control/mapbox/records", params={"account": bad}).status_code == 404, bad


def test_account_1_is_the_one_account_sandbox_and_account_2_is_deterministic():
    """Data seeded per provider and account: adding accounts never changes account 1's records."""
    end = date(2025, 6, 30)  # past: nothing depends on the time of the test
    one = Sandbox(SandboxState(days=3, per_day=5, end=end))
    two = Sandbox(SandboxState(days=3, per_day=5, end=end, accounts=2))
    again = Sandbox(SandboxState(days=3, per_day=5, end=end, accounts=2))
    for provider in PROVIDERS:
        assert two.records(provider, 1) == one.records(provider, 1), provider
        assert two.records(provider, 2) == again.records(provider, 2), provider
        assert two.records(provider, 2) != two.records(provider, 1), provider


def test_the_accounts_file_parses_into_account_2_of_every_provider(sb: SandboxServer, tmp_path: Path):
    variables = sb.write_accounts_file(tmp_path / "accounts.yaml")
    path = variables.pop(ACCOUNTS_FILE_VAR)
    assert Path(path) == (tmp_path / "accounts.yaml").resolve()
    assert variables == sb.sandbox.accounts_env()
    environ = {**sb.env(), **variables}
    existing = [environment_account(p, SPECS[p], environ) for p in PROVIDERS]
    accounts = load_accounts(path, SPECS, environ, existing=existing)

    assert {(a.provider, a.account_id) for a in accounts} == {(p, settings(sb, p, 2)[get_spec(p).account]) for p in PROVIDERS}
    assert {(a.provider, a.account_id) for a in accounts}.isdisjoint({(a.provider, a.account_id) for a in existing})
    for account in accounts:
        wanted = settings(sb, account.provider, 2)
        for key in secret_keys(account.provider):
            assert environ[account.env_vars[key]] == wanted[key], (account.provider, key)
        assert {k: v for k, v in account.values.items() if k in wanted} == {k: v for k, v in wanted.items() if k not in secret_keys(account.provider)}
    text = Path(path).read_text()
    secrets = [settings(sb, p, a)[k] for p in PROVIDERS for a in (1, 2) for k in secret_keys(p)]
    assert not [v for v in secrets if v in text], "no secret in the file"
    # A key shared by the accounts is named by account 1's variable; the others get their own.
    by_provider = {a.provider: a for a in accounts}
    assert by_provider["mintlify"].env_vars["api_key"] == "MINTLIFY_API_KEY"
    assert by_provider["formbricks"].env_vars["hub_api_key"] == "FORMBRICKS_HUB_API_KEY"
    assert by_provider["usersnap"].env_vars["jwt_secret"] == "USERSNAP_JWT_SECRET_2"
    assert set(variables) == {"FEEDBACKKIT_API_KEY_2", "MAPBOX_ACCESS_TOKEN_2", "USERSNAP_JWT_SECRET_2"}


def test_a_one_account_sandbox_declares_no_more_accounts(tmp_path: Path):
    sandbox = Sandbox(SandboxState(days=1, per_day=1))
    assert sandbox.accounts_env() == {}
    path = tmp_path / "accounts.yaml"
    path.write_text(sandbox.accounts_file("http://127.0.0.1:1"))
    assert load_accounts(path, SPECS, {}) == []


@pytest.fixture
def cli_sandbox(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """``feedback-pipeline sandbox --accounts 2`` in tmp_path; yields it and its output up to
    the control API line (stopped with SIGTERM, as Ctrl-C or a service manager would)."""
    command = [sys.executable, "-m", "feedback_pipeline.cli", "sandbox", "--port", "0", "--accounts", "2", "--days", "2", "--per-day", "2"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line.rstrip("\n"))
            if line.startswith("Control API"):
                break
        yield proc, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.timeout(120)
def test_the_sandbox_command_with_two_accounts_prints_the_accounts_file(cli_sandbox: tuple[subprocess.Popen, list[str]], tmp_path: Path):
    proc, lines = cli_sandbox
    exports = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))
    path = tmp_path / "data" / "sandbox-accounts.yaml"
    assert exports[ACCOUNTS_FILE_VAR] == str(path)
    assert {"MINTLIFY_PROJECT_ID", "USERSNAP_JWT_SECRET_2", "MAPBOX_ACCESS_TOKEN_2", "FEEDBACKKIT_API_KEY_2"} <= set(exports)
    accounts = load_accounts(path, SPECS, exports)
    assert sorted(a.provider for a in accounts) == sorted(PROVIDERS)
    # The file points at the server that printed it, and account 2's settings work there.
    (mapbox,) = [a for a in accounts if a.provider == "mapbox"]
    response = httpx.get(f"{mapbox.values['base_url']}/user-feedback/v1/feedback", params={"access_token": exports[mapbox.env_vars["access_token"]]})
    assert response.status_code == 200 and len(response.json()["items"]) == 4
    assert proc.poll() is None


def test_the_demo_summary_has_a_row_per_provider_and_account_synced_or_not(sb: SandboxServer, tmp_path: Path):
    second = settings(sb, "mintlify", 2)["project_id"]
    con = duckdb.connect(str(tmp_path / "summary.duckdb"))
    con.execute("CREATE TABLE feedback (provider VARCHAR, account_id VARCHAR)")
    con.execute("CREATE TABLE feedback_rejects (provider VARCHAR, account_id VARCHAR)")
    con.execute("INSERT INTO feedback VALUES ('mintlify', ?), ('mintlify', ?), ('mapbox', 'sandbox-org')", [second, second])
    con.execute("INSERT INTO feedback_rejects VALUES ('mintlify', ?)", [second])
    before = _requests_by_account(sb)
    LIST["mintlify"](settings(sb, "mintlify", 2))
    after_backfill = _requests_by_account(sb)
    LIST["mintlify"](settings(sb, "mintlify", 1))
    rows = {(r[0], r[1]): r[2:] for r in _account_rows(sb, con, before, after_backfill, _requests_by_account(sb))}
    assert len(rows) == 2 * len(PROVIDERS)
    assert rows[("mintlify", second)] == (1, 0, 2, 1)
    assert rows[("mintlify", mint.PROJECT_ID)] == (0, 1, 0, 0)
    assert rows[("mapbox", "sandbox-org")] == (0, 0, 1, 0)
