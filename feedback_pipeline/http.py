"""The one HTTP layer every provider uses: timeouts, retries, Retry-After, redaction.

Why it exists: rate limits and flaky pages are the real constraint of this job, and a secret in
a log line is the worst bug it can have. So:

* one ``httpx.Client`` per run (keep-alive), explicit connect/read timeouts, and one TLS context
  for all of a process's clients (:func:`tls_context`);
* 429, 500, 502, 503, 504, dropped connections, read timeouts and *bad pages* (not JSON, HTML
  with 200, wrong envelope) are retried with exponential backoff and jitter; ``Retry-After``
  is honoured in both forms (delta-seconds and HTTP-date) with a floor of 1 s when it is 0 or
  absent; attempts and total waiting are capped;
* a JSON array can be read as a stream (:meth:`HttpClient.stream_json_items`): the same rules
  for the response status and headers; a body that breaks before any item was handed over is
  retried from its start, one that breaks later fails at once (the caller has used the items);
* 400, 401, 403, 404 (and other 4xx) fail at once with a message saying what to check;
* URLs are redacted before they reach any log line, exception or metadata (the Mapbox token
  travels in the query string), headers are never logged, and the ``httpx``/``httpcore`` loggers
  are silenced because httpx logs every request URL at INFO;
* ``before_send`` (when set) is called before every request is sent, retries included: the
  request budget's gate (``budget.BudgetGate``) waits there or raises ``BudgetSpent``.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from .arraystream import ArrayError, ArrayReader
from .jsonio import loads_json

# httpx logs "HTTP Request: GET <full url>" at INFO: that URL can carry the Mapbox token.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Seconds to connect, and between bytes of a response (a timeout is a retried network error).
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
SECRET_QUERY_PARAMS = frozenset({"access_token", "token", "api_key", "apikey", "key", "secret", "jwt", "password"})
REDACTED = "***"


class ProviderError(RuntimeError):
    """A provider request failed. The message is safe to log: URLs and secrets are redacted."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str | None = None, hint: str | None = None, body: str | None = None):
        super().__init__(message)
        self.status = status
        # The parts of ``message``, for callers that present them separately (a Dagster Failure's
        # metadata): "GET /v1/feedback-records", what to check, the redacted body excerpt.
        self.endpoint = endpoint
        self.hint = hint
        self.body = body


class ProviderRequestError(ProviderError):
    """The provider refused the request (4xx other than 429): retrying cannot help."""


class ProviderUnavailable(ProviderError):
    """Retries were exhausted (rate limit, 5xx, network, bad pages)."""


class BadPage(ValueError):
    """A 2xx response whose body is not what the API documents; retried like a 5xx."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try (times in seconds). Defaults suit hourly production runs; tests shrink
    the delays."""

    # Tries of one request, the first included.
    max_attempts: int = 6
    # Backoff before try n: base_delay * 2 ** (n - 2), at most max_delay, jittered down to half.
    base_delay: float = 1.0
    max_delay: float = 60.0
    # Give up instead of waiting more than this in all (Retry-After included).
    max_total_wait: float = 600.0
    # The least wait after a 429 or any Retry-After (a "0" must not hammer a limiter).
    retry_after_floor: float = 1.0


@dataclass
class RequestStats:
    """Counters reported in each materialization's metadata."""

    requests: int = 0
    retries: int = 0
    wait_seconds: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.by_status[outcome] = self.by_status.get(outcome, 0) + 1


def redact_url(url: str | httpx.URL) -> str:
    """The URL with the values of secret-looking query parameters replaced by ``***``."""
    parts = urlsplit(str(url))
    if not parts.query:
        return str(url)
    pairs = [
        (k, REDACTED if k.lower() in SECRET_QUERY_PARAMS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="*:,")))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]{8,}=*")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove every given secret (also URL- and JSON-escaped), bearer tokens and JWTs (a server
    may echo the ``Authorization`` header; a minted Usersnap token is a credential for minutes)
    and secret query values from ``text``. Shared by error messages and failure alerts."""
    for secret in secrets:
        if secret:
            for form in _secret_forms(secret):
                text = text.replace(form, REDACTED)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return re.sub(r"https?://\S+", lambda m: redact_url(m.group(0)), text)


def _secret_forms(secret: str) -> set[str]:
    """``secret`` as it may appear in a response body: raw, URL-encoded, JSON-escaped."""
    import json
    from urllib.parse import quote, quote_plus

    return {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}


_tls_lock = threading.Lock()
_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The TLS context every client of this process verifies servers with: httpx's default
    (certifi's roots, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built once. Why: httpx builds a
    context for each client it creates, loading the whole CA bundle each time (about 1 MB resident
    and 18 ms of CPU), and a step creates a client per account and per concurrent day range, a
    dozen at once in a backfill. One context serves any number of connections and threads. Built
    under a lock: the step's threads open their clients at the same moment, and each would
    otherwise build its own first (py-spy of a one-partition CLI run: three builds, 0.11 s of CPU)."""
    global _tls
    with _tls_lock:
        if _tls is None:
            _tls = httpx.create_ssl_context()
        return _tls


class HttpClient:
    """A retrying JSON client for one provider.

    ``secrets`` are strings that must never appear in an error message (they are scrubbed from
    response excerpts too). ``hints`` maps a status code to what the operator should check.
    """

    def __init__(
        self,
        provider: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        policy: RetryPolicy | None = None,
        secrets: Iterable[str] = (),
        hints: Mapping[int, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: httpx.Timeout = TIMEOUT,
    ):
        self.provider = provider
        self.policy = policy or RetryPolicy()
        self.stats = RequestStats()
        self.hints = dict(hints or {})
        self._secrets = [s for s in secrets if s]
        self._sleep = sleep
        # Called before each request is sent (retries included); raises to stop (budget.py).
        self.before_send: Callable[[], None] | None = None
        self._client = httpx.Client(
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            verify=tls_context(),
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- public ------------------------------------------------------------------------------

    def get_json(self, url: str, *, endpoint: str, params: Any = None, validate: Callable[[Any], None] | None = None, headers: Mapping[str, str] | None = None) -> Any:
        """GET and parse JSON, retrying transient failures. ``validate`` raises :class:`BadPage`
        when the body is not the documented envelope."""
        return self.request_json("GET", url, endpoint=endpoint, params=params, validate=validate, headers=headers)

    def request_json(self, method: str, url: str, *, endpoint: str, params: Any = None, json: Any = None, headers: Mapping[str, str] | None = None, validate: Callable[[Any], None] | None = None) -> Any:
        """Send a request and return its parsed JSON body (see the module docstring for the rules)."""
        request = self._client.build_request(method, url, params=params, json=json, headers=headers)
        for attempt in self._attempts(method, endpoint):
            try:
                response = self._client.send(request)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                attempt.network_error(exc, self.stats)
                continue
            attempt.status = response.status_code
            self.stats.count(str(response.status_code))
            if not response.is_success:
                self._unsuccessful(attempt, method, endpoint, response)
                continue
            try:
                body = self._parse(response)
                if validate is not None:
                    validate(body)
                return body
            except BadPage as bad:
                attempt.fail(f"unexpected response body: {bad}", _shape(response))
        raise AssertionError("unreachable: _attempts ends by raising")

    def stream_json_items(
        self,
        url: str,
        *,
        endpoint: str,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        batch_size: int = 5_000,
        peek: Sequence[str] = (),
        keep: Callable[[Any], bool] | None = None,
    ) -> ItemStream:
        """GET a JSON array and yield its items in lists of at most ``batch_size`` while the body
        arrives, so neither the body nor the whole array is ever held (an API without paging).
        ``peek``/``keep`` skip unwanted object items before they are built (see
        :class:`~feedback_pipeline.arraystream.ArrayReader`). Statuses, ``Retry-After`` and
        refusals follow :meth:`request_json`; a body that is not a JSON array is a bad page. A
        failure before the first list was yielded is retried from the start of the body; a
        failure after it raises :class:`ProviderUnavailable` at once (the caller has used those
        items; the request must be repeated whole)."""
        request = self._client.build_request("GET", url, params=params, headers=headers)
        return ItemStream(self, request, endpoint, partial(ArrayReader, peek=tuple(peek), keep=keep), batch_size)

    def redact(self, text: str) -> str:
        """``text`` without this client's secrets (see :func:`redact_text`)."""
        return redact_text(text, self._secrets)

    # -- internals ---------------------------------------------------------------------------

    def _attempts(self, method: str, endpoint: str) -> Iterator[_Attempt]:
        """The tries of one request under the retry policy, for both the JSON and the streamed
        path. The caller's loop body sends and reads; it leaves the loop when done (or raises a
        refusal), or records on the attempt why it failed. Then this waits (backoff or
        ``Retry-After``) and yields the next try, or raises :class:`ProviderUnavailable` once the
        attempts or the waiting budget are spent. ``before_send`` runs before every try."""
        policy = self.policy
        waited = 0.0
        for number in itertools.count(1):
            if self.before_send is not None:
                self.before_send()
            self.stats.requests += 1
            attempt = _Attempt(number)
            yield attempt
            delay = self._delay(number, attempt.status, attempt.retry_after)
            if number >= policy.max_attempts or waited + delay > policy.max_total_wait:
                raise ProviderUnavailable(
                    f"{self.provider}: {method} {endpoint} failed after {number} attempt(s) "
                    f"and {waited:.1f}s of waiting: {attempt.failure}"
                    + (f" (server asked to wait {attempt.retry_after:.0f}s)" if attempt.retry_after else "")
                    + ". Rows and cursors committed so far are kept; the next run resumes from them.",
                    status=attempt.status,
                    endpoint=f"{method} {endpoint}",
                    hint=f"failed after {number} attempt(s): {attempt.failure}; the next run resumes from the committed cursor",
                )
            log.warning(
                "%s: %s %s attempt %d/%d: %s; retrying in %.1fs",
                self.provider, method, endpoint, number, policy.max_attempts, attempt.failure, delay,
            )
            self.stats.retries += 1
            self.stats.wait_seconds += delay
            waited += delay
            self._sleep(delay)

    def _unsuccessful(self, attempt: _Attempt, method: str, endpoint: str, response: httpx.Response) -> None:
        """A non-2xx ``response`` (its body read): a retryable status is recorded on ``attempt``
        with its ``Retry-After``; any other is a refusal, raised at once."""
        if response.status_code not in RETRYABLE_STATUS:
            raise self._refusal(method, endpoint, response)
        attempt.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        attempt.fail(f"HTTP {response.status_code}", self._excerpt(response))

    def _delay(self, attempt: int, status: int | None, retry_after: float | None) -> float:
        policy = self.policy
        if status == 429 or retry_after is not None:
            # Retry-After rules when given (a wait beyond the budget then fails at once instead
            # of sleeping in vain); 0 or absent gets the floor: never hammer a limiter.
            if retry_after is not None:
                return max(policy.retry_after_floor, retry_after)
            return max(policy.retry_after_floor, min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))
        backoff = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
        return random.uniform(backoff / 2, backoff)  # jitter, never zero

    @staticmethod
    def _parse(response: httpx.Response) -> Any:
        _refuse_html(response)
        try:
            return loads_json(response.content)
        except ValueError:
            raise BadPage("not JSON") from None

    def _excerpt(self, response: httpx.Response, limit: int = 200) -> str:
        try:
            text = response.text
        except Exception:  # noqa: BLE001 - undecodable body: say nothing rather than fail
            return ""
        # Redact before cutting: a key straddling the cut would otherwise leak its first half.
        text = self.redact(" ".join(text[: limit * 50].split()))
        return text[:limit] + ("..." if len(text) > limit else "")

    def _refusal(self, method: str, endpoint: str, response: httpx.Response) -> ProviderRequestError:
        """The error for a refused request (4xx other than 429): what to check first, then the
        response's excerpt (secrets removed)."""
        status = response.status_code
        hint, excerpt = self._refusal_hint(status), self._excerpt(response)
        return ProviderRequestError(
            f"{self.provider}: {method} {endpoint} returned HTTP {status}: {hint}. Response: {excerpt}",
            status=status, endpoint=f"{method} {endpoint}", hint=hint, body=excerpt,
        )

    def _refusal_hint(self, status: int) -> str:
        """What to check for a refused request: the provider's own hint (naming its variables) or
        a generic one."""
        return self.hints.get(status) or {
            400: "the request was rejected as invalid; check the provider's settings and the date range",
            401: "the credentials were rejected; check the provider's key variables",
            403: "the credentials lack permission for this endpoint",
            404: "the resource was not found; check the project/account id and base URL",
        }.get(status, "the provider refused the request")


@dataclass
class _Attempt:
    """One try of a request (:meth:`HttpClient._attempts`): why it failed, for the retry
    decision and the messages."""

    number: int
    status: int | None = None
    retry_after: float | None = None
    failure: str = ""

    def fail(self, failure: str, excerpt: str = "") -> None:
        self.failure = f"{failure}; body: {excerpt}" if excerpt else failure

    def network_error(self, exc: Exception, stats: RequestStats) -> None:
        self.fail(f"network error ({type(exc).__name__})")
        stats.count("network")


@dataclass
class ItemStream:
    """The lists of items of one streamed JSON array (:meth:`HttpClient.stream_json_items`):
    iterating sends ``request`` (again on a retry) and reads the array with a fresh
    ``new_reader()`` each try.

    ``seen`` and ``kept`` count the array's items read and kept by the attempt that is running
    (the last one, once iteration ended).
    """

    # Bytes of a non-2xx body read for the error message: enough for any error envelope.
    ERROR_BODY_BYTES: ClassVar[int] = 1 << 16

    client: HttpClient
    request: httpx.Request
    endpoint: str
    new_reader: Callable[[], ArrayReader]
    batch_size: int
    reader: ArrayReader | None = field(default=None, init=False, repr=False)

    @property
    def seen(self) -> int:
        return self.reader.seen if self.reader is not None else 0

    @property
    def kept(self) -> int:
        return self.reader.kept if self.reader is not None else 0

    def __iter__(self) -> Iterator[list[Any]]:
        client, method, endpoint = self.client, self.request.method, self.endpoint
        handed_over = 0
        for attempt in client._attempts(method, endpoint):
            self.reader = reader = self.new_reader()
            try:
                with closing(client._client.send(self.request, stream=True)) as response:
                    attempt.status = response.status_code
                    if not response.is_success:
                        client.stats.count(str(response.status_code))
                        client._unsuccessful(attempt, method, endpoint, _bounded(response, self.ERROR_BODY_BYTES))
                        continue
                    _refuse_html(response)
                    for items in reader.batches(response.iter_bytes(), self.batch_size):
                        handed_over += len(items)
                        yield items
                    client.stats.count(str(response.status_code))
                    return
            except (httpx.TransportError, httpx.DecodingError) as exc:
                attempt.network_error(exc, client.stats)
            except (BadPage, ArrayError) as bad:
                attempt.fail(f"unexpected response body: {bad}")
                client.stats.count(str(attempt.status))
            if handed_over:
                raise ProviderUnavailable(
                    f"{client.provider}: {method} {endpoint} broke off after {handed_over} item(s) of the body "
                    f"had been handed over: {attempt.failure}. Rows and cursors committed so far are kept; "
                    "the next run repeats the request.",
                    status=attempt.status,
                )


def _shape(response: httpx.Response) -> str:
    """What a 2xx body that is not the expected page looks like, without its values: its records
    may hold end users' personal data, and a failure's text reaches logs, Dagster's run metadata
    and chat alerts. Top-level keys are field names; nothing below them is shown."""
    try:
        body = loads_json(response.content)
    except ValueError:
        return f"{len(response.content)} bytes that are not JSON"
    if isinstance(body, dict):
        keys = sorted(str(key)[:40] for key in body)
        return "a JSON object with keys " + ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "") if keys else "an empty JSON object"
    if isinstance(body, list):
        return f"a JSON array of {len(body)} item(s)"
    return f"a JSON {type(body).__name__}"


def _refuse_html(response: httpx.Response) -> None:
    """An HTML page with a 2xx status (a proxy's or a login page) is a bad page, not JSON."""
    content_type = response.headers.get("content-type", "")
    if "html" in content_type:
        raise BadPage(f"HTML instead of JSON (content-type {content_type.split(';')[0]})")


def _bounded(response: httpx.Response, limit: int) -> httpx.Response:
    """The first ``limit`` bytes of a streamed response's body as a read response (for error
    messages: a misbehaving server's error page must not be read whole), with the headers an
    error is judged by (the body is decoded already: its encoding and length headers would lie)."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    headers = {name: response.headers[name] for name in ("content-type", "retry-after") if name in response.headers}
    return httpx.Response(response.status_code, headers=headers, content=bytes(body))


def utc_http_date(when: datetime) -> str:
    """Format an HTTP-date (for Retry-After) - used by the sandbox and tests."""
    return email.utils.format_datetime(when.astimezone(timezone.utc), usegmt=True)
