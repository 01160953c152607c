"""The testing flow: a dry run that verifies the current value and every consumer, and writes
nothing anywhere but the job record."""

from __future__ import annotations

from typing import Any

from velvet_runner.machine import Flow

from .support import HK, EngWorld, last


def _writes(eng: EngWorld) -> dict[str, list[dict[str, Any]]]:
    return {service: [r for r in eng.requests(service) if r["method"] != "GET"]
            for service in ("heroku", "github", "infisical", "cloudflare", "postmark")}


def test_dry_run_changes_nothing(eng_world: EngWorld) -> None:
    engine = eng_world.engine()
    before = eng_world.consumer_values(HK)
    ssm_version = eng_world.sandbox.ssm().get_parameter(
        Name="/raxx/prod/heroku/HK_PLATFORM_FULL")["Parameter"]["Version"]
    job, _ = engine.create(HK, Flow.TESTING)
    job = engine.run(job.job_id, "verify")
    assert job.status == "done", last(job)
    report = job.report["dry_run"]["consumers"]
    assert set(report) == set(before)
    assert {r["check"] for r in report.values()} == {"succeeded"}
    writes = _writes(eng_world)
    # The only non-GET calls are Infisical logins.
    assert {r["path"] for r in writes.pop("infisical")} <= {"/api/v1/auth/universal-auth/login"}
    assert all(w == [] for w in writes.values()), writes
    assert eng_world.sandbox.ssm().get_parameter(
        Name="/raxx/prod/heroku/HK_PLATFORM_FULL")["Parameter"]["Version"] == ssm_version
    assert eng_world.consumer_values(HK) == before
    assert eng_world.vault(HK, "__PENDING") is None


def test_dry_run_reports_an_unhealthy_consumer(eng_world: EngWorld) -> None:
    engine = eng_world.engine()
    eng_world.fault("consumers", method="GET", path="/consumers/heroku-config-api-prod/health",
                    status=401)
    job, _ = engine.create(HK, Flow.TESTING)
    job = engine.run(job.job_id, "verify")
    assert job.status == "validate_failed", last(job)
    assert job.report["dry_run"]["consumers"]["heroku-config-api-prod"]["check"] == "failed"
