"""The read-only status app: health, flags, subscribers, rotations, a live job stream, HTML.

Nothing here writes. Every request reads the state branch from the local cache repository
(`fetch=False`); one background thread fetches the branch every `refresh_seconds`, so no request
ever waits on the remote. Parsed jobs are cached against the commit they were read at, so a page
that shows five jobs reads five files once per change of the branch, not every job on every hit.

Routes (OpenAPI at /openapi.json, built by `openapi_document`):

    GET /healthz, /health                              {"status": "ok", "service": "velvet"}
    GET /flags                                         flags.yml beside the manifest
    GET /tokens/{name}/subscribers                     the credential's consumers (no values)
    GET /tokens/{name}/rotations?limit=N               jobs, newest first (1 <= N <= 100)
    GET /tokens/{name}/rotations/{job_id}              one job, the runbook's polling shape
    GET /tokens/{name}/rotations/{job_id}/stream       SSE: `job` on change, `end` at terminal
    GET /                                              HTML: every credential
    GET /tokens/{name}/view                            HTML: one credential's consumers and jobs
    GET /tokens/{name}/rotations/{job_id}/view         HTML: one job, live over the stream

Any other method on any path is 405; an unknown credential, job or path is a 404 JSON body
`{"error": ..., "status": 404}`. A token value never reaches a response: records hold ids and
fingerprints only, and the manifest holds no values (health-check URLs are not shown either).
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from velvet_runner import report
from velvet_runner.errors import ManifestError, NotFoundError, VelvetError
from velvet_runner.machine import (
    IN_PROGRESS,
    OPERATOR_STATES,
    Action,
    Flow,
    State,
    allowed,
    is_terminal,
)
from velvet_runner.manifest import Credential, Manifest, load, load_flags
from velvet_runner.records import DONE_ROW, Job, RowStatus
from velvet_runner.settings import Settings
from velvet_runner.store import CREDENTIAL_RE, JOB_ID_RE, Store

log = logging.getLogger("velvet.web")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SCAN_LIMIT = 200  # jobs read per credential to find its last completed rotation
SSE_RETRY_MS = 3000
PAGE_CACHE_SIZE = 4096  # rendered JSON bodies kept per head (credential x limit, jobs)
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
MUTATING_METHODS = ("post", "put", "patch", "delete")
STATIC_DIR = Path(__file__).parent / "web_static"

WORKFLOWS = {
    "stage1": ("velvet-stage-1-verify.yml", "Stage 1 — verify"),
    "stage2": ("velvet-stage-2-mint.yml", "Stage 2 — mint + distribute"),
    "stage3": ("velvet-stage-3-revoke.yml", "Stage 3 — validate + revoke"),
    "recovery": ("velvet-recovery.yml", "Recovery"),
    "revocation": ("velvet-revocation.yml", "Emergency revocation"),
}

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
]


# --- errors ------------------------------------------------------------------------------


class _NotFound(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _PageNotFound(_NotFound):
    """A 404 for an HTML page: answered with HTML, not JSON."""


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Unavailable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status,
                        headers=headers)


def _credential_label(name: str) -> str:
    # Echo a name only when it has a credential's shape: never reflect arbitrary input.
    return f"no credential {name}" if CREDENTIAL_RE.fullmatch(name) else "no such credential"


def _job_label(job_id: str) -> str:
    return f"no job {job_id}" if JOB_ID_RE.fullmatch(job_id) else "no such job (job ids are UUIDs)"


# --- the state branch, read through a cache ----------------------------------------------


class StateView:
    """Cached reads of the state branch; a daemon thread fetches it every `refresh_seconds`.

    Reads never fetch. Each cached value remembers the commit it was read at and is used only
    while the local branch still points there; a read during which the branch moved is
    returned but not cached.
    """

    def __init__(self, store: Store, refresh_seconds: float) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.generation = 0  # bumped whenever a fetch finds a new head
        self.fetched_at: datetime | None = None
        self.last_error: str | None = None
        self._fetched_head: str | None = None
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: dict[tuple[str, str], tuple[str | None, Job]] = {}
        self._ids: dict[str, tuple[str | None, list[str]]] = {}
        self._locks: dict[str, tuple[str | None, str | None]] = {}
        self._creds: tuple[str | None, list[str]] | None = None
        # Rendered JSON responses: (head, manifest key, response) per page; see page().
        self._pages: dict[tuple[str, ...], tuple[str | None, object, Response]] = {}

    # lifecycle

    def refresh(self) -> None:
        try:
            head = self.store.refresh()
        except (VelvetError, OSError) as exc:
            self.last_error = str(exc)
            log.warning("state branch fetch failed: %s", exc)
            return
        with self._lock:
            if head != self._fetched_head or self.fetched_at is None:
                self._fetched_head = head
                self.generation += 1
            self.fetched_at = datetime.now(UTC)
            self.last_error = None

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self.refresh()
            self._thread = threading.Thread(target=self._run, name="velvet-web-refresh",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.refresh_seconds * 2))

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    # reads

    def head(self) -> str | None:
        return self.store.head(fetch=False)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def page(self, key: tuple[str, ...], manifest_key: object) -> Response | None:
        """The response rendered for `key` at the current head and manifest, if any.

        A cached Response is sent as is to every request that hits it: nothing on the way
        out (uvicorn, Starlette, _ReadOnly) changes a response's headers or body in place.
        """
        head = self.head()
        with self._lock:
            hit = self._pages.get(key)
        if hit is not None and hit[0] == head and hit[1] == manifest_key:
            return hit[2]
        return None

    def remember(self, key: tuple[str, ...], head: str | None, manifest_key: object,
                 response: Response) -> None:
        if not self._stable(head):
            return
        with self._lock:
            if len(self._pages) >= PAGE_CACHE_SIZE:
                self._pages.clear()
            self._pages[key] = (head, manifest_key, response)

    def _stable(self, before: str | None) -> bool:
        return self.store.head(fetch=False) == before

    def credentials(self) -> list[str]:
        head = self.head()
        with self._lock:
            if self._creds is not None and self._creds[0] == head:
                return list(self._creds[1])
        # a folder that is not a credential's name is not ours to show (or to pass to git)
        names = [n for n in self.store.credentials(fetch=False) if CREDENTIAL_RE.fullmatch(n)]
        if self._stable(head):
            with self._lock:
                self._creds = (head, names)
        return list(names)

    def job_ids(self, credential: str) -> list[str]:
        head = self.head()
        with self._lock:
            hit = self._ids.get(credential)
            if hit is not None and hit[0] == head:
                return list(hit[1])
        ids = self.store.job_ids(credential, fetch=False)
        if self._stable(head):
            with self._lock:
                self._ids[credential] = (head, ids)
        return list(ids)

    def jobs(self, credential: str, limit: int) -> list[Job]:
        """The newest `limit` jobs of a credential, newest first."""
        head = self.head()
        ids = self.job_ids(credential)[:limit]
        with self._lock:
            cached = [self._jobs.get((credential, i)) for i in ids]
            if all(c is not None and c[0] == head for c in cached):
                return [c[1] for c in cached if c is not None]
        try:
            jobs = self.store.list_jobs(credential, limit, fetch=False)
        except ValueError:
            # one record does not parse: list the others, each read on its own
            found = (self._read_one(credential, i) for i in ids)
            return [j for j in found if j is not None]
        if self._stable(head):
            with self._lock:
                for job in jobs:
                    self._jobs[(credential, job.job_id)] = (head, job)
        return jobs

    def _read_one(self, credential: str, job_id: str) -> Job | None:
        try:
            return self.job(credential, job_id)
        except _Unavailable:
            return None

    def job(self, credential: str, job_id: str) -> Job | None:
        head = self.head()
        with self._lock:
            hit = self._jobs.get((credential, job_id))
            if hit is not None and hit[0] == head:
                return hit[1]
        try:
            job = self.store.get(credential, job_id, fetch=False)
        except NotFoundError:
            return None
        except ValueError as exc:  # pydantic's ValidationError, or JSON that does not parse
            log.error("job record %s/%s does not parse: %s", credential, job_id,
                      str(exc).splitlines()[0])
            raise _Unavailable(f"job record {job_id} does not parse; see the server log") \
                from None
        if self._stable(head):
            with self._lock:
                self._jobs[(credential, job_id)] = (head, job)
        return job

    def lock_holder(self, credential: str) -> str | None:
        head = self.head()
        with self._lock:
            hit = self._locks.get(credential)
            if hit is not None and hit[0] == head:
                return hit[1]
        holder = self.store.lock_holder(credential, fetch=False)
        if self._stable(head):
            with self._lock:
                self._locks[credential] = (head, holder)
        return holder


class ManifestView:
    """The manifest, reloaded when the file changes; an invalid one makes pages 503."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._manifest: Manifest | None = None
        self._error: str | None = None

    def get(self) -> Manifest:
        try:
            stat = self.path.stat()
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None
        with self._lock:
            if key is None or key != self._key:
                self._key = key
                try:
                    self._manifest, self._error = load(self.path), None
                except ManifestError as exc:
                    self._manifest = None
                    self._error = "the manifest does not load; run `velvet manifest check`"
                    log.error("manifest %s invalid: %s", self.path, "; ".join(exc.reasons))
            if self._manifest is None:
                raise _Unavailable(self._error or "the manifest does not load")
            return self._manifest

    def stat_key(self) -> tuple[int, int] | None:
        """What get() keys its cache on: a page rendered under another key may be stale."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def flags(self) -> dict[str, bool]:
        try:
            return load_flags(self.path)
        except ManifestError as exc:
            log.error("flags beside %s invalid: %s", self.path, "; ".join(exc.reasons))
            raise _Unavailable("flags.yml does not load; it must map names to true/false") \
                from None


@dataclass
class _Context:
    settings: Settings
    state: StateView
    manifest: ManifestView
    heartbeat_seconds: float
    poll_seconds: float
    now: Callable[[], datetime]

    def known(self, name: str) -> bool:
        """A credential is known if the manifest names it or the state branch has its jobs."""
        if not CREDENTIAL_RE.fullmatch(name):
            return False
        with contextlib.suppress(_Unavailable):
            if self.manifest.get().credential(name) is not None:
                return True
        return name in self.state.credentials()

    def require_credential(self, name: str) -> None:
        if not self.known(name):
            raise _NotFound(_credential_label(name))

    def require_job(self, name: str, job_id: str) -> Job:
        self.require_credential(name)
        if not JOB_ID_RE.fullmatch(job_id):
            raise _NotFound(_job_label(job_id))
        job = self.state.job(name, job_id)
        if job is None:
            raise _NotFound(f"{_job_label(job_id)} for credential {name}")
        return job


def _ctx(request: Request) -> _Context:
    ctx: _Context = request.app.state.velvet
    ctx.state.start()
    return ctx


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise _BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


# --- JSON endpoints ----------------------------------------------------------------------


_HEALTH = Response(bytes(JSONResponse({"status": "ok", "service": "velvet"}).body),
                   media_type="application/json")


async def health(request: Request) -> Response:
    # async and pre-rendered: a liveness probe must not queue behind the thread pool
    return _HEALTH


def flags(request: Request) -> JSONResponse:
    return JSONResponse(_ctx(request).manifest.flags())


def subscribers(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    name = request.path_params["name"]
    if not CREDENTIAL_RE.fullmatch(name):
        raise _NotFound(_credential_label(name))
    cred = ctx.manifest.get().credential(name)
    if cred is None:
        raise _NotFound(f"{_credential_label(name)} in the manifest")
    return JSONResponse(_subscribers_json(cred))


def _subscribers_json(cred: Credential) -> dict[str, Any]:
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
    ctx: _Context = request.app.state.velvet
    name = request.path_params["name"]
    limit = _parse_limit(request.query_params.get("limit"))
    return await _cached_json(ctx, ("rotations", name, str(limit)),
                              lambda: _rotations_json(ctx, name, limit))


def _rotations_json(ctx: _Context, name: str, limit: int) -> dict[str, Any]:
    ctx.require_credential(name)
    jobs = ctx.state.jobs(name, limit)
    return {"credential": name, "limit": limit, "jobs": [j.summary() for j in jobs]}


async def rotation(request: Request) -> Response:
    ctx: _Context = request.app.state.velvet
    name, job_id = request.path_params["name"], request.path_params["job_id"]
    return await _cached_json(ctx, ("rotation", name, job_id),
                              lambda: ctx.require_job(name, job_id).summary())


async def _cached_json(ctx: _Context, key: tuple[str, ...],
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
        response = Response(bytes(JSONResponse(render()).body), media_type="application/json")
        ctx.state.remember(key, head, manifest_key, response)
        return response

    return await run_in_threadpool(miss)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, sort_keys=True, separators=(',', ':'))}\n\n"


def _signature(job: Job) -> tuple[str, list[dict[str, Any]]]:
    return str(job.status), [row.model_dump(mode="json") for row in job.consumers]


async def stream(request: Request) -> Response:
    ctx: _Context = request.app.state.velvet
    await run_in_threadpool(ctx.state.start)
    name, job_id = request.path_params["name"], request.path_params["job_id"]
    await run_in_threadpool(ctx.require_job, name, job_id)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":
        return Response(media_type="text/event-stream", headers=headers)
    return StreamingResponse(
        _job_events(ctx, name, job_id),
        media_type="text/event-stream", headers=headers,
    )


async def _job_events(ctx: _Context, name: str, job_id: str) -> AsyncIterator[str]:
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
            except _Unavailable as exc:
                yield _sse("end", {"job_id": job_id, "status": None, "reason": exc.message})
                return
            if job is None:
                yield _sse("end", {"job_id": job_id, "status": None, "reason": "job not found"})
                return
            signature = _signature(job)
            if signature != last:
                last, last_sent = signature, now
                yield _sse("job", job.summary())
            if is_terminal(job.flow_type, job.status):
                yield _sse("end", {"job_id": job.job_id, "status": str(job.status)})
                return
        if now - last_sent >= ctx.heartbeat_seconds:
            last_sent = now
            yield ": heartbeat\n\n"
        await anyio.sleep(ctx.poll_seconds)


# --- HTML --------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


_ENV_BANNERS = {
    "prod": ("banner-prod", "PRODUCTION"),
    "staging": ("banner-staging", "STAGING"),
}


def _page(ctx: _Context, title: str, body: str, *, status_code: int = 200) -> HTMLResponse:
    css_class, label = _ENV_BANNERS.get(ctx.settings.env or "", ("banner-unset",
                                                               "ENVIRONMENT NOT SET"))
    head = ctx.state.head()
    fetched = ctx.state.fetched_at
    fetch_note = (f"last fetched {_time(fetched)}" if fetched else "not fetched yet")
    if ctx.state.last_error:
        fetch_note += " — <strong>the last fetch failed; this page may be stale</strong>"
    doc = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · {_e(label)} · Velvet</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/velvet.css">
<script src="/static/velvet.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="banner {css_class}">
<p><strong class="env-label">{_e(label)}</strong>
<span class="env-note">VELVET_ENV={_e(ctx.settings.env or "unset")} · Velvet runner status ·
read-only</span></p>
<nav aria-label="Site"><ul><li><a href="/">Credentials</a></li>
<li><a href="/openapi.json">API (OpenAPI)</a></li></ul></nav>
</header>
<main id="main" tabindex="-1">
{body}
</main>
<footer>
<p>State branch <code>{_e(ctx.settings.state_branch)}</code> at
<code>{_e((head or "none")[:12])}</code>, {fetch_note}. This page is read-only: rotations are
started and advanced by the GitHub workflows or <code>velvet stage</code>.</p>
</footer>
</body>
</html>
"""
    return HTMLResponse(doc, status_code=status_code)


def _time(value: datetime | None) -> str:
    if value is None:
        return "—"
    utc = value.astimezone(UTC)
    return (f'<time datetime="{utc.strftime("%Y-%m-%dT%H:%M:%SZ")}">'
            f'{utc.strftime("%Y-%m-%d %H:%M")} UTC</time>')


def _duration(delta: timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"


def _job_tone(job: Job) -> str:
    status = State(job.status)
    if status in (State.DONE, State.REV_DONE):
        return "ok"
    if status == State.ABORTED:
        return "neutral"
    if status in OPERATOR_STATES or status == State.REV_LEAKED or is_terminal(
            job.flow_type, status):
        return "bad"
    if status in IN_PROGRESS:
        return "busy"
    return "wait"


_TONE_ICON = {"ok": "✓", "bad": "✗", "busy": "⟳", "wait": "…", "neutral": "–"}


def _status_badge(job: Job) -> str:
    tone = _job_tone(job)
    return (f'<span class="badge tone-{tone}" data-status="{_e(job.status)}">'
            f'<span aria-hidden="true">{_TONE_ICON[tone]}</span> {_e(job.status)}</span>')


_ROW_TONE = {
    RowStatus.SUCCEEDED: "ok",
    RowStatus.MANUALLY_CONFIRMED: "ok",
    RowStatus.PENDING: "wait",
    RowStatus.IN_PROGRESS: "busy",
    RowStatus.MANUAL_REQUIRED: "wait",
    RowStatus.FAILED: "bad",
    RowStatus.SKIPPED: "neutral",
}
_ROW_LABEL = {
    RowStatus.SUCCEEDED: "succeeded",
    RowStatus.MANUALLY_CONFIRMED: "manually confirmed",
    RowStatus.PENDING: "pending",
    RowStatus.IN_PROGRESS: "in progress",
    RowStatus.MANUAL_REQUIRED: "manual action required",
    RowStatus.FAILED: "failed",
    RowStatus.SKIPPED: "skipped",
}


def _row_cell(status: RowStatus) -> str:
    tone = _ROW_TONE[status]
    return (f'<td class="row-status tone-{tone}" data-status="{_e(status)}">'
            f'<span aria-hidden="true">{_TONE_ICON[tone]}</span> {_e(_ROW_LABEL[status])}</td>')


def _job_href(name: str, job_id: str) -> str:
    return f"/tokens/{_e(name)}/rotations/{_e(job_id)}/view"


def next_workflow(job: Job) -> tuple[str, str, list[Action]] | None:
    """(workflow file, label, allowed actions) of what runs the job next; None when finished."""
    flow, state = job.flow_type, State(job.status)
    actions = allowed(flow, state, force_revoke=job.force_revoke)
    if not actions:
        return None
    if state in OPERATOR_STATES:
        key = "recovery"
    elif flow == Flow.REVOCATION:
        key = "revocation"
    elif Action.PROCEED_REVOKE in actions:
        key = "stage3"
    elif Action.PROCEED_MINT in actions:
        key = "stage2"
    elif Action.VERIFY in actions:
        key = "stage1"
    else:
        key = "recovery"
    file, label = WORKFLOWS[key]
    return file, label, actions


def workflow_url(settings: Settings, file: str) -> str | None:
    repo = settings.github_repository
    if not repo or not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        return None
    return f"{settings.github_server_url.rstrip('/')}/{repo}/actions/workflows/{file}"


@dataclass
class _CredentialSummary:
    name: str
    credential: Credential | None
    latest: Job | None
    last_done: Job | None
    last_done_at: datetime | None
    current: Job | None
    current_id: str | None
    open_debt: int


def _done_at(job: Job) -> datetime:
    for event in reversed(job.events):
        if event.to_state == State.DONE:
            return event.at
    return job.updated_at


def _summarise(ctx: _Context, name: str, cred: Credential | None) -> _CredentialSummary:
    jobs = ctx.state.jobs(name, SCAN_LIMIT)
    last_done = next((j for j in jobs if j.flow_type == Flow.OPERATIONAL
                      and j.status == State.DONE), None)
    holder = ctx.state.lock_holder(name)
    current = ctx.state.job(name, holder) if holder and JOB_ID_RE.fullmatch(holder) else None
    debt = sum(1 for j in jobs for d in j.revocation_debt if d.settled_at is None)
    return _CredentialSummary(
        name=name, credential=cred, latest=jobs[0] if jobs else None, last_done=last_done,
        last_done_at=_done_at(last_done) if last_done else None, current=current,
        current_id=holder, open_debt=debt,
    )


def _next_due(ctx: _Context, s: _CredentialSummary) -> str:
    hours = s.credential.schedule_hours if s.credential else None
    if s.credential is not None and not s.credential.active:
        return '<span class="muted">inactive — rotate manually</span>'
    if hours is None:
        return '<span class="muted">no schedule</span>'
    if s.last_done_at is None:
        return '<span class="tone-bad">due now (never rotated by Velvet)</span>'
    due = s.last_done_at + timedelta(hours=hours)
    left = due - ctx.now()
    if left.total_seconds() <= 0:
        return f'{_time(due)} <span class="tone-bad">(overdue by {_duration(left)})</span>'
    return f"{_time(due)} <span class=\"muted\">(in {_duration(left)})</span>"


def index(request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    try:
        manifest: Manifest | None = ctx.manifest.get()
        manifest_error = None
    except _Unavailable as exc:
        manifest, manifest_error = None, exc.message
    names: list[tuple[str, Credential | None]] = []
    if manifest is not None:
        names = [(c.name, c) for c in manifest.credentials]
    listed = {n for n, _ in names}
    names += [(n, None) for n in ctx.state.credentials() if n not in listed]
    rows = []
    for name, cred in names:
        s = _summarise(ctx, name, cred)
        notes = []
        if cred is None:
            notes.append('<span class="tag">not in the manifest</span>')
        elif not cred.active:
            notes.append('<span class="tag">inactive</span>')
        latest = "<span class=\"muted\">never</span>"
        if s.latest is not None:
            latest = (f'<a href="{_job_href(name, s.latest.job_id)}">{_status_badge(s.latest)}'
                      f'<span class="visually-hidden"> job {_e(s.latest.job_id)}</span></a> '
                      f'<span class="muted">{_e(s.latest.flow_type)}, started '
                      f'{_time(s.latest.created_at)}</span>')
        done = "<span class=\"muted\">never</span>"
        if s.last_done_at is not None:
            done = (f"{_time(s.last_done_at)} <span class=\"muted\">"
                    f"({_duration(ctx.now() - s.last_done_at)} ago)</span>")
        if s.current is not None:
            current = (f'<a href="{_job_href(name, s.current.job_id)}">{_status_badge(s.current)}'
                       f'</a> <code>{_e(s.current.job_id[:8])}</code>')
        elif s.current_id is not None:
            current = f"<code>{_e(s.current_id)}</code> (lock held; record not found)"
        else:
            current = '<span class="muted">none</span>'
        debt = (f'<span class="tone-bad">{s.open_debt} token(s) not yet proven revoked</span>'
                if s.open_debt else '<span class="muted">none</span>')
        rows.append(
            f'<tr><th scope="row"><a href="/tokens/{_e(name)}/view">{_e(name)}</a> '
            f'{" ".join(notes)}</th>'
            f"<td>{_e(cred.vendor if cred else '—')}</td>"
            f"<td>{_e(cred.env if cred else '—')}</td>"
            f"<td>{_e(cred.schedule if cred and cred.schedule else '—')}</td>"
            f"<td>{latest}</td><td>{done}</td><td>{_next_due(ctx, s)}</td>"
            f"<td>{current}</td><td>{debt}</td></tr>"
        )
    error = (f'<p class="alert" role="alert">{_e(manifest_error)}</p>' if manifest_error else "")
    body = f"""<h1>Credentials</h1>
{error}
<table class="grid">
<caption>Every credential in the subscription manifest: its last rotation, when the next one is
due (the schedule after the last completed rotation) and the job in flight.</caption>
<thead><tr><th scope="col">Credential</th><th scope="col">Vendor</th><th scope="col">Env</th>
<th scope="col">Schedule</th><th scope="col">Last rotation</th>
<th scope="col">Last completed</th><th scope="col">Next due</th>
<th scope="col">Current job</th><th scope="col">Revocation debt</th></tr></thead>
<tbody>
{"".join(rows) or '<tr><td colspan="9">No credentials.</td></tr>'}
</tbody>
</table>"""
    return _page(ctx, "Credentials", body)


def credential_view(request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    name = request.path_params["name"]
    if not ctx.known(name):
        raise _PageNotFound(_credential_label(name))
    cred: Credential | None = None
    with contextlib.suppress(_Unavailable):
        cred = ctx.manifest.get().credential(name)
    parts = [f"<h1>Credential {_e(name)}</h1>"]
    if cred is None:
        parts.append('<p class="alert">This credential is not in the manifest; its history '
                     "is shown from the state branch.</p>")
    else:
        if cred.description:
            parts.append(f"<p>{_e(cred.description)}</p>")
        parts.append(
            f'<dl class="facts"><dt>Vendor</dt><dd>{_e(cred.vendor)}</dd><dt>Env</dt>'
            f"<dd>{_e(cred.env)}</dd><dt>Schedule</dt><dd>{_e(cred.schedule or 'none')}</dd>"
            f"<dt>Active</dt><dd>{'yes' if cred.active else 'no — rotate manually'}</dd></dl>")
        consumer_rows = "".join(
            f"<tr><th scope=\"row\"><code>{_e(c.consumer_id)}</code></th><td>{_e(c.kind)}</td>"
            f"<td>{_e(c.describe())}</td><td>{_e(c.env)}</td>"
            f"<td>{'yes' if c.active else 'no (skipped)'}</td><td>{_e(c.healthcheck.type)}</td>"
            "</tr>" for c in cred.consumers)
        parts.append(f"""<table class="grid">
<caption>Consumers (subscribers) of {_e(name)}</caption>
<thead><tr><th scope="col">Consumer</th><th scope="col">Kind</th><th scope="col">Target</th>
<th scope="col">Env</th><th scope="col">Active</th><th scope="col">Health check</th></tr></thead>
<tbody>{consumer_rows or '<tr><td colspan="6">No consumers.</td></tr>'}</tbody>
</table>""")
    jobs = ctx.state.jobs(name, DEFAULT_LIMIT)
    job_rows = "".join(
        f'<tr><th scope="row"><a href="{_job_href(name, j.job_id)}"><code>{_e(j.job_id)}</code>'
        f"</a></th><td>{_e(j.flow_type)}</td><td>{_status_badge(j)}</td>"
        f"<td>{_time(j.created_at)}</td><td>{_time(j.updated_at)}</td><td>{_e(j.actor)}</td></tr>"
        for j in jobs)
    parts.append(f"""<table class="grid">
<caption>The {DEFAULT_LIMIT} most recent jobs of {_e(name)}, newest first</caption>
<thead><tr><th scope="col">Job</th><th scope="col">Flow</th><th scope="col">Status</th>
<th scope="col">Created</th><th scope="col">Updated</th><th scope="col">Started by</th>
</tr></thead>
<tbody>{job_rows or '<tr><td colspan="6">No jobs yet.</td></tr>'}</tbody>
</table>""")
    return _page(ctx, name, "\n".join(parts))


def _visited(job: Job) -> list[str]:
    """report.path, plus the state the first move left and the current state if missing."""
    path = report.path(job)
    first = next((e.from_state for e in job.events if e.to_state), None)
    if first and (not path or path[0] != first):
        path.insert(0, first)
    if not path or path[-1] != job.status:
        path.append(str(job.status))
    return path


def _path_list(job: Job) -> str:
    path = _visited(job)
    items = []
    for i, state in enumerate(path):
        current = i == len(path) - 1
        cls = "current" if current else "visited"
        aria = ' aria-current="step"' if current else ""
        items.append(f'<li class="{cls}"{aria}><code>{_e(state)}</code></li>')
    return "".join(items)


def job_view(request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    name, job_id = request.path_params["name"], request.path_params["job_id"]
    try:
        job = ctx.require_job(name, job_id)
    except _NotFound as exc:
        raise _PageNotFound(exc.message) from None
    stream_url = f"/tokens/{_e(name)}/rotations/{_e(job_id)}/stream"
    terminal = is_terminal(job.flow_type, job.status)
    rows = "".join(
        f'<tr data-consumer="{_e(r.consumer_id)}"><th scope="row"><code>{_e(r.consumer_id)}'
        f"</code></th><td>{_e(r.kind)}</td><td>{_e(r.target)}</td>"
        f"{_row_cell(r.distribute_status)}{_row_cell(r.validate_status)}"
        f"<td>{_e(r.holds)}</td><td>{r.attempts}</td><td>{_e(r.detail or '')}</td></tr>"
        for r in job.consumers)
    done_rows = sum(1 for r in job.consumers if r.distribute_status in DONE_ROW)
    nxt = next_workflow(job)
    if nxt is None:
        next_html = "<p>This job is finished; nothing runs next.</p>"
    else:
        file, label, actions = nxt
        url = workflow_url(ctx.settings, file)
        link = (f'<a class="button" href="{_e(url)}">Open {_e(label)} ({_e(file)}) on GitHub</a>'
                if url else f"<strong>{_e(label)}</strong> (<code>{_e(file)}</code>; set "
                "GITHUB_REPOSITORY to get a link)")
        running = (" The stage is running now; re-run it only if its run died."
                   if State(job.status) in IN_PROGRESS else "")
        acts = ", ".join(f"<code>{_e(a)}</code>" for a in actions)
        next_html = (f"<p>{link}</p><p>Allowed now: {acts}.{running}</p>"
                     f"<p>CLI: <code>velvet stage {_e(job.job_id)} {_e(actions[0])}</code></p>")
    debts = [d for d in job.revocation_debt if d.settled_at is None]
    debt_html = ""
    if debts:
        debt_rows = "".join(
            f"<tr><td><code>{_e(d.auth_id or 'unknown')}</code></td><td><code>"
            f"{_e(d.fingerprint)}</code></td><td>{_e(d.reason)}</td><td>{_time(d.since)}</td></tr>"
            for d in debts)
        debt_html = f"""<table class="grid">
<caption>Revocation debt: tokens minted and not yet proven revoked</caption>
<thead><tr><th scope="col">Vendor id</th><th scope="col">Fingerprint</th>
<th scope="col">Why</th><th scope="col">Since</th></tr></thead><tbody>{debt_rows}</tbody></table>"""
    events = "".join(
        f"<tr><td>{_time(ev.at)}</td><td>{_e(ev.actor)}</td><td><code>{_e(ev.action)}</code></td>"
        f"<td>{_e(ev.from_state or '')}{' → ' if ev.to_state else ''}{_e(ev.to_state or '')}</td>"
        f"<td>{_e(ev.detail or '')}</td></tr>" for ev in job.events)
    run = ""
    if job.run_url and re.match(r"^https://", job.run_url):
        run = f'<dt>Last run</dt><dd><a href="{_e(job.run_url)}">GitHub Actions run</a></dd>'
    body = f"""<h1>Job <code>{_e(job.job_id)}</code></h1>
<p><a href="/tokens/{_e(name)}/view">{_e(name)}</a> · {_e(job.flow_type)} flow ·
env {_e(job.env)}</p>
<div id="live" data-stream="{stream_url}" data-terminal="{'true' if terminal else 'false'}">
<p id="live-state" class="live-state" role="status">{"Finished." if terminal else
"Live updates need JavaScript; reload to refresh."}</p>
<section id="summary" aria-labelledby="summary-h" data-live>
<h2 id="summary-h">Status</h2>
<dl class="facts">
<dt>Status</dt><dd id="job-status">{_status_badge(job)}</dd>
<dt>Distributed</dt><dd>{done_rows} of {len(job.consumers)} consumers</dd>
<dt>Created</dt><dd>{_time(job.created_at)} by {_e(job.actor)}</dd>
<dt>Updated</dt><dd id="job-updated">{_time(job.updated_at)}</dd>
<dt>Ticket</dt><dd>{_e(job.ticket or '—')}</dd>
<dt>Vendor ids</dt><dd>old <code>{_e(job.old_auth_id or '—')}</code>, new
<code>{_e(job.new_auth_id or '—')}</code></dd>
{run}
</dl>
</section>
<section aria-labelledby="rows-h">
<h2 id="rows-h">Consumers</h2>
<div id="rows" aria-live="polite" data-live>
<table class="grid">
<caption>One row per consumer: whether it got the new value and whether it works with it</caption>
<thead><tr><th scope="col">Consumer</th><th scope="col">Kind</th><th scope="col">Target</th>
<th scope="col">Distribute</th><th scope="col">Validate</th><th scope="col">Holds</th>
<th scope="col">Attempts</th><th scope="col">Detail</th></tr></thead>
<tbody>{rows or '<tr><td colspan="8">No consumers.</td></tr>'}</tbody>
</table>
</div>
</section>
<section id="next-stage" aria-labelledby="next-h" data-live>
<h2 id="next-h">Next stage</h2>
{next_html}
</section>
<section id="path" aria-labelledby="path-h" data-live>
<h2 id="path-h">Path through the state machine</h2>
<ol class="path">{_path_list(job)}</ol>
<details><summary>Diagram source (Mermaid, from the transition table in machine.py)</summary>
<pre class="mermaid">{_e(report.mermaid(job))}</pre>
</details>
</section>
{debt_html}
<section id="events" aria-labelledby="events-h" data-live>
<h2 id="events-h">Events</h2>
<table class="grid">
<caption>Every step the job took, oldest first</caption>
<thead><tr><th scope="col">At</th><th scope="col">Actor</th><th scope="col">Action</th>
<th scope="col">Transition</th><th scope="col">Detail</th></tr></thead>
<tbody>{events or '<tr><td colspan="5">No events.</td></tr>'}</tbody>
</table>
</section>
</div>"""
    return _page(ctx, f"{name} job {job.job_id[:8]}", body)


# --- static assets, OpenAPI --------------------------------------------------------------


def _static(name: str, media_type: str) -> Callable[[Request], Response]:
    content = (STATIC_DIR / name).read_bytes()

    def endpoint(request: Request) -> Response:
        return Response(content, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=300"})

    return endpoint


def _error_schema_ref() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route; test_web.py checks it against the app."""
    _, defs = models_json_schema([(Job, "serialization")],
                                 ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs["$defs"])
    schemas["Error"] = {
        "type": "object", "additionalProperties": False, "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    }
    schemas["Health"] = {
        "type": "object", "required": ["status", "service"],
        "properties": {"status": {"const": "ok"}, "service": {"const": "velvet"}},
    }
    schemas["Flags"] = {"type": "object", "additionalProperties": {"type": "boolean"}}
    schemas["Subscriber"] = {
        "type": "object", "additionalProperties": False,
        "required": ["consumer_id", "kind", "env", "active", "healthcheck_type", "target"],
        "properties": {
            "consumer_id": {"type": "string"}, "kind": {"type": "string"},
            "env": {"enum": ["prod", "staging"]}, "active": {"type": "boolean"},
            "healthcheck_type": {"enum": ["http", "readback", "none"]},
            "target": {"type": "string", "description": "where the value is written"},
        },
    }
    schemas["Subscribers"] = {
        "type": "object", "additionalProperties": False,
        "required": ["credential", "vendor", "env", "active", "schedule", "consumers"],
        "properties": {
            "credential": {"type": "string"}, "vendor": {"type": "string"},
            "env": {"enum": ["prod", "staging"]}, "active": {"type": "boolean"},
            "schedule": {"type": ["string", "null"]},
            "consumers": {"type": "array", "items": {"$ref": "#/components/schemas/Subscriber"}},
        },
    }
    schemas["Rotations"] = {
        "type": "object", "additionalProperties": False,
        "required": ["credential", "limit", "jobs"],
        "properties": {
            "credential": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        },
    }
    schemas["StreamEnd"] = {
        "type": "object", "additionalProperties": False, "required": ["job_id", "status"],
        "properties": {"job_id": {"type": "string"}, "status": {"type": ["string", "null"]},
                       "reason": {"type": "string"}},
    }
    schemas["StreamEvent"] = {
        "description": "One server-sent event (OpenAPI 3.1: the schema describes each event). "
                       "`job` carries the Job JSON and is sent first and on every change of "
                       "status or of a consumer row; `end` is sent once the job is in a "
                       "terminal state, and then the stream closes. Comment lines "
                       "(`: heartbeat`) keep idle connections open.",
        "type": "object", "required": ["event", "data"],
        "properties": {
            "event": {"enum": ["job", "end"]},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"oneOf": [{"$ref": "#/components/schemas/Job"},
                                                 {"$ref": "#/components/schemas/StreamEnd"}]}},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }
    name = {"name": "name", "in": "path", "required": True,
            "description": "credential name as in the manifest, e.g. HK_PLATFORM_FULL",
            "schema": {"type": "string"}}
    job_id = {"name": "job_id", "in": "path", "required": True,
              "description": "job id (a UUID)", "schema": {"type": "string"}}
    limit = {"name": "limit", "in": "query", "required": False,
             "description": f"how many jobs, newest first (default {DEFAULT_LIMIT})",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT}}

    def ok(schema: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}

    not_found = {"description": "unknown credential, job or path",
                 "content": _error_schema_ref()}
    unavailable = {"description": "the manifest or flags.yml does not load",
                   "content": _error_schema_ref()}
    unreadable = {"description": "the job record on the state branch does not parse",
                  "content": _error_schema_ref()}
    html_page = {"description": "HTML page", "content": {"text/html": {
        "schema": {"type": "string"}}}}
    html_missing = {"description": "unknown credential or job (HTML page)",
                    "content": {"text/html": {"schema": {"type": "string"}}}}

    def get(summary: str, responses: dict[str, Any],
            params: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, "responses": responses}
        if params:
            op["parameters"] = list(params)
        return op

    paths: dict[str, dict[str, Any]] = {
        "/healthz": {"get": get("Liveness", {"200": ok("Health", "Velvet is up")})},
        "/health": {"get": get("Liveness (alias of /healthz)",
                               {"200": ok("Health", "Velvet is up")})},
        "/flags": {"get": get("Feature flags from flags.yml beside the manifest", {
            "200": ok("Flags", "flag name to on/off"), "503": unavailable})},
        "/openapi.json": {"get": get("This document", {"200": {
            "description": "OpenAPI 3.1", "content": {"application/json": {
                "schema": {"type": "object"}}}}})},
        "/tokens/{name}/subscribers": {"get": get(
            "The credential's consumers from the manifest (never a value)", {
                "200": ok("Subscribers", "the consumers"), "404": not_found,
                "503": unavailable}, [name])},
        "/tokens/{name}/rotations": {"get": get("The credential's jobs, newest first", {
            "200": ok("Rotations", "jobs, newest first"),
            "400": {"description": "limit is not an integer from 1 to 100",
                    "content": _error_schema_ref()},
            "404": not_found}, [name, limit])},
        "/tokens/{name}/rotations/{job_id}": {"get": get(
            "One job in the runbook's polling shape", {
                "200": ok("Job", "the job record"), "404": not_found,
                "503": unreadable}, [name, job_id])},
        "/tokens/{name}/rotations/{job_id}/stream": {"get": get(
            "Server-sent events: `job` (the job JSON) on every change of status or consumer "
            "row, a comment heartbeat, and `end` at a terminal state", {
                "200": {"description": "an event stream", "content": {"text/event-stream": {
                    "schema": {"$ref": "#/components/schemas/StreamEvent"}}}},
                "404": not_found, "503": unreadable}, [name, job_id])},
        "/": {"get": get("Status page: every credential", {"200": html_page,
                                                            "503": unavailable})},
        "/tokens/{name}/view": {"get": get("Status page of one credential", {
            "200": html_page, "404": html_missing}, [name])},
        "/tokens/{name}/rotations/{job_id}/view": {"get": get(
            "Status page of one job, live over the stream", {
                "200": html_page, "404": html_missing, "503": unreadable}, [name, job_id])},
        "/static/velvet.css": {"get": get("Stylesheet", {"200": {
            "description": "CSS", "content": {"text/css": {"schema": {"type": "string"}}}}})},
        "/static/velvet.js": {"get": get("Live-update script", {"200": {
            "description": "JavaScript", "content": {"text/javascript": {
                "schema": {"type": "string"}}}}})},
    }
    not_allowed = {"description": "the status app is read-only",
                   "headers": {"Allow": {"schema": {"type": "string"}}},
                   "content": _error_schema_ref()}
    for item in paths.values():
        params = item["get"].get("parameters", [])
        for method in MUTATING_METHODS:
            op: dict[str, Any] = {"summary": "Not allowed: the status app is read-only",
                                  "responses": {"405": not_allowed}}
            if params:
                op["parameters"] = [p for p in params if p["in"] == "path"]
            item[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Velvet runner status", "version": "1",
                 "description": "Read-only status of credential rotations. Token values "
                                "never appear in any response."},
        "paths": paths,
        "components": {"schemas": schemas},
    }


# --- the app -----------------------------------------------------------------------------


class _ReadOnly:
    """405 for every method but GET/HEAD on any path; security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READ_ONLY_METHODS:
            response = _error(405, f"method {scope['method'][:10]} not allowed: the status app "
                              "is read-only", headers={"Allow": "GET, HEAD"})
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


def create_app(settings: Settings, *, store: Store | None = None, refresh_seconds: float = 2.0,
               heartbeat_seconds: float = 10.0, now: Callable[[], datetime] | None = None,
               ) -> Starlette:
    """The status app. `store` defaults to the state branch named by `settings`."""
    if store is None:
        store = Store(settings.state, settings.state_branch, settings.cache_dir)
    state = StateView(store, refresh_seconds)
    ctx = _Context(
        settings=settings, state=state, manifest=ManifestView(Path(settings.manifest)),
        heartbeat_seconds=heartbeat_seconds,
        poll_seconds=min(0.25, max(0.02, refresh_seconds / 4)),
        now=now or (lambda: datetime.now(UTC)),
    )
    document = openapi_document()

    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    routes = [
        Route("/healthz", health, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/flags", flags, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/tokens/{name}/subscribers", subscribers, methods=["GET"]),
        Route("/tokens/{name}/rotations", rotations, methods=["GET"]),
        Route("/tokens/{name}/rotations/{job_id}", rotation, methods=["GET"]),
        Route("/tokens/{name}/rotations/{job_id}/stream", stream, methods=["GET"]),
        Route("/", index, methods=["GET"]),
        Route("/tokens/{name}/view", credential_view, methods=["GET"]),
        Route("/tokens/{name}/rotations/{job_id}/view", job_view, methods=["GET"]),
        Route("/static/velvet.css", _static("velvet.css", "text/css"), methods=["GET"]),
        Route("/static/velvet.js", _static("velvet.js", "text/javascript"), methods=["GET"]),
    ]

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
        message = "no such path" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, message, headers=dict(exc.headers or {}))

    def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _NotFound)  # noqa: S101
        if isinstance(exc, _PageNotFound):
            body = (f"<h1>Not found</h1><p>{_e(exc.message)}.</p>"
                    '<p><a href="/">All credentials</a></p>')
            return _page(ctx, "Not found", body, status_code=404)
        return _error(404, exc.message)

    def bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _BadRequest)  # noqa: S101
        return _error(400, exc.message)

    def unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Unavailable)  # noqa: S101
        return _error(503, exc.message)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(state.start)
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: http_error, _NotFound: not_found, _BadRequest: bad_request,
            _Unavailable: unavailable,
        },
        lifespan=lifespan,
    )
    app.state.velvet = ctx
    app.add_middleware(_ReadOnly)
    return app


def serve(host: str, port: int, settings: Settings) -> None:
    """Serve the status app with uvicorn until interrupted (`velvet serve`)."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
