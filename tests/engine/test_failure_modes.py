"""Runbook sections 6 and 9, failure by failure: inject the fault at the fake vendor, watch the
job land in the state the runbook names, apply the runbook's action, and check where it ends.

Faults are injected over HTTP (`POST <fake>/__velvet/faults`); consumer stores are read straight
from the fakes, never through Velvet.
"""

from __future__ import annotations

from typing import Any

import pytest

from velvet_runner.errors import ActionNotAllowed, GateRefused
from velvet_runner.records import RowStatus
from velvet_sandbox.world import INFISICAL_ENV, INFISICAL_PROJECT, VAULT_PATH

from .support import (
    HK,
    PLATFORM_EMAIL,
    EngWorld,
    arrival,
    labelled,
    last,
    revoke,
    row,
    start,
    ticket,
    to_validated,
)

API_APP = "raxx-api-prod"
API_ROW = "heroku-config-api-prod"
API_PATCH = f"/apps/{API_APP}/config-vars"
GITHUB_ROW = "github-actions-heroku-api-key"
GITHUB_PUT = "/repos/raxx/platform/actions/secrets/HEROKU_API_KEY"
INFISICAL_ROW = "infisical-heroku-prod"
INFISICAL_PATH = "/api/v4/secrets/HEROKU_API_KEY"
RETRY_ATTEMPTS = 4  # client.RetryPolicy.attempts


def _assert_all_new(eng: EngWorld, name: str = HK, *, except_: frozenset[str] = frozenset()
                    ) -> None:
    new = eng.vault(name)
    values = eng.consumer_values(name)
    assert {cid for cid, v in values.items() if v != new} == set(except_)


# --- 6a: verify ----------------------------------------------------------------------------


@pytest.mark.parametrize("times", [2, 6, None], ids=["transient", "longer", "persistent"])
def test_verify_rate_limited(eng_world: EngWorld, times: int | None) -> None:
    """429 without Retry-After (Heroku never sends one): waited out by Heroku's refill, doubling,
    spending no attempt, so six in a row still end verified; a limit that outlasts the stage's
    patience rests in verify_failed saying so, and retry_verify once the vendor recovers
    reaches verified. The budgets' clock runs 900 times faster: the 15-minute patience is 1 s."""
    engine = eng_world.engine(VELVET_BUDGET_TIME_SCALE="900")
    job, _ = engine.create(HK)
    eng_world.fault("heroku", method="GET", path="/account", status=429, times=times)
    job = engine.run(job.job_id, "verify")
    probes = eng_world.requests("heroku", "GET", "/account")
    if times is not None:
        assert job.status == "verified", last(job)
        assert [p["status"] for p in probes] == [429] * times + [200]
        return
    assert job.status == "verify_failed", last(job)
    detail = job.events[-1].detail or ""
    assert "rate limited" in detail
    assert "the stage's 1 s patience" in detail
    assert len(probes) > RETRY_ATTEMPTS
    assert {p["status"] for p in probes} == {429}
    eng_world.clear_faults("heroku")
    job = engine.run(job.job_id, "retry_verify")
    assert job.status == "verified", last(job)
    assert job.old_auth_id == eng_world.world.heroku_auth_ids[HK]


def test_verify_401_old_token_invalid_then_abort(eng_world: EngWorld) -> None:
    """The current token was revoked out of band: verify_failed; abort ends it and frees the
    credential for a new job. Nothing was minted, so no revocation debt."""
    eng_world.sandbox.heroku.revoke_authorization(eng_world.world.heroku_auth_ids[HK])
    engine = eng_world.engine()
    job, _ = engine.create(HK)
    job = engine.run(job.job_id, "verify")
    assert job.status == "verify_failed", last(job)
    assert "credential refused" in (job.events[-1].detail or "")
    assert eng_world.requests("heroku", "GET", "/account")[0]["status"] == 401
    assert eng_world.requests("heroku", "POST", "/oauth/authorizations") == []
    job = engine.run(job.job_id, "abort")
    assert job.status == "aborted"
    assert job.revocation_debt == []
    assert job.report["residual"]["orphaned_tokens"] == []
    again, created = engine.create(HK)
    assert created
    assert again.job_id != job.job_id


def test_verify_of_an_empty_vault_value_names_the_vault_not_an_outage(
        eng_world: EngWorld) -> None:
    """A vault slot someone emptied: verify fails naming the vault, before any vendor is asked
    (an empty value made a malformed header and read as an outage); retry_verify once a value
    is back."""
    eng_world.sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH, HK, "")
    job = eng_world.cli_job("rotate", HK)
    job = eng_world.cli_job("stage", job.job_id, "verify", expect=1)
    assert job.status == "verify_failed", last(job)
    assert "holds no current value (an empty one)" in (job.events[-1].detail or "")
    assert "unavailable" not in (job.events[-1].detail or "")
    assert eng_world.requests("heroku", "GET", "/account") == []


# --- 6b: mint ------------------------------------------------------------------------------


def test_mint_5xx_then_proceed_mint_again(eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="POST", path="/oauth/authorizations", status=503, times=1)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "mint_failed", last(job)
    assert "vendor unavailable" in (job.events[-1].detail or "")
    assert labelled(eng_world.heroku_auths(), job.job_id) == []
    assert eng_world.vault(HK, "__PENDING") is None
    assert all(r.distribute_status == RowStatus.PENDING for r in job.consumers)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validated", last(job)
    assert len(labelled(eng_world.heroku_auths(), job.job_id)) == 1
    pending = eng_world.vault(HK, "__PENDING")
    assert set(eng_world.consumer_values(HK).values()) == {pending}


def test_mint_401_old_token_drifted_then_abort(eng_world: EngWorld) -> None:
    """Runbook 6b: the old token died between verify and mint. mint_failed, nothing minted;
    abort leaves no revocation debt."""
    engine, job = start(eng_world)
    eng_world.sandbox.heroku.revoke_authorization(eng_world.world.heroku_auth_ids[HK])
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "mint_failed", last(job)
    assert "credential refused" in (job.events[-1].detail or "")
    assert eng_world.heroku_auths(PLATFORM_EMAIL) == []
    job = engine.run(job.job_id, "abort")
    assert job.status == "aborted"
    assert job.revocation_debt == []


# --- 6c / section 9: distribute_partial -----------------------------------------------------


def test_distribute_partial_one_heroku_app_retry_failed_rows_only(eng_world: EngWorld) -> None:
    """PATCH to one app keeps failing (500): distribute_partial; after the vendor recovers,
    retry_distribute re-writes that row only, and the job validates and completes."""
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path=API_PATCH, status=500)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    assert row(job, API_ROW).distribute_status == RowStatus.FAILED
    assert row(job, API_ROW).holds == "unknown"  # a 500 may or may not have been applied
    assert {r.consumer_id for r in job.consumers
            if r.distribute_status == RowStatus.SUCCEEDED} == {
        r.consumer_id for r in job.consumers} - {API_ROW}
    assert [r["status"] for r in eng_world.requests("heroku", "PATCH", API_PATCH)] == [
        500] * RETRY_ATTEMPTS
    old = eng_world.world.values[HK]
    assert eng_world.sandbox.heroku.config_var(API_APP, "HEROKU_API_KEY") == old

    before = {
        "heroku": [e for e in eng_world.requests("heroku", "PATCH") if e["path"] != API_PATCH],
        "github": eng_world.requests("github", "PUT", GITHUB_PUT),
        "infisical": eng_world.requests("infisical", "PATCH", INFISICAL_PATH),
        "ssm": eng_world.sandbox.ssm().get_parameter(
            Name="/raxx/prod/heroku/HK_PLATFORM_FULL")["Parameter"]["Version"],
    }
    eng_world.clear_faults("heroku")
    job = engine.run(job.job_id, "retry_distribute")
    assert job.status == "validated", last(job)
    after = {
        "heroku": [e for e in eng_world.requests("heroku", "PATCH") if e["path"] != API_PATCH],
        "github": eng_world.requests("github", "PUT", GITHUB_PUT),
        "infisical": eng_world.requests("infisical", "PATCH", INFISICAL_PATH),
        "ssm": eng_world.sandbox.ssm().get_parameter(
            Name="/raxx/prod/heroku/HK_PLATFORM_FULL")["Parameter"]["Version"],
    }
    assert after == before, "rows that had succeeded were written again"
    assert [r["status"] for r in eng_world.requests("heroku", "PATCH", API_PATCH)][-1] == 200
    assert row(job, API_ROW).attempts == 2
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    _assert_all_new(eng_world)


def test_distribute_partial_deleted_app_skip_consumer(eng_world: EngWorld) -> None:
    """The app is gone (404): skip_consumer marks it skipped and the job proceeds."""
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path=API_PATCH, status=404)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    assert len(eng_world.requests("heroku", "PATCH", API_PATCH)) == 1  # 404 is not retried
    assert row(job, API_ROW).holds == "old"  # refused outright: nothing was written
    job = engine.run(job.job_id, "skip_consumer", consumers=[API_ROW])
    assert job.status == "validated", last(job)
    assert (row(job, API_ROW).distribute_status, row(job, API_ROW).validate_status) == (
        RowStatus.SKIPPED, RowStatus.SKIPPED)
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    _assert_all_new(eng_world, except_=frozenset({API_ROW}))


@pytest.mark.parametrize("status", [403, 422])
def test_distribute_partial_github_secret_manual_confirm(eng_world: EngWorld,
                                                         status: int) -> None:
    """The Actions secret PUT is refused: the operator sets the secret by hand (runbook 6c
    option B) and manual_confirm lets the job proceed; the row's check then proves it."""
    engine, job = start(eng_world)
    eng_world.fault("github", method="PUT", path=GITHUB_PUT, status=status)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    assert row(job, GITHUB_ROW).distribute_status == RowStatus.FAILED
    eng_world.clear_faults("github")
    # Option B: the operator pushes the new value with GitHub's own interface.
    pending = eng_world.vault(HK, "__PENDING")
    assert pending is not None
    eng_world.sandbox.github.set_secret("repo:raxx/platform", "HEROKU_API_KEY", pending)
    job = engine.run(job.job_id, "manual_confirm", consumers=[GITHUB_ROW])
    assert job.status == "validated", last(job)
    assert row(job, GITHUB_ROW).distribute_status == RowStatus.MANUALLY_CONFIRMED
    assert row(job, GITHUB_ROW).validate_status == RowStatus.SUCCEEDED
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    assert eng_world.health(GITHUB_ROW) == 200
    _assert_all_new(eng_world)


def test_distribute_partial_infisical_write_then_retry(eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    eng_world.fault("infisical", method="PATCH", path=INFISICAL_PATH, status=500)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    assert row(job, INFISICAL_ROW).distribute_status == RowStatus.FAILED
    eng_world.clear_faults("infisical")
    job = engine.run(job.job_id, "retry_distribute")
    assert job.status == "validated", last(job)
    assert revoke(engine, job).status == "done"
    _assert_all_new(eng_world)


def test_distribute_partial_ssm_access_denied(eng_world: EngWorld) -> None:
    """moto answers AccessDeniedException for parameters under the reserved /aws/ path, which is
    exactly what an IAM policy not covering the path gives: that row fails, the job rests in
    distribute_partial, and nothing was written there, so rollback can restore the rest."""
    denied = "/aws/raxx/prod/heroku/HK_PLATFORM_FULL"

    def add_consumer(document: dict[str, Any]) -> None:
        cred = next(c for c in document["credentials"] if c["name"] == HK)
        cred["consumers"].append({"consumer_id": "ssm-heroku-denied", "kind":
                                  "aws_ssm_parameter", "env": "prod", "name": denied,
                                  "region": "us-east-1", "healthcheck": {"type": "readback"}})

    eng_world.edit_manifest(add_consumer)
    engine, job = start(eng_world)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    failed = row(job, "ssm-heroku-denied")
    assert failed.distribute_status == RowStatus.FAILED
    assert "AccessDeniedException" in (failed.detail or "")
    assert failed.holds == "old"
    assert eng_world.sandbox.ssm_value(denied) is None
    job = engine.run(job.job_id, "rollback")
    assert job.status == "aborted", last(job)
    old = eng_world.world.values[HK]
    values = eng_world.consumer_values(HK)
    assert values.pop("ssm-heroku-denied") is None
    assert set(values.values()) == {old}


# --- 6d: validation --------------------------------------------------------------------------


def test_validate_partial_consumer_401_then_retry_validation(eng_world: EngWorld) -> None:
    """One consumer's health check answers 401 after the write (it has not picked the value
    up): validate_partial; once it serves the new value, retry_validation reaches validated."""
    engine, job = start(eng_world)
    eng_world.fault("consumers", method="GET", path=f"/consumers/{API_ROW}/health", status=401)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validate_partial", last(job)
    assert row(job, API_ROW).validate_status == RowStatus.FAILED
    assert "HTTP 401" in (row(job, API_ROW).detail or "")
    # refused without --force-revoke, and nothing is revoked
    with pytest.raises(ActionNotAllowed, match="allowed: retry_validation"):
        revoke(engine, job)
    eng_world.clear_faults("consumers")
    job = engine.run(job.job_id, "retry_validation")
    assert job.status == "validated", last(job)
    assert revoke(engine, job).status == "done"


def test_validate_failed_every_check_401_then_retry_validation(eng_world: EngWorld) -> None:
    """Every consumer of CF_ZONE_READ has an http check; all answer 401: validate_failed."""
    engine, job = start(eng_world, "CF_ZONE_READ")
    eng_world.fault("consumers", method="GET", path="/consumers/*/health", status=401)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validate_failed", last(job)
    eng_world.clear_faults("consumers")
    job = engine.run(job.job_id, "retry_validation")
    assert job.status == "validated", last(job)
    assert revoke(engine, job).status == "done"


def test_manual_healthcheck_consumer_needs_manual_confirm(eng_world: EngWorld) -> None:
    """HK_DEPLOY_BOT's legacy cron has no health check: validate_partial with manual_required;
    retry_validation leaves it so; manual_confirm validates the job."""
    manual = "heroku-config-legacy-cron-prod"
    engine, job = start(eng_world, "HK_DEPLOY_BOT")
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validate_partial", last(job)
    assert row(job, manual).validate_status == RowStatus.MANUAL_REQUIRED
    assert {r.validate_status for r in job.consumers if r.consumer_id != manual} == {
        RowStatus.SUCCEEDED}
    job = engine.run(job.job_id, "retry_validation")
    assert job.status == "validate_partial", last(job)
    assert row(job, manual).validate_status == RowStatus.MANUAL_REQUIRED
    job = engine.run(job.job_id, "manual_confirm", consumers=[manual])
    assert job.status == "validated", last(job)
    assert row(job, manual).validate_status == RowStatus.MANUALLY_CONFIRMED
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    _assert_all_new(eng_world, "HK_DEPLOY_BOT")


# --- stage 3: the re-check before revoke ------------------------------------------------------


def test_proceed_revoke_when_a_consumer_regressed(eng_world: EngWorld) -> None:
    """Between validation and revoke someone put a stale value on one app: the re-check stops
    the revoke (validate_partial, old token alive); once fixed, the job completes."""
    engine, job = to_validated(eng_world)
    new = eng_world.vault(HK, "__PENDING")
    assert new is not None
    eng_world.sandbox.heroku.set_config_vars(API_APP, {"HEROKU_API_KEY": "HRKU-stale-value"})
    job = revoke(engine, job)
    assert job.status == "validate_partial", last(job)
    assert row(job, API_ROW).validate_status == RowStatus.FAILED
    assert eng_world.requests("heroku", "DELETE") == []
    old_id = eng_world.world.heroku_auth_ids[HK]
    assert old_id in eng_world.sandbox.heroku.authorization_ids()
    eng_world.sandbox.heroku.set_config_vars(API_APP, {"HEROKU_API_KEY": new})
    job = engine.run(job.job_id, "retry_validation")
    assert job.status == "validated", last(job)
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    assert old_id not in eng_world.sandbox.heroku.authorization_ids()


def test_force_revoke_from_validate_partial(eng_world: EngWorld) -> None:
    """A job created with --force-revoke may revoke from validate_partial; the unvalidated
    consumers are recorded on the revoke event."""
    engine, job = start(eng_world, force_revoke=True)
    eng_world.fault("consumers", method="GET", path=f"/consumers/{API_ROW}/health", status=401)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validate_partial", last(job)
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    event = next(e for e in job.events if e.action == "proceed_revoke")
    assert event.data["unvalidated_consumers"] == [API_ROW]
    assert event.data["ticket"] == ticket(HK)
    assert row(job, API_ROW).validate_status == RowStatus.FAILED
    assert eng_world.world.heroku_auth_ids[HK] not in eng_world.sandbox.heroku.authorization_ids()


# --- 6e: revoke ------------------------------------------------------------------------------


def test_revoke_failed_then_retry_revoke(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    old_id = eng_world.world.heroku_auth_ids[HK]
    eng_world.fault("heroku", method="DELETE", path=f"/oauth/authorizations/{old_id}",
                    status=500)
    job = revoke(engine, job)
    assert job.status == "revoke_failed", last(job)
    assert old_id in (job.events[-1].detail or "")  # the runbook: note old_auth_id
    assert old_id in eng_world.sandbox.heroku.authorization_ids()
    eng_world.clear_faults("heroku")
    job = engine.run(job.job_id, "retry_revoke")
    assert job.status == "done", last(job)
    assert old_id not in eng_world.sandbox.heroku.authorization_ids()
    assert eng_world.vault(HK) == eng_world.consumer_values(HK)[API_ROW]
    assert eng_world.vault(HK, "__AUTH_ID") == job.new_auth_id


def test_revoke_404_already_deleted_out_of_band(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    old_id = eng_world.world.heroku_auth_ids[HK]
    eng_world.sandbox.heroku.revoke_authorization(old_id)
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    assert "already revoked" in (arrival(job, "done").detail or "")
    assert [r["status"] for r in eng_world.requests("heroku", "DELETE")] == [404]


def test_revoke_failed_then_mark_manually_revoked(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    old_id = eng_world.world.heroku_auth_ids[HK]
    eng_world.fault("heroku", method="DELETE", path="/oauth/authorizations/*", status=500)
    job = revoke(engine, job)
    assert job.status == "revoke_failed", last(job)
    with pytest.raises(GateRefused, match="--ticket"):
        engine.run(job.job_id, "mark_manually_revoked")
    assert eng_world.job(job.job_id).status == "revoke_failed"
    # The operator revokes it with the vendor's CLI, then records that.
    eng_world.sandbox.heroku.revoke_authorization(old_id)
    job = engine.run(job.job_id, "mark_manually_revoked", ticket=ticket(HK))
    assert job.status == "done", last(job)
    assert job.ticket == ticket(HK)
    assert eng_world.vault(HK) == eng_world.consumer_values(HK)[API_ROW]
    assert eng_world.vault(HK, "__PENDING") is None


def test_exactly_one_new_authorization_after_a_clean_rotation(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    auths = eng_world.heroku_auths(PLATFORM_EMAIL)
    assert [a["id"] for a in auths] == [job.new_auth_id]
    assert labelled(auths, job.job_id) == auths
    _assert_all_new(eng_world)
    assert not eng_world.sandbox.heroku.token_is_live(eng_world.world.values[HK])
