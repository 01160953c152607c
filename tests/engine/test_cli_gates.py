"""The operator's guard rails, through the real `velvet` command: exit codes, refusals, and the
proof that a refused command changed nothing (runbook sections 3, 6e and 12)."""

from __future__ import annotations

from typing import Any

from .support import HK, EngWorld, revoke, start, ticket, to_validated


def _nothing_revoked(eng: EngWorld) -> None:
    assert eng.requests("heroku", "DELETE") == []
    assert eng.world.heroku_auth_ids[HK] in eng.sandbox.heroku.authorization_ids()
    assert eng.sandbox.heroku.token_is_live(eng.world.values[HK])


REFUSED_REVOKES = [
    (["--confirm", HK], "needs --ticket"),
    (["--ticket", "  ", "--confirm", HK], "needs --ticket"),
    (["--ticket", ticket(HK)], f"needs --confirm {HK}"),
    (["--ticket", ticket(HK), "--confirm", "HK_PLATFORM"], f"needs --confirm {HK}"),
]


def test_proceed_revoke_needs_ticket_and_typed_name(eng_world: EngWorld) -> None:
    """No ticket, a blank one, no --confirm or a mistyped name: exit 2, nothing revoked."""
    engine, job = to_validated(eng_world)
    for args, message in REFUSED_REVOKES:
        proc = eng_world.cli("stage", job.job_id, "proceed_revoke", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, args
        assert proc.stdout == ""
        assert eng_world.job(job.job_id).status == "validated"
        _nothing_revoked(eng_world)
    assert revoke(engine, job).status == "done"


def test_second_rotation_of_the_same_credential_is_refused(eng_world: EngWorld) -> None:
    first = eng_world.cli_job("rotate", HK, "--idempotency-key", "k-1")
    again = eng_world.cli_job("rotate", HK, "--idempotency-key", "k-1")
    assert again.job_id == first.job_id  # same key: the same job, nothing new
    proc = eng_world.cli("rotate", HK)
    assert proc.returncode == 3, proc.stderr
    assert "active rotation already in progress" in proc.stderr
    assert first.job_id in proc.stderr
    engine = eng_world.engine()
    assert engine.run(first.job_id, "abort").status == "aborted"
    assert engine.create(HK)[0].job_id != first.job_id


def test_runner_refuses_a_job_of_another_env(eng_world: EngWorld) -> None:
    """Runbook 12: a prod rotation against the staging Velvet is refused, before and after the
    job exists, and the refused stage changes nothing."""
    proc = eng_world.cli("rotate", HK, env={"VELVET_ENV": "staging"})
    assert proc.returncode == 2, proc.stderr
    assert "VELVET_ENV=staging" in proc.stderr
    assert "env prod" in proc.stderr
    job, _ = eng_world.engine().create(HK)
    proc = eng_world.cli("stage", job.job_id, "verify", env={"VELVET_ENV": "staging"})
    assert proc.returncode == 2, proc.stderr
    assert "VELVET_ENV=staging" in proc.stderr
    assert eng_world.job(job.job_id).status == "init"
    assert eng_world.requests("heroku", "GET", "/account") == []


def test_only_consumers_of_the_jobs_env_are_fanned_out_to(eng_world: EngWorld) -> None:
    staging_app = "raxx-console-staging"

    def add_staging_consumer(document: dict[str, Any]) -> None:
        cred = next(c for c in document["credentials"] if c["name"] == HK)
        cred["consumers"].append({"consumer_id": "heroku-config-staging-only",
                                  "kind": "heroku_config_var", "env": "staging",
                                  "app": staging_app, "var": "STAGING_ONLY_KEY",
                                  "healthcheck": {"type": "none"}})

    eng_world.edit_manifest(add_staging_consumer)
    engine, job = to_validated(eng_world)
    assert job.row("heroku-config-staging-only") is None
    assert eng_world.sandbox.heroku.config_var(staging_app, "STAGING_ONLY_KEY") is None


def test_action_not_allowed_names_the_state_and_what_is_allowed(eng_world: EngWorld) -> None:
    _, job = start(eng_world)
    proc = eng_world.cli("stage", job.job_id, "proceed_revoke", "--ticket", ticket(HK),
                         "--confirm", HK)
    assert proc.returncode == 2, proc.stderr
    assert "can't proceed_revoke when in verified; allowed: proceed_mint, abort" in proc.stderr
    _nothing_revoked(eng_world)


def test_feature_flag_off_refuses_every_change(eng_world: EngWorld) -> None:
    _, job = start(eng_world)
    eng_world.world.flags_path.write_text("velvet_v2_rotation: false\n", encoding="utf-8")
    for args in (["rotate", "CF_ZONE_READ"], ["stage", job.job_id, "proceed_mint"]):
        proc = eng_world.cli(*args)
        assert proc.returncode == 4, proc.stderr
        assert "velvet_v2_rotation" in proc.stderr
    assert eng_world.job(job.job_id).status == "verified"
    assert eng_world.requests("heroku", "POST", "/oauth/authorizations") == []
