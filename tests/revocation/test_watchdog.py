"""`velvet stuck`: what needs a person now, as a table for people and JSON for machines.

Exit 1 when anything is listed, 0 when nothing is. Time is moved with `--now` rather than slept.
Unless a test is about schedules it uses the world's manifest without them, so that "never
rotated" credentials do not show up as overdue in every answer.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from velvet_runner.store import Store
from velvet_sandbox.world import INFISICAL_ENV, INFISICAL_PROJECT, VAULT_PATH, Sandbox, World

from .conftest import Cli
from .support import at, clear_faults, fault, iso, seed_dry_runs

SECTIONS = {"stuck", "waiting_on_operator", "approvals_waiting", "overdue", "revocation_debt"}
LEAKY = "heroku-config-worker-prod"


def _stuck(cli: Cli, now: str | None = None) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    args = ["stuck", "--json"] + (["--now", now] if now else [])
    ran = cli(*args)
    assert ran.code in (0, 1), ran.err
    findings = ran.json()
    assert set(findings) == SECTIONS
    return ran.code, findings


def _later(job: dict[str, Any], minutes: float) -> str:
    return iso(at(job["updated_at"]) + timedelta(minutes=minutes))


def _store() -> Store:
    return Store(os.environ["VELVET_STATE"], "velvet-state", Path(os.environ["VELVET_CACHE_DIR"]))


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["job_id"] for r in rows]


def test_nothing_to_report_is_exit_0(rev_cli: Cli, rev_unscheduled: Path) -> None:
    table = rev_cli("stuck", "--human")
    assert table.code == 0, table.err
    assert table.out == "nothing is stuck\n"

    code, findings = _stuck(rev_cli)
    assert code == 0
    assert all(rows == [] for rows in findings.values())


def test_a_job_left_in_one_status_is_stuck_after_five_minutes(
        rev_cli: Cli, rev_unscheduled: Path) -> None:
    job = rev_cli("rotate", "HK_PLATFORM_FULL").job

    assert _stuck(rev_cli, _later(job, 4)) == (0, dict.fromkeys(SECTIONS, []))
    code, findings = _stuck(rev_cli, _later(job, 6))

    assert code == 1
    [row] = findings["stuck"]
    assert row["job_id"] == job["job_id"]
    assert row["credential"] == "HK_PLATFORM_FULL"
    assert row["status"] == "init"
    assert row["minutes"] == 6
    assert "never started" in row["why"]
    assert "verify" in row["next"]
    table = rev_cli("stuck", "--human", "--now", _later(job, 6))
    assert table.code == 1
    assert "stuck (1):" in table.out
    assert "CREDENTIAL" in table.out
    line = next(x for x in table.out.splitlines() if job["job_id"] in x)
    assert "HK_PLATFORM_FULL" in line
    assert " init " in line
    assert "verify, abort" in line


def test_a_stage_interrupted_mid_way_is_stuck_and_resumable(
        rev_cli: Cli, rev_unscheduled: Path) -> None:
    job = rev_cli("rotate", "HK_PLATFORM_FULL").job
    crashed = rev_cli("stage", job["job_id"], "verify", env={"VELVET_CRASH_AT": "verify"})
    assert crashed.code == 99
    resting = rev_cli("status", "--job", job["job_id"], "--json").job
    assert resting["status"] == "verifying"

    code, findings = _stuck(rev_cli, _later(resting, 10))

    assert code == 1
    [row] = findings["stuck"]
    assert row["status"] == "verifying"
    assert "interrupted" in row["why"]
    assert "verify" in row["next"]
    assert rev_cli("stage", job["job_id"], "verify").job["status"] == "verified"


def test_jobs_waiting_on_an_operator_are_listed_at_once(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World, rev_unscheduled: Path) -> None:
    # verify_failed: Heroku refuses the current token.
    fault(rev_sandbox, "heroku", method="GET", path="/account", status=401, times=1)
    refused = rev_cli("rotate", "HK_PLATFORM_FULL").job["job_id"]
    assert rev_cli("stage", refused, "verify").job["status"] == "verify_failed"
    # distribute_partial: the GitHub secret write is forbidden, the Heroku one succeeds.
    fault(rev_sandbox, "github", method="PUT",
          path="/repos/raxx/platform/actions/secrets/CLOUDFLARE_ZONE_READ_TOKEN", status=403)
    partial = rev_cli("rotate", "CF_ZONE_READ").job["job_id"]
    assert rev_cli("stage", partial, "verify").code == 0
    minted = rev_cli("stage", partial, "proceed_mint").job
    assert minted["status"] == "distribute_partial", [e["detail"] for e in minted["events"][-3:]]
    # rev_leaked: a consumer still answers with its cached result after the revocation.
    assert httpx.get(rev_sandbox.health_url(LEAKY), timeout=10.0).status_code == 200
    leaked = rev_cli("rotate", "HK_DEPLOY_BOT", "--flow", "revocation").job["job_id"]
    assert rev_cli("stage", leaked, "revoke").job["status"] == "rev_leaked"

    code, findings = _stuck(rev_cli)  # no --now: these need a person right away

    assert code == 1
    waiting = {r["job_id"]: r for r in findings["waiting_on_operator"]}
    assert {k: v["status"] for k, v in waiting.items()} == {
        refused: "verify_failed", partial: "distribute_partial", leaked: "rev_leaked"}
    assert waiting[leaked]["next"] == ["confirm_leak_resolved"]
    assert "retry_distribute" in waiting[partial]["next"]
    assert "rollback" in waiting[partial]["next"]
    assert waiting[refused]["next"] == ["retry_verify", "abort"]
    assert findings["stuck"] == findings["approvals_waiting"] == []
    table = rev_cli("stuck", "--human")
    assert table.code == 1
    assert "waiting on operator (3):" in table.out
    for job_id in (refused, partial, leaked):
        assert job_id in table.out


def test_approval_gates_left_waiting(rev_cli: Cli, rev_unscheduled: Path) -> None:
    job_id = rev_cli("rotate", "HK_PLATFORM_FULL").job["job_id"]
    verified = rev_cli("stage", job_id, "verify").job
    assert verified["status"] == "verified"

    assert _stuck(rev_cli, _later(verified, 2))[0] == 0
    code, findings = _stuck(rev_cli, _later(verified, 30))

    assert code == 1
    [row] = findings["approvals_waiting"]
    assert row["job_id"] == job_id
    assert row["status"] == "verified"
    assert row["minutes"] == 30
    assert "proceed_mint" in row["next"]
    assert findings["stuck"] == []

    validated = rev_cli("stage", job_id, "proceed_mint").job
    assert validated["status"] == "validated"
    code, findings = _stuck(rev_cli, _later(validated, 30))
    assert [(r["job_id"], r["status"]) for r in findings["approvals_waiting"]] == [
        (job_id, "validated")]
    assert "proceed_revoke" in findings["approvals_waiting"][0]["next"]


def test_revocation_debt_lists_orphans_until_proven_dead(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World, rev_unscheduled: Path) -> None:
    # Aborted after mint (distribution half done): the new token is live at Heroku and the
    # operator is told to delete it; until then it is debt.
    fault(rev_sandbox, "github", method="PUT",
          path="/repos/raxx/platform/actions/secrets/HEROKU_API_KEY", status=403)
    first = rev_cli("rotate", "HK_PLATFORM_FULL").job["job_id"]
    assert rev_cli("stage", first, "verify").code == 0
    assert rev_cli("stage", first, "proceed_mint").job["status"] == "distribute_partial"
    aborted = rev_cli("stage", first, "abort").job
    assert aborted["status"] == "aborted"
    orphan = aborted["new_auth_id"]
    assert orphan in rev_sandbox.heroku.authorization_ids()
    clear_faults(rev_sandbox, "github")
    # Rolled back: every consumer got the old value back and the new token was revoked.
    second = rev_cli("rotate", "HK_PLATFORM_FULL").job["job_id"]
    assert rev_cli("stage", second, "verify").code == 0
    assert rev_cli("stage", second, "proceed_mint").job["status"] == "validated"
    rolled = rev_cli("stage", second, "rollback").job
    assert rolled["status"] == "aborted"
    assert rolled["report"]["rollback"]["new_token"] == "revoked"
    assert rolled["new_auth_id"] not in rev_sandbox.heroku.authorization_ids()
    assert rolled["revocation_debt"] == []

    code, findings = _stuck(rev_cli)

    assert code == 1
    [debt] = findings["revocation_debt"]
    assert debt["job_id"] == first
    assert debt["credential"] == "HK_PLATFORM_FULL"
    assert debt["auth_id"] == orphan
    assert debt["fingerprint"] == aborted["new_fingerprint"]
    assert "aborted" in debt["reason"]
    assert findings["stuck"] == findings["waiting_on_operator"] == []
    table = rev_cli("stuck", "--human")
    assert "revocation debt (1):" in table.out
    assert orphan in table.out
    assert second not in table.out

    # Sixty dry runs later the orphan is still live, so it is still debt.
    seed_dry_runs(_store(), "HK_PLATFORM_FULL", "heroku", 60)
    code, findings = _stuck(rev_cli)
    assert _ids(findings["revocation_debt"]) == [first]


def test_overdue_credentials_follow_their_schedule(
        rev_cli: Cli, rev_world: World, rev_env: dict[str, str]) -> None:
    scheduled = {c.name for c in rev_world.manifest().credentials if c.active and c.schedule}

    code, findings = _stuck(rev_cli)
    assert code == 1
    assert {r["credential"] for r in findings["overdue"]} == scheduled
    assert {r["reason"] for r in findings["overdue"]} == {"never rotated by Velvet"}
    assert "CF_DNS_EDIT_RAXX_APP" not in scheduled  # active: false is never due

    job_id = rev_cli("rotate", "HK_PLATFORM_FULL").job["job_id"]
    assert rev_cli("stage", job_id, "verify").code == 0
    assert rev_cli("stage", job_id, "proceed_mint").code == 0
    done = rev_cli("stage", job_id, "proceed_revoke", "--ticket", "ROT-2026-HK_PLATFORM_FULL",
                   "--confirm", "HK_PLATFORM_FULL").job
    assert done["status"] == "done"
    done_at = at(next(e["at"] for e in done["events"] if e["to_state"] == "done"))
    # Dry runs after the rotation are not rotations, however many there are.
    seed_dry_runs(_store(), "HK_PLATFORM_FULL", "heroku", 60)

    early = _stuck(rev_cli, iso(done_at + timedelta(days=89)))[1]["overdue"]
    assert "HK_PLATFORM_FULL" not in {r["credential"] for r in early}
    assert {r["credential"] for r in early} == scheduled - {"HK_PLATFORM_FULL"}
    late = _stuck(rev_cli, iso(done_at + timedelta(days=91)))[1]["overdue"]
    [row] = [r for r in late if r["credential"] == "HK_PLATFORM_FULL"]
    assert row["due_at"] == iso(done_at + timedelta(days=90))
    assert row["reason"] == f"last done {iso(done_at)}"
    assert row["schedule"] == "90d"
    table = rev_cli("stuck", "--human", "--now", iso(done_at + timedelta(days=91)))
    assert table.code == 1
    assert "overdue (" in table.out
    line = next(x for x in table.out.splitlines() if "HK_PLATFORM_FULL" in x)
    assert iso(done_at + timedelta(days=90)) in line
    # `velvet due` agrees (the cron tick that would start it).
    due = rev_cli("due", "--now", iso(done_at + timedelta(days=89)), "--json").json()
    assert "HK_PLATFORM_FULL" not in {r["credential"] for r in due}


def test_debt_no_vendor_can_prove_dead_is_settled_on_a_ticket(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World, rev_unscheduled: Path) -> None:
    """Issue #22: Postmark cannot revoke or say whether a token exists, so an old server token
    left live by an abort from validated is debt nothing can prove dead: the operator deletes
    it in the dashboard and settles it with the ticket that records that."""
    name = "PM_SERVER_MAIL"
    old = rev_world.values[name]
    job_id = rev_cli("rotate", name).job["job_id"]
    assert rev_cli("stage", job_id, "verify").code == 0
    fresh = rev_sandbox.postmark.add_token(rev_world.postmark_server_ids[name])
    rev_sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                     f"{name}__PENDING", fresh)
    assert rev_cli("stage", job_id, "proceed_mint").job["status"] == "validated"
    aborted = rev_cli("stage", job_id, "abort").job
    [debt] = [d for d in aborted["revocation_debt"] if d["settled_at"] is None]
    fingerprint = debt["fingerprint"]

    # The vendor cannot tell; the settle without evidence leaves it listed, and says how.
    settle = rev_cli("stuck", "--settle-debt")
    assert settle.code == 1
    assert f"--token {fingerprint} --ticket T" in settle.err
    # The operator deletes it in Postmark's dashboard; nothing can show that by API, so the
    # ticket is the evidence.
    assert rev_sandbox.postmark.delete_token(old)
    settled = rev_cli("stuck", "--settle-debt", "--token", fingerprint, "--ticket", "OPS-9")
    assert settled.code == 0, settled.err
    assert "settled on the operator's evidence (ticket OPS-9)" in settled.err
    record = rev_cli("status", "--job", job_id, "--json").json()
    assert [d["settled_at"] is not None for d in record["revocation_debt"]] == [True]
    assert any(e["action"] == "debt_settled" and e["data"].get("ticket") == "OPS-9"
               for e in record["events"])


def test_settling_debt_by_ticket_needs_the_token(rev_cli: Cli, rev_world: World) -> None:
    refused = rev_cli("stuck", "--settle-debt", "--ticket", "OPS-9")
    assert refused.code == 2
    assert "--token" in refused.err
    unknown = rev_cli("stuck", "--settle-debt", "--token", "sha256:000000000000",
                      "--ticket", "OPS-9")
    assert unknown.code == 2
    assert "no unsettled revocation debt" in unknown.err
    alone = rev_cli("stuck", "--token", "x")
    assert alone.code == 2
    assert "--settle-debt" in alone.err
