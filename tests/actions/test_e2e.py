"""A rotation driven through the real `velvet` CLI as GitHub Actions runs it.

Every fake vendor runs on 127.0.0.1 (velvet_sandbox.Sandbox); the GitHub fake plays the
repository, its environments, the stage runs and their approvals. Each `velvet` is a real
subprocess with the environment a workflow step has (GITHUB_ACTIONS=true, GITHUB_OUTPUT, ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from velvet_sandbox import Sandbox
from velvet_sandbox.world import GITHUB_REPOSITORY, World

GATE_TOKEN = "ghs_e2e_gate_token_0123456789abcdef"
CREDENTIAL = "HK_PLATFORM_FULL"


@pytest.fixture(scope="module")
def gh_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, World]]:
    work = tmp_path_factory.mktemp("gh-world")
    with Sandbox() as sandbox:
        world = sandbox.seed_world(work)
        sandbox.github.add_environment(GITHUB_REPOSITORY, "velvet-prod", ["alice", "bob"])
        sandbox.github.add_token(GATE_TOKEN, "github-actions[bot]")
        yield sandbox, world


def _velvet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "velvet_runner", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=300)


def _outputs(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines)


def test_a_gated_rotation_in_actions(gh_world, tmp_path):
    sandbox, world = gh_world
    base = {**os.environ, **sandbox.env(tmp_path),
            # this test's own state branch and cache (tests/conftest.py made them)
            "VELVET_STATE": os.environ["VELVET_STATE"],
            "VELVET_CACHE_DIR": os.environ["VELVET_CACHE_DIR"],
            "VELVET_MANIFEST": str(world.manifest_path), "VELVET_SETTLE_SECONDS": "3",
            "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": GITHUB_REPOSITORY,
            "GITHUB_API_URL": sandbox.urls["github"], "GITHUB_SERVER_URL": "https://gh.example",
            "VELVET_GATE_TOKEN": GATE_TOKEN, "GITHUB_RUN_ATTEMPT": "1"}

    def step(run_id: int, actor: str, name: str) -> dict[str, str]:
        return {**base, "GITHUB_RUN_ID": str(run_id), "GITHUB_ACTOR": actor,
                "GITHUB_OUTPUT": str(tmp_path / f"{name}.out"),
                "GITHUB_STEP_SUMMARY": str(tmp_path / f"{name}.md")}

    gh = sandbox.github
    old_value = world.values[CREDENTIAL]

    # Stage 1, dispatched by alice: create the job and verify.
    run1 = gh.add_run(GITHUB_REPOSITORY, "alice", workflow="velvet-stage-1-verify.yml")
    created = _velvet(step(run1, "alice", "rotate"), "rotate", CREDENTIAL)
    assert created.returncode == 0, created.stderr
    job_id = _outputs(tmp_path / "rotate.out")["job_id"]
    verify = _velvet(step(run1, "alice", "verify"), "stage", job_id, "verify")
    assert verify.returncode == 0, verify.stderr
    assert _outputs(tmp_path / "verify.out")["status"] == "verified"
    # The current value was masked before anything else was printed, and never shown.
    first = verify.stdout.splitlines()[0]
    assert first == f"::add-mask::{old_value}"
    assert verify.stdout.count(old_value) == 1
    assert old_value not in verify.stderr
    summary = (tmp_path / "verify.md").read_text()
    assert "```mermaid" in summary
    assert old_value not in summary
    assert (tmp_path / "verify.out").read_text().count(old_value) == 0

    # Stage 2, dispatched by the bot on alice's behalf, not yet approved: refused.
    run2 = gh.add_run(GITHUB_REPOSITORY, "github-actions[bot]",
                      workflow="velvet-stage-2-mint.yml")
    refused = _velvet(step(run2, "github-actions[bot]", "mint"), "stage", job_id, "proceed_mint")
    assert refused.returncode == 2
    assert "no approval for environment velvet-prod" in refused.stderr

    # alice approving her own job does not count (GitHub's self-review rule cannot see it:
    # the bot started this run).
    gh.approve(GITHUB_REPOSITORY, run2, "velvet-prod", "alice")
    refused = _velvet(step(run2, "github-actions[bot]", "mint"), "stage", job_id, "proceed_mint")
    assert refused.returncode == 2
    assert "four eyes" in refused.stderr

    # bob approves: stage 2 runs, and the approval is on the job.
    gh.approve(GITHUB_REPOSITORY, run2, "velvet-prod", "bob", "ROT-2026-05 ok")
    minted = _velvet(step(run2, "github-actions[bot]", "mint"), "stage", job_id, "proceed_mint")
    assert minted.returncode == 0, minted.stderr
    job = json.loads(minted.stdout[minted.stdout.index("{"):])
    assert job["status"] == "validated"
    [approval] = [e for e in job["events"] if e["action"] == "approval"]
    assert approval["data"]["approver"] == "bob"
    assert approval["data"]["environment"] == "velvet-prod"
    assert approval["data"]["run_url"].endswith(f"/actions/runs/{run2}")
    assert approval["data"]["job_actor"] == "alice"
    assert approval["actor"] == "github-actions[bot]"
    assert job["actor"] == "alice"
    assert job["run_url"] == f"https://gh.example/{GITHUB_REPOSITORY}/actions/runs/{run1}"

    # The new value was masked the moment it was in memory, and shown nowhere.
    new_value = sandbox.heroku.config_var("raxx-api-prod", "HEROKU_API_KEY")
    assert new_value
    assert new_value != old_value
    masks = [line for line in minted.stdout.splitlines() if line.startswith("::add-mask::")]
    assert f"::add-mask::{new_value}" in masks
    assert minted.stdout.count(new_value) == 1
    assert new_value not in minted.stderr
    summary = (tmp_path / "mint.md").read_text()
    assert "| `bob` | `velvet-prod` | environment_approval |" in summary
    assert new_value not in summary
    assert old_value not in summary
    outputs = _outputs(tmp_path / "mint.out")
    assert outputs["status"] == "validated"
    assert new_value not in str(outputs)
