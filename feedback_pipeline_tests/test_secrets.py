"""No secret leaves the pipeline, whatever fails; every value reaches SQL as a bound parameter;
malformed settings fail before any request, naming the variable (and never echoing a secret).

The failure paths of ``test_bad_input.py`` and ``test_properties.py`` (rate limits with and
without ``Retry-After``, 5xx, dropped connections, outages, pages that are not JSON, HTML with 200,
wrong envelopes, refused credentials, a server that echoes the request back, bad records) run
as real Dagster runs with the credentials read through ``EnvVar`` as in production, and the known
secret values (the sandbox's credentials and every Usersnap token minted) are looked for in:
captured stdout/stderr, the Python log, the instance's event log (serialized), the run and its
job/execution-plan snapshots, the exceptions' text (chained causes included) and the bytes of
every file the warehouse writes (``FEEDBACK_DB``, ``.work``, ``.wal``, lock and temp files).
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import httpx
import jwt
import orjson
import pytest

import feedback_pipeline.providers.mapbox as mapbox_module
from feedback_pipeline.assets import build_feedback_assets
from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.http import ProviderError
from feedback_pipeline.partitions import feedback_partitions
from feedback_pipeline.providers import get_spec, names, provider_from_env
from feedback_pipeline.providers.base import ConfigurationError, Provider, Window
from feedback_pipeline.providers.feedbackkit import camel
from feedback_pipeline.providers.usersnap import UsersnapProvider
from feedback_pipeline.sandbox import mapbox as sandbox_mapbox
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.sandbox.server import SandboxServer
from feedback_pipeline.sandbox.usersnap import JWT_KID, JWT_SECRET
from feedback_pipeline.settings import PipelineResource
from feedback_pipeline.warehouse import Warehouse

from .conftest import FAST_RETRIES, make_sandbox, run_sync

UTC = timezone.utc
PROVIDERS = names()
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
SECRET_VARS = ("MINTLIFY_API_KEY", "USERSNAP_JWT_SECRET", "FORMBRICKS_HUB_API_KEY", "MAPBOX_ACCESS_TOKEN", "FEEDBACKKIT_API_KEY")


# -- fixtures and the leak detector -------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    server = make_sandbox(PROVIDERS, days=2, per_day=8)
    yield server
    server.stop()


@pytest.fixture
def sb(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    state = server.sandbox.state
    state.clear_faults()
    state.clear_log()
    state.extra.clear()
    server.sandbox.generate()
    # Credentials live in the environment and reach the resources through EnvVar, as in production.
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    return server


def today() -> date:
    return datetime.now(UTC).date()


def fragments(secret: str) -> list[str]:
    """The secret and long pieces of it (a truncated excerpt must not leak half a key either)."""
    out = [secret]
    if len(secret) >= 20:
        out += [secret[:12], secret[-12:], secret[len(secret) // 2 - 6 : len(secret) // 2 + 6]]
    return out


class Leaks:
    """Known secret values and the places they must never appear."""

    def __init__(self, secrets: list[str]):
        self.secrets = [s for s in secrets if s]

    def add_token(self, token: str) -> None:
        """A minted bearer token: the whole token and its signature are secret."""
        self.secrets += [token, token.rsplit(".", 1)[-1]]

    def check(self, where: str, data: str | bytes) -> None:
        text = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
        for secret in self.secrets:
            for piece in fragments(secret):
                assert piece.encode() not in text, f"a secret ({piece[:4]}...) appears in {where}"

    def check_files(self, directory: Path) -> int:
        seen = 0
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                self.check(f"file {path.name}", path.read_bytes())
                seen += 1
        return seen

    def check_exception(self, exc: BaseException) -> None:
        self.check("exception text", "".join(traceback.format_exception(exc)) + repr(exc) + str(exc))

    def check_run(self, instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
        """Event log, run record and snapshots of ``result``'s run; returns the event log text."""
        run_id = result.run_id
        events = "\n".join(dg.serialize_value(e) for e in instance.all_logs(run_id))
        self.check("the Dagster event log", events)
        run = instance.get_run_by_id(run_id)
        self.check("the run record (tags, config)", dg.serialize_value(run))
        self.check("the job snapshot", dg.serialize_value(instance.get_job_snapshot(run.job_snapshot_id)))
        self.check("the execution plan snapshot", dg.serialize_value(instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)))
        for event in result.all_events:
            if event.event_specific_data is not None and getattr(event.event_specific_data, "error", None) is not None:
                self.check("a step's error", event.event_specific_data.error.to_string())
        return events


def known_secrets(server: SandboxServer) -> Leaks:
    env = server.env()
    return Leaks([env[v] for v in SECRET_VARS] + [sandbox_mapbox.NO_SCOPE_TOKEN])


def resolved_resource(provider: str) -> Any:
    """The provider's resource with the environment's values (what Dagster resolves EnvVar to)."""
    return get_spec(provider).resource_from_env(os.environ, plain=True)


def assets() -> list[dg.AssetsDefinition]:
    partitions = feedback_partitions(today() - timedelta(days=30))
    return [build_feedback_assets(partitions)]


def failed_providers(result: dg.ExecuteInProcessResult) -> set[str]:
    """The providers the one step's Failure names."""
    [failure] = result.get_step_failure_events()
    return set(failure.event_specific_data.user_failure_data.metadata["failed_providers"].value.split(", "))


def env_resources(db: Path, **overrides: Any) -> dict[str, Any]:
    """Resources as definitions.py builds them: every credential an EnvVar."""
    resources: dict[str, Any] = {name: get_spec(name).resource_from_env(os.environ) for name in PROVIDERS}
    resources["pipeline"] = PipelineResource(db_path=str(db), http_base_delay_seconds=0.01, retry_after_floor_seconds=0.01, http_max_attempts=3)
    resources.update(overrides)
    return resources


def materialize(db: Path, instance: dg.DagsterInstance, **overrides: Any) -> dg.ExecuteInProcessResult:
    first = today() - timedelta(days=1)
    return dg.materialize(
        assets(),
        resources=env_resources(db, **overrides),
        tags={RANGE_START: first.isoformat(), RANGE_END: today().isoformat()},
        instance=instance,
        raise_on_error=False,
    )


class Capture(httpx.BaseTransport):
    """Forwards to the network and records every request's Authorization header."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.authorization: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "authorization" in request.headers:
            self.authorization.append(request.headers["authorization"])
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class Echo(httpx.BaseTransport):
    """A server that echoes the request in its error body: first the credentials it received
    (bearer token, X-API-Key, the access_token query parameter) after ``pad`` characters, so a
    key can straddle the client's 200-character excerpt limit, then the URL and every header.
    Real APIs do quote requests back like this."""

    def __init__(self, status: int, pad: int, captured: Capture | None = None):
        self.status, self.pad, self.captured = status, pad, captured

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        authorization = request.headers.get("authorization", "")
        if self.captured is not None and authorization:
            self.captured.authorization.append(authorization)
        credentials = [authorization.partition(" ")[2], request.headers.get("x-api-key", ""), request.url.params.get("access_token", "")]
        quoted = " ".join(c for c in credentials if c)
        echo = f"{'x' * self.pad}{quoted} (you sent {request.url} with {dict(request.headers)})"
        return httpx.Response(self.status, json={"message": echo}, request=request)


# -- every failure path, through Dagster ------------------------------------------------------

# Each run gives every provider a different failure; three rotations cover each kind several times.
FAILURES = [
    ("rate_limit", dict(retry_after=None)),
    ("rate_limit", dict(retry_after="0")),
    ("rate_limit", dict(retry_after="Sat, 01 Jan 2000 00:00:00 GMT")),
    ("server_error", dict(status=503)),
    ("drop", {}),
    ("html_200", {}),
    ("not_json", {}),
    ("bad_envelope", {}),
    ("server_error", dict(status=502)),
]


@pytest.mark.parametrize("rotation", [0, 1, 2])
def test_no_failure_path_leaks_a_secret(sb: SandboxServer, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, rotation: int) -> None:
    leaks = known_secrets(sb)
    db = tmp_path / "db" / "feedback.duckdb"
    for i, name in enumerate(PROVIDERS):
        kind, extra = FAILURES[(i * 3 + rotation) % len(FAILURES)]
        sb.sandbox.state.add_fault(name, Fault(kind=kind, count=None, **extra))
    with dg.instance_for_test() as instance:
        result = materialize(db, instance)
        assert not result.success
        assert failed_providers(result) == set(PROVIDERS)
        events = leaks.check_run(instance, result)
        assert "failed after" in events  # the failures were really logged
        assert leaks.check_files(Path(instance.root_directory)) > 0  # the instance's own storage
    out, err = capfd.readouterr()
    leaks.check("stdout", out)
    leaks.check("stderr", err)
    leaks.check("the Python log", caplog.text)
    assert leaks.check_files(tmp_path) > 0  # FEEDBACK_DB, .work, .wal, lock and temp files


def test_refused_credentials_and_bad_records_leak_nothing(sb: SandboxServer, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """401 for every provider (and Mapbox's 403 for a token without the scope), then a good run
    whose pages carry rejected records (their payloads are stored)."""
    leaks = known_secrets(sb)
    leaks.secrets += ["mint_wrong_key_0123456789abcdef", "wrong-jwt-secret-0123456789abcdef", "hub_wrong_key_0123456789"]
    monkeypatch.setenv("MINTLIFY_API_KEY", "mint_wrong_key_0123456789abcdef")
    monkeypatch.setenv("USERSNAP_JWT_SECRET", "wrong-jwt-secret-0123456789abcdef")
    monkeypatch.setenv("FORMBRICKS_HUB_API_KEY", "hub_wrong_key_0123456789")
    monkeypatch.setenv("MAPBOX_ACCESS_TOKEN", sandbox_mapbox.NO_SCOPE_TOKEN)
    monkeypatch.setenv("FEEDBACKKIT_API_KEY", "sf_wrong_key_0123456789abcdef")
    leaks.secrets.append("sf_wrong_key_0123456789abcdef")
    db = tmp_path / "db" / "feedback.duckdb"
    with dg.instance_for_test() as instance:
        refused = materialize(db, instance)
        assert not refused.success and failed_providers(refused) == set(PROVIDERS)
        events = leaks.check_run(instance, refused)
        assert "HTTP 401" in events and "HTTP 403" in events and "user-feedback:read" in events
        for key, value in sb.env().items():
            monkeypatch.setenv(key, value)
        # A record that is rejected, so a payload is stored too.
        sb.sandbox.add("feedbackkit", {"id": "rejected-1", "createdAt": "not a date", "description": "bad"})
        good = materialize(db, instance)
        assert good.success
        leaks.check_run(instance, good)
        leaks.check_files(Path(instance.root_directory))
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM feedback_rejects WHERE payload IS NOT NULL").fetchone()[0] >= 1
        assert con.execute("SELECT count(*) FROM feedback").fetchone()[0] > 0
    finally:
        con.close()
    out, err = capfd.readouterr()
    leaks.check("stdout", out)
    leaks.check("stderr", err)
    leaks.check("the Python log", caplog.text)
    leaks.check_files(tmp_path)


@pytest.mark.parametrize("status", [401, 500], ids=["refused", "retried"])
@pytest.mark.parametrize("pad", [0, 160, 174], ids=lambda p: f"pad{p}")
def test_a_server_that_echoes_the_request_leaks_nothing(sb: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, status: int, pad: int) -> None:
    """Error bodies that quote the URL (Mapbox's token is a query parameter) and the headers
    (API keys, the Usersnap JWT), with the key placed across the 200-character excerpt limit."""
    leaks = known_secrets(sb)
    captured = Capture()
    echo = Echo(status, pad, captured)
    original = Provider.http_client
    monkeypatch.setattr(Provider, "http_client", lambda self, **kw: original(self, **{"transport": echo, **kw}))
    monkeypatch.setattr(mapbox_module.AccessTokenTransport, "_transport_for", lambda self, url: echo)
    db = tmp_path / "db" / "feedback.duckdb"
    with dg.instance_for_test() as instance:
        result = materialize(db, instance)
        assert not result.success and failed_providers(result) == set(PROVIDERS)
        tokens = [h.split(" ", 1)[1] for h in captured.authorization if h.startswith("Bearer ey")]
        assert tokens, "no Usersnap token was sent"
        for token in set(tokens):
            leaks.add_token(token)
        events = leaks.check_run(instance, result)
        assert "Response:" in events or "body:" in events  # the excerpt is there, redacted
        leaks.check_files(Path(instance.root_directory))
    out, err = capfd.readouterr()
    leaks.check("stdout", out)
    leaks.check("stderr", err)
    leaks.check("the Python log", caplog.text)
    leaks.check_files(tmp_path)


def test_exceptions_of_direct_engine_runs_leak_nothing(sb: SandboxServer, tmp_path: Path) -> None:
    """The engine's own exceptions (what a caller outside Dagster sees), chained causes included."""
    leaks = known_secrets(sb)
    env = sb.env()
    window = Window.for_days(today() - timedelta(days=1), today())
    for i, name in enumerate(PROVIDERS):
        captured = Capture()
        for echo_status in (401, 503):
            transport = Echo(echo_status, 174, captured)
            if name == "mapbox":
                provider = provider_from_env(name, env, policy=FAST_RETRIES, inner_transport=transport)
            else:
                provider = provider_from_env(name, env, policy=FAST_RETRIES)
                original = provider.http_client
                provider.http_client = lambda _o=original, _t=transport, **kw: _o(**{"transport": _t, **kw})  # type: ignore[method-assign]
            with pytest.raises(ProviderError) as caught:
                run_sync(provider, Warehouse(tmp_path / f"{name}{echo_status}.duckdb"), window)
            for header in captured.authorization:
                if header.startswith("Bearer ey"):
                    leaks.add_token(header.split(" ", 1)[1])
            leaks.check_exception(caught.value)
            assert name in str(caught.value)
    leaks.check_files(tmp_path)


# -- Usersnap tokens --------------------------------------------------------------------------


def test_usersnap_tokens_are_hs256_with_kid_and_expire_within_five_minutes(sb: SandboxServer, tmp_path: Path) -> None:
    capture = Capture()
    provider = provider_from_env("usersnap", sb.env(), policy=FAST_RETRIES)
    original = provider.http_client
    provider.http_client = lambda **kw: original(**{"transport": capture, **kw})  # type: ignore[method-assign]
    sb.sandbox.state.add_fault("usersnap", Fault(kind="rate_limit", count=2, retry_after="0"))
    before = time.time()
    report = run_sync(provider, Warehouse(tmp_path / "u.duckdb"), Window.for_days(today() - timedelta(days=1), today()))
    assert report.retries == 2 and len(capture.authorization) == report.requests
    for header in capture.authorization:
        scheme, token = header.split(" ", 1)
        assert scheme == "Bearer"
        head = jwt.get_unverified_header(token)
        assert head["alg"] == "HS256" and head["kid"] == JWT_KID and head.get("typ", "JWT") == "JWT"
        claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])  # signed with the shared secret
        assert set(claims) == {"iat", "exp"}  # nothing else travels in the token
        assert 0 < claims["exp"] - claims["iat"] <= 300
        assert before - 5 <= claims["iat"] <= time.time() + 1
        assert claims["exp"] <= time.time() + 300 + 1
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, "another-secret-of-the-same-length-0123456789abcdef", algorithms=["HS256"])
    # The auth object never shows the secret.
    assert JWT_SECRET not in repr(provider.auth) and JWT_SECRET not in str(vars(provider.auth).get("minted"))
    assert provider.auth.minted and all(exp - iat <= 300 for iat, exp in provider.auth.minted)


def test_a_usersnap_token_is_reminted_before_it_expires(sb: SandboxServer) -> None:
    now = [time.time()]
    provider = provider_from_env("usersnap", sb.env(), policy=FAST_RETRIES, clock=lambda: now[0])
    provider.open().close()
    first = provider.auth.token()
    now[0] += 250  # within a minute of expiry
    second = provider.auth.token()
    assert first != second and len(provider.auth.minted) == 2
    assert jwt.decode(second, JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})["exp"] == int(now[0]) + 300


# -- SQL: every value is a bound parameter ------------------------------------------------------

SQL_LOOKING = [
    "x'); DROP TABLE feedback;--",
    "' OR '1'='1",
    '"; DELETE FROM feedback_rejects; --',
    "$p",
    "$1",
    "?",
    "%s",
    ":name",
    "\\",
    "\\'",
    "'' ''",
    "/* comment */",
    "--",
    "NULL",
    "feedback_id",
    "a;b",
    "{\"json\": 'not'}",
    "ü'𝄞\t\n",
]


def test_sql_looking_ids_text_and_account_round_trip_verbatim(sb: SandboxServer, tmp_path: Path) -> None:
    account = "proj'); DROP TABLE feedback;--"
    provider = provider_from_env("feedbackkit", sb.env(), policy=FAST_RETRIES, overrides={"project": account})
    collected = f"{today().isoformat()}T00:00:01Z"
    store = sb.sandbox.emulators["feedbackkit"].store
    store.replace_all([])
    for i, text in enumerate(SQL_LOOKING):
        sb.sandbox.add("feedbackkit", {
            "id": text, "title": text, "description": f"{text} #{i}", "status": text, "category": text,
            "userId": text, "userEmail": text, "createdAt": collected, "updatedAt": collected, "voteCount": 1, text: text,
        })
    # A record rejected with SQL in its id and payload.
    sb.sandbox.add("feedbackkit", {"id": "'); DROP TABLE feedback_rejects;--", "createdAt": "'; SELECT 1; --", "description": "$1"})
    wh = Warehouse(tmp_path / "sql.duckdb")
    window = Window.for_days(today(), today())
    first = run_sync(provider, wh, window)
    assert first.counts.inserted == len(SQL_LOOKING) and first.counts.rejected == 1
    second = run_sync(provider, wh, window)
    assert second.counts.changed == 0  # the keys compare equal too
    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        rows = con.execute("SELECT account_id, feedback_id, title, body, provider_status, category, user_id, user_email, attributes FROM feedback").fetchall()
        rejects = con.execute("SELECT account_id, feedback_id, record_key, payload FROM feedback_rejects").fetchall()
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()
    assert {"feedback", "feedback_rejects"} <= tables
    by_id = {r[1]: r for r in rows}
    assert set(by_id) == set(SQL_LOOKING)
    for i, text in enumerate(SQL_LOOKING):
        acc, fid, title, body, status, category, user_id, email, attributes = by_id[text]
        assert (acc, fid, title, body, status, category, user_id, email) == (account, text, text, f"{text} #{i}", text, text, text, text)
        assert orjson.loads(attributes)[camel(text)] == text  # FeedbackKit keys are camelCased
    [(acc, fid, key, payload)] = rejects
    assert acc == account and fid == key == "'); DROP TABLE feedback_rejects;--"
    assert orjson.loads(payload)["createdAt"] == "'; SELECT 1; --"


# -- configuration errors: before any request, naming the variable, never echoing a secret -------

BAD_SETTINGS = [
    ("MAPBOX_BASE_URL", "api.mapbox.com", "mapbox_feedback"),
    ("MAPBOX_BASE_URL", "ftp://api.mapbox.com", "mapbox_feedback"),
    ("MAPBOX_BASE_URL", "https://", "mapbox_feedback"),
    ("MAPBOX_BASE_URL", "http://127.0.0.1:notaport", "mapbox_feedback"),
    ("MAPBOX_BASE_URL", "https://api.mapbox.com?access_token=pk.leaky", "mapbox_feedback"),
    ("USERSNAP_BASE_URL", "platform.usersnap.com/v0.1", "usersnap_feedback"),
    ("USERSNAP_BASE_URL", "https://user:hunter2@platform.usersnap.com/v0.1", "usersnap_feedback"),
    ("USERSNAP_BASE_URL", "http://[::1", "usersnap_feedback"),
    ("MINTLIFY_BASE_URL", "mailto:docs@example.com", "mintlify_feedback"),
    ("FEEDBACKKIT_BASE_URL", "//api.feedbackkit.app", "feedbackkit_feedback"),
    ("FORMBRICKS_HUB_URL", "http://hub.internal:99999", "formbricks_feedback"),
    ("MINTLIFY_API_KEY", "sk_live_4f1a2b3c4d5e6f708192a3b4", "mintlify_feedback"),
    ("MINTLIFY_API_KEY", "mint_sandbox_admin_7c4e19a2d5\n", "mintlify_feedback"),
    ("FEEDBACKKIT_API_KEY", " sf_sandbox_3b9d2c7e41f04a8c", "feedbackkit_feedback"),
    ("FORMBRICKS_HUB_API_KEY", "hub_sandbox_key_5e1f9c\r\nX-Injected: 1", "formbricks_feedback"),
    ("USERSNAP_JWT_SECRET", "usersnap-sändbox-secret-0123456789", "usersnap_feedback"),
    ("USERSNAP_PROJECT_ID", "3f6d2c1e-8a4b-4c7d-9e21-5b0a7f3c9d18\n", "usersnap_feedback"),
]


@pytest.mark.parametrize(("variable", "value", "asset"), BAD_SETTINGS, ids=[f"{v}={val!r}" for v, val, _ in BAD_SETTINGS])
def test_a_malformed_setting_fails_before_any_request_naming_the_variable(sb: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, asset: str) -> None:
    monkeypatch.setenv(variable, value)
    provider = asset.removesuffix("_feedback")
    resource = resolved_resource(provider)
    with pytest.raises(ConfigurationError, match=variable) as caught:
        get_spec(provider).provider(resource)
    message = str(caught.value)
    secretish = value.strip() if "KEY" in variable or "SECRET" in variable else "hunter2" if "hunter2" in value else "pk.leaky"
    assert secretish not in message
    # Through Dagster: the step fails at once with that message, and the provider got no request.
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets(),
            selection=[asset],
            resources=env_resources(tmp_path / "f.duckdb"),
            tags={RANGE_START: today().isoformat(), RANGE_END: today().isoformat()},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        error = result.get_step_failure_events()[0].event_specific_data.error
        text = error.to_string()
        assert variable in text and "ConfigurationError" in text
        assert secretish not in dg.serialize_value(list(instance.all_logs(result.run_id)))
    assert sb.sandbox.state.requests_for(provider) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [("FEEDBACK_HTTP_MAX_ATTEMPTS", "six"), ("FEEDBACK_HTTP_MAX_ATTEMPTS", "0"), ("FEEDBACK_HTTP_MAX_WAIT_SECONDS", "ten minutes"), ("FEEDBACK_HTTP_MAX_WAIT_SECONDS", "-5")],
)
def test_malformed_retry_settings_fail_at_load_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        build_definitions({variable: value})


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_missing_required_variable_is_named(sb: SandboxServer, monkeypatch: pytest.MonkeyPatch, provider: str) -> None:
    required = [s.var for s in get_spec(provider).settings if s.required]
    for var in required:
        with monkeypatch.context() as m:
            m.setenv(var, "")  # empty counts as not set
            with pytest.raises(ConfigurationError) as caught:
                get_spec(provider).provider(resolved_resource(provider))
            assert var in str(caught.value)
            assert all(other not in str(caught.value) for other in required if other != var)
    assert sb.sandbox.state.requests_for(provider) == []
