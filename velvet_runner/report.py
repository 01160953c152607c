"""Renderings of jobs for people: the status table, the mermaid path, the step summary."""

from __future__ import annotations

from velvet_runner.machine import TABLES, Action, Flow, State
from velvet_runner.records import Job, RowStatus

ROW_MARK = {
    RowStatus.SUCCEEDED: "✅ succeeded",
    RowStatus.MANUALLY_CONFIRMED: "✅ manually confirmed",
    RowStatus.SKIPPED: "⏭️ skipped",
    RowStatus.PENDING: "⏳ pending",
    RowStatus.IN_PROGRESS: "🟠 in progress",
    RowStatus.MANUAL_REQUIRED: "✋ manual required",
    RowStatus.FAILED: "❌ failed",
}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines) + "\n"


def status_table(jobs: list[Job], *, detail: bool = False,
                 credentials: list[str] | None = None) -> str:
    """A table for people; with `detail`, one job's consumer rows and recent events too."""
    if credentials is not None:
        by_cred = {j.credential: j for j in jobs}
        rows = []
        for name in credentials:
            job = by_cred.get(name)
            rows.append([name, job.status if job else "-", job.job_id if job else "-",
                         job.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ") if job else "-"])
        return _table(["CREDENTIAL", "LAST STATUS", "JOB", "UPDATED"], rows)
    if not detail:
        if not jobs:
            return "no jobs\n"
        return _table(["JOB", "CREDENTIAL", "FLOW", "STATUS", "CREATED", "UPDATED"],
                      [[j.job_id, j.credential, j.flow_type, j.status,
                        j.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        j.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")] for j in jobs])
    out = []
    for job in jobs:
        out.append(f"job {job.job_id}  {job.credential}  {job.flow_type}  env {job.env}\n"
                   f"status {job.status}  (created {job.created_at:%Y-%m-%dT%H:%M:%SZ}, "
                   f"updated {job.updated_at:%Y-%m-%dT%H:%M:%SZ})\n")
        out.append(consumer_table(job))
        out.append("events:\n")
        for event in job.events[-10:]:
            move = f"{event.from_state} -> {event.to_state}" if event.from_state else (
                f"-> {event.to_state}")
            out.append(f"  {event.at:%Y-%m-%dT%H:%M:%SZ}  {event.actor:<12} {event.action:<22} "
                       f"{move}  {event.detail or ''}".rstrip() + "\n")
    return "".join(out)


def consumer_table(job: Job) -> str:
    return _table(["CONSUMER", "DISTRIBUTE", "VALIDATE", "HOLDS", "DETAIL"],
                  [[r.consumer_id, r.distribute_status, r.validate_status, r.holds,
                    r.detail or ""] for r in job.consumers])


def path(job: Job) -> list[str]:
    """The states the job went through, in order."""
    visited: list[str] = []
    for event in job.events:
        if event.to_state and (not visited or visited[-1] != event.to_state):
            visited.append(event.to_state)
    return visited


def mermaid(job: Job) -> str:
    """The flow's transition table as a mermaid state diagram, the job's path highlighted.

    Drawn from machine.TABLES so the picture cannot drift from the code.
    """
    flow = Flow(job.flow_type)
    visited = path(job)
    lines = ["stateDiagram-v2"]
    seen: set[tuple[str, str]] = set()
    for (src, trigger), dst in TABLES[flow].items():
        if src == dst or (src, dst) in seen:
            continue
        seen.add((src, dst))
        label = trigger.value if isinstance(trigger, Action) else f"[{trigger.value}]"
        arrow = "-->"
        lines.append(f"    {src} {arrow} {dst} : {label}")
    lines.append(f"    [*] --> {visited[0] if visited else 'init'}")
    lines.append("    classDef visited fill:#d1fae5,stroke:#047857")
    lines.append("    classDef current fill:#fde68a,stroke:#b45309,stroke-width:3px")
    for state in dict.fromkeys(visited):
        cls = "current" if state == str(job.status) else "visited"
        lines.append(f"    class {state} {cls}")
    return "\n".join(lines) + "\n"


def step_summary(job: Job) -> str:
    """GITHUB_STEP_SUMMARY markdown: the consumer table and the job's path."""
    lines = [f"## Velvet: {job.credential} — `{job.status}`", "",
             f"Job `{job.job_id}` · flow `{job.flow_type}` · env `{job.env}`", "",
             "| consumer | distribute | validate | holds |", "|---|---|---|---|"]
    for r in job.consumers:
        lines.append(f"| `{r.consumer_id}` | {ROW_MARK[r.distribute_status]} | "
                     f"{ROW_MARK[r.validate_status]} | {r.holds} |")
    lines += ["", "```mermaid", mermaid(job).rstrip(), "```", ""]
    if job.status in (State.DONE, State.REV_DONE):
        lines.append("Finished.")
    return "\n".join(lines) + "\n"
