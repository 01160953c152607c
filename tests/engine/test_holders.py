"""Who else holds or still uses the old value, before stage 3 revokes it (scan.py,
engine/precheck.py), and `velvet scan`, against the sandbox's fakes over loopback.

Every test here ends with the directory's leak scan (`eng_world`): `velvet scan` reads the
value of every secret in the world, and prints none of them.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import boto3

from velvet_runner.records import Job, fingerprint
from velvet_runner.scan import before_revoke_lines

from .support import HK, EngWorld, ticket

BILLING = "raxx-billing-prod"  # a Heroku app the manifest does not list
OTHER_REPO = "raxx/side-project"  # a repository the manifest does not list
AWS = "AWS_DEPLOY_KEY"
CF = "CF_ZONE_READ"


def _rotate_to_validated(eng: EngWorld, name: str = HK) -> str:
    job = eng.cli_job("rotate", name, "--json")
    assert eng.cli_job("stage", job.job_id, "verify", "--json").status == "verified"
    validated = eng.cli_job("stage", job.job_id, "proceed_mint", "--json")
    assert validated.status == "validated", validated.events[-1].detail
    return job.job_id


def _revoke(eng: EngWorld, job_id: str, name: str, *flags: str) -> object:
    return eng.cli("stage", job_id, "proceed_revoke", "--ticket", ticket(name), "--confirm",
                   name, "--json", *flags)


def _wait_past(moment: datetime) -> None:
    """Let the wall clock pass `moment` by a whole second (vendors record use to the second):
    no assertion on time, only an order of events."""
    while datetime.now(UTC) < moment + timedelta(seconds=1):
        time.sleep(0.2)


def test_scan_names_unregistered_holders_and_registered_places_without_a_value(
        eng_world: EngWorld) -> None:
    value = eng_world.world.values[HK]
    sbx = eng_world.sandbox
    sbx.heroku.add_app(BILLING, {"HEROKU_API_KEY": value, "DATABASE_URL": "postgres://x"})
    sbx.infisical.set_secret("raxx-platform", "staging", "/billing", "HEROKU_KEY", value)
    ssm = sbx.ssm()
    fillers = [f"/raxx/prod/filler/P_{i:02d}" for i in range(12)]  # GetParametersByPath pages
    for name in fillers:                                           # by 10: the sweep follows
        ssm.put_parameter(Name=name, Value=f"not-it-{name}", Type="SecureString",
                          Overwrite=True)
    ssm.put_parameter(Name="/raxx/prod/billing/HEROKU_API_KEY", Value=value,
                      Type="SecureString", Overwrite=True)
    try:
        proc = eng_world.cli("scan", HK, "--json")
        assert proc.returncode == 1, proc.stderr
        found = json.loads(proc.stdout)
        assert found["fingerprint"] == fingerprint(value)
        assert [h["where"] for h in found["holders"]] == [
            "aws ssm parameter /raxx/prod/billing/HEROKU_API_KEY",
            f"heroku app {BILLING} config var HEROKU_API_KEY",
            "infisical raxx-platform/staging/billing HEROKU_KEY"]
        cred = eng_world.credential(HK)
        # every registered place that can be read holds it, and none is a holder
        assert set(found["registered"]) == {c.describe() for c in cred.consumers
                                            if c.kind != "github_actions_secret"} | {
            cred.vault.describe()}
        assert found["searched"]["heroku_config_var"] > len(cred.consumers)
        assert found["not_searched"] == []
        human = eng_world.cli("scan", HK, "--human")
        assert f"heroku app {BILLING} config var HEROKU_API_KEY" in human.stdout
        assert "UNREGISTERED places holding it (3" in human.stdout
        assert found["searched"]["aws_ssm_parameter"] >= len(fillers) + 1
    finally:
        for name in [*fillers, "/raxx/prod/billing/HEROKU_API_KEY"]:
            ssm.delete_parameter(Name=name)


def test_a_place_registered_for_another_credential_is_a_holder_and_says_so(
        eng_world: EngWorld) -> None:
    other = eng_world.credential("HK_DEPLOY_BOT").consumers[0]
    eng_world.sandbox.heroku.set_config_vars(other.app, {other.var: eng_world.world.values[HK]})
    found = json.loads(eng_world.cli("scan", HK, "--json").stdout)
    assert found["holders"] == [{"where": other.describe(), "registered_as":
                                 f"HK_DEPLOY_BOT consumer {other.consumer_id}"}]


def test_a_clean_world_scans_clean_and_a_fake_that_fails_is_named_not_skipped(
        eng_world: EngWorld) -> None:
    proc = eng_world.cli("scan", AWS, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["holders"] == []
    eng_world.fault("heroku", method="GET", path="/apps/raxx-api-prod/config-vars", status=403)
    found = json.loads(eng_world.cli("scan", AWS, "--json").stdout)
    assert [n.split(":")[0] for n in found["not_searched"]] == ["heroku app raxx-api-prod"]
    eng_world.fault("infisical", method="GET", path="/api/v1/projects", status=503)
    found = json.loads(eng_world.cli("scan", AWS, "--json").stdout)
    assert any(n.startswith("infisical_secret: ") for n in found["not_searched"])


def test_stage_3_refuses_while_an_unlisted_heroku_app_holds_the_old_value(
        eng_world: EngWorld) -> None:
    old = eng_world.world.values[HK]
    eng_world.sandbox.heroku.add_app(BILLING, {"HEROKU_API_KEY": old})
    job_id = _rotate_to_validated(eng_world)
    refused = _revoke(eng_world, job_id, HK)
    assert refused.returncode == 2, refused.stderr
    assert f"heroku app {BILLING} config var HEROKU_API_KEY" in refused.stderr
    assert "--accept-unregistered" in refused.stderr
    job = eng_world.job(job_id)
    assert job.status == "validated"  # nothing revoked
    assert eng_world.sandbox.heroku.token_is_live(old)
    assert job.report["before_revoke"]["refused"] is True
    assert job.events[-1].action == "before_revoke"

    done = Job.from_json(_revoke(eng_world, job_id, HK, "--accept-unregistered").stdout)
    assert done.status == "done"
    assert not eng_world.sandbox.heroku.token_is_live(old)
    record = done.report["before_revoke"]
    assert record["accepted"] == {"unregistered": True, "still_used": False}
    assert record["ticket"] == ticket(HK)
    assert [h["where"] for h in record["holders"]] == [
        f"heroku app {BILLING} config var HEROKU_API_KEY"]
    line = (f"unregistered holders of the old value, accepted (ticket {ticket(HK)}): "
            f"heroku app {BILLING} config var HEROKU_API_KEY")
    summary = (eng_world.workdir / "step-summary.md").read_text(encoding="utf-8")
    assert "### Before the revoke" in summary
    assert line in summary
    assert any(line in text for text in eng_world.notifications())  # the done message
    status = eng_world.cli("status", "--job", job_id, "--human")
    assert line in status.stdout


def test_the_accepting_options_belong_to_proceed_revoke_only(eng_world: EngWorld) -> None:
    job = eng_world.cli_job("rotate", HK, "--json")
    for flag in ("--accept-unregistered", "--accept-still-used"):
        refused = eng_world.cli("stage", job.job_id, "verify", flag)
        assert refused.returncode == 2
        assert f"{flag} does not apply to verify" in refused.stderr


def test_a_workflow_in_an_unlisted_repository_naming_the_secret_is_reported(
        eng_world: EngWorld) -> None:
    github = eng_world.sandbox.github
    github.add_repo(OTHER_REPO)
    [app] = github._installations  # the sweep sees what the App is installed on
    github.install_on(app, OTHER_REPO)
    github.add_file(OTHER_REPO, ".github/workflows/deploy.yml",
                    "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    env:\n"
                    "      HEROKU_API_KEY: ${{ secrets.HEROKU_API_KEY }}\n")
    github.add_file(OTHER_REPO, ".github/workflows/other.yml", "env: {A: ${{ secrets.B }}}\n")
    platform = eng_world.credential(HK).consumers[4]
    assert platform.kind == "github_actions_secret"
    # the listed repository's own workflow names it too, and is not reported
    github.add_file(platform.repository, ".github/workflows/ci.yml",
                    "env:\n  K: ${{ secrets['HEROKU_API_KEY'] }}\n")
    proc = eng_world.cli("scan", HK, "--json")
    assert proc.returncode == 1
    found = json.loads(proc.stdout)
    assert found["holders"] == []
    assert found["references"] == [{"where": f"github {OTHER_REPO}",
                                    "reference": ".github/workflows/deploy.yml:6 "
                                                 "secrets.HEROKU_API_KEY"}]
    # stage 3 reports it (GitHub never shows a value) and goes on
    job_id = _rotate_to_validated(eng_world)
    done = Job.from_json(_revoke(eng_world, job_id, HK).stdout)
    assert done.status == "done"
    assert done.report["before_revoke"]["references"] == found["references"]
    assert f"github {OTHER_REPO} .github/workflows/deploy.yml:6" in (
        eng_world.workdir / "step-summary.md").read_text(encoding="utf-8")


def test_an_aws_key_used_after_the_switch_blocks_the_revoke(eng_world: EngWorld) -> None:
    old = eng_world.vault(AWS)
    assert old is not None
    job_id = _rotate_to_validated(eng_world, AWS)
    switched = max(r.written_at for r in eng_world.job(job_id).consumers if r.written_at)
    _wait_past(switched + timedelta(seconds=float(eng_world.env["VELVET_SETTLE_SECONDS"])))
    key_id, secret = old.split(":", 1)
    sts = boto3.client("sts", endpoint_url=eng_world.env["AWS_ENDPOINT_URL"],
                       region_name="us-east-1", aws_access_key_id=key_id,
                       aws_secret_access_key=secret)
    sts.get_caller_identity()  # someone Velvet does not know of, still on the old key
    refused = _revoke(eng_world, job_id, AWS)
    assert refused.returncode == 2, refused.stderr
    assert "aws_iam saw the old value used at" in refused.stderr
    assert "GetAccessKeyLastUsed: sts in us-east-1" in refused.stderr
    assert "--accept-still-used" in refused.stderr
    use = eng_world.job(job_id).report["before_revoke"]["last_use"]
    assert use["reported"] is True
    assert use["after_switch"] is True
    assert use["last_used"] > use["switched_at"]

    done = Job.from_json(_revoke(eng_world, job_id, AWS, "--accept-still-used").stdout)
    assert done.status == "done"
    assert done.report["before_revoke"]["accepted"]["still_used"] is True
    assert any(f"accepted (ticket {ticket(AWS)})" in line
               for line in before_revoke_lines(done))


def test_use_before_the_switch_does_not_block_and_vendors_without_it_say_so(
        eng_world: EngWorld) -> None:
    # Velvet's own verify used the old key (before anyone switched): that is no finding.
    job_id = _rotate_to_validated(eng_world, AWS)
    done = Job.from_json(_revoke(eng_world, job_id, AWS).stdout)
    assert done.status == "done"
    use = done.report["before_revoke"]["last_use"]
    assert use["reported"] is True
    assert use["after_switch"] is False
    assert use["last_used"] <= use["switched_at"]
    # Heroku's API does not say when an authorization was last used.
    hk = _rotate_to_validated(eng_world)
    record = Job.from_json(_revoke(eng_world, hk, HK).stdout).report["before_revoke"]
    assert record["last_use"]["reported"] is False
    assert record["last_use"]["detail"] == ("heroku does not report when a credential was "
                                            "last used")


def test_a_cloudflare_token_used_after_the_switch_blocks_the_revoke(
        eng_world: EngWorld) -> None:
    old = eng_world.world.values[CF]
    job_id = _rotate_to_validated(eng_world, CF)
    switched = max(r.written_at for r in eng_world.job(job_id).consumers if r.written_at)
    _wait_past(switched + timedelta(seconds=float(eng_world.env["VELVET_SETTLE_SECONDS"])))
    verified = eng_world._http.get(eng_world.sandbox.urls["cloudflare"] + "/user/tokens/verify",
                                   headers={"Authorization": f"Bearer {old}"})
    assert verified.status_code == 200
    refused = _revoke(eng_world, job_id, CF)
    assert refused.returncode == 2, refused.stderr
    assert "cloudflare saw the old value used at" in refused.stderr
    assert "last_used_on" in refused.stderr
