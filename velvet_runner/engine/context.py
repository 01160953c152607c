"""One stage run: the job's journal, its credential, the adapters and the injected seams.

Handlers (`operational`, `recovery`, `revocation`, `dry_run`) are module functions of a `Run`;
the values they work with are read here (from the vault, never from the record) and passed
explicitly to whatever needs them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from velvet_runner import ledger, redact
from velvet_runner.client import RATE_PATIENCE, RetryPolicy
from velvet_runner.errors import BadArgument, InputError, VelvetError, VendorError
from velvet_runner.machine import Action, stage_command
from velvet_runner.manifest import Consumer, Credential
from velvet_runner.records import ConsumerRow, Job, Life, Role, Token, fingerprint
from velvet_runner.targets.base import Target
from velvet_runner.vault import Pending, Vault
from velvet_runner.vendors.base import Vendor

from .services import Services

CRASH_EXIT = 99


@dataclass(frozen=True)
class Args:
    """What the operator passed to `velvet stage`."""

    consumers: list[str] = field(default_factory=list)
    ticket: str | None = None
    confirm: str | None = None
    accept_debt: bool = False
    preempted_by: str | None = None  # abort: the emergency revocation taking over
    accept_unregistered: bool = False  # proceed_revoke: unregistered holders, on the ticket
    accept_still_used: bool = False  # proceed_revoke: use after the switch, on the ticket


class Run:
    """One stage of one job, handed its services (never the engine that made it)."""

    def __init__(self, services: Services, job: Job, cred: Credential) -> None:
        self.services = services
        self.cred = cred
        self.wiring = services.wiring
        self.progress = services.progress
        self.journal = services.journal(job)
        self.log = self.journal.log
        self._vendor: Vendor | None = None
        self._vault: Vault | None = None
        self._targets: dict[str, Target] = {}
        self._lock = threading.Lock()
        # The value this run minted and the vault took: passed along within the process
        # instead of being read back from the vault by each phase.
        self.minted: SecretStr | None = None

    @property
    def job(self) -> Job:
        return self.journal.job

    def now(self) -> datetime:
        return self.services.now()

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

    def rows(self, select: Callable[[ConsumerRow], bool]) -> list[tuple[ConsumerRow, Consumer]]:
        out = []
        for row in self.job.consumers:
            consumer = self.cred.consumer(row.consumer_id)
            if consumer is not None and select(row):
                out.append((row, consumer))
        return out

    def retry(self, hint: Callable[[], float | None] | None = None, *,
              patient: bool = False) -> RetryPolicy:
        """The retry policy for one call; `patient` where a value exists only in this process
        until the call succeeds (a rolled value on its way to the vault)."""
        # The patience and a probe's wait are vendor time: on the budgets' faster clock (the
        # sandbox replaying an hour in a minute) they are as much shorter.
        scale = self.wiring.budgets.time_scale

        def probe() -> float | None:
            wait = hint() if hint is not None else None
            return None if wait is None else wait / scale

        return RetryPolicy(attempts=8 if patient else 4, cap=15.0 if patient else 5.0,
                           sleep=self.wiring.sleep, rate_limit_probe=probe if hint else None,
                           say=self.progress.wait, max_rate_wait=RATE_PATIENCE / scale)

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.retry().run(fn)

    def crash_due(self, point: str) -> bool:
        return self.services.crash_at == point

    def crash(self, point: str) -> None:
        """Exit hard at a side-effect boundary when VELVET_CRASH_AT names it (crash tests)."""
        if self.crash_due(point):
            self.log.warning("VELVET_CRASH_AT=%s: exiting hard", point)
            os._exit(CRASH_EXIT)

    def command(self, action: Action, *, ticket: str | None = None) -> str:
        """The command an operator runs next on this job (named in failure messages)."""
        return stage_command(self.job.job_id, action, ticket=ticket)

    def gate(self, act: Action) -> None:
        gate = self.services.gate
        if gate is None:
            return
        approval = gate.check(self.job, act, self.cred)
        if approval:
            self.journal.note("approval", f"{act} approved by {approval.get('approver')}",
                              approval)

    # --- values (from the vault; registered for masking the moment they are read) --------

    def current(self) -> SecretStr:
        current: SecretStr | None = self.call(self.vault.current)
        if current is None or not current.get_secret_value().strip():
            # An empty value would reach the vendor as a malformed header and read as an
            # outage: it is the vault's content that is wrong.
            empty = "" if current is None else " (an empty one)"
            raise InputError(f"the vault {self.vault.describe()} holds no current value{empty}")
        redact.register(current)
        return current

    def vault_auth_id(self, from_vendor: str | None = None) -> str | None:
        try:
            companion = self.call(self.vault.auth_id)
        except VendorError:
            companion = None
        return companion or from_vendor

    def own_pending(self) -> Pending | None:
        """The vault's pending value when it belongs to this job (registered for masking)."""
        pending: Pending | None = self.call(self.vault.pending)
        if pending is None or pending.job_id != self.job.job_id:
            return None
        redact.register(pending.value)
        return pending

    def new_value(self) -> SecretStr:
        """This job's new value: as minted in this process, or read from the vault's pending
        slot (a resumed stage)."""
        if self.minted is not None and fingerprint(self.minted) == self.job.new_fingerprint:
            return self.minted
        pending = self.own_pending()
        if pending is None:
            raise InputError(f"the vault's pending slot no longer holds job {self.job.job_id}'s "
                             "value; abort this job")
        if fingerprint(pending.value) != self.job.new_fingerprint:
            raise InputError("the vault's pending value does not match the minted one")
        self.minted = pending.value
        return pending.value

    def value_of(self, token: Token) -> SecretStr | None:
        """The value of a ledger entry where Velvet still holds it (vault current/pending)."""
        if token.fingerprint is None:
            return None
        for value in (self._read(self.vault.current), self._read(self._pending_value)):
            if value is not None and fingerprint(value) == token.fingerprint:
                redact.register(value)
                return value
        return None

    def read_current(self) -> SecretStr | None:
        """The vault's current value, or None where it cannot be read (registered for masking)."""
        value = self._read(self.vault.current)
        if value is not None:
            redact.register(value)
        return value

    def _pending_value(self) -> SecretStr | None:
        pending = self.vault.pending()
        return pending.value if pending is not None else None

    def _read(self, read: Callable[[], SecretStr | None]) -> SecretStr | None:
        try:
            value: SecretStr | None = self.call(read)
        except VendorError:
            return None
        return value

    def promote(self) -> bool:
        """Make this job's pending value current; False when the slot holds no value of ours."""
        self.journal.hold()
        pending = self.own_pending()
        if pending is None:
            return False
        self.call(lambda: self.vault.promote(pending.value, self.job.new_auth_id))
        return True

    def settle_elsewhere(self, job_id: str, token: Token, evidence: str) -> None:
        """A token another job lists as debt (the job this one preempted) is proven dead: say
        so on that job's ledger too. Best effort: `velvet stuck --settle-debt` also clears it."""
        try:
            other = self.services.store.find(job_id)
        except VelvetError as exc:
            self.log.warning("could not settle job %s's debt: %s", job_id, exc)
            return
        match = next((t for t in other.ledger if t.life == Life.DEBT and (
            (token.auth_id is not None and t.auth_id == token.auth_id)
            or (token.fingerprint is not None and t.fingerprint == token.fingerprint))), None)
        if match is not None:
            self.services.journal(other).settle_debt(
                match.token_id, f"{evidence} (proven by job {self.job.job_id})")

    def entry(self, role: Role) -> Token | None:
        return self.job.newest(role)

    def ensure_old(self, value: SecretStr, *, defer: bool = True) -> str:
        """The ledger entry of the value the job starts from (made at verify; records written
        before the ledger existed get it on their next stage)."""
        old = self.job.newest("old")
        if old is not None:
            return old.token_id
        at, auth_id = self.now(), self.vault_auth_id()
        fp = fingerprint(value)
        holders = [ledger.VAULT_CURRENT] + [r.consumer_id for r in self.job.consumers
                                            if r.holds == "old"]

        def add(job: Job) -> None:
            if job.newest("old") is None:
                ledger.add(job, "old", Life.CURRENT, at, auth_id=auth_id, fingerprint=fp,
                           held_by=holders)

        self.journal.change(add, defer=defer)
        return "old"
