"""A rotation whose GitHub secret write meets an exhausted primary rate limit (the fake's hour
at time scale 3600: a real second): the engine waits for `x-ratelimit-reset`, writes again,
and the row ends `succeeded`, never "credential refused".

The world and engine are tests/engine's harness (its fixtures and helpers, reused as they are).
"""

from __future__ import annotations

import engine.conftest as eng_fixtures
from engine.support import EngWorld, last, row, start

from velvet_runner.records import RowStatus

# tests/engine's fixtures: this package gets a Sandbox of its own, reset and seeded per test.
eng_sandbox = eng_fixtures.eng_sandbox
eng_world = eng_fixtures.eng_world

GITHUB_ROW = "github-actions-heroku-api-key"
GITHUB_SECRETS = "/repos/raxx/platform/actions/secrets"


def test_an_exhausted_primary_limit_is_waited_out_and_the_row_succeeds(
    eng_world: EngWorld,
) -> None:
    engine, job = start(eng_world)
    limits = eng_world.control("github", "POST", "/limits",
                               json={"time_scale": 3600, "primary": {"remaining": 0}})
    assert limits.status_code == 200, limits.text
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validated", last(job)
    github = row(job, GITHUB_ROW)
    assert (github.distribute_status, github.validate_status) == (RowStatus.SUCCEEDED,
                                                                  RowStatus.SUCCEEDED)
    calls = [(r["method"], r["status"]) for r in eng_world.requests("github")
             if r["path"].startswith(GITHUB_SECRETS)]
    assert calls[0][1] == 403, calls  # the first call met the limit ...
    puts = [status for method, status in calls if method == "PUT"]
    assert puts[-1] in (201, 204), calls  # ... and the write landed after the reset
    breaches = eng_world.control("github", "GET", "/limits").json()["breaches"]
    assert {b["rule"] for b in breaches} == {"primary"}
