"""The state machine: every (state, trigger) pair of every flow, and the tables' invariants.

The expected tables below are written out independently of `velvet_runner.machine`, from
DESIGN.md, the runbook's sections 5 and 6 and STYLE.md section 3, so that a change to the code's
tables must be matched here on purpose.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velvet_runner import machine
from velvet_runner.errors import ActionNotAllowed, InputError
from velvet_runner.machine import (
    FORCE_REVOKE_ONLY,
    INITIAL,
    TABLES,
    TERMINAL,
    Action,
    Flow,
    Outcome,
    State,
    Trigger,
    allowed,
    is_terminal,
    step,
)

S, A, OC = State, Action, Outcome

# --- the spec --------------------------------------------------------------------------------

# DESIGN.md "States" and "Stage actions", by their exact runbook names.
RUNBOOK_OPERATIONAL_STATES = {
    "init", "verifying", "verified", "minting", "minted", "distributing", "distributed",
    "validating", "validated", "revoking", "done", "verify_failed", "mint_failed",
    "distribute_partial", "distribute_failed", "validate_partial", "validate_failed",
    "revoke_failed", "aborted",
}
RUNBOOK_REVOCATION_STATES = {
    "rev_init", "rev_revoking", "rev_revoked", "rev_validating", "rev_done",
    "rev_revoke_failed", "rev_leaked",
}
RUNBOOK_STATES = RUNBOOK_OPERATIONAL_STATES | RUNBOOK_REVOCATION_STATES
RUNBOOK_ACTIONS = {
    "verify", "proceed_mint", "proceed_revoke", "retry_verify", "retry_distribute",
    "manual_confirm", "skip_consumer", "retry_validation", "retry_revoke",
    "mark_manually_revoked", "abort", "rollback", "confirm_leak_resolved", "revoke",
}
OUTCOMES = {"ok", "partial", "failed"}

EXPECTED_OPERATIONAL: dict[tuple[State, Trigger], State] = {
    # stage 1: verify
    (S.INIT, A.VERIFY): S.VERIFYING,
    (S.INIT, A.ABORT): S.ABORTED,
    (S.VERIFYING, A.VERIFY): S.VERIFYING,
    (S.VERIFYING, A.RETRY_VERIFY): S.VERIFYING,
    (S.VERIFYING, OC.OK): S.VERIFIED,
    (S.VERIFYING, OC.FAILED): S.VERIFY_FAILED,
    (S.VERIFYING, A.ABORT): S.ABORTED,
    (S.VERIFY_FAILED, A.RETRY_VERIFY): S.VERIFYING,
    (S.VERIFY_FAILED, A.ABORT): S.ABORTED,
    # stage 2: mint, distribute, validate
    (S.VERIFIED, A.PROCEED_MINT): S.MINTING,
    (S.VERIFIED, A.ABORT): S.ABORTED,
    (S.MINTING, A.PROCEED_MINT): S.MINTING,
    (S.MINTING, OC.OK): S.MINTED,
    (S.MINTING, OC.FAILED): S.MINT_FAILED,
    (S.MINTING, A.ABORT): S.ABORTED,
    (S.MINT_FAILED, A.PROCEED_MINT): S.MINTING,
    (S.MINT_FAILED, A.ABORT): S.ABORTED,
    (S.MINTED, A.PROCEED_MINT): S.MINTED,
    (S.MINTED, OC.OK): S.DISTRIBUTING,
    (S.MINTED, A.ABORT): S.ABORTED,
    (S.MINTED, A.ROLLBACK): S.ABORTED,
    (S.DISTRIBUTING, A.PROCEED_MINT): S.DISTRIBUTING,
    (S.DISTRIBUTING, A.RETRY_DISTRIBUTE): S.DISTRIBUTING,
    (S.DISTRIBUTING, OC.OK): S.DISTRIBUTED,
    (S.DISTRIBUTING, OC.PARTIAL): S.DISTRIBUTE_PARTIAL,
    (S.DISTRIBUTING, OC.FAILED): S.DISTRIBUTE_FAILED,
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
    (S.DISTRIBUTED, OC.OK): S.VALIDATING,
    (S.DISTRIBUTED, A.ABORT): S.ABORTED,
    (S.DISTRIBUTED, A.ROLLBACK): S.ABORTED,
    (S.VALIDATING, A.PROCEED_MINT): S.VALIDATING,
    (S.VALIDATING, A.RETRY_DISTRIBUTE): S.VALIDATING,
    (S.VALIDATING, A.RETRY_VALIDATION): S.VALIDATING,
    (S.VALIDATING, OC.OK): S.VALIDATED,
    (S.VALIDATING, OC.PARTIAL): S.VALIDATE_PARTIAL,
    (S.VALIDATING, OC.FAILED): S.VALIDATE_FAILED,
    (S.VALIDATING, A.ABORT): S.ABORTED,
    (S.VALIDATING, A.ROLLBACK): S.ABORTED,
    (S.VALIDATE_PARTIAL, A.RETRY_VALIDATION): S.VALIDATING,
    (S.VALIDATE_PARTIAL, A.MANUAL_CONFIRM): S.VALIDATING,
    (S.VALIDATE_PARTIAL, A.SKIP_CONSUMER): S.VALIDATING,
    (S.VALIDATE_PARTIAL, A.PROCEED_REVOKE): S.REVOKING,  # force_revoke jobs only
    (S.VALIDATE_PARTIAL, A.ROLLBACK): S.ABORTED,
    (S.VALIDATE_PARTIAL, A.ABORT): S.ABORTED,
    (S.VALIDATE_FAILED, A.RETRY_VALIDATION): S.VALIDATING,
    (S.VALIDATE_FAILED, A.MANUAL_CONFIRM): S.VALIDATING,
    (S.VALIDATE_FAILED, A.SKIP_CONSUMER): S.VALIDATING,
    (S.VALIDATE_FAILED, A.ROLLBACK): S.ABORTED,
    (S.VALIDATE_FAILED, A.ABORT): S.ABORTED,
    # stage 3: re-check, then revoke
    (S.VALIDATED, A.PROCEED_REVOKE): S.REVOKING,
    (S.VALIDATED, OC.PARTIAL): S.VALIDATE_PARTIAL,
    (S.VALIDATED, OC.FAILED): S.VALIDATE_FAILED,
    (S.VALIDATED, A.ROLLBACK): S.ABORTED,
    (S.VALIDATED, A.ABORT): S.ABORTED,
    (S.REVOKING, A.PROCEED_REVOKE): S.REVOKING,
    (S.REVOKING, A.RETRY_REVOKE): S.REVOKING,
    (S.REVOKING, OC.OK): S.DONE,
    (S.REVOKING, OC.FAILED): S.REVOKE_FAILED,
    (S.REVOKE_FAILED, A.RETRY_REVOKE): S.REVOKING,
    (S.REVOKE_FAILED, A.MARK_MANUALLY_REVOKED): S.DONE,
}

EXPECTED_REVOCATION: dict[tuple[State, Trigger], State] = {
    (S.REV_INIT, A.REVOKE): S.REV_REVOKING,
    (S.REV_INIT, A.ABORT): S.ABORTED,
    (S.REV_REVOKING, A.REVOKE): S.REV_REVOKING,
    (S.REV_REVOKING, A.RETRY_REVOKE): S.REV_REVOKING,
    (S.REV_REVOKING, OC.OK): S.REV_REVOKED,
    (S.REV_REVOKING, OC.FAILED): S.REV_REVOKE_FAILED,
    (S.REV_REVOKE_FAILED, A.RETRY_REVOKE): S.REV_REVOKING,
    (S.REV_REVOKE_FAILED, A.MARK_MANUALLY_REVOKED): S.REV_REVOKED,
    (S.REV_REVOKE_FAILED, A.ABORT): S.ABORTED,
    (S.REV_REVOKED, A.REVOKE): S.REV_REVOKED,
    (S.REV_REVOKED, A.RETRY_REVOKE): S.REV_REVOKED,
    (S.REV_REVOKED, A.MARK_MANUALLY_REVOKED): S.REV_REVOKED,
    (S.REV_REVOKED, OC.OK): S.REV_VALIDATING,
    (S.REV_VALIDATING, A.REVOKE): S.REV_VALIDATING,
    (S.REV_VALIDATING, A.RETRY_REVOKE): S.REV_VALIDATING,
    (S.REV_VALIDATING, A.MARK_MANUALLY_REVOKED): S.REV_VALIDATING,
    (S.REV_VALIDATING, A.CONFIRM_LEAK_RESOLVED): S.REV_VALIDATING,
    (S.REV_VALIDATING, OC.OK): S.REV_DONE,
    (S.REV_VALIDATING, OC.FAILED): S.REV_LEAKED,  # SEV1
    (S.REV_LEAKED, A.CONFIRM_LEAK_RESOLVED): S.REV_VALIDATING,
}

EXPECTED_TESTING: dict[tuple[State, Trigger], State] = {
    (S.INIT, A.VERIFY): S.VERIFYING,
    (S.INIT, A.ABORT): S.ABORTED,
    (S.VERIFYING, A.VERIFY): S.VERIFYING,
    (S.VERIFYING, OC.OK): S.DONE,
    (S.VERIFYING, OC.FAILED): S.VERIFY_FAILED,
    (S.VERIFYING, OC.PARTIAL): S.VALIDATE_FAILED,
    (S.VERIFYING, A.ABORT): S.ABORTED,
}

EXPECTED: dict[Flow, dict[tuple[State, Trigger], State]] = {
    Flow.OPERATIONAL: EXPECTED_OPERATIONAL,
    Flow.REVOCATION: EXPECTED_REVOCATION,
    Flow.TESTING: EXPECTED_TESTING,
}
EXPECTED_INITIAL = {Flow.OPERATIONAL: S.INIT, Flow.REVOCATION: S.REV_INIT, Flow.TESTING: S.INIT}
EXPECTED_TERMINAL = {
    Flow.OPERATIONAL: {S.DONE, S.ABORTED},
    Flow.REVOCATION: {S.REV_DONE, S.ABORTED},
    Flow.TESTING: {S.DONE, S.VERIFY_FAILED, S.VALIDATE_FAILED, S.ABORTED},
}
EXPECTED_FORCE_REVOKE_ONLY = {(S.VALIDATE_PARTIAL, A.PROCEED_REVOKE)}

ALL_TRIGGERS: list[Trigger] = [*Action, *Outcome]


def expected_allowed(flow: Flow, state: State, *, force_revoke: bool = False) -> list[str]:
    """The actions (not outcomes) the spec allows in `state`, in the table's order."""
    return [
        str(trigger) for (src, trigger) in EXPECTED[flow]
        if src == state and isinstance(trigger, Action)
        and (force_revoke or (src, trigger) not in EXPECTED_FORCE_REVOKE_ONLY)
    ]


def flow_states(flow: Flow) -> set[State]:
    table = EXPECTED[flow]
    return {src for src, _ in table} | set(table.values())


def successors(table: Mapping[tuple[State, Trigger], State], state: State) -> set[State]:
    return {dst for (src, _), dst in table.items() if src == state}


def reachable(table: Mapping[tuple[State, Trigger], State], start: State) -> set[State]:
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in successors(table, todo.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --- every pair --------------------------------------------------------------------------


@pytest.mark.parametrize("flow", list(Flow))
def test_code_table_is_the_spec_table(flow: Flow) -> None:
    table = dict(TABLES[flow])
    missing = {k: v for k, v in EXPECTED[flow].items() if table.get(k) != v}
    extra = {k: v for k, v in table.items() if k not in EXPECTED[flow]}
    assert not missing, f"{flow}: rows missing or landing elsewhere: {missing}"
    assert not extra, f"{flow}: rows the spec does not have: {extra}"


def check_pair(flow: Flow, state: State, trigger: Trigger) -> None:
    key = (state, trigger)
    target = EXPECTED[flow].get(key)
    if target is not None and key not in EXPECTED_FORCE_REVOKE_ONLY:
        assert step(flow, state, trigger) == target
        assert step(flow, state, trigger, force_revoke=True) == target
        return
    with pytest.raises(ActionNotAllowed) as info:
        step(flow, state, trigger)
    err = info.value
    wanted = expected_allowed(flow, state)
    listed = ", ".join(wanted) if wanted else "none (terminal state)"
    assert str(err) == f"can't {trigger} when in {state}; allowed: {listed}"
    assert err.state == str(state)
    assert err.action == str(trigger)
    assert err.allowed == wanted
    assert isinstance(err, InputError)
    assert err.exit_code == 2


@pytest.mark.parametrize(("flow", "state"), list(itertools.product(Flow, State)))
def test_every_state_trigger_pair(flow: Flow, state: State) -> None:
    """All of State x (Action + Outcome): allowed pairs land where the table says, every other
    pair is refused naming the state and listing the allowed actions."""
    failures = []
    for trigger in ALL_TRIGGERS:
        try:
            check_pair(flow, state, trigger)
        except (AssertionError, ActionNotAllowed, pytest.fail.Exception) as exc:
            failures.append(f"{flow} {state} --{trigger}-->: {exc}")
    assert failures == []


@pytest.mark.parametrize(("flow", "state"), list(itertools.product(Flow, State)))
def test_allowed_lists_exactly_the_tables_actions(flow: Flow, state: State) -> None:
    assert [str(a) for a in allowed(flow, state)] == expected_allowed(flow, state)
    assert [str(a) for a in allowed(flow, state, force_revoke=True)] == expected_allowed(
        flow, state, force_revoke=True)
    for action in allowed(flow, state):
        assert isinstance(action, Action)
        step(flow, state, action)  # everything listed is accepted


def test_refusal_message_matches_the_cli_contract() -> None:
    with pytest.raises(ActionNotAllowed, match=r"^can't proceed_revoke when in init; "
                                               r"allowed: verify, abort$"):
        step(Flow.OPERATIONAL, S.INIT, A.PROCEED_REVOKE)


def test_terminal_state_refusal_says_nothing_is_allowed() -> None:
    with pytest.raises(ActionNotAllowed) as info:
        step(Flow.OPERATIONAL, S.DONE, A.ABORT)
    assert str(info.value) == "can't abort when in done; allowed: none (terminal state)"
    assert info.value.allowed == []


# --- force_revoke-only rows ------------------------------------------------------------------


def test_force_revoke_only_rows_are_the_expected_ones() -> None:
    assert set(FORCE_REVOKE_ONLY) == EXPECTED_FORCE_REVOKE_ONLY
    assert EXPECTED_FORCE_REVOKE_ONLY <= set(TABLES[Flow.OPERATIONAL])


def test_proceed_revoke_from_validate_partial_needs_force_revoke() -> None:
    with pytest.raises(ActionNotAllowed) as info:
        step(Flow.OPERATIONAL, S.VALIDATE_PARTIAL, A.PROCEED_REVOKE)
    assert "proceed_revoke" not in info.value.allowed
    assert str(info.value) == (
        "can't proceed_revoke when in validate_partial; allowed: retry_validation, "
        "manual_confirm, skip_consumer, rollback, abort")
    assert step(Flow.OPERATIONAL, S.VALIDATE_PARTIAL, A.PROCEED_REVOKE,
                force_revoke=True) == S.REVOKING
    assert A.PROCEED_REVOKE not in allowed(Flow.OPERATIONAL, S.VALIDATE_PARTIAL)
    assert A.PROCEED_REVOKE in allowed(Flow.OPERATIONAL, S.VALIDATE_PARTIAL, force_revoke=True)


def test_force_revoke_changes_nothing_else() -> None:
    for flow, state in itertools.product(Flow, State):
        for trigger in ALL_TRIGGERS:
            if (state, trigger) in EXPECTED_FORCE_REVOKE_ONLY and flow == Flow.OPERATIONAL:
                continue
            plain = EXPECTED[flow].get((state, trigger))
            if plain is None:
                with pytest.raises(ActionNotAllowed):
                    step(flow, state, trigger, force_revoke=True)
            else:
                assert step(flow, state, trigger, force_revoke=True) == plain


def test_a_refusal_under_force_revoke_lists_the_force_revoke_actions() -> None:
    with pytest.raises(ActionNotAllowed) as info:
        step(Flow.OPERATIONAL, S.VALIDATE_PARTIAL, A.VERIFY, force_revoke=True)
    assert "proceed_revoke" in info.value.allowed


# --- structural invariants -------------------------------------------------------------------


@pytest.mark.parametrize("flow", list(Flow))
def test_initial_and_terminal_states_are_the_spec(flow: Flow) -> None:
    assert INITIAL[flow] == EXPECTED_INITIAL[flow]
    assert set(TERMINAL[flow]) == EXPECTED_TERMINAL[flow]
    assert set(INITIAL) == set(Flow) == set(TERMINAL) == set(TABLES)


@pytest.mark.parametrize("flow", list(Flow))
def test_exactly_one_initial_state(flow: Flow) -> None:
    table = TABLES[flow]
    entered = {dst for (src, _), dst in table.items() if dst != src}
    sources = {src for src, _ in table}
    no_way_in = sources - entered
    assert no_way_in == {INITIAL[flow]}, (
        f"{flow}: states nothing leads into (each would be a second initial state): {no_way_in}")


@pytest.mark.parametrize("flow", list(Flow))
def test_terminal_states_have_no_outgoing_rows(flow: Flow) -> None:
    rows = [(src, trig) for (src, trig) in TABLES[flow] if src in TERMINAL[flow]]
    assert rows == []
    for state in TERMINAL[flow]:
        assert is_terminal(flow, state)
        assert allowed(flow, state) == []
        assert allowed(flow, state, force_revoke=True) == []


@pytest.mark.parametrize("flow", list(Flow))
def test_terminal_states_are_in_the_flow(flow: Flow) -> None:
    assert set(TERMINAL[flow]) <= machine.states(flow)
    assert INITIAL[flow] in machine.states(flow)


@pytest.mark.parametrize("flow", list(Flow))
def test_every_state_is_reachable_from_the_initial_one(flow: Flow) -> None:
    unreachable = machine.states(flow) - reachable(TABLES[flow], INITIAL[flow])
    assert unreachable == set(), f"{flow}: unreachable states {unreachable}"


@pytest.mark.parametrize("flow", list(Flow))
def test_every_non_terminal_state_can_reach_a_terminal_one(flow: Flow) -> None:
    stuck = {
        state for state in machine.states(flow) - set(TERMINAL[flow])
        if not reachable(TABLES[flow], state) & set(TERMINAL[flow])
    }
    assert stuck == set(), f"{flow}: states that can never finish: {stuck}"


@pytest.mark.parametrize("flow", list(Flow))
def test_every_non_terminal_state_has_an_operator_action(flow: Flow) -> None:
    # A job resting in any non-terminal state (even one interrupted mid-stage) must be movable
    # by a person, or it is stuck for good.
    idle = {s for s in machine.states(flow) - set(TERMINAL[flow]) if not allowed(flow, s)}
    assert idle == set()


def test_every_runbook_state_and_action_appears_in_some_table() -> None:
    used_states = {str(s) for flow in Flow for s in machine.states(flow)}
    used_triggers = {str(t) for flow in Flow for (_, t) in TABLES[flow]}
    assert RUNBOOK_STATES - used_states == set()
    assert RUNBOOK_ACTIONS - used_triggers == set()
    assert OUTCOMES - used_triggers == set()
    assert RUNBOOK_OPERATIONAL_STATES <= {str(s) for s in machine.states(Flow.OPERATIONAL)}
    assert RUNBOOK_REVOCATION_STATES - {"aborted"} <= {
        str(s) for s in machine.states(Flow.REVOCATION)}


def test_enums_hold_exactly_the_runbook_names() -> None:
    assert {s.value for s in State} == RUNBOOK_STATES
    assert {a.value for a in Action} == RUNBOOK_ACTIONS
    assert {o.value for o in Outcome} == OUTCOMES
    assert {f.value for f in Flow} == {"operational", "revocation", "testing"}


def test_no_unused_enum_member() -> None:
    used_states = set().union(*(machine.states(flow) for flow in Flow))
    used_triggers = {t for flow in Flow for (_, t) in TABLES[flow]}
    assert set(State) - used_states == set()
    assert set(Action) - used_triggers == set()
    assert set(Outcome) - used_triggers == set()


@pytest.mark.parametrize("flow", list(Flow))
def test_tables_are_read_only(flow: Flow) -> None:
    table = TABLES[flow]
    with pytest.raises(TypeError):
        table[(S.DONE, A.ABORT)] = S.INIT  # type: ignore[index]
    assert (S.DONE, A.ABORT) not in table


# --- random walks ------------------------------------------------------------------------


@st.composite
def walks(draw: st.DrawFn) -> tuple[Flow, bool, list[Trigger]]:
    flow = draw(st.sampled_from(list(Flow)))
    force_revoke = draw(st.booleans())
    triggers = draw(st.lists(st.sampled_from(ALL_TRIGGERS), max_size=60))
    return flow, force_revoke, triggers


@settings(max_examples=150, deadline=None)
@given(walks())
def test_random_walks_stay_in_declared_states(walk: tuple[Flow, bool, list[Trigger]]) -> None:
    flow, force_revoke, triggers = walk
    declared = flow_states(flow)
    state = INITIAL[flow]
    for trigger in triggers:
        listed = [str(a) for a in allowed(flow, state, force_revoke=force_revoke)]
        refusal: ActionNotAllowed | None = None
        try:
            nxt = step(flow, state, trigger, force_revoke=force_revoke)
        except ActionNotAllowed as exc:
            refusal = exc
        if refusal is not None:
            assert refusal.allowed == listed
            assert refusal.state == str(state)
            assert str(refusal).startswith(f"can't {trigger} when in {state}; allowed: ")
            assert trigger not in listed
            if is_terminal(flow, state):
                assert listed == []
            continue
        assert nxt in declared, f"{flow}: {state} --{trigger}--> undeclared {nxt}"
        assert nxt == EXPECTED[flow][(state, trigger)]
        if isinstance(trigger, Action):
            assert str(trigger) in listed
        assert not is_terminal(flow, state)
        state = nxt


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(Flow)), st.data())
def test_random_allowed_walks_always_finish_possible(flow: Flow, data: st.DataObject) -> None:
    """Following only allowed triggers never strands a job where no terminal state is reachable."""
    table = TABLES[flow]
    terminal = set(TERMINAL[flow])
    state = INITIAL[flow]
    for _ in range(40):
        options = [trig for (src, trig) in table if src == state
                   and (src, trig) not in FORCE_REVOKE_ONLY]
        if not options:
            assert state in terminal
            break
        trigger = data.draw(st.sampled_from(options))
        state = step(flow, state, trigger)
        assert reachable(table, state) & terminal
