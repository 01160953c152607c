"""The operational flow's stages: verify, mint -> distribute -> validate, and revoke.

Each phase reads the value it needs from the vault and passes it on explicitly; every token it
creates or kills is announced in the ledger first (the journal commits the intent before the
side effect) and its outcome is recorded right after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import SecretStr

from velvet_runner import ledger, redact
from velvet_runner.checks import CheckResult, Expect
from velvet_runner.errors import GateRefused, InputError, VendorError, VendorUnavailable
from velvet_runner.machine import Action, Outcome, State
from velvet_runner.manifest import Consumer
from velvet_runner.records import DONE_ROW, ConsumerRow, Job, Life, RowStatus, fingerprint
from velvet_runner.vendors.base import Minted

from .context import Args, Run
from .fanout import fan_out

Holds = Literal["old", "new", "unknown"]


def outcome(statuses: Iterable[RowStatus]) -> Outcome:
    values = list(statuses)
    if all(s in DONE_ROW for s in values):
        return Outcome.OK
    if all(s == RowStatus.FAILED for s in values):
        return Outcome.FAILED
    return Outcome.PARTIAL


# --- stage 1: verify -------------------------------------------------------------------


def verify(run: Run, act: Action, args: Args) -> Job:
    j = run.journal
    if run.job.status != State.VERIFYING:
        j.move(act, "probing the vendor with the current value")
    run.crash("verify")
    try:
        current = run.current()
        identity = run.call(lambda: run.vendor.verify(current))
        run.call(run.vendor.check_rotatable)
    except (VendorError, InputError) as exc:
        return j.move(Outcome.FAILED, f"verify failed: {exc}")
    old_auth_id = run.vault_auth_id(identity.auth_id)
    run.ensure_old(current, old_auth_id)

    def record(job: Job) -> None:
        job.old_auth_id = old_auth_id
        job.old_fingerprint = fingerprint(current)
        old = ledger.latest(job, "old")
        if old is not None:  # a retry_verify after the vault changed by hand
            old.auth_id, old.fingerprint = old_auth_id, fingerprint(current)

    return j.move(Outcome.OK, f"current value accepted for {identity.subject}", mutate=record)


# --- stage 2: mint, distribute, validate -----------------------------------------------


def proceed_mint(run: Run, act: Action, args: Args) -> Job:
    run.gate(act)
    return advance(run, act)


def retry_distribute(run: Run, act: Action, args: Args) -> Job:
    if run.job.status in (State.DISTRIBUTE_PARTIAL, State.DISTRIBUTE_FAILED):
        run.journal.move(act, "retrying rows that failed")
    return advance(run, act)


def retry_validation(run: Run, act: Action, args: Args) -> Job:
    if run.job.status != State.VALIDATING:
        run.journal.move(act, "re-running checks")
    return advance(run, act, recheck=True)


def advance(run: Run, act: Action, *, recheck: bool = False) -> Job:
    """Run from wherever stage 2 stands to validated or the first failed/partial state."""
    if run.job.status in (State.VERIFIED, State.MINT_FAILED):
        label = _label(run)
        run.journal.move(act, "minting a new credential",
                         mutate=lambda job: _announce_mint(run, job, label))
        token = run.entry("new")
        if token is not None and token.life == Life.INTENDED:
            run.journal.announced.add(token.token_id)
    phases: dict[State, Callable[[], None]] = {
        State.MINTING: lambda: mint(run),
        State.MINTED: lambda: distribute(run),  # its first commit is minted -> distributing
        State.DISTRIBUTING: lambda: distribute(run),
        State.DISTRIBUTED: lambda: validate(run, recheck=recheck),
        State.VALIDATING: lambda: validate(run, recheck=recheck),
    }
    while (phase := phases.get(run.job.status)) is not None:
        phase()
    return run.job


def _label(run: Run) -> str:
    return f"velvet-{run.job.job_id}"


def _announce_mint(run: Run, job: Job, label: str) -> None:
    """The intent to mint, committed with the move into minting (before any vendor call)."""
    open_new = ledger.latest(job, "new")
    if open_new is not None and open_new.life == Life.INTENDED:
        return
    ledger.add(job, "new", Life.INTENDED, run.e.now(), label=label, intent="mint")


def mint(run: Run) -> None:
    j = run.journal
    try:
        current = run.current()
        token_id, minted = _obtain(run, current)
    except (VendorError, InputError) as exc:
        token = run.entry("new")
        if token is not None and token.token_id in j.announced:
            j.withdraw(token.token_id)  # this run never reached the vendor's mint
        j.move(Outcome.FAILED, f"mint failed: {exc}")
        return
    new_fp = fingerprint(minted.value)
    if new_fp == fingerprint(current):
        j.move(Outcome.FAILED, "mint failed: the new value equals the current one")
        return

    def record(job: Job) -> None:
        job.new_auth_id = minted.auth_id
        job.new_fingerprint = new_fp

    j.settle(token_id, Life.HELD, auth_id=minted.auth_id, fingerprint=new_fp,
             held_by=[ledger.VAULT_PENDING])
    # Committed with distribution's first write, which comes before any consumer write.
    j.move(Outcome.OK, "new value in the vault's pending slot",
           data={"new_auth_id": minted.auth_id, "new_fingerprint": new_fp},
           mutate=record, defer=True)


def _open_intent(run: Run) -> str:
    """The ledger entry this mint fulfils: the one announced on entering minting."""
    token = run.entry("new")
    if token is not None and token.life in (Life.INTENDED, Life.MINTED):
        return token.token_id
    return run.journal.intend("new", "mint", label=_label(run))


def _obtain(run: Run, current: SecretStr) -> tuple[str, Minted]:
    """A new value in the vault's pending slot, issuing at most one value per intent.

    A resume reconciles first: the pending slot (the value got there), then the vendor (a
    token under this job's label whose value a crash lost: regenerated in place, or revoked and
    minted anew where the vendor cannot regenerate).
    """
    j = run.journal
    j.hold()
    token_id = _open_intent(run)
    own = run.own_pending()
    if own is not None:
        run.log.info("resuming with the value already in the pending slot")
        return token_id, Minted(own.auth_id, own.value)
    if not run.vendor.CAN_MINT:
        return token_id, _claim_manual(run)
    label = _label(run)
    lost = run.call(lambda: run.vendor.find_minted(current, label))
    if lost is not None:
        token_id, minted = _replace_lost(run, current, token_id, lost)
    else:
        minted = _mint_once(run, current, token_id)
    redact.register(minted.value)
    run.crash("after_mint")
    try:
        run.call(lambda: run.vault.set_pending(minted.value, job_id=run.job.job_id,
                                               auth_id=minted.auth_id))
    except VendorError:
        # The vendor issued it and the vault refused it: kill it while we still hold it.
        _discard(run, token_id, minted, current)
        raise
    run.crash("after_vault_write")
    return token_id, minted


def _mint_once(run: Run, current: SecretStr, token_id: str) -> Minted:
    """The vendor's mint under an announced intent. A refusal issued nothing (the intent is
    withdrawn); an outage may have issued a token, which a resume or abort finds by label."""
    try:
        return run.vendor.mint(current, _label(run))
    except VendorUnavailable:
        run.journal.announced.discard(token_id)
        raise


def _claim_manual(run: Run) -> Minted:
    """Vendors that cannot mint: a person put the value in the pending slot."""
    pending = run.call(run.vault.pending)
    if pending is None or pending.job_id is not None:
        raise InputError(f"{run.cred.vendor} cannot mint by API: create the new value "
                         f"at the vendor, store it in {run.vault.describe()}__PENDING, "
                         "then run proceed_mint again")
    redact.register(pending.value)
    identity = run.call(lambda: run.vendor.verify(pending.value))
    minted = Minted(identity.auth_id, pending.value)
    run.call(lambda: run.vault.set_pending(minted.value, job_id=run.job.job_id,
                                           auth_id=minted.auth_id))
    return minted


def _replace_lost(run: Run, current: SecretStr, token_id: str,
                  lost_id: str) -> tuple[str, Minted]:
    """A token this job minted whose value never reached the vault: replace it, ledgered."""
    j = run.journal
    run.log.info("a credential labelled %s exists and its value was lost: replacing it",
                 _label(run))
    j.settle(token_id, Life.MINTED, auth_id=lost_id,
             evidence="minted before a crash; its value never reached the vault")
    if run.vendor.CAN_REGENERATE:
        j.kill(token_id, "regenerate", commit=False)
        fresh = j.intend("new", "regenerate", label=_label(run), auth_id=lost_id)
        minted = run.vendor.recover_minted(current, lost_id, _label(run))
        # The vendor replaced the value in place: every earlier value of that id is dead.
        for token in list(run.job.ledger):
            if (token.role == "new" and token.auth_id == lost_id and token.token_id != fresh
                    and token.life in ledger.LIVE):
                j.settle(token.token_id, Life.PROVEN_DEAD,
                         evidence=f"regenerated in place: auth id {lost_id} has a new value")
        return fresh, minted
    j.kill(token_id)
    run.call(lambda: run.vendor.revoke(lost_id, using=current, value=current))
    lost = j.token(token_id)
    proof = run.prove_dead(lost, None, using=current)
    j.settle(token_id, Life.PROVEN_DEAD if proof.dead else Life.DEBT, evidence=proof.evidence)
    fresh = j.intend("new", "mint", label=_label(run))
    return fresh, _mint_once(run, current, fresh)


def _discard(run: Run, token_id: str, minted: Minted, current: SecretStr) -> None:
    """Revoke a value that could not be stored; debt when that cannot be proven."""
    j = run.journal
    j.settle(token_id, Life.MINTED, auth_id=minted.auth_id,
             fingerprint=fingerprint(minted.value), defer=True)
    j.kill(token_id)
    evidence = "the vault refused the new value"
    try:
        if run.vendor.CAN_REVOKE and minted.auth_id is not None:
            auth_id = minted.auth_id
            run.call(lambda: run.vendor.revoke(auth_id, using=current, value=minted.value))
        proof = run.prove_dead(j.token(token_id), minted.value)
    except VendorError as exc:
        j.settle(token_id, Life.DEBT, evidence=f"{evidence}; revoking it failed: {exc}")
        return
    j.settle(token_id, Life.PROVEN_DEAD if proof.dead else Life.DEBT,
             evidence=f"{evidence}; {proof.evidence}")


def _value_or_fail(run: Run, waiting: State, entering: str, phase: str) -> SecretStr | None:
    """The new value; or None, the phase entered (from `waiting`) and failed on the job."""
    try:
        return run.new_value()
    except (VendorError, InputError) as exc:
        if run.job.status == waiting:
            run.journal.move(Outcome.OK, entering, defer=True)
        run.journal.move(Outcome.FAILED, f"{phase} failed: {exc}")
        return None


def distribute(run: Run) -> None:
    j = run.journal
    value = _value_or_fail(run, State.MINTED, "fanning out to consumers", "distribute")
    if value is None:
        return
    todo = run.rows(lambda r: r.distribute_status not in DONE_ROW)
    # What each row held before this attempt: a write the target refused outright (4xx)
    # changed nothing, so the row still holds that; rollback need not touch it.
    before = {row.consumer_id: row.holds for row, _ in todo}
    for row, _ in todo:
        j.set_row(row.consumer_id, distribute_status=RowStatus.IN_PROGRESS, holds="unknown",
                  detail=None)
    # Rows are marked in flight in the same commit that enters distributing, before any
    # consumer is written (rollback after a crash needs to know who may hold the value).
    if run.job.status == State.MINTED:
        j.move(Outcome.OK, "fanning out to consumers")
    else:
        j.flush_rows()
    run.crash("distribute_start")
    written = [0]

    def write(consumer: Consumer) -> tuple[RowStatus, str, Holds]:
        target = run.target(consumer)
        hint = getattr(target, "backoff_hint", None)
        try:
            run.retry(hint).run(lambda: target.write(value))
        except VendorError as exc:
            # 5xx/timeouts may have been applied; refusals (401/403/404/422/429) were not.
            holds: Holds = ("unknown" if isinstance(exc, VendorUnavailable)
                            else before.get(consumer.consumer_id, "unknown"))
            return RowStatus.FAILED, str(exc), holds
        with j.lock:
            written[0] += 1
            if written[0] == 1:
                run.crash("mid_distribute")
        return RowStatus.SUCCEEDED, "written", "new"

    def done(consumer: Consumer, result: tuple[RowStatus, str, Holds]) -> None:
        status, detail, holds = result
        with j.lock:
            row = j.row(consumer.consumer_id)
            attempts = row.attempts + 1 if row else 1
        j.set_row(consumer.consumer_id, distribute_status=status, detail=detail, holds=holds,
                  attempts=attempts)

    fan_out(run, [c for _, c in todo], write, done,
            lambda reason: (RowStatus.FAILED, reason, "unknown"), what="distributing")
    run.crash("after_distribute")
    result = outcome(r.distribute_status for r in run.job.consumers)
    failed = [r.consumer_id for r in run.job.consumers if r.distribute_status == RowStatus.FAILED]
    # Ok: committed with validation's first write (checks change nothing anywhere).
    j.move(result, f"distribution {result}" + (f"; failed: {', '.join(failed)}" if failed
                                                else ""),
           defer=result == Outcome.OK)


def validate(run: Run, *, recheck: bool = False) -> None:
    j = run.journal
    value = _value_or_fail(run, State.DISTRIBUTED, "validating consumers", "validation")
    if value is None:
        return
    for row in run.job.consumers:
        if row.distribute_status == RowStatus.SKIPPED:
            j.set_row(row.consumer_id, validate_status=RowStatus.SKIPPED)
    redo = {RowStatus.PENDING, RowStatus.IN_PROGRESS, RowStatus.FAILED}
    if recheck:
        redo.add(RowStatus.MANUAL_REQUIRED)
    todo = run.rows(lambda r: r.validate_status in redo)
    check_rows(run, todo, value, "live", settle=True)
    result = outcome(r.validate_status for r in run.job.consumers)
    pending = [r.consumer_id for r in run.job.consumers if r.validate_status not in DONE_ROW]
    j.move(result, f"validation {result}" + (f"; not validated: {', '.join(pending)}"
                                              if pending else ""))


def check_rows(run: Run, todo: list[tuple[ConsumerRow, Consumer]], value: SecretStr | None,
               expect: Expect, *, settle: bool, crash_point: str | None = None) -> None:
    j = run.journal
    checker = run.wiring.checker()
    for row, _ in todo:
        j.set_row(row.consumer_id, validate_status=RowStatus.IN_PROGRESS)
    if run.job.status == State.DISTRIBUTED:
        j.move(Outcome.OK, "validating consumers")  # with the rows marked in flight
    else:
        j.flush_rows()
    checked = [0]

    def check(consumer: Consumer) -> CheckResult:
        target = run.target(consumer)
        if settle:
            return checker.check(consumer, target, value, expect)
        return checker.check_once(consumer, target, value, expect)

    def done(consumer: Consumer, result: CheckResult) -> None:
        j.set_row(consumer.consumer_id, detail=result.detail, validate_status=result.status)
        checked[0] += 1
        if checked[0] == 1 and crash_point is not None:
            j.flush_rows()
            run.crash(crash_point)

    fan_out(run, [c for _, c in todo], check, done,
            lambda reason: CheckResult(RowStatus.FAILED, reason),
            what="checking" if settle else "re-checking",
            settle=checker.settle_seconds if settle else None)


# --- stage 3: revoke -------------------------------------------------------------------


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
                       f"then {_next(run, 'mark_manually_revoked --ticket T')}")
    auth_id = run.job.old_auth_id
    try:
        revoked_now = run.call(lambda: run.vendor.revoke(auth_id, using=new, value=current))
    except VendorError as exc:
        return _failed(run, old_id, f"revoke failed: {exc} (old_auth_id {auth_id}); "
                       f"{_next(run, 'retry_revoke')}")
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
        return _failed(run, old_id, f"revoke check failed: {exc}; {_next(run, 'retry_revoke')}")
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
                f"in the vendor's dashboard, then {_next(run, 'mark_manually_revoked --ticket T')}")
    if not run.vendor.CAN_REVOKE:
        return (f"manual_required: {name} cannot revoke by API and {evidence}; delete the old "
                f"token in the vendor's dashboard, then {_next(run, 'retry_revoke')} (or "
                "mark_manually_revoked --ticket T once it is refused)")
    if said.startswith("already revoked"):
        return (f"revoke not proven: the vendor says it has no auth id {run.job.old_auth_id} "
                f"(404), but {evidence}: the vault's "
                f"{run.vault.describe()}__AUTH_ID is probably stale. Revoke the old token at "
                f"{name} by hand, then {_next(run, 'mark_manually_revoked --ticket T')}")
    return (f"revoke not proven: {said}, but {evidence}; "
            f"{_next(run, 'retry_revoke')}, or revoke it at {name} by hand and "
            "mark_manually_revoked --ticket T")


def _failed(run: Run, old_id: str, detail: str) -> Job:
    """revoke_failed: the old value stays the vault's current value (nothing was promoted)."""
    def back(job: Job) -> None:
        old = job.token(old_id)
        if old is not None and old.life == Life.REVOKING:
            ledger.set_life(old, Life.CURRENT, run.e.now())

    return run.journal.move(Outcome.FAILED, detail, mutate=back)


def _next(run: Run, action: str) -> str:
    return f"velvet stage {run.job.job_id} {action}"


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
