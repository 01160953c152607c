"""Renderings of jobs for people: the consumer table, the mermaid path, the step summary."""

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
