"""Sandbox machinery shared by the five emulators: record stores, faults, request log, accounts.

An emulator (one module per provider) owns its routes, auth, validation, paging and record
generation; this module gives it a fast in-memory store, fault injection and a request log.

Accounts: the sandbox serves ``SandboxState.accounts`` accounts per provider (default 1). Each
account has its own record store and its own credentials and ids: account 1 uses each emulator's
fixed constants, account k > 1 the same values with ``-k`` appended (:func:`account_value`). An
emulator tells which account a request addresses (:meth:`Emulator.account_of`); while the request
is served, :attr:`Emulator.store` is that account's store, so paging code never names an account.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import threading
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

UTC = timezone.utc
MASK = "***"
# Query parameters and headers whose values never reach the request log.
SECRET_PARAMS = frozenset({"access_token", "token", "api_key", "key"})
# The account of the request being served (set by Emulator.endpoint; 1 outside a request).
_ACCOUNT: ContextVar[int] = ContextVar("sandbox_account", default=1)


def account_value(value: str, account: int) -> str:
    """Account ``account``'s variant of one of account 1's credentials or ids: account 1 keeps
    ``value`` (so a one-account sandbox is exactly the fixed constants), account k gets ``value-k``."""
    return value if account == 1 else f"{value}-{account}"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None, media_type: str = "application/json") -> Response:
    """A JSON response serialised with orjson (the sandbox must never be the bottleneck)."""
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=media_type)


class ProviderStore:
    """The records of one emulated provider, keyed by id, with lazily rebuilt sorted indexes.

    Indexes are lists of ``(sort_key, id)`` kept sorted, so keyset pages are a ``bisect`` plus a
    slice instead of a scan and sort per request.
    """

    def __init__(self, id_field: str):
        self.id_field = id_field
        self.records: dict[str, dict[str, Any]] = {}
        self.version = 0
        self._indexes: dict[str, tuple[int, list[tuple[Any, str]]]] = {}
        self._derived: dict[str, tuple[int, Any]] = {}
        # How each index and derived value was built, so ``refresh`` can rebuild them.
        self._builders: dict[str, Callable[[], Any]] = {}
        self.lock = threading.RLock()

    def replace_all(self, records: Iterable[dict[str, Any]]) -> None:
        with self.lock:
            self.records = {str(r[self.id_field]): r for r in records}
            self._touch()

    def put(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.records[str(record[self.id_field])] = record
            self._touch()

    def delete(self, record_id: str) -> bool:
        with self.lock:
            found = self.records.pop(record_id, None) is not None
            self._touch()
            return found

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self.records.get(record_id)

    def _touch(self) -> None:
        self.version += 1

    def index(self, name: str, key: Callable[[dict[str, Any]], Any]) -> list[tuple[Any, str]]:
        """Records sorted ascending by ``(key(record), id)``; rebuilt only after a mutation."""
        with self.lock:
            cached = self._indexes.get(name)
            if cached and cached[0] == self.version:
                return cached[1]
            entries = sorted((key(r), rid) for rid, r in self.records.items())
            self._indexes[name] = (self.version, entries)
            self._builders[f"index:{name}"] = lambda: self.index(name, key)
            return entries

    def derived(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()``'s value, cached until the next mutation (e.g. id -> sort key maps built
        from an index); kept with the store so each account's cache follows its own records."""
        with self.lock:
            cached = self._derived.get(name)
            if cached and cached[0] == self.version:
                return cached[1]
            value = build()
            self._derived[name] = (self.version, value)
            self._builders[f"derived:{name}"] = lambda: self.derived(name, build)
            return value

    def refresh(self) -> None:
        """Rebuild now every index and derived value requests have used, after a bulk change.

        Why: a real API maintains its indexes as it writes, so its first request after many
        changes costs what any other does. Rebuilt lazily, that request would pay for sorting the
        whole store instead (200,000 Mintlify records: ~0.13 s), and a benchmark timing the
        pipeline's next run would count the sandbox's sort as the pipeline's. Indexes are rebuilt
        in the order they were first built (a derived value may read an index)."""
        with self.lock:
            for build in list(self._builders.values()):
                build()


def seek(index: list[tuple[Any, str]], key: tuple[Any, str], *, inclusive: bool) -> int:
    """Position of the first entry ``>= key`` (``inclusive``) or ``> key``."""
    return bisect.bisect_left(index, key) if inclusive else bisect.bisect_right(index, key)


@dataclass
class Fault:
    """One injected misbehaviour. ``count`` None means until cleared; ``after`` delays the start
    by that many requests to the provider (an outage after N requests)."""

    kind: str  # rate_limit | server_error | drop | slow | link | html_200 | not_json | bad_envelope
    count: int | None = 1
    after: int = 0
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    rate: float = 0.0  # link: the body's bytes per second
    account: int | None = None  # only requests of this account (None: every account's)


class DropConnection(Response):
    """Start a response, send part of the body, then break the connection (client sees a reset)."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000")]})
        await send({"type": "http.response.body", "body": b'{"partial": ', "more_body": True})
        raise ConnectionResetError("sandbox: dropped connection (injected fault)")


class PacedResponse(Response):
    """``inner``'s status, headers and body, the body sent at ``rate`` bytes a second in pieces:
    what a client receives through a network link of that speed, where over loopback a large body
    lands in one burst (the ``link`` fault)."""

    PIECE_BYTES = 1 << 16

    def __init__(self, inner: Response, rate: float):
        if rate <= 0:
            raise ValueError("a link's rate must be positive (bytes per second)")
        self.status_code = inner.status_code
        self.raw_headers = inner.raw_headers
        self.background = inner.background
        self.body = inner.body
        self.rate = rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        body, size, step = memoryview(self.body), len(self.body), self.PIECE_BYTES
        loop = asyncio.get_running_loop()
        start = loop.time()
        for offset in range(0, size, step):
            end = min(offset + step, size)
            # A piece leaves once the link would have carried every byte up to its end.
            wait = start + end / self.rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await send({"type": "http.response.body", "body": bytes(body[offset:end]), "more_body": end < size})
        if not size:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()


HTML_ERROR = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1><p>upstream error</p></body></html>"


@dataclass
class RequestLogEntry:
    provider: str
    method: str
    path: str
    query: list[tuple[str, str]]
    status: int
    at: str
    body: Any = None
    account: int | None = 1  # the account the request addressed (None: its credentials name none)


class SandboxState:
    """Everything the running sandbox knows; shared by the emulators and the control API."""

    # Switches the control API may flip (``POST /_control/settings``).
    SWITCHES = ("mintlify_rate_limit", "feedbackkit_snake_case", "hub_supports_updated_sort")
    # What a reset restores to the values given at construction (or overrides).
    RESETTABLE = ("seed", "days", "per_day", "end", *SWITCHES)

    def __init__(
        self,
        *,
        seed: int = 7,
        days: int = 30,
        per_day: int = 20,
        end: date | None = None,
        mintlify_rate_limit: int | None = 100,
        feedbackkit_snake_case: bool = False,
        hub_supports_updated_sort: bool = True,
        accounts: int = 1,
    ):
        if accounts < 1:
            raise ValueError(f"accounts must be at least 1, got {accounts}")
        self.accounts = accounts  # per provider; fixed for the sandbox's life (not resettable)
        self.seed = seed
        self.days = days
        self.per_day = per_day
        self.end = end
        self.mintlify_rate_limit = mintlify_rate_limit
        self.feedbackkit_snake_case = feedbackkit_snake_case
        self.hub_supports_updated_sort = hub_supports_updated_sort
        self._initial = {name: getattr(self, name) for name in self.RESETTABLE}
        self.stores: dict[tuple[str, int], ProviderStore] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.request_counts: dict[str, int] = {}
        self.log: list[RequestLogEntry] = []
        self.lock = threading.RLock()
        self.extra: dict[str, Any] = {}  # per-emulator scratch (e.g. rate-limit buckets)

    def reset(self, **overrides: Any) -> None:
        """Data parameters and switches back to their values at construction, then
        ``overrides`` (any of :attr:`RESETTABLE`); no faults, an empty request log, no scratch."""
        unknown = set(overrides) - set(self.RESETTABLE)
        if unknown:
            raise ValueError(f"cannot reset {', '.join(sorted(unknown))}; resettable: {', '.join(self.RESETTABLE)}")
        for name, value in {**self._initial, **overrides}.items():
            setattr(self, name, value)
        self.clear_faults()
        self.clear_log()
        self.extra.clear()

    def store(self, provider: str, id_field: str = "id", account: int = 1) -> ProviderStore:
        """The records of one account of ``provider``."""
        with self.lock:
            key = (provider, account)
            if key not in self.stores:
                self.stores[key] = ProviderStore(id_field)
            return self.stores[key]

    def last_day(self, now: datetime) -> date:
        """The dataset's last day: ``end`` when the sandbox was given one, else today (UTC)."""
        return self.end or now.date()

    def rng(self, provider: str, account: int = 1) -> random.Random:
        """A generator seeded per provider and account, so adding a provider or an account never
        shifts another's data (account 1's seed is the one a one-account sandbox always used)."""
        return random.Random(f"{self.seed}:{provider}" if account == 1 else f"{self.seed}:{provider}:{account}")

    def add_fault(self, provider: str, fault: Fault) -> None:
        with self.lock:
            self.faults.setdefault(provider, []).append(fault)

    def clear_faults(self, provider: str | None = None) -> None:
        with self.lock:
            if provider is None:
                self.faults.clear()
            else:
                self.faults.pop(provider, None)

    def next_fault(self, provider: str, account: int = 1) -> Fault | None:
        """Consume the fault that applies to this request (to ``account``), if any."""
        with self.lock:
            self.request_counts[provider] = self.request_counts.get(provider, 0) + 1
            queue = self.faults.get(provider, [])
            for fault in queue:
                if fault.account is not None and fault.account != account:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        queue.remove(fault)
                return fault
            return None

    def record(self, entry: RequestLogEntry) -> None:
        with self.lock:
            self.log.append(entry)

    def requests_for(self, provider: str, account: int | None = None) -> list[RequestLogEntry]:
        """The logged requests to ``provider`` (to one of its accounts when ``account`` is given)."""
        with self.lock:
            return [e for e in self.log if e.provider == provider and (account is None or e.account == account)]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()
            self.request_counts.clear()


def masked_query(request: Request) -> list[tuple[str, str]]:
    return [(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in request.query_params.multi_items()]


async def apply_fault(fault: Fault, envelope_break: Callable[[], Any] | None = None) -> Response | None:
    """The response a fault produces, or None to serve normally (``slow`` sleeps first; ``link``
    is applied to the normal response by :meth:`Emulator.endpoint`)."""
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "link":
        return None
    if fault.kind == "rate_limit":
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        return json_response({"error": "Too Many Requests", "message": "rate limit exceeded"}, 429, headers)
    if fault.kind == "server_error":
        return Response(HTML_ERROR, status_code=fault.status, media_type="text/html")
    if fault.kind == "drop":
        return DropConnection()
    if fault.kind == "html_200":
        return Response(b"<html><body>Maintenance</body></html>", status_code=200, media_type="text/html")
    if fault.kind == "not_json":
        return Response(b"{not json", status_code=200, media_type="application/json")
    if fault.kind == "bad_envelope":
        return json_response(envelope_break() if envelope_break else {"unexpected": True})
    raise ValueError(f"unknown fault kind {fault.kind!r}")


class Emulator:
    """Base class of one emulated API. Subclasses set ``name`` (and ``id_field`` when their
    records' id is not ``id``) and implement :meth:`generate_day`, :meth:`touch`,
    :meth:`settings` and :meth:`routes`; an emulator that serves several accounts also
    implements :meth:`account_of`."""

    name: str = ""
    id_field: str = "id"

    def __init__(self, state: SandboxState):
        self.state = state

    # -- accounts -------------------------------------------------------------------------

    @property
    def accounts(self) -> range:
        """The account numbers this sandbox serves: 1..N."""
        return range(1, self.state.accounts + 1)

    @property
    def account(self) -> int:
        """The account of the request being served (1 outside a request)."""
        return _ACCOUNT.get()

    @property
    def store(self) -> ProviderStore:
        """The records of :attr:`account`: while a request is served, the account it addresses."""
        return self.store_for(_ACCOUNT.get())

    def store_for(self, account: int) -> ProviderStore:
        return self.state.store(self.name, self.id_field, account)

    def account_of(self, request: Request) -> int | None:
        """The account whose credentials or ids ``request`` carries, None when none matches (the
        handler then refuses it as before). Must be cheap and never raise: it runs before faults."""
        return 1

    def find_account(self, base: str, value: str | None) -> int | None:
        """The account k whose :func:`account_value` of ``base`` is ``value`` (None: no account's)."""
        if value is None:
            return None
        if value == base:
            return 1
        prefix, _, suffix = value.rpartition("-")
        if prefix == base and suffix.isdigit() and str(int(suffix)) == suffix and 2 <= int(suffix) <= self.state.accounts:
            return int(suffix)
        return None

    # -- data -----------------------------------------------------------------------------

    def generate_day(self, rng: random.Random, day: date, count: int, now: datetime, account: int = 1) -> list[dict[str, Any]]:
        """``count`` realistic native records of ``account`` collected on ``day`` (deterministic
        for ``rng``)."""
        raise NotImplementedError

    def touch(self, record: dict[str, Any], now: datetime) -> None:
        """Mark ``record`` as changed now (bump its update timestamp where the API has one)."""

    def settings(self, base_url: str, account: int = 1) -> dict[str, str]:
        """The pipeline's settings for ``account`` of this emulator at ``base_url`` (e.g.
        ``http://127.0.0.1:8765``), by the provider spec's keys, with the sandbox's fixed
        credentials (:func:`account_value` of them for account k > 1)."""
        raise NotImplementedError

    def env(self, base_url: str) -> dict[str, str]:
        """Account 1's :meth:`settings` as the environment variables the provider's spec names."""
        from ..providers import get_spec

        provider = get_spec(self.name)
        return {provider.setting(key).var: value for key, value in self.settings(base_url).items()}

    def reset(self) -> None:
        """Undo per-instance overrides of class-level settings (tests shorten Mintlify's rate
        window, for instance)."""
        for name in [n for n in vars(self) if hasattr(type(self), n)]:
            delattr(self, name)

    def bad_envelope(self) -> Any:
        """A 200 body of the wrong shape for this API (for the ``bad_envelope`` fault)."""
        return {"unexpected": True}

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def endpoint(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """Wrap a route handler: find the request's account, injected faults first, then the
        handler (with :attr:`store` the account's), then the request log. A handler may set
        ``request.state.log_body`` to log a (secret-free) request body."""

        async def wrapped(request: Request) -> Response:
            account = self.account_of(request)
            token = _ACCOUNT.set(account or 1)
            try:
                response = await self.guard(request)
                if response is None:
                    response = await handler(request)
                    rate = getattr(request.state, "link_rate", None)
                    if rate is not None and isinstance(getattr(response, "body", None), bytes):  # not a stream
                        response = PacedResponse(response, rate)
            finally:
                _ACCOUNT.reset(token)
            self.log(request, response.status_code, getattr(request.state, "log_body", None), account)
            return response

        return wrapped

    async def guard(self, request: Request) -> Response | None:
        """Run injected faults for this provider (and the request's account)."""
        fault = self.state.next_fault(self.name, self.account)
        if fault is None:
            return None
        if fault.kind == "link":
            request.state.link_rate = fault.rate
        return await apply_fault(fault, self.bad_envelope)

    def log(self, request: Request, status: int, body: Any = None, account: int | None = 1) -> None:
        self.state.record(
            RequestLogEntry(
                provider=self.name,
                method=request.method,
                path=request.url.path,
                query=masked_query(request),
                status=status,
                at=datetime.now(UTC).isoformat(),
                body=body,
                account=account,
            )
        )
