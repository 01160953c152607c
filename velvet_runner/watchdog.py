"""`velvet stuck`: what needs a person now (runbook section 6's definition of stuck, and more).

    stuck                 a non-terminal job unchanged for more than 5 minutes
    waiting_on_operator   a job in a state that needs an operator action (distribute_partial, ...)
    approvals_waiting     a job parked at a gate (verified, validated) for more than 5 minutes
    overdue               credentials whose schedule says they should have rotated
    revocation_debt       tokens minted and not yet proven dead (rolled back, aborted, superseded)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from velvet_runner.machine import OPERATOR_STATES, State, allowed, is_terminal
from velvet_runner.manifest import Manifest
from velvet_runner.records import Job
from velvet_runner.schedule import _iso, due_credentials
from velvet_runner.store import Store

STUCK_AFTER = timedelta(minutes=5)
GATE_STATES = frozenset({State.INIT, State.REV_INIT, State.VERIFIED, State.VALIDATED})
HISTORY = 50


def _job_row(job: Job, now: datetime, why: str) -> dict[str, Any]:
    return {"credential": job.credential, "job_id": job.job_id, "status": str(job.status),
            "since": _iso(job.updated_at),
            "minutes": int((now - job.updated_at).total_seconds() // 60),
            "why": why, "next": [str(a) for a in allowed(job.flow_type, job.status,
                                                          force_revoke=job.force_revoke)]}


def find_stuck(manifest: Manifest, store: Store, now: datetime, *,
               env: str | None = None) -> dict[str, list[dict[str, Any]]]:
    store.refresh()
    found: dict[str, list[dict[str, Any]]] = {
        "stuck": [], "waiting_on_operator": [], "approvals_waiting": [], "overdue": [],
        "revocation_debt": []}
    names = sorted(set(store.credentials(fetch=False)) | {c.name for c in manifest.credentials})
    for name in names:
        for job in store.list_jobs(name, HISTORY, fetch=False):
            if env and job.env != env:
                continue
            for debt in job.revocation_debt:
                if debt.settled_at is None:
                    found["revocation_debt"].append({
                        "credential": job.credential, "job_id": job.job_id,
                        "auth_id": debt.auth_id, "fingerprint": debt.fingerprint,
                        "reason": debt.reason, "since": _iso(debt.since)})
            if is_terminal(job.flow_type, job.status):
                continue
            age = now - job.updated_at
            if job.status in OPERATOR_STATES:
                found["waiting_on_operator"].append(_job_row(job, now, "needs an operator action"))
            elif job.status in GATE_STATES:
                if age > STUCK_AFTER:
                    found["approvals_waiting"].append(_job_row(
                        job, now, "waiting at an approval gate"))
            elif age > STUCK_AFTER:
                found["stuck"].append(_job_row(job, now, "no state change for over 5 minutes"))
    for row in due_credentials(manifest, store, now, env=env):
        found["overdue"].append(row)
    return found


def render(findings: dict[str, list[dict[str, Any]]]) -> str:
    if not any(findings.values()):
        return "nothing is stuck\n"
    out = []
    for section, rows in findings.items():
        if not rows:
            continue
        out.append(f"{section.replace('_', ' ')} ({len(rows)}):\n")
        for row in rows:
            if "job_id" in row and "status" in row:
                out.append(f"  {row['credential']}  {row['job_id']}  {row['status']}  since "
                           f"{row['since']} ({row['minutes']} min)  next: "
                           f"{', '.join(row['next']) or '-'}\n")
            elif "fingerprint" in row:
                out.append(f"  {row['credential']}  auth id {row['auth_id']}  "
                           f"{row['fingerprint']}  {row['reason']}  (job {row['job_id']})\n")
            else:
                out.append(f"  {row['credential']}  due since {row['due_at']}  "
                           f"({row['reason']})\n")
    return "".join(out)
