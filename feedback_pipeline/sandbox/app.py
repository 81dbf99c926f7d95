"""The sandbox ASGI app: five provider emulators and a control API on one loopback port.

Control API (for tests and demos; JSON in and out):

=========================================  ====================================================
``GET  /_control/health``                  liveness
``POST /_control/reset``                   :meth:`Sandbox.reset`: data and switches as at
                                           start, or ``{seed, days, per_day, end, <switch>}``;
                                           no faults, an empty request log
``POST /_control/settings``                ``{mintlify_rate_limit, feedbackkit_snake_case,
                                           hub_supports_updated_sort}``
``GET  /_control/env?base_url=``           the environment variables that point the pipeline here
                                           (account 1)
``GET  /_control/accounts?base_url=``      ``{"file": <accounts file YAML>, "env": {...}}`` for
                                           accounts 2..N (:meth:`Sandbox.accounts_file`)
``GET  /_control/{provider}/records``      every stored record (native format)
``POST /_control/{provider}/records``      add one record or a list of records
``PATCH /_control/{provider}/records/{id}`` merge fields into a record and bump its update time
``DELETE /_control/{provider}/records/{id}`` delete a record
``POST /_control/{provider}/touch``        update a random ``fraction`` of records (``{fraction, seed,
                                           changes}``): merges ``changes``, bumps their update time
``POST /_control/{provider}/faults``       inject a fault (see :class:`core.Fault`; ``account``
                                           limits it to one account's requests)
``DELETE /_control/faults``                clear every fault
``GET|DELETE /_control/requests``          read / reset the request log (secrets masked)
=========================================  ====================================================

The record endpoints (``records``, ``touch``) take ``?account=k`` (default 1) when the sandbox
serves several accounts per provider (``SandboxState(accounts=N)``).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import random
from datetime import date, datetime, timezone
from functools import cache
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..accounts import ENV_KEY as ACCOUNTS_ENV_KEY
from .core import Emulator, Fault, ProviderStore, SandboxState, json_response
from .data import dataset_days

UTC = timezone.utc

@cache
def emulator_classes() -> dict[str, type[Emulator]]:
    """Provider name -> emulator class: every module of this package that exports ``EMULATOR``."""
    found: dict[str, type[Emulator]] = {}
    for module in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
        emulator = getattr(importlib.import_module(f"{__package__}.{module.name}"), "EMULATOR", None)
        if emulator is not None:
            found[emulator.name] = emulator
    return dict(sorted(found.items()))


def load_emulators(state: SandboxState, providers: tuple[str, ...] | None = None) -> dict[str, Emulator]:
    """Instantiate the emulators of ``providers`` (default: all)."""
    classes = emulator_classes()
    return {name: classes[name](state) for name in providers or tuple(classes)}


class Sandbox:
    """A sandbox instance: state, emulators, and the ASGI app serving them."""

    def __init__(self, state: SandboxState | None = None, *, providers: tuple[str, ...] | None = None):
        self.state = state or SandboxState()
        self.emulators = load_emulators(self.state, providers)
        self.generate()
        routes: list[Route] = []
        for emulator in self.emulators.values():
            routes.extend(emulator.routes())
        routes.extend(self._control_routes())
        self.app = Starlette(routes=routes)

    # -- data -----------------------------------------------------------------------------

    def generate(self, now: datetime | None = None) -> None:
        """(Re)build every provider's records, for each account, from the state's seed, days and
        per_day."""
        now = now or datetime.now(UTC)
        days = dataset_days(self.state.days, self.state.end, now)
        for name, emulator in self.emulators.items():
            for account in emulator.accounts:
                rng = self.state.rng(name, account)
                records: list[dict[str, Any]] = []
                for day in days:
                    records.extend(emulator.generate_day(rng, day, self.state.per_day, now, account))
                emulator.store_for(account).replace_all(records)

    def reset(self, **overrides: Any) -> None:
        """Back to the sandbox as it started: data parameters and switches as given at
        construction (or ``overrides``: seed, days, per_day, end, a switch), freshly generated
        records, no faults, an empty request log, emulator settings back to their defaults.
        The control API's ``POST /_control/reset`` and the tests' fixtures call this."""
        self.state.reset(**overrides)
        for emulator in self.emulators.values():
            emulator.reset()
        self.generate()

    def env(self, base_url: str) -> dict[str, str]:
        """Environment variables (CONTRACT.md names) that point the pipeline at this sandbox
        (its account 1 of each provider)."""
        out: dict[str, str] = {}
        for emulator in self.emulators.values():
            out.update(emulator.env(base_url))
        return out

    def accounts_file(self, base_url: str) -> str:
        """The ``FEEDBACK_ACCOUNTS_FILE`` (YAML) declaring accounts 2..N of each provider, which
        :meth:`env` (account 1) does not configure. Secrets appear only as ``{env: NAME}``;
        :meth:`accounts_env` gives those variables."""
        entries, _ = self._more_accounts(base_url)
        header = (
            f"# The feedback-pipeline sandbox at {base_url} serves {self.state.accounts} account(s) per provider;\n"
            "# these entries declare all but the first.\n"
            "# Account 1 is configured by the plain variables; the secrets below are the variables of Sandbox.accounts_env().\n"
        )
        return header + yaml.safe_dump(entries, sort_keys=False, default_flow_style=None, allow_unicode=True)

    def accounts_env(self) -> dict[str, str]:
        """The secret variables the :meth:`accounts_file` entries name besides :meth:`env`'s
        (``<VAR>_<k>``)."""
        # Secrets do not depend on the base URL, so any URL gives the same variables.
        return self._more_accounts("http://127.0.0.1")[1]

    def _more_accounts(self, base_url: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
        """Accounts-file entries for accounts 2..N (keys: the spec's setting keys) and the new
        variables holding their secrets: ``<VAR>_<k>``, except that a secret account k shares
        with account 1 (Mintlify's organization-wide admin key) names account 1's variable."""
        from ..providers import get_spec

        entries: dict[str, list[dict[str, Any]]] = {}
        secrets: dict[str, str] = {}
        for name, emulator in self.emulators.items():
            spec = get_spec(name)
            first = emulator.settings(base_url)
            for account in emulator.accounts[1:]:
                entry: dict[str, Any] = {}
                for key, value in emulator.settings(base_url, account).items():
                    setting = spec.setting(key)
                    if not setting.secret:
                        entry[key] = value
                    elif value == first[key]:
                        entry[key] = {ACCOUNTS_ENV_KEY: setting.var}
                    else:
                        secrets[f"{setting.var}_{account}"] = value
                        entry[key] = {ACCOUNTS_ENV_KEY: f"{setting.var}_{account}"}
                entries.setdefault(name, []).append(entry)
        return entries, secrets

    def _emulator_store(self, provider: str, account: int) -> tuple[Emulator, ProviderStore]:
        """The emulator of ``provider`` and the store of its ``account`` (KeyError when either
        does not exist in this sandbox)."""
        emulator = self.emulators[provider]
        if account not in emulator.accounts:
            raise KeyError(f"account {account}")
        return emulator, emulator.store_for(account)

    def records(self, provider: str, account: int = 1) -> list[dict[str, Any]]:
        """Every stored record of one account of ``provider`` (native format)."""
        return list(self._emulator_store(provider, account)[1].records.values())

    def add(self, provider: str, record: dict[str, Any], account: int = 1) -> dict[str, Any]:
        self._emulator_store(provider, account)[1].put(record)
        return record

    def update(self, provider: str, record_id: str, changes: dict[str, Any], account: int = 1) -> dict[str, Any]:
        emulator, store = self._emulator_store(provider, account)
        with store.lock:
            current = store.get(record_id)
            if current is None:
                raise KeyError(record_id)
            updated = {**current, **changes}
            emulator.touch(updated, datetime.now(UTC))
            store.put(updated)
            return updated

    def delete(self, provider: str, record_id: str, account: int = 1) -> bool:
        return self._emulator_store(provider, account)[1].delete(record_id)

    def touch(self, provider: str, fraction: float, seed: int = 0, changes: dict[str, Any] | None = None, account: int = 1) -> list[str]:
        """Mark a random ``fraction`` of one account's records as updated now, merging ``changes``
        (native field names, e.g. a new status) into each; returns their ids."""
        emulator, store = self._emulator_store(provider, account)
        with store.lock:
            ids = sorted(store.records)
            chosen = random.Random(seed).sample(ids, k=round(len(ids) * fraction))
            now = datetime.now(UTC)
            for record_id in chosen:
                record = {**store.records[record_id], **(changes or {})}
                emulator.touch(record, now)
                store.records[record_id] = record
            store._touch()
            store.refresh()
        return chosen

    # -- control API ----------------------------------------------------------------------

    def _control_routes(self) -> list[Route]:
        return [
            Route("/_control/health", self._health, methods=["GET"]),
            Route("/_control/reset", self._reset, methods=["POST"]),
            Route("/_control/settings", self._settings, methods=["POST"]),
            Route("/_control/env", self._env, methods=["GET"]),
            Route("/_control/accounts", self._accounts, methods=["GET"]),
            Route("/_control/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_control/requests", self._requests, methods=["GET", "DELETE"]),
            Route("/_control/{provider}/records", self._records, methods=["GET", "POST"]),
            Route("/_control/{provider}/records/{record_id}", self._record, methods=["PATCH", "DELETE"]),
            Route("/_control/{provider}/faults", self._add_fault, methods=["POST"]),
            Route("/_control/{provider}/touch", self._touch, methods=["POST"]),
        ]

    async def _health(self, request: Request) -> Response:
        return json_response({"ok": True, "providers": list(self.emulators), "accounts": self.state.accounts})

    async def _reset(self, request: Request) -> Response:
        body = await _json_body(request)
        if body.get("end"):
            body["end"] = date.fromisoformat(body["end"])
        try:
            self.reset(**body)
        except ValueError as bad:
            return json_response({"error": str(bad)}, 400)
        return json_response({"ok": True, "records": {n: len(e.store.records) for n, e in self.emulators.items()}})

    async def _settings(self, request: Request) -> Response:
        body = await _json_body(request)
        for key in self.state.SWITCHES:
            if key in body:
                setattr(self.state, key, body[key])
        self.state.extra.clear()
        return json_response({"ok": True})

    async def _env(self, request: Request) -> Response:
        base = request.query_params.get("base_url") or str(request.base_url).rstrip("/")
        return json_response(self.env(base))

    async def _accounts(self, request: Request) -> Response:
        base = request.query_params.get("base_url") or str(request.base_url).rstrip("/")
        return json_response({"file": self.accounts_file(base), "env": self.accounts_env()})

    async def _clear_faults(self, request: Request) -> Response:
        self.state.clear_faults()
        return json_response({"ok": True})

    async def _requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.clear_log()
            return json_response({"ok": True})
        return json_response([dataclasses.asdict(e) for e in self.state.log])

    def _target(self, request: Request) -> tuple[str, int] | Response:
        """The provider of the path and the ``?account=`` of the query (default 1), or the
        404/400 answer when the sandbox serves no such provider or account."""
        provider = request.path_params["provider"]
        if provider not in self.emulators:
            return json_response({"error": f"unknown provider {provider}"}, 404)
        raw = request.query_params.get("account", "1")
        account = int(raw) if raw.isdigit() else 0
        if account not in self.emulators[provider].accounts:
            return json_response({"error": f"no account {raw!r}: this sandbox serves accounts 1..{self.state.accounts}"}, 404)
        return provider, account

    async def _records(self, request: Request) -> Response:
        target = self._target(request)
        if isinstance(target, Response):
            return target
        provider, account = target
        if request.method == "GET":
            return json_response(self.records(provider, account))
        body = await _json_body(request)
        records = body if isinstance(body, list) else [body]
        for record in records:
            self.add(provider, record, account)
        return json_response({"ok": True, "added": len(records)})

    async def _record(self, request: Request) -> Response:
        target = self._target(request)
        if isinstance(target, Response):
            return target
        provider, account = target
        record_id = request.path_params["record_id"]
        if request.method == "DELETE":
            return json_response({"ok": self.delete(provider, record_id, account)})
        try:
            return json_response(self.update(provider, record_id, await _json_body(request), account))
        except KeyError:
            return json_response({"error": "no such record"}, 404)

    async def _touch(self, request: Request) -> Response:
        target = self._target(request)
        if isinstance(target, Response):
            return target
        provider, account = target
        body = await _json_body(request)
        chosen = self.touch(provider, float(body.get("fraction", 0.01)), int(body.get("seed", 0)), body.get("changes"), account)
        return json_response({"ok": True, "touched": len(chosen)})

    async def _add_fault(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        if provider not in self.emulators:
            return json_response({"error": f"unknown provider {provider}"}, 404)
        body = await _json_body(request)
        fields = {f.name for f in dataclasses.fields(Fault)}
        self.state.add_fault(provider, Fault(**{k: v for k, v in body.items() if k in fields}))
        return json_response({"ok": True})


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    import orjson

    return orjson.loads(raw)


def create_app(**state_kwargs: Any) -> Starlette:
    """ASGI factory (``uvicorn --factory feedback_pipeline.sandbox.app:create_app``)."""
    return Sandbox(SandboxState(**state_kwargs)).app
