"""The rotation state machine: states, actions, and one transition table per flow.

Pure data and two functions; no I/O. The engine performs side effects and reports what they
achieved as an `Outcome`; operators drive the job with `Action`s. Both are triggers in the same
table, so the whole life of a job reads top to bottom like the runbook's section 5.

In-progress states (`verifying`, `minting`, `distributing`, ...) accept the action that started
them again: a stage interrupted by a crash is resumed by re-running the same action.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType

from velvet_runner.errors import ActionNotAllowed


class Flow(StrEnum):
    OPERATIONAL = "operational"
    REVOCATION = "revocation"
    TESTING = "testing"


class State(StrEnum):
    # operational flow
    INIT = "init"
    VERIFYING = "verifying"
    VERIFY_FAILED = "verify_failed"
    VERIFIED = "verified"
    MINTING = "minting"
    MINT_FAILED = "mint_failed"
    MINTED = "minted"
    DISTRIBUTING = "distributing"
    DISTRIBUTE_PARTIAL = "distribute_partial"
    DISTRIBUTE_FAILED = "distribute_failed"
    DISTRIBUTED = "distributed"
    VALIDATING = "validating"
    VALIDATE_PARTIAL = "validate_partial"
    VALIDATE_FAILED = "validate_failed"
    VALIDATED = "validated"
    REVOKING = "revoking"
    REVOKE_FAILED = "revoke_failed"
    DONE = "done"
    ABORTED = "aborted"
    # revocation flow
    REV_INIT = "rev_init"
    REV_REVOKING = "rev_revoking"
    REV_REVOKE_FAILED = "rev_revoke_failed"
    REV_REVOKED = "rev_revoked"
    REV_VALIDATING = "rev_validating"
    REV_LEAKED = "rev_leaked"
    REV_DONE = "rev_done"


class Action(StrEnum):
    VERIFY = "verify"
    PROCEED_MINT = "proceed_mint"
    PROCEED_REVOKE = "proceed_revoke"
    RETRY_VERIFY = "retry_verify"
    RETRY_DISTRIBUTE = "retry_distribute"
    MANUAL_CONFIRM = "manual_confirm"
    SKIP_CONSUMER = "skip_consumer"
    RETRY_VALIDATION = "retry_validation"
    RETRY_REVOKE = "retry_revoke"
    MARK_MANUALLY_REVOKED = "mark_manually_revoked"
    ABORT = "abort"
    ROLLBACK = "rollback"
    CONFIRM_LEAK_RESOLVED = "confirm_leak_resolved"
    REVOKE = "revoke"


class Outcome(StrEnum):
    """What a stage's side effects achieved; computed by the engine from the consumer rows."""

    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


Trigger = Action | Outcome
Table = Mapping[tuple[State, Trigger], State]

S, A, O = State, Action, Outcome  # noqa: E741 - short names keep the table rows readable

OPERATIONAL: Table = MappingProxyType({
    # stage 1: verify the current value at the vendor
    (S.INIT, A.VERIFY): S.VERIFYING,
    (S.INIT, A.ABORT): S.ABORTED,
    (S.VERIFYING, A.VERIFY): S.VERIFYING,  # resume after a crash
    (S.VERIFYING, A.RETRY_VERIFY): S.VERIFYING,
    (S.VERIFYING, O.OK): S.VERIFIED,
    (S.VERIFYING, O.FAILED): S.VERIFY_FAILED,
    (S.VERIFYING, A.ABORT): S.ABORTED,
    (S.VERIFY_FAILED, A.RETRY_VERIFY): S.VERIFYING,
    (S.VERIFY_FAILED, A.ABORT): S.ABORTED,
    # stage 2: mint, then fan out automatically, then validate automatically
    (S.VERIFIED, A.PROCEED_MINT): S.MINTING,
    (S.VERIFIED, A.ABORT): S.ABORTED,
    (S.MINTING, A.PROCEED_MINT): S.MINTING,
    (S.MINTING, O.OK): S.MINTED,
    (S.MINTING, O.FAILED): S.MINT_FAILED,
    (S.MINTING, A.ABORT): S.ABORTED,
    (S.MINT_FAILED, A.PROCEED_MINT): S.MINTING,  # runbook 6b: a 5xx mint may be retried
    (S.MINT_FAILED, A.ABORT): S.ABORTED,
    (S.MINTED, A.PROCEED_MINT): S.MINTED,
    (S.MINTED, O.OK): S.DISTRIBUTING,
    (S.MINTED, A.ABORT): S.ABORTED,
    (S.MINTED, A.ROLLBACK): S.ABORTED,
    (S.DISTRIBUTING, A.PROCEED_MINT): S.DISTRIBUTING,
    (S.DISTRIBUTING, A.RETRY_DISTRIBUTE): S.DISTRIBUTING,
    (S.DISTRIBUTING, O.OK): S.DISTRIBUTED,
    (S.DISTRIBUTING, O.PARTIAL): S.DISTRIBUTE_PARTIAL,
    (S.DISTRIBUTING, O.FAILED): S.DISTRIBUTE_FAILED,
    (S.DISTRIBUTING, A.ABORT): S.ABORTED,
    (S.DISTRIBUTING, A.ROLLBACK): S.ABORTED,
    (S.DISTRIBUTE_PARTIAL, A.RETRY_DISTRIBUTE): S.DISTRIBUTING,
    (S.DISTRIBUTE_PARTIAL, A.MANUAL_CONFIRM): S.DISTRIBUTING,
    (S.DISTRIBUTE_PARTIAL, A.SKIP_CONSUMER): S.DISTRIBUTING,
    (S.DISTRIBUTE_PARTIAL, A.ROLLBACK): S.ABORTED,
    (S.DISTRIBUTE_PARTIAL, A.ABORT): S.ABORTED,
    (S.DISTRIBUTE_FAILED, A.RETRY_DISTRIBUTE): S.DISTRIBUTING,
    (S.DISTRIBUTE_FAILED, A.ROLLBACK): S.ABORTED,
    (S.DISTRIBUTE_FAILED, A.ABORT): S.ABORTED,
    (S.DISTRIBUTED, A.PROCEED_MINT): S.DISTRIBUTED,
    (S.DISTRIBUTED, A.RETRY_DISTRIBUTE): S.DISTRIBUTED,
    (S.DISTRIBUTED, O.OK): S.VALIDATING,
    (S.DISTRIBUTED, A.ABORT): S.ABORTED,
    (S.DISTRIBUTED, A.ROLLBACK): S.ABORTED,
    (S.VALIDATING, A.PROCEED_MINT): S.VALIDATING,
    (S.VALIDATING, A.RETRY_DISTRIBUTE): S.VALIDATING,
    (S.VALIDATING, A.RETRY_VALIDATION): S.VALIDATING,
    (S.VALIDATING, O.OK): S.VALIDATED,
    (S.VALIDATING, O.PARTIAL): S.VALIDATE_PARTIAL,
    (S.VALIDATING, O.FAILED): S.VALIDATE_FAILED,
    (S.VALIDATING, A.ABORT): S.ABORTED,
    (S.VALIDATING, A.ROLLBACK): S.ABORTED,
    (S.VALIDATE_PARTIAL, A.RETRY_VALIDATION): S.VALIDATING,
    (S.VALIDATE_PARTIAL, A.MANUAL_CONFIRM): S.VALIDATING,
    (S.VALIDATE_PARTIAL, A.SKIP_CONSUMER): S.VALIDATING,
    (S.VALIDATE_PARTIAL, A.PROCEED_REVOKE): S.REVOKING,  # only with force_revoke
    (S.VALIDATE_PARTIAL, A.ROLLBACK): S.ABORTED,
    (S.VALIDATE_PARTIAL, A.ABORT): S.ABORTED,
    (S.VALIDATE_FAILED, A.RETRY_VALIDATION): S.VALIDATING,
    (S.VALIDATE_FAILED, A.MANUAL_CONFIRM): S.VALIDATING,
    (S.VALIDATE_FAILED, A.SKIP_CONSUMER): S.VALIDATING,
    (S.VALIDATE_FAILED, A.ROLLBACK): S.ABORTED,
    (S.VALIDATE_FAILED, A.ABORT): S.ABORTED,
    # stage 3: re-check every consumer, then revoke the old value
    (S.VALIDATED, A.PROCEED_REVOKE): S.REVOKING,
    (S.VALIDATED, O.PARTIAL): S.VALIDATE_PARTIAL,  # a consumer regressed at the re-check
    (S.VALIDATED, O.FAILED): S.VALIDATE_FAILED,
    (S.VALIDATED, A.ROLLBACK): S.ABORTED,
    (S.VALIDATED, A.ABORT): S.ABORTED,
    (S.REVOKING, A.PROCEED_REVOKE): S.REVOKING,
    (S.REVOKING, A.RETRY_REVOKE): S.REVOKING,
    (S.REVOKING, O.OK): S.DONE,
    (S.REVOKING, O.FAILED): S.REVOKE_FAILED,
    (S.REVOKE_FAILED, A.RETRY_REVOKE): S.REVOKING,
    (S.REVOKE_FAILED, A.MARK_MANUALLY_REVOKED): S.DONE,
})

REVOCATION: Table = MappingProxyType({
    # emergency: revoke at the vendor first, then expect every consumer to be locked out
    (S.REV_INIT, A.REVOKE): S.REV_REVOKING,
    (S.REV_INIT, A.ABORT): S.ABORTED,
    (S.REV_REVOKING, A.REVOKE): S.REV_REVOKING,
    (S.REV_REVOKING, A.RETRY_REVOKE): S.REV_REVOKING,
    (S.REV_REVOKING, O.OK): S.REV_REVOKED,
    (S.REV_REVOKING, O.FAILED): S.REV_REVOKE_FAILED,
    (S.REV_REVOKE_FAILED, A.RETRY_REVOKE): S.REV_REVOKING,
    (S.REV_REVOKE_FAILED, A.MARK_MANUALLY_REVOKED): S.REV_REVOKED,
    (S.REV_REVOKE_FAILED, A.ABORT): S.ABORTED,
    (S.REV_REVOKED, A.REVOKE): S.REV_REVOKED,
    (S.REV_REVOKED, A.RETRY_REVOKE): S.REV_REVOKED,
    (S.REV_REVOKED, A.MARK_MANUALLY_REVOKED): S.REV_REVOKED,
    (S.REV_REVOKED, O.OK): S.REV_VALIDATING,
    (S.REV_VALIDATING, A.REVOKE): S.REV_VALIDATING,
    (S.REV_VALIDATING, A.RETRY_REVOKE): S.REV_VALIDATING,
    (S.REV_VALIDATING, A.MARK_MANUALLY_REVOKED): S.REV_VALIDATING,
    (S.REV_VALIDATING, A.CONFIRM_LEAK_RESOLVED): S.REV_VALIDATING,
    (S.REV_VALIDATING, O.OK): S.REV_DONE,
    (S.REV_VALIDATING, O.FAILED): S.REV_LEAKED,
    (S.REV_LEAKED, A.CONFIRM_LEAK_RESOLVED): S.REV_VALIDATING,
})

TESTING: Table = MappingProxyType({
    # dry run: one action checks the current value and every consumer, changes nothing
    (S.INIT, A.VERIFY): S.VERIFYING,
    (S.INIT, A.ABORT): S.ABORTED,
    (S.VERIFYING, A.VERIFY): S.VERIFYING,
    (S.VERIFYING, O.OK): S.DONE,
    (S.VERIFYING, O.FAILED): S.VERIFY_FAILED,  # the current value is refused by the vendor
    (S.VERIFYING, O.PARTIAL): S.VALIDATE_FAILED,  # some consumer is unreachable or unhealthy
    (S.VERIFYING, A.ABORT): S.ABORTED,
})

TABLES: Mapping[Flow, Table] = MappingProxyType({
    Flow.OPERATIONAL: OPERATIONAL,
    Flow.REVOCATION: REVOCATION,
    Flow.TESTING: TESTING,
})

INITIAL: Mapping[Flow, State] = MappingProxyType({
    Flow.OPERATIONAL: S.INIT,
    Flow.REVOCATION: S.REV_INIT,
    Flow.TESTING: S.INIT,
})

TERMINAL: Mapping[Flow, frozenset[State]] = MappingProxyType({
    Flow.OPERATIONAL: frozenset({S.DONE, S.ABORTED}),
    Flow.REVOCATION: frozenset({S.REV_DONE, S.ABORTED}),
    Flow.TESTING: frozenset({S.DONE, S.VERIFY_FAILED, S.VALIDATE_FAILED, S.ABORTED}),
})

# Rows that exist only for jobs created with --force-revoke.
FORCE_REVOKE_ONLY: frozenset[tuple[State, Trigger]] = frozenset(
    {(S.VALIDATE_PARTIAL, A.PROCEED_REVOKE)}
)

# States where a job waits on a person (runbook section 6's "requires operator action").
OPERATOR_STATES: frozenset[State] = frozenset({
    S.VERIFY_FAILED, S.MINT_FAILED, S.DISTRIBUTE_PARTIAL, S.DISTRIBUTE_FAILED,
    S.VALIDATE_PARTIAL, S.VALIDATE_FAILED, S.REVOKE_FAILED, S.REV_REVOKE_FAILED, S.REV_LEAKED,
})

# States a stage passes through while its side effects run; a job found resting in one was
# interrupted and is resumed by re-running the stage's action.
IN_PROGRESS: frozenset[State] = frozenset({
    S.VERIFYING, S.MINTING, S.MINTED, S.DISTRIBUTING, S.DISTRIBUTED, S.VALIDATING, S.REVOKING,
    S.REV_REVOKING, S.REV_REVOKED, S.REV_VALIDATING,
})


def is_terminal(flow: Flow, state: State) -> bool:
    return state in TERMINAL[flow]


def is_failed(state: State) -> bool:
    """Whether a stage that ends in `state` failed or only partly succeeded: the states that
    wait on a person (`velvet stage` exits 1 in them)."""
    return state in OPERATOR_STATES


def allowed(flow: Flow, state: State, *, force_revoke: bool = False,
            rolling_back: bool = False) -> list[Action]:
    """The operator actions allowed in `state`, in declaration order.

    A job in the middle of a rollback may only continue it: its consumers are split between
    the two values, so revoking either (or walking away) would break some of them.
    """
    return [
        trigger
        for (src, trigger) in TABLES[flow]
        if src == state
        and isinstance(trigger, Action)
        and (force_revoke or (src, trigger) not in FORCE_REVOKE_ONLY)
        and (not rolling_back or trigger == A.ROLLBACK)
    ]


def step(flow: Flow, state: State, trigger: Trigger, *, force_revoke: bool = False,
         rolling_back: bool = False) -> State:
    """The state `trigger` leads to from `state`, or ActionNotAllowed naming what is allowed."""
    key = (state, trigger)
    target = TABLES[flow].get(key)
    if (target is None or (key in FORCE_REVOKE_ONLY and not force_revoke)
            or (rolling_back and isinstance(trigger, Action) and trigger != A.ROLLBACK)):
        raise ActionNotAllowed(str(trigger), str(state), [str(a) for a in allowed(
            flow, state, force_revoke=force_revoke, rolling_back=rolling_back)])
    return target


def states(flow: Flow) -> set[State]:
    table = TABLES[flow]
    return {src for src, _ in table} | set(table.values())


# --- the options each action takes ------------------------------------------------------------
#
# Which `velvet stage` options apply to which action, and whether the action needs them
# (True) or merely accepts them (False). An option an action does not take is refused rather
# than ignored, and the next commands printed for operators are built from the same table.


class Option(StrEnum):
    CONSUMER = "consumer"
    TICKET = "ticket"
    CONFIRM = "confirm"
    ACCEPT_DEBT = "accept-debt"
    # proceed_revoke, on the ticket: revoke although a place the manifest does not register
    # holds the old value, or the vendor saw it used after every consumer switched (scan.py)
    ACCEPT_UNREGISTERED = "accept-unregistered"
    ACCEPT_STILL_USED = "accept-still-used"


OPTIONS: Mapping[Action, Mapping[Option, bool]] = MappingProxyType({
    A.VERIFY: {},
    A.PROCEED_MINT: {},
    A.PROCEED_REVOKE: {Option.TICKET: True, Option.CONFIRM: True,
                       Option.ACCEPT_UNREGISTERED: False, Option.ACCEPT_STILL_USED: False},
    A.RETRY_VERIFY: {},
    A.RETRY_DISTRIBUTE: {},
    A.MANUAL_CONFIRM: {Option.CONSUMER: True, Option.TICKET: False},  # evidence for a row
    # that does not read back the new value
    A.SKIP_CONSUMER: {Option.CONSUMER: True},
    A.RETRY_VALIDATION: {},
    A.RETRY_REVOKE: {},
    A.MARK_MANUALLY_REVOKED: {Option.TICKET: True, Option.ACCEPT_DEBT: False},
    A.ABORT: {},
    A.ROLLBACK: {},
    A.CONFIRM_LEAK_RESOLVED: {},
    A.REVOKE: {Option.TICKET: False},  # the incident ticket (the revocation workflow passes it)
})

# Actions that end a job early rather than move it on (listed after the others for people).
STOP_ACTIONS: frozenset[Action] = frozenset({A.ABORT, A.ROLLBACK})


def stage_command(job_id: str, action: str, *, consumers: Iterable[str] = (),
                  ticket: str | None = None, confirm: str | None = None,
                  flags: Iterable[Option] = ()) -> str:
    """`velvet stage JOB ACTION [--consumer ID]... [--ticket T] [--confirm NAME] [--FLAG]...`:
    the one spelling of an operator's next command, wherever it is named (summaries, failure
    messages, the resume hint after Ctrl-C, the status page)."""
    words = ["velvet", "stage", job_id, str(action)]
    words += [f"--consumer {cid}" for cid in consumers]
    words += [f"--ticket {ticket}"] if ticket else []
    words += [f"--confirm {confirm}"] if confirm else []
    words += [f"--{flag}" for flag in flags]
    return " ".join(words)


def options_refused(action: Action, given: Iterable[Option]) -> list[Option]:
    """The options in `given` that `action` does not take, in declaration order."""
    takes = OPTIONS[action]
    wanted = set(given)
    return [o for o in Option if o in wanted and o not in takes]
