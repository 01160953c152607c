"""The JSON endpoints and the job stream (SSE): DESIGN.md's status API, shapes unchanged.

A token value never reaches a response: records hold ids and fingerprints only, and the
manifest holds no values (health-check URLs are not shown either). Fingerprints are shown
keyed (state.FingerprintKey). `/healthz` says 503 with the reason while the copy of the state
branch cannot be trusted (its last fetch failed, or it is older than
VELVET_STATUS_MAX_AGE_SECONDS). At most `Context.streams.limit` event streams are open at once;
one more is answered 503 with a Retry-After.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from velvet_runner.errors import WebBadRequest, WebNotFound, WebUnavailable
from velvet_runner.machine import is_terminal
from velvet_runner.manifest import Credential
from velvet_runner.records import Job
from velvet_runner.store import CREDENTIAL_RE
from velvet_runner.web.state import Context, credential_label

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SSE_RETRY_MS = 3000


def context(request: Request) -> Context:
    ctx: Context = request.app.state.velvet
    ctx.state.start()
    return ctx


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise WebBadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


_HEALTH = Response(bytes(JSONResponse({"status": "ok", "service": "velvet"}).body),
                   media_type="application/json")


async def health(request: Request) -> Response:
    # async, from memory: a probe must not queue behind the thread pool or wait on git
    ctx: Context = request.app.state.velvet
    trouble = ctx.state.trouble(ctx.settings.status_max_age_seconds)
    if trouble is None:
        return _HEALTH
    return JSONResponse({"status": "degraded", "service": "velvet", "reason": trouble},
                        status_code=503)


def flags(request: Request) -> JSONResponse:
    return JSONResponse(context(request).manifest.flags())


def subscribers(request: Request) -> JSONResponse:
    ctx = context(request)
    name = request.path_params["name"]
    if not CREDENTIAL_RE.fullmatch(name):
        raise WebNotFound(credential_label(name))
    cred = ctx.manifest.get().credential(name)
    if cred is None:
        raise WebNotFound(f"{credential_label(name)} in the manifest")
    return JSONResponse(subscribers_json(cred))


def subscribers_json(cred: Credential) -> dict[str, Any]:
    return {
        "credential": cred.name,
        "vendor": cred.vendor,
        "env": cred.env,
        "active": cred.active,
        "schedule": cred.schedule,
        "consumers": [
            {
                "consumer_id": c.consumer_id,
                "kind": c.kind,
                "env": c.env,
                "active": c.active,
                "healthcheck_type": c.healthcheck.type,
                "target": c.describe(),
            }
            for c in cred.consumers
        ],
    }


async def rotations(request: Request) -> Response:
    ctx: Context = request.app.state.velvet
    name = request.path_params["name"]
    limit = parse_limit(request.query_params.get("limit"))
    return await _cached_json(ctx, ("rotations", name, str(limit)),
                              lambda: _rotations_json(ctx, name, limit))


def _rotations_json(ctx: Context, name: str, limit: int) -> dict[str, Any]:
    ctx.require_credential(name)
    jobs = ctx.state.jobs(name, limit)
    return {"credential": name, "limit": limit, "jobs": [j.summary() for j in jobs]}


async def rotation(request: Request) -> Response:
    ctx: Context = request.app.state.velvet
    name, job_id = request.path_params["name"], request.path_params["job_id"]
    return await _cached_json(ctx, ("rotation", name, job_id),
                              lambda: ctx.require_job(name, job_id).summary())


async def _cached_json(ctx: Context, key: tuple[str, ...],
                       render: Callable[[], Any]) -> Response:
    """A read-only JSON page, rendered once per state-branch head.

    Pages only change when the branch (or the manifest) does, so a hit is answered on the
    event loop from memory: no thread hop, no git, no serialisation. A miss, and anything that
    raises (404, 503), runs in the thread pool as the synchronous endpoints do.
    """
    if ctx.state.started:
        hit = ctx.state.page(key, ctx.manifest.stat_key())
        if hit is not None:
            return hit

    def miss() -> Response:
        ctx.state.start()
        manifest_key = ctx.manifest.stat_key()
        head = ctx.state.head()
        body = ctx.keyed(bytes(JSONResponse(render()).body).decode())
        response = Response(body.encode(), media_type="application/json")
        ctx.state.remember(key, head, manifest_key, response)
        return response

    return await run_in_threadpool(miss)


def _sse(ctx: Context, event: str, data: Any) -> str:
    text = ctx.keyed(json.dumps(data, sort_keys=True, separators=(",", ":")))
    return f"event: {event}\ndata: {text}\n\n"


def _signature(job: Job) -> tuple[str, list[dict[str, Any]]]:
    return str(job.status), [row.model_dump(mode="json") for row in job.consumers]


class _Held(StreamingResponse):
    """A stream that gives its slot back however it ends (finished, disconnected, failed)."""

    def __init__(self, ctx: Context, events: AsyncIterator[str], headers: dict[str, str]
                 ) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ctx.streams.give_back()


async def stream(request: Request) -> Response:
    ctx: Context = request.app.state.velvet
    await run_in_threadpool(ctx.state.start)
    name, job_id = request.path_params["name"], request.path_params["job_id"]
    await run_in_threadpool(ctx.require_job, name, job_id)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":
        return Response(media_type="text/event-stream", headers=headers)
    if not ctx.streams.take():
        return JSONResponse(
            {"error": f"too many open event streams (at most {ctx.streams.limit}); retry "
                      "later or poll the job", "status": 503},
            status_code=503, headers={"Retry-After": str(SSE_RETRY_MS // 1000)})
    return _Held(ctx, _job_events(ctx, name, job_id), headers)


async def _job_events(ctx: Context, name: str, job_id: str) -> AsyncIterator[str]:
    """`job` on every change of status or of a consumer row; `end` at a terminal state.

    The branch is only re-read when the refresher saw a new head (or, as a safety net, after a
    few refresh periods), so an idle stream costs nothing but its heartbeat.
    """
    yield f"retry: {SSE_RETRY_MS}\n\n"
    last: tuple[str, list[dict[str, Any]]] | None = None
    seen_generation = -1
    last_read = last_sent = time.monotonic()
    safety = max(5.0, ctx.state.refresh_seconds * 3)
    while True:
        now = time.monotonic()
        generation = ctx.state.generation
        if generation != seen_generation or now - last_read >= safety:
            seen_generation, last_read = generation, now
            try:
                job = await run_in_threadpool(ctx.state.job, name, job_id)
            except WebUnavailable as exc:
                yield _sse(ctx, "end", {"job_id": job_id, "status": None, "reason": exc.message})
                return
            if job is None:
                yield _sse(ctx, "end", {"job_id": job_id, "status": None,
                                        "reason": "job not found"})
                return
            signature = _signature(job)
            if signature != last:
                last, last_sent = signature, now
                yield _sse(ctx, "job", job.summary())
            if is_terminal(job.flow_type, job.status):
                yield _sse(ctx, "end", {"job_id": job.job_id, "status": str(job.status)})
                return
        if now - last_sent >= ctx.heartbeat_seconds:
            last_sent = now
            yield ": heartbeat\n\n"
        await anyio.sleep(ctx.poll_seconds)
