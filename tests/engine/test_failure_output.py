"""What a person reads in each failure state (issue #22): the summary `velvet stage` and
`velvet status --job` print for people names what the job's JSON holds, and says what to do.

Each job reaches its state for real (a fault at a fake vendor, a consumer that caches its auth,
a token revoked out of band); the summary is the `--human` output of the real CLI, checked
against `status --job ID --json` of the same job.
"""

from __future__ import annotations

import json
from typing import Any

from velvet_runner.human import RUNBOOK_6A

from .support import HK, EngWorld, start

API_ROW = "heroku-config-api-prod"
LEAKY = "heroku-config-worker-prod"


def words(text: str) -> str:
    """Text with every run of whitespace one space: a wrapped paragraph compares whole."""
    return " ".join(text.split())


def as_json(eng: EngWorld, job_id: str) -> dict[str, Any]:
    proc = eng.cli("status", "--job", job_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def human(eng: EngWorld, *args: str, expect: int = 0) -> str:
    proc = eng.cli(*args, "--human")
    assert proc.returncode == expect, (proc.returncode, proc.stderr[-2000:])
    return proc.stdout


def test_aborted_prints_the_residual_report(eng_world: EngWorld) -> None:
    """Aborted from distribute_partial: some consumers hold the new value, the new token is
    live. The summary says what is live, who holds what and how to clean up, without --json."""
    _, job = start(eng_world)
    eng_world.fault("heroku", method="PATCH", path="/apps/raxx-api-prod/config-vars",
                    status=500)
    partial = eng_world.cli("stage", job.job_id, "proceed_mint")
    assert partial.returncode == 1, partial.stderr[-2000:]
    eng_world.clear_faults("heroku")

    out = human(eng_world, "stage", job.job_id, "abort")
    data = as_json(eng_world, job.job_id)
    assert data["status"] == "aborted"
    residual = data["report"]["residual"]
    flat = words(out)
    assert "Status: aborted — the residual state and the clean-up are below" in out
    assert "Residual state after abort (runbook 6f):" in out
    old = residual["old_value"]
    assert f"old value (auth id {old['auth_id']}, {old['fingerprint']}): still live" in flat
    for holds in ("new", "old", "unknown"):
        holders = sorted(c for c, h in residual["consumers"].items() if h == holds)
        if holders:
            assert ", ".join(holders) in flat, (holds, holders)
    assert residual["orphaned_tokens"], "a live minted token is debt after this abort"
    for token in residual["orphaned_tokens"]:
        assert f"still live, not revoked (revocation debt): token {token['token_id']}" in flat
        assert f"auth id {token['auth_id']}, {token['fingerprint']}" in flat
        assert words(token["why"]) in flat
    assert "Clean-up:" in out
    assert words(residual["next_step"]) in flat  # whole, never cut
    assert "  velvet stuck --settle-debt" in out.splitlines()
    print(out)  # noqa: T201 - shown when the test fails

    detail = human(eng_world, "status", "--job", job.job_id, "--all")
    assert words(residual["next_step"]) in words(detail)
    assert "…" not in detail


def test_rev_leaked_prints_sev1_the_leaking_consumers_and_runbook_10(
        eng_world: EngWorld) -> None:
    assert eng_world.health(LEAKY) == 200  # it served traffic: its auth result is cached
    created = eng_world.cli_job("rotate", "HK_DEPLOY_BOT", "--flow", "revocation")

    out = human(eng_world, "stage", created.job_id, "revoke", expect=1)
    data = as_json(eng_world, created.job_id)
    assert data["status"] == "rev_leaked"
    leaking = next(e["data"]["leaking_consumers"] for e in reversed(data["events"])
                   if "leaking_consumers" in e["data"])
    assert leaking == [LEAKY]
    flat = words(out)
    assert "Status: rev_leaked (SEV1)" in out
    assert "Consumers (3; lockout check): 1 failed, 1 manual_required, 1 succeeded" in out
    assert "DISTRIBUTE" not in out  # a revocation writes nothing: no distribute column
    assert "SEV1: consumers still accept the revoked value (runbook section 10):" in out
    row = next(r for r in data["consumers"] if r["consumer_id"] == LEAKY)
    assert words(f"{LEAKY} ({row['target']}): {row['detail']}") in flat
    assert "What to do now (runbook section 10):" in out
    assert "disable or restart it now" in flat
    assert "it must answer 401 to the revoked value" in flat
    assert "escalate to a security incident" in flat
    assert f"velvet stage {created.job_id} confirm_leak_resolved" in out
    assert out.rstrip().splitlines()[-1].strip() == (
        f"velvet stage {created.job_id} confirm_leak_resolved")

    shown = human(eng_world, "status", "--job", created.job_id)
    assert "SEV1: consumers still accept the revoked value" in shown


def test_verify_failed_on_a_401_quotes_runbook_6a(eng_world: EngWorld) -> None:
    eng_world.sandbox.heroku.revoke_authorization(eng_world.world.heroku_auth_ids[HK])
    created = eng_world.cli_job("rotate", HK)

    out = human(eng_world, "stage", created.job_id, "verify", expect=1)
    data = as_json(eng_world, created.job_id)
    assert data["status"] == "verify_failed"
    old = next(t for t in data["ledger"] if t["role"] == "old")
    # A refusal at verify is an observation, not a proof (issue #20): the entry stays current.
    assert old["life"] == "current"
    flat = words(out)
    assert "The vendor refused the current token at verify" in out
    assert words(old["observed"]) in flat
    assert f'"{RUNBOOK_6A}"' in flat
    assert "Stop and use the vendor's manual revocation + re-issue process" in flat
    assert f"velvet stage {created.job_id} retry_verify" in out
    assert f"velvet stage {created.job_id} abort" in out


def test_a_verify_failure_that_is_not_a_refusal_does_not_quote_6a(eng_world: EngWorld) -> None:
    created = eng_world.cli_job("rotate", HK)
    eng_world.fault("heroku", method="GET", path="/account", status=503)
    out = human(eng_world, "stage", created.job_id, "verify", expect=1)
    assert "Status: verify_failed" in out
    assert RUNBOOK_6A not in words(out)
