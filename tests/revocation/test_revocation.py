"""Emergency revocation (runbook sections 5 and 10) against the sandbox, through the real CLI.

HK_DEPLOY_BOT's consumer heroku-config-worker-prod caches its auth result until it is
restarted, the runbook's first rev_leaked root cause; HK_PLATFORM_FULL has no such consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx
import pytest

from velvet_runner.settings import Settings
from velvet_sandbox.world import (
    GITHUB_REPOSITORY,
    INFISICAL_ENV,
    INFISICAL_PROJECT,
    OPS_EMAIL,
    PLATFORM_EMAIL,
    SLACK_CHANNEL,
    VAULT_PATH,
    Sandbox,
    World,
)

from .conftest import RUN_ID, Cli
from .support import emails, events, issues, slack_messages

LEAKY = "heroku-config-worker-prod"
HEROKU_ACCEPT = "application/vnd.heroku+json; version=3"
NOTIFY_WITHIN_SECONDS = 30


def _account_status(sandbox: Sandbox, token: str) -> int:
    return httpx.get(sandbox.urls["heroku"] + "/account", timeout=10.0, headers={
        "Accept": HEROKU_ACCEPT, "Authorization": f"Bearer {token}"}).status_code


def _vendor_live(sandbox: Sandbox, credential: str) -> Callable[[str], bool]:
    return (sandbox.cloudflare.token_is_live if credential.startswith("CF_")
            else sandbox.heroku.token_is_live)


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _warm_cache(sandbox: Sandbox, consumer_id: str) -> None:
    """The consumer has been serving traffic: it validated the live value and cached that."""
    response = httpx.get(sandbox.health_url(consumer_id), timeout=10.0)
    assert response.status_code == 200
    assert sandbox.consumers.snapshot()["consumers"][consumer_id]["cached"] == "ok"


def _row(job: dict[str, object], consumer_id: str) -> dict[str, object]:
    rows = job["consumers"]
    assert isinstance(rows, list)
    return next(r for r in rows if r["consumer_id"] == consumer_id)


def test_caching_consumer_leaks_notifies_and_resolves_after_restart(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World) -> None:
    old = rev_world.values["HK_DEPLOY_BOT"]
    _warm_cache(rev_sandbox, LEAKY)

    created = rev_cli("rotate", "HK_DEPLOY_BOT", "--flow", "revocation")
    assert created.code == 0, created.err
    assert created.job["status"] == "rev_init"
    job_id = created.job["job_id"]

    ran = rev_cli("stage", job_id, "revoke")
    # rev_leaked is a failed outcome (exit 1), and every notification went out before the
    # stage returned, so well inside the runbook's 30 seconds.
    assert ran.code == 1, ran.err
    assert ran.seconds < NOTIFY_WITHIN_SECONDS
    job = ran.job
    assert job["status"] == "rev_leaked"
    assert f"job {job_id} is rev_leaked; allowed next: confirm_leak_resolved" in ran.err
    assert _account_status(rev_sandbox, old) == 401  # revoked at the vendor first
    leaked = [e for e in job["events"]
              if e["to_state"] == "rev_leaked" and e["from_state"] != "rev_leaked"]
    assert len(leaked) == 1
    assert leaked[0]["data"] == {"leaking_consumers": [LEAKY]}
    assert LEAKY in leaked[0]["detail"]
    assert _row(job, LEAKY)["validate_status"] == "failed"
    assert _row(job, "heroku-config-deploy-prod")["validate_status"] == "succeeded"

    notified = events(job, "notified")
    assert len(notified) == 1
    assert {r["channel"]: r["ok"] for r in notified[0]["data"]["results"]} == {
        "slack": True, "email": True, "github_issue": True}
    leaked_at = _at(leaked[0]["at"])

    link = f"https://github.example/{GITHUB_REPOSITORY}/actions/runs/{RUN_ID}"
    [message] = slack_messages(rev_sandbox, job_id)
    assert message["channel"] == SLACK_CHANNEL
    for part in (f"job_id: {job_id}", "credential: HK_DEPLOY_BOT",
                 f"leaking consumers: {LEAKY}", f"link: {link}", "SEV1"):
        assert part in message["text"]
    assert "heroku-config-deploy-prod" not in message["text"]
    assert float(message["ts"]) - leaked_at <= NOTIFY_WITHIN_SECONDS

    [email] = emails(rev_sandbox, job_id)
    assert email["To"] == OPS_EMAIL
    assert "rev_leaked" in email["Subject"]
    assert "HK_DEPLOY_BOT" in email["Subject"]
    assert LEAKY in email["TextBody"]
    assert _at(email["SubmittedAt"]) - leaked_at <= NOTIFY_WITHIN_SECONDS

    [issue] = issues(rev_sandbox, job_id)
    assert "HK_DEPLOY_BOT" in issue["title"]
    assert f"- [ ] `{LEAKY}`" in issue["body"]
    assert "heroku-config-deploy-prod" not in issue["body"]
    assert set(issue["labels"]) >= {"sev1"}
    assert issue["created_at"] - leaked_at <= NOTIFY_WITHIN_SECONDS

    # Still leaking: the confirmation is refused, recorded, and changes nothing.
    refused = rev_cli("stage", job_id, "confirm_leak_resolved")
    assert refused.code == 1
    assert "confirm_leak_resolved refused" in refused.err
    assert LEAKY in refused.err
    assert refused.job["status"] == "rev_leaked"
    [note] = events(refused.job, "confirm_leak_resolved_refused")
    assert note["data"] == {"leaking_consumers": [LEAKY]}
    stored = rev_cli("status", "--job", job_id, "--json")
    assert stored.code == 0
    assert stored.job["status"] == "rev_leaked"
    assert len(events(stored.job, "confirm_leak_resolved_refused")) == 1

    # Runbook 10 step 4b: restart the consumer so it reloads; then it is locked out.
    httpx.post(rev_sandbox.control_url("consumers") + f"/consumers/{LEAKY}/restart",
               timeout=10.0).raise_for_status()
    resolved = rev_cli("stage", job_id, "confirm_leak_resolved")
    assert resolved.code == 0, resolved.err
    assert resolved.job["status"] == "rev_done"
    assert _row(resolved.job, LEAKY)["validate_status"] == "succeeded"
    assert [e["to_state"] for e in resolved.job["events"] if e["from_state"] != e["to_state"]
            ][-2:] == ["rev_validating", "rev_done"]
    assert _account_status(rev_sandbox, old) == 401
    # One SEV1 page for the leak (the refused confirmation did not page again) and one for its
    # resolution; the issue is opened once.
    pages = slack_messages(rev_sandbox, job_id)
    assert len(pages) == 2
    assert "rev_leaked" in pages[0]["text"]
    assert "rev_done" in pages[1]["text"]
    assert len(emails(rev_sandbox, job_id)) == 2
    assert len(issues(rev_sandbox, job_id)) == 1


@pytest.mark.parametrize("credential", ["HK_PLATFORM_FULL", "CF_ZONE_READ"])
def test_clean_revocation_locks_every_consumer_out(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World, credential: str) -> None:
    old = rev_world.values[credential]
    live = _vendor_live(rev_sandbox, credential)
    assert live(old)

    job_id = rev_cli("rotate", credential, "--flow", "revocation").job["job_id"]
    ran = rev_cli("stage", job_id, "revoke")

    assert ran.code == 0, ran.err
    job = ran.job
    assert job["status"] == "rev_done"
    assert [e["to_state"] for e in job["events"] if e["from_state"] != e["to_state"]] == [
        "rev_init", "rev_revoking", "rev_revoked", "rev_validating", "rev_done"]
    assert not live(old)  # dead at the vendor
    if credential == "HK_PLATFORM_FULL":
        assert _account_status(rev_sandbox, old) == 401
    rows = {r["consumer_id"]: r for r in job["consumers"]}
    http = [c for c in rev_world.http_consumers if c in rows]
    assert http
    for consumer_id in http:
        assert rows[consumer_id]["validate_status"] == "succeeded", rows[consumer_id]
        assert rows[consumer_id]["detail"] == "HTTP 401: locked out"
        assert httpx.get(rev_sandbox.health_url(consumer_id), timeout=10.0).status_code == 401
    # A readback consumer cannot show a lock-out; it is marked for a person, not passed.
    for consumer_id in set(rows) - set(http):
        assert rows[consumer_id]["validate_status"] == "skipped"
    # Nothing leaked: no SEV1 page.
    assert issues(rev_sandbox, job_id) == []
    assert emails(rev_sandbox, job_id) == []


def test_postmark_revocation_waits_for_the_dashboard_delete(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World) -> None:
    # Postmark has no token-delete API: the runner can only see the old token refused.
    old = rev_world.values["PM_SERVER_MAIL"]
    job_id = rev_cli("rotate", "PM_SERVER_MAIL", "--flow", "revocation").job["job_id"]

    waiting = rev_cli("stage", job_id, "revoke")
    assert waiting.code == 1
    assert waiting.job["status"] == "rev_revoke_failed"
    assert "manual_required" in waiting.job["events"][-1]["detail"]
    assert rev_sandbox.postmark.token_is_live(old)

    assert rev_sandbox.postmark.delete_token(old)  # the operator, in Postmark's dashboard
    done = rev_cli("stage", job_id, "retry_revoke")
    assert done.code == 0, done.err
    assert done.job["status"] == "rev_done"
    assert {r["consumer_id"]: r["validate_status"] for r in done.job["consumers"]} == {
        "infisical-postmark-prod": "succeeded"}


def test_revocation_interrupted_after_the_roll_records_the_lost_value_as_debt(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World) -> None:
    """Issue #12 case 4: killed between the vendor's roll and the vault write. The resumed run
    must not say rev_done while an authorization is live with a value nobody holds: it fails,
    names the authorization, lists it as debt, and finishes once the operator has replaced it."""
    old = rev_world.values["HK_PLATFORM_FULL"]
    auth_id = rev_world.heroku_auth_ids["HK_PLATFORM_FULL"]
    job_id = rev_cli("rotate", "HK_PLATFORM_FULL", "--flow", "revocation").job["job_id"]
    crashed = rev_cli("stage", job_id, "revoke", env={"VELVET_CRASH_AT": "after_roll"})
    assert crashed.code == 99
    assert not rev_sandbox.heroku.token_is_live(old)  # the roll happened; its value was lost
    assert auth_id in rev_sandbox.heroku.authorization_ids()  # ... and the authorization lives

    resumed = rev_cli("stage", job_id, "revoke")
    assert resumed.code == 1, resumed.err
    job = resumed.job
    assert job["status"] == "rev_revoke_failed"
    assert auth_id in job["events"][-1]["detail"]
    assert "retry_revoke" in job["events"][-1]["detail"]
    [debt] = job["revocation_debt"]
    assert debt["auth_id"] == auth_id
    assert debt["settled_at"] is None
    lives = {t["role"]: t["life"] for t in job["ledger"]}
    assert lives == {"old": "proven_dead", "rolled": "debt"}
    stuck = rev_cli("stuck", "--json")
    assert [d["auth_id"] for d in stuck.json()["revocation_debt"]] == [auth_id]

    # The operator deletes the lost authorization in the dashboard, makes a fresh one and puts
    # it in the vault (with its id), then retries: the lost one is proven gone.
    assert rev_sandbox.heroku.revoke_authorization(auth_id)
    fresh_id, fresh = rev_sandbox.heroku.add_authorization(PLATFORM_EMAIL, description="by hand")
    for suffix, value in (("", fresh), ("__AUTH_ID", fresh_id)):
        rev_sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                         "HK_PLATFORM_FULL" + suffix, value)
    done = rev_cli("stage", job_id, "retry_revoke")
    assert done.code == 0, done.err
    assert done.job["status"] == "rev_done", done.job["events"][-1]["detail"]
    assert [d["settled_at"] is not None for d in done.job["revocation_debt"]] == [True]
    assert {t["life"] for t in done.job["ledger"] if t["life"] != "current"} == {"proven_dead"}


def test_sandbox_env_configures_the_sev1_issue_channel(rev_sandbox: Sandbox,
                                                       rev_world: World,
                                                       rev_workdir: object) -> None:
    # With exactly the env `velvet sandbox` prints, rev_leaked must be able to open an issue.
    settings = Settings.from_env(rev_sandbox.env(str(rev_workdir)))
    assert settings.github_repository == GITHUB_REPOSITORY
