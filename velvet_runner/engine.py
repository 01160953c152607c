"""Runs one stage of one job: ask the machine, do the side effects, record every step.

Every transition is a compare-and-swap write of the job record, carrying an event (time,
actor, action, from, to, detail). Side effects go through adapters built by `Wiring`; values
live only in memory, the vault and the targets. Stages are idempotent, so an interrupted stage
is resumed by running its action again:

    minting        the vault's pending slot is checked first, then the vendor for a credential
                   labelled with this job, before anything is minted
    distributing   only rows not yet done are written, with the value read back from the vault
    revoking       404 at the vendor counts as already revoked; promoting the vault is idempotent
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import timedelta
from typing import Any, Literal, Protocol

from pydantic import SecretStr

from velvet_runner import redact
from velvet_runner.checks import CheckResult, Expect
from velvet_runner.client import RetryPolicy
from velvet_runner.errors import (
    AuthRejected,
    BadArgument,
    ConflictError,
    FeatureDisabled,
    GateRefused,
    InputError,
    NotFoundError,
    VelvetError,
    VendorError,
    VendorUnavailable,
)
from velvet_runner.logs import job_logger
from velvet_runner.machine import (
    IN_PROGRESS,
    INITIAL,
    Action,
    Flow,
    Outcome,
    State,
    Trigger,
    step,
)
from velvet_runner.manifest import BOOTSTRAP_CREDENTIALS, Consumer, Credential, Manifest
from velvet_runner.records import (
    DONE_ROW,
    ConsumerRow,
    Debt,
    Event,
    Job,
    Lease,
    RowStatus,
    fingerprint,
    new_job_id,
    utcnow,
)
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.targets.base import Target
from velvet_runner.vault import Pending, Vault
from velvet_runner.vendors.base import Minted, Vendor
from velvet_runner.wiring import Wiring

FLAG = "velvet_v2_rotation"
CRASH_EXIT = 99
LEASE_TTL = timedelta(minutes=2)
FLUSH_SECONDS = 1.0
# Terminal events page people; rev_done too, so the SEV1 channel hears the leak is closed.
NOTIFY_STATES = frozenset({State.DONE, State.ABORTED, State.REV_LEAKED, State.REV_DONE})
Holds = Literal["old", "new", "unknown"]


class Notifier(Protocol):
    def job_changed(self, job: Job, previous: State) -> list[dict[str, Any]]: ...


class Gate(Protocol):
    """Checks an operator approval before a gated stage (the Actions layer implements it)."""

    def check(self, job: Job, action: Action, credential: Credential) -> dict[str, Any] | None: ...


class Engine:
    def __init__(self, settings: Settings, manifest: Manifest, store: Store, wiring: Wiring,
                 *, flags: dict[str, bool] | None = None, notifier: Notifier | None = None,
                 gate: Gate | None = None, now: Callable[[], Any] = utcnow,
                 on_transition: Callable[[Job, Event], None] | None = None) -> None:
        self.settings = settings
        self.manifest = manifest
        self.store = store
        self.wiring = wiring
        self.flags = flags if flags is not None else {}
        self.notifier = notifier
        self.gate = gate
        self.now = now
        self.actor = settings.actor or "unknown"
        self.on_transition = on_transition

    # --- preconditions -------------------------------------------------------------------

    def require_enabled(self) -> None:
        if not self.flags.get(FLAG, False):
            raise FeatureDisabled(f"feature flag {FLAG} is off: Velvet refuses to change "
                                  "anything; use the vendor's manual SOP (runbook section 1)")

    def _credential(self, name: str) -> Credential:
        cred = self.manifest.credential(name)
        if cred is None:
            raise NotFoundError(f"credential {name} is not in the manifest "
                                f"({self.settings.manifest}); use the per-credential SOP in "
                                "docs/ops/runbooks/rotation/")
        return cred

    def _require_env(self, env: str, what: str) -> None:
        if self.settings.env is None:
            raise BadArgument("VELVET_ENV is not set; set it to the environment this runner "
                              "serves (prod or staging)")
        if env != self.settings.env:
            raise BadArgument(f"{what} is env {env} but this runner is VELVET_ENV="
                              f"{self.settings.env}; run it against the {env} Velvet")

    def _rotatable(self, cred: Credential) -> list[Consumer]:
        if cred.name in BOOTSTRAP_CREDENTIALS:
            raise InputError(f"{cred.name} is one of Velvet's own bootstrap credentials; rotate "
                             f"it by hand: {BOOTSTRAP_CREDENTIALS[cred.name]}")
        if not cred.active:
            raise InputError(f"{cred.name} has active: false in the manifest; fix the manifest "
                             "first or rotate it manually per the vendor SOP (runbook section 1)")
        live = [c for c in cred.consumers if c.env == cred.env and c.active]
        if not live:
            raise InputError(f"{cred.name} has no active {cred.env} consumers registered; use the "
                             "per-credential SOP in docs/ops/runbooks/rotation/")
        return live

    # --- creating a job ------------------------------------------------------------------

    def create(self, name: str, flow: Flow = Flow.OPERATIONAL, *,
               idempotency_key: str | None = None, force_revoke: bool = False) -> tuple[Job, bool]:
        """Create a job in its initial state and take the credential's lock."""
        self.require_enabled()
        cred = self._credential(name)
        self._require_env(cred.env, f"credential {name}")
        self._rotatable(cred)
        now = self.now()
        rows = []
        for consumer in cred.consumers:
            if consumer.env != cred.env:
                continue  # another environment's Velvet serves it
            row = ConsumerRow(consumer_id=consumer.consumer_id, kind=consumer.kind,
                              target=consumer.describe(), updated_at=now)
            if not consumer.active:
                row.distribute_status = row.validate_status = RowStatus.SKIPPED
                row.detail = "active: false in the manifest"
            rows.append(row)
        job = Job(job_id=new_job_id(), credential=name, vendor=cred.vendor, flow_type=flow,
                  env=cred.env, status=INITIAL[flow], created_at=now, updated_at=now,
                  actor=self.actor, idempotency_key=idempotency_key, force_revoke=force_revoke,
                  consumers=rows, run_url=_run_url(),
                  events=[Event(at=now, actor=self.actor, action="create",
                                to_state=str(INITIAL[flow]),
                                detail=f"{flow} job created",
                                data={"force_revoke": force_revoke} if force_revoke else {})])
        stored, created = self.store.create(job)
        if created:
            job_logger("engine", stored.job_id).info(
                "created %s job for %s by %s", flow, name, self.actor)
        return stored, created

    # --- running a stage -----------------------------------------------------------------

    def run(self, job_id: str, action: str, *, consumers: Sequence[str] = (),
            ticket: str | None = None, confirm: str | None = None) -> Job:
        try:
            act = Action(action)
        except ValueError:
            raise BadArgument(f"unknown action {action!r}; actions: "
                              f"{', '.join(a.value for a in Action)}") from None
        self.require_enabled()
        job = self.store.find(job_id)
        cred = self._credential(job.credential)
        self._require_env(job.env, f"job {job_id}")
        step(job.flow_type, job.status, act, force_revoke=job.force_revoke)  # refuse early
        stage = _Stage(self, job, cred)
        stage.acquire(act)
        try:
            stage.run(act, consumers=list(consumers), ticket=ticket, confirm=confirm)
        except LeakStillOpen as exc:
            stage.release()
            exc.job = stage.job
            raise
        finally:
            stage.release()
        return stage.job


    def settle_debt(self) -> list[dict[str, Any]]:
        """Ask each vendor whether the tokens listed as revocation debt still exist.

        A token the vendor no longer holds is marked settled on its job (with an event); one the
        vendor cannot tell about (Postmark, operator-managed) stays listed for a person.
        """
        self.require_enabled()
        report: list[dict[str, Any]] = []
        for cred in self.manifest.credentials:
            if self.settings.env is not None and cred.env != self.settings.env:
                continue
            jobs = [j for j in self.store.list_jobs(cred.name)
                    if any(d.settled_at is None for d in j.revocation_debt)]
            if not jobs:
                continue
            vendor = self.wiring.vendor(cred)
            using = self.wiring.vault(cred).current()
            for job in jobs:
                for debt in job.revocation_debt:
                    if debt.settled_at is not None:
                        continue
                    row = {"credential": cred.name, "job_id": job.job_id,
                           "auth_id": debt.auth_id, "fingerprint": debt.fingerprint}
                    try:
                        held = (vendor.exists(debt.auth_id, using=using)
                                if debt.auth_id is not None and using is not None else None)
                    except VendorError as exc:
                        report.append({**row, "result": f"unknown: {exc}"})
                        continue
                    if held is False:
                        self._settle(job, debt.fingerprint)
                        report.append({**row, "result": "settled: the vendor no longer has it"})
                    else:
                        report.append({**row, "result": "still held" if held else
                                       "unknown: the vendor cannot tell; confirm by hand"})
        return report

    def _settle(self, job: Job, debt_fingerprint: str) -> None:
        now = self.now()

        def apply(current: Job) -> Job:
            for debt in current.revocation_debt:
                if debt.fingerprint == debt_fingerprint and debt.settled_at is None:
                    debt.settled_at = now
                    current.events.append(Event(
                        at=now, actor=self.actor, action="debt_settled",
                        from_state=str(current.status), to_state=str(current.status),
                        detail=f"auth id {debt.auth_id} is gone at the vendor",
                        data={"auth_id": debt.auth_id, "fingerprint": debt.fingerprint}))
            return current

        self.store.update(job.credential, job.job_id, apply)


class _Stage:
    """One stage run of one job; holds the adapters and the in-memory record."""

    def __init__(self, engine: Engine, job: Job, cred: Credential) -> None:
        self.e = engine
        self.job = job
        self.cred = cred
        self.log = job_logger("engine", job.job_id)
        self.wiring = engine.wiring
        self._vendor: Vendor | None = None
        self._vault: Vault | None = None
        self._targets: dict[str, Target] = {}
        self._lock = threading.Lock()
        self._index_of: list[ConsumerRow] | None = None
        self._index: dict[str, ConsumerRow] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held = False  # the lease is ours on the branch
        self._taking: Action | None = None  # the lease to take with the next write
        self._saved = job.status  # the status on the branch as of our last write (the CAS)
        self._queued: list[Callable[[Job], Event]] = []  # transitions not yet committed

    # --- adapters, lazily ----------------------------------------------------------------

    @property
    def vendor(self) -> Vendor:
        if self._vendor is None:
            self._vendor = self.wiring.vendor(self.cred)
        return self._vendor

    @property
    def vault(self) -> Vault:
        if self._vault is None:
            self._vault = self.wiring.vault(self.cred)
        return self._vault

    def target(self, consumer: Consumer) -> Target:
        with self._lock:
            if consumer.consumer_id not in self._targets:
                self._targets[consumer.consumer_id] = self.wiring.target(consumer)
            return self._targets[consumer.consumer_id]

    def consumer(self, consumer_id: str) -> Consumer:
        consumer = self.cred.consumer(consumer_id)
        if consumer is None:
            raise BadArgument(f"consumer {consumer_id} is not registered for {self.cred.name}")
        return consumer

    def retry(self, hint: Callable[[], float | None] | None = None) -> RetryPolicy:
        return RetryPolicy(sleep=self.wiring.sleep, rate_limit_probe=hint)

    # --- recording -----------------------------------------------------------------------
    #
    # Every write goes through _write: one compare-and-swap commit that carries the rows as
    # this run sees them, any transitions queued since the last write, and the lease. A
    # transition with no side effect before the next one may be queued (`defer=True`) so the
    # two land in one commit: on GitHub each commit is a push, and a push costs about a second.

    def move(self, trigger: Trigger, detail: str | None = None, *,
             data: dict[str, Any] | None = None,
             mutate: Callable[[Job], None] | None = None, defer: bool = False) -> Job:
        """One transition; written now, or with the next write when `defer` (nothing may
        touch a vendor or consumer in between: the branch must show where the job stands
        before any side effect)."""
        at = self.e.now()

        def transition(job: Job) -> Event:
            target = step(job.flow_type, job.status, trigger, force_revoke=job.force_revoke)
            if mutate is not None:
                mutate(job)
            event = Event(at=at, actor=self.e.actor, action=str(trigger),
                          from_state=str(job.status), to_state=str(target), detail=detail,
                          data=data or {})
            job.events.append(event)
            job.status = target
            return event

        transition(self.job)  # refuses a move the machine does not allow, before writing
        self._queued.append(transition)
        return self.job if defer else self._write()

    def note(self, action: str, detail: str, data: dict[str, Any] | None = None) -> Job:
        """An event without a transition (a refusal, a failed rollback attempt)."""
        at = self.e.now()

        def add(current: Job) -> None:
            current.events.append(Event(at=at, actor=self.e.actor, action=action,
                                        from_state=str(current.status),
                                        to_state=str(current.status), detail=detail,
                                        data=data or {}))

        self._write(add)
        self.log.info("%s: %s", action, detail)
        return self.job

    def flush_rows(self) -> None:
        self._write()

    def hold(self) -> None:
        """Make sure the lease is on the branch; called before any side effect."""
        if self._taking is not None:
            self._write()

    def _write(self, change: Callable[[Job], None] | None = None) -> Job:
        expected, queued, taking = self._saved, list(self._queued), self._taking
        events: list[Event] = []
        ends = [False]

        def apply(current: Job) -> Job:
            self._claim(current, taking)
            if current.status != expected:
                raise ConflictError(f"job {current.job_id} moved from {expected} to "
                                    f"{current.status} while this stage ran; re-run status")
            with self._lock:
                current.consumers = [row.model_copy() for row in self.job.consumers]
            events.clear()
            events.extend(transition(current) for transition in queued)
            if change is not None:
                change(current)
            # The move that brings the job to rest ends the stage: release in that commit.
            ends[0] = bool(events) and current.status not in IN_PROGRESS
            if ends[0] and current.lease is not None and current.lease.owner == self.owner:
                current.lease = None
            return current

        self.job = self.e.store.update(self.job.credential, self.job.job_id, apply)
        self._queued.clear()
        self._saved = self.job.status
        if taking is not None:
            self._taking, self._held = None, True
        if ends[0]:
            self._held = False
        for event in events:
            self.log.info("%s: %s -> %s%s", event.action, event.from_state, event.to_state,
                          f" ({event.detail})" if event.detail else "")
            if self.e.on_transition is not None:
                self.e.on_transition(self.job, event)
        if events and self.job.status in NOTIFY_STATES and self.e.notifier is not None:
            self._notify(expected)
        return self.job

    def _notify(self, previous: State) -> None:
        """Tell people; a failure is recorded on the job and never changes its outcome."""
        assert self.e.notifier is not None  # noqa: S101 - checked by the caller
        try:
            results = self.e.notifier.job_changed(self.job, previous)
        except Exception as exc:  # noqa: BLE001 - notifications must never fail a job
            results = [{"channel": "all", "ok": False, "error": type(exc).__name__}]
        if not results:
            return
        failed = [r["channel"] for r in results if not r.get("ok")]
        detail = ("notified " + ", ".join(r["channel"] for r in results if r.get("ok"))
                  if not failed else "notification failed: " + ", ".join(failed))
        try:
            self.note("notify_failed" if failed else "notified", detail, {"results": results})
        except Exception:  # noqa: BLE001 - recording is best effort too
            self.log.warning("could not record notification results")

    # --- the stage lease: one run of a job at a time -------------------------------------

    def acquire(self, act: Action) -> None:
        """Take the job's lease with this run's first write, so that two runs never drive
        one job at once.

        In-progress states accept their action again (that is how a crashed stage resumes), so
        without a lease two concurrent `proceed_mint` runs could both mint. Every side effect
        calls hold() first, which writes the lease alone when no write has carried it yet. A
        lease left by a run that died is taken over once it expires, or at once when it was
        held by a process on this host that no longer exists.
        """
        self._taking = act

    def release(self) -> None:
        """Drop the lease when the stage stopped before a move brought the job to rest."""
        if not self._held:
            return
        self._held = False

        def apply(current: Job) -> Job | None:
            if current.lease is None or current.lease.owner != self.owner:
                return None
            current.lease = None
            return current

        try:
            self.job = self.e.store.update(self.job.credential, self.job.job_id, apply)
        except VelvetError as exc:
            self.log.warning("could not release the job's lease: %s", exc)

    def _claim(self, current: Job, taking: Action | None) -> None:
        """Take (when `taking`) or renew this run's lease on `current`, or refuse."""
        lease, now = current.lease, self.e.now()
        if taking is not None:
            if lease is not None and lease.owner != self.owner and not _stale(lease, now):
                raise ConflictError(
                    f"job {current.job_id} is already running {lease.action} (run {lease.owner},"
                    f" since {lease.acquired_at:%Y-%m-%dT%H:%M:%SZ}); wait for it to finish, or"
                    f" if it died, run the action again after "
                    f"{lease.renewed_at + LEASE_TTL:%Y-%m-%dT%H:%M:%SZ}")
            current.lease = Lease(owner=self.owner, action=str(taking), acquired_at=now,
                                  renewed_at=now)
        elif self._held:
            if lease is None or lease.owner != self.owner:
                raise ConflictError(f"job {current.job_id}: this run lost its lease to "
                                    f"{lease.owner if lease else 'nobody'}; stopping")
            lease.renewed_at = now

    def _row(self, consumer_id: str) -> ConsumerRow | None:
        """The in-memory row of a consumer (callers hold self._lock); O(1), not a scan."""
        rows = self.job.consumers
        if self._index_of is not rows:
            self._index = {}
            for row in rows:
                self._index.setdefault(row.consumer_id, row)
            self._index_of = rows
        return self._index.get(consumer_id)

    def set_row(self, consumer_id: str, **fields: Any) -> None:
        with self._lock:
            row = self._row(consumer_id)
            if row is None:
                return
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = self.e.now()

    def crash(self, point: str) -> None:
        """Exit hard at a side-effect boundary when VELVET_CRASH_AT names it (crash tests)."""
        if self.e.settings.crash_at == point:
            self.log.warning("VELVET_CRASH_AT=%s: exiting hard", point)
            os._exit(CRASH_EXIT)

    # --- dispatch ------------------------------------------------------------------------

    def run(self, act: Action, *, consumers: list[str], ticket: str | None,
            confirm: str | None) -> Job:
        flow = self.job.flow_type
        if flow == Flow.TESTING:
            if act == Action.ABORT:
                return self.abort()
            return self.dry_run()
        if flow == Flow.REVOCATION:
            return self.run_revocation(act, consumers=consumers, ticket=ticket)
        if act in (Action.VERIFY, Action.RETRY_VERIFY):
            return self.verify(act)
        if act == Action.PROCEED_MINT:
            self.gate(act)
            return self.advance(act)
        if act == Action.RETRY_DISTRIBUTE:
            if self.job.status in (State.DISTRIBUTE_PARTIAL, State.DISTRIBUTE_FAILED):
                self.move(act, "retrying rows that failed")
            return self.advance(act)
        if act == Action.RETRY_VALIDATION:
            if self.job.status != State.VALIDATING:
                self.move(act, "re-running checks")
            return self.advance(act, recheck=True)
        if act in (Action.MANUAL_CONFIRM, Action.SKIP_CONSUMER):
            return self.mark_rows(act, consumers)
        if act == Action.PROCEED_REVOKE:
            return self.proceed_revoke(ticket, confirm)
        if act == Action.RETRY_REVOKE:
            if self.job.status == State.REVOKE_FAILED:
                self.move(act, "retrying revoke")
            return self.revoke()
        if act == Action.MARK_MANUALLY_REVOKED:
            return self.mark_manually_revoked(ticket)
        if act == Action.ABORT:
            return self.abort()
        if act == Action.ROLLBACK:
            return self.rollback()
        raise BadArgument(f"{act} does not apply to an operational job")  # pragma: no cover

    def gate(self, act: Action) -> None:
        if self.e.gate is None:
            return
        approval = self.e.gate.check(self.job, act, self.cred)
        if approval:
            self.note("approval", f"{act} approved by {approval.get('approver')}", approval)

    # --- stage 1: verify -----------------------------------------------------------------

    def verify(self, act: Action) -> Job:
        if self.job.status != State.VERIFYING:
            self.move(act, "probing the vendor with the current value")
        self.crash("verify")
        try:
            current = self._current()
            identity = self.retry().run(lambda: self.vendor.verify(current))
            self.retry().run(self.vendor.check_rotatable)
        except (VendorError, InputError) as exc:
            return self.move(Outcome.FAILED, f"verify failed: {exc}")
        old_auth_id = self._old_auth_id(identity.auth_id)

        def record(job: Job) -> None:
            job.old_auth_id = old_auth_id
            job.old_fingerprint = fingerprint(current)

        return self.move(Outcome.OK, f"current value accepted for {identity.subject}",
                         mutate=record)

    def _current(self) -> SecretStr:
        current = self.retry().run(self.vault.current)
        if current is None:
            raise InputError(f"the vault {self.vault.describe()} holds no current value")
        redact.register(current)
        return current

    def _old_auth_id(self, from_vendor: str | None) -> str | None:
        try:
            companion = self.retry().run(self.vault.auth_id)
        except VendorError:
            companion = None
        return companion or from_vendor

    # --- stage 2: mint, distribute, validate ---------------------------------------------

    def advance(self, act: Action, *, recheck: bool = False) -> Job:
        """Run from wherever stage 2 stands to validated or the first failed/partial state."""
        if self.job.status in (State.VERIFIED, State.MINT_FAILED):
            self.move(act, "minting a new credential")
        while True:
            status = self.job.status
            if status == State.MINTING:
                self.mint()
            elif status in (State.MINTED, State.DISTRIBUTING):
                self.distribute()  # from minted, its first commit is minted -> distributing
            elif status in (State.DISTRIBUTED, State.VALIDATING):
                self.validate(recheck=recheck)
            else:
                return self.job

    def mint(self) -> None:
        label = f"velvet-{self.job.job_id}"
        try:
            current = self._current()
            minted = self._minted_value(current, label)
        except (VendorError, InputError) as exc:
            self.move(Outcome.FAILED, f"mint failed: {exc}")
            return
        new_fp = fingerprint(minted.value)
        if new_fp == fingerprint(current):
            self.move(Outcome.FAILED, "mint failed: the new value equals the current one")
            return

        def record(job: Job) -> None:
            job.new_auth_id = minted.auth_id
            job.new_fingerprint = new_fp

        # Committed with distribution's first write, which comes before any consumer write.
        self.move(Outcome.OK, "new value in the vault's pending slot",
                  data={"new_auth_id": minted.auth_id, "new_fingerprint": new_fp},
                  mutate=record, defer=True)

    def _minted_value(self, current: SecretStr, label: str) -> Minted:
        self.hold()
        own = self._own_pending()
        if own is not None:
            self.log.info("resuming with the value already in the pending slot")
            return Minted(own.auth_id, own.value)
        pending = self.retry().run(self.vault.pending)
        if not self.vendor.CAN_MINT:
            if pending is None or pending.job_id is not None:
                raise InputError(f"{self.cred.vendor} cannot mint by API: create the new value "
                                 f"at the vendor, store it in {self.vault.describe()}__PENDING, "
                                 "then run proceed_mint again")
            redact.register(pending.value)
            identity = self.retry().run(lambda: self.vendor.verify(pending.value))
            minted = Minted(identity.auth_id, pending.value)
        else:
            existing = self.retry().run(lambda: self.vendor.find_minted(current, label))
            if existing is not None:
                self.log.info("a credential labelled %s exists: recovering it", label)
                minted = self.vendor.recover_minted(current, existing, label)
            else:
                minted = self.vendor.mint(current, label)
            redact.register(minted.value)
        self.crash("after_mint")
        self.retry().run(lambda: self.vault.set_pending(
            minted.value, job_id=self.job.job_id, auth_id=minted.auth_id))
        self.crash("after_vault_write")
        return minted

    def _own_pending(self) -> Pending | None:
        """The vault's pending value when it belongs to this job (registered for masking)."""
        pending = self.retry().run(self.vault.pending)
        if pending is None or pending.job_id != self.job.job_id:
            return None
        redact.register(pending.value)
        return pending

    def _promote(self) -> bool:
        """Make this job's pending value current; False when the slot holds no value of ours."""
        self.hold()
        pending = self._own_pending()
        if pending is None:
            return False
        self.retry().run(lambda: self.vault.promote(pending.value, self.job.new_auth_id))
        return True

    def _new_value(self) -> SecretStr:
        pending = self._own_pending()
        if pending is None:
            raise InputError(f"the vault's pending slot no longer holds job {self.job.job_id}'s "
                             "value; abort this job")
        if fingerprint(pending.value) != self.job.new_fingerprint:
            raise InputError("the vault's pending value does not match the minted one")
        return pending.value

    def _rows(self, select: Callable[[ConsumerRow], bool]) -> list[tuple[ConsumerRow, Consumer]]:
        out = []
        for row in self.job.consumers:
            consumer = self.cred.consumer(row.consumer_id)
            if consumer is not None and select(row):
                out.append((row, consumer))
        return out

    def _value_or_fail(self, waiting: State, entering: str, phase: str) -> SecretStr | None:
        """The new value; or None, the phase entered (from `waiting`) and failed on the job."""
        try:
            return self._new_value()
        except (VendorError, InputError) as exc:
            if self.job.status == waiting:
                self.move(Outcome.OK, entering, defer=True)
            self.move(Outcome.FAILED, f"{phase} failed: {exc}")
            return None

    def distribute(self) -> None:
        value = self._value_or_fail(State.MINTED, "fanning out to consumers", "distribute")
        if value is None:
            return
        todo = self._rows(lambda r: r.distribute_status not in DONE_ROW)
        # What each row held before this attempt: a write the target refused outright (4xx)
        # changed nothing, so the row still holds that; rollback need not touch it.
        before = {row.consumer_id: row.holds for row, _ in todo}
        for row, _ in todo:
            self.set_row(row.consumer_id, distribute_status=RowStatus.IN_PROGRESS,
                         holds="unknown", detail=None)
        # Rows are marked in flight in the same commit that enters distributing, before any
        # consumer is written (rollback after a crash needs to know who may hold the value).
        if self.job.status == State.MINTED:
            self.move(Outcome.OK, "fanning out to consumers")
        else:
            self.flush_rows()
        self.crash("distribute_start")
        written = [0]

        def write(consumer: Consumer) -> tuple[RowStatus, str, Holds]:
            target = self.target(consumer)
            hint = getattr(target, "backoff_hint", None)
            try:
                self.retry(hint).run(lambda: target.write(value))
            except VendorError as exc:
                # 5xx/timeouts may have been applied; refusals (401/403/404/422/429) were not.
                holds: Holds = ("unknown" if isinstance(exc, VendorUnavailable)
                                else before.get(consumer.consumer_id, "unknown"))
                return RowStatus.FAILED, str(exc), holds
            with self._lock:
                written[0] += 1
                if written[0] == 1:
                    self.crash("mid_distribute")
            return RowStatus.SUCCEEDED, "written", "new"

        def done(consumer: Consumer, result: tuple[RowStatus, str, Holds]) -> None:
            status, detail, holds = result
            with self._lock:
                row = self._row(consumer.consumer_id)
                attempts = row.attempts + 1 if row else 1
            self.set_row(consumer.consumer_id, distribute_status=status, detail=detail,
                         holds=holds, attempts=attempts)

        self._fan_out([c for _, c in todo], write, done,
                      lambda reason: (RowStatus.FAILED, reason, "unknown"), spends=True)
        self.crash("after_distribute")
        outcome = _outcome([r.distribute_status for r in self.job.consumers])
        failed = [r.consumer_id for r in self.job.consumers if r.distribute_status ==
                  RowStatus.FAILED]
        # Ok: committed with validation's first write (checks change nothing anywhere).
        self.move(outcome, f"distribution {outcome}" + (f"; failed: {', '.join(failed)}"
                                                        if failed else ""),
                  defer=outcome == Outcome.OK)

    def validate(self, *, recheck: bool = False) -> None:
        value = self._value_or_fail(State.DISTRIBUTED, "validating consumers", "validation")
        if value is None:
            return
        for row in self.job.consumers:
            if row.distribute_status == RowStatus.SKIPPED:
                self.set_row(row.consumer_id, validate_status=RowStatus.SKIPPED)
        redo = {RowStatus.PENDING, RowStatus.IN_PROGRESS, RowStatus.FAILED}
        if recheck:
            redo.add(RowStatus.MANUAL_REQUIRED)
        todo = self._rows(lambda r: r.validate_status in redo)
        self._check_rows(todo, value, "live", settle=True)
        outcome = _outcome([r.validate_status for r in self.job.consumers])
        pending = [r.consumer_id for r in self.job.consumers if r.validate_status not in DONE_ROW]
        self.move(outcome, f"validation {outcome}" + (f"; not validated: {', '.join(pending)}"
                                                      if pending else ""))

    def _check_rows(self, todo: list[tuple[ConsumerRow, Consumer]], value: SecretStr | None,
                    expect: Expect, *, settle: bool, field: str = "validate_status") -> None:
        checker = self.wiring.checker()
        for row, _ in todo:
            self.set_row(row.consumer_id, **{field: RowStatus.IN_PROGRESS})
        if self.job.status == State.DISTRIBUTED:
            self.move(Outcome.OK, "validating consumers")  # with the rows marked in flight
        else:
            self.flush_rows()

        def check(consumer: Consumer) -> CheckResult:
            target = self.target(consumer)
            if settle:
                return checker.check(consumer, target, value, expect)
            return checker.check_once(consumer, target, value, expect)

        def done(consumer: Consumer, result: CheckResult) -> None:
            self.set_row(consumer.consumer_id, detail=result.detail, **{field: result.status})

        self._fan_out([c for _, c in todo], check, done,
                      lambda reason: CheckResult(RowStatus.FAILED, reason))

    def _fan_out(self, consumers: list[Consumer], work: Callable[[Consumer], Any],
                 done: Callable[[Consumer, Any], None],
                 fallback: Callable[[str], Any] | None = None, *, spends: bool = False) -> None:
        """Run `work` for every consumer concurrently, bounded per target kind.

        One failing row never blocks the others; rows are saved at most once a second so the
        status app sees progress without a commit per row.
        """
        if not consumers:
            return
        kinds = Counter(c.kind for c in consumers)
        # Rate budgets (budget.py): say so before a fan-out they stretch past a minute, and
        # record the waits after it (the job's events and the step summary show both).
        waited0 = self.wiring.budgets.totals().waited
        if spends:
            expected, why = self.wiring.budget_estimate(kinds)
            if expected > 60:
                self.log.warning("rate budgets: this fan-out takes about %.0f s (%s)",
                                 expected, why)
                self.note("budget_wait", f"expected about {expected:.0f} s: {why}")
        self.hold()
        last_flush = time.monotonic()
        # Completions arrive on a queue: concurrent.futures.wait(FIRST_COMPLETED) re-arms a
        # waiter on every pending future per call, O(N) per completion and O(N^2) per fan-out.
        finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        # One pool per target kind, as many threads as its bound: a kind waiting on its
        # vendor's rate budget never holds threads another kind could use.
        with ExitStack() as stack:
            pools = {kind: stack.enter_context(ThreadPoolExecutor(
                max_workers=max(1, min(n, self.wiring.bounds.get(kind, 1))),
                thread_name_prefix=f"velvet-fanout-{kind}")) for kind, n in kinds.items()}
            futures: dict[Future[Any], Consumer] = {}
            for c in consumers:
                future = pools[c.kind].submit(work, c)
                futures[future] = c
                future.add_done_callback(finished.put)
            remaining = len(futures)
            while remaining:
                wait_for = max(0.0, FLUSH_SECONDS - (time.monotonic() - last_flush))
                got: Future[Any] | None
                try:
                    got = finished.get(timeout=wait_for)
                except queue.Empty:
                    got = None
                if got is not None:
                    future = got
                    remaining -= 1
                    consumer = futures[future]
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001 - an adapter bug fails one row only
                        self.log.error("consumer %s: %s", consumer.consumer_id,
                                       type(exc).__name__)
                        reason = f"internal error: {type(exc).__name__}"
                        result = (fallback(reason) if fallback is not None
                                  else (RowStatus.FAILED, reason))
                    done(consumer, result)
                if remaining and time.monotonic() - last_flush >= FLUSH_SECONDS:
                    self.flush_rows()
                    last_flush = time.monotonic()
                    waiting = self.wiring.budgets.waiting_now()
                    if waiting:
                        self.log.info("fan-out: %d of %d to go; %s", remaining,
                                      len(consumers), waiting)
        totals = self.wiring.budgets.totals()
        workers = sum(min(n, self.wiring.bounds.get(kind, 1)) for kind, n in kinds.items())
        if (totals.waited - waited0) / max(1, workers) >= 1.0:  # a second per thread or more
            reasons = ", ".join(f"{k or 'other'} {v:.0f} s" for k, v in sorted(
                totals.reasons.items(), key=lambda kv: -kv[1]))
            self.note("budget_wait", f"writes waited {totals.waited - waited0:.0f} s for the "
                      f"vendors' rate budgets, summed over threads (longest wait "
                      f"{totals.longest:.1f} s; {reasons})")

    # --- recoveries on rows --------------------------------------------------------------

    def mark_rows(self, act: Action, consumer_ids: list[str]) -> Job:
        if not consumer_ids:
            raise BadArgument(f"{act} needs --consumer ID (one or more)")
        distributing = self.job.status in (State.DISTRIBUTE_PARTIAL, State.DISTRIBUTE_FAILED)
        field = "distribute_status" if distributing else "validate_status"
        status = (RowStatus.MANUALLY_CONFIRMED if act == Action.MANUAL_CONFIRM
                  else RowStatus.SKIPPED)
        for cid in consumer_ids:
            self.consumer(cid)
            row = self.job.row(cid)
            if row is None:
                raise BadArgument(f"consumer {cid} is not part of job {self.job.job_id}")
            if getattr(row, field) in DONE_ROW:
                raise BadArgument(f"consumer {cid} is already {getattr(row, field)}")
        for cid in consumer_ids:
            extra: dict[str, Any] = {field: status, "detail": f"{act} by {self.e.actor}"}
            if distributing and act == Action.MANUAL_CONFIRM:
                extra["holds"] = "new"  # runbook 6c option B: the operator pushed it by hand
            if distributing and act == Action.SKIP_CONSUMER:
                extra["validate_status"] = RowStatus.SKIPPED
            self.set_row(cid, **extra)
        self.move(act, f"{', '.join(consumer_ids)} {status}", data={"consumers": consumer_ids})
        # Re-evaluate without touching other rows: the stage resumes only if every row is done.
        if self.job.status == State.DISTRIBUTING:
            outcome = _outcome([r.distribute_status for r in self.job.consumers])
            job = self.move(outcome, f"distribution {outcome}")
            if job.status == State.DISTRIBUTED:
                return self.advance(act)
            return job
        outcome = _outcome([r.validate_status for r in self.job.consumers])
        return self.move(outcome, f"validation {outcome}")

    # --- stage 3: revoke -----------------------------------------------------------------

    def proceed_revoke(self, ticket: str | None, confirm: str | None) -> Job:
        if self.job.status in (State.VALIDATED, State.VALIDATE_PARTIAL):
            if not ticket or not ticket.strip():
                raise GateRefused("proceed_revoke needs --ticket with the ticket id "
                                  "(for example ROT-2026-05-" + self.cred.name + ")")
            if confirm != self.cred.name:
                raise GateRefused(f"proceed_revoke needs --confirm {self.cred.name} "
                                  "(the credential's name typed back)")
            self.gate(Action.PROCEED_REVOKE)
            value = self._new_value()
            todo = self._rows(lambda r: r.validate_status == RowStatus.SUCCEEDED)
            self._check_rows(todo, value, "live", settle=False)
            regressed = [r.consumer_id for r, _ in todo
                         if (row := self.job.row(r.consumer_id)) is not None
                         and row.validate_status != RowStatus.SUCCEEDED]
            unvalidated = [r.consumer_id for r in self.job.consumers
                           if r.validate_status not in DONE_ROW]
            if unvalidated and not self.job.force_revoke:
                if self.job.status == State.VALIDATED:
                    outcome = _outcome([r.validate_status for r in self.job.consumers])
                    return self.move(outcome, "re-check before revoke failed; regressed: "
                                     + ", ".join(regressed))
                self.flush_rows()
                raise GateRefused(f"not every consumer is validated ({', '.join(unvalidated)}); "
                                  "revoking now needs a job created with --force-revoke")

            def record(job: Job) -> None:
                job.ticket = ticket.strip() if ticket else None

            self.move(Action.PROCEED_REVOKE, f"revoking the old value (ticket {ticket})",
                      data={"ticket": ticket, "unvalidated_consumers": unvalidated},
                      mutate=record)
        return self.revoke()

    def revoke(self) -> Job:
        self.hold()
        self.crash("before_revoke")
        try:
            current = self._current()
        except (VendorError, InputError) as exc:
            return self.move(Outcome.FAILED, f"revoke failed: {exc}")
        if fingerprint(current) == self.job.new_fingerprint:
            return self._finish_revoke("the vault already holds the new value")
        try:
            new = self._new_value()
        except (VendorError, InputError) as exc:
            return self.move(Outcome.FAILED, f"revoke failed: {exc}")
        if self.vendor.CAN_REVOKE:
            if self.job.old_auth_id is None:
                return self.move(Outcome.FAILED, "revoke failed: the old value's auth id is "
                                 f"unknown ({self.vault.describe()}__AUTH_ID is empty); revoke "
                                 "it at the vendor, then mark_manually_revoked --ticket")
            old_id = self.job.old_auth_id
            try:
                revoked_now = self.retry().run(
                    lambda: self.vendor.revoke(old_id, using=new, value=current))
            except VendorError as exc:
                return self.move(Outcome.FAILED, f"revoke failed: {exc} "
                                 f"(old_auth_id {self.job.old_auth_id})")
            detail = "old value revoked" if revoked_now else "old value was already revoked (404)"
        else:
            try:
                live = self.retry().run(lambda: self.vendor.is_live(current))
            except VendorError as exc:
                return self.move(Outcome.FAILED, f"revoke check failed: {exc}")
            if live:
                return self.move(Outcome.FAILED, f"manual_required: {self.cred.vendor} cannot "
                                 "revoke by API; delete the old token in the vendor's dashboard, "
                                 "then retry_revoke (or mark_manually_revoked --ticket)")
            detail = "old value is refused by the vendor"
        self.crash("after_revoke")
        return self._finish_revoke(detail)

    def _finish_revoke(self, detail: str) -> Job:
        self._promote()
        self.crash("after_promote")

        def settle(job: Job) -> None:
            for debt in job.revocation_debt:
                if debt.fingerprint == job.old_fingerprint and debt.settled_at is None:
                    debt.settled_at = self.e.now()

        return self.move(Outcome.OK, f"{detail}; vault promoted", mutate=settle)

    def mark_manually_revoked(self, ticket: str | None) -> Job:
        if not ticket or not ticket.strip():
            raise GateRefused("mark_manually_revoked needs --ticket with the ticket id")
        if self.job.flow_type == Flow.OPERATIONAL:
            self._promote()

        def record(job: Job) -> None:
            job.ticket = ticket.strip()

        return self.move(Action.MARK_MANUALLY_REVOKED, f"revoked by hand (ticket {ticket})",
                         data={"ticket": ticket}, mutate=record)

    # --- leaving early -------------------------------------------------------------------

    def residual(self) -> dict[str, Any]:
        """Which consumer holds which value, and which tokens are orphaned (runbook 6f)."""
        minted = self.job.new_fingerprint is not None
        holds = {r.consumer_id: r.holds for r in self.job.consumers}
        orphaned = []
        if self._superseded():
            # Every consumer was proven on the new value: the old one is what nobody needs.
            orphaned.append({"auth_id": self.job.old_auth_id,
                             "fingerprint": self.job.old_fingerprint,
                             "why": "old value superseded: every consumer holds the new value, "
                                    "and the old one is still live at the vendor"})
        elif minted:
            orphaned.append({"auth_id": self.job.new_auth_id,
                             "fingerprint": self.job.new_fingerprint,
                             "why": "new value minted and not revoked; it is in the vault's "
                                    "pending slot"})
        steps = {
            State.MINTED: "delete the new token from the vault's pending slot and at the vendor",
            State.DISTRIBUTE_PARTIAL: "sync every consumer holding the new value back to the "
                                      "old one, then delete the new token",
            State.VALIDATED: "consumers hold the new value and the old one is still live: "
                             "revoke the old token at the vendor by hand",
        }
        return {"from_state": str(self.job.status), "consumers": holds,
                "old_value": {"auth_id": self.job.old_auth_id,
                              "fingerprint": self.job.old_fingerprint, "live": True},
                "orphaned_tokens": orphaned,
                "next_step": steps.get(self.job.status, "check the consumers listed above "
                                       "against runbook section 6f")}

    def _superseded(self) -> bool:
        """Aborting from validated: the new value is in use everywhere; the old one is the debt."""
        return self.job.status == State.VALIDATED and self.job.new_fingerprint is not None

    def _promote_for_abort(self) -> str:
        """The vault must name the value consumers use, or the next rotation verifies (and the
        operator revokes) the wrong one."""
        try:
            if not self._promote():
                return "the vault's pending slot no longer holds this job's value; check the vault"
        except VendorError as exc:
            return f"the vault could not be promoted ({exc}); promote the pending value by hand"
        return "the vault now holds the new value as current"

    def abort(self) -> Job:
        residual = self.residual()
        superseded = self._superseded()
        if superseded:
            residual["next_step"] += "; " + self._promote_for_abort()

        def record(job: Job) -> None:
            job.report["residual"] = residual
            if superseded and job.old_fingerprint is not None:
                job.revocation_debt.append(Debt(
                    auth_id=job.old_auth_id, fingerprint=job.old_fingerprint,
                    reason="aborted from validated: superseded by the new value, not revoked",
                    since=self.e.now()))
            elif not superseded and job.new_fingerprint is not None:
                job.revocation_debt.append(Debt(
                    auth_id=job.new_auth_id, fingerprint=job.new_fingerprint,
                    reason=f"aborted from {job.status}: minted, not revoked",
                    since=self.e.now()))

        return self.move(Action.ABORT, residual["next_step"], data={"residual": residual},
                         mutate=record)

    def rollback(self) -> Job:
        """Put the old value back on every consumer, then revoke the new token."""
        try:
            old = self._current()
        except (VendorError, InputError) as exc:
            return self.note("rollback_failed", f"cannot read the old value: {exc}")
        # Rows still on the old value (never written, or refused outright) are left alone: a
        # consumer that refused the new value (a deleted app) would refuse the old one too.
        todo = self._rows(lambda r: r.distribute_status != RowStatus.SKIPPED and r.holds != "old")

        def write(consumer: Consumer) -> tuple[RowStatus, str]:
            target = self.target(consumer)
            try:
                self.retry(getattr(target, "backoff_hint", None)).run(lambda: target.write(old))
            except VendorError as exc:
                return RowStatus.FAILED, str(exc)
            return RowStatus.SUCCEEDED, "rolled back to the old value"

        failures: list[str] = []

        def done(consumer: Consumer, result: tuple[RowStatus, str]) -> None:
            status, detail = result
            if status == RowStatus.SUCCEEDED:
                self.set_row(consumer.consumer_id, holds="old", detail=detail)
            else:
                failures.append(consumer.consumer_id)
                self.set_row(consumer.consumer_id, holds="unknown", detail=f"rollback: {detail}")

        self._fan_out([c for _, c in todo], write, done, spends=True)
        if failures:
            return self.note("rollback_failed", "could not restore the old value on "
                             + ", ".join(sorted(failures)) + "; run rollback again",
                             {"failed": sorted(failures)})
        new_state = self._revoke_new(old)
        self.retry().run(self.vault.clear_pending)

        def record(job: Job) -> None:
            job.report["rollback"] = {"new_token": new_state}
            if new_state not in ("revoked", "already revoked") and job.new_fingerprint is not None:
                job.revocation_debt.append(Debt(
                    auth_id=job.new_auth_id, fingerprint=job.new_fingerprint,
                    reason=f"rolled back; new token {new_state}", since=self.e.now()))

        return self.move(Action.ROLLBACK, f"every consumer back on the old value; new token "
                         f"{new_state}", data={"new_token": new_state}, mutate=record)

    def _revoke_new(self, old: SecretStr) -> str:
        self.hold()
        if self.job.new_fingerprint is None:
            return "never minted"
        pending = self._own_pending()
        new = pending.value if pending is not None else None
        if not self.vendor.CAN_REVOKE or self.job.new_auth_id is None:
            return "left for manual revocation"
        new_id = self.job.new_auth_id
        try:
            gone = self.retry().run(lambda: self.vendor.revoke(
                new_id, using=old, value=new or old))
        except VendorError as exc:
            return f"not revoked ({exc})"
        return "revoked" if gone else "already revoked"

    # --- revocation flow -----------------------------------------------------------------

    def run_revocation(self, act: Action, *, consumers: list[str], ticket: str | None) -> Job:
        if act == Action.ABORT:
            return self.abort()
        if act == Action.MARK_MANUALLY_REVOKED:
            self.mark_manually_revoked(ticket)
        elif act == Action.CONFIRM_LEAK_RESOLVED:
            return self.confirm_leak_resolved()
        elif self.job.status in (State.REV_INIT, State.REV_REVOKE_FAILED):
            self.gate(act)
            self.move(act, "revoking at the vendor")
        while True:
            status = self.job.status
            if status == State.REV_REVOKING:
                self.emergency_revoke()
            elif status == State.REV_REVOKED:
                self.move(Outcome.OK, "checking every consumer is locked out")
            elif status == State.REV_VALIDATING:
                self.lockout_checks()
            else:
                return self.job

    def emergency_revoke(self) -> None:
        self.hold()
        try:
            current = self._current()
            auth_id = self._old_auth_id(None)
            if self.job.old_fingerprint is None or self.job.old_fingerprint == fingerprint(current):
                self.job.old_fingerprint = fingerprint(current)
            else:
                # Resumed after the roll already happened: the vault holds the rolled value.
                self.move(Outcome.OK, "already rolled at the vendor")
                return
            if self.vendor.CAN_ROLL or self.vendor.CAN_REVOKE:
                try:
                    detail = self._kill(current, auth_id)
                except AuthRejected:
                    # The vendor refuses the value we authenticate with: if it refuses it
                    # outright, the old value is already dead, which is all this flow is for
                    # (a crash after a roll whose value was never saved, or an out-of-band
                    # revoke). Anything else (a scope problem) stays a failure.
                    if self.retry().run(lambda: self.vendor.is_live(current)):
                        raise
                    detail = ("the old value is already refused by the vendor; the vault still "
                              "holds it, so put a fresh value there by hand (a roll whose "
                              "value was not saved cannot be recovered)")
            elif self.retry().run(lambda: self.vendor.is_live(current)):
                self.move(Outcome.FAILED, f"manual_required: {self.cred.vendor} cannot revoke "
                          "by API; delete the token in the vendor's dashboard, then retry_revoke")
                return
            else:
                detail = "the vendor refuses the value"
        except (VendorError, InputError) as exc:
            self.move(Outcome.FAILED, f"revoke failed: {exc}")
            return
        old_fp = self.job.old_fingerprint

        def record(job: Job) -> None:
            job.old_fingerprint = old_fp
            job.old_auth_id = auth_id

        self.move(Outcome.OK, detail, mutate=record)

    def _kill(self, current: SecretStr, auth_id: str | None) -> str:
        """Roll (or revoke) the old value at the vendor; the rolled value goes to the vault."""
        if self.vendor.CAN_ROLL:
            rolled = self.vendor.roll(auth_id, current)
            redact.register(rolled.value)
            self.crash("after_roll")
            self.retry().run(lambda: self.vault.set_current(rolled.value,
                                                            rolled.auth_id or auth_id))
            return "rolled at the vendor: the old value is dead"
        self.retry().run(lambda: self.vendor.revoke(auth_id, using=current, value=current))
        return "revoked at the vendor"

    def lockout_checks(self) -> None:
        todo = self._rows(lambda r: r.validate_status != RowStatus.SKIPPED
                          or r.detail != "active: false in the manifest")
        self._check_rows(todo, None, "revoked", settle=True)
        leaking = self.leaking()
        if leaking:
            self.move(Outcome.FAILED, "SEV1: still accepting the revoked value: "
                      + ", ".join(leaking), data={"leaking_consumers": leaking})
            return
        self.move(Outcome.OK, self._lockout_detail(), data={"unchecked": self._unchecked()})

    def _unchecked(self) -> list[str]:
        """Consumers no automatic check could prove locked out (manual or readback checks)."""
        return [r.consumer_id for r in self.job.consumers
                if r.validate_status in (RowStatus.MANUAL_REQUIRED, RowStatus.SKIPPED)
                and r.detail != "active: false in the manifest"]

    def _lockout_detail(self) -> str:
        unchecked = self._unchecked()
        if not unchecked:
            return "every consumer is locked out"
        return ("every checked consumer is locked out; verify by hand: " + ", ".join(unchecked))

    def leaking(self) -> list[str]:
        return [r.consumer_id for r in self.job.consumers if r.validate_status == RowStatus.FAILED]

    def confirm_leak_resolved(self) -> Job:
        todo = self._rows(lambda r: r.validate_status == RowStatus.FAILED)
        self._check_rows(todo, None, "revoked", settle=False)
        leaking = self.leaking()
        if leaking:
            self.note("confirm_leak_resolved_refused", "still accepting the revoked value: "
                      + ", ".join(leaking), {"leaking_consumers": leaking})
            raise LeakStillOpen(self.job, leaking)
        self.move(Action.CONFIRM_LEAK_RESOLVED, "re-checked: every consumer is locked out")
        return self.move(Outcome.OK, self._lockout_detail(), data={"unchecked": self._unchecked()})

    # --- testing flow --------------------------------------------------------------------

    def dry_run(self) -> Job:
        """Verify the current value and every consumer; write nothing anywhere but the job."""
        if self.job.status != State.VERIFYING:
            self.move(Action.VERIFY, "dry run: checking the current value and every consumer")
        try:
            current = self._current()
            identity = self.retry().run(lambda: self.vendor.verify(current))
        except (VendorError, InputError) as exc:
            return self.move(Outcome.FAILED, f"verify failed: {exc}")
        report: dict[str, Any] = {"vendor": f"current value accepted for {identity.subject}",
                                  "consumers": {}}
        todo = self._rows(lambda r: r.distribute_status != RowStatus.SKIPPED)
        checker = self.wiring.checker()

        def probe(consumer: Consumer) -> tuple[str, CheckResult]:
            target = self.target(consumer)
            try:
                where = target.probe()
            except VendorError as exc:
                return f"target: {exc}", CheckResult(RowStatus.FAILED, f"target: {exc}")
            return where, checker.check_once(consumer, target, current, "live")

        def done(consumer: Consumer, result: tuple[str, CheckResult]) -> None:
            where, check = result
            self.set_row(consumer.consumer_id, validate_status=check.status,
                         detail=check.detail)
            report["consumers"][consumer.consumer_id] = {"target": where,
                                                         "check": str(check.status),
                                                         "detail": check.detail}

        self._fan_out([c for _, c in todo], probe, done,
                      lambda reason: (reason, CheckResult(RowStatus.FAILED, reason)))
        failed = sorted(cid for cid, r in report["consumers"].items()
                        if r["check"] == RowStatus.FAILED)

        def record(job: Job) -> None:
            job.report["dry_run"] = report

        if failed:
            return self.move(Outcome.PARTIAL, "dry run: failing consumers: " + ", ".join(failed),
                             mutate=record)
        return self.move(Outcome.OK, "dry run passed; nothing was changed", mutate=record)


class LeakStillOpen(InputError):
    """confirm_leak_resolved refused: some consumer still accepts the revoked value."""

    exit_code = 1

    def __init__(self, job: Job, leaking: list[str]) -> None:
        self.job = job
        super().__init__("confirm_leak_resolved refused: still accepting the revoked value: "
                         + ", ".join(leaking))


def _stale(lease: Lease, now: Any) -> bool:
    """Expired, or held by a process of this host that has died (a crashed run)."""
    if lease.renewed_at + LEASE_TTL < now:
        return True
    host, _, rest = lease.owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _outcome(statuses: Iterable[RowStatus]) -> Outcome:
    values = list(statuses)
    if all(s in DONE_ROW for s in values):
        return Outcome.OK
    if all(s == RowStatus.FAILED for s in values):
        return Outcome.FAILED
    return Outcome.PARTIAL


def _run_url() -> str | None:
    server = os.environ.get("GITHUB_SERVER_URL")
    repo = os.environ.get("GITHUB_REPOSITORY")
    run = os.environ.get("GITHUB_RUN_ID")
    if server and repo and run:
        return f"{server}/{repo}/actions/runs/{run}"
    return None


def stage_failed(job: Job) -> bool:
    """Whether the CLI should exit 1: the stage ended in a failed or partial state."""
    return job.status.endswith(("_failed", "_partial")) or job.status == State.REV_LEAKED

