"""Every request `velvet setup github`, `velvet doctor` and the runner (a rotation with a GitHub
Actions secret consumer, the approval gate, the next stage's dispatch) send to GitHub fits
GitHub's published OpenAPI description (github-openapi.json beside this file, trimmed to the
operations Velvet calls): its operation exists, its path and query parameters and its JSON body
validate. The requests are recorded by a proxy between Velvet (real processes) and the fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from velvet_sandbox.world import Sandbox, example

from .openapi import UNDOCUMENTED_FIELDS, GitHubDescription
from .recorder import Recorded, recording
from .trim_github_openapi import OPERATIONS

ROOT = Path(__file__).resolve().parents[2]
REPO = "raxx/velvet"
OWNER = "ghp_contract_owner_0001"
APP = "ghs_contract_app_0002"
CREDENTIAL = "HK_PLATFORM_FULL"  # a Heroku token held by a GitHub Actions secret, among others
CHILD_TIMEOUT = 300  # a safety net, not a timing assertion


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Recorded]]:
    """Setup, doctor and a gated rotation, all through the recording proxy."""
    work = tmp_path_factory.mktemp("contract")
    with Sandbox(manifest=example("raxx")) as sbx, recording(sbx.urls["github"]) as (url, seen):
        world = sbx.seed_world(work)
        gh = sbx.github
        gh.add_token(OWNER, "raxx")
        sbx.fakes["github"].app_token(APP)  # type: ignore[attr-defined]
        for env in ("velvet-prod", "velvet-prod-revoke", "velvet-prod-verify"):
            gh._repos[REPO].environments.pop(env)  # an empty repository: setup makes them
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VELVET_", "GITHUB_", "AWS_", "GH_"))}
        env.update(sbx.env(work))
        env.update({"VELVET_GITHUB_API_URL": url, "GITHUB_TOKEN": OWNER,
                    "VELVET_GITHUB_TOKEN": APP, "VELVET_APP_PRIVATE_KEY": APP,
                    "VELVET_CACHE_DIR": str(work / "cache"), "VELVET_AWS_REGION": "us-east-1",
                    "VELVET_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/velvet",
                    "VELVET_AWS_VERIFY_ROLE_ARN": "arn:aws:iam::123456789012:role/v",
                    "VELVET_ACTOR": "alice"})

        def velvet(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([sys.executable, "-m", "velvet_runner", *args], cwd=ROOT,
                                  env={**env, **extra}, capture_output=True, text=True,
                                  check=False, timeout=CHILD_TIMEOUT)
            assert done.returncode in (0, 1), done.stdout + done.stderr
            return done

        velvet("setup", "github", "--repo", REPO, "--apply")
        velvet("doctor", "--repo", REPO)
        rotated = json.loads(velvet("rotate", CREDENTIAL, "--json").stdout)
        velvet("stage", rotated["job_id"], "verify", "--json")
        # Stage 2 as the workflow runs it: in Actions, the gate reads the run, the environment
        # and the approvals; bob approved alice's job.
        run = gh.add_run(REPO, "github-actions[bot]", workflow="velvet-stage-2-mint.yml",
                         status="in_progress")
        gh.approve(REPO, run, "velvet-prod", "bob", "ROT-1")
        actions = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": REPO,
                   "GITHUB_RUN_ID": str(run), "GITHUB_API_URL": url,
                   "VELVET_GATE_TOKEN": OWNER, "GITHUB_STEP_SUMMARY": str(work / "summary.md"),
                   "GITHUB_OUTPUT": str(work / "outputs")}
        minted = velvet("stage", rotated["job_id"], "proceed_mint", **actions)
        assert '"status": "validated"' in minted.stdout, minted.stdout + minted.stderr
        gh.add_workflow(REPO, "velvet-stage-3-revoke.yml", ["job_id", "ticket", "confirm",
                                                            "env"])
        velvet("dispatch", "velvet-stage-3-revoke.yml", "--input", f"job_id={rotated['job_id']}",
               "--input", "ticket=ROT-1", "--input", f"confirm={CREDENTIAL}",
               "--input", "env=prod", "--job", rotated["job_id"], "--ref", "main", **actions)
        assert world.values[CREDENTIAL]
        yield list(seen)


def test_every_request_fits_githubs_description(session: list[Recorded]) -> None:
    api = GitHubDescription.load()
    problems = [f"{r.method} {r.path}: {p}" for r in session
                for p in api.request_problems(r.method, r.path, r.query, r.body)]
    assert problems == []


def test_the_session_covers_what_doctor_setup_and_the_runner_call(
        session: list[Recorded]) -> None:
    api = GitHubDescription.load()
    used = set()
    for r in session:
        op = api.operation(r.method, r.path)
        assert op is not None, f"{r.method} {r.path}"
        used.add((op.method, op.template))
    for expected in [
            ("put", "/repos/{owner}/{repo}/environments/{environment_name}"),
            ("post", "/repos/{owner}/{repo}/environments/{environment_name}/"
                     "deployment-branch-policies"),
            ("post", "/repos/{owner}/{repo}/rulesets"),
            ("post", "/repos/{owner}/{repo}/git/commits"),
            ("put", "/repos/{owner}/{repo}/contents/{path}"),
            ("post", "/repos/{owner}/{repo}/actions/variables"),
            ("put", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/"
                    "{secret_name}"),
            ("get", "/repos/{owner}/{repo}/rules/branches/{branch}"),
            ("get", "/repos/{owner}/{repo}/collaborators/{username}/permission"),
            ("get", "/user/installations"),
            ("put", "/repos/{owner}/{repo}/actions/secrets/{secret_name}"),
            ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}/approvals"),
            ("post", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches")]:
        assert expected in used, expected
    # The vendored description holds exactly the operations Velvet calls (its trim list).
    assert {(m, p) for m, p in OPERATIONS} >= used
    # `can_admins_bypass` is the one field sent beyond the description, and it was sent.
    bypass = [r for r in session if r.method == "PUT" and "/environments/" in r.path
              and "/secrets/" not in r.path and isinstance(r.body, dict)
              and "can_admins_bypass" in r.body]
    assert bypass
    assert set(UNDOCUMENTED_FIELDS) == {
        ("put", "/repos/{owner}/{repo}/environments/{environment_name}")}


def test_a_request_outside_the_description_is_caught() -> None:
    api = GitHubDescription.load()
    assert api.request_problems("PUT", f"/repos/{REPO}/environments/velvet-prod", {},
                                {"reviewers": [{"type": "User", "id": "1"}]})
    assert api.request_problems("POST", f"/repos/{REPO}/rulesets", {},
                                {"name": "x", "enforcement": "sometimes"})
    assert api.request_problems("POST", f"/repos/{REPO}/actions/variables", {}, {"name": "X"})
    assert api.request_problems("GET", f"/repos/{REPO}/actions/runs", {"per_page": "many"},
                                None)
    assert api.request_problems("GET", f"/repos/{REPO}/nothing-here", {}, None)
    assert api.request_problems("PUT", f"/repos/{REPO}/environments/velvet-prod", {},
                                {"can_admins_bypass": False}) == []
