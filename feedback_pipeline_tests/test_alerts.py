"""Failure alerts: the ``feedback_alert_on_failure`` sensor evaluated against a real (SQLite)
instance holding real failed runs, posting to a webhook receiver on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import dagster as dg
import pytest

from feedback_pipeline.alerts import RESOURCE_KEY, SENSOR_NAME, AlertCursor, AlertWebhookResource, build_alert_sensor
from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.providers.base import ConfigurationError
from feedback_pipeline.providers.formbricks import SPEC as FORMBRICKS
from feedback_pipeline.sandbox.server import free_port

UTC = timezone.utc
WRONG_HUB_KEY = "hub_wrong_key_for_alerts_0123456789"
PROBE = dg.AssetKey("probe_feedback")
UI = "http://127.0.0.1:3000"


class Receiver:
    """A webhook receiver on loopback that keeps every JSON body it is sent."""

    def __init__(self, port: int = 0):
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0KEN-alert-secret-42"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None, **context: object) -> str:
    """One evaluation as the daemon runs it; returns the cursor the sensor leaves."""
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, **context))
    assert data.cursor is not None
    return data.cursor


# -- a probe asset: real failed runs and check evaluations without the sandbox -----------------


def probe_asset(error: str | None, *, checks: tuple[tuple[str, dg.AssetCheckSeverity, bool], ...] = ()) -> dg.AssetsDefinition:
    @dg.asset(key=PROBE, check_specs=[dg.AssetCheckSpec(name, asset=PROBE) for name, _, _ in checks])
    def _probe():
        if error is not None:
            raise RuntimeError(error)
        yield dg.MaterializeResult()
        for name, severity, passed in checks:
            yield dg.AssetCheckResult(check_name=name, passed=passed, severity=severity, metadata={"duplicate_keys": 3})

    return _probe


def probe_sensor_context(receiver_url: str, secret: str = "unused") -> dict:
    hub = FORMBRICKS.resource(hub_url="http://127.0.0.1:9", hub_api_key=secret, tenant_id="t")
    return {"resources": {RESOURCE_KEY: AlertWebhookResource(webhook_url=receiver_url, ui_url=UI, timeout_seconds=5), "formbricks": hub}}


PROBE_SENSOR = build_alert_sensor(watched=[PROBE], secret_resource_keys=["formbricks"])


# -- tests ---------------------------------------------------------------------------------------


def test_a_failed_run_of_the_provider_assets_is_posted_once_with_job_run_error_and_link_and_no_secret(
    sandbox, instance: dg.DagsterInstance, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path
):
    env = {
        **{k: v for k, v in sandbox.env().items() if k.startswith("FORMBRICKS_")},
        "FORMBRICKS_HUB_API_KEY": WRONG_HUB_KEY,
        "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
        "FEEDBACK_ALERT_WEBHOOK_URL": receiver.url,
        "FEEDBACK_UI_URL": UI,
        "FEEDBACK_HTTP_MAX_ATTEMPTS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    defs = build_definitions(env)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    resources = defs.get_repository_def().get_top_level_resources()  # what the code server passes

    cursor = evaluate(sensor, instance, None, resources=resources)  # the first evaluation starts at now
    run = defs.resolve_job_def("feedback_ingest").execute_in_process(
        instance=instance, partition_key=datetime.now(UTC).date().isoformat(), raise_on_error=False
    )
    assert not run.success
    cursor = evaluate(sensor, instance, cursor, resources=resources)
    cursor = evaluate(sensor, instance, cursor, resources=resources)  # nothing new: nothing posted

    assert len(receiver.received) == 1, receiver.received
    assert set(receiver.received[0]) == {"text"}
    text = receiver.received[0]["text"]
    lines = text.splitlines()
    assert lines[0] == f"Feedback pipeline run failed: job feedback_ingest, run {run.run_id}"
    assert lines[1].startswith("Failed steps: ") and "none" not in lines[1]
    assert lines[2].startswith("Error: ") and "HTTP 401" in lines[2] and "FORMBRICKS_HUB_API_KEY" in text
    assert lines[-1] == f"{UI}/runs/{run.run_id}"
    for secret in (WRONG_HUB_KEY, "T0KEN-alert-secret-42"):
        assert secret not in text and secret not in cursor
    assert AlertCursor.load(cursor).pending == []


def test_every_configured_secret_is_removed_from_the_error_line(instance: dg.DagsterInstance, receiver: Receiver):
    secret = "sk_live/alert+secret 0123456789"
    error = (
        f"boom: key {secret} (encoded {quote(secret, safe='')}) at https://hub.example/api?token=plain-token-123 "
        f"posting to {receiver.url} with Bearer abcdefghijklmnop"
    )
    cursor = evaluate(PROBE_SENSOR, instance, None, **probe_sensor_context(receiver.url, secret))
    run = dg.materialize([probe_asset(error)], instance=instance, raise_on_error=False)
    assert not run.success
    evaluate(PROBE_SENSOR, instance, cursor, **probe_sensor_context(receiver.url, secret))

    assert len(receiver.received) == 1
    text = receiver.received[0]["text"]
    assert "RuntimeError: boom: key ***" in text
    for leaked in (secret, quote(secret, safe=""), "plain-token-123", "T0KEN-alert-secret-42", "abcdefghijklmnop"):
        assert leaked not in text, leaked


def test_a_failed_error_check_is_posted_once_and_warnings_and_passing_runs_are_not(instance: dg.DagsterInstance, receiver: Receiver):
    checks = (
        ("unique_keys", dg.AssetCheckSeverity.ERROR, False),
        ("reject_rate", dg.AssetCheckSeverity.WARN, False),
        ("collected_at_valid", dg.AssetCheckSeverity.ERROR, True),
    )
    context = probe_sensor_context(receiver.url)
    cursor = evaluate(PROBE_SENSOR, instance, None, **context)
    assert dg.materialize([probe_asset(None)], instance=instance).success  # no check: no alert
    result = dg.materialize([probe_asset(None, checks=checks)], instance=instance)
    assert result.success  # a failed check does not fail the run; the alert is the signal
    for _ in range(2):
        cursor = evaluate(PROBE_SENSOR, instance, cursor, **context)

    assert [m["text"].splitlines()[0] for m in receiver.received] == ["Feedback check failed (ERROR): probe_feedback / unique_keys"]
    text = receiver.received[0]["text"]
    assert f"run {result.run_id}" in text and "Error: duplicate_keys=3" in text and text.endswith(f"/runs/{result.run_id}")


def test_failures_before_the_first_evaluation_are_not_replayed(instance: dg.DagsterInstance, receiver: Receiver):
    assert not dg.materialize([probe_asset("old failure")], instance=instance, raise_on_error=False).success
    context = probe_sensor_context(receiver.url)
    cursor = evaluate(PROBE_SENSOR, instance, None, **context)
    evaluate(PROBE_SENSOR, instance, cursor, **context)
    assert receiver.received == []


def test_runs_of_other_assets_are_not_alerted(instance: dg.DagsterInstance, receiver: Receiver):
    @dg.asset
    def unrelated():
        raise RuntimeError("not ours")

    context = probe_sensor_context(receiver.url)
    cursor = evaluate(PROBE_SENSOR, instance, None, **context)
    assert not dg.materialize([unrelated], instance=instance, raise_on_error=False).success
    evaluate(PROBE_SENSOR, instance, cursor, **context)
    assert receiver.received == []


def test_a_receiver_that_is_down_fails_nothing_and_gets_the_alert_once_when_it_is_back(instance: dg.DagsterInstance, capfd: pytest.CaptureFixture[str]):
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}/hooks/T0KEN-alert-secret-42"
    context = probe_sensor_context(url)
    cursor = evaluate(PROBE_SENSOR, instance, None, **context)
    first = dg.materialize([probe_asset("first failure")], instance=instance, raise_on_error=False)
    second = dg.materialize([probe_asset("second failure")], instance=instance, raise_on_error=False)
    assert not first.success and not second.success

    cursor = evaluate(PROBE_SENSOR, instance, cursor, **context)  # delivery fails: logged, kept
    assert [a.key for a in AlertCursor.load(cursor).pending] == [f"run:{first.run_id}", f"run:{second.run_id}"]
    logged = capfd.readouterr().err  # the sensor's log (the daemon's log in production)
    assert "delivering an alert failed (ConnectError); 2 alert(s) will be retried" in logged
    assert "T0KEN-alert-secret-42" not in logged

    receiver = Receiver(port)
    try:
        cursor = evaluate(PROBE_SENSOR, instance, cursor, **context)
        cursor = evaluate(PROBE_SENSOR, instance, cursor, **context)
        third = dg.materialize([probe_asset("third failure")], instance=instance, raise_on_error=False)
        cursor = evaluate(PROBE_SENSOR, instance, cursor, **context)
        cursor = evaluate(PROBE_SENSOR, instance, cursor, **context)
    finally:
        receiver.stop()
    assert [m["text"].splitlines()[0].rsplit(" ", 1)[1] for m in receiver.received] == [first.run_id, second.run_id, third.run_id]
    assert AlertCursor.load(cursor).pending == []


def test_the_sensor_exists_only_when_the_webhook_is_set_and_runs_by_default():
    assert SENSOR_NAME not in {s.name for s in build_definitions({}).sensors}
    defs = build_definitions({"FEEDBACK_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook"})
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


@pytest.mark.parametrize("var", ["FEEDBACK_ALERT_WEBHOOK_URL", "FEEDBACK_UI_URL"])
def test_a_malformed_alert_url_fails_at_load_naming_the_variable(var: str):
    env = {"FEEDBACK_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook", var: "hooks.example/abc"}
    with pytest.raises(ConfigurationError, match=var) as failure:
        build_definitions(env)
    assert "hooks.example/abc" not in str(failure.value)


def test_a_run_stopped_cleanly_on_a_spent_request_budget_is_not_alerted(instance: dg.DagsterInstance, receiver: Receiver):
    from feedback_pipeline.budget import STOPPED_BY_BUDGET, STOPPED_TAG

    context = probe_sensor_context(receiver.url)
    cursor = evaluate(PROBE_SENSOR, instance, None, **context)
    # The step tags the run before it raises its Failure (feedback_resume continues it).
    stopped = dg.materialize([probe_asset("budget spent")], instance=instance, tags={STOPPED_TAG: STOPPED_BY_BUDGET}, raise_on_error=False)
    failed = dg.materialize([probe_asset("a real failure")], instance=instance, raise_on_error=False)
    assert not stopped.success and not failed.success
    evaluate(PROBE_SENSOR, instance, cursor, **context)
    assert [m["text"].splitlines()[0] for m in receiver.received] == [f"Feedback pipeline run failed: job __ephemeral_asset_job__, run {failed.run_id}"]
