"""Minting under the ledger: at most one value issued per intent.

The intent to mint rides with the move into `minting`; a resumed mint reconciles it with the
vault's pending slot, then with the vendor (a token under this job's label whose value a crash
lost is regenerated in place, or revoked and minted anew where the vendor cannot regenerate).
"""

from __future__ import annotations

from pydantic import SecretStr

from velvet_runner import ledger, redact
from velvet_runner.errors import (
    InputError,
    NotFoundError,
    OrphanedPending,
    VendorError,
    VendorUnavailable,
)
from velvet_runner.machine import Action, Outcome
from velvet_runner.records import Job, Life, fingerprint
from velvet_runner.vault import Pending
from velvet_runner.vendors.base import Minted

from .context import Run
from .proof import prove


def mint_label(run: Run) -> str:
    return f"velvet-{run.job.job_id}"


def announce_mint(run: Run, job: Job, label: str) -> None:
    """The intent to mint, committed with the move into minting (before any vendor call)."""
    open_new = job.newest("new")
    if open_new is not None and open_new.life == Life.INTENDED:
        return
    ledger.add(job, "new", Life.INTENDED, run.now(), label=label, intent="mint")


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
    run.minted = minted.value
    j.settle(token_id, Life.HELD, auth_id=minted.auth_id, fingerprint=new_fp,
             held_by=[ledger.VAULT_PENDING])
    # Committed with distribution's first write, which comes before any consumer write.
    j.move(Outcome.OK, "new value in the vault's pending slot",
           data={"new_auth_id": minted.auth_id, "new_fingerprint": new_fp}, defer=True)


def _open_intent(run: Run) -> str:
    """The ledger entry this mint fulfils: the one announced on entering minting."""
    token = run.entry("new")
    if token is not None and token.life in (Life.INTENDED, Life.MINTED):
        return token.token_id
    return run.journal.intend("new", "mint", label=mint_label(run))


def _obtain(run: Run, current: SecretStr) -> tuple[str, Minted]:
    """A new value in the vault's pending slot, issuing at most one value per intent.

    A resume reconciles first: the pending slot (the value got there), then the vendor (a
    token under this job's label whose value a crash lost: regenerated in place, or revoked and
    minted anew where the vendor cannot regenerate).
    """
    j = run.journal
    j.hold()
    _finish_discards(run, current)
    token_id = _open_intent(run)
    pending = run.call(run.vault.pending)
    if pending is not None and pending.job_id == run.job.job_id:
        redact.register(pending.value)
        run.log.info("resuming with the value already in the pending slot")
        return token_id, Minted(pending.auth_id, pending.value)
    _refuse_orphaned(run, pending)
    if not run.vendor.CAN_MINT:
        return token_id, _claim_manual(run)
    label = mint_label(run)
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


def _refuse_orphaned(run: Run, pending: Pending | None) -> None:
    """The pending slot holds a value minted by a job the state branch does not know: the
    branch was rewritten (force-pushed, restored from an old copy) or lost that record. The
    slot is that job's only hold on a live token, so it is never overwritten."""
    if pending is None or pending.job_id is None or pending.job_id == run.job.job_id:
        return
    store = run.services.store
    try:
        store.find(pending.job_id)
    except NotFoundError:
        pass
    else:
        return
    slot = f"{run.vault.describe()}__PENDING"
    raise OrphanedPending(
        f"the vault's pending slot {slot} holds a value minted by job {pending.job_id} (auth id "
        f"{pending.auth_id}), which the state branch {store.branch} does not know: the "
        "branch was rewritten or lost that record, and this slot is the only hold on that "
        "token. Restore the branch from a clone that has the job (git push <clone's "
        f"{store.branch}> to the state repository), then run velvet stage "
        f"{pending.job_id} abort; or, if the record is gone for good, check which consumers "
        f"hold it, revoke auth id {pending.auth_id} at {run.cred.vendor}, clear {slot} and "
        f"{slot}_META, then {run.command(Action.PROCEED_MINT)}")


def _mint_once(run: Run, current: SecretStr, token_id: str) -> Minted:
    """The vendor's mint under an announced intent. A refusal issued nothing (the intent is
    withdrawn); an outage may have issued a token, which a resume or abort finds by label."""
    try:
        return run.vendor.mint(current, mint_label(run))
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
                 mint_label(run))
    j.settle(token_id, Life.MINTED, auth_id=lost_id,
             evidence="minted before a crash; its value never reached the vault")
    if run.vendor.CAN_REGENERATE:
        j.kill(token_id, "regenerate", commit=False)
        fresh = j.intend("new", "regenerate", label=mint_label(run), auth_id=lost_id)
        try:
            minted = run.vendor.recover_minted(current, lost_id, mint_label(run))
        except VendorUnavailable as exc:
            # The answer was lost, not the call: it may have regenerated, leaving auth id
            # lost_id with a value nobody holds. Debt by that id until a resume regenerates it
            # again (which ends every earlier value of the id) or a rollback revokes it.
            j.announced.discard(fresh)
            j.settle(fresh, Life.DEBT, evidence=f"the regenerate's answer was lost ({exc}): "
                     f"auth id {lost_id} may carry a value no one holds")
            raise
        run.crash("after_regenerate")
        # The vendor replaced the value in place: every earlier value of that id is dead.
        for token in list(run.job.ledger):
            if (token.role == "new" and token.auth_id == lost_id and token.token_id != fresh
                    and token.life in ledger.LIVE):
                j.settle(token.token_id, Life.PROVEN_DEAD,
                         evidence=f"regenerated in place: auth id {lost_id} has a new value")
        return fresh, minted
    j.kill(token_id)
    _revoke_by_id(run, lost_id, current, current)
    lost = j.token(token_id)
    proof = prove(run, lost, None, using=current)
    j.settle(token_id, Life.PROVEN_DEAD if proof.dead else Life.DEBT, evidence=proof.evidence)
    fresh = j.intend("new", "mint", label=mint_label(run))
    return fresh, _mint_once(run, current, fresh)


def _discard(run: Run, token_id: str, minted: Minted, current: SecretStr) -> None:
    """Revoke a value that could not be stored; debt when that cannot be proven."""
    j = run.journal
    j.settle(token_id, Life.MINTED, auth_id=minted.auth_id,
             fingerprint=fingerprint(minted.value), defer=True)
    j.kill(token_id)
    _revoke_and_prove(run, token_id, minted.auth_id, minted.value, current,
                      "the vault refused the new value", crash_point="after_discard")


def _finish_discards(run: Run, current: SecretStr) -> None:
    """A discard a crash cut short: its revoke intent is on the branch, its value is gone. The
    revoke is repeated by id (idempotent) and proven by the vendor no longer having the id."""
    for token in [t for t in run.job.ledger
                  if t.role == "new" and t.life == Life.REVOKING and t.intent == "revoke"]:
        _revoke_and_prove(run, token.token_id, token.auth_id, None, current,
                          "a discard cut short by a crash")


def _revoke_and_prove(run: Run, token_id: str, auth_id: str | None, value: SecretStr | None,
                      current: SecretStr, evidence: str, *, crash_point: str | None = None) -> None:
    """Revoke a token whose revoke intent is committed, then settle what the vendor proves:
    dead, or debt (the revoke failed, or nothing could prove it)."""
    j = run.journal
    try:
        if run.vendor.CAN_REVOKE and auth_id is not None:
            _revoke_by_id(run, auth_id, current, value or current)
            if crash_point is not None:
                run.crash(crash_point)
        proof = prove(run, j.token(token_id), value, using=current)
    except VendorError as exc:
        j.settle(token_id, Life.DEBT, evidence=f"{evidence}; revoking it failed: {exc}")
        return
    j.settle(token_id, Life.PROVEN_DEAD if proof.dead else Life.DEBT,
             evidence=f"{evidence}; {proof.evidence}")


def _revoke_by_id(run: Run, auth_id: str, current: SecretStr, value: SecretStr) -> None:
    run.call(lambda: run.vendor.revoke(auth_id, using=current, value=value))
