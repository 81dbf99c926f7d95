"""One run's step: the selected providers' accounts sync concurrently, none holds back another.

The accounts of the selected providers sync in a pool of at most :data:`MAX_CONCURRENT_ACCOUNTS`
threads (the network waits overlap; each account also prefetches its own pages). Each thread
holds a batch of up to ``COMMIT_ROWS`` rows and a few pages, so the pool's size bounds the step's
memory whatever the number of accounts; :func:`start_order` starts the accounts with the smallest
pages first and the ones answering with one big array (FeedbackKit) last, so the big ones do not
overlap. After each account the freed memory goes back to the OS (``memory.release``).

An account that fails does not stop the others: they commit, the step publishes the analysts'
snapshot once, and only then does the caller report the failed accounts, with the project's own
sentence first (:func:`failure`).

A provider with a request budget (``ProviderSpec.request_budget``) sends every request through
its organization's ledger (``budget.py``); accounts sharing an API key share one organization.
An account whose budget is spent stops like one whose API is down: what it fetched is committed
with its cursor (:class:`~feedback_pipeline.budget.BudgetSpent`), and ``feedback_resume``
continues it later.

The step holds one warehouse session for its whole life (the writer lock and one connection);
each account's thread writes through its own cursor of it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import dagster as dg

from .budget import BudgetGate, BudgetSpent, RateBudget, RequestLedger, organization_id
from .http import HttpClient, ProviderError, ProviderRequestError
from .memory import release
from .normalize import FeedbackBatch
from .providers import get_spec
from .providers.base import ConfigurationError, Provider, Window
from .sync import SyncReport, sync
from .lake import LakeSettings
from .warehouse import PublishResult, Session, WindowStats


# Accounts syncing at once in one step: enough for the network waits of the slow, paged APIs to
# overlap, few enough that the step's memory (a batch and a few pages per thread) stays bounded.
MAX_CONCURRENT_ACCOUNTS = 3


@dataclass(frozen=True)
class AccountRef:
    """One account a step syncs: its provider and the key of its Dagster resource (``<provider>``
    for the plain variables' account, ``<provider>__<n>`` for the accounts file's n-th)."""

    provider: str
    key: str


@dataclass
class AccountOutcome:
    """What one account's thread produced: a report and window stats, or an error."""

    provider: str
    key: str = ""
    account_id: str = ""
    report: SyncReport | None = None
    stats: WindowStats | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    error: BaseException | None = None
    records_normalized: int = 0  # records received, kept when the account fails (its provider's checks count them)

    @property
    def label(self) -> str:
        """``provider/account_id`` (just the provider when the account id is unknown: an
        unconfigured account, or the publish and the lake)."""
        return f"{self.provider}/{self.account_id}" if self.account_id else self.provider

    @property
    def budget_stop(self) -> bool:
        """The account stopped because its request budget was spent (not a failure to alert on)."""
        return isinstance(self.error, BudgetSpent)


@dataclass
class StepOutcome:
    outcomes: list[AccountOutcome]
    published: PublishResult | None
    seconds: float
    lake: Any = None  # the Iceberg copy's commit (lake.LakeCommit), None when none was made

    @property
    def succeeded(self) -> list[AccountOutcome]:
        return [o for o in self.outcomes if o.error is None]

    @property
    def snapshot_published(self) -> bool:
        """Whether the step published the analysts' snapshot (it was behind the working database)."""
        return self.published is not None

    @property
    def failed(self) -> list[AccountOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def stopped_by_budget(self) -> bool:
        """Every account that did not finish stopped on a spent request budget (and one did)."""
        return bool(self.failed) and all(o.budget_stop for o in self.failed)

    @property
    def publish_error(self) -> BaseException | None:
        """Why the analysts' snapshot could not be published, when it could not."""
        return next((o.error for o in self.outcomes if o.provider == "publish" and not o.key), None)

    def by_provider(self) -> dict[str, list[AccountOutcome]]:
        """The accounts' outcomes grouped by provider (publish and lake outcomes left out)."""
        grouped: dict[str, list[AccountOutcome]] = {}
        for o in self.outcomes:
            if o.key:
                grouped.setdefault(o.provider, []).append(o)
        return grouped


class AccountProvider:
    """A provider as one step runs it: its ``normalize`` also counts this run's reject reasons
    (the sync report counts rejects but not why), and its HTTP client sends every request
    through ``gate`` (the request budget) when there is one. Everything else is the wrapped
    provider's."""

    def __init__(self, inner: Provider, gate: Callable[[], None] | None = None):
        self._inner = inner
        self._gate = gate
        self.reasons: Counter[str] = Counter()
        self.records = 0
        self._counting = threading.Lock()  # the account's queries may normalize in several threads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def open(self) -> HttpClient:
        http = self._inner.open()
        http.before_send = self._gate
        return http

    def normalize(self, records: list[Any], batch: FeedbackBatch) -> None:
        before = batch.reject_count
        self._inner.normalize(records, batch)
        rejected = batch.rejects().column("reason").to_pylist()[before:] if batch.reject_count > before else []  # rare
        with self._counting:
            self.records += len(records)
            self.reasons.update(str(r) for r in rejected)


@contextmanager
def budget_gate(
    provider: Provider, session: Session, budget: RateBudget | None, *, lock: threading.Lock, max_wait_seconds: float
) -> Iterator[BudgetGate | None]:
    """The gate of ``provider``'s organization (a digest of its secrets: the accounts sharing a
    key share it), on a cursor of its own (the gate runs in the fetch thread); None without a
    budget."""
    if budget is None:
        yield None
        return
    organization = organization_id(provider.name, "\x00".join(provider.config.secret_values()))
    with session.cursor() as cursor:
        ledger = RequestLedger(cursor.con, organization, budget, lock=lock)
        yield BudgetGate(ledger, max_wait_seconds=max_wait_seconds, describe=f"{provider.name}'s request budget (account {provider.account_id})")


def run_providers(
    accounts: Sequence[AccountRef],
    build: Callable[[AccountRef], Provider],
    session: Session,
    window: Window,
    *,
    full_refresh: bool,
    logger: Any,
    paced: bool = False,
    budgets: Mapping[str, RateBudget] | None = None,
    max_wait_seconds: float = 600.0,
    account_id_of: Callable[[AccountRef], str] | None = None,
    lake: LakeSettings | None = None,
    run_id: str = "",
) -> StepOutcome:
    """Sync ``accounts`` concurrently over ``window``, then publish once and, when ``lake`` is
    set, commit the Iceberg copy once (see the module docstring). ``budgets`` are the request
    budgets by provider; ``account_id_of`` names an account before its provider is built (so an
    account whose settings are refused is still named)."""
    started = time.monotonic()
    ledger_lock = threading.Lock()  # one reservation at a time among this step's threads

    def one(ref: AccountRef) -> AccountOutcome:
        outcome = AccountOutcome(ref.provider, ref.key, account_id_of(ref) if account_id_of else "")
        provider: AccountProvider | None = None
        try:
            inner = build(ref)  # a ConfigurationError fails here, before any request
            outcome.account_id = inner.account_id
            budget = (budgets or {}).get(ref.provider)
            with budget_gate(inner, session, budget, lock=ledger_lock, max_wait_seconds=max_wait_seconds) as gate:
                provider = AccountProvider(inner, gate)
                logger.info(f"{outcome.label}: syncing {window}{' (full refresh)' if full_refresh else ''}")
                with session.cursor() as cursor:
                    outcome.report = sync(provider, cursor, window, full_refresh=full_refresh, paced=paced, logger=logger)  # type: ignore[arg-type]
                    outcome.stats = cursor.check_stats(ref.provider, inner.account_id, window.first_day, window.last_day)
        except Exception as exc:  # noqa: BLE001 - reported by failure() once the others are done
            outcome.error = exc
            (logger.warning if isinstance(exc, BudgetSpent) else logger.error)(describe(outcome.label, exc, outcome.provider))
        if provider is not None:  # a failed account's too: its provider's checks count what it received
            outcome.reasons, outcome.records_normalized = provider.reasons, provider.records
        return outcome

    def one_then_release(ref: AccountRef) -> AccountOutcome:
        try:
            return one(ref)
        finally:
            release()  # the account's last batch and pages: back to the OS before the next starts

    if len(accounts) == 1:
        outcomes = [one_then_release(accounts[0])]
    else:
        # Started in start_order, reported in the caller's order.
        starts = sorted(range(len(accounts)), key=lambda i: _start_rank(accounts[i]))
        with ThreadPoolExecutor(max_workers=min(len(accounts), MAX_CONCURRENT_ACCOUNTS), thread_name_prefix="sync") as pool:
            in_start_order = list(pool.map(one_then_release, [accounts[i] for i in starts]))
        outcomes = [outcome for _, outcome in sorted(zip(starts, in_start_order), key=lambda pair: pair[0])]
    published = None
    try:
        # Whatever was committed, before a failure too, is consistent: publish it once.
        published = session.publish_if_behind()
    except Exception as exc:  # noqa: BLE001 - a publish failure fails the step like a provider's
        outcomes.append(AccountOutcome("publish", error=exc))
    lake_commit = None
    if lake is not None:
        # After the DuckDB publish, so a lake that fails costs analysts nothing; the next run
        # catches the copy up from the change log (kept back to the copy's generation).
        try:
            from .lake import LakeMirror

            mirror = LakeMirror(lake)
            lake_commit = session.feed(lambda con, generation: mirror.apply(con, generation, run_id))
        except Exception as exc:  # noqa: BLE001 - reported like a provider's failure
            outcomes.append(AccountOutcome("lake", error=exc))
    return StepOutcome(outcomes, published, time.monotonic() - started, lake_commit)


def start_order(accounts: Sequence[AccountRef]) -> list[AccountRef]:
    """``accounts`` in the order the step starts them: the providers with the smallest pages first
    (the slow, many-request APIs start early), the ones answering with one array (``page_size``
    None: FeedbackKit) last, so the largest pieces of memory do not overlap; a provider without a
    spec counts as paged like the largest. Stable: one provider's accounts keep their order."""
    return sorted(accounts, key=_start_rank)


def _start_rank(ref: AccountRef) -> tuple[bool, int]:
    """Sort key of :func:`start_order`: (answers with one array, page size)."""
    try:
        size = get_spec(ref.provider).page_size
    except KeyError:
        return (False, 1 << 62)
    return (size is None, size or 0)


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


def describe(label: str, error: BaseException, provider: str | None = None) -> str:
    """The project's sentence for one failed account (``provider/account_id``, endpoint, status,
    what to check). ``provider`` is the name the error's own message may start with."""
    provider = provider or label
    if isinstance(error, ProviderRequestError) and error.endpoint:
        text = f"{label}: {error.endpoint} returned HTTP {error.status}: {error.hint}."
        said = quoted_body(error.body, error.status)
        if said:
            text += f" The response said: {said}"
        return text
    if isinstance(error, (ProviderError, ConfigurationError)):
        message = str(error)
        if message.startswith(f"{provider}: "):
            message = message.removeprefix(f"{provider}: ")
        return message if message.startswith(label) else f"{label}: {message}"
    if isinstance(error, BudgetSpent):
        return f"{label}: stopped: {error}"
    return f"{label}: {type(error).__name__}: {error}"


def failure(outcome: StepOutcome) -> dg.Failure:
    """A ``dagster.Failure`` naming only the failed accounts (``provider/account_id``): their
    sentences first (Dagster shows a Failure's description at the top of the error), then what
    the others did. A step whose only stops were spent request budgets says when it resumes."""
    failed = outcome.failed
    lines = [describe(o.label, o.error, o.provider) for o in failed if o.error is not None]
    ok = [o.label for o in outcome.succeeded]
    if ok:
        lines.append(f"{', '.join(ok)} committed their rows" + (" and the analysts' snapshot was published." if outcome.snapshot_published else "."))
    if outcome.stopped_by_budget:
        resume_at = max(o.error.resume_at for o in failed if isinstance(o.error, BudgetSpent))
        lines.append(f"Stopped cleanly on the request budget: feedback_resume continues from the committed cursors from {resume_at:%Y-%m-%d %H:%M:%S} UTC on.")
    metadata: dict[str, Any] = {
        "failed_providers": ", ".join(dict.fromkeys(o.provider for o in failed)),
        "failed_accounts": ", ".join(o.label for o in failed),
    }
    for o in failed:
        prefix = "" if len(failed) == 1 else f"{o.label}_"
        error = o.error
        metadata[f"{prefix}provider"] = o.provider
        metadata[f"{prefix}account_id"] = o.account_id or "unknown"
        metadata[f"{prefix}endpoint"] = getattr(error, "endpoint", None) or "none (failed before any request)"
        metadata[f"{prefix}status"] = str(getattr(error, "status", None) or "none")
        metadata[f"{prefix}what_to_check"] = getattr(error, "hint", None) or describe(o.label, error, o.provider).partition(": ")[2]  # type: ignore[arg-type]
        if isinstance(error, BudgetSpent):
            metadata[f"{prefix}resumes_at"] = f"{error.resume_at:%Y-%m-%d %H:%M:%S} UTC"
    return dg.Failure(description="\n".join(lines), metadata=metadata)

