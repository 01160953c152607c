"""Crash safety: `VELVET_CRASH_AT=<point>` makes a real `velvet stage` process exit hard (status
99, no cleanup) at a side-effect boundary; running the same action again must end where an
uninterrupted run ends, with exactly one token minted and every consumer on the new value.
"""

from __future__ import annotations

from typing import Any

import pytest

from velvet_runner.records import Job, RowStatus
from velvet_sandbox import cloudflare
from velvet_sandbox.world import INFISICAL_ENV, INFISICAL_PROJECT, VAULT_PATH

from .support import (
    CRASH_EXIT,
    HK,
    PLATFORM_EMAIL,
    EngWorld,
    labelled,
    last,
    revoke,
    ticket,
)

API_PATCH = "/apps/raxx-api-prod/config-vars"
REVOKE_ARGS = ("--ticket", ticket(HK), "--confirm", HK)

# (action, crash point, where the record rests after the crash)
POINTS = [
    ("verify", "verify", "verifying"),
    ("proceed_mint", "after_mint", "minting"),
    ("proceed_mint", "after_vault_write", "minting"),
    ("proceed_mint", "distribute_start", "distributing"),
    ("proceed_mint", "mid_distribute", "distributing"),
    ("proceed_mint", "after_distribute", "distributing"),
    ("retry_distribute", "distribute_start", "distributing"),
    ("retry_distribute", "mid_distribute", "distributing"),
    ("retry_distribute", "after_distribute", "distributing"),
    ("proceed_revoke", "before_revoke", "revoking"),
    ("proceed_revoke", "after_revoke", "revoking"),
    ("proceed_revoke", "after_promote", "revoking"),
]


def _crash(eng: EngWorld, job: Job, action: str, point: str, rests_in: str) -> None:
    args = REVOKE_ARGS if action == "proceed_revoke" else ()
    proc = eng.cli("stage", job.job_id, action, *args, crash_at=point)
    assert proc.returncode == CRASH_EXIT, proc.stderr[-2000:]
    assert f"VELVET_CRASH_AT={point}: exiting hard" in proc.stderr
    assert proc.stdout == ""  # died before printing anything
    assert eng.job(job.job_id).status == rests_in


def _rerun(eng: EngWorld, job: Job, action: str, expect: str) -> Job:
    """The same action again, through the CLI (its JSON on stdout is the record)."""
    args = REVOKE_ARGS if action == "proceed_revoke" else ()
    rerun = eng.cli_job("stage", job.job_id, action, *args)
    assert rerun.status == expect, last(rerun)
    return rerun


def _assert_like_an_uninterrupted_run(eng: EngWorld, job: Job) -> None:
    assert job.status == "done", last(job)
    assert {(r.distribute_status, r.validate_status, r.holds) for r in job.consumers} == {
        (RowStatus.SUCCEEDED, RowStatus.SUCCEEDED, "new")}
    # Exactly one token minted: one authorization labelled for this job, created by one POST;
    # the bot user's live tokens are that one alone (the old one revoked).
    auths = eng.heroku_auths(PLATFORM_EMAIL)
    assert len(labelled(auths, job.job_id)) == 1
    assert [a["id"] for a in auths] == [job.new_auth_id]
    assert len(eng.requests("heroku", "POST", "/oauth/authorizations")) == 1
    old, new = eng.world.values[HK], eng.vault(HK)
    heroku = eng.sandbox.heroku
    assert new is not None
    assert heroku.token_is_live(new)
    assert not heroku.token_is_live(old)
    # No consumer left on an unknown value: every store holds the new one.
    assert eng.consumer_values(HK) == {cid: new for cid in eng.consumer_values(HK)}
    assert eng.vault(HK, "__AUTH_ID") == job.new_auth_id
    assert eng.vault(HK, "__PENDING") is None
    assert eng.vault(HK, "__PENDING_META") is None
    assert eng.sandbox.heroku.authorization_id(new) == job.new_auth_id


@pytest.mark.parametrize(("action", "point", "rests_in"), POINTS,
                         ids=[f"{a}@{p}" for a, p, _ in POINTS])
def test_crash_then_rerun_same_action(eng_world: EngWorld, action: str, point: str,
                                      rests_in: str) -> None:
    engine = eng_world.engine()
    job, _ = engine.create(HK)
    if action == "verify":
        _crash(eng_world, job, action, point, rests_in)
        job = _rerun(eng_world, job, action, "verified")
        assert job.old_auth_id == eng_world.world.heroku_auth_ids[HK]
        assert eng_world.requests("heroku", "POST") == []
        return
    job = engine.run(job.job_id, "verify")
    assert job.status == "verified", last(job)
    if action == "proceed_mint":
        _crash(eng_world, job, action, point, rests_in)
        if point == "after_mint":
            # The window the label exists for: minted at the vendor, not yet in the vault.
            assert len(labelled(eng_world.heroku_auths(PLATFORM_EMAIL), job.job_id)) == 1
            assert eng_world.vault(HK, "__PENDING") is None
            assert set(eng_world.consumer_values(HK).values()) == {eng_world.world.values[HK]}
        job = _rerun(eng_world, job, action, "validated")
    elif action == "retry_distribute":
        eng_world.fault("heroku", method="PATCH", path=API_PATCH, status=500)
        job = engine.run(job.job_id, "proceed_mint")
        assert job.status == "distribute_partial", last(job)
        eng_world.clear_faults("heroku")
        _crash(eng_world, job, action, point, rests_in)
        job = _rerun(eng_world, job, action, "validated")
    else:
        job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validated", last(job)
    if action == "proceed_revoke":
        _crash(eng_world, job, action, point, rests_in)
        if point != "before_revoke":
            assert eng_world.world.heroku_auth_ids[HK] not in (
                eng_world.sandbox.heroku.authorization_ids())
        job = _rerun(eng_world, job, action, "done")
    else:
        job = revoke(engine, job)
    _assert_like_an_uninterrupted_run(eng_world, job)


def test_crash_after_mint_finds_the_labelled_token_past_the_first_page(
        eng_world: EngWorld) -> None:
    """An account-owned Cloudflare token whose account holds more tokens than one list page:
    the resumed mint must still find the token it labelled, not mint a second one."""
    name, account = "CF_ACCOUNT_TOKENS", cloudflare.DEFAULT_ACCOUNT_ID
    cf = eng_world.sandbox.cloudflare
    policies = [{"effect": "allow", "resources": {f"com.cloudflare.api.account.{account}": "*"},
                 "permission_groups": [{"id": cloudflare.ACCOUNT_API_TOKENS_WRITE}]}]
    token_ids = [cf.add_token(account, policies, f"ci-token-{i}")[0] for i in range(60)]
    own_id, value = cf.add_token(account, policies, name)
    for token_id in [*token_ids, own_id]:  # issued well before the rotation starts
        cf._tokens[token_id].issued_on = "2026-01-01T00:00:00Z"
    sbx = eng_world.sandbox
    for path, secret in ((VAULT_PATH, name), ("/cloudflare", "CF_ACCOUNT_TOKEN")):
        sbx.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, path, secret, value)

    def add_credential(document: dict[str, Any]) -> None:
        document["credentials"].append({
            "name": name, "vendor": "cloudflare", "env": "prod", "schedule": "90d",
            "options": {"token_type": "account", "account_id": account},
            "vault": {"kind": "infisical_secret", "project_id": INFISICAL_PROJECT,
                      "environment": INFISICAL_ENV, "secret_path": VAULT_PATH, "name": name},
            "approvers": {"prod": ["alice", "bob"]},
            "consumers": [{"consumer_id": "infisical-cf-account-token", "env": "prod",
                           "kind": "infisical_secret", "project_id": INFISICAL_PROJECT,
                           "environment": INFISICAL_ENV, "secret_path": "/cloudflare",
                           "name": "CF_ACCOUNT_TOKEN", "healthcheck": {"type": "readback"}}]})

    eng_world.edit_manifest(add_credential)
    engine = eng_world.engine()
    job, _ = engine.create(name)
    job = engine.run(job.job_id, "verify")
    assert job.status == "verified", last(job)
    _crash(eng_world, job, "proceed_mint", "after_mint", "minting")
    job = _rerun(eng_world, job, "proceed_mint", "validated")
    minted = [t for t in cf.snapshot()["tokens"].values() if t["name"] == f"velvet-{job.job_id}"]
    assert [t["id"] for t in minted] == [job.new_auth_id]
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    assert cf.token(own_id) is None
