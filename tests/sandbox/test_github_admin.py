"""The GitHub fake's settings side, as strict as GitHub: environments and branch policies,
variables, rulesets and the rules on a branch, collaborators, users, App installations and git
data; who may call what (a person's role, an integration's permissions); every answer's shape
checked against GitHub's published OpenAPI description (tests/contract/)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from contract.openapi import GitHubDescription

from velvet_sandbox import github as gh
from velvet_sandbox.server import ServerThread

REPO = "acme/velvet"
OWNER = "acme"
TOKENS = {"owner": "ghp_admin_owner_0001", "writer": "ghp_admin_writer_0002",
          "run": "ghs_admin_run_token_0003", "app": "ghs_admin_app_token_0004"}


@dataclass
class Fake:
    state: gh.State
    url: str
    clients: dict[str, httpx.Client]

    def __call__(self, who: str, method: str, path: str, *, json: Any = None,
                 check: int | None = None) -> httpx.Response:
        """A call as `who`; with `check`, its status, and its body against GitHub's schema."""
        response = self.clients[who].request(method, path, json=json)
        if check is not None:
            assert response.status_code == check, response.text
            body = response.json() if response.content else None
            problems = GitHubDescription.load().response_problems(
                method, path.split("?")[0], check, body)
            assert problems == [], problems
        return response


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[gh.State, str]]:
    state = gh.State()
    with ServerThread(gh.create_app(state), name="sbx2-github-admin") as server:
        yield state, server.url


@pytest.fixture
def fake(_server: tuple[gh.State, str]) -> Iterator[Fake]:
    state, url = _server
    state.reset()
    state.add_repo(REPO)
    state.add_repo(f"{OWNER}/site")
    state.add_token(TOKENS["owner"], OWNER)
    state.add_token(TOKENS["writer"], "dana")
    state.add_collaborator(REPO, "dana", "write")
    state.add_collaborator(REPO, "erin", "maintain")
    state.add_token(TOKENS["run"], "github-actions[bot]", repos=[REPO],
                    permissions={"actions": "read", "contents": "write"})
    clients = {who: httpx.Client(base_url=url, timeout=10, headers={
        "Authorization": f"Bearer {token}", "User-Agent": "velvet-tests"})
        for who, token in TOKENS.items()}
    try:
        yield Fake(state, url, clients)
    finally:
        for client in clients.values():
            client.close()


def _user_id(fake: Fake, login: str) -> int:
    return int(fake("owner", "GET", f"/users/{login}", check=200).json()["id"])


# --- environments --------------------------------------------------------------------------


def test_an_environment_is_created_and_reconfigured_as_github_does(fake: Fake) -> None:
    path = f"/repos/{REPO}/environments/velvet-prod"
    dana, erin = _user_id(fake, "dana"), _user_id(fake, "erin")
    made = fake("owner", "PUT", path, check=200, json={
        "wait_timer": 5, "prevent_self_review": True, "can_admins_bypass": False,
        "reviewers": [{"type": "User", "id": dana}, {"type": "User", "id": erin}],
        "deployment_branch_policy": {"protected_branches": False,
                                     "custom_branch_policies": True}}).json()
    assert made["can_admins_bypass"] is False
    rules = {r["type"]: r for r in made["protection_rules"]}
    assert [r["reviewer"]["login"] for r in rules["required_reviewers"]["reviewers"]] == \
        ["dana", "erin"]
    assert rules["required_reviewers"]["prevent_self_review"] is True
    assert rules["wait_timer"]["wait_timer"] == 5
    assert made["deployment_branch_policy"] == {"protected_branches": False,
                                                "custom_branch_policies": True}
    policies = f"{path}/deployment-branch-policies"
    main = fake("owner", "POST", policies, json={"name": "main", "type": "branch"}, check=200)
    again = fake("owner", "POST", policies, json={"name": "main"})
    assert again.status_code == 303  # the same pattern: GitHub points at the one there
    listed = fake("owner", "GET", policies, check=200).json()
    assert [p["name"] for p in listed["branch_policies"]] == ["main"]
    fake("owner", "DELETE", f"{policies}/{main.json()['id']}", check=204)
    assert fake("owner", "GET", policies, check=200).json()["total_count"] == 0

    # Omitted settings are kept; an empty reviewer list removes the rule.
    kept = fake("owner", "PUT", path, json={"reviewers": []}, check=200).json()
    assert {r["type"] for r in kept["protection_rules"]} == {"wait_timer", "branch_policy"}
    assert kept["can_admins_bypass"] is False
    fake("owner", "DELETE", path, check=204)
    assert fake("owner", "GET", path).status_code == 404


@pytest.mark.parametrize(("body", "message"), [
    ({"prevent_self_reviews": True}, '"prevent_self_reviews" is not a permitted key.'),
    ({"wait_timer": 43_201}, "wait_timer must be between 0 and 43200"),
    ({"wait_timer": "5"}, "is not an integer"),
    ({"deployment_branch_policy": {"protected_branches": True,
                                   "custom_branch_policies": True}}, "cannot have the same"),
    ({"reviewers": [{"type": "User", "id": 999_999}]}, "was not found"),
    ({"reviewers": [{"type": "User", "id": 1}] * 7}, "at most 6"),
])
def test_an_environment_put_github_refuses_is_422(fake: Fake, body: dict[str, Any],
                                                   message: str) -> None:
    refused = fake("owner", "PUT", f"/repos/{REPO}/environments/velvet-prod", json=body)
    assert refused.status_code == 422
    assert message in refused.json()["message"]
    assert "velvet-prod" not in fake.state._repos[REPO].environments


def test_who_may_configure_an_environment(fake: Fake) -> None:
    path = f"/repos/{REPO}/environments/velvet-prod"
    writer = fake("writer", "PUT", path, json={})
    assert writer.status_code == 403
    assert writer.json()["message"] == "Must have admin rights to Repository."
    run = fake("run", "PUT", path, json={})  # GITHUB_TOKEN has no administration permission
    assert run.status_code == 403
    assert run.json()["message"] == "Resource not accessible by integration"
    fake("owner", "PUT", path, json={}, check=200)
    fake("run", "GET", path, check=200)  # actions: read reads environments


# --- variables -----------------------------------------------------------------------------


def test_repository_and_environment_variables(fake: Fake) -> None:
    fake("owner", "PUT", f"/repos/{REPO}/environments/velvet-prod", json={}, check=200)
    for base in (f"/repos/{REPO}/actions", f"/repos/{REPO}/environments/velvet-prod"):
        fake("owner", "POST", f"{base}/variables", json={"name": "velvet_app_client_id",
                                                        "value": "Iv1.x"}, check=201)
        dup = fake("owner", "POST", f"{base}/variables", json={"name": "VELVET_APP_CLIENT_ID",
                                                               "value": "y"})
        assert dup.status_code == 409
        assert dup.json()["message"] == "Already exists - Variable already exists"
        listed = fake("owner", "GET", f"{base}/variables", check=200).json()
        assert [(v["name"], v["value"]) for v in listed["variables"]] == [
            ("VELVET_APP_CLIENT_ID", "Iv1.x")]
        fake("owner", "PATCH", f"{base}/variables/VELVET_APP_CLIENT_ID",
             json={"value": "Iv1.y"}, check=204)
        one = fake("owner", "GET", f"{base}/variables/velvet_app_client_id", check=200).json()
        assert one["value"] == "Iv1.y"
        bad = fake("owner", "POST", f"{base}/variables", json={"name": "GITHUB_X",
                                                               "value": "z"})
        assert bad.status_code == 422
        fake("owner", "DELETE", f"{base}/variables/VELVET_APP_CLIENT_ID", check=204)
    # A workflow's GITHUB_TOKEN has no variables permission.
    assert fake("run", "GET", f"/repos/{REPO}/actions/variables").status_code == 403


# --- rulesets ------------------------------------------------------------------------------


STATE_RULES = {"name": "velvet-state", "target": "branch", "enforcement": "active",
               "conditions": {"ref_name": {"include": ["refs/heads/velvet-state"],
                                           "exclude": []}},
               "rules": [{"type": "non_fast_forward"}, {"type": "deletion"}]}
REVIEW_RULE = {"type": "pull_request", "parameters": {
    "required_approving_review_count": 1, "require_code_owner_review": True,
    "dismiss_stale_reviews_on_push": True, "require_last_push_approval": True,
    "required_review_thread_resolution": False}}


def test_rulesets_and_the_rules_in_force_on_a_branch(fake: Fake) -> None:
    made = fake("owner", "POST", f"/repos/{REPO}/rulesets", json=STATE_RULES, check=201).json()
    fake("owner", "POST", f"/repos/{REPO}/rulesets", check=201, json={
        "name": "default branch", "enforcement": "active",
        "conditions": {"ref_name": {"include": ["~DEFAULT_BRANCH"], "exclude": []}},
        "rules": [REVIEW_RULE]})
    fake("owner", "POST", f"/repos/{REPO}/rulesets", check=201, json={
        "name": "trial", "enforcement": "evaluate",
        "conditions": {"ref_name": {"include": ["~ALL"], "exclude": []}},
        "rules": [{"type": "required_linear_history"}]})
    state = fake("owner", "GET", f"/repos/{REPO}/rules/branches/velvet-state", check=200).json()
    assert sorted(r["type"] for r in state) == ["deletion", "non_fast_forward"]
    assert {r["ruleset_id"] for r in state} == {made["id"]}
    main = fake("run", "GET", f"/repos/{REPO}/rules/branches/main", check=200).json()
    assert [r["type"] for r in main] == ["pull_request"]  # `evaluate` enforces nothing
    listed = fake("owner", "GET", f"/repos/{REPO}/rulesets", check=200).json()
    assert [r["name"] for r in listed] == ["velvet-state", "default branch", "trial"]

    dup = fake("owner", "POST", f"/repos/{REPO}/rulesets", json=STATE_RULES)
    assert dup.status_code == 422
    bad = fake("owner", "POST", f"/repos/{REPO}/rulesets", json={
        **STATE_RULES, "name": "x", "rules": [{"type": "pull_request", "parameters": {}}]})
    assert bad.status_code == 422
    assert "Invalid property /rules/0" in bad.json()["message"]
    assert fake("writer", "POST", f"/repos/{REPO}/rulesets",
                json={**STATE_RULES, "name": "y"}).status_code == 403
    fake("owner", "PUT", f"/repos/{REPO}/rulesets/{made['id']}",
         json={"enforcement": "disabled"}, check=200)
    assert fake("owner", "GET", f"/repos/{REPO}/rules/branches/velvet-state",
                check=200).json() == []
    fake("owner", "DELETE", f"/repos/{REPO}/rulesets/{made['id']}", check=204)


def test_classic_branch_protection_reads_as_github_answers(fake: Fake) -> None:
    missing = fake("owner", "GET", f"/repos/{REPO}/branches/main/protection")
    assert (missing.status_code, missing.json()["message"]) == (404, "Branch not protected")
    assert fake("writer", "GET", f"/repos/{REPO}/branches/main/protection").status_code == 403


# --- people --------------------------------------------------------------------------------


def test_collaborator_permissions_and_users(fake: Fake) -> None:
    def permission(login: str) -> tuple[str, str]:
        got = fake("run", "GET", f"/repos/{REPO}/collaborators/{login}/permission",
                   check=200).json()
        return got["permission"], got["role_name"]

    assert permission(OWNER) == ("admin", "admin")
    assert permission("dana") == ("write", "write")
    assert permission("erin") == ("write", "maintain")
    fake.state.add_token("ghp_admin_frank_0005", "frank")
    assert permission("frank") == ("none", "none")  # known, no access to a private repo
    unknown = fake("owner", "GET", f"/repos/{REPO}/collaborators/nobody-here/permission")
    assert unknown.status_code == 404
    assert fake("owner", "GET", "/users/nobody-here").status_code == 404
    assert fake("run", "GET", "/user").json()["message"] == \
        "Resource not accessible by integration"


def test_app_installations_and_the_repositories_they_reach(fake: Fake) -> None:
    installation = fake.state.add_installation(OWNER, "Iv1.velvet", repositories=[REPO])
    fake.state.add_token(TOKENS["app"], "velvet-app[bot]", installation=installation)
    listed = fake("owner", "GET", "/user/installations", check=200).json()
    [row] = listed["installations"]
    assert (row["client_id"], row["permissions"]["secrets"], row["repository_selection"]) == \
        ("Iv1.velvet", "write", "selected")
    repos = fake("owner", "GET", f"/user/installations/{installation}/repositories",
                 check=200).json()
    assert [r["full_name"] for r in repos["repositories"]] == [REPO]
    own = fake("app", "GET", "/installation/repositories").json()
    assert [r["full_name"] for r in own["repositories"]] == [REPO]
    assert fake("app", "GET", f"/repos/{OWNER}/site").status_code == 404  # not installed
    site = fake("owner", "GET", f"/repos/{OWNER}/site").json()["id"]
    fake("owner", "PUT", f"/user/installations/{installation}/repositories/{site}", check=204)
    assert fake("app", "GET", f"/repos/{OWNER}/site").status_code == 200
    assert fake("owner", "GET", "/installation/repositories").status_code == 403
    # The App may write secrets, not read variables.
    assert fake("app", "GET", f"/repos/{REPO}/actions/secrets").status_code == 200
    assert fake("app", "GET", f"/repos/{REPO}/actions/variables").status_code == 403


# --- git data ------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_an_orphan_branch_made_through_the_git_api_and_files_through_contents(fake: Fake) -> None:
    tree = fake("owner", "POST", f"/repos/{REPO}/git/trees", json={"tree": [
        {"path": "README.md", "mode": "100644", "type": "blob", "content": "records\n"}]})
    assert tree.status_code == 201, tree.text
    commit = fake("owner", "POST", f"/repos/{REPO}/git/commits", json={
        "message": "velvet: state branch", "tree": tree.json()["sha"], "parents": []})
    assert commit.status_code == 201, commit.text
    ref = fake("owner", "POST", f"/repos/{REPO}/git/refs", json={
        "ref": "refs/heads/velvet-state", "sha": commit.json()["sha"]})
    assert ref.status_code == 201, ref.text
    assert fake("owner", "POST", f"/repos/{REPO}/git/refs", json={
        "ref": "refs/heads/velvet-state", "sha": commit.json()["sha"]}).status_code == 422
    branch = fake("owner", "GET", f"/repos/{REPO}/branches/velvet-state").json()
    assert branch["commit"]["sha"] == commit.json()["sha"]
    apart = fake("owner", "GET", f"/repos/{REPO}/compare/main...velvet-state")
    assert apart.status_code == 404
    assert apart.json()["message"] == "No common ancestor between main and velvet-state."
    assert fake("owner", "GET",
                f"/repos/{REPO}/contents/.github?ref=velvet-state").status_code == 404

    made = fake("owner", "PUT", f"/repos/{REPO}/contents/.github/CODEOWNERS",
                json={"message": "owners", "content": _b64("/manifest/ @dana\n")})
    assert made.status_code == 201, made.text
    read = fake("run", "GET", f"/repos/{REPO}/contents/.github/CODEOWNERS").json()
    assert base64.b64decode(read["content"]).decode() == "/manifest/ @dana\n"
    listing = fake("run", "GET", f"/repos/{REPO}/contents/.github").json()
    assert [e["name"] for e in listing] == ["CODEOWNERS"]
    stale = fake("owner", "PUT", f"/repos/{REPO}/contents/.github/CODEOWNERS",
                 json={"message": "x", "content": _b64("x"), "sha": "0" * 40})
    assert stale.status_code == 409
    same = fake("owner", "GET", f"/repos/{REPO}/compare/main...main").json()
    assert same["status"] == "identical"

    # A pull-request rule on the default branch: a direct commit is refused.
    fake("owner", "POST", f"/repos/{REPO}/rulesets", check=201, json={
        "name": "reviews", "enforcement": "active", "rules": [REVIEW_RULE],
        "conditions": {"ref_name": {"include": ["~DEFAULT_BRANCH"], "exclude": []}}})
    refused = fake("owner", "PUT", f"/repos/{REPO}/contents/.github/CODEOWNERS", json={
        "message": "y", "content": _b64("y"), "sha": read["sha"]})
    assert refused.status_code == 409
    assert "Changes must be made through a pull request." in refused.json()["message"]
