"""The operational flow's stages 1 and 2: verify, then mint -> distribute -> validate.

Each phase reads the value it needs from the vault and passes it on explicitly. Minting lives
in `mint`, stage 3 (proceed_revoke) in `revoke`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import SecretStr

from velvet_runner import ledger
from velvet_runner.checks import CheckResult, Expect
from velvet_runner.errors import AuthRejected, InputError, VendorError, VendorUnavailable
from velvet_runner.machine import Action, Outcome, State
from velvet_runner.manifest import Consumer
from velvet_runner.records import DONE_ROW, ConsumerRow, Job, Life, RowStatus, fingerprint
from velvet_runner.targets.base import Target

from .context import Args, Run
from .fanout import fan_out
from .mint import announce_mint, mint, mint_label
from .proof import prove

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
    except (VendorError, InputError) as exc:
        return j.move(Outcome.FAILED, f"verify failed: {exc}")
    try:
        identity = run.call(lambda: run.vendor.verify(current))
        run.call(run.vendor.check_rotatable)
    except AuthRejected as exc:
        # Seen, not proven: a blip answers 401 too. The entry stays the vault's current value
        # until a proof is taken (runbook 6a says what a real refusal means for the operator).
        old_id = start_from(run, current, run.vault_auth_id())
        j.observe(old_id, f"refused by the vendor at verify ({exc})")
        return j.move(Outcome.FAILED, f"verify failed: {exc}")
    except (VendorError, InputError) as exc:
        return j.move(Outcome.FAILED, f"verify failed: {exc}")
    start_from(run, current, run.vault_auth_id(identity.auth_id))
    return j.move(Outcome.OK, f"current value accepted for {identity.subject}")


def start_from(run: Run, current: SecretStr, auth_id: str | None) -> str:
    """The ledger entry of the value the job starts from: the vault's current value.

    When the vault's value was replaced by hand since an earlier verify (runbook 6a), the entry
    of the value it held before is no longer the vault's: it is proven dead now, or debt.
    """
    j = run.journal
    fp = fingerprint(current)
    known = run.entry("old")
    if known is not None and known.fingerprint != fp and known.life in ledger.LIVE:
        proof = prove(run, known, None, using=current)
        life = Life.PROVEN_DEAD if proof.dead else Life.DEBT
        j.settle(known.token_id, life, evidence=(
            f"replaced in the vault by hand; {proof.evidence}"
            + (f"; earlier {known.observed}" if known.observed and not proof.dead else "")))
    if known is None or known.fingerprint != fp:
        at, token_id = run.now(), ledger.next_id(run.job, "old")
        holders = [ledger.VAULT_CURRENT] + [r.consumer_id for r in run.job.consumers
                                            if r.holds == "old"]

        def add(job: Job) -> None:
            if job.token(token_id) is None:
                ledger.add(job, "old", Life.CURRENT, at, auth_id=auth_id, fingerprint=fp,
                           held_by=holders)

        j.change(add, defer=True)
        return token_id
    if auth_id is not None and known.auth_id != auth_id and known.life in ledger.LIVE:
        token_id = known.token_id
        j.change(lambda job: setattr(job.token(token_id), "auth_id", auth_id), defer=True)
    return known.token_id


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
        label = mint_label(run)
        run.journal.move(act, "minting a new credential",
                         mutate=lambda job: announce_mint(run, job, label))
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

    def write(consumer: Consumer) -> Written:
        target = run.target(consumer)
        since = run.now()
        try:
            run.retry(target.backoff_hint).run(lambda: target.write(value))
        except VendorError as exc:
            # 5xx/timeouts may have been applied; refusals (401/403/404/422/429) were not.
            holds: Holds = ("unknown" if isinstance(exc, VendorUnavailable)
                            else before.get(consumer.consumer_id, "unknown"))
            return Written(RowStatus.FAILED, str(exc), holds)
        with j.lock:
            written[0] += 1
            if written[0] == 1:
                run.crash("mid_distribute")
        return shown_write(run, target, value, since)

    def done(consumer: Consumer, result: Written) -> None:
        with j.lock:
            row = j.row(consumer.consumer_id)
            attempts = row.attempts + 1 if row else 1
        j.set_row(consumer.consumer_id, distribute_status=result.status, detail=result.detail,
                  holds=result.holds, shown=result.shown, written_at=result.written_at,
                  attempts=attempts)

    fan_out(run, [c for _, c in todo], write, done,
            lambda reason: Written(RowStatus.FAILED, reason, "unknown"), what="distributing",
            spends=True)
    run.crash("after_distribute")
    result = outcome(r.distribute_status for r in run.job.consumers)
    failed = [r.consumer_id for r in run.job.consumers if r.distribute_status == RowStatus.FAILED]
    # Ok: committed with validation's first write (checks change nothing anywhere).
    j.move(result, f"distribution {result}" + (f"; failed: {', '.join(failed)}" if failed
                                                else ""),
           defer=result == Outcome.OK)


@dataclass(frozen=True)
class Written:
    """One consumer's distribution: its row's status, what it now holds, and the evidence."""

    status: RowStatus
    detail: str
    holds: Holds
    shown: str | None = None
    written_at: datetime | None = None


def shown_write(run: Run, target: Target, value: SecretStr, since: datetime) -> Written:
    """A write the target acknowledged, shown to have landed (or not): only a write the target
    shows is succeeded; one it cannot show waits for a person."""
    try:
        shown = run.call(lambda: target.shows(value, since))
    except VendorError as exc:
        return Written(RowStatus.FAILED, f"written, but it could not be shown to have landed: "
                       f"{exc}", "unknown", written_at=since)
    if shown is None:
        return Written(RowStatus.MANUAL_REQUIRED, f"written; {target.kind} cannot show that it "
                       "landed: confirm it by hand (manual_confirm)", "unknown",
                       written_at=since)
    if not shown.held:
        return Written(RowStatus.FAILED, f"written, but not stored: {shown.evidence}",
                       "unknown", shown.evidence, since)
    return Written(RowStatus.SUCCEEDED, f"written; {shown.evidence}", "new", shown.evidence,
                   since)


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
               expect: Expect, *, settle: bool, crash_point: str | None = None,
               readback: bool = False) -> None:
    """Check each row's consumer (within a settle window, or once); with `readback`, each
    target must first show it still holds `value` (the re-check before revoke)."""
    j = run.journal
    checker = run.wiring.checker()
    # Only Velvet's own writes are read back: a row a person confirmed stands on their word.
    written = {row.consumer_id: row.written_at for row, _ in todo
               if row.distribute_status == RowStatus.SUCCEEDED}
    for row, _ in todo:
        j.set_row(row.consumer_id, validate_status=RowStatus.IN_PROGRESS)
    # Checks change nothing anywhere, so entering validation needs no commit of its own: it
    # rides with the fan-out's first save (after a second) or with the result.
    if run.job.status == State.DISTRIBUTED:
        j.move(Outcome.OK, "validating consumers", defer=True)
    checked = [0]

    def check(consumer: Consumer) -> CheckResult:
        target = run.target(consumer)
        if readback and value is not None and consumer.consumer_id in written:
            since = written[consumer.consumer_id]
            try:
                shown = run.call(lambda: target.shows(value, since))
            except VendorError as exc:
                return CheckResult(RowStatus.FAILED, f"could not be read back: {exc}")
            if shown is not None and not shown.held:
                return CheckResult(RowStatus.FAILED,
                                   f"no longer holds the new value: {shown.evidence}")
        if settle:
            return checker.check(consumer, target, value, expect)
        return checker.check_once(consumer, target, value, expect)

    def done(consumer: Consumer, result: CheckResult) -> None:
        j.set_row(consumer.consumer_id, detail=result.detail, validate_status=result.status)
        checked[0] += 1
        if checked[0] == 1 and crash_point is not None and run.crash_due(crash_point):
            j.flush_rows()  # the crash test's point: rows in flight on the branch
            run.crash(crash_point)

    fan_out(run, [c for _, c in todo], check, done,
            lambda reason: CheckResult(RowStatus.FAILED, reason),
            what="checking" if settle else "re-checking",
            settle=checker.settle_seconds if settle else None)
