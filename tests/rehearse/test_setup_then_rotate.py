"""From an empty repository to a rotation, as an adopter goes: `velvet setup github --apply`
makes the GitHub side, `velvet doctor` finds it whole, a second apply changes nothing, and a
rotation through the workflows (which read their secrets and variables from what setup made)
ends `done`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from velvet_sandbox.rehearse.runner import Rehearsal, act_binary
from velvet_sandbox.world import example

from .conftest import ROOT, RUNS_EXECUTED

CREDENTIAL = "CF_ZONE_READ"
CHILD_TIMEOUT = 300  # a safety net, not a timing assertion


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory, runner_venvs: Path) -> Iterator[Rehearsal]:
    if act_binary() is None:
        pytest.skip("nektos/act is not installed (pip install 'velvet-runner[rehearse]')")
    with Rehearsal(ROOT, tmp_path_factory.mktemp("bare"), manifest=example("raxx"),
                   set_up=False, venvs=runner_venvs) as rh:
        try:
            yield rh
        finally:
            RUNS_EXECUTED.append(rh.runs_executed)


def _velvet(rh: Rehearsal, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VELVET_", "GITHUB_", "AWS_", "GH_"))}
    env.update(rh.github_values())
    env.update({"GITHUB_TOKEN": rh.tokens[rh.owner], "VELVET_GITHUB_API_URL": rh.server_url})
    return subprocess.run([sys.executable, "-m", "velvet_runner", *args, "--repo",
                           rh.repository], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=CHILD_TIMEOUT)


def test_setup_from_an_empty_repository_then_doctor_then_a_rotation(bare: Rehearsal) -> None:
    rh = bare
    with httpx.Client(base_url=rh.server_url, timeout=10, headers={
            "Authorization": f"Bearer {rh.tokens[rh.owner]}", "User-Agent": "tests"}) as api:
        for env in ("velvet-prod", "velvet-prod-revoke", "velvet-prod-verify"):
            assert api.delete(f"/repos/{rh.repository}/environments/{env}").status_code == 204
        assert api.get(f"/repos/{rh.repository}/environments").json()["total_count"] == 0

    before = _velvet(rh, "doctor")
    assert before.returncode == 1, before.stdout + before.stderr
    applied = _velvet(rh, "setup", "github", "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "done: environment velvet-prod" in applied.stdout
    again = _velvet(rh, "setup", "github", "--apply")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change" in again.stdout
    doctor = _velvet(rh, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "✗" not in doctor.stdout

    run = rh.dispatch("velvet-stage-1-verify.yml", {"credential": CREDENTIAL,
                                                    "flow": "operational", "env": "prod"},
                      as_login=rh.starter)
    [verified] = rh.drain()
    assert (verified.run_id, verified.conclusion) == (run, "success"), verified.log
    job_id = verified.outputs["job_id"]
    [stage2] = rh.waiting()
    assert rh.approve(stage2, rh.reviewer).status_code == 200
    [minted] = rh.drain()
    assert minted.outputs["status"] == "validated", minted.log
    stage3 = rh.dispatch("velvet-stage-3-revoke.yml", {
        "job_id": job_id, "ticket": "ROT-SETUP", "confirm": CREDENTIAL, "env": "prod"},
        as_login=rh.starter)
    assert rh.approve(stage3, rh.reviewer).status_code == 200
    [revoked] = rh.drain()
    assert revoked.outputs["status"] == "done", revoked.log
    for output in (applied, again, doctor):
        for value in rh.github_values().values():
            if len(value) >= 12 and value.startswith(("ghs_", "xoxb-", "HRKU-")):
                assert value not in output.stdout + output.stderr


def test_a_job_bound_to_an_environment_that_does_not_exist_reads_no_secret(
        bare: Rehearsal) -> None:
    """What a run reads is what the GitHub side holds: the secrets are the environments'
    (setup puts none in the repository), so a job naming velvet-staging, which does not
    exist, gets none of them, as on GitHub; the repository's variables it does get."""
    bare.setup_github()  # what the first test applies (idempotent: alone, this test needs it)
    secrets, variables = bare._github_settings(bare.repository, ["velvet-staging"])
    assert secrets == {}
    assert variables["VELVET_SLACK_CHANNEL"] == bare.github_values()["VELVET_SLACK_CHANNEL"]
    secrets, _ = bare._github_settings(bare.repository, ["velvet-prod"])
    assert secrets["VELVET_HEROKU_TOKEN"] == bare.github_values()["VELVET_HEROKU_TOKEN"]
