"""`velvet evidence`: what the state branch proves about every rotation, for an auditor.

Per credential, every rotation (operational and emergency; a dry run is not one) with its
dates; the replaced value's age when it was replaced against the schedule; who started it and
who approved each gate (the runner's own gate checks, recorded as `approval` and
`fallback_approval` events); the ticket; how the old value was proven dead and when (its
ledger entry); revocation debt opened and settled; what stage 3 found before it revoked and
the operator accepted (scan.py); and then the credentials out of policy: overdue by their
schedule, or with debt still open.

Read from the state branch only (one fetch, then every read at that head) and the manifest
for the schedules. Deterministic: the document names the branch head, the manifest's digest
and its "as of" time, which is the head commit's own time unless `--as-of` says otherwise, so
the same head and manifest give the same bytes to anyone who runs it.

A value's age when it was replaced (at `done`, or an emergency's `rev_done`) is measured as the
schedule measures it (`timeline.last_done`, as `velvet due` does): from the end of the last
completed operational rotation before it. The first rotation the branch records has none.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from velvet_runner import timeline
from velvet_runner.errors import BadArgument
from velvet_runner.machine import Flow, State, is_terminal
from velvet_runner.manifest import Credential, Manifest
from velvet_runner.manifest_models import SCHEDULE_RE, SCHEDULE_UNIT_HOURS
from velvet_runner.records import Job, Token, iso
from velvet_runner.scan import before_revoke_lines
from velvet_runner.store import Store

FORMATS = ("md", "csv", "json")
APPROVAL_EVENTS = ("approval", "fallback_approval")  # github/gate.py's records
REPLACED = frozenset({State.DONE, State.REV_DONE})  # the value was replaced (its age is known)
GATE_OF_STATE = {State.VERIFIED: "proceed_mint", State.VALIDATED: "proceed_revoke",
                 State.VALIDATE_PARTIAL: "proceed_revoke"}


def parse_since(text: str | None) -> timedelta | None:
    """`--since 90d` (an interval as a schedule writes it: h, d or w)."""
    if text is None:
        return None
    match = SCHEDULE_RE.match(text)
    if match is None:
        raise BadArgument(f"--since {text!r} is not an interval such as 90d, 12w or 36h")
    return timedelta(hours=int(match.group(1)) * SCHEDULE_UNIT_HOURS[match.group(2)])


def _duration(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if days else f"{hours}h"


# --- what the branch says ----------------------------------------------------------------------


@dataclass
class Report:
    branch: str
    head: str | None
    as_of: datetime
    manifest: str
    manifest_sha256: str
    since: str | None
    window_start: datetime | None
    credentials: list[dict[str, Any]] = field(default_factory=list)
    out_of_policy: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {"state_branch": self.branch, "head": self.head, "as_of": iso(self.as_of),
                "manifest": self.manifest, "manifest_sha256": self.manifest_sha256,
                "since": self.since,
                "window_start": iso(self.window_start) if self.window_start else None,
                "credentials": self.credentials, "out_of_policy": self.out_of_policy}


def collect(store: Store, manifest: Manifest, manifest_path: Path, *, since: str | None = None,
            credential: str | None = None, as_of: datetime | None = None,
            fetch: bool = True) -> Report:
    """Read the branch once (`fetch`: fetch it first; the status app reads its own copy) and
    assemble the report (every job, so ages and debt are whole)."""
    window = parse_since(since)
    head = store.refresh() if fetch else store.head(fetch=False)
    if as_of is None:
        as_of = store.committed_at(head) if head else datetime.fromtimestamp(0, tz=UTC)
    creds = {c.name: c for c in manifest.credentials}
    names = sorted(set(creds) | set(store.credentials(fetch=False)))
    if credential is not None:
        if credential not in names:
            raise BadArgument(f"credential {credential} is neither in the manifest nor on the "
                              "state branch")
        names = [credential]
    report = Report(branch=store.branch, head=head, as_of=as_of, manifest=manifest_path.name,
                    manifest_sha256=hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
                    since=since, window_start=as_of - window if window else None)
    for name in names:
        jobs = [j for j in store.list_jobs(name, None, fetch=False) if j.created_at <= as_of]
        entry = _credential(name, creds.get(name), jobs, report)
        report.credentials.append(entry)
        report.out_of_policy += entry.pop("_out_of_policy")
    return report


def _credential(name: str, cred: Credential | None, jobs: list[Job],
                report: Report) -> dict[str, Any]:
    jobs = sorted(jobs, key=lambda j: (j.created_at, j.job_id))  # oldest first
    hours = cred.schedule_hours if cred else None
    rotations: list[dict[str, Any]] = []
    arrived: datetime | None = None  # the end of the last completed rotation, as of this job
    for job in jobs:
        if job.flow_type == Flow.TESTING:
            continue
        finished = timeline.since(job) if is_terminal(job.flow_type, job.status) else None
        age = None
        if job.status in REPLACED and finished is not None:
            age = finished - arrived if arrived is not None else None
        if timeline.last_done([job]) is not None:
            arrived = finished
        if report.window_start is None or job.created_at >= report.window_start:
            rotations.append(_rotation(job, finished, age, hours))
    done = timeline.last_done(jobs)
    due = timeline.next_due(cred, done) if cred else None
    unscheduled = timeline.unscheduled(cred) if cred else "not in the manifest"
    debt = [_debt(job, token) for job in jobs for token in job.ledger
            if token.debt_since is not None]
    problems: list[dict[str, Any]] = []
    if unscheduled is None and cred is not None and (due is None or due <= report.as_of):
        problems.append({"credential": name, "problem": "overdue", "detail": (
            f"due since {iso(due)} by its {cred.schedule} schedule (last completed {iso(done)})"
            if due is not None and done is not None else "never rotated by Velvet")})
    for row in debt:
        if row["settled_at"] is None:
            problems.append({"credential": name, "problem": "open revocation debt",
                             "detail": f"auth id {row['auth_id']} (job {row['job_id']}) since "
                                       f"{row['opened_at']}: {row['reason']}"})
    return {"credential": name, "vendor": cred.vendor if cred else None,
            "env": cred.env if cred else None, "schedule": cred.schedule if cred else None,
            "unscheduled": unscheduled, "last_completed": iso(done) if done else None,
            "next_due": iso(due) if due else None, "rotations": rotations,
            "debt": debt, "_out_of_policy": problems}


def _rotation(job: Job, finished: datetime | None, age: timedelta | None,
              schedule_hours: int | None) -> dict[str, Any]:
    old = job.newest("old")
    manual = next((e for e in reversed(job.events) if e.action == "mark_manually_revoked"
                   and e.to_state != e.from_state), None)
    dead = old is not None and old.dead_at is not None
    return {
        "job_id": job.job_id, "flow": str(job.flow_type), "status": str(job.status),
        "env": job.env, "started_at": iso(job.created_at),
        "finished_at": iso(finished) if finished else None, "started_by": job.actor,
        "approvals": _approvals(job), "ticket": job.ticket or _ticket(job),
        "old_auth_id": old.auth_id if old else None,
        "key_age_seconds": int(age.total_seconds()) if age is not None else None,
        "within_schedule": (age <= timedelta(hours=schedule_hours)
                            if age is not None and schedule_hours is not None else None),
        "proven_dead_at": iso(old.dead_at) if dead and old and old.dead_at else None,
        "proven_dead_how": old.evidence if dead and old else None,
        "old_value_life": str(old.life) if old else None,
        "revoked_by_hand": ({"ticket": manual.data.get("ticket"), "at": iso(manual.at),
                             "actor": manual.actor, "evidence": manual.data.get("evidence")}
                            if manual else None),
        "before_revoke": before_revoke_lines(job),
    }


def _approvals(job: Job) -> list[dict[str, Any]]:
    out = []
    for event in job.events:
        if event.action not in APPROVAL_EVENTS:
            continue
        data = event.data
        gate = (data.get("action") or GATE_OF_STATE.get(State(event.from_state or "init"))
                or (event.detail or "").split(" ", 1)[0])
        out.append({"gate": gate, "approver": data.get("approver", event.actor),
                    "environment": data.get("environment"), "kind": data.get("kind"),
                    "seen_at": data.get("observed_at") or iso(event.at),
                    "run_url": data.get("run_url") or data.get("approval_run_url")})
    return out


def _ticket(job: Job) -> str | None:
    """The ticket of an emergency (its `revoke` event), where the job keeps none of its own."""
    return next((str(e.data["ticket"]) for e in job.events if e.data.get("ticket")), None)


def _debt(job: Job, token: Token) -> dict[str, Any]:
    settled = next((e for e in job.events if e.action == "debt_settled"
                    and e.data.get("token_id") == token.token_id), None)
    return {"job_id": job.job_id, "token": token.token_id, "auth_id": token.auth_id,
            "opened_at": iso(token.debt_since) if token.debt_since else None,
            "settled_at": iso(token.dead_at) if token.dead_at else None,
            "reason": token.evidence, "ticket": settled.data.get("ticket") if settled else None}


# --- renderings -----------------------------------------------------------------------------


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.document(), indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        return _csv(report)
    if fmt == "md":
        return _markdown(report)
    raise BadArgument(f"--format {fmt!r}: one of {', '.join(FORMATS)}")


CSV_COLUMNS = ("state_head", "as_of", "credential", "vendor", "env", "schedule", "job_id",
               "flow", "status", "started_at", "finished_at", "started_by", "approvals",
               "ticket", "old_auth_id", "key_age_seconds", "within_schedule",
               "proven_dead_at", "proven_dead_how", "revoked_by_hand_ticket", "before_revoke")


def _csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for cred in report.credentials:
        for row in cred["rotations"]:
            manual = row["revoked_by_hand"] or {}
            writer.writerow([
                report.head or "", iso(report.as_of), cred["credential"], cred["vendor"] or "",
                cred["env"] or "", cred["schedule"] or "", row["job_id"], row["flow"],
                row["status"], row["started_at"], row["finished_at"] or "", row["started_by"],
                "; ".join(f"{a['gate']}: {a['approver']}" for a in row["approvals"]),
                row["ticket"] or "", row["old_auth_id"] or "",
                "" if row["key_age_seconds"] is None else row["key_age_seconds"],
                "" if row["within_schedule"] is None else str(row["within_schedule"]).lower(),
                row["proven_dead_at"] or "", row["proven_dead_how"] or "",
                manual.get("ticket") or "", "; ".join(row["before_revoke"])])
    return out.getvalue()


def _cell(value: Any) -> str:
    text = "—" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(report: Report) -> str:
    window = (f"rotations started since {iso(report.window_start)} ({report.since})"
              if report.window_start else "every rotation the branch records")
    lines = [
        "# Appendix: credential rotation evidence", "",
        f"Generated by `velvet evidence` from state branch `{report.branch}` at commit "
        f"`{report.head or 'none (the branch does not exist yet)'}`, as of {iso(report.as_of)}"
        f", with manifest `{report.manifest}` (sha256 `{report.manifest_sha256}`). Scope: "
        f"{window}. The same commit and manifest give this document byte for byte: "
        "`velvet evidence` against them reproduces it.", "",
        "Times are UTC. Approvals are the runner's own checks at each gate (the approver read "
        "from GitHub's approval record, allowed by the manifest, not the person who started the "
        "job). A value is *proven dead* only when the vendor refused it, or no longer had it, at "
        "the moment the rotation claimed so.", "",
        "## Summary", "",
        "| credential | vendor | env | schedule | rotations | last completed | next due |",
        "|---|---|---|---|---|---|---|"]
    for cred in report.credentials:
        lines.append("| " + " | ".join(_cell(v) for v in (
            cred["credential"], cred["vendor"], cred["env"], cred["schedule"],
            len(cred["rotations"]), cred["last_completed"],
            cred["next_due"] or cred["unscheduled"])) + " |")
    lines += ["", "## Out of policy", ""]
    if report.out_of_policy:
        lines += [f"- **{p['credential']}**: {p['problem']}: {_cell(p['detail'])}"
                  for p in report.out_of_policy]
    else:
        lines.append(f"Nothing: every scheduled credential rotated within its schedule as of "
                     f"{iso(report.as_of)}, and no revocation debt is open.")
    for cred in report.credentials:
        lines += ["", f"## {cred['credential']}", ""]
        lines.append(f"Vendor {_cell(cred['vendor'])}, env {_cell(cred['env'])}, schedule "
                     f"{_cell(cred['schedule'] or cred['unscheduled'])}.")
        if not cred["rotations"]:
            lines += ["", "No rotation in scope."]
        for row in cred["rotations"]:
            kind = "emergency revocation" if row["flow"] == Flow.REVOCATION else "rotation"
            lines += ["", f"### {row['started_at'][:10]} {kind} `{row['job_id']}`: "
                      f"{row['status']}", "", "| | |", "|---|---|"]
            lines += [f"| {k} | {_cell(v)} |" for k, v in _facts(row, cred["schedule"])]
        if cred["debt"]:
            lines += ["", "Revocation debt (tokens Velvet made that were live, or not proven "
                      "dead, and not the vault's current value):", "",
                      "| job | auth id | opened | settled | how / why | ticket |",
                      "|---|---|---|---|---|---|"]
            lines += ["| " + " | ".join(_cell(v) for v in (
                d["job_id"], d["auth_id"], d["opened_at"], d["settled_at"] or "**open**",
                d["reason"], d["ticket"])) + " |" for d in cred["debt"]]
    return "\n".join(lines) + "\n"


def _facts(row: dict[str, Any], schedule: str | None) -> list[tuple[str, Any]]:
    age = row["key_age_seconds"]
    if age is None:
        aged = "not known (no earlier rotation on the branch)" if row["status"] in (
            State.DONE, State.REV_DONE) else "not replaced"
    else:
        verdict = ("" if row["within_schedule"] is None else
                   ", within schedule" if row["within_schedule"] else ", **beyond schedule**")
        aged = f"{_duration(timedelta(seconds=age))} (schedule {schedule or 'none'}{verdict})"
    approvals = "; ".join(f"{a['gate']}: {a['approver']} (environment {a['environment']}, "
                          f"{a['kind']}, seen {a['seen_at']})" for a in row["approvals"])
    dead = (f"{row['proven_dead_at']}: {row['proven_dead_how']}" if row["proven_dead_at"]
            else f"not proven (ledger: {row['old_value_life']})")
    facts: list[tuple[str, Any]] = [
        ("started", f"{row['started_at']} by {row['started_by']}"),
        ("finished", row["finished_at"] or "not finished"),
        ("approvals", approvals or "none recorded"),
        ("ticket", row["ticket"]),
        ("old value", f"auth id {row['old_auth_id'] or 'unknown'}; age when replaced: {aged}"),
        ("old value proven dead", dead)]
    manual = row["revoked_by_hand"]
    if manual:
        facts.append(("revoked by hand", f"{manual['at']} by {manual['actor']}, ticket "
                      f"{manual['ticket']}: {manual['evidence']}"))
    if row["before_revoke"]:
        facts.append(("before the revoke", "; ".join(row["before_revoke"])))
    return facts
