"""A fan-out that GitHub's rate budget stretches: the stage waits instead of being refused,
says who waits for what while it lasts, and names the waits in the job's events and the step
summary.

The GitHub fake and the runner's budgets both run at time scale 10 (its control API and
`VELVET_BUDGET_TIME_SCALE`), so a minute of GitHub's 80 content-generating requests passes in
six real seconds: long beside the first window's writes even on a loaded machine, so the
second window's writes wait well over the second a thread that the job records (at scale 20
a slow machine's first window used up most of its three seconds, and nothing was recorded).
Nothing here asserts on time.
"""

from __future__ import annotations

from typing import Any

from velvet_runner.records import Job, RowStatus
from velvet_sandbox.world import GITHUB_PLATFORM_REPO

from .support import HK, EngWorld, last

SCALE = 10
BULK = 100  # with the world's own secret rows, more writes than one window of 80 allows


def _bulk_secrets(document: dict[str, Any]) -> None:
    credential = next(c for c in document["credentials"] if c["name"] == HK)
    credential["consumers"] += [
        {"consumer_id": f"gh-bulk-{i:03d}", "kind": "github_actions_secret", "env": "prod",
         "repository": GITHUB_PLATFORM_REPO, "secret": f"BULK_{i:03d}",
         "healthcheck": {"type": "none"}} for i in range(BULK)]


def test_a_fan_out_the_budget_stretches_waits_and_says_so(eng_world: EngWorld) -> None:
    eng_world.edit_manifest(_bulk_secrets)
    limits = eng_world.control("github", "POST", "/limits",
                               json={"time_scale": SCALE, "reset": True})
    assert limits.status_code == 200, limits.text
    env = {"VELVET_BUDGET_TIME_SCALE": str(SCALE)}
    job = eng_world.cli_job("rotate", HK, env=env)
    job = eng_world.cli_job("stage", job.job_id, "verify", env=env)
    proc = eng_world.cli("stage", job.job_id, "proceed_mint", env=env)
    # The bulk rows have no check (a GitHub secret cannot be read back), so the stage ends
    # validate_partial (exit 1) with every write landed and every checked row proven.
    assert proc.returncode == 1, proc.stderr[-2000:]
    job = Job.from_json(proc.stdout)
    assert job.status == "validate_partial", last(job)
    bulk = [r for r in job.consumers if r.consumer_id.startswith("gh-bulk-")]
    assert len(bulk) == BULK
    assert {r.distribute_status for r in job.consumers} == {RowStatus.SUCCEEDED}
    checked = [r for r in job.consumers if r not in bulk]
    assert {r.validate_status for r in checked} == {RowStatus.SUCCEEDED}
    counted = eng_world.control("github", "GET", "/limits").json()
    assert counted["rejected"] == 0, counted["breaches"]  # paced, never refused

    # While it waited, the progress line said who waits for which budget ...
    assert "waiting for github's content-generating requests per minute" in proc.stderr
    # ... and afterwards the job and the step summary name the waits.
    waits = [e.detail or "" for e in job.events if e.action == "budget_wait"]
    assert len(waits) == 1, waits
    assert "content-generating requests per minute" in waits[0]
    summary = (eng_world.workdir / "step-summary.md").read_text(encoding="utf-8")
    assert "### Waits for the vendors' rate budgets" in summary
    assert waits[0] in summary
