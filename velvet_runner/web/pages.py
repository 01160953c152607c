"""The HTML pages: every credential, one credential, one job (live over its stream).

Markup lives in `templates/` (Jinja2, autoescaped); this module picks what each page shows.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from velvet_runner import report
from velvet_runner.errors import PageNotFound, WebNotFound, WebUnavailable
from velvet_runner.machine import IN_PROGRESS, OPERATOR_STATES, Action, Flow, State, stage_command
from velvet_runner.machine import is_terminal as _is_terminal
from velvet_runner.manifest import Credential, Manifest
from velvet_runner.records import DONE_ROW, Job, RowStatus
from velvet_runner.settings import Settings
from velvet_runner.web.api import DEFAULT_LIMIT, context
from velvet_runner.web.state import Context, credential_label
from velvet_runner.workflows import next_workflow

ENV_BANNERS = {"prod": ("banner-prod", "PRODUCTION"), "staging": ("banner-staging", "STAGING")}
TONE_ICON = {"ok": "✓", "bad": "✗", "busy": "⟳", "wait": "…", "neutral": "–"}
ROW_TONE = {
    RowStatus.SUCCEEDED: "ok", RowStatus.MANUALLY_CONFIRMED: "ok", RowStatus.PENDING: "wait",
    RowStatus.IN_PROGRESS: "busy", RowStatus.MANUAL_REQUIRED: "wait", RowStatus.FAILED: "bad",
    RowStatus.SKIPPED: "neutral",
}
ROW_LABEL = {
    RowStatus.SUCCEEDED: "succeeded", RowStatus.MANUALLY_CONFIRMED: "manually confirmed",
    RowStatus.PENDING: "pending", RowStatus.IN_PROGRESS: "in progress",
    RowStatus.MANUAL_REQUIRED: "manual action required", RowStatus.FAILED: "failed",
    RowStatus.SKIPPED: "skipped",
}
# A revocation's check is the other way round: it passes when the consumer is locked out.
LOCKOUT_LABEL = {
    RowStatus.SUCCEEDED: "locked out (refuses the revoked value)",
    RowStatus.MANUALLY_CONFIRMED: "confirmed locked out by hand",
    RowStatus.PENDING: "not checked yet",
    RowStatus.IN_PROGRESS: "checking", RowStatus.MANUAL_REQUIRED: "check by hand",
    RowStatus.FAILED: "LEAKING: still accepts the revoked value", RowStatus.SKIPPED: "skipped",
}


def _time(value: datetime | None) -> Markup:
    if value is None:
        return Markup("—")
    utc = value.astimezone(UTC)
    return Markup('<time datetime="{}">{} UTC</time>').format(
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"), utc.strftime("%Y-%m-%d %H:%M"))


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


def job_tone(job: Job) -> str:
    status = State(job.status)
    if status in (State.DONE, State.REV_DONE):
        return "ok"
    if status == State.ABORTED:
        return "neutral"
    if status in OPERATOR_STATES or status == State.REV_LEAKED or _is_terminal(
            job.flow_type, status):
        return "bad"
    if status in IN_PROGRESS:
        return "busy"
    return "wait"


def is_terminal(job: Job) -> bool:
    return _is_terminal(job.flow_type, job.status)


TEMPLATES = Environment(loader=PackageLoader("velvet_runner.web", "templates"),
                        autoescape=True, trim_blocks=True, lstrip_blocks=True,
                        undefined=StrictUndefined)
TEMPLATES.filters.update(time=_time, duration=_duration)
TEMPLATES.globals.update(job_tone=job_tone, is_terminal=is_terminal, TONE_ICON=TONE_ICON,
                         ROW_TONE=ROW_TONE, ROW_LABEL=ROW_LABEL, LOCKOUT_LABEL=LOCKOUT_LABEL)


def render(ctx: Context, template: str, title: str, *, status_code: int = 200,
           **values: Any) -> HTMLResponse:
    """A page in the site's frame: the environment banner, the state branch's head."""
    css_class, label = ENV_BANNERS.get(ctx.settings.env or "",
                                       ("banner-unset", "ENVIRONMENT NOT SET"))
    html = TEMPLATES.get_template(template).render(
        title=title, banner_class=css_class, banner_label=label, settings=ctx.settings,
        head=ctx.state.head(), fetched=ctx.state.fetched_at, fetch_error=ctx.state.last_error,
        public=ctx.public, **values)
    return HTMLResponse(ctx.keyed(html), status_code=status_code)


def plain_page(status: int, title: str, message: str) -> HTMLResponse:
    """A page outside the site's frame (no banner, no branch, no links): what a visitor
    without a token sees."""
    html = TEMPLATES.get_template("plain.html").render(title=title, message=message,
                                                       status=status)
    return HTMLResponse(html, status_code=status)


@dataclass(frozen=True)
class NextStage:
    """What runs the job next: a workflow, the actions it may take, whether it runs now."""

    file: str
    label: str
    actions: list[Action]
    command: str  # the CLI's spelling of the first allowed action
    url: str | None  # the workflow on GitHub, when GITHUB_REPOSITORY is known
    running: bool  # mid-stage: the stage's run is at work (or died): not a stage to open


def next_stage(settings: Settings, job: Job) -> NextStage | None:
    found = next_workflow(job)
    if found is None:
        return None
    workflow, actions = found
    return NextStage(file=workflow.file, label=workflow.label, actions=actions,
                     command=stage_command(job.job_id, actions[0]),
                     url=workflow_url(settings, workflow.file),
                     running=State(job.status) in IN_PROGRESS)


def workflow_url(settings: Settings, file: str) -> str | None:
    repo = settings.github_repository
    if not repo or not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        return None
    return f"{settings.github_server_url.rstrip('/')}/{repo}/actions/workflows/{file}"


def _visited(job: Job) -> list[str]:
    """report.path, plus the state the first move left and the current state if missing."""
    path = report.path(job)
    first = next((e.from_state for e in job.events if e.to_state), None)
    if first and (not path or path[0] != first):
        path.insert(0, first)
    if not path or path[-1] != job.status:
        path.append(str(job.status))
    return path


# --- endpoints -----------------------------------------------------------------------------


def index(request: Request) -> HTMLResponse:
    ctx = context(request)
    try:
        manifest: Manifest | None = ctx.manifest.get()
        manifest_error = None
    except WebUnavailable as exc:
        manifest, manifest_error = None, exc.message
    names: list[tuple[str, Credential | None]] = []
    if manifest is not None:
        names = [(c.name, c) for c in manifest.credentials]
    listed = {n for n, _ in names}
    names += [(n, None) for n in ctx.state.credentials() if n not in listed]
    return render(ctx, "index.html", "Credentials", manifest_error=manifest_error,
                  now=ctx.now(), summaries=[ctx.summarise(n, c) for n, c in names])


def credential_view(request: Request) -> HTMLResponse:
    ctx = context(request)
    name = request.path_params["name"]
    if not ctx.known(name):
        raise PageNotFound(credential_label(name))
    cred: Credential | None = None
    with contextlib.suppress(WebUnavailable):
        cred = ctx.manifest.get().credential(name)
    return render(ctx, "credential.html", name, name=name, cred=cred, limit=DEFAULT_LIMIT,
                  jobs=ctx.state.jobs(name, DEFAULT_LIMIT))


def job_view(request: Request) -> HTMLResponse:
    ctx = context(request)
    name, job_id = request.path_params["name"], request.path_params["job_id"]
    try:
        job = ctx.require_job(name, job_id)
    except WebNotFound as exc:
        raise PageNotFound(exc.message) from None
    run_url = job.run_url if job.run_url and re.match(r"^https://", job.run_url) else None
    revocation = job.flow_type == Flow.REVOCATION
    return render(
        ctx, "job.html", f"{name} job {job.job_id[:8]}", name=name, job=job, run_url=run_url,
        revocation=revocation,
        done_rows=sum(1 for r in job.consumers if r.distribute_status in DONE_ROW),
        locked_out=sum(1 for r in job.consumers if r.validate_status in DONE_ROW),
        leaking=[r.consumer_id for r in job.consumers if r.validate_status == RowStatus.FAILED]
        if job.status == State.REV_LEAKED else [],
        nxt=next_stage(ctx.settings, job), path=_visited(job), mermaid=report.mermaid(job),
        debts=[d for d in job.revocation_debt if d.settled_at is None])


def not_found_page(ctx: Context, message: str) -> HTMLResponse:
    return render(ctx, "not_found.html", "Not found", status_code=404, message=message)
