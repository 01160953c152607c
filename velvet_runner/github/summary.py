"""What a run leaves behind in GitHub: GITHUB_OUTPUT ids, the step summary, the run's context."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import BadArgument
from velvet_runner.workflows import next_workflow

from .api import Environ, environ_or_os, iso
from .dispatch import DISPATCH_EVENT
from .gate import FALLBACK_EVENT, environment_for

if TYPE_CHECKING:
    from velvet_runner.records import Job

SUMMARY_LIMIT = 900 * 1024  # GitHub refuses a step summary above 1 MiB
_OUTPUT_VALUE = re.compile(r"^[\w.:@/+-]*$")


def run_context(environ: Environ | None = None) -> dict[str, Any]:
    """This workflow run as the runner sees it (never a token): for events and summaries."""
    env = environ_or_os(environ)
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    repo, run_id = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    context: dict[str, Any] = {
        "repository": repo, "run_id": run_id, "run_attempt": env.get("GITHUB_RUN_ATTEMPT"),
        "workflow": env.get("GITHUB_WORKFLOW_REF") or env.get("GITHUB_WORKFLOW"),
        "event": env.get("GITHUB_EVENT_NAME"), "ref": env.get("GITHUB_REF"),
        "actor": env.get("GITHUB_ACTOR"), "triggering_actor": env.get("GITHUB_TRIGGERING_ACTOR"),
        "run_url": f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else None,
    }
    return {k: v for k, v in context.items() if v}


# --- outputs and the step summary ------------------------------------------------------------


def write_outputs(job: Job, environ: Environ | None = None) -> None:
    """GITHUB_OUTPUT gets ids and statuses (never a value); GITHUB_STEP_SUMMARY the report."""
    env = environ_or_os(environ)
    output = env.get("GITHUB_OUTPUT")
    if output:
        values = {"job_id": job.job_id, "status": str(job.status), "credential": job.credential,
                  "env": job.env, "flow": str(job.flow_type)}
        lines = []
        for key, value in values.items():
            if not _OUTPUT_VALUE.match(value):  # nothing multi-line or odd reaches the file
                raise BadArgument(f"refusing to write output {key}: unexpected characters")
            lines.append(f"{key}={value}\n")
        with open(output, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(summary_markdown(job, env))


def summary_markdown(job: Job, environ: Environ | None = None) -> str:
    """The step summary: consumer table and mermaid path (report.step_summary), then who
    approved what, which runs touched the job, and what the operator can do next."""
    from velvet_runner.redact import scrub
    from velvet_runner.report import step_summary
    from velvet_runner.scan import before_revoke_lines

    parts = [step_summary(job)]
    approvals = [e for e in job.events if e.action in ("approval", FALLBACK_EVENT)]
    if approvals:
        parts += ["", "### Approvals", "", "| when | approver | environment | kind | run |",
                  "|---|---|---|---|---|"]
        for event in approvals:
            data = event.data
            run = data.get("run_url") or data.get("approval_run_url") or ""
            parts.append(f"| {iso(event.at)} | `{data.get('approver', event.actor)}` | "
                         f"`{data.get('environment', '')}` | {data.get('kind', event.action)} | "
                         f"{run} |")
    unproven = job.unproven_rows()
    if any(unproven.values()):
        parts += ["", "### Rows Velvet did not prove", ""]
        parts += [f"- {kind.replace('_', ' ')}: " + ", ".join(f"`{c}`" for c in ids)
                  for kind, ids in unproven.items() if ids]
        parts += ["", "These keep (or may keep) the old value: revoking it cuts them off."]
    found = before_revoke_lines(job)
    if found:
        parts += ["", "### Before the revoke", ""]
        parts += [f"- {line}" for line in found]
    debt = [d for d in job.revocation_debt if d.settled_at is None]
    if debt:
        parts += ["", "### Revocation debt", "",
                  "Live (or not proven dead) tokens this job made that are not the vault's "
                  "current value. Revoke them at the vendor, then `velvet stuck --settle-debt`.",
                  "", "| auth id | fingerprint | since | why |", "|---|---|---|---|"]
        parts += [f"| `{d.auth_id}` | `{d.fingerprint}` | {iso(d.since)} | {d.reason} |"
                  for d in debt]
    waits = [e for e in job.events if e.action == "budget_wait"]
    if waits:
        parts += ["", "### Waits for the vendors' rate budgets", ""]
        parts += [f"- {iso(e.at)}: {e.detail}" for e in waits]
    dispatched = [e for e in job.events if e.action == DISPATCH_EVENT]
    if dispatched:
        parts += ["", "### Runs started for this job", ""]
        for event in dispatched:
            data = event.data
            parts.append(f"- `{data.get('workflow')}` → {data.get('html_url') or 'run id unknown'}")
    context = run_context(environ)
    if context.get("run_url"):
        parts += ["", f"This run: {context['run_url']} (actor `{context.get('actor', '?')}`)"]
    nxt = [str(a) for a in job.next_actions()]
    if nxt:
        gated = [f"`{a}` (environment `{environment_for(a, job.env)}`)" if environment_for(
            a, job.env) else f"`{a}`" for a in nxt]
        parts += ["", "Allowed next: " + ", ".join(gated)]
        upcoming = next_workflow(job)
        if upcoming is not None:
            parts.append(f"Run next: {upcoming[0].label} (`{upcoming[0].file}`)")
    text = scrub("\n".join(parts) + "\n")
    if len(text.encode("utf-8")) > SUMMARY_LIMIT:
        text = text.encode("utf-8")[:SUMMARY_LIMIT].decode("utf-8", "ignore")
        text += ("\n\n_(summary truncated at GitHub's size limit; `velvet status --job` "
                 "has it all)_\n")
    return text

