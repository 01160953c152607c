"""`velvet doctor` and `velvet setup github` as an operator runs them (real processes), against
the sandbox provisioned from the raxx example: its GitHub fake (as strict as GitHub), its
vendors and moto.

Each test starts from the world the sandbox provisions, then empties or breaks the GitHub side
through the fake's own API (its REST routes, or its control API for what GitHub's REST cannot
do, such as taking a repository from an App's installation) and runs the commands.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from velvet_sandbox.world import SERVICES, Sandbox, example

ROOT = Path(__file__).resolve().parents[2]  # the workflows doctor reads are this checkout's
REPO = "raxx/velvet"
OWNER_TOKEN = "ghp_doctor_owner_token_0001"
APP_TOKEN = "ghs_doctor_app_installation_0002"
CHILD_TIMEOUT = 300  # a safety net, not a timing assertion


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(manifest=example("raxx")) as sbx:
        yield sbx


@dataclass
class World:
    sandbox: Sandbox
    env: dict[str, str]
    github: httpx.Client  # the repository owner's REST client
    root: Path = ROOT  # where velvet runs: its .github/workflows are the ones doctor reads

    def velvet(self, *args: str, stdin: str | None = None,
               **extra: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VELVET_", "GITHUB_", "AWS_", "GH_"))}
        env.update(self.env)
        for name, value in extra.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return subprocess.run([sys.executable, "-m", "velvet_runner", *args], cwd=self.root,
                              env=env, input=stdin, capture_output=True, text=True,
                              check=False, timeout=CHILD_TIMEOUT)

    def doctor(self, *args: str, **extra: str | None) -> tuple[int, dict[str, Any]]:
        done = self.velvet("doctor", "--repo", REPO, "--json", *args, **extra)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, json.loads(done.stdout)

    def api(self, verb: str, path: str, body: Any = None, status: int | None = None) -> Any:
        response = self.github.request(verb, path, json=body)
        if status is not None:
            assert response.status_code == status, response.text
        return response.json() if response.content else None

    def control(self, service: str, verb: str, path: str, body: Any = None) -> Any:
        response = httpx.request(verb, self.sandbox.control_url(service) + path, json=body,
                                 timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None


@pytest.fixture
def world(sandbox: Sandbox, tmp_path: Path) -> Iterator[World]:
    """The world as the sandbox provisions it (environments, approvers' access, the App on
    the repositories the manifest writes to), with the repository's owner and the App's
    installation token; nothing else of the GitHub side is set up."""
    with httpx.Client(timeout=10) as http:
        for service in SERVICES:
            http.post(sandbox.control_url(service) + "/reset").raise_for_status()
    sandbox._seed_bootstrap()
    sandbox.seed_world(tmp_path / "world")
    sandbox.github.add_token(OWNER_TOKEN, "raxx")
    sandbox.fakes["github"].app_token(APP_TOKEN)  # type: ignore[attr-defined]
    env = {**sandbox.env(tmp_path / "world"), "VELVET_CACHE_DIR": str(tmp_path / "cache"),
           "GITHUB_TOKEN": OWNER_TOKEN, "VELVET_APP_PRIVATE_KEY": APP_TOKEN,
           "VELVET_AWS_REGION": "us-east-1",
           "VELVET_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/velvet",
           "VELVET_AWS_VERIFY_ROLE_ARN": "arn:aws:iam::123456789012:role/velvet-verify"}
    with httpx.Client(base_url=sandbox.urls["github"], timeout=10, headers={
            "Authorization": f"Bearer {OWNER_TOKEN}", "User-Agent": "velvet-tests"}) as github:
        yield World(sandbox, env, github)


@pytest.fixture
def ready(world: World) -> World:
    """The world with the GitHub side set up (`velvet setup github --apply`)."""
    done = world.velvet("setup", "github", "--repo", REPO, "--apply")
    assert done.returncode == 0, done.stdout + done.stderr
    return world


def _failed(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"] if c["status"] == "fail"}


def test_setup_from_an_empty_repository_then_doctor_holds_and_a_second_apply_changes_nothing(
        world: World) -> None:
    for env in ("velvet-prod", "velvet-prod-revoke", "velvet-prod-verify"):
        world.api("DELETE", f"/repos/{REPO}/environments/{env}", status=204)
    code, before = world.doctor()
    assert code == 1
    assert "env:velvet-prod" in _failed(before)

    plan = world.velvet("setup", "github", "--repo", REPO)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "+ create environment velvet-prod (reviewers alice, bob; prevent self-review; " \
        "no admin bypass; deployment branch main)" in plan.stdout
    assert "+ create state branch velvet-state" in plan.stdout
    assert "+ create secret VELVET_HEROKU_TOKEN in environment velvet-prod (sealed" in \
        plan.stdout
    assert "run again with --apply" in plan.stdout
    assert world.api("GET", f"/repos/{REPO}/environments/velvet-prod").get("message") == \
        "Not Found"  # a plan changes nothing

    applied = world.velvet("setup", "github", "--repo", REPO, "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = world.velvet("setup", "github", "--repo", REPO, "--apply")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change" in again.stdout
    assert "done:" not in again.stdout

    code, report = world.doctor()
    assert (code, _failed(report)) == (0, {})
    assert report["ok"] is True
    human = world.velvet("doctor", "--repo", REPO)
    assert human.returncode == 0, human.stdout + human.stderr
    assert "✓ environment velvet-prod: required reviewers: alice, bob" in human.stdout
    assert "✗" not in human.stdout
    # The secrets it stored are the values it was given, sealed for each environment.
    stored = world.sandbox.github.secret_plaintext(f"env:{REPO}:velvet-prod",
                                                   "VELVET_HEROKU_TOKEN")
    assert stored == world.env["VELVET_HEROKU_TOKEN"]
    values = [v for k, v in world.env.items() if k.endswith(("_TOKEN", "_SECRET", "_KEY"))]
    for output in (plan, applied, again, human):
        for value in values:
            assert value not in output.stdout + output.stderr


def test_secrets_come_from_standard_input_too(world: World) -> None:
    world.api("DELETE", f"/repos/{REPO}/environments/velvet-prod-verify", status=204)
    given = json.dumps({"VELVET_SLACK_TOKEN": "xoxb-from-stdin"})
    done = world.velvet("setup", "github", "--repo", REPO, "--apply", "--stdin", stdin=given,
                        VELVET_SLACK_TOKEN=None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert world.sandbox.github.secret_plaintext(
        f"env:{REPO}:velvet-prod-verify", "VELVET_SLACK_TOKEN") == "xoxb-from-stdin"
    assert "xoxb-from-stdin" not in done.stdout + done.stderr
    bad = world.velvet("setup", "github", "--repo", REPO, "--stdin", stdin='{"NOPE": "x"}')
    assert bad.returncode == 2
    assert "NOPE is not read by any workflow" in bad.stderr


def test_a_value_nobody_gave_is_left_for_a_person(world: World) -> None:
    done = world.velvet("setup", "github", "--repo", REPO, "--apply",
                        VELVET_POSTMARK_SERVER_TOKEN=None)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "! manual secret VELVET_POSTMARK_SERVER_TOKEN in environment velvet-prod: no value " \
        "given" in done.stdout


def test_bad_input_is_refused_before_anything(world: World) -> None:
    for args, extra, message in (
            (("--repo", "not a repo"), {}, "--repo must be OWNER/REPO"),
            (("--repo", REPO, "--env", "qa"), {}, "--env qa: the manifest's environments"),
            (("--repo", REPO), {"GITHUB_TOKEN": None}, "no GitHub token")):
        for command in (("doctor",), ("setup", "github")):
            done = world.velvet(*command, *args, **extra)  # type: ignore[arg-type]
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert message in done.stderr
            assert "Traceback" not in done.stderr


# Each misconfiguration, injected through the fake's API, and the check that must fail.
Inject = Callable[[World], None]


def _put_env(body: dict[str, Any], env: str = "velvet-prod") -> Inject:
    return lambda w: w.api("PUT", f"/repos/{REPO}/environments/{env}", body, status=200)


def _drop_ruleset(name: str) -> Inject:
    def inject(w: World) -> None:
        [found] = [r for r in w.api("GET", f"/repos/{REPO}/rulesets") if r["name"] == name]
        w.api("DELETE", f"/repos/{REPO}/rulesets/{found['id']}", status=204)
    return inject


def _uninstall_platform(w: World) -> None:
    state = w.control("github", "GET", "/state")
    [installation] = state["installations"]
    installation["repositories"] = []  # GitHub's UI: Repository access, remove raxx/platform
    w.control("github", "POST", "/seed", {"installations": [installation]})


def _revoke_heroku_bootstrap(w: World) -> None:
    """Velvet's own Heroku token revoked at Heroku (by the bot's owner, a global token)."""
    admin = w.control("heroku", "POST", "/authorizations", {
        "email": "velvet-bot@raxx.app", "scope": ["global"], "description": "admin"})
    headers = {"Authorization": f"Bearer {admin['token']}",
               "Accept": "application/vnd.heroku+json; version=3"}
    base = w.sandbox.urls["heroku"]
    listed = httpx.get(f"{base}/oauth/authorizations", headers=headers, timeout=10).json()
    [bootstrap] = [a for a in listed if a["description"] == "HK_VELVET_BOOTSTRAP"]
    httpx.delete(f"{base}/oauth/authorizations/{bootstrap['id']}", headers=headers,
                 timeout=10).raise_for_status()


MISCONFIGURATIONS: dict[str, tuple[Inject, str, str]] = {
    "reviewers removed": (_put_env({"reviewers": []}), "env:velvet-prod:reviewers",
                          "Required reviewers: alice, bob"),
    "self-review allowed": (_put_env({"prevent_self_review": False}),
                            "env:velvet-prod:self-review", "Prevent self-review"),
    "admin bypass on": (_put_env({"can_admins_bypass": True}, "velvet-prod-revoke"),
                        "env:velvet-prod-revoke:admin-bypass",
                        "uncheck 'Allow administrators to bypass"),
    "any branch may deploy": (_put_env({"deployment_branch_policy": None}),
                              "env:velvet-prod:branches", "Selected branches and tags"),
    "no ruleset on the state branch": (_drop_ruleset("velvet-state"), "state:ruleset",
                                       "Block force pushes, Restrict deletions"),
    "manifest changes pushable without review": (
        _drop_ruleset("velvet-default-branch"), "default:review",
        "Require a pull request, 1 approval, review from Code Owners"),
    "App not installed on a target repository": (_uninstall_platform, "app:repositories",
                                                 "Repository access: add raxx/platform"),
    "a missing secret": (
        lambda w: w.api("DELETE", f"/repos/{REPO}/environments/velvet-prod-revoke/secrets/"
                        "VELVET_HEROKU_TOKEN", status=204),
        "secret:VELVET_HEROKU_TOKEN", "Add environment secret VELVET_HEROKU_TOKEN"),
    "a missing variable": (
        lambda w: w.api("DELETE", f"/repos/{REPO}/actions/variables/VELVET_SLACK_CHANNEL",
                        status=204),
        "variable:VELVET_SLACK_CHANNEL", "New repository variable VELVET_SLACK_CHANNEL"),
    "a bootstrap credential revoked": (
        _revoke_heroku_bootstrap, "reach:heroku app raxx-console-prod config var HEROKU_API_KEY",
        "check VELVET_HEROKU_TOKEN"),
    "an approver without access": (
        lambda w: w.control("github", "POST", "/seed", {"repos": [
            {"full_name": REPO, "collaborators": {"bob": "read"}}]}),
        "approver:bob", "Add people: bob, role Write"),
    "a missing environment": (
        lambda w: w.api("DELETE", f"/repos/{REPO}/environments/velvet-prod-revoke",
                        status=204),
        "env:velvet-prod-revoke", "New environment 'velvet-prod-revoke'"),
}


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_each_misconfiguration_is_reported_with_its_fix(ready: World, case: str) -> None:
    inject, check_id, fix = MISCONFIGURATIONS[case]
    code, report = ready.doctor()
    assert (code, _failed(report)) == (0, {})
    inject(ready)
    code, report = ready.doctor()
    failed = _failed(report)
    assert code == 1
    assert check_id in failed, sorted(failed)
    assert fix in failed[check_id]["fix"]
    human = ready.velvet("doctor", "--repo", REPO)
    assert human.returncode == 1
    line = next(x for x in human.stdout.splitlines() if x.startswith("✗ ")
                and failed[check_id]["title"] in x)
    assert human.stdout.splitlines()[human.stdout.splitlines().index(line) + 1].startswith(
        "    fix: ")


def test_a_secret_an_adapter_declares_that_no_workflow_passes_is_a_failure(
        ready: World, tmp_path: Path) -> None:
    """An adapter's secret (client.Api auth) the manifest's kinds need but no workflow passes
    to velvet: every run would start without it (an adapter added, its secret not wired)."""
    workflows = tmp_path / "repo" / ".github" / "workflows"
    shutil.copytree(ROOT / ".github" / "workflows", workflows)
    for path in workflows.glob("*.yml"):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(x for x in lines if "VELVET_INFISICAL_CLIENT_SECRET" not in x),
                        encoding="utf-8")
    ready.root = tmp_path / "repo"
    code, report = ready.doctor()
    failed = _failed(report)
    assert code == 1
    check = failed["secret:VELVET_INFISICAL_CLIENT_SECRET"]
    assert "infisical_secret need it, and no workflow passes it" in check["detail"]
    assert "VELVET_INFISICAL_CLIENT_SECRET: ${{ secrets.VELVET_INFISICAL_CLIENT_SECRET }}" in (
        check["fix"])
    assert set(failed) == {"secret:VELVET_INFISICAL_CLIENT_SECRET"}


def test_checks_it_cannot_make_here_are_skipped_with_why(ready: World) -> None:
    code, report = ready.doctor(VELVET_HEROKU_TOKEN=None, VELVET_SLACK_TOKEN=None)
    skipped = {c["id"]: c["detail"] for c in report["checks"] if c["status"] == "skip"}
    assert code == 0
    reach = "reach:heroku app raxx-console-prod config var HEROKU_API_KEY"
    assert "VELVET_HEROKU_TOKEN not set here" in skipped[reach]
    assert "not set here" in skipped["notify:slack"]
    assert "not needed" in skipped["variable:VELVET_FALLBACK_APPROVAL"]
    # A workflow's own GITHUB_TOKEN may not list secrets or variables: skipped, not failed.
    run_token = "ghs_doctor_workflow_token_0003"
    ready.sandbox.github.add_token(run_token, "github-actions[bot]", repos=[REPO],
                                   permissions={"actions": "read", "contents": "read"})
    code, report = ready.doctor(GITHUB_TOKEN=run_token)
    skipped = {c["id"]: c["detail"] for c in report["checks"] if c["status"] == "skip"}
    assert "cannot list secrets" in skipped["secret:VELVET_HEROKU_TOKEN"]
    assert "installations cannot be listed" in skipped["app"] or "not set" in skipped["app"]


def test_classic_branch_protection_counts_as_the_review_rule(world: World) -> None:
    world.control("github", "POST", "/seed", {"repos": [{"full_name": REPO, "protections": {
        "main": {"required_pull_request_reviews": {"required_approving_review_count": 2,
                                                   "require_code_owner_reviews": True}}}}]})
    plan = world.velvet("setup", "github", "--repo", REPO)
    assert "velvet-default-branch" not in plan.stdout, plan.stdout
    applied = world.velvet("setup", "github", "--repo", REPO, "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    code, report = world.doctor()
    review = next(c for c in report["checks"] if c["id"] == "default:review")
    assert (code, review["status"]) == (0, "ok")
    assert "branch protection requires 2 approval(s)" in review["detail"]
