"""The read-only status app: the route table (with its OpenAPI docs), the 405 guard, errors.

Routes (OpenAPI at /openapi.json, generated from ROUTES by `openapi.document`):

    GET /healthz, /health                              {"status": "ok", "service": "velvet"}
    GET /flags                                         flags.yml beside the manifest
    GET /tokens/{name}/subscribers                     the credential's consumers (no values)
    GET /tokens/{name}/rotations?limit=N               jobs, newest first (1 <= N <= 100)
    GET /tokens/{name}/rotations/{job_id}              one job, the runbook's polling shape
    GET /tokens/{name}/rotations/{job_id}/stream       SSE: `job` on change, `end` at terminal
    GET /                                              HTML: every credential
    GET /tokens/{name}/view                            HTML: one credential's consumers and jobs
    GET /tokens/{name}/rotations/{job_id}/view         HTML: one job, live over the stream
    GET /key-ages, /key-ages.svg                       HTML and SVG: key ages against schedules
    GET /evidence?format=md|csv|json                   the evidence export (`velvet evidence`)

Any other method on any path is 405, with `Allow` naming the methods the path serves; an
unknown credential, job or path is a 404 JSON body `{"error": ..., "status": 404}`. Every path
but /healthz and /health needs a read token (auth.py) unless the app is served `--public`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from velvet_runner import redact
from velvet_runner.errors import PageNotFound, WebError
from velvet_runner.gitbranch import token_env
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.web import api, keyages, pages
from velvet_runner.web.auth import RequireToken, Tokens
from velvet_runner.web.openapi import (
    DEGRADED_503,
    ERROR_400,
    ERROR_404,
    EVIDENCE_QUERY,
    LIMIT,
    LIMIT_400,
    MANIFEST_503,
    PAGE,
    PAGE_404,
    RECORD_503,
    STREAMS_503,
    Doc,
    Documented,
    document,
    json_reply,
    text_reply,
)
from velvet_runner.web.state import (
    Context,
    FingerprintKey,
    ManifestView,
    StateView,
    StreamSlots,
)

STATIC_DIR = Path(__file__).parent / "static"

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status,
                        headers=headers)


def _static(name: str, media_type: str) -> Callable[[Request], Response]:
    content = (STATIC_DIR / name).read_bytes()

    def endpoint(request: Request) -> Response:
        return Response(content, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=300"})

    endpoint.__name__ = f"static_{name.replace('.', '_')}"
    return endpoint


def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


HEALTH = Doc("Liveness, and whether the copy of the state branch is fresh",
             json_reply("Health", "Velvet is up and its copy of the state branch is fresh"),
             {503: DEGRADED_503}, public=True)
ROUTES: list[BaseRoute] = [
    Documented("/healthz", api.health, HEALTH),
    Documented("/health", api.health, Doc("Liveness (alias of /healthz)", HEALTH.ok,
                                          HEALTH.errors, public=True), name="health_alias"),
    Documented("/flags", api.flags, Doc(
        "Feature flags from flags.yml beside the manifest",
        json_reply("Flags", "flag name to on/off"), {503: MANIFEST_503})),
    Documented("/openapi.json", openapi, Doc("This document", {
        "description": "OpenAPI 3.1",
        "content": {"application/json": {"schema": {"type": "object"}}}})),
    Documented("/tokens/{name}/subscribers", api.subscribers, Doc(
        "The credential's consumers from the manifest (never a value)",
        json_reply("Subscribers", "the consumers"), {404: ERROR_404, 503: MANIFEST_503})),
    Documented("/tokens/{name}/rotations", api.rotations, Doc(
        "The credential's jobs, newest first", json_reply("Rotations", "jobs, newest first"),
        {400: LIMIT_400, 404: ERROR_404}, query=(LIMIT,))),
    Documented("/tokens/{name}/rotations/{job_id}", api.rotation, Doc(
        "One job in the runbook's polling shape", json_reply("Job", "the job record"),
        {404: ERROR_404, 503: RECORD_503})),
    Documented("/tokens/{name}/rotations/{job_id}/stream", api.stream, Doc(
        "Server-sent events: `job` (the job JSON) on every change of status or consumer "
        "row, a comment heartbeat, and `end` at a terminal state",
        {"description": "an event stream", "content": {"text/event-stream": {
            "schema": {"$ref": "#/components/schemas/StreamEvent"}}}},
        {404: ERROR_404, 503: STREAMS_503})),
    Documented("/", pages.index, Doc("Status page: every credential", PAGE,
                                     {503: MANIFEST_503})),
    Documented("/tokens/{name}/view", pages.credential_view, Doc(
        "Status page of one credential", PAGE, {404: PAGE_404})),
    Documented("/tokens/{name}/rotations/{job_id}/view", pages.job_view, Doc(
        "Status page of one job, live over the stream", PAGE,
        {404: PAGE_404, 503: RECORD_503})),
    Documented("/key-ages", keyages.key_ages_page, Doc(
        "Key ages against their schedules (HTML, the chart below as an image)", PAGE)),
    Documented("/key-ages.svg", keyages.key_ages_svg, Doc(
        "Key ages against their schedules as an SVG chart (no script)",
        text_reply("image/svg+xml", "SVG"))),
    Documented("/evidence", keyages.evidence_export, Doc(
        "The evidence export of `velvet evidence`: every rotation, from this copy of the "
        "state branch (the same head gives the same bytes)",
        {"description": "Markdown, CSV or JSON (format)", "content": {
            media: {"schema": {"type": "object" if media == "application/json" else "string"}}
            for media in keyages.MEDIA.values()}},
        {400: ERROR_400, 404: ERROR_404, 503: MANIFEST_503}, query=EVIDENCE_QUERY)),
    Documented("/static/velvet.css", _static("velvet.css", "text/css"),
               Doc("Stylesheet", text_reply("text/css", "CSS"))),
    Documented("/static/velvet.js", _static("velvet.js", "text/javascript"),
               Doc("Live-update script", text_reply("text/javascript", "JavaScript"))),
]


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ROUTES (built once: the routes are fixed)."""
    return document(ROUTES)


def _methods(route: BaseRoute) -> set[str]:
    return set(getattr(route, "methods", None) or ())


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """The methods the path in `scope` serves: its route's; on no route, the app's (a 404)."""
    for route in routes:
        if route.matches(scope)[0] != Match.NONE:
            return sorted(_methods(route))
    return sorted(set().union(*map(_methods, routes)))


class ReadOnly:
    """405 for every method a path does not serve; security headers on every response."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes
        self.read_only = frozenset(set().union(*map(_methods, routes)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in self.read_only:
            allow = ", ".join(allowed_methods(self.routes, scope))
            response = _error(405, f"method {scope['method'][:10]} not allowed: the status app "
                              "is read-only", headers={"Allow": allow})
            await response(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in _SECURITY_HEADERS if h[0] not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped


MAX_STREAMS = 64  # event streams open at once (each holds a connection and a poller)


def create_app(settings: Settings, *, store: Store | None = None,
               refresh_seconds: float | None = None, heartbeat_seconds: float = 10.0,
               now: Callable[[], datetime] | None = None, public: bool = False,
               max_streams: int = MAX_STREAMS) -> Starlette:
    """The status app. `store` defaults to the state branch named by `settings`, fetched
    every `refresh_seconds` (default VELVET_STATUS_REFRESH_SECONDS) with VELVET_STATE_TOKEN.
    Closed to requests without one of `settings.status_tokens` unless `public`."""
    for secret in (*settings.status_tokens, settings.state_token,
                   settings.status_fingerprint_key):
        redact.register(secret)  # the log formatter's last line of defence
    if store is None:
        token = settings.state_token
        store = Store(settings.state, settings.state_branch, settings.cache_dir,
                      env=token_env(token.get_secret_value()) if token else None)
    if refresh_seconds is None:
        refresh_seconds = settings.status_refresh_seconds
    state = StateView(store, refresh_seconds)
    key = settings.status_fingerprint_key
    ctx = Context(
        settings=settings, state=state, manifest=ManifestView(Path(settings.manifest)),
        heartbeat_seconds=heartbeat_seconds,
        poll_seconds=min(0.25, max(0.02, refresh_seconds / 4)),
        now=now or (lambda: datetime.now(UTC)),
        keyed=FingerprintKey(key.get_secret_value().encode() if key else None),
        streams=StreamSlots(max_streams), public=public,
    )

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
        message = "no such path" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, message, headers=dict(exc.headers or {}))

    def web_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WebError)  # noqa: S101 - registered for WebError only
        if isinstance(exc, PageNotFound):
            return pages.not_found_page(ctx, exc.message)
        return _error(exc.status, exc.message)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(state.start)
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = Starlette(routes=ROUTES, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, WebError: web_error})
    app.state.velvet = ctx
    if not public:
        app.add_middleware(RequireToken, tokens=Tokens(settings.status_tokens),
                           render=pages.plain_page)
    app.add_middleware(ReadOnly, routes=ROUTES)  # outermost: a write is 405 with or without
    return app


def serve(host: str, port: int, settings: Settings, *, public: bool = False) -> None:
    """Serve the status app with uvicorn until interrupted (`velvet serve`)."""
    uvicorn.run(create_app(settings, public=public), host=host, port=port, log_level="info")
