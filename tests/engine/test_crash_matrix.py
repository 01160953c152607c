"""The crash matrix: every side-effect boundary of every stage of every flow.

For each cell a real `velvet stage` process exits hard (`VELVET_CRASH_AT`) at the point, the
operator resumes the way the runbook says (the same action again), and the job is driven to its
end. Then, whatever the point:

  - the job ends where an uninterrupted run ends;
  - at most one value was issued per intent in the ledger;
  - every live token Velvet made is the vault's current value or listed as debt;
  - no consumer holds a value the vendor refuses (operational flows);
  - nothing live is left unaccounted for in the ledger.

tests/engine/conftest.py prints how many (stage, point) cells ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from velvet_runner import ledger
from velvet_runner.machine import Flow as JobFlow
from velvet_runner.records import Job
from velvet_sandbox.world import INFISICAL_ENV, INFISICAL_PROJECT, VAULT_PATH

from .support import CRASH_CELLS, CRASH_EXIT, HK, PLATFORM_EMAIL, EngWorld, last, ticket

REVOKE_ARGS = ("--ticket", ticket(HK), "--confirm", HK)
API_PATCH = "/apps/raxx-api-prod/config-vars"
PENDING_WRITE = f"/api/v4/secrets/{HK}__PENDING*"


def _stage(eng: EngWorld, job_id: str, action: str, crash_at: str | None = None) -> int:
    args = REVOKE_ARGS if action == "proceed_revoke" else ()
    return eng.cli("stage", job_id, action, *args, crash_at=crash_at).returncode


def _rotation_to(eng: EngWorld, state: str) -> str:
    """A job driven (in process) to `state`: init, verified, validated or distribute_partial."""
    engine = eng.engine()
    job, _ = engine.create(HK)
    if state == "init":
        return job.job_id
    job = engine.run(job.job_id, "verify")
    if state == "verified":
        return job.job_id
    if state == "distribute_partial":
        eng.fault("heroku", method="PATCH", path=API_PATCH, status=500)
        job = engine.run(job.job_id, "proceed_mint")
        eng.clear_faults("heroku")
        assert job.status == state, last(job)
        return job.job_id
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == state, last(job)
    return job.job_id


def _minting_with_pending(eng: EngWorld) -> str:
    """A mint killed after the vault write: the new value is pending, the job in minting."""
    job_id = _rotation_to(eng, "verified")
    assert _stage(eng, job_id, "proceed_mint", "after_vault_write") == CRASH_EXIT
    return job_id


def _minting_lost(eng: EngWorld) -> str:
    """A mint killed before the vault write: the vendor holds a labelled token whose value is
    gone, so the resume replaces it (Heroku regenerates it in place)."""
    job_id = _rotation_to(eng, "verified")
    assert _stage(eng, job_id, "proceed_mint", "after_mint") == CRASH_EXIT
    return job_id


def _revocation(eng: EngWorld) -> str:
    job, _ = eng.engine().create(HK, JobFlow.REVOCATION)
    return job.job_id


def _replace_lost_roll(eng: EngWorld, job: Job) -> None:
    """What the operator does after a lost roll (the failure names it): delete the live
    authorization in the dashboard, make a fresh one, put it in the vault."""
    [debt] = [d for d in job.revocation_debt if d.settled_at is None]
    assert debt.auth_id is not None
    assert eng.sandbox.heroku.revoke_authorization(debt.auth_id)
    fresh_id, fresh = eng.sandbox.heroku.add_authorization(PLATFORM_EMAIL, description="hand")
    for suffix, value in (("", fresh), ("__AUTH_ID", fresh_id)):
        eng.sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                         HK + suffix, value)


@dataclass(frozen=True)
class Scenario:
    """How a scenario starts, the stages an operator runs in order, and where it ends."""

    setup: Callable[[EngWorld], str]
    stages: tuple[str, ...]
    end: str
    operational: bool = True


FLOWS = {
    "rotation": Scenario(lambda eng: _rotation_to(eng, "init"),
                     ("verify", "proceed_mint", "proceed_revoke"), "done"),
    "retry": Scenario(lambda eng: _rotation_to(eng, "distribute_partial"),
                  ("retry_distribute", "proceed_revoke"), "done"),
    "rollback": Scenario(lambda eng: _rotation_to(eng, "validated"), ("rollback",), "aborted"),
    "abort": Scenario(_minting_with_pending, ("abort",), "aborted"),
    "lost": Scenario(_minting_lost, ("proceed_mint", "proceed_revoke"), "done"),
    "revocation": Scenario(_revocation, ("revoke",), "rev_done", operational=False),
}

CELLS = [
    ("rotation", "verify", "verify"),
    *(("rotation", "proceed_mint", p) for p in (
        "after_mint", "after_vault_write", "distribute_start", "mid_distribute",
        "after_distribute")),
    *(("rotation", "proceed_revoke", p) for p in (
        "recheck", "before_revoke", "after_revoke", "after_proof", "after_promote")),
    *(("retry", "retry_distribute", p) for p in (
        "distribute_start", "mid_distribute", "after_distribute")),
    *(("rollback", "rollback", p) for p in (
        "rollback_start", "mid_rollback", "before_revoke_new", "after_revoke_new")),
    *(("abort", "abort", p) for p in ("before_revoke_new", "after_revoke_new")),
    ("lost", "proceed_mint", "after_regenerate"),
    *(("revocation", "revoke", p) for p in ("after_roll", "after_vault_write")),
]


@pytest.mark.parametrize(("flow", "action", "point"), CELLS,
                         ids=[f"{f}:{a}@{p}" for f, a, p in CELLS])
def test_crash_resume_ends_like_an_uninterrupted_run(eng_world: EngWorld, flow: str,
                                                     action: str, point: str) -> None:
    spec = FLOWS[flow]
    job_id = spec.setup(eng_world)
    issued_before = len(eng_world.sandbox.heroku.token_values())
    by_hand = 0
    crashed = False
    for stage in spec.stages:
        if stage == action and not crashed:
            assert _stage(eng_world, job_id, stage, point) == CRASH_EXIT, point
            crashed = True
        code = _stage(eng_world, job_id, stage)
        if code == 1 and point == "after_roll":
            # The roll's value was lost with the process: failed, named, listed as debt.
            lost = eng_world.job(job_id)
            assert lost.status == "rev_revoke_failed", last(lost)
            _replace_lost_roll(eng_world, lost)
            by_hand = 1
            code = _stage(eng_world, job_id, "retry_revoke")
        assert code == 0, last(eng_world.job(job_id))
    assert crashed
    job = eng_world.job(job_id)
    assert job.status == spec.end, last(job)

    _assert_nothing_lost(eng_world, job, issued_before, by_hand, spec.operational)
    CRASH_CELLS.add((action, point))


def test_a_crash_while_discarding_a_value_the_vault_refused(eng_world: EngWorld) -> None:
    """The vault refused the pending write, so the fresh token is being revoked while it is
    still in hand; the process dies right after the revoke. The operator clears the vault's
    trouble and runs proceed_mint again (the machine allows it from mint_failed or minting)."""
    job_id = _rotation_to(eng_world, "verified")
    issued_before = len(eng_world.sandbox.heroku.token_values())
    eng_world.fault("infisical", method="PATCH", path=PENDING_WRITE, status=503)
    assert _stage(eng_world, job_id, "proceed_mint", "after_discard") == CRASH_EXIT
    eng_world.clear_faults("infisical")
    for stage in ("proceed_mint", "proceed_revoke"):
        assert _stage(eng_world, job_id, stage) == 0, last(eng_world.job(job_id))
    job = eng_world.job(job_id)
    assert job.status == "done", last(job)
    _assert_nothing_lost(eng_world, job, issued_before, 0, True)
    CRASH_CELLS.add(("proceed_mint", "after_discard"))


def _assert_nothing_lost(eng: EngWorld, job: Job, issued_before: int, by_hand: int,
                         operational: bool) -> None:
    # At most one value per intent: every value the vendor issued is a ledger entry.
    issued = len(eng.sandbox.heroku.token_values()) - issued_before - by_hand
    made = [t for t in job.ledger if t.role in ("new", "rolled")]
    assert issued <= len(made), [(t.token_id, t.intent, t.life) for t in job.ledger]

    # Every live token is the vault's current value or listed as debt.
    current = eng.vault(HK)
    assert current is not None
    heroku = eng.sandbox.heroku
    debt_ids = {d.auth_id for d in job.revocation_debt if d.settled_at is None}
    live = {a["id"] for a in eng.heroku_auths(PLATFORM_EMAIL)}
    assert live <= {heroku.authorization_id(current)} | debt_ids, (live, debt_ids)
    assert heroku.token_is_live(current)
    assert ledger.unaccounted(job) == [], [(t.token_id, t.life) for t in job.ledger]

    # No consumer holds a value the vendor refuses (a revocation leaves them on the dead one:
    # that is what its lockout checks prove).
    if operational:
        values = eng.consumer_values(HK)
        assert all(v is not None and heroku.token_is_live(v) for v in values.values()), values
