"""What `rotate`, `stage`, `status`, `due` and `stuck` print for people on a terminal.

Each function takes jobs or rows and returns text that ends with the exact next command or
commands. The commands are built from `machine`: the actions allowed in the job's state, and
the options each action takes (`machine.OPTIONS`), so they cannot drift from what `velvet
stage` accepts. `cli` decides whether this or the JSON is printed (DESIGN.md, Output rule).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from velvet_runner.machine import (
    OPTIONS,
    STOP_ACTIONS,
    Action,
    Option,
    State,
    is_terminal,
)
from velvet_runner.records import DONE_ROW, ConsumerRow, Job, RowStatus, iso
from velvet_runner.scan import Scan, before_revoke_lines
from velvet_runner.watchdog import render as render_stuck

PROG = "velvet"
EVENTS_SHOWN = 10
ROWS_SHOWN = 20
_DISTRIBUTING = frozenset({State.DISTRIBUTE_PARTIAL, State.DISTRIBUTE_FAILED})


def _table(headers: list[str], rows: list[list[str]], indent: str = "") -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
            for cells in [headers, *rows]]


def _short(text: str | None, width: int = 80) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[:width - 1] + "…"


# --- next commands ---------------------------------------------------------------------------


def command(job_id: str, action: Action, *, credential: str | None = None,
            consumers: Iterable[str] = ()) -> str:
    """`velvet stage JOB ACTION` with every option the action needs filled in or shown."""
    parts = [PROG, "stage", job_id, str(action)]
    for option, required in OPTIONS[action].items():
        if not required:
            continue
        if option == Option.CONSUMER:
            ids = list(consumers) or ["<CONSUMER_ID>"]
            parts += [f"--consumer {cid}" for cid in ids]
        elif option == Option.TICKET:
            parts.append("--ticket <TICKET>")
        elif option == Option.CONFIRM:
            parts.append(f"--confirm {credential or '<CREDENTIAL>'}")
    return " ".join(parts)


def _open_rows(job: Job) -> list[ConsumerRow]:
    """The rows a manual_confirm / skip_consumer would name: not done in the current column."""
    column = "distribute_status" if job.status in _DISTRIBUTING else "validate_status"
    return [r for r in job.consumers if getattr(r, column) not in DONE_ROW]


def next_commands(job: Job) -> tuple[list[str], list[str]]:
    """(commands that move the job on, commands that stop it), from the machine's table."""
    actions = job.next_actions()
    open_ids = [r.consumer_id for r in _open_rows(job)]
    onward: list[str] = []
    stop: list[str] = []
    for action in actions:
        text = command(job.job_id, action, credential=job.credential, consumers=open_ids)
        (stop if action in STOP_ACTIONS else onward).append(text)
    return onward, stop


def _next_block(onward: list[str], stop: list[str], *, done: list[str] | None = None) -> list[str]:
    lines: list[str] = []
    if onward:
        lines.append("Next:")
        lines += [f"  {c}" for c in onward]
    if stop:
        lines.append("Or, to stop:" if onward else "Next (to stop):")
        lines += [f"  {c}" for c in stop]
    if not onward and not stop:
        lines.append("Next:")
        lines += [f"  {c}" for c in (done or [])]
    return lines


def _job_next(job: Job) -> list[str]:
    if is_terminal(job.flow_type, job.status):
        follow = [f"{PROG} status --job {job.job_id}"]
        if any(d.settled_at is None for d in job.revocation_debt):
            follow.append(f"{PROG} stuck --settle-debt")
        return ["Nothing left to run on this job."] + _next_block([], [], done=follow)
    return _next_block(*next_commands(job))


# --- one job -----------------------------------------------------------------------------------


def _heading(job: Job) -> list[str]:
    last = job.events[-1] if job.events else None
    status = f"Status: {job.status}"
    if last is not None and last.detail:
        status += f" — {_short(last.detail, 100)}"
    return [f"{job.credential}: job {job.job_id} ({job.flow_type}, env {job.env})", status]


def _consumer_lines(job: Job) -> list[str]:
    if not job.consumers:
        return []
    counts = Counter(f"{r.distribute_status}/{r.validate_status}" for r in job.consumers)
    lines = [f"Consumers ({len(job.consumers)}; distribute/validate): "
             + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]
    if all(r.distribute_status == RowStatus.PENDING for r in job.consumers):
        return lines
    rows = job.consumers
    if len(rows) > ROWS_SHOWN:
        rows = [r for r in rows if r.validate_status not in DONE_ROW][:ROWS_SHOWN]
        if not rows:
            return lines
        lines.append(f"  first {len(rows)} not yet done:")
    lines += _table(["CONSUMER", "DISTRIBUTE", "VALIDATE", "HOLDS", "DETAIL"],
                    [[r.consumer_id, r.distribute_status, r.validate_status, r.holds,
                      "" if r.validate_status in DONE_ROW else _short(r.detail, 60)]
                     for r in rows], indent="  ")
    return lines


def _before_revoke(job: Job) -> list[str]:
    found = before_revoke_lines(job)
    return ["Before the revoke:"] + [f"  {line}" for line in found] if found else []


def job_summary(job: Job, *, note: str | None = None) -> str:
    """After `rotate` or `stage`: where the job is, its consumers, what to run next."""
    lines = _heading(job)
    if note:
        lines.append(note)
    lines += _consumer_lines(job)
    lines += _before_revoke(job)
    lines += _job_next(job)
    return "\n".join(lines) + "\n"


def job_detail(job: Job, *, events: int | None = EVENTS_SHOWN) -> str:
    """`status --job`: the summary plus the job's events (the last `events`, None for all)."""
    lines = _heading(job)
    lines.append(f"Created {iso(job.created_at)} by {job.actor}; updated {iso(job.updated_at)}")
    lines += _consumer_lines(job)
    lines += _before_revoke(job)
    total = len(job.events)
    shown = job.events if events is None or total <= events else job.events[-events:]
    if len(shown) < total:
        lines.append(f"Events (the last {len(shown)} of {total}; all of them: "
                     f"{PROG} status --job {job.job_id} --all-events):")
    else:
        lines.append(f"Events (all {total}):")
    for event in shown:
        move = (f"{event.from_state} -> {event.to_state}" if event.from_state
                else f"-> {event.to_state}")
        lines.append(f"  {iso(event.at)}  {event.actor:<12} {event.action:<22} {move}  "
                     f"{_short(event.detail, 100)}".rstrip())
    lines += _job_next(job)
    return "\n".join(lines) + "\n"


# --- lists -------------------------------------------------------------------------------------


def credential_jobs(credential: str, jobs: list[Job]) -> str:
    """`status CREDENTIAL`: its jobs, newest first."""
    if not jobs:
        return (f"{credential}: no jobs yet.\nNext:\n  {PROG} rotate {credential}\n")
    lines = [f"{credential}: the newest {len(jobs)} job(s)"]
    lines += _table(["JOB", "FLOW", "STATUS", "CREATED", "UPDATED"],
                    [[j.job_id, j.flow_type, j.status, iso(j.created_at), iso(j.updated_at)]
                     for j in jobs], indent="  ")
    newest = jobs[0]
    if is_terminal(newest.flow_type, newest.status):
        lines += _next_block([], [], done=[f"{PROG} status --job {newest.job_id}",
                                           f"{PROG} rotate {credential}"])
    else:
        lines += _next_block(*next_commands(newest))
    return "\n".join(lines) + "\n"


def overview(latest: dict[str, Job | None]) -> str:
    """`status`: every credential's latest job, and the next command of each in flight."""
    lines = _table(["CREDENTIAL", "LAST STATUS", "JOB", "UPDATED"],
                   [[name, str(job.status) if job else "-", job.job_id if job else "-",
                     iso(job.updated_at) if job else "-"] for name, job in latest.items()])
    in_flight = [j for j in latest.values()
                 if j is not None and not is_terminal(j.flow_type, j.status)]
    onward = []
    for job in in_flight:
        moves, stops = next_commands(job)
        onward.append((moves or stops)[0] + f"    # {job.credential} is {job.status}")
    if not onward:
        onward = [f"{PROG} due", f"{PROG} rotate <CREDENTIAL>"]
    lines += _next_block([], [], done=onward)
    return "\n".join(lines) + "\n"


def due_summary(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"Nothing is due.\nNext:\n  {PROG} status\n"
    lines = [f"{len(rows)} credential(s) due for rotation:"]
    lines += _table(["CREDENTIAL", "DUE SINCE", "REASON"],
                    [[r["credential"], r["due_at"], r["reason"]] for r in rows], indent="  ")
    lines += _next_block([], [], done=[f"{PROG} rotate {r['credential']}" for r in rows])
    return "\n".join(lines) + "\n"


def stuck_summary(findings: dict[str, list[dict[str, Any]]]) -> str:
    """The watchdog's tables, then one command per finding."""
    text = render_stuck(findings)
    if not any(findings.values()):
        return text
    commands: list[str] = []
    for section in ("stuck", "waiting_on_operator", "approvals_waiting"):
        for row in findings.get(section, []):
            actions = [Action(a) for a in row["next"]]
            onward = [a for a in actions if a not in STOP_ACTIONS] or actions
            if onward:
                commands.append(command(row["job_id"], onward[0], credential=row["credential"])
                                + f"    # {row['credential']} is {row['status']}")
    commands += [f"{PROG} rotate {row['credential']}" for row in findings.get("overdue", [])]
    if findings.get("revocation_debt"):
        commands.append(f"{PROG} stuck --settle-debt")
    return text.rstrip("\n") + "\n" + "\n".join(_next_block([], [], done=commands)) + "\n"



def scan_summary(found: Scan) -> str:
    """`velvet scan`: who else holds the value (or names its secret), and what was not read."""
    read = ", ".join(f"{n} {kind}" for kind, n in found.searched.items()) or "nothing"
    lines = [f"{found.credential}: its live value ({found.fingerprint}) searched for in every "
             f"place Velvet's credentials can read ({read})",
             f"Registered places holding it: {len(found.registered)}"]
    if found.holders:
        lines.append(f"UNREGISTERED places holding it ({len(found.holders)}; revoking the value "
                     "breaks whoever reads them):")
        lines += [f"  {h.where}" + (f"  (registered as {h.registered_as})"
                                    if h.registered_as else "") for h in found.holders]
    else:
        lines.append("No unregistered place holds it.")
    if found.references:
        lines.append("Workflows in repositories the manifest does not list that name its "
                     "secrets (they may use it; GitHub never shows a value):")
        lines += [f"  {r['where']} {r['reference']}" for r in found.references]
    if found.not_searched:
        lines.append("Not searched (a holder there would go unseen):")
        lines += [f"  {_short(why, 120)}" for why in found.not_searched]
    if found.holders or found.references:
        lines += _next_block([], [], done=[
            f"{PROG} manifest check    # after registering them as consumers of "
            f"{found.credential}", f"{PROG} scan {found.credential}"])
    return "\n".join(lines) + "\n"
