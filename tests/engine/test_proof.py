"""Proof taken when it is claimed (issue #20): the six ways the promise broke, each against the
fakes over loopback.

Every terminal claim asks the vendor now; a refusal seen earlier is an observation, never a
settlement; a record that says "proven dead" is not evidence; a write is only succeeded when
the target shows it landed; an emergency kills the value that was live when it was declared; a
rewritten state branch never lets a second job overwrite the first one's pending token.
"""

from __future__ import annotations

import subprocess
from typing import Any

from velvet_runner.machine import Flow
from velvet_runner.records import Job, Life
from velvet_runner.settings import Settings
from velvet_runner.store import Store

from .support import (
    HK,
    PLATFORM_EMAIL,
    EngWorld,
    last,
    revoke,
    row,
    start,
    ticket,
    to_validated,
)

API_APP = "raxx-api-prod"
API_ROW = "heroku-config-api-prod"
GITHUB_ROW = "github-actions-heroku-api-key"
VAULT_CURRENT_WRITE = f"/api/v4/secrets/{HK}"


def _live_auth_ids(eng: EngWorld) -> set[str]:
    return {a["id"] for a in eng.heroku_auths(PLATFORM_EMAIL)}


def _drop(eng: EngWorld, service: str, **spec: Any) -> None:
    """A write the vendor acknowledges and does not store (the fakes can lie)."""
    eng.fault(service, drop=True, **spec)


# --- 1. a 401 blip at verify is an observation ---------------------------------------------


def test_a_401_blip_at_verify_does_not_settle_the_old_value(eng_world: EngWorld) -> None:
    engine = eng_world.engine()
    job, _ = engine.create(HK)
    old_value = eng_world.world.values[HK]
    old_auth = eng_world.world.heroku_auth_ids[HK]
    eng_world.fault("heroku", method="GET", path="/account", status=401, times=1)
    job = engine.run(job.job_id, "verify")
    assert job.status == "verify_failed", last(job)
    old = job.token("old")
    assert old is not None
    assert old.life == Life.CURRENT
    assert old.observed is not None
    assert "401" in old.observed

    job = engine.run(job.job_id, "retry_verify")
    assert job.status == "verified", last(job)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validated", last(job)
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    # The DELETE was sent and the vendor refuses the old value now.
    assert eng_world.requests("heroku", "DELETE", f"/oauth/authorizations/{old_auth}")
    assert not eng_world.sandbox.heroku.token_is_live(old_value)
    assert old_auth not in _live_auth_ids(eng_world)
    assert job.revocation_debt == []


# --- 2. a vault outage after an emergency roll -----------------------------------------------


def test_a_vault_blip_after_a_roll_is_waited_out(eng_world: EngWorld) -> None:
    """The rolled value exists only in the process until the vault takes it: be patient."""
    job, _ = eng_world.engine().create(HK, Flow.REVOCATION)
    eng_world.fault("infisical", method="PATCH", path=VAULT_CURRENT_WRITE, status=503, times=4)
    job = eng_world.engine().run(job.job_id, "revoke")
    assert job.status == "rev_done", last(job)
    current = eng_world.vault(HK)
    assert current is not None
    assert eng_world.sandbox.heroku.token_is_live(current)
    assert not eng_world.sandbox.heroku.token_is_live(eng_world.world.values[HK])
    rolled = job.token("rolled")
    assert rolled is not None
    assert rolled.life == Life.CURRENT


def test_a_rolled_value_the_vault_refuses_is_killed_not_lost(eng_world: EngWorld) -> None:
    job, _ = eng_world.engine().create(HK, Flow.REVOCATION)
    eng_world.fault("infisical", method="PATCH", path=VAULT_CURRENT_WRITE, status=503)
    failed = eng_world.cli_job("stage", job.job_id, "revoke", expect=1)
    assert failed.status == "rev_revoke_failed", last(failed)
    rolled = failed.token("rolled")
    assert rolled is not None
    # The ledger tells the truth: the roll issued a value, and it is dead (not "never issued").
    assert rolled.life == Life.PROVEN_DEAD, rolled
    assert "could not store" in (rolled.evidence or "")
    old = failed.token("old")
    assert old is not None
    assert old.life == Life.PROVEN_DEAD
    # No live authorization holds a value nobody has.
    assert _live_auth_ids(eng_world) == set()
    assert "has no live value now" in (failed.events[-1].detail or "")

    # Retrying without a fresh value in the vault is refused by name, not a silent rev_done.
    eng_world.clear_faults("infisical")
    again = eng_world.cli_job("stage", job.job_id, "retry_revoke", expect=1)
    assert again.status == "rev_revoke_failed", last(again)
    assert "still holds the revoked value" in (again.events[-1].detail or "")


# --- 3. a preempting emergency kills the value live when it was declared ----------------------


def test_preempting_a_validated_job_kills_the_pre_emergency_value(eng_world: EngWorld) -> None:
    engine, routine = to_validated(eng_world)
    declared = eng_world.vault(HK)  # the value in production when the emergency is declared
    minted = eng_world.vault(HK, "__PENDING")
    assert declared is not None
    assert minted is not None

    created = eng_world.cli_job("rotate", HK, "--flow", "revocation", "--preempt")
    aborted = eng_world.job(routine.job_id)
    assert aborted.status == "aborted"
    # The abort did not promote: the vault still names the value the emergency is about.
    assert eng_world.vault(HK) == declared
    [adopted] = [t for t in created.ledger if t.role == "preempted"]
    assert adopted.from_job == routine.job_id
    assert adopted.auth_id == routine.new_auth_id

    done = eng_world.cli_job("stage", created.job_id, "revoke")
    assert done.status == "rev_done", last(done)
    heroku = eng_world.sandbox.heroku
    assert not heroku.token_is_live(declared)
    assert not heroku.token_is_live(minted)
    assert {t.token_id: t.life for t in done.ledger if t.role != "rolled"} == {
        "old": Life.PROVEN_DEAD, "preempted": Life.PROVEN_DEAD}
    # Only the value the revocation rolled into the vault is live.
    current = eng_world.vault(HK)
    assert current not in (declared, minted)
    assert current is not None
    assert _live_auth_ids(eng_world) == {heroku.authorization_id(current)}
    # The preempted job's debt is settled by the proof, and the pending slot is cleared.
    assert [d.settled_at is not None for d in eng_world.job(routine.job_id).revocation_debt] \
        == [True]
    assert eng_world.vault(HK, "__PENDING") in (None, "")


# --- 4. a record that says "proven dead" is not evidence -------------------------------------


def test_a_record_edited_to_say_proven_dead_is_proven_again(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    old_value = eng_world.world.values[HK]
    old_auth = eng_world.world.heroku_auth_ids[HK]

    def forge(current: Job) -> Job:
        current.status = "revoking"  # type: ignore[assignment]
        old = current.token("old")
        assert old is not None
        old.life = Life.PROVEN_DEAD
        old.evidence = "trust me"
        return current

    _store(eng_world).update(HK, job.job_id, forge)
    done = eng_world.cli_job("stage", job.job_id, "proceed_revoke", "--ticket", ticket(HK),
                             "--confirm", HK)
    assert done.status == "done", last(done)
    assert eng_world.requests("heroku", "DELETE", f"/oauth/authorizations/{old_auth}")
    assert not eng_world.sandbox.heroku.token_is_live(old_value)
    old = done.token("old")
    assert old is not None
    assert "trust me" not in (old.evidence or "")


# --- 5. a write acknowledged but not stored ----------------------------------------------


def test_a_heroku_write_acknowledged_but_not_stored_is_not_succeeded(
        eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    _drop(eng_world, "heroku", method="PATCH", path=f"/apps/{API_APP}/config-vars")
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    api = row(job, API_ROW)
    assert api.distribute_status == "failed"
    assert "not stored" in (api.detail or "")
    others = [r for r in job.consumers if r.consumer_id != API_ROW]
    assert all(r.distribute_status == "succeeded" and r.shown for r in others)

    eng_world.clear_faults("heroku")
    job = engine.run(job.job_id, "retry_distribute")
    assert job.status == "validated", last(job)
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    values = eng_world.consumer_values(HK)
    assert all(eng_world.sandbox.heroku.token_is_live(v) for v in values.values() if v)


def test_a_github_secret_put_acknowledged_but_not_stored_is_not_succeeded(
        eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    _drop(eng_world, "github", method="PUT", path="/repos/*/actions/secrets/*")
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    github = row(job, GITHUB_ROW)
    assert github.distribute_status == "failed"
    assert "acknowledged but not stored" in (github.detail or "")


def test_a_value_reverted_before_revoke_stops_the_revoke(eng_world: EngWorld) -> None:
    """The re-check before revoke reads each target back: a consumer whose store went back to
    the old value passes an http check during the overlap, but the readback catches it."""
    engine, job = to_validated(eng_world)
    old_value = eng_world.world.values[HK]
    eng_world.sandbox.heroku.set_config_vars(API_APP, {"HEROKU_API_KEY": old_value})
    job = revoke(engine, job)
    assert job.status == "validate_partial", last(job)
    assert "no longer holds the new value" in (row(job, API_ROW).detail or "")
    assert eng_world.sandbox.heroku.token_is_live(old_value)


# --- 6. a rewritten state branch -----------------------------------------------------------


def test_a_rewritten_branch_never_overwrites_a_pending_token(eng_world: EngWorld) -> None:
    engine, first = to_validated(eng_world)
    pending = eng_world.vault(HK, "__PENDING")
    assert pending is not None
    # Someone force-pushes the state branch to before the first job; the next run is on a
    # fresh machine (a new cache), as every Actions run is.
    subprocess.run(["git", "--git-dir", str(eng_world.state_repo), "update-ref", "-d",
                    "refs/heads/velvet-state"], check=True)
    fresh = {"VELVET_CACHE_DIR": str(eng_world.workdir / "fresh-cache")}
    issued = len(eng_world.sandbox.heroku.token_values())
    second = eng_world.cli_job("rotate", HK, env=fresh)
    assert eng_world.cli_job("stage", second.job_id, "verify", env=fresh).status == "verified"
    refused = eng_world.cli_job("stage", second.job_id, "proceed_mint", env=fresh, expect=1)
    assert refused.status == "mint_failed", last(refused)
    detail = refused.events[-1].detail or ""
    assert first.job_id in detail
    assert "does not know" in detail
    assert "velvet stage" in detail
    # Nothing minted, the first job's token still held where it was.
    assert len(eng_world.sandbox.heroku.token_values()) == issued
    assert eng_world.vault(HK, "__PENDING") == pending


# --- helpers -------------------------------------------------------------------------------


def _store(eng: EngWorld) -> Store:
    settings = Settings.from_env(eng.env)
    return Store(settings.state, settings.state_branch, settings.cache_dir)


def test_push_is_only_for_a_done_rotation_and_its_own_value(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    early = eng_world.cli("push", job.job_id, "--consumer", API_ROW)
    assert early.returncode == 2
    assert "is validated" in early.stderr
    done = revoke(engine, job)
    assert done.status == "done", last(done)
    unknown = eng_world.cli("push", done.job_id, "--consumer", "nope")
    assert unknown.returncode == 2
    assert "not registered" in unknown.stderr
