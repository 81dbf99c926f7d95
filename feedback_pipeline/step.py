"""One run's step: the selected providers sync concurrently, none holds back another.

Each provider syncs in its own thread (the network waits of five APIs overlap; each provider
also prefetches its own pages). A provider that fails does not stop the others: they commit,
the step publishes the analysts' snapshot once, and only then does the caller report the failed
providers, with the project's own sentence first (:func:`failure`).

The step holds one warehouse session for its whole life (the writer lock and one connection);
each provider's thread writes through its own cursor of it.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import dagster as dg

from .http import ProviderError, ProviderRequestError
from .normalize import FeedbackBatch
from .providers.base import ConfigurationError, Provider, Window
from .sync import SyncReport, sync
from .lake import LakeSettings
from .warehouse import PublishResult, Session, WindowStats


@dataclass
class ProviderOutcome:
    """What one provider's thread produced: a report and window stats, or an error."""

    provider: str
    report: SyncReport | None = None
    stats: WindowStats | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    error: BaseException | None = None


@dataclass
class StepOutcome:
    outcomes: list[ProviderOutcome]
    published: PublishResult | None
    seconds: float
    lake: Any = None  # the Iceberg copy's commit (lake.LakeCommit), None when none was made

    @property
    def succeeded(self) -> list[ProviderOutcome]:
        return [o for o in self.outcomes if o.error is None]

    @property
    def snapshot_published(self) -> bool:
        """Whether the step published the analysts' snapshot (it was behind the working database)."""
        return self.published is not None

    @property
    def failed(self) -> list[ProviderOutcome]:
        return [o for o in self.outcomes if o.error is not None]


class RejectTally:
    """A provider whose ``normalize`` also counts this run's reject reasons (the sync report
    counts rejects but not why). Everything else is the wrapped provider's."""

    def __init__(self, inner: Provider):
        self._inner = inner
        self.reasons: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def normalize(self, records: list[Any], batch: FeedbackBatch) -> None:
        before = batch.reject_count
        self._inner.normalize(records, batch)
        if batch.reject_count > before:  # rare: build the rejects table only then
            self.reasons.update(str(r) for r in batch.rejects().column("reason").to_pylist()[before:])


def run_providers(
    providers: Sequence[str],
    build: Callable[[str], Provider],
    session: Session,
    window: Window,
    *,
    full_refresh: bool,
    logger: Any,
    lake: LakeSettings | None = None,
    run_id: str = "",
) -> StepOutcome:
    """Sync ``providers`` concurrently over ``window``, then publish once and, when ``lake`` is
    set, commit the Iceberg copy once (see the module docstring)."""
    started = time.monotonic()

    def one(name: str) -> ProviderOutcome:
        outcome = ProviderOutcome(name)
        try:
            provider = RejectTally(build(name))  # a ConfigurationError fails here, before any request
            logger.info(f"{name}: syncing {window}{' (full refresh)' if full_refresh else ''}")
            with session.cursor() as cursor:
                outcome.report = sync(provider, cursor, window, full_refresh=full_refresh, logger=logger)  # type: ignore[arg-type]
                outcome.stats = cursor.check_stats(name, provider.account_id, window.first_day, window.last_day)
            outcome.reasons = provider.reasons
        except Exception as exc:  # noqa: BLE001 - reported by failure() once the others are done
            outcome.error = exc
            logger.error(describe(name, exc))
        return outcome

    if len(providers) == 1:
        outcomes = [one(providers[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(providers), thread_name_prefix="sync") as pool:
            outcomes = list(pool.map(one, providers))
    published = None
    try:
        # Whatever was committed, before a failure too, is consistent: publish it once.
        published = session.publish_if_behind()
    except Exception as exc:  # noqa: BLE001 - a publish failure fails the step like a provider's
        outcomes.append(ProviderOutcome("publish", error=exc))
    lake_commit = None
    if lake is not None:
        # After the DuckDB publish, so a lake that fails costs analysts nothing; the next run
        # catches the copy up from the change log (kept back to the copy's generation).
        try:
            from .lake import LakeMirror

            mirror = LakeMirror(lake)
            lake_commit = session.feed(lambda con, generation: mirror.apply(con, generation, run_id))
        except Exception as exc:  # noqa: BLE001 - reported like a provider's failure
            outcomes.append(ProviderOutcome("lake", error=exc))
    return StepOutcome(outcomes, published, time.monotonic() - started, lake_commit)


# -- the failure the step raises ---------------------------------------------------------------

_FILLER = {"error", "errors", "message", "status", "code", "detail", "details", "title", "statuscode", "http", "the", "a"}


def says_more_than_status(body: str | None, status: int | None) -> bool:
    """True when a response body adds something to its status line: not an HTML error page, and
    not only the status phrase dressed as JSON (``{"error": "Unauthorized"}``)."""
    if not body or body.lstrip().startswith("<"):
        return False
    words = set(re.findall(r"[a-z]+", body.lower())) - _FILLER
    try:
        phrase = set(re.findall(r"[a-z]+", HTTPStatus(status).phrase.lower())) if status else set()
    except ValueError:
        phrase = set()
    return bool(words - phrase)


_MESSAGE_FIELD = re.compile(r'"(?:detail|message|error_description|error)"\s*:\s*"([^"]+)"')


def quoted_body(body: str | None, status: int | None) -> str | None:
    """What of a response body is worth quoting: a JSON body's own message field when it has one
    (``{"detail": "Missing or invalid API key"}``), else the excerpt; None when it adds nothing
    to the status."""
    if not says_more_than_status(body, status):
        return None
    fields = [m for m in _MESSAGE_FIELD.findall(body or "") if says_more_than_status(m, status)]
    return max(fields, key=len) if fields else body


def describe(provider: str, error: BaseException) -> str:
    """The project's sentence for one failed provider (provider, endpoint, status, what to check)."""
    if isinstance(error, ProviderRequestError) and error.endpoint:
        text = f"{provider}: {error.endpoint} returned HTTP {error.status}: {error.hint}."
        said = quoted_body(error.body, error.status)
        if said:
            text += f" The response said: {said}"
        return text
    if isinstance(error, (ProviderError, ConfigurationError)):
        message = str(error)
        return message if message.startswith(provider) else f"{provider}: {message}"
    return f"{provider}: {type(error).__name__}: {error}"


def failure(outcome: StepOutcome) -> dg.Failure:
    """A ``dagster.Failure`` naming only the failed providers: their sentences first (Dagster
    shows a Failure's description at the top of the error), then what the others did."""
    failed = outcome.failed
    lines = [describe(o.provider, o.error) for o in failed if o.error is not None]
    ok = [o.provider for o in outcome.succeeded]
    if ok:
        lines.append(f"{', '.join(ok)} committed their rows" + (" and the analysts' snapshot was published." if outcome.snapshot_published else "."))
    metadata: dict[str, Any] = {"failed_providers": ", ".join(o.provider for o in failed)}
    for o in failed:
        prefix = "" if len(failed) == 1 else f"{o.provider}_"
        error = o.error
        metadata[f"{prefix}provider"] = o.provider
        metadata[f"{prefix}endpoint"] = getattr(error, "endpoint", None) or "none (failed before any request)"
        metadata[f"{prefix}status"] = str(getattr(error, "status", None) or "none")
        metadata[f"{prefix}what_to_check"] = getattr(error, "hint", None) or describe(o.provider, error).partition(": ")[2]  # type: ignore[arg-type]
    return dg.Failure(description="\n".join(lines), metadata=metadata)

