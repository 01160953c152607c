"""Recoveries: marking rows by hand, manual revocation, abort and rollback.

Abort and rollback read the ledger to decide what they may kill: a token no consumer may hold
is revoked (announced first, proven after); one that consumers may hold is recorded as debt
and named in the residual report, with the step that settles it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import SecretStr

from velvet_runner import ledger
from velvet_runner.errors import BadArgument, GateRefused, InputError, StillLive, VendorError
from velvet_runner.machine import Action, Flow, Option, State, stage_command
from velvet_runner.manifest import Consumer
from velvet_runner.records import DONE_ROW, Job, Life, RowStatus, Token, fingerprint, iso

from .context import Args, Run
from .fanout import fan_out
from .operational import advance, outcome
from .proof import Proof, confirm, prove
from .revoke import make_current

# --- rows marked by hand ---------------------------------------------------------------


def mark_rows(run: Run, act: Action, args: Args) -> Job:
    j = run.journal
    consumer_ids = args.consumers
    if not consumer_ids:
        raise BadArgument(f"{act} needs --consumer ID (one or more)")
    distributing = run.job.status in (State.DISTRIBUTE_PARTIAL, State.DISTRIBUTE_FAILED)
    field = "distribute_status" if distributing else "validate_status"
    status = (RowStatus.MANUALLY_CONFIRMED if act == Action.MANUAL_CONFIRM
              else RowStatus.SKIPPED)
    evidence: dict[str, str] = {}
    for cid in consumer_ids:
        consumer = run.consumer(cid)
        row = run.job.row(cid)
        if row is None:
            raise BadArgument(f"consumer {cid} is not part of job {run.job.job_id}")
        if getattr(row, field) in DONE_ROW:
            raise BadArgument(f"consumer {cid} is already {getattr(row, field)}")
        if act == Action.MANUAL_CONFIRM:
            evidence[cid] = _confirm_evidence(run, consumer, args.ticket)
    for cid in consumer_ids:
        extra: dict[str, Any] = {field: status, "detail": f"{act} by {run.services.actor}"
                                 + (f": {evidence[cid]}" if cid in evidence else "")}
        if distributing and act == Action.MANUAL_CONFIRM:
            extra["holds"] = "new"  # runbook 6c option B: the operator pushed it by hand
        if distributing and act == Action.SKIP_CONSUMER:
            extra["validate_status"] = RowStatus.SKIPPED
        j.set_row(cid, **extra)
    data: dict[str, Any] = {"consumers": consumer_ids}
    if evidence:
        data["evidence"] = evidence
    if args.ticket:
        data["ticket"] = args.ticket
    j.move(act, f"{', '.join(consumer_ids)} {status}", data=data)
    # Re-evaluate without touching other rows: the stage resumes only if every row is done.
    if run.job.status == State.DISTRIBUTING:
        result = outcome(r.distribute_status for r in run.job.consumers)
        job = j.move(result, f"distribution {result}")
        if job.status == State.DISTRIBUTED:
            return advance(run, act)
        return job
    result = outcome(r.validate_status for r in run.job.consumers)
    return j.move(result, f"validation {result}")


def _confirm_evidence(run: Run, consumer: Consumer, ticket: str | None) -> str:
    """manual_confirm is checked where the target can be read back: the row must hold the new
    value, or the operator's ticket must say why it is right anyway."""
    target = run.target(consumer)
    if not target.READABLE:
        return (f"{consumer.kind} cannot be read back; taken on the operator's word"
                + (f" (ticket {ticket})" if ticket else ""))
    try:
        stored = target.fingerprint()
    except VendorError as exc:
        stored, why = None, f"could not be read back ({exc})"
    else:
        why = ("holds no value" if stored is None else "does not hold the new value "
               f"(it holds {stored})")
    if stored is not None and stored == run.job.new_fingerprint:
        return "reads back the new value"
    if ticket:
        return f"{why}; confirmed on the operator's evidence (ticket {ticket})"
    raise BadArgument(f"manual_confirm refused: {consumer.consumer_id} {why}. Push the new value "
                      "to it and confirm again, or give --ticket with your evidence that it is "
                      "right")


# --- revoked by hand -------------------------------------------------------------------


def mark_manually_revoked(run: Run, act: Action, args: Args) -> Job:
    """The operator revoked the old value at the vendor: believed only once it is refused."""
    ticket = _ticket(args, act)
    current = run.current()
    old_id = run.ensure_old(current)
    # The vault's value is the old one unless a crash came after the vault was promoted.
    held = current if fingerprint(current) == run.journal.token(old_id).fingerprint else None
    life, evidence = manual_proof(run, old_id, held, ticket, args)
    if run.job.flow_type == Flow.OPERATIONAL:
        run.promote()

    def record(job: Job) -> None:
        job.ticket = ticket
        old = job.token(old_id)
        if old is not None:
            ledger.set_life(old, life, run.now(), evidence=evidence)
        if job.flow_type == Flow.OPERATIONAL:
            make_current(run, job)

    return run.journal.move(act, f"revoked by hand (ticket {ticket}): {evidence}",
                            data={"ticket": ticket, "evidence": evidence}, mutate=record)


def _ticket(args: Args, act: Action) -> str:
    if not args.ticket or not args.ticket.strip():
        raise GateRefused(f"{act} needs --ticket with the ticket id")
    return args.ticket.strip()


def manual_proof(run: Run, token_id: str, value: SecretStr | None, ticket: str,
                 args: Args) -> tuple[Life, str]:
    """What the operator's word is worth: proven dead, or debt on `--accept-debt`."""
    token = run.journal.token(token_id)
    proof = confirm(run, token, value)
    if proof.dead:
        return Life.PROVEN_DEAD, f"{proof.evidence} (ticket {ticket})"
    if proof.verdict == "unknown":
        # Nothing can prove it either way (no probe, or its value is gone and the vendor
        # cannot say whether its id exists): the operator's ticket is the evidence.
        return Life.PROVEN_DEAD, f"{proof.evidence}; the operator's ticket {ticket} is the evidence"
    if not args.accept_debt:
        message = (f"mark_manually_revoked refused: {proof.evidence}. Revoke it at "
                   f"{run.cred.vendor} first and run this again, or record it as revocation "
                   "debt: " + stage_command(run.job.job_id, Action.MARK_MANUALLY_REVOKED,
                                            ticket=ticket, flags=[Option.ACCEPT_DEBT]))
        run.journal.note("mark_manually_revoked_refused", proof.evidence, {"ticket": ticket})
        raise StillLive(message)
    return Life.DEBT, f"still live, recorded as debt on the operator's word (ticket {ticket})"


# --- leaving early ---------------------------------------------------------------------


def abort(run: Run, act: Action, args: Args) -> Job:
    """End the job: revoke what no consumer may hold, list the rest as debt, report."""
    j = run.journal
    by = args.preempted_by
    # From validated the vault is promoted to the value consumers use; not when an emergency
    # takes over: it kills the value live when it was declared (the vault's current one).
    superseded = (run.job.status == State.VALIDATED and run.job.new_fingerprint is not None
                  and by is None)
    notes: list[str] = []
    old_proof = _old_now(run)
    if superseded:
        notes.append(_promote_for_abort(run))
    elif run.job.flow_type == Flow.OPERATIONAL:
        notes += _kill_unheld(run)

    def record(job: Job) -> None:
        old = job.newest("old")
        if old is not None and old_proof is not None:
            if old_proof.dead and old.life != Life.PROVEN_DEAD:
                ledger.set_life(old, Life.PROVEN_DEAD, run.now(), evidence=old_proof.evidence)
            elif old_proof.verdict == "live" and old.life == Life.PROVEN_DEAD:
                ledger.set_life(old, Life.CURRENT, run.now(),
                                evidence=f"recorded as proven dead, but {old_proof.evidence}")
        if superseded:
            make_current(run, job)
            old = job.newest("old")
            if old is not None and old.life in ledger.LIVE:
                ledger.set_life(old, Life.DEBT, run.now(), evidence=(
                    "aborted from validated: superseded by the new value, not revoked"))
        for token in job.ledger:
            if token.life in (Life.INTENDED, Life.MINTED, Life.HELD, Life.REVOKING):
                why = (f"preempted: emergency revocation {by} revokes it" if by
                       else token.evidence or _why_debt(job, token))
                ledger.set_life(token, Life.DEBT, run.now(), evidence=why)
        job.report["residual"] = residual(job, notes)

    preview = run.job.model_copy(deep=True)
    record(preview)
    next_step = preview.report["residual"]["next_step"]
    return j.move(act, next_step, data={"residual": preview.report["residual"]}, mutate=record)


def _old_now(run: Run) -> Proof | None:
    """What the vendor says of the old value now: the residual report says whether it is live,
    and that is a claim like any other (a refusal at verify was only an observation)."""
    old = run.entry("old")
    if old is None or old.fingerprint is None:
        return None
    try:
        return confirm(run, old)
    except VendorError:
        return None


def _promote_for_abort(run: Run) -> str:
    """From validated the vault must name the value consumers use, or the next rotation
    verifies (and the operator revokes) the wrong one."""
    try:
        if not run.promote():
            return "the vault's pending slot no longer holds this job's value; check the vault"
    except VendorError as exc:
        return f"the vault could not be promoted ({exc}); promote the pending value by hand"
    return "the vault now holds the new value as current"


def _may_hold(job: Job) -> list[str]:
    return [r.consumer_id for r in job.consumers if r.holds in ("new", "unknown")]


def _kill_unheld(run: Run) -> list[str]:
    """Revoke the job's new tokens when no consumer may hold them; their outcome recorded."""
    j = run.journal
    if _may_hold(run.job):
        return []
    todo = [t for t in run.job.ledger if t.role == "new" and t.life in ledger.LIVE
            and t.life != Life.CURRENT]
    if not todo:
        return []
    try:
        current = run.current()
    except (VendorError, InputError) as exc:
        return [f"could not read the current value to revoke the new token ({exc})"]
    notes = []
    for token in todo:
        if token.auth_id is None and token.label is not None and run.vendor.CAN_MINT:
            label: str = token.label
            try:
                found = run.call(partial(run.vendor.find_minted, current, label))
            except VendorError as exc:
                notes.append(f"could not look up {label} at the vendor ({exc})")
                continue
            if found is None:
                j.settle(token.token_id, Life.PROVEN_DEAD, evidence=(
                    f"never issued: the vendor has no token labelled {label}"))
                continue
            j.settle(token.token_id, Life.MINTED, auth_id=found)
        notes.append(_revoke_token(run, token.token_id, current))
    try:
        run.call(_clear_own_pending(run))
    except VendorError as exc:
        notes.append(f"the vault's pending slot could not be cleared ({exc})")
    return notes


def _clear_own_pending(run: Run) -> Any:
    def clear() -> None:
        if run.own_pending() is not None:
            run.vault.clear_pending()
    return clear


def _revoke_token(run: Run, token_id: str, using: SecretStr) -> str:
    """Announce, revoke and prove one token; dead or debt, and a line for the report."""
    j = run.journal
    token = j.token(token_id)
    value = run.value_of(token)
    if not run.vendor.CAN_REVOKE or token.auth_id is None:
        why = ("the vendor cannot revoke by API" if not run.vendor.CAN_REVOKE
               else "its auth id is unknown")
        j.settle(token_id, Life.DEBT, evidence=f"not revoked: {why}; delete it at the vendor")
        return f"token {token_id} left for manual revocation ({why})"
    j.kill(token_id)
    run.crash("before_revoke_new")
    auth_id = token.auth_id
    try:
        run.call(lambda: run.vendor.revoke(auth_id, using=using, value=value or using))
        run.crash("after_revoke_new")
        proof = prove(run, j.token(token_id), value, using=using)
    except VendorError as exc:
        j.settle(token_id, Life.DEBT, evidence=f"revoke failed: {exc}")
        return f"token {token_id} (auth id {auth_id}) not revoked: {exc}"
    j.settle(token_id, Life.PROVEN_DEAD if proof.dead else Life.DEBT, evidence=proof.evidence)
    return (f"new token (auth id {auth_id}) revoked: {proof.evidence}" if proof.dead
            else f"new token (auth id {auth_id}) not proven dead: {proof.evidence}")


def _why_debt(job: Job, token: Token) -> str:
    holders = _may_hold(job)
    if holders:
        return (f"aborted from {job.status}: consumers {', '.join(holders)} may hold it; sync "
                "them back to the old value, then revoke it at the vendor")
    return f"aborted from {job.status}: minted and not proven dead"


def residual(job: Job, notes: list[str]) -> dict[str, Any]:
    """Which consumer holds which value and which tokens outlive the job (runbook 6f)."""
    old = job.newest("old")
    debt = [{"token_id": t.token_id, "auth_id": t.auth_id, "fingerprint": t.fingerprint,
             "why": t.evidence} for t in ledger.debt(job)]
    revoked = [{"token_id": t.token_id, "auth_id": t.auth_id, "evidence": t.evidence}
               for t in job.ledger if t.life == Life.PROVEN_DEAD and t.role != "old"]
    old_live = old is None or old.life != Life.PROVEN_DEAD
    steps = list(notes)
    if job.flow_type == Flow.REVOCATION and old_live:
        steps.append("WARNING: the compromised value is still live at the vendor: revoke it "
                     f"now with velvet rotate {job.credential} --flow revocation")
    if debt:
        steps.append("revocation debt: " + "; ".join(f"{d['token_id']} (auth id {d['auth_id']}):"
                                                     f" {d['why']}" for d in debt)
                     + "; velvet stuck --settle-debt clears what the vendor proves dead")
    if job.status == State.VALIDATED and job.flow_type == Flow.OPERATIONAL:
        steps.append("consumers hold the new value and the old one is still live: revoke the "
                     "old token at the vendor by hand")
    touched = any(r.holds != "old" for r in job.consumers)
    if not debt and not revoked and not touched and not notes:
        steps.append("nothing to clean up: no token was minted and every consumer still holds "
                      "the old value")
    elif touched and job.status != State.VALIDATED:
        moved = [r.consumer_id for r in job.consumers if r.holds != "old"]
        steps.append(f"consumers not on the old value: {', '.join(moved)}; sync every consumer "
                     "holding the new value back to the old one, then delete the new token "
                     "(runbook 6f)")
    return {"from_state": str(job.status),
            "consumers": {r.consumer_id: r.holds for r in job.consumers},
            "old_value": {"auth_id": job.old_auth_id, "fingerprint": job.old_fingerprint,
                          "live": old_live},
            "orphaned_tokens": debt, "revoked_tokens": revoked,
            "next_step": "; ".join(steps) or "nothing to clean up"}


def rollback(run: Run, act: Action, args: Args) -> Job:
    """Put the old value back on every consumer, then revoke the new token.

    Ledgered as it goes: the first commit marks the job as rolling back (from then on only
    rollback may run), each restored row is saved, and the new token's revoke is announced.
    """
    j = run.journal
    if run.job.rollback is None:
        started = {"from_state": str(run.job.status), "started_at": iso(run.now())}
        j.change(lambda job: setattr(job, "rollback", dict(started)))
        run.crash("rollback_start")
    try:
        old = run.current()
    except (VendorError, InputError) as exc:
        return j.note("rollback_failed", f"cannot read the old value: {exc}")
    # Rows still on the old value (never written, or refused outright) are left alone: a
    # consumer that refused the new value (a deleted app) would refuse the old one too.
    todo = run.rows(lambda r: r.distribute_status != RowStatus.SKIPPED and r.holds != "old")
    restored = [0]

    def write(consumer: Consumer) -> tuple[RowStatus, str]:
        target = run.target(consumer)
        try:
            run.retry(target.backoff_hint).run(lambda: target.write(old))
        except VendorError as exc:
            return RowStatus.FAILED, str(exc)
        return RowStatus.SUCCEEDED, "rolled back to the old value"

    failures: list[str] = []

    def done(consumer: Consumer, result: tuple[RowStatus, str]) -> None:
        status, detail = result
        if status == RowStatus.SUCCEEDED:
            j.set_row(consumer.consumer_id, holds="old", detail=detail)
            restored[0] += 1
            if restored[0] == 1:
                j.flush_rows()
                run.crash("mid_rollback")
        else:
            failures.append(consumer.consumer_id)
            j.set_row(consumer.consumer_id, holds="unknown", detail=f"rollback: {detail}")

    fan_out(run, [c for _, c in todo], write, done, what="rolling back", spends=True)
    if failures:
        return j.note("rollback_failed", "could not restore the old value on "
                      + ", ".join(sorted(failures)) + "; run "
                      + run.command(Action.ROLLBACK) + " again", {"failed": sorted(failures)})
    new_state = _revoke_new(run, old)
    run.call(run.vault.clear_pending)

    def record(job: Job) -> None:
        job.rollback = None
        job.report["rollback"] = {"new_token": new_state}
        for token in job.ledger:
            if token.role == "new" and token.life in ledger.LIVE:
                ledger.set_life(token, Life.DEBT, run.now(),
                                evidence=token.evidence or f"rolled back; new token {new_state}")
            ledger.release(token, ledger.VAULT_PENDING)

    return j.move(Action.ROLLBACK, f"every consumer back on the old value; new token "
                  f"{new_state}", data={"new_token": new_state}, mutate=record)


def _revoke_new(run: Run, old: SecretStr) -> str:
    new = run.entry("new")
    if new is None or run.job.new_fingerprint is None:
        return "never minted"
    if new.life == Life.PROVEN_DEAD:
        return "revoked"
    _revoke_token(run, new.token_id, old)
    token = run.journal.token(new.token_id)
    if token.life == Life.PROVEN_DEAD:
        return "revoked"
    if not run.vendor.CAN_REVOKE or token.auth_id is None:
        return "left for manual revocation"
    return f"not proven dead ({token.evidence})"
