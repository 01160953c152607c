"""What the fault campaign (tests/engine/campaign.py) found, shrunk by hand to ordinary
regression tests against the fakes: one test per distinct way the promises break.

The promises are checked against the fakes' own state, as the campaign does.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from velvet_runner.errors import VendorError
from velvet_runner.machine import IN_PROGRESS, Flow
from velvet_runner.records import fingerprint, utcnow
from velvet_runner.watchdog import find_stuck
from velvet_sandbox.world import INFISICAL_ENV, INFISICAL_PROJECT, VAULT_PATH

from .campaign import Impatient
from .support import (
    CRASH_EXIT,
    HK,
    PLATFORM_EMAIL,
    EngWorld,
    last,
    revoke,
    start,
    to_validated,
)

ROLL = "/oauth/authorizations/*/actions/regenerate-tokens"


def _nothing_live_unaccounted(eng: EngWorld) -> None:
    """I1: every live token of the credential's user is the vault's current value, the pending
    value of an in-flight job, or debt listed by its job and by `velvet stuck`."""
    def slot(suffix: str) -> str | None:
        return eng.sandbox.infisical.secret_value(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                                  HK + suffix)

    engine = eng.engine()
    jobs = engine.store.list_jobs(HK)
    # Debt names a token by its vendor id, or by its fingerprint where the id is unknown.
    listed = {name for d in find_stuck(engine.manifest, engine.store, utcnow(),
                                       env=engine.settings.env)["revocation_debt"]
              for name in (d["auth_id"], d["fingerprint"]) if name}
    debt = {name for j in jobs for d in j.revocation_debt if d.settled_at is None
            for name in (d.auth_id, d.fingerprint) if name}
    held = {fingerprint(v) for v in (slot(""), slot("__PENDING")) if v}
    for auth in eng.heroku_auths(PLATFORM_EMAIL):
        names = {auth["id"], auth["token"]}
        assert auth["token"] in held or (names & debt and names & listed), (
            f"live authorization {auth['id']} ({auth['description']}) is held by no vault "
            f"slot and is not listed as debt: {[(j.status, last(j)) for j in jobs]}")


def test_an_emergency_preempting_a_validated_job_kills_the_value_live_when_declared(
        eng_world: EngWorld) -> None:
    """#20 case 3 (campaign: I2). The abort of the validated job promotes its new value and the
    emergency rolls that one, so the value in production when the emergency was declared
    stays live while the revocation says rev_done."""
    engine, _ = to_validated(eng_world)
    declared = eng_world.vault(HK)
    assert declared is not None
    job, created = engine.create(HK, Flow.REVOCATION, preempt=True)
    assert created
    job = engine.run(job.job_id, "revoke")
    assert job.status == "rev_done", last(job)
    assert not eng_world.sandbox.heroku.token_is_live(declared), last(job)


def test_a_vault_outage_after_an_emergency_roll_loses_no_token(eng_world: EngWorld) -> None:
    """#20 case 2 (campaign: I1). The roll happened; the vault refused the rolled value; the
    ledger calls the roll never issued, and the one live authorization holds a value nobody
    has."""
    engine = eng_world.engine()
    job, _ = engine.create(HK, Flow.REVOCATION)
    eng_world.fault("infisical", method="PATCH", path=f"/api/v4/secrets/{HK}", status=503,
                    times=4)
    job = engine.run(job.job_id, "revoke")
    # The rolled value exists only in the process until the vault takes it: it waits the
    # outage out (rev_done with the vault holding it), or revokes it (rev_revoke_failed).
    assert job.status in ("rev_done", "rev_revoke_failed"), last(job)
    if job.status == "rev_done":
        rolled = eng_world.vault(HK)
        assert rolled is not None
        assert eng_world.sandbox.heroku.token_is_live(rolled)
    _nothing_live_unaccounted(eng_world)


@pytest.mark.parametrize("lie", ["truncate", "hang", "unanswered"])
def test_an_emergency_roll_whose_answer_is_lost_loses_no_token(eng_world: EngWorld,
                                                               lie: str) -> None:
    """Found by the campaign (I1): the vendor rolled, its answer never arrived whole (cut
    short, or a timeout) and the ledger records the roll as never issued; the rolled value is
    live and held by no one, the vault keeps the dead one. A roll that was not performed (a
    gateway's 504) is debt by its id until the retry's roll ends it."""
    engine = eng_world.engine(transport=Impatient())
    job, _ = engine.create(HK, Flow.REVOCATION)
    compromised = eng_world.vault(HK)
    assert compromised is not None
    spec: dict[str, Any] = {"truncate": {"truncate": True}, "hang": {"hang": True, "status": None},
                            "unanswered": {"status": 504}}[lie]
    eng_world.fault("heroku", method="POST", path=ROLL, times=1, **spec)
    job = engine.run(job.job_id, "revoke")
    eng_world.clear_faults("heroku")  # a hung roll lands now
    _nothing_live_unaccounted(eng_world)
    heroku = eng_world.sandbox.heroku
    deadline = time.monotonic() + 10
    while lie == "hang" and heroku.token_is_live(compromised):
        assert time.monotonic() < deadline, "the hung roll never landed"
        time.sleep(0.1)  # the late roll lands on the fake's own thread
    if job.status == "rev_revoke_failed":
        job = engine.run(job.job_id, "retry_revoke")
    _nothing_live_unaccounted(eng_world)
    assert not heroku.token_is_live(compromised)
    if lie == "unanswered":  # nothing was lost: the retry's roll ends it cleanly
        assert job.status == "rev_done", last(job)
        assert [d for d in job.revocation_debt if d.settled_at is None] == []
        rolled = eng_world.vault(HK)
        assert rolled is not None
        assert heroku.token_is_live(rolled)
    else:  # the rolled value is gone: a person regenerates it (the message says how)
        assert job.status == "rev_revoke_failed", last(job)
        assert "regenerate" in last(job).lower()


def test_an_emergency_roll_acknowledged_and_not_performed_is_not_believed(
        eng_world: EngWorld) -> None:
    """Found by the campaign (I1): the vendor acknowledged the roll and did not perform it;
    the vault is overwritten with a value that never worked, the compromised value stays live,
    and the ledger says it is the vault's current value."""
    engine = eng_world.engine()
    job, _ = engine.create(HK, Flow.REVOCATION)
    compromised = eng_world.vault(HK)
    assert compromised is not None
    eng_world.fault("heroku", method="POST", path=ROLL, drop=True, times=1)
    job = engine.run(job.job_id, "revoke")
    assert job.status != "rev_done" or not eng_world.sandbox.heroku.token_is_live(compromised)
    _nothing_live_unaccounted(eng_world)


def test_a_401_blip_at_verify_does_not_settle_the_old_value(eng_world: EngWorld) -> None:
    """#20 case 1 (campaign: I2). One 401 at verify settles the old entry proven dead; the
    job then ends done without revoking it."""
    engine = eng_world.engine()
    job, _ = engine.create(HK)
    old = eng_world.vault(HK)
    assert old is not None
    eng_world.fault("heroku", method="GET", path="/account", status=401, times=1)
    job = engine.run(job.job_id, "verify")
    assert job.status == "verify_failed", last(job)
    job = engine.run(job.job_id, "retry_verify")
    job = engine.run(job.job_id, "proceed_mint")
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    assert not eng_world.sandbox.heroku.token_is_live(old), last(job)


def test_a_consumer_write_acknowledged_and_not_stored_never_reaches_a_clean_done(
        eng_world: EngWorld) -> None:
    """#20 case 5 (campaign: I3). A config-var PATCH answered 200 that stored nothing passes
    validation during the overlap; after the revoke that consumer is broken and unnamed."""
    engine, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path="/apps/raxx-api-prod/config-vars",
                    drop=True, times=1)
    job = engine.run(job.job_id, "proceed_mint")
    if job.status == "validated":
        job = revoke(engine, job)
    if job.status != "done":
        return  # the fix: a write that cannot be shown to have landed is not succeeded
    said = " ".join(f"{e.detail} {e.data}" for e in job.events if e.to_state == "done")
    heroku = eng_world.sandbox.heroku
    broken = [cid for cid, value in eng_world.consumer_values(HK).items()
              if (value is None or not heroku.token_is_live(value)) and cid not in said]
    assert broken == [], last(job)


def test_a_vault_outage_while_promoting_records_a_failure(eng_world: EngWorld) -> None:
    """Found by the campaign (I5): the old value is revoked and proven dead, then the vault
    fails while the new value is promoted (its __AUTH_ID companion): the vendor error escapes
    the stage and the job rests in revoking, no failure recorded, nothing for `status` to say."""
    engine, job = to_validated(eng_world)
    eng_world.fault("infisical", method="PATCH", path=f"/api/v4/secrets/{HK}__AUTH_ID",
                    status=503)
    try:
        job = revoke(engine, job)
    except VendorError:
        job = eng_world.job(job.job_id)
    assert job.status not in IN_PROGRESS, last(job)


def test_a_regenerate_whose_answer_is_lost_keeps_its_intent(eng_world: EngWorld) -> None:
    """Found by the campaign (I4, then I1). A mint's value was lost in a crash; the resume
    regenerates the labelled token, and that answer is cut short: the stage withdraws the
    regenerate's intent as if the vendor had never been called, so the vendor issued two values
    against one intent, and the regenerated value is live and held by no one."""
    engine, job = start(eng_world)
    heroku = eng_world.sandbox.heroku
    issued_before = len(heroku.token_values())
    crashed = eng_world.cli("stage", job.job_id, "proceed_mint", crash_at="after_mint")
    assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
    eng_world.fault("heroku", method="POST", path=ROLL, truncate=True, times=1)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "mint_failed", last(job)
    issued = len(heroku.token_values()) - issued_before
    intents = [t for t in job.ledger if t.role in ("new", "rolled")]
    assert issued <= len(intents), [(t.token_id, t.life, t.intent) for t in job.ledger]
    _nothing_live_unaccounted(eng_world)
    job = engine.run(job.job_id, "proceed_mint")  # regenerates again: earlier values end
    assert job.status == "validated", last(job)
    assert [d for d in job.revocation_debt if d.settled_at is None] == []
    _nothing_live_unaccounted(eng_world)


def test_a_resumed_emergency_roll_that_meets_an_outage_keeps_the_lost_roll(
        eng_world: EngWorld) -> None:
    """Found by the campaign (I1). The roll happened and its value was lost in a crash; the
    resume tries to roll again, the vendor answers 500, and the ledger settles the rolled
    token as never issued: the authorization is live with a value nobody holds, and nothing
    lists it."""
    engine = eng_world.engine()
    job, _ = engine.create(HK, Flow.REVOCATION)
    crashed = eng_world.cli("stage", job.job_id, "revoke", crash_at="after_roll")
    assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
    eng_world.fault("heroku", method="POST", path=ROLL, status=500, times=1)
    job = engine.run(job.job_id, "revoke")
    _nothing_live_unaccounted(eng_world)


def test_a_vault_value_revoked_by_hand_leaves_no_revocation_resting_mid_stage(
        eng_world: EngWorld) -> None:
    """Found by the campaign (I5, seed 3902999155). A roll's value lost in a crash; the operator
    replaces it by hand, then revokes the vault's value by hand too; retry_revoke's final proof
    asks the vendor about the old id with the vault's (dead) value, is refused, and the job
    rested in rev_validating with a vendor error. A refused asking key is no answer: the
    proof is unknown, and the job ends in a state that says so."""
    engine = eng_world.engine()
    job, _ = engine.create(HK, Flow.REVOCATION)
    crashed = eng_world.cli("stage", job.job_id, "revoke", crash_at="after_roll")
    assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
    job = engine.run(job.job_id, "revoke")
    assert job.status == "rev_revoke_failed", last(job)
    heroku = eng_world.sandbox.heroku

    def replace_lost_roll() -> None:  # runbook: delete the live authorization, put a fresh one
        for debt in eng_world.job(job.job_id).revocation_debt:
            if debt.settled_at is None and debt.auth_id is not None:
                heroku.revoke_authorization(debt.auth_id)
        fresh_id, fresh = heroku.add_authorization(PLATFORM_EMAIL, description="by hand")
        for suffix, value in (("", fresh), ("__AUTH_ID", fresh_id)):
            eng_world.sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV,
                                                   VAULT_PATH, HK + suffix, value)

    def revoke_old_by_hand() -> None:  # runbook 9: the vault's value, in the dashboard
        current = eng_world.vault(HK)
        auth_id = heroku.authorization_id(current) if current else None
        if auth_id is not None:
            heroku.revoke_authorization(auth_id)

    for _ in range(5):
        replace_lost_roll()
        revoke_old_by_hand()
    engine.settle_debt()
    revoke_old_by_hand()
    job = engine.run(job.job_id, "retry_revoke")
    assert job.status not in IN_PROGRESS, last(job)
    # what the operator reads names the cause, and a retry after fixing it succeeds
    assert "refuses it too: put a working value in" in last(job)
    _nothing_live_unaccounted(eng_world)
    replace_lost_roll()
    job = engine.run(job.job_id, "retry_revoke")
    assert job.status == "rev_done", last(job)
    _nothing_live_unaccounted(eng_world)
