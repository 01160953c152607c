"""`velvet stuck`: what needs a person now (runbook section 6's definition of stuck, and more).

    stuck                 a non-terminal job in the same status for more than 5 minutes
                          (interrupted mid-stage, or created and never started)
    waiting_on_operator   a job in a state only an operator action moves on (distribute_partial,
                          revoke_failed, rev_leaked, ...), however recent
    approvals_waiting     a job parked at a gate (verified, validated) for more than 5 minutes
    overdue               credentials whose schedule says they should have rotated by now
    revocation_debt       tokens minted and not yet proven dead (rolled back, aborted, superseded)

How long a job has been in its status is `timeline.since` (the last transition into it), so a
note added later (a notification, a refused confirmation) does not reset the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from velvet_runner import timeline
from velvet_runner.machine import OPERATOR_STATES, State, is_terminal
from velvet_runner.manifest import Manifest
from velvet_runner.records import Job, iso
from velvet_runner.schedule import due_credentials
from velvet_runner.store import Store

STUCK_AFTER = timedelta(minutes=5)
GATE_STATES = frozenset({State.VERIFIED, State.VALIDATED})
SECTIONS = ("stuck", "waiting_on_operator", "approvals_waiting", "overdue", "revocation_debt")


def _job_row(job: Job, now: datetime, why: str) -> dict[str, Any]:
    since = timeline.since(job)
    return {"credential": job.credential, "job_id": job.job_id, "flow": str(job.flow_type),
            "status": str(job.status), "since": iso(since),
            "minutes": max(0, int((now - since).total_seconds() // 60)),
            "why": why, "next": [str(a) for a in job.next_actions()]}


def find_stuck(manifest: Manifest, store: Store, now: datetime, *,
               env: str | None) -> dict[str, list[dict[str, Any]]]:
    """What needs a person, from a few batched reads of one fetched head: the jobs the locks
    name (every job not yet terminal holds its credential's lock), the jobs the debt index
    lists (an old aborted job's orphaned token is still debt), and what is due."""
    served = timeline.require_env(env)
    head = store.refresh()
    found: dict[str, list[dict[str, Any]]] = {section: [] for section in SECTIONS}
    for job in store.owing(head=head):
        if not timeline.serves(served, job.env):
            continue
        for debt in job.revocation_debt:
            if debt.settled_at is None:
                found["revocation_debt"].append({
                    "credential": job.credential, "job_id": job.job_id,
                    "auth_id": debt.auth_id, "fingerprint": debt.fingerprint,
                    "reason": debt.reason, "since": iso(debt.since)})
    for job in store.in_flight(head=head):
        if not timeline.serves(served, job.env) or is_terminal(job.flow_type, job.status):
            continue
        age = now - timeline.since(job)
        if job.status in OPERATOR_STATES:
            found["waiting_on_operator"].append(_job_row(job, now, "needs an operator action"))
        elif job.status in GATE_STATES:
            if age > STUCK_AFTER:
                found["approvals_waiting"].append(_job_row(
                    job, now, "waiting at an approval gate"))
        elif age > STUCK_AFTER:
            why = ("created and never started" if job.status in (State.INIT, State.REV_INIT)
                   else "interrupted mid-stage: re-run its action to resume")
            found["stuck"].append(_job_row(job, now, f"same status for over 5 minutes; "
                                                     f"{why}"))
    found["overdue"].extend(due_credentials(manifest, store, now, env=served,
                                             fetch=False))
    return found


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def render(findings: dict[str, list[dict[str, Any]]]) -> str:
    """One table per non-empty section, for people; `--json` is for machines."""
    if not any(findings.values()):
        return "nothing is stuck\n"
    out: list[str] = []
    for section in [s for s in SECTIONS if s in findings] + [
            s for s in findings if s not in SECTIONS]:
        rows = findings[section]
        if not rows:
            continue
        out.append(f"{section.replace('_', ' ')} ({len(rows)}):")
        if section == "revocation_debt":
            out += _table(["CREDENTIAL", "AUTH ID", "FINGERPRINT", "SINCE", "JOB", "REASON"],
                          [[r["credential"], str(r["auth_id"] or "-"), r["fingerprint"],
                            r["since"], r["job_id"], r["reason"]] for r in rows])
        elif section == "overdue":
            out += _table(["CREDENTIAL", "SCHEDULE", "DUE SINCE", "REASON"],
                          [[r["credential"], str(r.get("schedule") or "-"),
                            r["due_at"],
                            r["reason"]] for r in rows])
        else:
            out += _table(["CREDENTIAL", "JOB", "STATUS", "SINCE", "MIN", "NEXT"],
                          [[r["credential"], r["job_id"], r["status"], r["since"],
                            str(r["minutes"]), ", ".join(r["next"]) or "-"] for r in rows])
        out.append("")
    return "\n".join(out)
