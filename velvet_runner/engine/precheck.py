"""Stage 3's checks before it revokes (scan.py): who else holds the old value, and whether the
vendor saw it used after every registered consumer switched to the new one.

Either refuses `proceed_revoke` (GateRefused, exit 2: nothing revoked, the job stays where it
is) unless the operator accepts it on the stage's ticket: `--accept-unregistered` for places
the manifest does not register that hold the old value, `--accept-still-used` for a use after
the switch. What was found, and what was accepted, is recorded on the job either way
(`report.before_revoke`, and a `before_revoke` event), so the summary, the notifications and
`velvet evidence` name it.
"""

from __future__ import annotations

from typing import Any

from velvet_runner import scan
from velvet_runner.errors import GateRefused
from velvet_runner.machine import Action, Option
from velvet_runner.records import Job, iso

from .context import Args, Run


def before_revoke(run: Run, args: Args) -> None:
    old_value = run.current()  # not promoted yet: the vault's current value is the old one
    found = scan.scan(run.wiring, run.services.manifest, run.cred, old_value)
    old = run.entry("old")
    use = scan.check_use(run.vendor, old.auth_id if old else None, using=run.new_value(),
                         job=run.job, settle_seconds=run.services.settle_seconds,
                         call=run.call)
    refused: list[str] = []
    missing: list[Option] = []
    if found.holders and not args.accept_unregistered:
        named = ", ".join(h.where + (f" (registered as {h.registered_as})"
                                     if h.registered_as else "") for h in found.holders)
        refused.append(f"{len(found.holders)} place(s) the manifest does not register for "
                       f"{run.cred.name} hold its old value ({found.fingerprint}): {named}; "
                       "revoking it breaks whoever reads them. Register them in the manifest, "
                       "or change them to read the vault")
        missing.append(Option.ACCEPT_UNREGISTERED)
    last, switched = use.last_used, use.switched_at
    if use.after_switch and not args.accept_still_used and last and switched:
        unswitched = (f"; consumers {', '.join(use.still_old)} never switched and may be the "
                      "user" if use.still_old else "")
        refused.append(f"{run.cred.vendor} saw the old value used at {iso(last)} "
                       f"({use.detail}), after every registered consumer had switched "
                       f"({iso(switched)}, plus the {use.settle_seconds:g} s settle "
                       f"window): someone Velvet does not know of still uses it{unswitched}. "
                       f"Find them (velvet scan {run.cred.name})")
        missing.append(Option.ACCEPT_STILL_USED)
    accepted = {"unregistered": bool(found.holders and args.accept_unregistered),
                "still_used": bool(use.after_switch and args.accept_still_used)}
    record: dict[str, Any] = {**found.to_dict(), "last_use": use.to_dict(),
                              "accepted": accepted, "ticket": args.ticket,
                              "refused": bool(refused)}

    def keep(job: Job) -> None:
        job.report[scan.REPORT_KEY] = record

    detail = "; ".join(scan.before_revoke_lines(_with(run.job, record))) or (
        f"no unregistered holder of the old value ({sum(found.searched.values())} places "
        f"read); last use: {use.detail}")
    run.journal.note("before_revoke", detail, record, mutate=keep, defer=not refused)
    if refused:
        flags = " ".join(f"--{o}" for o in missing)
        raise GateRefused("; ".join(refused) + ". Or accept it on the ticket: velvet stage "
                          f"{run.job.job_id} {Action.PROCEED_REVOKE} --ticket {args.ticket} "
                          f"--confirm {run.cred.name} {flags}")


def _with(job: Job, record: dict[str, Any]) -> Job:
    """The job as it reads once `record` is kept (for the event's words)."""
    copy = job.model_copy(deep=True)
    copy.report[scan.REPORT_KEY] = record
    return copy
