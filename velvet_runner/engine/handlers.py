"""Which handler runs each (flow, action): the stage boundaries as data, beside
`machine.TABLES`. A test checks that every action a table allows has a handler here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from velvet_runner.machine import Action, Flow
from velvet_runner.records import Job

from . import dry_run, operational, recovery, revocation, revoke
from .context import Args, Run

Handler = Callable[[Run, Action, Args], Job]

A, F = Action, Flow

HANDLERS: Mapping[tuple[Flow, Action], Handler] = MappingProxyType({
    (F.OPERATIONAL, A.VERIFY): operational.verify,
    (F.OPERATIONAL, A.RETRY_VERIFY): operational.verify,
    (F.OPERATIONAL, A.PROCEED_MINT): operational.proceed_mint,
    (F.OPERATIONAL, A.RETRY_DISTRIBUTE): operational.retry_distribute,
    (F.OPERATIONAL, A.RETRY_VALIDATION): operational.retry_validation,
    (F.OPERATIONAL, A.MANUAL_CONFIRM): recovery.mark_rows,
    (F.OPERATIONAL, A.SKIP_CONSUMER): recovery.mark_rows,
    (F.OPERATIONAL, A.PROCEED_REVOKE): revoke.proceed_revoke,
    (F.OPERATIONAL, A.RETRY_REVOKE): revoke.retry_revoke,
    (F.OPERATIONAL, A.MARK_MANUALLY_REVOKED): recovery.mark_manually_revoked,
    (F.OPERATIONAL, A.ABORT): recovery.abort,
    (F.OPERATIONAL, A.ROLLBACK): recovery.rollback,
    (F.REVOCATION, A.REVOKE): revocation.revoke,
    (F.REVOCATION, A.RETRY_REVOKE): revocation.revoke,
    (F.REVOCATION, A.MARK_MANUALLY_REVOKED): revocation.mark_manually_revoked,
    (F.REVOCATION, A.CONFIRM_LEAK_RESOLVED): revocation.confirm_leak_resolved,
    (F.REVOCATION, A.ABORT): recovery.abort,
    (F.TESTING, A.VERIFY): dry_run.dry_run,
    (F.TESTING, A.ABORT): recovery.abort,
})
