"""The control layer every sandbox fake shares: state dump/seed/reset, fault injection, a log.

A fake is its vendor routes plus a control API under `/__velvet/`, a prefix no vendor uses:

    GET    /__velvet/state      snapshot of the whole in-memory state (deterministic JSON;
                                secrets as `records.fingerprint`s, never in clear)
    POST   /__velvet/seed       JSON merged into the state
    POST   /__velvet/reset      empty state, no faults, empty request log
    POST   /__velvet/faults     add a fault (body: see FaultSpec.from_json); a fault can lie:
                                `drop` answers the vendor's own success and stores nothing
    DELETE /__velvet/faults     clear every fault (and release hanging requests)
    GET    /__velvet/faults     the faults still armed
    GET    /__velvet/requests   method, path and status of every vendor request, oldest first
    GET | POST /__velvet/limits the vendor's rate limits, time scale and breaches (ratelimit.py)

Faults apply to vendor routes only, so a test can always reach the control API to clear them.
The request log never holds bodies or headers: it may be printed by a failing test, and the
bodies and headers are where the secrets are.
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, PlainSerializer, SerializationInfo
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from velvet_runner.records import fingerprint

if TYPE_CHECKING:
    from velvet_sandbox.ratelimit import Limiter, Refusal

CONTROL_PREFIX = "/__velvet"
HANG_LIMIT_SECONDS = 120.0
_HANG_POLL_SECONDS = 0.05
_LOG_LIMIT = 10_000

ErrorFactory = Callable[[int, str], Response]
Json = dict[str, Any]


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault.

    `path` is an fnmatch glob (`/apps/*/config-vars`) or, when it starts with `^`, a regular
    expression matched against the whole path. `times` is how many matching requests it
    affects; None means every one until the faults are cleared.

    What the request gets: `status` answers the vendor's error body with that status and does
    nothing else (an error status only: answering a success without storing is `drop`'s job).
    `status` None serves the real answer, after `latency_ms` or a `hang`. `drop` serves the
    vendor's real answer, its success included, and then forgets every change the request made
    (a write acknowledged but not stored). `truncate` cuts the answer's body in half (the
    request did what it did; its answer does not parse). Over JSON, `status` left out means 503
    unless the fault drops, truncates or only delays (`drop`, `truncate`, `latency_ms` without
    `hang`).
    """

    method: str = "*"
    path: str = "*"
    status: int | None = 503
    times: int | None = None
    latency_ms: int = 0
    hang: bool = False
    retry_after: int | None = None
    message: str | None = None
    drop: bool = False
    truncate: bool = False

    @classmethod
    def from_json(cls, data: object, errors_at: Collection[int] = ()) -> FaultSpec:
        if not isinstance(data, dict):
            raise ValueError("fault must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        serves = data.get("drop") or data.get("truncate") or (
            data.get("latency_ms") and not data.get("hang"))
        fields: dict[str, Any] = {"status": None} if serves else {}
        spec = cls(**{**fields, **data})
        spec.validate(errors_at)
        return spec

    def validate(self, errors_at: Collection[int] = ()) -> None:
        """Raise ValueError on a fault the fake cannot serve. `errors_at`: the 2xx statuses at
        which this vendor answers its own errors (Slack's `ok: false` comes with a 200)."""
        if not isinstance(self.method, str) or not isinstance(self.path, str):
            raise ValueError("method and path must be strings")
        if self.status is not None and not (
            isinstance(self.status, int) and 100 <= self.status <= 599
        ):
            raise ValueError("status must be an HTTP status or null")
        if not isinstance(self.drop, bool) or not isinstance(self.truncate, bool):
            raise ValueError("drop and truncate must be true or false")
        if self.status is not None and 200 <= self.status < 300 and (
                self.drop or self.status not in errors_at):
            raise ValueError(
                "status 2xx would answer a success the fake did not perform: to answer the "
                "vendor's success without storing the write, use \"drop\": true" if not self.drop
                else "drop answers the vendor's own success: leave status out")
        if self.drop and self.status is not None:
            raise ValueError("drop answers the vendor's own success: leave status out")
        if self.times is not None and (not isinstance(self.times, int) or self.times < 1):
            raise ValueError("times must be a positive integer or null")
        if not isinstance(self.latency_ms, int) or self.latency_ms < 0:
            raise ValueError("latency_ms must be a non-negative integer")
        if self.retry_after is not None and (
            not isinstance(self.retry_after, int) or self.retry_after < 0
        ):
            raise ValueError("retry_after must be a non-negative integer or null")
        if self.path.startswith("^"):
            re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if self.path.startswith("^"):
            return re.fullmatch(self.path, path) is not None
        return fnmatch.fnmatchcase(path, self.path)


class Faults:
    """Thread-safe registry of injected faults; tests add them from another thread."""

    def __init__(self, errors_at: Collection[int] = ()) -> None:
        self._lock = threading.Lock()
        self._specs: list[FaultSpec] = []
        # Bumped by clear(), so a hanging request can notice and let go.
        self._generation = 0
        self.errors_at = frozenset(errors_at)

    def add(self, spec: FaultSpec) -> None:
        spec.validate(self.errors_at)
        with self._lock:
            self._specs.append(spec)

    def clear(self) -> None:
        with self._lock:
            self._specs.clear()
            self._generation += 1

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def active(self) -> list[FaultSpec]:
        with self._lock:
            return list(self._specs)

    def match(self, method: str, path: str, *alternatives: str) -> FaultSpec | None:
        """The first fault matching the request, with one use counted against its `times`."""
        with self._lock:
            for i, spec in enumerate(self._specs):
                if not any(spec.matches(method, p) for p in (path, *alternatives)):
                    continue
                if spec.times is not None:
                    if spec.times <= 1:
                        del self._specs[i]
                    else:
                        self._specs[i] = replace(spec, times=spec.times - 1)
                return spec
        return None


class RequestLog:
    """What the fake was asked: method, path, status. Nothing else, by design."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Json] = []

    def add(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._entries.append({"method": method, "path": path, "status": status})
            del self._entries[:-_LOG_LIMIT]

    def entries(self) -> list[Json]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _FaultMiddleware:
    """Applies faults to vendor requests and logs them; control requests pass untouched.

    A dropped request runs alone among this fake's vendor requests (those in flight finish
    first, new ones wait), so that putting the state back undoes its changes and no one else's.
    """

    def __init__(
        self, app: ASGIApp, *, faults: Faults, log: RequestLog, error: ErrorFactory, prefix: str,
        state: FakeState,
    ) -> None:
        self.app = app
        self.faults = faults
        self.log = log
        self.error = error
        self.prefix = prefix
        self.state = state
        self._in_flight = 0
        self._open: asyncio.Event | None = None  # cleared while a dropped request runs
        self._dropping: asyncio.Lock | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path == CONTROL_PREFIX or path.startswith(
            CONTROL_PREFIX + "/"
        ):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        status_seen: list[int] = []

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
            await send(message)

        alternatives = (path.removeprefix(self.prefix) or "/",) if self.prefix else ()
        spec = self.faults.match(method, path, *alternatives)
        answer = _truncating(logging_send) if spec is not None and spec.truncate else logging_send
        try:
            if spec is not None:
                if spec.latency_ms:
                    await asyncio.sleep(spec.latency_ms / 1000)
                if spec.hang:
                    # The vendor has the whole request and never answers: released (faults
                    # cleared) after the client gave up, it is served as if nothing happened,
                    # so a write lands although its caller saw a timeout.
                    receive = await _received(receive)
                    await self._hang()
                if spec.status is not None:
                    response = self.error(spec.status, spec.message or _default_message(spec))
                    if spec.retry_after is not None:
                        response.headers["Retry-After"] = str(spec.retry_after)
                    await response(scope, receive, answer)
                    return
                if spec.drop:
                    await self._dropped(scope, receive, answer)
                    return
            await self._served(scope, receive, answer)
        finally:
            # A hang the client gave up on still leaves a trace (status 0 = no response sent).
            self.log.add(method, path, status_seen[0] if status_seen else 0)

    async def _served(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._open is not None:
            await self._open.wait()  # a dropped request is running alone
        self._in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight -= 1

    async def _dropped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The real answer, with the state put back as it was before the request. It is put
        back before the answer leaves: a client that has its answer sees the state unchanged."""
        if self._open is None or self._dropping is None:
            self._open, self._dropping = asyncio.Event(), asyncio.Lock()
            self._open.set()
        async with self._dropping:
            self._open.clear()
            try:
                while self._in_flight:
                    await asyncio.sleep(_HANG_POLL_SECONDS)
                kept: list[Json] = [self.state.keep()]

                def put_back() -> None:
                    if kept:
                        self.state.put_back(kept.pop())

                async def answer(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        put_back()
                    await send(message)

                try:
                    await self.app(scope, receive, answer)
                finally:
                    put_back()
            finally:
                self._open.set()

    async def _hang(self) -> None:
        generation = self.faults.generation
        deadline = time.monotonic() + HANG_LIMIT_SECONDS
        while time.monotonic() < deadline and self.faults.generation == generation:
            await asyncio.sleep(_HANG_POLL_SECONDS)


def _default_message(spec: FaultSpec) -> str:
    return f"Injected fault: HTTP {spec.status}"


async def _received(receive: Receive) -> Receive:
    """The request body read now, and a `receive` that hands it over again later."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replay


def _truncating(send: Send) -> Send:
    """A `send` that delivers the first half of the response body (its Content-Length to
    match): the answer a client gets when a vendor or a proxy cuts a body short."""
    start: list[Message] = []
    body = bytearray()

    async def cut(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.append(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        half = bytes(body[:len(body) // 2])
        headers = [(k, v) for k, v in start[0].get("headers", [])
                   if k.lower() != b"content-length"]
        length = (b"content-length", str(len(half)).encode())
        await send({**start[0], "headers": [*headers, length]})
        await send({"type": "http.response.body", "body": half, "more_body": False})

    return cut


def shown(value: str, reveal: bool) -> str:
    """How a snapshot shows a secret: its fingerprint (`records.fingerprint`), enough to see it
    changed; `reveal=True` (in process only, never over HTTP) the value, so seeding restores it."""
    return value if reveal else fingerprint(value)


def _show_secret(value: str, info: SerializationInfo) -> str:
    return shown(value, bool((info.context or {}).get("reveal")))


class StateModel(BaseModel):
    """The base of every fake's state models: unknown keys refused, and a bad seed's error
    names the field but never echoes its input, which may be a secret."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


# A field of a fake's state model that holds a secret: `model_dump(context={"reveal": True})`
# (in process only) shows the value, so a seed restores it; anything else shows its fingerprint.
Secret = Annotated[str, PlainSerializer(_show_secret, return_type=str)]


def utc_now() -> str:
    """ISO-8601 UTC with a Z, the timestamp format every vendor here uses."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_response(data: Any, status: int = 200) -> JSONResponse:
    """JSON with sorted keys, so equal state gives byte-equal bodies."""
    return _SortedJSONResponse(data, status_code=status)


class _SortedJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")


async def read_json(request: Request) -> Any:
    """The request body as JSON, or a 400 the control routes can show the caller."""
    body = await request.body()
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise HTTPException(400, "body is not valid JSON") from None


ControlEndpoint = Callable[[Request], Awaitable[Response]]


def control_route(path: str, endpoint: ControlEndpoint, methods: list[str]) -> Route:
    """A control route whose bad input (missing or ill-typed fields) is a 400, not a 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (KeyError, TypeError, ValueError) as exc:
            return json_response({"error": f"bad request: {type(exc).__name__}: {exc}"}, 400)

    return Route(path, guarded, methods=methods)


def token_status_route(is_live: Callable[[str], bool]) -> Route:
    """`POST /token-status` `{"token": ...}` -> `{"live": bool}`: may this value still call?"""

    async def token_status(request: Request) -> Response:
        body = await read_json(request) or {}
        return json_response({"live": is_live(str(body.get("token", "")))})

    return control_route("/token-status", token_status, ["POST"])


def bearer_token(authorization: str | None, schemes: Sequence[str] = ("bearer",)) -> str | None:
    """The token of an `Authorization: <scheme> <token>` header (scheme case-insensitive).

    None when the header is missing or empty, names another scheme, or carries no token.
    """
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() in schemes else None


class FakeState(Protocol):
    """What every fake's state offers the control API."""

    def snapshot(self) -> Json: ...

    def seed(self, data: Json) -> None: ...

    def reset(self) -> None: ...

    def keep(self) -> Json: ...

    def put_back(self, kept: Json) -> None: ...


class Stored:
    """How a fake's state takes back a dropped write: each fake declares the attributes that
    hold what its writes store (`STORED`), and they are copied before the request and put back
    after it. Traffic is left out (rate-limit counters, the issued-token lists the leak scans
    read, id sequences), so a dropped mint still counts as issued and ids are never reused."""

    STORED: ClassVar[tuple[str, ...]] = ()
    _lock: threading.RLock

    def keep(self) -> Json:
        with self._lock:
            kept: Json = copy.deepcopy({name: getattr(self, name) for name in self.STORED})
            return kept

    def put_back(self, kept: Json) -> None:
        with self._lock:
            for name, value in kept.items():
                setattr(self, name, value)


def build_app(
    name: str,
    routes: list[BaseRoute],
    *,
    error: ErrorFactory,
    state: FakeState,
    extra_control_routes: Sequence[BaseRoute] = (),
    prefix: str = "",
    limiter: Limiter | None = None,
    reject: Callable[[Refusal], Response] | None = None,
    errors_at: Collection[int] = (),
) -> Starlette:
    """A fake vendor: `routes` (mounted under `prefix`) plus the `/__velvet/` control API.

    `error(status, message)` renders the vendor's own error body; it is used for injected
    faults and for unknown routes, so a client sees the vendor's shape even then. `state`
    answers the control API's state, seed and reset.

    `errors_at` names the 2xx statuses at which the vendor answers its own errors (Slack's
    method errors come with a 200), so a fault may use them; any other 2xx `status` is refused:
    answering a success without doing the work is `drop`'s job.

    `limiter` (ratelimit.py) counts every vendor request against the vendor's published
    limits and `reject` renders a refusal; its settings and breaches are served at
    `/__velvet/limits`, and a reset restores the real numbers.
    """
    faults = Faults(errors_at)
    log = RequestLog()

    async def get_state(request: Request) -> Response:
        return json_response(state.snapshot())

    async def post_seed(request: Request) -> Response:
        data = await read_json(request)
        if not isinstance(data, dict):
            return json_response({"error": "seed body must be a JSON object"}, 400)
        try:
            state.seed(data)
        except (KeyError, TypeError, ValueError) as exc:
            return json_response({"error": f"bad seed: {exc}"}, 400)
        return json_response({"ok": True})

    async def post_reset(request: Request) -> Response:
        state.reset()
        if limiter is not None:
            limiter.restore()
        faults.clear()
        log.clear()
        return json_response({"ok": True})

    async def post_fault(request: Request) -> Response:
        try:
            spec = FaultSpec.from_json(await read_json(request), faults.errors_at)
        except (TypeError, ValueError, re.error) as exc:
            return json_response({"error": f"bad fault: {exc}"}, 400)
        faults.add(spec)
        return json_response({"ok": True, "fault": asdict(spec)}, 201)

    async def get_faults(request: Request) -> Response:
        return json_response({"faults": [asdict(s) for s in faults.active()]})

    async def delete_faults(request: Request) -> Response:
        faults.clear()
        return json_response({"ok": True})

    async def get_requests(request: Request) -> Response:
        return json_response({"requests": log.entries()})

    control: list[BaseRoute] = [
        Route("/state", get_state, methods=["GET"]),
        Route("/seed", post_seed, methods=["POST"]),
        Route("/reset", post_reset, methods=["POST"]),
        Route("/faults", post_fault, methods=["POST"]),
        Route("/faults", get_faults, methods=["GET"]),
        Route("/faults", delete_faults, methods=["DELETE"]),
        Route("/requests", get_requests, methods=["GET"]),
        *extra_control_routes,
        *(limiter.control_routes() if limiter is not None else ()),
    ]
    vendor: list[BaseRoute] = [Mount(prefix, routes=routes)] if prefix else list(routes)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
        if request.url.path.startswith(CONTROL_PREFIX + "/"):
            return json_response({"error": exc.detail}, exc.status_code)
        return error(exc.status_code, exc.detail)

    middleware = [
        Middleware(_FaultMiddleware, faults=faults, log=log, error=error, prefix=prefix,
                   state=state)
    ]
    if limiter is not None:
        from velvet_sandbox.ratelimit import LimitMiddleware, route_template

        refuse = reject or (lambda r: error(429, "rate limited"))
        middleware.insert(0, Middleware(LimitMiddleware, limiter=limiter, reject=refuse,
                                        part="concurrency"))
        if limiter.rules:  # a fake with windows of its own (GitHub); others only count
            middleware.append(Middleware(LimitMiddleware, limiter=limiter, reject=refuse,
                                         part="rate", endpoint=route_template(vendor)))
    app = Starlette(
        routes=[Mount(CONTROL_PREFIX, routes=control), *vendor],
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
    )
    app.state.name = name
    app.state.faults = faults
    app.state.request_log = log
    app.state.limiter = limiter
    return app
