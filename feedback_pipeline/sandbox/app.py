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
``GET  /_control/{provider}/records``      every stored record (native format)
``POST /_control/{provider}/records``      add one record or a list of records
``PATCH /_control/{provider}/records/{id}`` merge fields into a record and bump its update time
``DELETE /_control/{provider}/records/{id}`` delete a record
``POST /_control/{provider}/touch``        update a random ``fraction`` of records (``{fraction, seed,
                                           changes}``): merges ``changes``, bumps their update time
``POST /_control/{provider}/faults``       inject a fault (see :class:`core.Fault`)
``DELETE /_control/faults``                clear every fault
``GET|DELETE /_control/requests``          read / reset the request log (secrets masked)
=========================================  ====================================================
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import random
from datetime import date, datetime, timezone
from functools import cache
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .core import Emulator, Fault, SandboxState, json_response
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
        """(Re)build every provider's records from the state's seed, days and per_day."""
        now = now or datetime.now(UTC)
        days = dataset_days(self.state.days, self.state.end, now)
        for name, emulator in self.emulators.items():
            rng = self.state.rng(name)
            records: list[dict[str, Any]] = []
            for day in days:
                records.extend(emulator.generate_day(rng, day, self.state.per_day, now))
            emulator.store.replace_all(records)

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
        """Environment variables (CONTRACT.md names) that point the pipeline at this sandbox."""
        out: dict[str, str] = {}
        for emulator in self.emulators.values():
            out.update(emulator.env(base_url))
        return out

    def add(self, provider: str, record: dict[str, Any]) -> dict[str, Any]:
        emulator = self.emulators[provider]
        emulator.store.put(record)
        return record

    def update(self, provider: str, record_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        emulator = self.emulators[provider]
        with emulator.store.lock:
            current = emulator.store.get(record_id)
            if current is None:
                raise KeyError(record_id)
            updated = {**current, **changes}
            emulator.touch(updated, datetime.now(UTC))
            emulator.store.put(updated)
            return updated

    def delete(self, provider: str, record_id: str) -> bool:
        return self.emulators[provider].store.delete(record_id)

    def touch(self, provider: str, fraction: float, seed: int = 0, changes: dict[str, Any] | None = None) -> list[str]:
        """Mark a random ``fraction`` of the provider's records as updated now, merging ``changes``
        (native field names, e.g. a new status) into each; returns their ids."""
        emulator = self.emulators[provider]
        with emulator.store.lock:
            ids = sorted(emulator.store.records)
            chosen = random.Random(seed).sample(ids, k=round(len(ids) * fraction))
            now = datetime.now(UTC)
            for record_id in chosen:
                record = {**emulator.store.records[record_id], **(changes or {})}
                emulator.touch(record, now)
                emulator.store.records[record_id] = record
            emulator.store._touch()
        return chosen

    # -- control API ----------------------------------------------------------------------

    def _control_routes(self) -> list[Route]:
        return [
            Route("/_control/health", self._health, methods=["GET"]),
            Route("/_control/reset", self._reset, methods=["POST"]),
            Route("/_control/settings", self._settings, methods=["POST"]),
            Route("/_control/env", self._env, methods=["GET"]),
            Route("/_control/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_control/requests", self._requests, methods=["GET", "DELETE"]),
            Route("/_control/{provider}/records", self._records, methods=["GET", "POST"]),
            Route("/_control/{provider}/records/{record_id}", self._record, methods=["PATCH", "DELETE"]),
            Route("/_control/{provider}/faults", self._add_fault, methods=["POST"]),
            Route("/_control/{provider}/touch", self._touch, methods=["POST"]),
        ]

    async def _health(self, request: Request) -> Response:
        return json_response({"ok": True, "providers": list(self.emulators)})

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

    async def _clear_faults(self, request: Request) -> Response:
        self.state.clear_faults()
        return json_response({"ok": True})

    async def _requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.clear_log()
            return json_response({"ok": True})
        return json_response([dataclasses.asdict(e) for e in self.state.log])

    async def _records(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        if provider not in self.emulators:
            return json_response({"error": f"unknown provider {provider}"}, 404)
        if request.method == "GET":
            return json_response(list(self.emulators[provider].store.records.values()))
        body = await _json_body(request)
        records = body if isinstance(body, list) else [body]
        for record in records:
            self.add(provider, record)
        return json_response({"ok": True, "added": len(records)})

    async def _record(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        record_id = request.path_params["record_id"]
        if provider not in self.emulators:
            return json_response({"error": f"unknown provider {provider}"}, 404)
        if request.method == "DELETE":
            return json_response({"ok": self.delete(provider, record_id)})
        try:
            return json_response(self.update(provider, record_id, await _json_body(request)))
        except KeyError:
            return json_response({"error": "no such record"}, 404)

    async def _touch(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        if provider not in self.emulators:
            return json_response({"error": f"unknown provider {provider}"}, 404)
        body = await _json_body(request)
        chosen = self.touch(provider, float(body.get("fraction", 0.01)), int(body.get("seed", 0)), body.get("changes"))
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
