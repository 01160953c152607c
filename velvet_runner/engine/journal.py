"""The journal: the only writer of a job's record and ledger during a stage.

Every write is one compare-and-swap commit carrying the rows as this run sees them, the
transitions queued since the last write, ledger changes, and the stage lease. A transition with
no side effect before the next one may be queued (`defer=True`) so the two land in one commit:
on GitHub each commit is a push, and a push costs about a second.

Ledger changes follow the write-ahead rule: `intend`/`kill` are committed before the side effect
they announce; the outcome rides with the next write, which always comes right after.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from velvet_runner import ledger
from velvet_runner.errors import ConflictError, VelvetError
from velvet_runner.logs import job_logger
from velvet_runner.machine import IN_PROGRESS, Action, State, Trigger, step
from velvet_runner.records import ConsumerRow, Event, Job, Lease, Life, Role, Token

from .progress import Progress

if TYPE_CHECKING:
    from velvet_runner.store import Store

LEASE_TTL = timedelta(minutes=2)
# Terminal events page people; rev_done too, so the SEV1 channel hears the leak is closed.
NOTIFY_STATES = frozenset({State.DONE, State.ABORTED, State.REV_LEAKED, State.REV_DONE})

Change = Callable[[Job], None]


class Notifier(Protocol):
    def job_changed(self, job: Job, previous: State) -> list[dict[str, Any]]: ...


class Journal:
    """Writes one job's record. It is handed the services it needs; the engine
    (`Services.journal`), the Actions gate and the dispatcher each open one, so no other code
    writes a job record."""

    def __init__(self, job: Job, store: Store, *, now: Callable[[], datetime], actor: str,
                 notifier: Notifier | None = None,
                 on_transition: Callable[[Job, Event], None] | None = None,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.now = now
        self.actor = actor
        self.notifier = notifier
        self.on_transition = on_transition
        self.progress = progress if progress is not None else Progress()
        self.job = job
        self.log = job_logger("engine", job.job_id)
        self.lock = threading.Lock()  # guards the in-memory rows during a fan-out
        self._index_of: list[ConsumerRow] | None = None
        self._index: dict[str, ConsumerRow] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held = False  # the lease is ours on the branch
        self._taking: Action | None = None  # the lease to take with the next write
        self._saved = job.status  # the status on the branch as of our last write (the CAS)
        self._queued: list[Callable[[Job], Event | None]] = []  # not yet committed
        # intents this run made (no earlier run acted on them)
        self.announced: set[str] = set()
        self.stopping = False  # recording an interruption: no further checkpoints
        self.checkpoints = True  # off while a fan-out saves rows from its loop

    def create(self) -> tuple[Job, bool]:
        """Write the new job with its lock (and idempotency key); (stored job, created). A
        repeated idempotency key returns the job it made before."""
        stored, created = self.store.create(self.job)
        self.job = stored
        self._saved = stored.status
        return stored, created

    # --- transitions and events ----------------------------------------------------------

    def move(self, trigger: Trigger, detail: str | None = None, *,
             data: dict[str, Any] | None = None, mutate: Change | None = None,
             defer: bool = False) -> Job:
        """One transition; written now, or with the next write when `defer` (nothing may
        touch a vendor or consumer in between: the branch must show where the job stands
        before any side effect)."""
        at = self.now()
        rolling_back = self.job.rollback is not None

        def transition(job: Job) -> Event:
            target = step(job.flow_type, job.status, trigger, force_revoke=job.force_revoke,
                          rolling_back=rolling_back)
            if mutate is not None:
                mutate(job)
            event = Event(at=at, actor=self.actor, action=str(trigger),
                          from_state=str(job.status), to_state=str(target), detail=detail,
                          data=data or {})
            job.events.append(event)
            job.status = target
            return event

        transition(self.job)  # refuses a move the machine does not allow, before writing
        self._queued.append(transition)
        return self.job if defer else self._write()

    def note(self, action: str, detail: str, data: dict[str, Any] | None = None, *,
             mutate: Change | None = None, defer: bool = False, actor: str | None = None,
             at: datetime | None = None) -> Job:
        """An event without a transition (a refusal, a failed rollback attempt, an approval, a
        dispatch); written now, or with the next write when `defer` (a report, never an
        intent). `actor`/`at`: who did it and when, where that is not this run (an approver)."""
        when = at or self.now()
        who = actor or self.actor

        def add(current: Job) -> None:
            if mutate is not None:
                mutate(current)
            current.events.append(Event(at=when, actor=who, action=action,
                                        from_state=str(current.status),
                                        to_state=str(current.status), detail=detail,
                                        data=data or {}))

        self.log.info("%s: %s", action, detail)
        if defer:
            self._queued.append(add)
            return self.job
        return self._write(add)

    def change(self, mutate: Change, *, defer: bool = False) -> Job:
        """A change to the record with no event (ledger outcomes, rollback progress)."""
        def apply(job: Job) -> None:
            mutate(job)

        mutate(self.job)
        self._queued.append(apply)
        return self.job if defer else self._write()

    def flush_rows(self) -> None:
        self._write()

    # --- the ledger ----------------------------------------------------------------------

    def token(self, token_id: str) -> Token:
        found = self.job.token(token_id)
        if found is None:  # pragma: no cover - the handlers only name entries they made
            raise KeyError(token_id)
        return found

    def intend(self, role: Role, intent: str, *, label: str | None = None,
               auth_id: str | None = None, commit: bool = True) -> str:
        """Announce a token about to be created (mint, roll, regenerate); its id."""
        at = self.now()
        token_id = ledger.next_id(self.job, role)

        def add(job: Job) -> None:
            if job.token(token_id) is None:
                ledger.add(job, role, Life.INTENDED, at, label=label, auth_id=auth_id,
                           intent=intent)

        self.change(add, defer=not commit)
        self.announced.add(token_id)
        return token_id

    def withdraw(self, token_id: str) -> None:
        """Take back an intent whose side effect certainly did not happen (the call was never
        made, or the vendor refused it outright); with the next write."""
        def drop(job: Job) -> None:
            job.ledger = [t for t in job.ledger
                          if not (t.token_id == token_id and t.life == Life.INTENDED)]

        self.change(drop, defer=True)
        self.announced.discard(token_id)

    def kill(self, token_id: str, intent: str = "revoke", *, commit: bool = True,
             reopen: str | None = None) -> None:
        """Announce a side effect that kills a token (revoke, roll, regenerate). A token
        recorded as proven dead is reopened only with `reopen`: why that proof did not hold."""
        at = self.now()

        def mark(job: Job) -> None:
            token = job.token(token_id)
            if token is None or (token.life == Life.PROVEN_DEAD and reopen is None):
                return
            ledger.set_life(token, Life.REVOKING, at, evidence=reopen)
            token.intent = intent

        self.change(mark, defer=not commit)

    def settle(self, token_id: str, life: Life, *, evidence: str | None = None,
               defer: bool = True, **fields: Any) -> None:
        """Record an outcome for a token; by default with the next write."""
        at = self.now()

        def apply(job: Job) -> None:
            token = job.token(token_id)
            if token is None:
                return
            for key, value in fields.items():
                setattr(token, key, value)
            if life != Life.REVOKING:
                token.intent = None
            ledger.set_life(token, life, at, evidence=evidence)

        self.change(apply, defer=defer)

    def settle_debt(self, token_id: str, evidence: str, *, ticket: str | None = None) -> None:
        """A token this job lists as debt is proven dead (or, with `ticket`, settled on a
        person's evidence); anything else is left as it is."""
        token = self.job.token(token_id)
        if token is None or token.life != Life.DEBT:
            return
        self.settle(token_id, Life.PROVEN_DEAD, evidence=evidence)
        self.note("debt_settled", f"auth id {token.auth_id}: {evidence}",
                  {"auth_id": token.auth_id, "fingerprint": token.fingerprint,
                   "token_id": token_id, **({"ticket": ticket} if ticket else {})})

    def observe(self, token_id: str, seen: str) -> None:
        """Record what was seen of a token that is not a proof (a refusal at verify); with the
        next write. Never changes its life: death is proven when it is claimed."""
        at = self.now()

        def apply(job: Job) -> None:
            token = job.token(token_id)
            if token is not None:
                token.observed, token.observed_at = seen, at

        self.change(apply, defer=True)

    # --- writing -------------------------------------------------------------------------

    def hold(self) -> None:
        """Make sure the lease is on the branch; called before any side effect."""
        if self._taking is not None:
            self._write()

    def _write(self, change: Change | None = None) -> Job:
        expected, queued, taking = self._saved, list(self._queued), self._taking
        events: list[Event] = []
        ends = [False]

        def apply(current: Job) -> Job:
            self._claim(current, taking)
            if current.status != expected:
                raise ConflictError(f"job {current.job_id} moved from {expected} to "
                                    f"{current.status} while this stage ran; re-run status")
            with self.lock:
                current.consumers = [row.model_copy() for row in self.job.consumers]
            events.clear()
            for transition in queued:
                event = transition(current)
                if event is not None:
                    events.append(event)
            if change is not None:
                change(current)
            ledger.sync_holders(current)
            # The move that brings the job to rest ends the stage: release in that commit.
            ends[0] = bool(events) and current.status not in IN_PROGRESS
            if ends[0] and current.lease is not None and current.lease.owner == self.owner:
                current.lease = None
            return current

        self.job = self.store.update(self.job.credential, self.job.job_id, apply)
        self._queued.clear()
        self._saved = self.job.status
        if taking is not None:
            self._taking, self._held = None, True
        if ends[0]:
            self._held = False
        for event in events:
            self.log.info("%s: %s -> %s%s", event.action, event.from_state, event.to_state,
                          f" ({event.detail})" if event.detail else "")
            if self.on_transition is not None:
                self.on_transition(self.job, event)
        if events and self.job.status in NOTIFY_STATES and self.notifier is not None:
            self._notify(expected)
        # Every committed write is a safe point to stop at (a resume reconciles from here).
        if self.checkpoints and not self.stopping and self.job.status in IN_PROGRESS:
            self.progress.checkpoint()
        return self.job

    def _notify(self, previous: State) -> None:
        """Tell people; a failure is recorded on the job and never changes its outcome."""
        assert self.notifier is not None  # noqa: S101 - checked by the caller
        try:
            results = self.notifier.job_changed(self.job, previous)
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
            self.job = self.store.update(self.job.credential, self.job.job_id, apply)
        except VelvetError as exc:
            self.log.warning("could not release the job's lease: %s", exc)

    def _claim(self, current: Job, taking: Action | None) -> None:
        """Take (when `taking`) or renew this run's lease on `current`, or refuse."""
        lease, now = current.lease, self.now()
        if taking is not None:
            if lease is not None and lease.owner != self.owner and not stale(lease, now):
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

    # --- rows ----------------------------------------------------------------------------

    def row(self, consumer_id: str) -> ConsumerRow | None:
        """The in-memory row of a consumer (callers hold self.lock); O(1), not a scan."""
        rows = self.job.consumers
        if self._index_of is not rows:
            self._index = {}
            for row in rows:
                self._index.setdefault(row.consumer_id, row)
            self._index_of = rows
        return self._index.get(consumer_id)

    def set_row(self, consumer_id: str, **fields: Any) -> None:
        with self.lock:
            row = self.row(consumer_id)
            if row is None:
                return
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = self.now()


def stale(lease: Lease, now: Any) -> bool:
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
