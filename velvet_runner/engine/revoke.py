"""Stage 3 of the operational flow: re-check every consumer, revoke the old value, prove it
dead at the vendor, then promote the vault."""

from __future__ import annotations

from pydantic import SecretStr

from velvet_runner import ledger
from velvet_runner.checks import CheckResult
from velvet_runner.errors import BadArgument, GateRefused, InputError, VendorError
from velvet_runner.machine import Action, Outcome, State
from velvet_runner.manifest import Consumer
from velvet_runner.records import DONE_ROW, Job, Life, RowStatus, Token, fingerprint

from . import precheck
from .context import Args, Run
from .fanout import fan_out
from .operational import check_rows, outcome, shown_write
from .proof import confirm, prove


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
        precheck.before_revoke(run, args)  # who else holds or still uses the old value
        value = run.new_value()
        # A re-check interrupted by a crash left its rows in flight: they are re-checked too.
        rechecked = {RowStatus.SUCCEEDED, RowStatus.IN_PROGRESS}
        todo = run.rows(lambda r: r.validate_status in rechecked)
        check_rows(run, todo, value, "live", settle=False, crash_point="recheck",
                   readback=True)
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
        old_id = run.ensure_old(current)

        def record(job: Job) -> None:
            job.ticket = ticket.strip() if ticket else None
            old = job.token(old_id)
            if old is not None and old.life != Life.PROVEN_DEAD:
                ledger.set_life(old, Life.REVOKING, run.now())
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
                ledger.set_life(token, Life.REVOKING, run.now())
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
    old_id = run.ensure_old(current)
    if fingerprint(current) == run.job.new_fingerprint:
        # Promoted before a crash: the old value is no longer in the vault, so its death is
        # confirmed by what the vendor can still say (its id), or the proof taken before.
        return _prove_or_fail(run, old_id, None, current, "the vault already holds the new "
                              "value", confirm_only=True)
    try:
        new = run.new_value()
    except (VendorError, InputError) as exc:
        return j.move(Outcome.FAILED, f"revoke failed: {exc}")
    old = j.token(old_id)
    if old.life == Life.PROVEN_DEAD:
        # The record says it was proven before a crash: proven again, by the value the vault
        # still holds. A proof that does not hold is reopened and the revoke runs.
        try:
            again = prove(run, old, current, using=new)
        except VendorError as exc:
            return _failed(run, old_id, f"revoke check failed: {exc}; "
                           f"{run.command(Action.RETRY_REVOKE)}")
        if again.dead:
            return _finish(run, old_id, again.evidence)
        j.kill(old_id, reopen=f"recorded as proven dead, but {again.evidence}")
    if not run.vendor.CAN_REVOKE:
        return _prove_or_fail(run, old_id, current, new, "")
    auth_id = j.token(old_id).auth_id
    if auth_id is None:
        return _failed(run, old_id, "revoke failed: the old value's auth id is unknown "
                       f"({run.vault.describe()}__AUTH_ID is empty); revoke it at the vendor, "
                       f"then {run.command(Action.MARK_MANUALLY_REVOKED, ticket='T')}")
    try:
        revoked_now = run.call(lambda: run.vendor.revoke(auth_id, using=new, value=current))
    except VendorError as exc:
        return _failed(run, old_id, f"revoke failed: {exc} (old_auth_id {auth_id}); "
                       f"{run.command(Action.RETRY_REVOKE)}")
    run.crash("after_revoke")
    said = ("old value revoked" if revoked_now
            else f"already revoked (404: the vendor has no auth id {auth_id})")
    return _prove_or_fail(run, old_id, current, new, said)


def _prove_or_fail(run: Run, old_id: str, value: SecretStr | None, using: SecretStr,
                   said: str, *, confirm_only: bool = False) -> Job:
    j = run.journal
    old = j.token(old_id)
    try:
        proof = (confirm if confirm_only else prove)(run, old, value, using=using)
    except VendorError as exc:
        return _failed(run, old_id,
                       f"revoke check failed: {exc}; {run.command(Action.RETRY_REVOKE)}")
    if not proof.dead:
        return _failed(run, old_id, _unproven(run, old, proof.evidence, said,
                                              probed=proof.probed))
    return _finish(run, old_id, "; ".join(p for p in (said, proof.evidence) if p))


def _finish(run: Run, old_id: str, detail: str) -> Job:
    # The proof is committed before the vault is promoted: afterwards the old value is gone
    # from the vault and could no longer be probed by its value.
    run.journal.settle(old_id, Life.PROVEN_DEAD, evidence=detail, defer=False)
    run.crash("after_proof")
    return finish_revoke(run, detail)


def _unproven(run: Run, old: Token, evidence: str, said: str, *, probed: bool) -> str:
    name = run.cred.vendor
    if not probed:
        return (f"manual_required: {name} cannot revoke or probe by API; delete the old token "
                "in the vendor's dashboard, then "
                + run.command(Action.MARK_MANUALLY_REVOKED, ticket="T"))
    if not run.vendor.CAN_REVOKE:
        return (f"manual_required: {name} cannot revoke by API and {evidence}; delete the old "
                f"token in the vendor's dashboard, then {run.command(Action.RETRY_REVOKE)} (or "
                "mark_manually_revoked --ticket T once it is refused)")
    if said.startswith("already revoked"):
        return (f"revoke not proven: the vendor says it has no auth id {old.auth_id} "
                f"(404), but {evidence}: the vault's "
                f"{run.vault.describe()}__AUTH_ID is probably stale. Revoke the old token at "
                f"{name} by hand, then {run.command(Action.MARK_MANUALLY_REVOKED, ticket='T')}")
    return (f"revoke not proven: {said}, but {evidence}; "
            f"{run.command(Action.RETRY_REVOKE)}, or revoke it at {name} by hand and "
            "mark_manually_revoked --ticket T")


def _failed(run: Run, old_id: str, detail: str) -> Job:
    """revoke_failed: the old value is still the vault's current value; or, where the vault was
    promoted before a crash, a live value that is not the vault's: debt."""
    promoted = [False]
    current = run.read_current()
    old = run.journal.token(old_id)
    if current is not None and old.fingerprint is not None:
        promoted[0] = fingerprint(current) != old.fingerprint

    def back(job: Job) -> None:
        token = job.token(old_id)
        if token is None or token.life not in (Life.REVOKING, Life.PROVEN_DEAD):
            return
        if promoted[0]:
            ledger.set_life(token, Life.DEBT, run.now(), evidence=detail)
        else:
            ledger.set_life(token, Life.CURRENT, run.now())

    return run.journal.move(Outcome.FAILED, detail, mutate=back)


def finish_revoke(run: Run, detail: str) -> Job:
    try:
        run.promote()
    except VendorError as exc:
        # The old value is dead (its proof is committed); the vault could not be told. The
        # job waits in revoke_failed: retry_revoke finds the proof again and promotes.
        return run.journal.move(Outcome.FAILED, f"{detail}; but the vault could not be "
                                f"promoted ({exc}): {run.command(Action.RETRY_REVOKE)}")
    run.crash("after_promote")
    failing = after_revoke(run)

    def record(job: Job) -> None:
        make_current(run, job)
        job.report["after_revoke"] = {"failing": failing}

    if not failing:
        return run.journal.move(Outcome.OK, f"{detail}; vault promoted", mutate=record)
    named = "; ".join(f"{cid} ({why})" for cid, why in failing.items())
    push = " ".join(f"--consumer {cid}" for cid in sorted(failing))
    return run.journal.move(
        Outcome.OK, f"{detail}; vault promoted. NOT CLEAN: after the revoke these consumers "
        f"fail their check: {named}. Push the new value to them and check them again: "
        f"velvet push {run.job.job_id} {push} (or restart each, if it holds it already)",
        data={"failing_after_revoke": sorted(failing)}, mutate=record)


def push(run: Run, consumer_ids: list[str]) -> Job:
    """After `done`: write the vault's current value (this job's new one) to consumers that
    failed their check after the revoke, show it landed, check each once more, and record it.
    The value is the one the job proved: another in the vault is refused."""
    j = run.journal
    if run.job.status != State.DONE or run.job.flow_type != "operational":
        raise BadArgument(f"velvet push is for a rotation that is done; job {run.job.job_id} "
                          f"is {run.job.status}")
    value = run.current()
    if fingerprint(value) != run.job.new_fingerprint:
        raise BadArgument(f"the vault's current value ({fingerprint(value)}) is not job "
                          f"{run.job.job_id}'s new value ({run.job.new_fingerprint}): another "
                          "rotation has run since; push from that job")
    consumers = [run.consumer(cid) for cid in consumer_ids]
    checker = run.wiring.checker()
    results: dict[str, str] = {}
    failing: dict[str, str] = dict((run.job.report.get("after_revoke") or {}).get("failing")
                                   or {})

    def work(consumer: Consumer) -> tuple[bool, str]:
        target = run.target(consumer)
        since = run.now()
        try:
            run.retry(target.backoff_hint).run(lambda: target.write(value))
        except VendorError as exc:
            return False, f"write failed: {exc}"
        written = shown_write(run, target, value, since)
        if written.status != RowStatus.SUCCEEDED:
            return False, written.detail
        check = checker.check(consumer, target, value, "live")
        if check.status == RowStatus.FAILED:
            return False, f"{written.detail}; but its check fails: {check.detail}"
        return True, f"{written.detail}; {check.detail}"

    def done(consumer: Consumer, result: tuple[bool, str]) -> None:
        ok, detail = result
        results[consumer.consumer_id] = detail
        if ok:
            failing.pop(consumer.consumer_id, None)
        else:
            failing[consumer.consumer_id] = detail

    fan_out(run, consumers, work, done, lambda reason: (False, reason), what="pushing",
            spends=True)

    def record(job: Job) -> None:
        job.report["after_revoke"] = {"failing": dict(failing)}

    return j.note("pushed", "; ".join(f"{cid}: {why}" for cid, why in sorted(results.items())),
                  {"consumers": sorted(results), "failing": sorted(failing)}, mutate=record)


def after_revoke(run: Run) -> dict[str, str]:
    """Every consumer that passed the re-check, checked once more now that the old value is
    dead: one that fails now was still using the old value (a cache, a revert)."""
    todo = [c for r, c in run.rows(lambda r: r.holds == "new"
                                   and r.validate_status == RowStatus.SUCCEEDED)]
    if not todo:
        return {}
    checker, value = run.wiring.checker(), run.read_current()
    failing: dict[str, str] = {}

    def done(consumer: Consumer, result: CheckResult) -> None:
        if result.status == RowStatus.FAILED:
            failing[consumer.consumer_id] = result.detail

    fan_out(run, todo, lambda c: checker.check_once(c, run.target(c), value, "live"), done,
            lambda reason: CheckResult(RowStatus.FAILED, reason),
            what="checking after the revoke")
    return failing


def make_current(run: Run, job: Job) -> None:
    """The job's new value is now the vault's current one."""
    new = job.newest("new")
    if new is not None and new.life in (Life.HELD, Life.MINTED, Life.REVOKING):
        ledger.set_life(new, Life.CURRENT, run.now())
        ledger.release(new, ledger.VAULT_PENDING)
        ledger.hold(new, ledger.VAULT_CURRENT)
    old = job.newest("old")
    if old is not None:
        ledger.release(old, ledger.VAULT_CURRENT)
