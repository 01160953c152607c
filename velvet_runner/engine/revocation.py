"""The emergency revocation flow: kill the value at the vendor, then expect every consumer
to be locked out; a consumer that still accepts it is a SEV1 (`rev_leaked`).

The roll (or revoke) is announced in the ledger with the move into `rev_revoking`; a resumed
run reads the vault and the vendor to learn whether it happened, and a rolled value that never
reached the vault is revocation debt, never a silent `rev_done`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from pydantic import SecretStr

from velvet_runner import ledger, redact
from velvet_runner.errors import (
    AuthRejected,
    InputError,
    LeakStillOpen,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)
from velvet_runner.machine import Action, Outcome, State
from velvet_runner.records import Job, Life, RowStatus, Token, fingerprint

from .context import Args, Run
from .operational import check_rows
from .proof import REPROBE_SECONDS, Proof, confirm, name, prove
from .recovery import _ticket, manual_proof

INACTIVE = "active: false in the manifest"


def revoke(run: Run, act: Action, args: Args) -> Job:
    j = run.journal
    resumed = run.job.status == State.REV_REVOKING
    if run.job.status in (State.REV_INIT, State.REV_REVOKE_FAILED):
        run.gate(act)
        try:
            current = run.current()
        except (VendorError, InputError) as exc:
            j.move(act, "revoking at the vendor")
            return j.move(Outcome.FAILED, f"revoke failed: {exc}")
        auth_id = _auth_id(run, current)
        ticket = args.ticket.strip() if args.ticket and args.ticket.strip() else None

        def announce(job: Job) -> None:
            job.ticket = ticket or job.ticket  # the incident's, for the evidence
            _announce(run, job, current, auth_id)

        j.move(act, "revoking at the vendor" + (f" (ticket {ticket})" if ticket else ""),
               data={"ticket": ticket} if ticket else None, mutate=announce)
    return _continue(run, resumed=resumed)


def _auth_id(run: Run, current: SecretStr) -> str | None:
    """The vault's NAME__AUTH_ID, or what the vendor says the value is (an AWS key id)."""
    auth_id = run.vault_auth_id()
    if auth_id is None:
        try:
            auth_id = run.call(lambda: run.vendor.verify(current)).auth_id
        except VendorError:
            return None
    return auth_id


def _continue(run: Run, *, resumed: bool) -> Job:
    phases: dict[State, Callable[[], object]] = {
        State.REV_REVOKING: lambda: emergency_revoke(run, resumed=resumed),
        State.REV_REVOKED: lambda: run.journal.move(Outcome.OK,
                                                    "checking every consumer is locked out"),
        State.REV_VALIDATING: lambda: lockout_checks(run),
    }
    while (phase := phases.get(run.job.status)) is not None:
        phase()
    return run.job


def _announce(run: Run, job: Job, current: SecretStr, auth_id: str | None, *,
              reopen: str | None = None) -> None:
    """The intent to kill the value in the vault, committed before the vendor is called.
    A value recorded as proven dead is announced again only with `reopen` (why that proof
    did not hold)."""
    at, fp = run.now(), fingerprint(current)
    old = job.newest("old")
    if old is None:
        old = ledger.add(job, "old", Life.CURRENT, at, auth_id=auth_id, fingerprint=fp,
                         held_by=[ledger.VAULT_CURRENT])
    if old.life == Life.PROVEN_DEAD and reopen is None:
        return  # dead already (a lost roll): the retry only settles what is left
    rolls = run.vendor.CAN_ROLL
    ledger.set_life(old, Life.REVOKING, at, evidence=reopen)
    old.intent = "roll" if rolls else "revoke"
    rolled = job.newest("rolled")
    if rolls and (rolled is None or rolled.life != Life.INTENDED):
        ledger.add(job, "rolled", Life.INTENDED, at, auth_id=auth_id, intent="roll")


def emergency_revoke(run: Run, *, resumed: bool) -> None:
    j = run.journal
    j.hold()
    try:
        current = run.current()
    except (VendorError, InputError) as exc:
        j.move(Outcome.FAILED, f"revoke failed: {exc}")
        return
    old = run.entry("old")
    if old is None:  # a record from before the ledger: announce now
        auth_id = run.vault_auth_id()
        j.change(lambda job: _announce(run, job, current, auth_id))
        old = run.entry("old")
    assert old is not None  # noqa: S101 - announced above
    if old.fingerprint != fingerprint(current):
        _vault_moved_on(run, current)
        return
    if old.life == Life.PROVEN_DEAD:
        # The vault still holds the value the record calls dead: proven again, now.
        try:
            again = prove(run, old, current)
        except VendorError as exc:
            j.move(Outcome.FAILED,
                   f"revoke check failed: {exc}; {run.command(Action.RETRY_REVOKE)}")
            return
        if again.dead:
            j.move(Outcome.FAILED, f"the vault still holds the revoked value: put a fresh value"
                   f" in {run.vault.describe()} (regenerate auth id {old.auth_id} at "
                   f"{run.cred.vendor}), then {run.command(Action.RETRY_REVOKE)}")
            return
        auth = old.auth_id
        j.change(lambda job: _announce(run, job, current, auth, reopen=(
            f"recorded as proven dead, but {again.evidence}")))
        old = j.token(old.token_id)
    rolled = run.entry("rolled")
    auth_id = old.auth_id
    try:
        if run.vendor.CAN_ROLL:
            detail = _roll(run, current, auth_id, resumed=resumed,
                           rolled_id=rolled.token_id if rolled else None)
            if detail is None:
                return  # the rolled value was lost or could not be stored: failed, recorded
        elif run.vendor.CAN_REVOKE:
            run.call(lambda: run.vendor.revoke(auth_id, using=current, value=current))
            run.crash("after_roll")
            detail = "revoked at the vendor"
        else:
            detail = "the vendor cannot revoke by API"
        proof = prove(run, j.token(old.token_id), current)
    except (VendorError, InputError) as exc:
        _back_to_current(run, old.token_id, current)
        j.move(Outcome.FAILED, f"revoke failed: {exc}")
        return
    if not proof.dead:
        _back_to_current(run, old.token_id, current)
        what = ("manual_required: " + run.cred.vendor + " cannot revoke by API; delete the "
                "token in the vendor's dashboard, then " + run.command(Action.RETRY_REVOKE)
                if not run.vendor.CAN_REVOKE and not run.vendor.CAN_ROLL
                else f"revoke not proven: {proof.evidence}; {run.command(Action.RETRY_REVOKE)}")
        if not proof.probed:
            what = (f"manual_required: {proof.evidence}; revoke it in the vendor's dashboard, "
                    f"then {run.command(Action.MARK_MANUALLY_REVOKED, ticket='T')}")
        j.move(Outcome.FAILED, what)
        return
    j.settle(old.token_id, Life.PROVEN_DEAD, evidence=proof.evidence)
    _settle_unknown_rolls(run)
    _revoked(run, f"{detail}; {proof.evidence}")


def _settle_unknown_rolls(run: Run) -> None:
    """Rolls of this job whose answers never came: the roll that just succeeded replaced any
    value they made, which the vendor proves by accepting the vault's newer value."""
    for token in [t for t in run.job.ledger if t.role == "rolled" and t.life == Life.DEBT
                  and t.fingerprint is None]:
        try:
            proof = prove(run, token)
        except VendorError as exc:  # stays debt, listed; the emergency itself is done
            run.log.warning("could not prove %s dead: %s", name(token), exc)
            continue
        if proof.dead:
            run.journal.settle(token.token_id, Life.PROVEN_DEAD, evidence=proof.evidence)


def _revoked(run: Run, detail: str) -> None:
    """The value the emergency is about is dead: kill what the preempted job left live too,
    then move on to the lockout checks; or fail naming what still lives."""
    alive = kill_preempted(run)
    if alive:
        run.journal.move(Outcome.FAILED, f"{detail}; but the preempted job's "
                         + "; ".join(alive) + f"; {run.command(Action.RETRY_REVOKE)}")
        return
    run.journal.move(Outcome.OK, detail)


def kill_preempted(run: Run) -> list[str]:
    """Revoke and prove dead every token the preempted job left live (it minted them before the
    emergency was declared); what could not be killed, one line each."""
    j = run.journal
    todo = [t for t in run.job.ledger if t.role == "preempted" and t.life in ledger.LIVE]
    if not todo:
        return []
    using = run.read_current()
    alive = []
    for token in todo:
        value = run.value_of(token)
        j.kill(token.token_id)
        auth_id = token.auth_id
        try:
            if run.vendor.CAN_REVOKE and auth_id is not None and using is not None:
                run.call(partial(run.vendor.revoke, auth_id, using=using,
                                 value=value or using))
            proof = prove(run, j.token(token.token_id), value, using=using)
        except VendorError as exc:
            j.settle(token.token_id, Life.DEBT, evidence=f"revoke failed: {exc}")
            alive.append(f"{name(token)} is not revoked: {exc}")
            continue
        if not proof.dead:
            j.settle(token.token_id, Life.DEBT, evidence=proof.evidence)
            alive.append(f"{name(token)}: {proof.evidence}")
            continue
        j.settle(token.token_id, Life.PROVEN_DEAD, evidence=proof.evidence)
        if value is not None:
            _clear_pending_of(run, token)
        if token.from_job is not None:
            run.settle_elsewhere(token.from_job, token, proof.evidence)
    return alive


def _clear_pending_of(run: Run, token: Token) -> None:
    """The preempted job's value sat in the vault's pending slot: it is dead now, so clear it."""
    try:
        pending = run.call(run.vault.pending)
        if pending is not None and fingerprint(pending.value) == token.fingerprint:
            run.call(run.vault.clear_pending)
    except VendorError as exc:
        run.log.warning("could not clear the vault's pending slot: %s", exc)


def _roll(run: Run, current: SecretStr, auth_id: str | None, *, resumed: bool,
          rolled_id: str | None) -> str | None:
    """Roll the value in place; the rolled value goes to the vault. None: the roll happened
    and its value could not be kept (lost to a crash, or refused by the vault): recorded, the
    job failed."""
    j = run.journal
    try:
        rolled = run.vendor.roll(auth_id, current)
    except AuthRejected:
        # The vendor refuses the value we authenticate with. The old value may be dead
        # already: killed out of band, or by a roll of ours whose value a crash lost.
        if run.call(lambda: run.vendor.is_live(current)):
            raise
        unanswered = [t for t in run.job.ledger if t.role == "rolled" and t.life == Life.DEBT
                      and t.fingerprint is None and t.auth_id == auth_id]
        if unanswered:
            # An earlier roll whose answer never came was performed after all: its value is
            # the one lost. This attempt issued nothing.
            lost = unanswered[-1].token_id
            if rolled_id is not None and rolled_id != lost:
                j.settle(rolled_id, Life.PROVEN_DEAD, evidence="never issued: the vendor "
                         "refused the roll, an earlier one having rolled the value already")
            _lost_roll(run, lost, auth_id)
            return None
        if resumed and rolled_id is not None:
            _lost_roll(run, rolled_id, auth_id)
            return None
        if rolled_id is not None:
            j.settle(rolled_id, Life.PROVEN_DEAD, evidence="never issued: the vendor refused "
                     "the roll because the value was already dead")
        return ("the old value is already refused by the vendor; the vault still holds it, "
                "so put a fresh value there by hand")
    except VendorUnavailable as exc:
        # An outage may have rolled it anyway: then the old value is dead and the new one lost.
        if rolled_id is not None and not run.call(lambda: run.vendor.is_live(current)):
            _lost_roll(run, rolled_id, auth_id)
            return None
        if rolled_id is not None:
            # The old value still works, but a request that timed out may yet be performed:
            # debt by the id until this job's next roll of it ends every earlier value.
            run.journal.settle(rolled_id, Life.DEBT, auth_id=auth_id, evidence=(
                f"the roll's answer never came ({exc}): the vendor may still roll auth id "
                f"{auth_id}, leaving it a value no one holds; retry_revoke rolls it again"))
        raise
    redact.register(rolled.value)
    run.crash("after_roll")
    new_auth = rolled.auth_id or auth_id
    if not _works(run, rolled.value):
        # Acknowledged, and the value it returned is refused: the roll did not take. Nothing
        # reaches the vault; the old value is what the vault must keep naming.
        if rolled_id is not None:
            j.settle(rolled_id, Life.PROVEN_DEAD, auth_id=new_auth,
                     fingerprint=fingerprint(rolled.value), evidence=(
                         "the value the vendor's roll returned is refused: the roll did not "
                         "take"))
        raise VendorRejected("the vendor acknowledged the roll, but the value it returned is "
                             "refused")
    try:
        # The rolled value exists only in this process until the vault holds it: be patient.
        run.retry(patient=True).run(lambda: run.vault.set_current(rolled.value, new_auth))
    except VendorError as exc:
        _unstorable_roll(run, rolled_id, rolled.value, new_auth, current, exc)
        return None
    run.crash("after_vault_write")
    _settle_rolled(run, rolled.value, new_auth)
    return "rolled at the vendor: the old value is dead"


def _works(run: Run, value: SecretStr) -> bool:
    """Whether the vendor accepts `value`: accepted once, or refused twice a moment apart (a
    fresh value refused once may be a blip, and a live value must never be thrown away)."""
    if run.call(lambda: run.vendor.is_live(value)):
        return True
    run.wiring.sleep(REPROBE_SECONDS)
    return bool(run.call(lambda: run.vendor.is_live(value)))


def _unstorable_roll(run: Run, rolled_id: str | None, value: SecretStr, auth_id: str | None,
                     current: SecretStr, refused: VendorError) -> None:
    """The vendor rolled the value and the vault would not take the new one. A live value
    nobody holds must not outlive this process: it is revoked while it is still in hand."""
    j = run.journal
    token_id = rolled_id or j.intend("rolled", "roll", auth_id=auth_id)
    j.settle(token_id, Life.MINTED, auth_id=auth_id, fingerprint=fingerprint(value),
             defer=False)
    j.kill(token_id)
    why = f"the vault could not store the rolled value ({refused})"
    try:
        if auth_id is not None:
            run.call(lambda: run.vendor.revoke(auth_id, using=value, value=value))
        proof = prove(run, j.token(token_id), value)
    except VendorError as exc:
        proof = Proof("unknown", f"revoking it failed: {exc}")
    if proof.dead:
        j.settle(token_id, Life.PROVEN_DEAD, evidence=f"{why}; revoked: {proof.evidence}")
        fate = f"so it was revoked too ({proof.evidence})"
    else:
        j.settle(token_id, Life.DEBT, evidence=f"{why}; {proof.evidence}")
        fate = (f"and it could not be revoked ({proof.evidence}): delete auth id {auth_id} at "
                f"{run.cred.vendor} by hand")
    old = run.entry("old")
    if old is not None:
        try:
            dead = prove(run, old, current)
        except VendorError:
            dead = Proof("unknown", "")
        if dead.dead:
            j.settle(old.token_id, Life.PROVEN_DEAD, evidence=dead.evidence)
    j.move(Outcome.FAILED, f"revoke incomplete: the old value is dead, but {why}, {fate}. "
           f"{run.cred.name} has no live value now: create one at {run.cred.vendor}, put it "
           f"in {run.vault.describe()} (and its id in __AUTH_ID), then "
           f"{run.command(Action.RETRY_REVOKE)}")


def _vault_moved_on(run: Run, current: SecretStr) -> None:
    """The vault no longer holds the old value: the roll's value reached it before a crash,
    or (after a lost roll) the operator stored a fresh one. Settle what that proves."""
    j = run.journal
    old, rolled = run.entry("old"), run.entry("rolled")
    assert old is not None  # noqa: S101 - the caller read it
    vault_auth = run.vault_auth_id()
    try:
        works = run.call(lambda: run.vendor.is_live(current))
    except VendorError as exc:
        j.move(Outcome.FAILED, f"revoke check failed: {exc}; {run.command(Action.RETRY_REVOKE)}")
        return
    if not works:
        # Nothing proves the old value dead by a value that is dead itself, and the credential
        # has no working value: a person puts one there first.
        j.move(Outcome.FAILED, f"the vault holds a new value, but {run.cred.vendor} refuses it "
               f"too: put a working value in {run.vault.describe()} (and its id in __AUTH_ID), "
               f"then {run.command(Action.RETRY_REVOKE)}")
        return
    for token in (old, rolled):
        if token is None or token.life not in (Life.REVOKING, Life.DEBT, Life.CURRENT):
            continue
        if token.fingerprint == fingerprint(current):
            continue  # the vault's value itself (a roll that reached it)
        if token.fingerprint is None and token.auth_id is not None \
                and token.auth_id == vault_auth:
            proof_text = f"replaced in place: auth id {token.auth_id} now has the vault's value"
        else:
            try:
                proof = prove(run, token, None, using=current)
            except VendorError as exc:
                j.move(Outcome.FAILED,
                       f"revoke check failed: {exc}; {run.command(Action.RETRY_REVOKE)}")
                return
            if not proof.dead:
                j.move(Outcome.FAILED, f"the vault holds a new value but {proof.evidence}; "
                       f"revoke it at {run.cred.vendor}, then {run.command(Action.RETRY_REVOKE)}")
                return
            proof_text = proof.evidence
        j.settle(token.token_id, Life.PROVEN_DEAD, evidence=proof_text)
    if rolled is not None and rolled.life == Life.INTENDED:
        _settle_rolled(run, current, vault_auth)
    else:
        fp = fingerprint(current)

        def adopt(job: Job) -> None:
            if not any(t.fingerprint == fp for t in job.ledger):
                ledger.add(job, "rolled", Life.CURRENT, run.now(), auth_id=vault_auth,
                           fingerprint=fp, held_by=[ledger.VAULT_CURRENT])

        j.change(adopt, defer=True)
    _revoked(run, "the old value is dead at the vendor; the vault holds a new value")


def _settle_rolled(run: Run, value: SecretStr, auth_id: str | None = None) -> None:
    rolled = run.entry("rolled")
    if rolled is None or rolled.life not in (Life.INTENDED, Life.MINTED):
        return
    run.journal.settle(rolled.token_id, Life.CURRENT, fingerprint=fingerprint(value),
                       held_by=[ledger.VAULT_CURRENT], auth_id=auth_id or rolled.auth_id)


def _lost_roll(run: Run, rolled_id: str, auth_id: str | None) -> None:
    j = run.journal
    old = run.entry("old")
    lost = (f"the roll of auth id {auth_id} happened and its new value was lost: that "
            "authorization is live with a value that no vault or consumer holds")
    j.settle(rolled_id, Life.DEBT, evidence=lost)
    if old is not None:
        j.settle(old.token_id, Life.PROVEN_DEAD, evidence="the vendor refuses the old value")
    j.move(Outcome.FAILED, f"revoke incomplete: {lost}. Regenerate (or delete) auth id "
           f"{auth_id} at {run.cred.vendor}, put the new value in {run.vault.describe()}, then "
           f"{run.command(Action.RETRY_REVOKE)}")


def _back_to_current(run: Run, old_id: str, current: SecretStr) -> None:
    """The kill did not happen (or is not proven): the value is still the vault's current.
    A roll announced for it was never issued: the old value still works, which a roll would
    have ended."""
    j = run.journal
    if j.token(old_id).life == Life.REVOKING:
        j.settle(old_id, Life.CURRENT)
    rolled = run.entry("rolled")
    if rolled is not None and rolled.life == Life.INTENDED:
        try:
            still = run.call(lambda: run.vendor.is_live(current))
        except VendorError:
            still = False
        if still:
            j.settle(rolled.token_id, Life.PROVEN_DEAD,
                     evidence="never issued: the old value still works, so no roll happened")


def mark_manually_revoked(run: Run, act: Action, args: Args) -> Job:
    ticket = _ticket(args, act)
    current = run.current()
    old = run.entry("old")
    if old is None:
        auth_id = run.vault_auth_id()
        run.journal.change(lambda job: _announce(run, job, current, auth_id))
        old = run.entry("old")
    assert old is not None  # noqa: S101 - announced above
    value = current if old.fingerprint == fingerprint(current) else None
    life, evidence = manual_proof(run, old.token_id, value, ticket, args)
    old_id = old.token_id

    def record(job: Job) -> None:
        job.ticket = ticket
        token = job.token(old_id)
        if token is not None:
            ledger.set_life(token, life, run.now(), evidence=evidence)
        rolled = job.newest("rolled")
        if rolled is not None and rolled.life == Life.INTENDED:
            ledger.set_life(rolled, Life.PROVEN_DEAD, run.now(),
                            evidence="never issued: revoked by hand instead")

    run.journal.move(act, f"revoked by hand (ticket {ticket}): {evidence}",
                     data={"ticket": ticket, "evidence": evidence}, mutate=record)
    return _continue(run, resumed=False)


def lockout_checks(run: Run) -> None:
    j = run.journal
    todo = run.rows(lambda r: r.validate_status != RowStatus.SKIPPED or r.detail != INACTIVE)
    check_rows(run, todo, None, "revoked", settle=True)
    leaking = leaking_rows(run.job)
    if leaking:
        j.move(Outcome.FAILED, "SEV1: still accepting the revoked value: " + ", ".join(leaking),
               data={"leaking_consumers": leaking})
        return
    _done(run, lockout_detail(run.job))


def _done(run: Run, detail: str) -> Job:
    """rev_done, with the death of every value the emergency killed proven now; a value the
    vendor accepts again is a SEV1 (rev_leaked), named, with the retry."""
    j = run.journal
    alive: list[str] = []
    proofs: list[str] = []
    for token in run.job.ledger:
        if token.role not in ("old", "preempted") or token.life not in (
                *ledger.LIVE, Life.PROVEN_DEAD):
            continue
        try:
            # The lockout checks just showed every consumer refused: they hold it dead.
            proof = confirm(run, token, holders=[])
        except VendorError as exc:
            j.note("rev_done_deferred", f"could not prove {name(token)} dead: {exc}")
            raise VendorUnavailable(
                f"rev_done not claimed: {name(token)} could not be proven dead now ({exc}); "
                f"the job stays {run.job.status}: {run.command(Action.REVOKE)} again") from None
        if proof.dead:
            proofs.append(f"{name(token)}: {proof.evidence}")
            continue
        alive.append(f"{name(token)}: {proof.evidence}")
        if token.life == Life.PROVEN_DEAD:
            j.settle(token.token_id, Life.DEBT,
                     evidence=f"recorded as proven dead, but {proof.evidence}")
    if alive:
        return j.move(Outcome.FAILED, "SEV1: not proven dead at rev_done: " + "; ".join(alive)
                      + f"; revoke it at {run.cred.vendor} by hand, then "
                      + run.command(Action.CONFIRM_LEAK_RESOLVED), data={"not_proven": alive})
    return j.move(Outcome.OK, detail, data={"unchecked": unchecked(run.job),
                                             "proofs": proofs})


def unchecked(job: Job) -> list[str]:
    """Consumers no automatic check could prove locked out (manual or readback checks)."""
    return [r.consumer_id for r in job.consumers
            if r.validate_status in (RowStatus.MANUAL_REQUIRED, RowStatus.SKIPPED)
            and r.detail != INACTIVE]


def lockout_detail(job: Job) -> str:
    left = unchecked(job)
    if not left:
        return "every consumer is locked out"
    return "every checked consumer is locked out; verify by hand: " + ", ".join(left)


def leaking_rows(job: Job) -> list[str]:
    return [r.consumer_id for r in job.consumers if r.validate_status == RowStatus.FAILED]


def confirm_leak_resolved(run: Run, act: Action, args: Args) -> Job:
    j = run.journal
    todo = run.rows(lambda r: r.validate_status == RowStatus.FAILED)
    check_rows(run, todo, None, "revoked", settle=False)
    leaking = leaking_rows(run.job)
    if leaking:
        j.note("confirm_leak_resolved_refused", "still accepting the revoked value: "
               + ", ".join(leaking), {"leaking_consumers": leaking})
        raise LeakStillOpen(run.job, leaking)
    j.move(act, "re-checked: every consumer is locked out")
    return _done(run, lockout_detail(run.job))
