"""A vendor answer whose body does not parse (a 200 cut short): a vendor error with the next
command, never `internal error (JSONDecodeError)`, and never a job left in a `-ing` state.

The fakes cut the body of a real answer (`"truncate": true`): the request did what it did, only
its answer is garbage, so the engine must treat it as an outage whose outcome is unknown.
Every stage runs as a real `velvet` child process, as an operator would run it.
"""

from __future__ import annotations

from velvet_runner.machine import IN_PROGRESS
from velvet_runner.records import Job

from .support import HK, PLATFORM_EMAIL, EngWorld, labelled, last, ticket

REVOKE_ARGS = ("--ticket", ticket(HK), "--confirm", HK)
VAULT_READ = f"/api/v4/secrets/{HK}"


def _stage(eng: EngWorld, job_id: str, action: str, expect: int) -> Job:
    args = REVOKE_ARGS if action == "proceed_revoke" else ()
    proc = eng.cli("stage", job_id, action, *args, "--json")
    assert "internal error" not in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == expect, (proc.returncode, proc.stderr[-2000:])
    job = Job.from_json(proc.stdout)
    assert job.status not in IN_PROGRESS, last(job)
    return job


def _said(job: Job) -> str:
    return job.events[-1].detail or ""


def test_a_cut_answer_at_verify_is_verify_failed_then_retry_verify(eng_world: EngWorld) -> None:
    job, _ = eng_world.engine().create(HK)
    eng_world.fault("heroku", method="GET", path="/account", truncate=True)  # every time
    failed = _stage(eng_world, job.job_id, "verify", expect=1)
    assert failed.status == "verify_failed", last(failed)
    assert "does not parse" in _said(failed)
    eng_world.clear_faults("heroku")
    assert _stage(eng_world, job.job_id, "retry_verify", expect=0).status == "verified"


def test_one_cut_answer_is_retried_within_the_stage(eng_world: EngWorld) -> None:
    job, _ = eng_world.engine().create(HK)
    eng_world.fault("heroku", method="GET", path="/account", truncate=True, times=1)
    assert _stage(eng_world, job.job_id, "verify", expect=0).status == "verified"


def test_a_cut_answer_to_the_mint_is_mint_failed_and_the_resume_replaces_its_token(
        eng_world: EngWorld) -> None:
    """The vendor minted (only its answer was cut): the token exists under the job's label.
    proceed_mint again finds it and replaces it; no value outlives the job unaccounted for."""
    job, _ = eng_world.engine().create(HK)
    _stage(eng_world, job.job_id, "verify", expect=0)
    eng_world.fault("heroku", method="POST", path="/oauth/authorizations", truncate=True,
                    times=1)
    failed = _stage(eng_world, job.job_id, "proceed_mint", expect=1)
    assert failed.status == "mint_failed", last(failed)
    assert "does not parse" in _said(failed)
    assert len(labelled(eng_world.heroku_auths(PLATFORM_EMAIL), job.job_id)) == 1
    assert _stage(eng_world, job.job_id, "proceed_mint", expect=0).status == "validated"
    done = _stage(eng_world, job.job_id, "proceed_revoke", expect=0)
    assert done.status == "done", last(done)
    heroku = eng_world.sandbox.heroku
    current = eng_world.vault(HK)
    assert current is not None
    live = {a["id"] for a in eng_world.heroku_auths(PLATFORM_EMAIL)}
    assert live == {heroku.authorization_id(current)}


def test_a_cut_answer_from_a_consumer_write_is_an_unknown_row_then_retry_distribute(
        eng_world: EngWorld) -> None:
    job, _ = eng_world.engine().create(HK)
    _stage(eng_world, job.job_id, "verify", expect=0)
    eng_world.fault("heroku", method="PATCH", path="/apps/raxx-api-prod/config-vars",
                    truncate=True)
    partial = _stage(eng_world, job.job_id, "proceed_mint", expect=1)
    assert partial.status == "distribute_partial", last(partial)
    row = partial.row("heroku-config-api-prod")
    assert row is not None
    assert row.holds == "unknown"  # the write may have landed: rollback must visit it
    assert "does not parse" in (row.detail or "")
    eng_world.clear_faults("heroku")
    assert _stage(eng_world, job.job_id, "retry_distribute", expect=0).status == "validated"


def test_a_cut_vault_read_before_revoke_says_so_and_changes_nothing(
        eng_world: EngWorld) -> None:
    """proceed_revoke reads the vault's current value before its first move: the failure is
    a vendor error naming where the job stands and the command that tries again."""
    job, _ = eng_world.engine().create(HK)
    _stage(eng_world, job.job_id, "verify", expect=0)
    _stage(eng_world, job.job_id, "proceed_mint", expect=0)
    eng_world.fault("infisical", method="GET", path=VAULT_READ, truncate=True)
    proc = eng_world.cli("stage", job.job_id, "proceed_revoke", *REVOKE_ARGS)
    assert proc.returncode == 1, proc.stderr
    assert "internal error" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "does not parse" in proc.stderr
    assert f"job {job.job_id} is still validated" in proc.stderr
    assert f"velvet stage {job.job_id} proceed_revoke" in proc.stderr
    assert eng_world.job(job.job_id).status == "validated"
    eng_world.clear_faults("infisical")
    assert _stage(eng_world, job.job_id, "proceed_revoke", expect=0).status == "done"
