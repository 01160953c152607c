"""The token ledger (issue #12): the eight ways the promise broke, each against the fakes.

Every token Velvet mints is held somewhere known until it is proven dead; `done` means the old
value is refused by the vendor; nothing live is left outside the ledger. (Case 4, a roll whose
value was lost, is in tests/revocation/test_revocation.py.)
"""

from __future__ import annotations

import json

from velvet_runner import ledger
from velvet_runner.engine.handlers import HANDLERS
from velvet_runner.machine import TABLES, Action
from velvet_runner.records import Job, Life
from velvet_sandbox.world import INFISICAL_ENV, INFISICAL_PROJECT, VAULT_PATH

from .support import (
    CRASH_EXIT,
    HK,
    PLATFORM_EMAIL,
    EngWorld,
    labelled,
    last,
    revoke,
    start,
    ticket,
    to_validated,
)

OLD_DELETE = "/oauth/authorizations/*"
PENDING_WRITE = f"/api/v4/secrets/{HK}__PENDING*"


def _lives(job: Job) -> dict[str, str]:
    return {t.token_id: str(t.life) for t in job.ledger}


def _live_auths(eng: EngWorld, job: Job) -> list[str]:
    return [a["id"] for a in labelled(eng.heroku_auths(PLATFORM_EMAIL), job.job_id)]


def test_every_action_a_table_allows_has_a_handler() -> None:
    for flow, table in TABLES.items():
        actions = {t for _, t in table if isinstance(t, Action)}
        assert {a for f, a in HANDLERS if f == flow} == actions, flow


def test_a_full_rotation_leaves_an_old_token_proven_dead_and_the_new_one_current(
        eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    assert _lives(job) == {"old": "current", "new": "held"}
    new = job.token("new")
    assert new is not None
    assert new.label == f"velvet-{job.job_id}"
    assert new.held_by[0] == ledger.VAULT_PENDING
    assert len(new.held_by) == len(job.consumers) + 1
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    assert _lives(job) == {"old": "proven_dead", "new": "current"}
    old = job.token("old")
    assert old is not None
    assert "refused by the vendor" in (old.evidence or "")
    assert job.revocation_debt == []


# --- 1. a revoke answered 404 while the old token still works ------------------------------


def test_revoke_404_while_the_old_token_is_live_is_not_done(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    old_value = eng_world.world.values[HK]
    eng_world.fault("heroku", method="DELETE", path=OLD_DELETE, status=404)
    job = revoke(engine, job)
    assert job.status == "revoke_failed", last(job)
    detail = job.events[-1].detail or ""
    assert "404" in detail
    assert "still accepts" in detail
    assert "__AUTH_ID" in detail
    assert f"velvet stage {job.job_id} mark_manually_revoked --ticket" in detail
    assert eng_world.sandbox.heroku.token_is_live(old_value)
    assert _lives(job)["old"] == "current"
    assert eng_world.vault(HK) == old_value  # nothing promoted


def test_a_stale_auth_id_in_the_vault_is_caught_at_revoke(eng_world: EngWorld) -> None:
    """The realistic trigger: NAME__AUTH_ID names an authorization that no longer exists."""
    eng_world.sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                           f"{HK}__AUTH_ID",
                                           "00000000-0000-4000-8000-000000000000")
    engine, job = to_validated(eng_world)
    job = revoke(engine, job)
    assert job.status == "revoke_failed", last(job)
    assert eng_world.sandbox.heroku.token_is_live(eng_world.world.values[HK])


# --- 2. mark_manually_revoked while the old token works ------------------------------------


def test_mark_manually_revoked_is_refused_while_the_old_value_authenticates(
        eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    eng_world.fault("heroku", method="DELETE", path=OLD_DELETE, status=500)
    job = revoke(engine, job)
    assert job.status == "revoke_failed", last(job)
    refused = eng_world.cli("stage", job.job_id, "mark_manually_revoked", "--ticket", "T-1")
    assert refused.returncode == 2, refused.stderr
    assert "still accepts" in refused.stderr
    assert "--accept-debt" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert eng_world.job(job.job_id).status == "revoke_failed"

    # Revoked by hand at the vendor: now the word is believed, because the vendor agrees.
    eng_world.clear_faults("heroku")
    assert eng_world.sandbox.heroku.revoke_authorization(eng_world.world.heroku_auth_ids[HK])
    done = eng_world.cli_job("stage", job.job_id, "mark_manually_revoked", "--ticket", "T-1")
    assert done.status == "done", last(done)
    assert done.revocation_debt == []
    assert _lives(done) == {"old": "proven_dead", "new": "current"}


def test_accept_debt_records_the_live_old_value_as_debt(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    eng_world.fault("heroku", method="DELETE", path=OLD_DELETE, status=500)
    job = revoke(engine, job)
    done = eng_world.cli_job("stage", job.job_id, "mark_manually_revoked", "--ticket", "T-2",
                             "--accept-debt")
    assert done.status == "done", last(done)
    [debt] = done.revocation_debt
    assert debt.auth_id == eng_world.world.heroku_auth_ids[HK]
    assert debt.settled_at is None
    assert "T-2" in debt.reason
    stuck = eng_world.cli("stuck", "--json")
    assert [d["auth_id"] for d in json.loads(stuck.stdout)["revocation_debt"]] == [debt.auth_id]
    # Once it is revoked, settle-debt proves it dead.
    eng_world.clear_faults("heroku")
    assert eng_world.sandbox.heroku.revoke_authorization(debt.auth_id or "")
    eng_world.cli("stuck", "--settle-debt", "--json")
    assert eng_world.job(job.job_id).revocation_debt[0].settled_at is not None


# --- 3. abort after mint_failed ------------------------------------------------------------


def test_a_vault_refusing_the_pending_write_kills_the_minted_token_at_once(
        eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    eng_world.fault("infisical", method="PATCH", path=PENDING_WRITE, status=503)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "mint_failed", last(job)
    assert _live_auths(eng_world, job) == []  # revoked while the value was still in hand
    new = job.token("new")
    assert new is not None
    assert new.life == Life.PROVEN_DEAD
    assert new.auth_id is not None
    aborted = engine.run(job.job_id, "abort")
    assert aborted.status == "aborted"
    assert aborted.revocation_debt == []
    stuck = eng_world.cli("stuck", "--json")
    assert json.loads(stuck.stdout)["revocation_debt"] == []


def test_abort_after_a_crash_past_the_mint_revokes_the_labelled_token(
        eng_world: EngWorld) -> None:
    for point in ("after_mint", "after_vault_write"):
        engine, job = start(eng_world)
        crashed = eng_world.cli("stage", job.job_id, "proceed_mint", crash_at=point)
        assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
        assert len(_live_auths(eng_world, job)) == 1
        aborted = eng_world.cli("stage", job.job_id, "abort")
        assert aborted.returncode == 0, aborted.stderr[-2000:]
        record = eng_world.job(job.job_id)
        assert record.status == "aborted"
        assert _live_auths(eng_world, record) == [], point
        assert record.revocation_debt == [], point
        assert _lives(record)["new"] == "proven_dead", point
        assert eng_world.vault(HK, "__PENDING") is None, point


def test_abort_from_distribute_partial_names_the_new_token_as_debt(eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path="/apps/raxx-api-prod/config-vars", status=500)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    job = engine.run(job.job_id, "abort")
    [debt] = job.revocation_debt
    assert debt.auth_id == job.new_auth_id
    assert "may hold it" in debt.reason
    assert eng_world.sandbox.heroku.token_is_live(eng_world.vault(HK, "__PENDING") or "")


# --- 5. a killed rollback, then proceed_revoke ---------------------------------------------


def test_a_job_in_the_middle_of_a_rollback_only_finishes_it(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    old_value = eng_world.world.values[HK]
    crashed = eng_world.cli("stage", job.job_id, "rollback", crash_at="mid_rollback")
    assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
    mid = eng_world.job(job.job_id)
    assert mid.status == "validated"
    assert mid.rollback is not None
    assert "old" in {r.holds for r in mid.consumers}

    refused = eng_world.cli("stage", job.job_id, "proceed_revoke", "--ticket", ticket(HK),
                            "--confirm", HK)
    assert refused.returncode == 2, refused.stderr
    assert "middle of a rollback" in refused.stderr
    assert "rollback" in refused.stderr
    assert eng_world.sandbox.heroku.token_is_live(old_value)

    finished = eng_world.cli_job("stage", job.job_id, "rollback")
    assert finished.status == "aborted"
    assert finished.rollback is None
    assert set(eng_world.consumer_values(HK).values()) == {old_value}
    assert _live_auths(eng_world, finished) == []
    assert _lives(finished)["new"] == "proven_dead"
    assert finished.revocation_debt == []


# --- 6. proceed_revoke killed during its re-check ------------------------------------------


def test_proceed_revoke_killed_in_its_recheck_resumes_to_done(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    args = ("--ticket", ticket(HK), "--confirm", HK)
    crashed = eng_world.cli("stage", job.job_id, "proceed_revoke", *args, crash_at="recheck")
    assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
    resumed = eng_world.cli_job("stage", job.job_id, "proceed_revoke", *args)
    assert resumed.status == "done", last(resumed)


# --- 7. an emergency revocation never waits behind routine work ----------------------------


def test_a_revocation_is_refused_with_the_preempt_command_then_preempts(
        eng_world: EngWorld) -> None:
    engine = eng_world.engine()
    routine, _ = engine.create(HK)  # untouched, in init
    refused = eng_world.cli("rotate", HK, "--flow", "revocation")
    assert refused.returncode == 3
    assert f"velvet rotate {HK} --flow revocation --preempt" in refused.stderr
    created = eng_world.cli_job("rotate", HK, "--flow", "revocation", "--preempt")
    assert created.status == "rev_init"
    aborted = eng_world.job(routine.job_id)
    assert aborted.status == "aborted"
    assert "preempted" in [e.action for e in aborted.events]
    assert "residual" in aborted.report
    done = eng_world.cli("stage", created.job_id, "revoke")
    assert json.loads(done.stdout)["status"] in ("rev_done", "rev_leaked"), done.stderr[-2000:]


def test_preempting_a_job_with_a_minted_token_lists_it_as_debt(eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path="/apps/raxx-api-prod/config-vars", status=500)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial"
    eng_world.clear_faults("heroku")
    created = eng_world.cli_job("rotate", HK, "--flow", "revocation", "--preempt")
    assert created.status == "rev_init"
    aborted = eng_world.job(job.job_id)
    assert [d.auth_id for d in aborted.revocation_debt] == [job.new_auth_id]
    stuck = json.loads(eng_world.cli("stuck", "--json").stdout)
    assert job.new_auth_id in [d["auth_id"] for d in stuck["revocation_debt"]]


def test_preempt_only_applies_to_revocations(eng_world: EngWorld) -> None:
    proc = eng_world.cli("rotate", HK, "--preempt")
    assert proc.returncode == 2
    assert "--preempt" in proc.stderr


# --- 8. a killed mint issues at most one value per intent ----------------------------------


def test_a_mint_killed_before_the_vault_write_is_regenerated_under_its_own_intent(
        eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    issued_before = len(eng_world.sandbox.heroku.token_values())
    crashed = eng_world.cli("stage", job.job_id, "proceed_mint", crash_at="after_mint")
    assert crashed.returncode == CRASH_EXIT
    resumed = eng_world.cli_job("stage", job.job_id, "proceed_mint")
    assert resumed.status == "validated", last(resumed)
    entries = [t for t in resumed.ledger if t.role == "new"]
    # Two intents (the mint, then the regenerate of its lost value), one value each.
    assert [t.intent or "" for t in entries] == ["", ""]
    assert [t.life for t in entries] == [Life.PROVEN_DEAD, Life.HELD]
    assert "regenerated in place" in (entries[0].evidence or "")
    assert len(eng_world.sandbox.heroku.token_values()) - issued_before == len(entries)
    assert _live_auths(eng_world, resumed) == [resumed.new_auth_id]


def test_a_vendor_that_cannot_regenerate_revokes_the_lost_key_and_mints_once_more(
        eng_world: EngWorld) -> None:
    aws = "AWS_DEPLOY_KEY"
    iam = eng_world.sandbox.iam()
    old_id = eng_world.world.aws_access_key_ids[aws]
    engine, job = start(eng_world, aws)
    crashed = eng_world.cli("stage", job.job_id, "proceed_mint", crash_at="after_mint")
    assert crashed.returncode == CRASH_EXIT
    lost = {k["AccessKeyId"] for k in iam.list_access_keys(UserName="raxx-deploy")
            ["AccessKeyMetadata"]} - {old_id}
    resumed = eng_world.cli_job("stage", job.job_id, "proceed_mint")
    assert resumed.status == "validated", last(resumed)
    entries = [t for t in resumed.ledger if t.role == "new"]
    assert [t.life for t in entries] == [Life.PROVEN_DEAD, Life.HELD]
    assert {entries[0].auth_id} == lost
    keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName="raxx-deploy")
            ["AccessKeyMetadata"]}
    assert keys == {old_id, resumed.new_auth_id}
    done = revoke(engine, resumed)
    assert done.status == "done", last(done)


# --- manual_confirm is verified where the target reads back (issue #16) --------------------


def test_manual_confirm_of_a_row_that_never_got_the_value_is_refused(eng_world: EngWorld) -> None:
    """Every write to one app failed with 500; before revoke its old value still passes its
    healthcheck, so trusting the operator's click would cut it off at revoke."""
    engine, job = start(eng_world)
    api_row = "heroku-config-api-prod"
    eng_world.fault("heroku", method="PATCH", path="/apps/raxx-api-prod/config-vars", status=500)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    refused = eng_world.cli("stage", job.job_id, "manual_confirm", "--consumer", api_row)
    assert refused.returncode == 2, refused.stderr
    assert f"manual_confirm refused: {api_row} does not hold the new value" in refused.stderr
    assert "--ticket" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert eng_world.job(job.job_id).status == "distribute_partial"

    # With the operator's evidence it is accepted, and the evidence is on the record.
    vouched = eng_world.cli_job("stage", job.job_id, "manual_confirm", "--consumer", api_row,
                                "--ticket", "OPS-77")
    event = next(e for e in reversed(vouched.events) if e.action == "manual_confirm")
    assert "OPS-77" in event.data["evidence"][api_row]
    eng_world.clear_faults("heroku")
    # The operator's word was wrong: once the old value is dead the row fails its check, and
    # the job says so (exit 1) instead of reporting a clean done (issue #20).
    done = eng_world.cli_job("stage", job.job_id, "proceed_revoke", "--ticket", ticket(HK),
                             "--confirm", HK, expect=1)
    assert done.status == "done"
    assert list(done.report["after_revoke"]["failing"]) == [api_row]
    assert "NOT CLEAN" in (done.events[-2].detail or "") + (done.events[-1].detail or "")
    assert f"velvet push {done.job_id} --consumer {api_row}" in "".join(
        e.detail or "" for e in done.events[-2:])
    # The command it names pushes the new value, shows it landed and checks the row again.
    pushed = eng_world.cli_job("push", done.job_id, "--consumer", api_row)
    assert pushed.report["after_revoke"]["failing"] == {}
    assert pushed.events[-1].action == "pushed"
    assert eng_world.health(api_row) == 200
    revoking = next(e for e in done.events if e.action == "proceed_revoke")
    assert revoking.data["manually_confirmed_consumers"] == [api_row]
    assert api_row in (revoking.detail or "")
    summary = (eng_world.workdir / "step-summary.md").read_text()
    assert "Rows Velvet did not prove" in summary
    assert api_row in summary


def test_manual_confirm_of_a_row_holding_the_new_value_reads_it_back(eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    api_row = "heroku-config-api-prod"
    eng_world.fault("heroku", method="PATCH", path="/apps/raxx-api-prod/config-vars", status=500)
    job = engine.run(job.job_id, "proceed_mint")
    eng_world.clear_faults("heroku")
    pending = eng_world.vault(HK, "__PENDING")
    assert pending is not None
    eng_world.sandbox.heroku.set_config_vars("raxx-api-prod", {"HEROKU_API_KEY": pending})
    job = engine.run(job.job_id, "manual_confirm", consumers=[api_row])
    assert job.status == "validated", last(job)
    confirmed = next(e for e in job.events if e.action == "manual_confirm")
    assert confirmed.data["evidence"][api_row] == "reads back the new value"


def test_a_value_refused_at_verify_is_not_reported_live(eng_world: EngWorld) -> None:
    """Issue #16: after a 401 at verify, the abort report must not call the old value live."""
    engine = eng_world.engine()
    job, _ = engine.create(HK)
    eng_world.sandbox.heroku.revoke_authorization(eng_world.world.heroku_auth_ids[HK])
    job = engine.run(job.job_id, "verify")
    assert job.status == "verify_failed", last(job)
    # Issue #20: a refusal at verify is an observation, not a proof (a blip answers 401 too).
    assert _lives(job) == {"old": "current"}
    old = job.token("old")
    assert old is not None
    assert old.observed is not None
    assert "401" in old.observed
    aborted = engine.run(job.job_id, "abort")
    # The abort's report is a claim: the old value's death is proven when it is made.
    assert _lives(aborted) == {"old": "proven_dead"}
    residual = aborted.report["residual"]
    assert residual["old_value"]["live"] is False
    assert residual["orphaned_tokens"] == []
    assert "nothing to clean up" in residual["next_step"]


def test_retry_verify_after_the_vault_was_fixed_starts_a_new_entry(eng_world: EngWorld) -> None:
    engine = eng_world.engine()
    job, _ = engine.create(HK)
    eng_world.sandbox.heroku.revoke_authorization(eng_world.world.heroku_auth_ids[HK])
    job = engine.run(job.job_id, "verify")
    fresh_id, fresh = eng_world.sandbox.heroku.add_authorization(PLATFORM_EMAIL, description="x")
    for suffix, value in (("", fresh), ("__AUTH_ID", fresh_id)):
        eng_world.sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                               HK + suffix, value)
    job = engine.run(job.job_id, "retry_verify")
    assert job.status == "verified", last(job)
    assert _lives(job) == {"old": "proven_dead", "old-2": "current"}
    assert job.token("old-2") is not None
    assert job.old_auth_id == fresh_id
