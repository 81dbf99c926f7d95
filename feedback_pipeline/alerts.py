"""Failure alerts: the sensor ``feedback_alert_on_failure`` posts ``{"text": ...}`` to a webhook.

Why a sensor and not a hook on the assets: a sensor runs in the daemon, outside the run, so a
webhook that is down can never fail or slow a run, and it sees failures that happen before any
step starts (a run worker that could not start, run monitoring). It reads two kinds of event
from the instance's event log, both through cursors that work on SQLite and PostgreSQL storage:

* ``RUN_FAILURE`` of a run that planned at least one watched asset (whatever the job's name):
  one alert naming the job, the run id, the failed steps and the first line of the first error;
  except a run the step tagged ``feedback/stopped=budget``: it stopped cleanly on a spent request
  budget, and ``feedback_resume`` continues it (nothing for an operator to do);
* ``ASSET_CHECK_EVALUATION`` with ``passed=False`` and severity ERROR on a watched asset, read
  from each run that finished (succeeded or failed) since the last evaluation: one alert each.

Delivery state lives in the sensor cursor (JSON): the two event cursors plus the alerts not yet
delivered. An evaluation first composes alerts for the new events, then delivers what is pending
in order and stops at the first failure (logged; retried at the next evaluation). The cursor is
saved when the evaluation returns, so an alert is posted again only if the daemon dies between a
successful POST and the end of that evaluation. On its first evaluation the sensor starts at the
newest events: turning alerts on does not replay the history.

Every alert's text passes through :func:`feedback_pipeline.http.redact_text` with every
configured secret (the ``secret_values()`` of each resource named in ``secret_resource_keys``:
the definitions pass every provider account's, those of ``FEEDBACK_ACCOUNTS_FILE`` included; and
the webhook URL itself, which embeds a token at Slack and most chat tools).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import dagster as dg
import httpx
from dagster._core.events import DagsterEventType  # the public event-type enum lives here

from .budget import STOPPED_BY_BUDGET, STOPPED_TAG
from .providers import asset_names
from .http import redact_text
from .providers.base import ConfigurationError

SENSOR_NAME = "feedback_alert_on_failure"
RESOURCE_KEY = "feedback_alerts"
WEBHOOK_VAR = "FEEDBACK_ALERT_WEBHOOK_URL"
UI_URL_VAR = "FEEDBACK_UI_URL"
BATCH = 50  # run-status events read per kind and evaluation; the rest waits for the next one
MAX_PENDING = 200  # undelivered alerts kept in the cursor; the oldest are dropped beyond it
MAX_ERROR_CHARS = 300
# Dagster wraps a step's own exception in these; the alert quotes the exception they wrap.
_WRAPPERS = ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError", "DagsterExecutionInterruptedError")


class AlertWebhookResource(dg.ConfigurableResource):
    """Where alerts go (``FEEDBACK_ALERT_WEBHOOK_URL``, read through ``EnvVar``: chat webhooks
    embed a token) and the web UI base for links (``FEEDBACK_UI_URL``, optional)."""

    webhook_url: str
    ui_url: str | None = None
    timeout_seconds: float = 10.0

    def post(self, text: str) -> None:
        """POST one ``{"text": ...}`` message; raises ``httpx.HTTPError`` when it was not accepted."""
        response = httpx.post(self.webhook_url, json={"text": text}, timeout=self.timeout_seconds, follow_redirects=False)
        response.raise_for_status()

    def run_link(self, run_id: str) -> str | None:
        return f"{self.ui_url.rstrip('/')}/runs/{quote(run_id)}" if self.ui_url else None


@dataclass(frozen=True)
class Alert:
    """One message to deliver; ``key`` identifies the failure so it is composed once."""

    key: str
    text: str


def alert_definitions(environ: Mapping[str, str], *, secret_resource_keys: Iterable[str] | None = None) -> dg.Definitions:
    """The sensor and its resource when ``FEEDBACK_ALERT_WEBHOOK_URL`` is set; nothing otherwise.

    ``secret_resource_keys`` name the resources whose ``secret_values()`` are removed from
    alerts (default: one per provider of the asset registry)."""
    if not environ.get(WEBHOOK_VAR):
        return dg.Definitions()
    for var in (WEBHOOK_VAR, UI_URL_VAR):
        value = environ.get(var)
        if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname):
            raise ConfigurationError(f"{var} must be an http(s) URL; got a value that is not one")
    resource = AlertWebhookResource(
        webhook_url=dg.EnvVar(WEBHOOK_VAR),
        ui_url=dg.EnvVar(UI_URL_VAR) if environ.get(UI_URL_VAR) else None,
    )
    sensor = build_alert_sensor(secret_resource_keys=secret_resource_keys)
    return dg.Definitions(sensors=[sensor], resources={RESOURCE_KEY: resource})


def build_alert_sensor(
    *,
    watched: Iterable[dg.AssetKey] | None = None,
    secret_resource_keys: Iterable[str] | None = None,
    minimum_interval_seconds: int = 30,
) -> dg.SensorDefinition:
    """The ``feedback_alert_on_failure`` sensor (see the module docstring). ``watched`` defaults
    to the provider assets of the registry."""
    watched_keys = frozenset(watched if watched is not None else (dg.AssetKey(n) for n in asset_names().values()))
    secret_keys = tuple(secret_resource_keys if secret_resource_keys is not None else asset_names())

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,  # alerts are switched on by setting the variable
        required_resource_keys={RESOURCE_KEY, *secret_keys},
        description="Posts one message to FEEDBACK_ALERT_WEBHOOK_URL per failed run of the feedback assets "
        "and per failed ERROR-severity check; undelivered messages are retried at the next evaluation.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        webhook: AlertWebhookResource = getattr(context.resources, RESOURCE_KEY)
        secrets = [webhook.webhook_url]
        for key in secret_keys:
            values = getattr(getattr(context.resources, key), "secret_values", None)
            secrets.extend(values() if values else [])
        state = AlertCursor.load(context.cursor)
        if state.is_new:
            state.start_at_newest(context.instance)
        else:
            for alert in collect_alerts(context.instance, state, watched_keys, webhook, secrets):
                state.add(alert)
        delivered, error = state.deliver(webhook.post)
        if error:
            context.log.warning(f"{SENSOR_NAME}: delivering an alert failed ({error}); {len(state.pending)} alert(s) will be retried at the next evaluation")
        context.update_cursor(state.dump())
        return dg.SkipReason(f"delivered {delivered} alert(s); {len(state.pending)} pending")

    return _sensor


# -- cursor ------------------------------------------------------------------------------------


@dataclass
class AlertCursor:
    """The sensor's state: where each event stream was read up to, and undelivered alerts."""

    failure: str | None
    success: str | None
    pending: list[Alert]
    is_new: bool = False

    @classmethod
    def load(cls, raw: str | None) -> "AlertCursor":
        if not raw:
            return cls(None, None, [], is_new=True)
        data = json.loads(raw)
        return cls(data.get("failure"), data.get("success"), [Alert(a["key"], a["text"]) for a in data.get("pending", [])])

    def dump(self) -> str:
        return json.dumps({"failure": self.failure, "success": self.success, "pending": [a.__dict__ for a in self.pending]})

    def start_at_newest(self, instance: dg.DagsterInstance) -> None:
        """Skip the history: the streams start after their newest event."""
        for attr, kind in (("failure", DagsterEventType.RUN_FAILURE), ("success", DagsterEventType.RUN_SUCCESS)):
            setattr(self, attr, instance.fetch_run_status_changes(kind, limit=1, ascending=False).cursor)

    def add(self, alert: Alert) -> None:
        if any(a.key == alert.key for a in self.pending):
            return
        self.pending.append(alert)
        del self.pending[:-MAX_PENDING]

    def deliver(self, post: Any) -> tuple[int, str | None]:
        """Post pending alerts in order until one fails; (delivered, error class or None)."""
        delivered = 0
        while self.pending:
            try:
                post(self.pending[0].text)
            except httpx.HTTPError as exc:
                # The exception text can hold the webhook URL (a secret): name its class only.
                status = getattr(getattr(exc, "response", None), "status_code", None)
                return delivered, type(exc).__name__ + (f" HTTP {status}" if status else "")
            self.pending.pop(0)
            delivered += 1
        return delivered, None


# -- composing alerts --------------------------------------------------------------------------


def collect_alerts(
    instance: dg.DagsterInstance,
    state: AlertCursor,
    watched: frozenset[dg.AssetKey],
    webhook: AlertWebhookResource,
    secrets: list[str],
) -> list[Alert]:
    """Alerts for the run-status events after the cursor (which it advances)."""
    alerts: list[Alert] = []
    for attr, kind in (("failure", DagsterEventType.RUN_FAILURE), ("success", DagsterEventType.RUN_SUCCESS)):
        result = instance.fetch_run_status_changes(kind, limit=BATCH, cursor=getattr(state, attr), ascending=True)
        setattr(state, attr, result.cursor)
        for record in result.records:
            run = instance.get_run_by_id(record.run_id)
            if run is None:
                continue
            stopped_cleanly = run.tags.get(STOPPED_TAG) == STOPPED_BY_BUDGET
            if kind == DagsterEventType.RUN_FAILURE and not stopped_cleanly and _planned_assets(instance, run.run_id) & watched:
                alerts.append(_run_alert(instance, run, record.event_log_entry, webhook, secrets))
            alerts.extend(_check_alerts(instance, run, watched, webhook, secrets))
    return alerts


def _planned_assets(instance: dg.DagsterInstance, run_id: str) -> set[dg.AssetKey]:
    """The assets a run was created to materialize (planned events are written at creation,
    so this also holds for runs that failed before any step started)."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    return {r.event_log_entry.dagster_event.asset_key for r in records if r.event_log_entry.dagster_event}


def _run_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, failure: Any, webhook: AlertWebhookResource, secrets: list[str]) -> Alert:
    step_failures = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE).records
    steps = sorted({r.event_log_entry.step_key for r in step_failures if r.event_log_entry.step_key})
    error = _step_error(step_failures[0].event_log_entry) if step_failures else None
    if error is None:
        data = failure.dagster_event.event_specific_data if failure.dagster_event else None
        error = _error_line(getattr(data, "error", None)) or failure.message or ""
    lines = [
        f"Feedback pipeline run failed: job {run.job_name}, run {run.run_id}",
        f"Failed steps: {', '.join(steps) if steps else 'none (the run failed outside its steps)'}",
        f"Error: {_first_line(error, secrets)}",
    ]
    return Alert(f"run:{run.run_id}", _with_link(lines, webhook.run_link(run.run_id)))


def _check_alerts(instance: dg.DagsterInstance, run: dg.DagsterRun, watched: frozenset[dg.AssetKey], webhook: AlertWebhookResource, secrets: list[str]) -> list[Alert]:
    alerts = []
    for record in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if evaluation is None or evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        if evaluation.asset_key not in watched:
            continue
        check = f"{evaluation.asset_key.to_user_string()} / {evaluation.check_name}"
        detail = evaluation.description or ", ".join(f"{k}={_plain(v)}" for k, v in list(evaluation.metadata.items())[:5])
        lines = [
            f"Feedback check failed (ERROR): {check}",
            f"Job {run.job_name}, run {run.run_id}, step {record.event_log_entry.step_key or 'none'}",
            f"Error: {_first_line(detail or 'the check did not pass', secrets)}",
        ]
        alerts.append(Alert(f"check:{run.run_id}:{check}", _with_link(lines, webhook.run_link(run.run_id))))
    return alerts


def _step_error(entry: Any) -> str | None:
    data = entry.dagster_event.event_specific_data if entry.dagster_event else None
    user = getattr(data, "user_failure_data", None)
    if user is not None and user.description:  # a dagster.Failure: its description is the message
        return user.description
    return _error_line(getattr(data, "error", None))


def _error_line(error: Any) -> str | None:
    """The message of the innermost error Dagster wrapped around the step's exception (Dagster
    writes it as ``module.Class: message``)."""
    while error is not None and error.cause is not None and any(w in (error.cls_name or "") for w in _WRAPPERS):
        error = error.cause
    return error.message if error is not None else None


def _first_line(text: str, secrets: list[str]) -> str:
    # Redact the whole text before cutting: a secret straddling the cut would leak its first half.
    line = next((ln.strip() for ln in redact_text(text, secrets).splitlines() if ln.strip()), "")
    return line[:MAX_ERROR_CHARS] + ("..." if len(line) > MAX_ERROR_CHARS else "")


def _plain(value: Any) -> str:
    return str(getattr(value, "value", value))


def _with_link(lines: list[str], link: str | None) -> str:
    return "\n".join(lines + ([link] if link else []))

