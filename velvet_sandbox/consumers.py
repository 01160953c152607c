"""Fake consumer services: the apps that hold a credential and prove it works.

Each consumer is registered with a vendor and a `source`, a callable returning the value the
consumer holds right now (a Heroku config var, a decrypted GitHub secret, an Infisical secret,
an SSM parameter: whatever the world plugs in). `GET /consumers/{id}/health` authenticates to
the vendor fake with that value:

    200 {"status": "ok"}            the vendor accepts the value
    401 {"status": "unauthorized"}  the vendor refuses it, or there is no value
    503 {"status": "unavailable"}   the consumer could not read its store
    404 {"status": "unknown"}       no such consumer

A `cache=True` consumer reads and validates once, then answers from memory until restarted
(`POST /__velvet/consumers/{id}/restart`). That is the runbook's rev_leaked root cause: after
the old value is revoked it still answers 200.

Validation calls the vendor State in process rather than over HTTP, so injecting a fault
into a vendor fake never races with consumer health checks for the fault's `times`.
No value ever appears in a response, the snapshot or a log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from velvet_sandbox import registry
from velvet_sandbox.control import (
    Json,
    Stored,
    build_app,
    control_route,
    json_response,
    read_json,
)

Source = Callable[[], str | None]
Validator = Callable[[str], bool]

OK = "ok"
UNAUTHORIZED = "unauthorized"
UNAVAILABLE = "unavailable"
_STATUS_CODES = {OK: 200, UNAUTHORIZED: 401, UNAVAILABLE: 503}


@dataclass
class _Consumer:
    consumer_id: str
    vendor: str
    source: Source
    cache: bool = False
    description: str = ""
    cached: str | None = None
    restarts: int = 0
    checks: int = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> _Consumer:
        # `source` reads another fake's state (it is not this fake's to copy): a dropped write
        # takes back what this consumer remembered, not where it reads from.
        return replace(self)


class ConsumersState(Stored):
    """Registered consumers; `validators` maps a vendor name to "is this value live?"."""

    STORED = ("_consumers",)

    def __init__(self, validators: Mapping[str, Validator] | None = None) -> None:
        self._lock = threading.RLock()
        self.validators: dict[str, Validator] = dict(validators or {})
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._consumers: dict[str, _Consumer] = {}

    def snapshot(self) -> Json:
        with self._lock:
            return {"consumers": {c.consumer_id: self._public(c)
                                  for c in self._consumers.values()}}

    def seed(self, data: Json) -> None:
        """Merge: {"consumers": [{"consumer_id", "vendor", "value", "cache"?}]} with a fixed
        value (JSON cannot carry a callable; the world registers real sources in process)."""
        for c in data.get("consumers", []):
            self.register(c["consumer_id"], c["vendor"], fixed_source(c.get("value")),
                          cache=bool(c.get("cache", False)), description="seeded value")

    def register(
        self, consumer_id: str, vendor: str, source: Source, *, cache: bool = False,
        description: str = "",
    ) -> None:
        with self._lock:
            if vendor not in self.validators:
                raise ValueError(f"no validator for vendor {vendor!r}")
            self._consumers[consumer_id] = _Consumer(consumer_id, vendor, source, cache,
                                                     description)

    def unregister(self, consumer_id: str) -> bool:
        with self._lock:
            return self._consumers.pop(consumer_id, None) is not None

    def restart(self, consumer_id: str) -> bool:
        """Drop what a caching consumer remembered, as a dyno restart would."""
        with self._lock:
            consumer = self._consumers.get(consumer_id)
            if consumer is None:
                return False
            consumer.cached = None
            consumer.restarts += 1
            return True

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._consumers)

    def list(self) -> list[Json]:
        with self._lock:
            return [self._public(self._consumers[cid]) for cid in sorted(self._consumers)]

    def check(self, consumer_id: str) -> str | None:
        """Run one health check: "ok", "unauthorized", "unavailable", or None if unknown.

        Blocking (a source may call boto3); the route runs it in a worker thread.
        """
        with self._lock:
            consumer = self._consumers.get(consumer_id)
            if consumer is None:
                return None
            consumer.checks += 1
            if consumer.cache and consumer.cached is not None:
                return consumer.cached
            validator = self.validators[consumer.vendor]
        try:
            value = consumer.source()
        except Exception:  # noqa: BLE001 - any store failure is "cannot read my config"
            return UNAVAILABLE
        result = OK if value and validator(value) else UNAUTHORIZED
        if consumer.cache:
            with self._lock:
                if consumer.cached is None:
                    consumer.cached = result
                result = consumer.cached
        return result

    @staticmethod
    def _public(consumer: _Consumer) -> Json:
        return {"consumer_id": consumer.consumer_id, "vendor": consumer.vendor,
                "cache": consumer.cache, "cached": consumer.cached,
                "description": consumer.description, "restarts": consumer.restarts}


def fixed_source(value: str | None) -> Source:
    """A source that always holds `value`."""
    return lambda: value


def health_path(consumer_id: str) -> str:
    return f"/consumers/{consumer_id}/health"


def _error(status: int, message: str) -> Response:
    return json_response({"status": "error", "message": message}, status)


def _routes(state: ConsumersState) -> list[BaseRoute]:
    async def health(request: Request) -> Response:
        result = await run_in_threadpool(state.check, request.path_params["consumer_id"])
        if result is None:
            return json_response({"status": "unknown"}, 404)
        return json_response({"status": result}, _STATUS_CODES[result])

    return [Route("/consumers/{consumer_id}/health", health, methods=["GET"])]


def _control_routes(state: ConsumersState) -> list[BaseRoute]:
    async def list_consumers(request: Request) -> Response:
        return json_response({"consumers": state.list()})

    async def restart(request: Request) -> Response:
        if not state.restart(request.path_params["consumer_id"]):
            return json_response({"error": "no such consumer"}, 404)
        return json_response({"ok": True})

    async def register(request: Request) -> Response:
        body = await read_json(request) or {}
        state.seed({"consumers": [body]})
        return json_response({"ok": True}, 201)

    return [
        control_route("/consumers", list_consumers, ["GET"]),
        control_route("/consumers", register, ["POST"]),
        control_route("/consumers/{consumer_id}/restart", restart, ["POST"]),
    ]


State = ConsumersState


def create_app(state: ConsumersState) -> Starlette:
    return build_app(
        "consumers",
        _routes(state),
        error=_error,
        state=state,
        extra_control_routes=_control_routes(state),
    )


# --- the sandbox's registry ----------------------------------------------------------------


class ConsumersFake(registry.Fake):
    """The consumer stand-ins: one per consumer of the world, answering its health check with
    whether the value its target holds is live at the vendor (the world registers them)."""

    name = "consumers"

    def new_state(self) -> ConsumersState:
        return ConsumersState()

    def app(self) -> Starlette:
        return create_app(self.state)


registry.register(ConsumersFake)
