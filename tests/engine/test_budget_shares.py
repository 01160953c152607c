"""Two stage-2 runs at once through one GitHub account share its budget (shares.py).

Two credentials each write 60 GitHub Actions secrets through the world's one GitHub account,
their `proceed_mint` runs as two real processes at once; the GitHub fake enforces the real
limits (80 content-generating requests a minute) at time scale 20. Alone, each would believe it
owns all 80: together they must not be refused once. Nothing here asserts on time.
"""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

from velvet_runner.records import Job, RowStatus
from velvet_sandbox.world import GITHUB_PLATFORM_REPO

from .support import HK, EngWorld

SCALE = 20
BULK = 60  # two runs of 60 and the world's own secret rows: more than one window of 80
OTHER = "HK_DEPLOY_BOT"


def _bulk_secrets(document: dict[str, Any]) -> None:
    for credential in document["credentials"]:
        if credential["name"] in (HK, OTHER):
            credential["consumers"] += [
                {"consumer_id": f"gh-{credential['name'].lower().replace('_', '-')}-{i:03d}",
                 "kind": "github_actions_secret", "env": "prod",
                 "repository": GITHUB_PLATFORM_REPO, "secret": f"{credential['name']}_{i:03d}",
                 "healthcheck": {"type": "none"}} for i in range(BULK)]


def test_two_runs_through_one_account_stay_within_its_limits_together(
        eng_world: EngWorld) -> None:
    eng_world.edit_manifest(_bulk_secrets)
    limits = eng_world.control("github", "POST", "/limits",
                               json={"time_scale": SCALE, "reset": True})
    assert limits.status_code == 200, limits.text
    env = {"VELVET_BUDGET_TIME_SCALE": str(SCALE)}
    jobs = []
    for credential in (HK, OTHER):
        job = eng_world.cli_job("rotate", credential, env=env)
        jobs.append(eng_world.cli_job("stage", job.job_id, "verify", env=env))
    procs: dict[str, subprocess.CompletedProcess[str]] = {}

    def mint(job: Job) -> None:
        procs[job.credential] = eng_world.cli("stage", job.job_id, "proceed_mint", env=env)

    threads = [threading.Thread(target=mint, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    for credential, proc in procs.items():
        assert proc.returncode in (0, 1), (credential, proc.stderr[-2000:])
        job = Job.from_json(proc.stdout)
        assert {r.distribute_status for r in job.consumers} == {RowStatus.SUCCEEDED}, credential
    counted = eng_world.control("github", "GET", "/limits").json()
    assert counted["rejected"] == 0, counted["breaches"]

    # Both runs held a share on the branch and gave it back.
    git = ["git", "--git-dir", str(eng_world.state_repo)]
    branch = eng_world.settings().state_branch
    names = subprocess.run([*git, "ls-tree", "-r", "--name-only", branch, "budgets/"],
                           capture_output=True, text=True, check=True).stdout.split()
    leases = [json.loads(subprocess.run([*git, "show", f"{branch}:{n}"], capture_output=True,
                                        text=True, check=True).stdout) for n in names]
    # (one lease per account a run spends: GitHub here, and Heroku for their config vars;
    # released ones stay until the account's longest window has passed)
    github = [lease for lease in leases if lease["account"].startswith("github ")]
    assert sorted(lease["credential"] for lease in github) == sorted([HK, OTHER])
    assert all(lease["released_at"] and lease["share"] == 0 for lease in leases)
