"""Stage 3 of the operational flow: re-check every consumer, revoke the old value, prove it
dead at the vendor, then promote the vault."""

from __future__ import annotations

from pydantic import SecretStr

from velvet_runner import ledger
from velvet_runner.errors import GateRefused, InputError, VendorError
from velvet_runner.machine import Action, Outcome, State
from velvet_runner.records import DONE_ROW, Job, Life, RowStatus, fingerprint

from .context import Args, Run
from .operational import check_rows, outcome


def proceed_revoke(run: Run, act: Action, args: Args) -> Job:
    j = run.journal
    if run.job.status in (State.VALIDATED, State.VALIDATE_PARTIAL):
        ticket, name = args.ticket, run.cred.name
        if not ticket or not ticket.strip():
            raise GateRefused("proceed_revoke needs --ticket with the ticket id "
                              f"(for example ROT-2026-05-{name})")
        if args.confirm != name:
            raise GateRefused(f"proceed_revoke needs --confirm {name} "
                              "(the credential's name typed back)")
        run.gate(Action.PROCEED_REVOKE)
        value = run.new_value()
        # A re-check interrupted by a crash left its rows in flight: they are re-checked too.
        rechecked = {RowStatus.SUCCEEDED, RowStatus.IN_PROGRESS}
        todo = run.rows(lambda r: r.validate_status in rechecked)
        check_rows(run, todo, value, "live", settle=False, crash_point="recheck")
        regressed = [r.consumer_id for r, _ in todo
                     if (row := run.job.row(r.consumer_id)) is not None
                     and row.validate_status != RowStatus.SUCCEEDED]
        unvalidated = [r.consumer_id for r in run.job.consumers
                       if r.validate_status not in DONE_ROW]
        if unvalidated and not run.job.force_revoke:
            if run.job.status == State.VALIDATED:
                result = outcome(r.validate_status for r in run.job.consumers)
                return j.move(result, "re-check before revoke failed; regressed: "
                              + ", ".join(regressed or unvalidated))
            j.flush_rows()
            raise GateRefused(f"not every consumer is validated ({', '.join(unvalidated)}); "
                              "revoking now needs a job created with --force-revoke")
        current = run.current()
        old_id = run.ensure_old(current, run.job.old_auth_id)

        def record(job: Job) -> None:
            job.ticket = ticket.strip() if ticket else None
            old = job.token(old_id)
            if old is not None and old.life != Life.PROVEN_DEAD:
                ledger.set_life(old, Life.REVOKING, run.e.now())
                old.intent = "revoke"

        unproven = run.job.unproven_rows()
        j.move(Action.PROCEED_REVOKE, f"revoking the old value (ticket {ticket})"
               + "".join(f"; {kind}: {', '.join(ids)}" for kind, ids in unproven.items() if ids),
               data={"ticket": ticket, "unvalidated_consumers": unvalidated, **unproven},
               mutate=record)
    return revoke(run)


def retry_revoke(run: Run, act: Action, args: Args) -> Job:
    if run.job.status == State.REVOKE_FAILED:
        old = run.entry("old")

        def record(job: Job) -> None:
            token = job.token(old.token_id) if old is not None else None
            if token is not None and token.life not in (Life.PROVEN_DEAD, Life.REVOKING):
                ledger.set_life(token, Life.REVOKING, run.e.now())
                token.intent = "revoke"

        run.journal.move(act, "retrying revoke", mutate=record)
    return revoke(run)


def revoke(run: Run) -> Job:
    """Revoke the old value, prove it dead at the vendor, then promote the vault."""
    j = run.journal
    j.hold()
    run.crash("before_revoke")
    try:
        current = run.current()
    except (VendorError, InputError) as exc:
        return j.move(Outcome.FAILED, f"revoke failed: {exc}")
    old_id = run.ensure_old(current, run.job.old_auth_id)
    old = j.token(old_id)
    if old.life == Life.PROVEN_DEAD:  # proven before a crash; promote and finish
        return finish_revoke(run, old.evidence or "old value proven dead")
    if fingerprint(current) == run.job.new_fingerprint:
        # Promoted before the proof was recorded (a record from before the ledger).
        return _prove_or_fail(run, old_id, None, current, "the vault already holds the new "
                              "value")
    try:
        new = run.new_value()
    except (VendorError, InputError) as exc:
        return j.move(Outcome.FAILED, f"revoke failed: {exc}")
    if not run.vendor.CAN_REVOKE:
        return _prove_or_fail(run, old_id, current, new, "")
    if run.job.old_auth_id is None:
        return _failed(run, old_id, "revoke failed: the old value's auth id is unknown "
                       f"({run.vault.describe()}__AUTH_ID is empty); revoke it at the vendor, "
                       f"then {run.command('mark_manually_revoked --ticket T')}")
    auth_id = run.job.old_auth_id
    try:
        revoked_now = run.call(lambda: run.vendor.revoke(auth_id, using=new, value=current))
    except VendorError as exc:
        return _failed(run, old_id, f"revoke failed: {exc} (old_auth_id {auth_id}); "
                       f"{run.command('retry_revoke')}")
    run.crash("after_revoke")
    said = ("old value revoked" if revoked_now
            else f"already revoked (404: the vendor has no auth id {auth_id})")
    return _prove_or_fail(run, old_id, current, new, said)


def _prove_or_fail(run: Run, old_id: str, value: SecretStr | None, using: SecretStr,
                   said: str) -> Job:
    j = run.journal
    old = j.token(old_id)
    try:
        proof = run.prove_dead(old, value, using=using)
    except VendorError as exc:
        return _failed(run, old_id, f"revoke check failed: {exc}; {run.command('retry_revoke')}")
    if not proof.dead:
        return _failed(run, old_id, _unproven(run, proof.evidence, said, probed=proof.probed))
    # The proof is committed before the vault is promoted: afterwards the old value is gone
    # from the vault and could no longer be probed.
    j.settle(old_id, Life.PROVEN_DEAD, evidence=proof.evidence, defer=False)
    run.crash("after_proof")
    return finish_revoke(run, "; ".join(p for p in (said, proof.evidence) if p))


def _unproven(run: Run, evidence: str, said: str, *, probed: bool) -> str:
    name = run.cred.vendor
    if not probed:
        return (f"manual_required: {name} cannot revoke or probe by API; delete the old token "
                "in the vendor's dashboard, then "
                + run.command("mark_manually_revoked --ticket T"))
    if not run.vendor.CAN_REVOKE:
        return (f"manual_required: {name} cannot revoke by API and {evidence}; delete the old "
                f"token in the vendor's dashboard, then {run.command('retry_revoke')} (or "
                "mark_manually_revoked --ticket T once it is refused)")
    if said.startswith("already revoked"):
        return (f"revoke not proven: the vendor says it has no auth id {run.job.old_auth_id} "
                f"(404), but {evidence}: the vault's "
                f"{run.vault.describe()}__AUTH_ID is probably stale. Revoke the old token at "
                f"{name} by hand, then {run.command('mark_manually_revoked --ticket T')}")
    return (f"revoke not proven: {said}, but {evidence}; "
            f"{run.command('retry_revoke')}, or revoke it at {name} by hand and "
            "mark_manually_revoked --ticket T")


def _failed(run: Run, old_id: str, detail: str) -> Job:
    """revoke_failed: the old value stays the vault's current value (nothing was promoted)."""
    def back(job: Job) -> None:
        old = job.token(old_id)
        if old is not None and old.life == Life.REVOKING:
            ledger.set_life(old, Life.CURRENT, run.e.now())

    return run.journal.move(Outcome.FAILED, detail, mutate=back)



def finish_revoke(run: Run, detail: str) -> Job:
    run.promote()
    run.crash("after_promote")
    return run.journal.move(Outcome.OK, f"{detail}; vault promoted",
                            mutate=lambda job: make_current(run, job))


def make_current(run: Run, job: Job) -> None:
    """The job's new value is now the vault's current one."""
    new = ledger.latest(job, "new")
    if new is not None and new.life in (Life.HELD, Life.MINTED, Life.REVOKING):
        ledger.set_life(new, Life.CURRENT, run.e.now())
        ledger.release(new, ledger.VAULT_PENDING)
        ledger.hold(new, ledger.VAULT_CURRENT)
    old = ledger.latest(job, "old")
    if old is not None:
        ledger.release(old, ledger.VAULT_CURRENT)
