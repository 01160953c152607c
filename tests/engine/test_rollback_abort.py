"""Leaving a rotation before revoke: rollback (every consumer back on the old value, the new
token dead at the vendor, the pending slot cleared) and abort (residual state reported,
revocation debt recorded)."""

from __future__ import annotations

import json

from .support import (
    HK,
    PLATFORM_EMAIL,
    EngWorld,
    labelled,
    last,
    row,
    start,
    to_validated,
)

API_APP = "raxx-api-prod"
API_ROW = "heroku-config-api-prod"
API_PATCH = f"/apps/{API_APP}/config-vars"


def _assert_rolled_back(eng: EngWorld, job_id: str, new_auth_id: str | None,
                        new_value: str) -> None:
    old = eng.world.values[HK]
    values = eng.consumer_values(HK)
    assert values
    assert set(values.values()) == {old}, {k: v == old for k, v in values.items()}
    heroku = eng.sandbox.heroku
    assert heroku.token_is_live(old)
    assert not heroku.token_is_live(new_value)
    assert new_auth_id not in heroku.authorization_ids()
    assert labelled(eng.heroku_auths(PLATFORM_EMAIL), job_id) == []
    assert eng.vault(HK) == old
    assert eng.vault(HK, "__PENDING") is None
    assert eng.vault(HK, "__PENDING_META") is None
    for consumer_id in eng.world.http_consumers:
        if consumer_id in values:
            assert eng.health(consumer_id) == 200, consumer_id


def test_rollback_from_distribute_partial(eng_world: EngWorld) -> None:
    """While the failed app still errors, rollback refuses to kill the new token (that app may
    hold it); once the app answers, rollback restores it and every other consumer."""
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path=API_PATCH, status=500)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    new_value = eng_world.vault(HK, "__PENDING")
    assert new_value is not None
    assert row(job, API_ROW).holds == "unknown"

    job = engine.run(job.job_id, "rollback")
    assert job.status == "distribute_partial", last(job)
    assert job.events[-1].action == "rollback_failed"
    assert API_ROW in (job.events[-1].detail or "")
    assert eng_world.sandbox.heroku.token_is_live(new_value)  # not revoked yet

    eng_world.clear_faults("heroku")
    job = engine.run(job.job_id, "rollback")
    assert job.status == "aborted", last(job)
    assert job.report["rollback"] == {"new_token": "revoked"}
    assert job.revocation_debt == []
    assert {r.holds for r in job.consumers} == {"old"}
    _assert_rolled_back(eng_world, job.job_id, job.new_auth_id, new_value)


def test_rollback_from_validated(eng_world: EngWorld) -> None:
    engine, job = to_validated(eng_world)
    new_value = eng_world.vault(HK, "__PENDING")
    assert new_value is not None
    assert set(eng_world.consumer_values(HK).values()) == {new_value}
    job = engine.run(job.job_id, "rollback")
    assert job.status == "aborted", last(job)
    assert job.report["rollback"] == {"new_token": "revoked"}
    assert job.revocation_debt == []
    _assert_rolled_back(eng_world, job.job_id, job.new_auth_id, new_value)


def test_abort_from_validated_reports_residual_and_records_debt(eng_world: EngWorld) -> None:
    """Runbook 12: abort from validated does not roll back. The CLI prints who holds what on
    stderr; the old token (superseded, still live) is the revocation debt, and the vault is
    left naming the value every consumer uses."""
    _, job = to_validated(eng_world)
    new_value = eng_world.vault(HK, "__PENDING")
    old_id = eng_world.world.heroku_auth_ids[HK]
    proc = eng_world.cli("stage", job.job_id, "abort")
    assert proc.returncode == 0, proc.stderr
    assert "Residual state after abort (runbook 6f):" in proc.stderr
    said = " ".join(proc.stderr.split())  # wrapped for a terminal
    held = ", ".join(sorted(c.consumer_id for c in job.consumers))
    assert f"consumers that hold the new value: {held}" in said
    assert f"still live, not revoked (revocation debt): token old (auth id {old_id}," in said
    assert "revoke the old token at the vendor by hand" in said
    job = eng_world.job(job.job_id)
    assert job.status == "aborted"
    assert [(d.auth_id, d.fingerprint, d.settled_at) for d in job.revocation_debt] == [
        (old_id, job.old_fingerprint, None)]
    assert job.report["residual"]["from_state"] == "validated"
    # Nothing was rolled back or revoked; both tokens still work.
    heroku = eng_world.sandbox.heroku
    assert heroku.token_is_live(eng_world.world.values[HK])
    assert new_value is not None
    assert heroku.token_is_live(new_value)
    assert set(eng_world.consumer_values(HK).values()) == {new_value}
    assert eng_world.vault(HK) == new_value
    assert eng_world.vault(HK, "__AUTH_ID") == job.new_auth_id
    # The watchdog lists the debt until someone proves it dead.
    stuck = eng_world.cli("stuck", "--json")
    debt = json.loads(stuck.stdout)["revocation_debt"]
    assert [d["auth_id"] for d in debt] == [old_id]


def test_abort_from_distribute_partial_records_the_new_token_as_debt(eng_world: EngWorld
                                                                       ) -> None:
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path=API_PATCH, status=404)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    proc = eng_world.cli("stage", job.job_id, "abort")
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())  # wrapped for a terminal
    assert f"consumers that hold the old value: {API_ROW}" in said
    assert "consumers that hold the new value: github-actions-heroku-api-key," in said
    assert "heroku-config-console-prod" in said.split("hold the new value: ")[1]
    assert "sync every consumer holding the new value back" in said
    job = eng_world.job(job.job_id)
    assert [d.auth_id for d in job.revocation_debt] == [job.new_auth_id]
    assert eng_world.vault(HK) == eng_world.world.values[HK]  # the vault is not touched


def test_revocation_debt_settles_once_the_vendor_no_longer_has_the_token(
        eng_world: EngWorld) -> None:
    """DESIGN: a minted, unrevoked token stays listed until the vendor rejects it."""
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path=API_PATCH, status=404)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_partial", last(job)
    assert eng_world.cli("stage", job.job_id, "abort").returncode == 0
    eng_world.clear_faults("heroku")
    new_id = eng_world.job(job.job_id).new_auth_id
    assert new_id is not None

    # Still held at the vendor: asking does not settle it.
    still = eng_world.cli("stuck", "--settle-debt", "--json")
    assert f"auth id {new_id}: still live" in still.stderr
    assert [d["auth_id"] for d in json.loads(still.stdout)["revocation_debt"]] == [new_id]

    # The operator deletes it at Heroku (runbook 6f); the next check settles it.
    assert eng_world.sandbox.heroku.revoke_authorization(new_id)
    settled = eng_world.cli("stuck", "--settle-debt", "--json")
    assert f"auth id {new_id}: settled" in settled.stderr
    assert json.loads(settled.stdout)["revocation_debt"] == []
    record = eng_world.job(job.job_id)
    assert record.revocation_debt[0].settled_at is not None
    assert record.events[-1].action == "debt_settled"
