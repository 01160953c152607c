"""Rotations through each vendor's own shape: Postmark (operator-assisted mint, manual revoke),
AWS IAM (two key slots), Cloudflare (create a second token, delete the old one; never roll)."""

from __future__ import annotations

from typing import Any

from velvet_runner.records import RowStatus

from .support import EngWorld, arrival, last, revoke, row, start, to_validated

PM = "PM_SERVER_MAIL"
PM_ROW = "infisical-postmark-prod"
AWS = "AWS_DEPLOY_KEY"
DEPLOY_USER = "raxx-deploy"
CF = "CF_ZONE_READ"


# --- Postmark ------------------------------------------------------------------------------


def _new_postmark_token(eng: EngWorld) -> str:
    """The operator clicks "Generate another token" in the Postmark dashboard."""
    server_id = eng.world.postmark_server_ids[PM]
    response = eng.control("postmark", "POST", f"/servers/{server_id}/tokens")
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_postmark_operator_assisted_rotation(eng_world: EngWorld) -> None:
    """Mint needs the operator's value in the vault's pending slot; a wrong value is refused
    at verify; revoke stays manual_required until the old token is deleted at Postmark."""
    old = eng_world.world.values[PM]
    engine, job = start(eng_world, PM)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "mint_failed", last(job)
    assert "__PENDING" in (job.events[-1].detail or "")

    eng_world.put_pending(PM, "6f0c3a52-0000-4000-8000-000000000000")  # mistyped value
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "mint_failed", last(job)
    assert "credential refused" in (job.events[-1].detail or "")

    new = _new_postmark_token(eng_world)
    eng_world.put_pending(PM, new)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validated", last(job)
    assert eng_world.consumer_values(PM) == {PM_ROW: new}
    assert row(job, PM_ROW).validate_status == RowStatus.SUCCEEDED

    job = revoke(engine, job)
    assert job.status == "revoke_failed", last(job)
    assert "manual_required" in (job.events[-1].detail or "")
    assert eng_world.sandbox.postmark.token_is_live(old)
    job = engine.run(job.job_id, "retry_revoke")
    assert job.status == "revoke_failed", last(job)  # still not deleted: still manual

    deleted = eng_world.control("postmark", "DELETE", f"/tokens/{old}")
    assert deleted.status_code == 200
    job = engine.run(job.job_id, "retry_revoke")
    assert job.status == "done", last(job)
    assert "refused by the vendor" in (arrival(job, "done").detail or "")
    assert eng_world.vault(PM) == new
    assert eng_world.vault(PM, "__PENDING") is None
    server_id = eng_world.world.postmark_server_ids[PM]
    assert eng_world.sandbox.postmark.server_tokens(server_id) == [new]


def test_postmark_infisical_write_failure_then_retry(eng_world: EngWorld) -> None:
    """Runbook section 9: the Infisical write for infisical-postmark-prod fails. It is the only
    consumer, so the job rests in distribute_failed; retry_distribute once Infisical answers."""
    engine, job = start(eng_world, PM)
    new = _new_postmark_token(eng_world)
    eng_world.put_pending(PM, new)
    eng_world.fault("infisical", method="PATCH", path="/api/v4/secrets/POSTMARK_SERVER_TOKEN",
                    status=503)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_failed", last(job)
    assert row(job, PM_ROW).distribute_status == RowStatus.FAILED
    assert eng_world.consumer_values(PM) == {PM_ROW: eng_world.world.values[PM]}
    eng_world.clear_faults("infisical")
    job = engine.run(job.job_id, "retry_distribute")
    assert job.status == "validated", last(job)
    assert eng_world.consumer_values(PM) == {PM_ROW: new}


def test_postmark_new_rotation_after_an_aborted_one(eng_world: EngWorld) -> None:
    """An aborted job leaves its value in the pending slot (runbook 6f). The next job's
    operator puts a fresh value there; it must be taken, not refused as another job's."""
    engine, job = start(eng_world, PM)
    eng_world.put_pending(PM, _new_postmark_token(eng_world))
    eng_world.fault("infisical", method="PATCH", path="/api/v4/secrets/POSTMARK_SERVER_TOKEN",
                    status=422)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "distribute_failed", last(job)
    job = engine.run(job.job_id, "abort")
    assert job.status == "aborted"
    eng_world.clear_faults("infisical")

    engine, second = start(eng_world, PM)
    fresh = _new_postmark_token(eng_world)
    eng_world.put_pending(PM, fresh)
    second = engine.run(second.job_id, "proceed_mint")
    assert second.status == "validated", last(second)
    assert eng_world.consumer_values(PM) == {PM_ROW: fresh}


# --- AWS IAM -------------------------------------------------------------------------------


def test_aws_deploy_key_rotation_to_done(eng_world: EngWorld) -> None:
    iam = eng_world.sandbox.iam()
    old_id = eng_world.world.aws_access_key_ids[AWS]
    # Runbook section 9: a consumer's parameter deleted out of band is re-created by the write.
    missing = "/raxx/prod/aws_iam/worker/AWS_DEPLOY_KEY"
    eng_world.sandbox.ssm().delete_parameter(Name=missing)
    engine, job = to_validated(eng_world, AWS)
    new_id = job.new_auth_id
    assert new_id is not None
    assert new_id != old_id
    keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=DEPLOY_USER)
            ["AccessKeyMetadata"]}
    assert keys == {old_id, new_id}  # the overlap: both slots in use until revoke
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=DEPLOY_USER)
            ["AccessKeyMetadata"]}
    assert keys == {new_id}
    current = eng_world.vault(AWS)
    assert current is not None
    assert current.startswith(new_id + ":")
    assert set(eng_world.consumer_values(AWS).values()) == {current}
    assert eng_world.sandbox.ssm_value(missing) == current
    assert eng_world.vault(AWS, "__PENDING") is None
    assert eng_world.vault(AWS, "__AUTH_ID") == new_id


def test_aws_verify_refuses_when_both_key_slots_are_used(eng_world: EngWorld) -> None:
    iam = eng_world.sandbox.iam()
    second = iam.create_access_key(UserName=DEPLOY_USER)["AccessKey"]["AccessKeyId"]
    engine = eng_world.engine()
    job, _ = engine.create(AWS)
    job = engine.run(job.job_id, "verify")
    assert job.status == "verify_failed", last(job)
    assert "both access key slots" in (job.events[-1].detail or "")
    keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=DEPLOY_USER)
            ["AccessKeyMetadata"]}
    assert keys == {eng_world.world.aws_access_key_ids[AWS], second}


def test_aws_verify_proves_the_secret_half_of_the_key(eng_world: EngWorld) -> None:
    """fidelity.md #5: a vault holding the right key id with a wrong secret fails verify, as
    on AWS (the sandbox checks each signature; moto alone would answer STS for any key)."""
    vault = eng_world.credential(AWS).vault.name  # type: ignore[attr-defined]
    key_id = eng_world.world.aws_access_key_ids[AWS]
    eng_world.sandbox.ssm().put_parameter(Name=vault, Value=f"{key_id}:not-the-secret",
                                          Type="SecureString", Overwrite=True)
    engine = eng_world.engine()
    job, _ = engine.create(AWS)
    job = engine.run(job.job_id, "verify")
    assert job.status == "verify_failed", last(job)
    assert "SignatureDoesNotMatch" in (job.events[-1].detail or ""), last(job)


# --- Cloudflare ----------------------------------------------------------------------------


def _policies(token: dict[str, Any]) -> list[dict[str, Any]]:
    """A token's policies without the ids Cloudflare assigns to each one."""
    return [{"effect": p["effect"], "resources": p["resources"],
             "permission_groups": sorted(g["id"] for g in p["permission_groups"])}
            for p in token["policies"]]


def test_cloudflare_rotation_creates_new_and_deletes_old(eng_world: EngWorld) -> None:
    cf = eng_world.sandbox.cloudflare
    old_id = eng_world.world.cloudflare_token_ids[CF]
    old_value = eng_world.world.values[CF]
    old_token = cf.token(old_id)
    assert old_token is not None
    engine, job = to_validated(eng_world, CF)
    assert cf.token_is_live(old_value)  # overlap: the old one works until revoke
    job = revoke(engine, job)
    assert job.status == "done", last(job)
    assert cf.token(old_id) is None
    assert not cf.token_is_live(old_value)
    new_token = cf.token(str(job.new_auth_id))
    assert new_token is not None
    assert new_token["id"] != old_id
    assert new_token["name"] == f"velvet-{job.job_id}"
    assert _policies(new_token) == _policies(old_token)
    assert [r for r in eng_world.requests("cloudflare", "PUT")
            if r["path"].endswith("/value")] == []  # never rolled
    current = eng_world.vault(CF)
    assert current is not None
    assert cf.token_is_live(current)
    assert set(eng_world.consumer_values(CF).values()) == {current}


# --- GitHub rate limits --------------------------------------------------------------------

GITHUB_ROW = "github-actions-heroku-api-key"
GITHUB_PUT = "/repos/raxx/platform/actions/secrets/HEROKU_API_KEY"


def test_github_rate_limit_403_is_waited_out_and_the_row_succeeds(eng_world: EngWorld) -> None:
    """GitHub answers the secret write with its secondary rate limit (403, retry-after, the
    documented message): the runner waits and writes again; the row ends `succeeded`, never
    "credential refused"."""
    engine, job = start(eng_world)
    eng_world.fault("github", method="PUT", path=GITHUB_PUT, status=403, times=1, retry_after=1,
                    message="You have exceeded a secondary rate limit. Please wait a few "
                            "minutes before you try again.")
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validated", last(job)
    github = row(job, GITHUB_ROW)
    assert (github.distribute_status, github.validate_status) == (RowStatus.SUCCEEDED,
                                                                  RowStatus.SUCCEEDED)
    assert [p["status"] for p in eng_world.requests("github", "PUT", GITHUB_PUT)] == [403, 204]
