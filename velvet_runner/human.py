"""What `rotate`, `stage`, `status`, `due` and `stuck` print for people on a terminal.

Each function takes jobs or rows and returns text that ends with the exact next command or
commands. The commands are built from `machine`: the actions allowed in the job's state, and
the options each action takes (`machine.OPTIONS`), so they cannot drift from what `velvet
stage` accepts. `cli` decides whether this or the JSON is printed (DESIGN.md, Output rule).

A failure state says what matters in it, from what the job's JSON holds: `aborted` its residual
report (what is live, who holds what, the clean-up), `rev_leaked` SEV1, the leaking consumers and
runbook section 10's steps, a `verify_failed` whose current value the vendor refused runbook
section 6a's words. A detail too long for a line is cut with "…" and the summary ends saying
so; `full` (`--all`) shows every row, event and detail whole.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable
from typing import Any

from velvet_runner.machine import (
    OPTIONS,
    STOP_ACTIONS,
    Action,
    Flow,
    Option,
    State,
    is_terminal,
    stage_command,
)
from velvet_runner.records import DONE_ROW, ConsumerRow, Job, Life, RowStatus, iso
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


WIDTH = 100  # where a paragraph wraps (wrapped, never cut)
# Runbook 6a, for a current value the vendor refused at verify.
RUNBOOK_6A = ("If the vendor API is returning 401: the current token is already invalid. Stop "
              "and use the vendor's manual revocation + re-issue process. File a FreeScout "
              "incident ticket.")


class _Fit:
    """Cuts details to fit a line (unless `full`) and remembers whether it cut anything."""

    def __init__(self, full: bool) -> None:
        self.full = full
        self.cut = False

    def __call__(self, text: str | None, width: int) -> str:
        text = (text or "").replace("\n", " ")
        if self.full or len(text) <= width:
            return text
        self.cut = True
        return text[:width - 1] + "…"

    def footer(self, job: Job) -> list[str]:
        if not self.cut:
            return []
        return [f"(Some details above are cut; {PROG} status --job {job.job_id} --all shows "
                "them whole.)"]


def _paragraph(text: str, indent: str = "  ", hang: str = "    ") -> list[str]:
    """A long text wrapped for a terminal (a hanging indent), every word kept."""
    return textwrap.wrap(" ".join(text.split()), WIDTH, initial_indent=indent,
                         subsequent_indent=indent + hang, break_long_words=False,
                         break_on_hyphens=False) or [indent.rstrip()]


def _steps(text: str) -> list[str]:
    """A "; "-joined list of steps, one step a line (the text itself unchanged)."""
    parts = text.split("; ")
    return [line for i, part in enumerate(parts)
            for line in _paragraph(part + (";" if i < len(parts) - 1 else ""))]


# --- next commands ---------------------------------------------------------------------------


def command(job_id: str, action: Action, *, credential: str | None = None,
            consumers: Iterable[str] = ()) -> str:
    """`velvet stage JOB ACTION` with every option the action needs filled in or shown."""
    needs = {option for option, required in OPTIONS[action].items() if required}
    return stage_command(
        job_id, action,
        consumers=(list(consumers) or ["<CONSUMER_ID>"]) if Option.CONSUMER in needs else (),
        ticket="<TICKET>" if Option.TICKET in needs else None,
        confirm=(credential or "<CREDENTIAL>") if Option.CONFIRM in needs else None)


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


def _heading(job: Job, fit: _Fit) -> list[str]:
    last = job.events[-1] if job.events else None
    status = f"Status: {job.status}"
    if job.status == State.REV_LEAKED:
        status += " (SEV1)"
    if job.status == State.ABORTED and "residual" in job.report:
        status += " — the residual state and the clean-up are below"
    elif last is not None and last.detail:
        status += f" — {fit(last.detail, 100)}"
    return [f"{job.credential}: job {job.job_id} ({job.flow_type}, env {job.env})", status]


# --- what matters in a failure state ------------------------------------------------------------


def _failure_lines(job: Job) -> list[str]:
    lines = _notify_failed_lines(job)
    if job.status == State.ABORTED and isinstance(job.report.get("residual"), dict):
        return lines + residual_lines(job.report["residual"])
    if job.status == State.REV_LEAKED:
        return lines + _sev1_lines(job)
    if job.status == State.VERIFY_FAILED:
        return lines + _refused_current_lines(job)
    return lines


def _notify_failed_lines(job: Job) -> list[str]:
    """The job's last notification, when a channel failed: the people it was for have not
    heard (log lines are off on a terminal, so the summary says it)."""
    last = next((e for e in reversed(job.events) if e.action in ("notified", "notify_failed")),
                None)
    if last is None or last.action != "notify_failed":
        return []
    lines = ["Notification failed (tell the people it was for by hand):"]
    for result in last.data.get("results") or []:
        if isinstance(result, dict) and not result.get("ok"):
            lines += _paragraph(f"{result.get('channel')}: failed after "
                                f"{result.get('attempts')} attempt(s): {result.get('error')}")
    return lines


def residual_lines(residual: dict[str, Any]) -> list[str]:
    """An abort's residual report (runbook 6f): what is live, who holds what, the clean-up."""
    lines = ["Residual state after abort (runbook 6f):"]
    old = residual.get("old_value") or {}
    if old:
        ident = ", ".join(p for p in (f"auth id {old['auth_id']}" if old.get("auth_id") else "",
                                      old.get("fingerprint") or "") if p)
        lines.append(f"  old value{f' ({ident})' if ident else ''}: "
                     + ("still live at the vendor" if old.get("live") else "proven dead"))
    holders: dict[str, list[str]] = {}
    for consumer, holds in sorted((residual.get("consumers") or {}).items()):
        holders.setdefault(str(holds), []).append(consumer)
    said = {"new": "hold the new value", "old": "hold the old value",
            "unknown": "may hold either value (a write whose outcome is unknown)"}
    for holds in ("new", "unknown", "old"):
        if holders.get(holds):
            lines += _paragraph(f"consumers that {said[holds]}: {', '.join(holders[holds])}")
    for token in residual.get("orphaned_tokens") or []:
        lines += _paragraph(f"still live, not revoked (revocation debt): {_token(token)}: "
                            f"{token.get('why') or 'no reason recorded'}")
    for token in residual.get("revoked_tokens") or []:
        lines += _paragraph(f"revoked: {_token(token)}: {token.get('evidence') or ''}")
    lines.append("Clean-up:")
    lines += _steps(str(residual.get("next_step") or "nothing to clean up"))
    return lines


def _token(token: dict[str, Any]) -> str:
    parts = [f"auth id {token['auth_id']}" if token.get("auth_id") else "",
             token.get("fingerprint") or ""]
    ident = ", ".join(p for p in parts if p)
    return f"token {token.get('token_id', '?')}" + (f" ({ident})" if ident else "")


def _sev1_lines(job: Job) -> list[str]:
    """rev_leaked: the leaking consumers (as the job recorded them) and runbook 10's steps."""
    leaking = next((list(e.data["leaking_consumers"]) for e in reversed(job.events)
                    if isinstance(e.data.get("leaking_consumers"), list)), [])
    rows = {r.consumer_id: r for r in job.consumers}
    lines = ["SEV1: consumers still accept the revoked value (runbook section 10):"]
    for consumer in leaking:
        row = rows.get(consumer)
        lines += _paragraph(f"{consumer}" + (f" ({row.target}): {row.detail}"
                                             if row is not None and row.detail else ""))
    steps = [
        "Open an incident ticket listing these consumers.",
        "For each one, find out whether it still serves traffic; if it does, disable or "
        "restart it now so it reloads its configuration (a cached value is the usual cause).",
        "Re-run its healthcheck by hand: it must answer 401 to the revoked value.",
        f"When every one does, run {PROG} stage {job.job_id} confirm_leak_resolved: Velvet "
        "checks them again and ends the job rev_done.",
        "If a consumer cannot be made to refuse the value (a cache with a long lifetime), "
        "escalate to a security incident per the security response runbook.",
    ]
    lines.append("What to do now (runbook section 10):")
    for n, step in enumerate(steps, 1):
        lines += _paragraph(f"{n}. {step}")
    return lines


def _refused_current_lines(job: Job) -> list[str]:
    """verify_failed because the vendor refused the current value: runbook 6a, quoted."""
    old = job.newest("old")
    if old is None or old.observed is None or old.life == Life.PROVEN_DEAD:
        return []
    lines = ["The vendor refused the current token at verify: it may already be invalid."]
    lines += _paragraph(old.observed)
    lines.append("Runbook 6a says:")
    lines += _paragraph(f"\"{RUNBOOK_6A}\"")
    lines += _paragraph("Nothing was minted and no consumer was changed. One refusal can be a "
                        "blip: retry_verify once. If it is refused again, follow 6a; once the "
                        "re-issued value is in the vault, retry_verify starts the job from it; "
                        "or abort.", indent="", hang="")
    return lines


def _consumer_lines(job: Job, fit: _Fit) -> list[str]:
    """Counts, then the rows (those not yet done when there are many). A revocation writes
    nothing: its rows are the lockout checks alone, without a distribute column."""
    if not job.consumers:
        return []
    lockout = job.flow_type == Flow.REVOCATION
    if lockout:
        counts = Counter(str(r.validate_status) for r in job.consumers)
        head = f"Consumers ({len(job.consumers)}; lockout check): "
    else:
        counts = Counter(f"{r.distribute_status}/{r.validate_status}" for r in job.consumers)
        head = f"Consumers ({len(job.consumers)}; distribute/validate): "
    lines = [head + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]
    if all(r.distribute_status == RowStatus.PENDING and r.validate_status == RowStatus.PENDING
           for r in job.consumers):
        return lines
    rows = job.consumers
    if len(rows) > ROWS_SHOWN and not fit.full:
        rows = [r for r in rows if r.validate_status not in DONE_ROW][:ROWS_SHOWN]
        fit.cut = True
        if not rows:
            return lines
        lines.append(f"  first {len(rows)} not yet done:")
    if lockout:
        return lines + _table(["CONSUMER", "LOCKOUT CHECK", "DETAIL"],
                              [[r.consumer_id, r.validate_status, fit(r.detail, 60)]
                               for r in rows], indent="  ")
    return lines + _table(["CONSUMER", "DISTRIBUTE", "VALIDATE", "HOLDS", "DETAIL"],
                          [[r.consumer_id, r.distribute_status, r.validate_status, r.holds,
                            "" if r.validate_status in DONE_ROW else fit(r.detail, 60)]
                           for r in rows], indent="  ")


def _before_revoke(job: Job) -> list[str]:
    found = before_revoke_lines(job)
    return ["Before the revoke:"] + [f"  {line}" for line in found] if found else []


def job_summary(job: Job, *, note: str | None = None, full: bool = False) -> str:
    """After `rotate` or `stage`: where the job is, its consumers, what matters in its failure
    state, what to run next; `full`: nothing cut."""
    fit = _Fit(full)
    lines = _heading(job, fit)
    if note:
        lines.append(note)
    lines += _consumer_lines(job, fit)
    lines += _before_revoke(job)
    lines += _failure_lines(job)
    lines += _job_next(job)
    lines += fit.footer(job)
    return "\n".join(lines) + "\n"


def job_detail(job: Job, *, events: int | None = EVENTS_SHOWN, full: bool = False) -> str:
    """`status --job`: the summary plus the job's events (the last `events`; every one, and
    nothing cut, when `full`)."""
    fit = _Fit(full)
    lines = _heading(job, fit)
    lines.append(f"Created {iso(job.created_at)} by {job.actor}; updated {iso(job.updated_at)}")
    lines += _consumer_lines(job, fit)
    lines += _before_revoke(job)
    lines += _failure_lines(job)
    total = len(job.events)
    shown = (job.events if full or events is None or total <= events
             else job.events[-events:])
    if len(shown) < total:
        lines.append(f"Events (the last {len(shown)} of {total}; all of them: "
                     f"{PROG} status --job {job.job_id} --all):")
    else:
        lines.append(f"Events (all {total}):")
    for event in shown:
        move = (f"{event.from_state} -> {event.to_state}" if event.from_state
                else f"-> {event.to_state}")
        lines.append(f"  {iso(event.at)}  {event.actor:<12} {event.action:<22} {move}  "
                     f"{fit(event.detail, 100)}".rstrip())
    lines += _job_next(job)
    lines += fit.footer(job)
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
        for why in found.not_searched:
            lines += _paragraph(why)
    if found.holders or found.references:
        lines += _next_block([], [], done=[
            f"{PROG} manifest check    # after registering them as consumers of "
            f"{found.credential}", f"{PROG} scan {found.credential}"])
    return "\n".join(lines) + "\n"
