"""Playing the adopter: an empty repository, `velvet init`, a manifest of its own (not the
example), and its rotation rehearsed through the callers and the runner of this checkout.

act runs the workflows `velvet init` wrote; their `uses: <runner>@<sha>` is given an export of
this checkout (the rehearsal's --local-repository), so what runs is this runner's code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rehearse.conftest import RUNS_EXECUTED

from velvet_sandbox.rehearse.runner import act_binary

from .adopter import APPROVERS, CREDENTIAL, MANIFEST

CHILD_TIMEOUT = 1200  # a safety net for a hung rehearsal, not a timing assertion


def _velvet(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VELVET_", "GITHUB_"))}
    return subprocess.run([sys.executable, "-m", "velvet_runner", *args], cwd=repo, env=env,
                          capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=acme", "-c",
                           "user.email=acme@localhost", *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def adopter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if act_binary() is None:
        pytest.skip("nektos/act is not installed (pip install 'velvet-runner[rehearse]')")
    repo = tmp_path_factory.mktemp("adopter") / "acme-velvet"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    made = _velvet(repo, "init")
    assert made.returncode == 0, made.stderr
    (repo / "manifest" / "subscription-manifest.yml").write_text(MANIFEST, encoding="utf-8")
    checked = _velvet(repo, "manifest", "check")
    assert checked.returncode == 0, checked.stderr
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "Velvet")
    return repo


def test_the_adopters_credential_is_rotated_through_its_callers(adopter: Path):
    run = _velvet(adopter, "rehearse", "run", "--credential", CREDENTIAL)
    RUNS_EXECUTED.append(3)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    starter, reviewer = APPROVERS
    assert f"started by {starter}, approved by {reviewer}" in run.stdout
    assert "deploy.acme.example/healthz is off this machine" in run.stdout
    rows = [line.split() for line in run.stdout.splitlines() if line[:1].isdigit()]
    assert [(r[1], r[4]) for r in rows] == [("velvet-stage-1-verify", "success"),
                                             ("velvet-stage-2-mint", "success"),
                                             ("velvet-stage-3-revoke", "success")]
    assert [r[6:8] for r in rows[1:]] == [[reviewer, "approved"]] * 2  # both gates
    assert rows[-1][-1] == "done"
    assert ": done; logs" in run.stdout


def test_a_manifest_pull_request_shows_its_plan(adopter: Path):
    path = adopter / "manifest" / "subscription-manifest.yml"
    doc = yaml.safe_load(path.read_text())
    doc["credentials"][0]["consumers"].append({
        "consumer_id": "gh-acme-docs-cloudflare", "kind": "github_actions_secret",
        "repository": "acme/docs", "secret": "CLOUDFLARE_API_TOKEN", "env": "prod"})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    _git(adopter, "commit", "--quiet", "-am", "docs read the token too")
    answer = _velvet(adopter, "rehearse", "pull-request", "HEAD~1", "HEAD")
    RUNS_EXECUTED.append(1)
    assert answer.returncode == 0, answer.stdout[-4000:] + answer.stderr[-4000:]
    assert "velvet-manifest-check  pull_request" in answer.stdout
    assert "gh-acme-docs-cloudflare" in answer.stdout


def test_a_rehearsal_broken_on_purpose_says_where_and_why(adopter: Path):
    """A failing step names the workflow, job and step, and shows the log's tail; the
    rehearsal needs no .gitignore of the repository's (it writes its own ignore rules)."""
    stage1 = adopter / ".github" / "workflows" / "velvet-stage-1-verify.yml"
    text = stage1.read_text()
    broken = text.replace("      - name: Create the job\n", "      - name: Break on purpose\n"
                          "        run: echo 'about to fail on purpose' && exit 3\n"
                          "      - name: Create the job\n", 1)
    assert broken != text
    stage1.write_text(broken)
    (adopter / ".gitignore").unlink()
    _git(adopter, "commit", "--quiet", "-am", "break stage 1, drop .gitignore")
    run = _velvet(adopter, "rehearse", "run", "--credential", CREDENTIAL)
    RUNS_EXECUTED.append(1)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "failed: job verify" in run.stderr
    assert "velvet-stage-1-verify.yml" in run.stderr
    assert "step 'Break on purpose'" in run.stderr
    assert "about to fail on purpose" in run.stderr  # the log's tail
    assert "no job was created" in run.stdout
    assert "job None" not in run.stdout + run.stderr
    assert "file name too long" not in run.stdout + run.stderr
