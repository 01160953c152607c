"""Contract tests for the GitHub fake, over real HTTP on 127.0.0.1, raw and through PyGithub."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from github import Auth, BadCredentialsException, Github, GithubException
from nacl.public import PrivateKey, PublicKey, SealedBox

from velvet_runner.records import fingerprint
from velvet_sandbox import github as gh

from .support import START, FakeClock, reset_client, serve_on_fake_clock

TOKEN = "ghp_velvet_sandbox_token"
REPO = "acme/app"
ORG = "acme"


@dataclass
class Sandbox:
    state: gh.State
    clock: FakeClock
    url: str
    http: httpx.Client

    def pygithub(self, token: str = TOKEN) -> Github:
        return Github(
            auth=Auth.Token(token),
            base_url=self.url,
            retry=None,
            seconds_between_requests=None,  # PyGithub throttles writes to 1/s by default
            seconds_between_writes=None,
        )

    def seal(self, scope_path: str, value: str) -> dict[str, str]:
        """Fetch the public key under `scope_path` and seal `value` for it, like a client does."""
        key = self.http.get(f"{scope_path}/secrets/public-key").json()
        return {"key_id": key["key_id"], "encrypted_value": seal_for(key["key"], value)}


def seal_for(public_key_b64: str, value: str) -> str:
    box = SealedBox(PublicKey(base64.b64decode(public_key_b64)))
    return base64.b64encode(box.encrypt(value.encode())).decode()


@pytest.fixture(scope="module")
def sbx2_github_server() -> Iterator[tuple[gh.State, FakeClock, str]]:
    yield from serve_on_fake_clock(gh.State, gh.create_app, "sbx2-github")


@pytest.fixture
def sbx2_github(sbx2_github_server: tuple[gh.State, FakeClock, str]) -> Iterator[Sandbox]:
    state, clock, url = sbx2_github_server
    headers = {"Authorization": f"Bearer {TOKEN}", "User-Agent": "velvet-tests"}
    with reset_client(url, clock, headers) as http:
        state.add_token(TOKEN, "velvet-bot")
        state.add_org(ORG)
        state.add_repo(REPO, branches=["main", "release"])
        state.add_environment(REPO, "production", reviewers=["alice", "bob"])
        state.add_workflow(REPO, "rotate.yml", ["credential", "stage"], required=["credential"])
        yield Sandbox(state, clock, url, http)


REPO_API = f"/repos/{REPO}/actions"
ENV_API = f"/repos/{REPO}/environments/production"
ORG_API = f"/orgs/{ORG}/actions"


def assert_github_error(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == str(status)
    assert "documentation_url" in body
    if message is not None:
        assert body["message"] == message


# -- auth and headers ------------------------------------------------------------------------


def test_missing_token_is_401_requires_authentication(sbx2_github: Sandbox) -> None:
    response = sbx2_github.http.get(f"/repos/{REPO}", headers={"Authorization": ""})
    assert_github_error(response, 401, "Requires authentication")


def test_unknown_token_is_401_bad_credentials(sbx2_github: Sandbox) -> None:
    response = sbx2_github.http.get(f"/repos/{REPO}", headers={"Authorization": "token nope"})
    assert_github_error(response, 401, "Bad credentials")
    with pytest.raises(BadCredentialsException):
        sbx2_github.pygithub("nope").get_repo(REPO)


def test_token_scheme_is_also_accepted(sbx2_github: Sandbox) -> None:
    response = sbx2_github.http.get(f"/repos/{REPO}", headers={"Authorization": f"token {TOKEN}"})
    assert response.status_code == 200


def test_missing_user_agent_is_403(sbx2_github: Sandbox) -> None:
    response = sbx2_github.http.get(f"/repos/{REPO}", headers={"User-Agent": ""})
    assert response.status_code == 403
    assert "User-Agent" in response.text


def test_rate_limit_headers_on_every_response(sbx2_github: Sandbox) -> None:
    ok = sbx2_github.http.get(f"/repos/{REPO}")
    missing = sbx2_github.http.get("/repos/acme/nope")
    unrouted = sbx2_github.http.get("/no/such/route")
    for response in (ok, missing, unrouted):
        for header in ("limit", "remaining", "used", "reset", "resource"):
            assert f"x-ratelimit-{header}" in response.headers
    assert int(missing.headers["x-ratelimit-remaining"]) < int(ok.headers["x-ratelimit-remaining"])


def test_exhausted_primary_rate_limit_is_403(sbx2_github: Sandbox) -> None:
    sbx2_github.state.set_rate_limit(remaining=0)
    response = sbx2_github.http.get(f"/repos/{REPO}")
    assert response.status_code == 403
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == str(int(START) + 3600)  # the fake's clock
    assert "retry-after" not in response.headers  # GitHub points at the reset instead
    body = response.json()
    assert body["message"].startswith("API rate limit exceeded for user ID ")
    assert body["documentation_url"] == gh.PRIMARY_LIMIT_DOCS
    limits = sbx2_github.http.get("/__velvet/limits").json()
    assert {"rule": "primary", "count": 1} in limits["breaches"]
    assert limits["primary"]["remaining"] == 0
    # The window is an hour of the limiter's vendor time (not the fake's clock): a tenth of a
    # real second at this scale.
    sbx2_github.clock.advance(3600)
    assert sbx2_github.http.get(f"/repos/{REPO}").status_code == 403
    sbx2_github.http.post("/__velvet/limits", json={"time_scale": 36_000}).raise_for_status()
    time.sleep(0.2)
    assert sbx2_github.http.get(f"/repos/{REPO}").status_code == 200


def test_injected_secondary_rate_limit(sbx2_github: Sandbox) -> None:
    fault = {"path": "/repos/*", "status": 429, "times": 1, "retry_after": 30,
             "message": "You have exceeded a secondary rate limit."}  # fmt: skip
    assert sbx2_github.http.post("/__velvet/faults", json=fault).status_code == 201
    response = sbx2_github.http.get(f"/repos/{REPO}")
    assert_github_error(response, 429, "You have exceeded a secondary rate limit.")
    assert response.headers["retry-after"] == "30"
    assert "x-ratelimit-remaining" in response.headers


def test_unknown_repo_is_404(sbx2_github: Sandbox) -> None:
    assert_github_error(sbx2_github.http.get("/repos/acme/ghost"), 404, "Not Found")


def test_token_limited_to_repos_cannot_see_others(sbx2_github: Sandbox) -> None:
    sbx2_github.state.add_repo("acme/other")
    sbx2_github.state.add_token("scoped", "carol", repos=["acme/other"])
    headers = {"Authorization": "Bearer scoped"}
    assert sbx2_github.http.get(f"/repos/{REPO}", headers=headers).status_code == 404
    assert sbx2_github.http.get("/repos/acme/other", headers=headers).status_code == 200


# -- secrets ---------------------------------------------------------------------------------


def test_repo_secret_201_then_204_and_plaintext_kept(sbx2_github: Sandbox) -> None:
    first = sbx2_github.http.put(
        f"{REPO_API}/secrets/API_TOKEN", json=sbx2_github.seal(REPO_API, "one")
    )
    assert first.status_code == 201
    second = sbx2_github.http.put(
        f"{REPO_API}/secrets/API_TOKEN", json=sbx2_github.seal(REPO_API, "two")
    )
    assert second.status_code == 204
    assert sbx2_github.state.secret_plaintext(f"repo:{REPO}", "API_TOKEN") == "two"

    meta = sbx2_github.http.get(f"{REPO_API}/secrets/API_TOKEN").json()
    assert set(meta) == {"name", "created_at", "updated_at"}
    listed = sbx2_github.http.get(f"{REPO_API}/secrets").json()
    assert listed["total_count"] == 1
    assert listed["secrets"][0]["name"] == "API_TOKEN"
    assert "two" not in sbx2_github.http.get(f"{REPO_API}/secrets").text

    assert sbx2_github.http.delete(f"{REPO_API}/secrets/API_TOKEN").status_code == 204
    assert sbx2_github.http.delete(f"{REPO_API}/secrets/API_TOKEN").status_code == 404
    assert sbx2_github.http.get(f"{REPO_API}/secrets/API_TOKEN").status_code == 404
    assert sbx2_github.state.secret_plaintext(f"repo:{REPO}", "API_TOKEN") is None


def test_updated_at_moves_on_overwrite(sbx2_github: Sandbox) -> None:
    url = f"{REPO_API}/secrets/K"
    sbx2_github.http.put(url, json=sbx2_github.seal(REPO_API, "a"))
    sbx2_github.clock.advance(90)
    sbx2_github.http.put(url, json=sbx2_github.seal(REPO_API, "b"))
    meta = sbx2_github.http.get(url).json()
    assert meta["updated_at"] > meta["created_at"]


def test_value_sealed_for_another_scope_is_refused(sbx2_github: Sandbox) -> None:
    env_key = sbx2_github.http.get(f"{ENV_API}/secrets/public-key").json()
    repo_key = sbx2_github.http.get(f"{REPO_API}/secrets/public-key").json()
    assert env_key["key_id"] != repo_key["key_id"]
    assert env_key["key"] != repo_key["key"]
    body = {"key_id": repo_key["key_id"], "encrypted_value": seal_for(env_key["key"], "x")}
    response = sbx2_github.http.put(f"{REPO_API}/secrets/WRONG_KEY", json=body)
    assert_github_error(response, 422)
    stranger = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
    body = {"key_id": repo_key["key_id"], "encrypted_value": seal_for(stranger, "x")}
    assert sbx2_github.http.put(f"{REPO_API}/secrets/WRONG_KEY", json=body).status_code == 422
    assert sbx2_github.state.secret_plaintext(f"repo:{REPO}", "WRONG_KEY") is None


def test_key_id_mismatch_or_missing_is_422(sbx2_github: Sandbox) -> None:
    sealed = sbx2_github.seal(REPO_API, "v")
    env_key_id = sbx2_github.http.get(f"{ENV_API}/secrets/public-key").json()["key_id"]
    wrong = {**sealed, "key_id": env_key_id}
    assert_github_error(sbx2_github.http.put(f"{REPO_API}/secrets/S", json=wrong), 422)
    missing = {"encrypted_value": sealed["encrypted_value"]}
    assert_github_error(
        sbx2_github.http.put(f"{REPO_API}/secrets/S", json=missing),
        422,
        'Invalid request.\n\n"key_id" wasn\'t supplied.',
    )
    not_b64 = {**sealed, "encrypted_value": "not base64!"}
    assert_github_error(sbx2_github.http.put(f"{REPO_API}/secrets/S", json=not_b64), 422)


def test_rotated_key_refuses_the_old_key_id(sbx2_github: Sandbox) -> None:
    stale = sbx2_github.seal(REPO_API, "v")
    new_id = sbx2_github.state.rotate_key(f"repo:{REPO}")
    assert new_id != stale["key_id"]
    assert sbx2_github.http.put(f"{REPO_API}/secrets/S", json=stale).status_code == 422
    assert (
        sbx2_github.http.put(
            f"{REPO_API}/secrets/S", json=sbx2_github.seal(REPO_API, "v")
        ).status_code
        == 201
    )


def test_invalid_secret_name_is_422(sbx2_github: Sandbox) -> None:
    body = sbx2_github.seal(REPO_API, "v")
    assert sbx2_github.http.put(f"{REPO_API}/secrets/GITHUB_X", json=body).status_code == 422
    assert sbx2_github.http.put(f"{REPO_API}/secrets/1ABC", json=body).status_code == 422


def test_environment_secret_and_unknown_environment(sbx2_github: Sandbox) -> None:
    response = sbx2_github.http.put(
        f"{ENV_API}/secrets/DEPLOY_KEY", json=sbx2_github.seal(ENV_API, "env-value")
    )
    assert response.status_code == 201
    assert sbx2_github.state.secret_plaintext(f"env:{REPO}:production", "DEPLOY_KEY") == (
        "env-value"
    )
    assert sbx2_github.state.secret_plaintext(f"repo:{REPO}", "DEPLOY_KEY") is None
    unknown = sbx2_github.http.get(f"/repos/{REPO}/environments/nope/secrets/public-key")
    assert_github_error(unknown, 404)


def test_org_secret_requires_visibility(sbx2_github: Sandbox) -> None:
    sealed = sbx2_github.seal(ORG_API, "org-value")
    missing = sbx2_github.http.put(f"{ORG_API}/secrets/SHARED", json=sealed)
    assert_github_error(missing, 422, 'Invalid request.\n\n"visibility" wasn\'t supplied.')
    created = sbx2_github.http.put(
        f"{ORG_API}/secrets/SHARED", json={**sealed, "visibility": "private"}
    )
    assert created.status_code == 201
    assert sbx2_github.state.secret_plaintext(f"org:{ORG}", "SHARED") == "org-value"
    meta = sbx2_github.http.get(f"{ORG_API}/secrets/SHARED").json()
    assert meta["visibility"] == "private"
    replaced = sbx2_github.http.put(
        f"{ORG_API}/secrets/SHARED", json={**sealed, "visibility": "all"}
    )
    assert replaced.status_code == 204


def test_pygithub_repo_and_environment_secrets(sbx2_github: Sandbox) -> None:
    client = sbx2_github.pygithub()
    repo = client.get_repo(REPO)
    assert repo.full_name == REPO
    assert repo.owner.login == ORG
    repo.create_secret("VELVET_TOKEN", "s3cr3t-repo")
    assert sbx2_github.state.secret_plaintext(f"repo:{REPO}", "VELVET_TOKEN") == "s3cr3t-repo"
    repo.create_secret("VELVET_TOKEN", "s3cr3t-repo-2")
    assert sbx2_github.state.secret_plaintext(f"repo:{REPO}", "VELVET_TOKEN") == "s3cr3t-repo-2"
    assert [s.name for s in repo.get_secrets()] == ["VELVET_TOKEN"]

    env = repo.get_environment("production")
    env.create_secret("VELVET_TOKEN", "s3cr3t-env")
    assert (
        sbx2_github.state.secret_plaintext(f"env:{REPO}:production", "VELVET_TOKEN") == "s3cr3t-env"
    )
    assert env.name == "production"
    client.close()


def test_pygithub_org_secret(sbx2_github: Sandbox) -> None:
    client = sbx2_github.pygithub()
    client.get_organization(ORG).create_secret("ORG_TOKEN", "org-s3cr3t", visibility="all")
    assert sbx2_github.state.secret_plaintext(f"org:{ORG}", "ORG_TOKEN") == "org-s3cr3t"
    client.close()


# -- environments, runs, approvals -----------------------------------------------------------


def test_environment_protection_rules(sbx2_github: Sandbox) -> None:
    sbx2_github.state.add_environment(REPO, "staging", None, wait_timer=5, branches=["main"])
    prod = sbx2_github.http.get(ENV_API).json()
    (rule,) = prod["protection_rules"]
    assert rule["type"] == "required_reviewers"
    assert rule["prevent_self_review"] is True
    assert [r["reviewer"]["login"] for r in rule["reviewers"]] == ["alice", "bob"]
    assert prod["deployment_branch_policy"] is None

    staging = sbx2_github.http.get(f"/repos/{REPO}/environments/staging").json()
    assert [r["type"] for r in staging["protection_rules"]] == ["wait_timer", "branch_policy"]
    assert staging["deployment_branch_policy"] == {
        "protected_branches": False,
        "custom_branch_policies": True,
    }
    policies = sbx2_github.http.get(
        f"/repos/{REPO}/environments/staging/deployment-branch-policies"
    ).json()
    assert [p["name"] for p in policies["branch_policies"]] == ["main"]
    names = [
        e["name"]
        for e in sbx2_github.http.get(f"/repos/{REPO}/environments").json()["environments"]
    ]
    assert names == ["production", "staging"]
    assert sbx2_github.http.get(f"/repos/{REPO}/environments/nope").status_code == 404


def test_run_and_approvals(sbx2_github: Sandbox) -> None:
    run_id = sbx2_github.state.add_run(REPO, "alice", workflow="rotate.yml")
    assert sbx2_github.http.get(f"{REPO_API}/runs/{run_id}/approvals").json() == []
    sbx2_github.state.approve(REPO, run_id, "production", "bob", "ticket OPS-1")
    run = sbx2_github.http.get(f"{REPO_API}/runs/{run_id}").json()
    assert run["id"] == run_id
    assert run["actor"]["login"] == run["triggering_actor"]["login"] == "alice"
    assert run["run_attempt"] == 1
    assert run["status"] == "waiting"
    assert run["html_url"].endswith(f"/{REPO}/actions/runs/{run_id}")
    (approval,) = sbx2_github.http.get(f"{REPO_API}/runs/{run_id}/approvals").json()
    assert approval["state"] == "approved"
    assert approval["comment"] == "ticket OPS-1"
    assert approval["user"]["login"] == "bob"
    assert isinstance(approval["user"]["id"], int)
    env_id = sbx2_github.http.get(ENV_API).json()["id"]
    assert [(e["id"], e["name"]) for e in approval["environments"]] == [(env_id, "production")]
    assert sbx2_github.http.get(f"{REPO_API}/runs/999").status_code == 404


# -- workflow dispatch -----------------------------------------------------------------------


def test_dispatch_204_and_recorded(sbx2_github: Sandbox) -> None:
    url = f"{REPO_API}/workflows/rotate.yml/dispatches"
    response = sbx2_github.http.post(url, json={"ref": "main", "inputs": {"credential": "x"}})
    assert response.status_code == 204
    assert response.content == b""
    (record,) = sbx2_github.state.dispatches(REPO)
    assert record["workflow"] == "rotate.yml"
    assert record["ref"] == "main"
    assert record["inputs"] == {"credential": "x"}
    assert record["actor"] == "velvet-bot"
    run = sbx2_github.http.get(f"{REPO_API}/runs/{record['run_id']}").json()
    assert run["event"] == "workflow_dispatch"


def test_dispatch_with_run_details_is_200(sbx2_github: Sandbox) -> None:
    url = f"{REPO_API}/workflows/rotate.yml/dispatches"
    body = {"ref": "release", "inputs": {"credential": "x"}, "return_run_details": True}
    response = sbx2_github.http.post(url, json=body)
    assert response.status_code == 200
    details = response.json()
    assert set(details) == {"workflow_run_id", "run_url", "html_url"}
    run = sbx2_github.http.get(details["run_url"]).json()
    assert run["id"] == details["workflow_run_id"]
    assert run["head_branch"] == "release"


@pytest.mark.parametrize(
    ("workflow", "body", "status"),
    [
        ("ghost.yml", {"ref": "main"}, 404),
        ("rotate.yml", {"ref": "main", "inputs": {"credential": "x", "evil": "1"}}, 422),
        ("rotate.yml", {"ref": "main", "inputs": {"stage": "mint"}}, 422),
        ("rotate.yml", {"ref": "nope", "inputs": {"credential": "x"}}, 422),
        ("rotate.yml", {"inputs": {"credential": "x"}}, 422),
    ],
)
def test_dispatch_errors(
    sbx2_github: Sandbox, workflow: str, body: dict[str, object], status: int
) -> None:
    response = sbx2_github.http.post(f"{REPO_API}/workflows/{workflow}/dispatches", json=body)
    assert_github_error(response, status)
    assert sbx2_github.state.dispatches(REPO) == []


def test_pygithub_dispatch(sbx2_github: Sandbox) -> None:
    client = sbx2_github.pygithub()
    workflow = client.get_repo(REPO).get_workflow("rotate.yml")
    assert workflow.create_dispatch("main", {"credential": "c1"}, throw=True) is True
    run = workflow.create_dispatch(
        "main", {"credential": "c2"}, throw=True, return_run_details=True
    )
    assert run.id == sbx2_github.state.dispatches(REPO)[1]["run_id"]
    assert workflow.create_dispatch("main", {"bogus": "1"}) is False
    with pytest.raises(GithubException) as caught:
        workflow.create_dispatch("main", {"bogus": "1"}, throw=True)
    assert caught.value.status == 422
    client.close()


# -- issues ----------------------------------------------------------------------------------


def test_issue_create(sbx2_github: Sandbox) -> None:
    missing = sbx2_github.http.post(f"/repos/{REPO}/issues", json={"body": "no title"})
    assert_github_error(missing, 422)
    created = sbx2_github.http.post(
        f"/repos/{REPO}/issues", json={"title": "Rotation failed", "labels": ["velvet"]}
    )
    assert created.status_code == 201
    issue = created.json()
    assert issue["number"] == 1
    assert issue["html_url"].endswith(f"/{REPO}/issues/1")
    assert sbx2_github.state.issues(REPO)[0]["title"] == "Rotation failed"
    assert sbx2_github.http.get(f"/repos/{REPO}/issues/1").json()["title"] == "Rotation failed"


def test_pygithub_issue(sbx2_github: Sandbox) -> None:
    client = sbx2_github.pygithub()
    issue = client.get_repo(REPO).create_issue("Leak suspected", body="details")
    assert issue.number == 1
    assert sbx2_github.state.issues(REPO)[0]["body"] == "details"
    client.close()


# -- control ---------------------------------------------------------------------------------


def test_reads_leave_the_snapshot_unchanged_and_it_round_trips(sbx2_github: Sandbox) -> None:
    sbx2_github.state.set_secret(f"repo:{REPO}", "EXISTING", "v0")
    run_id = sbx2_github.state.add_run(REPO, "alice")
    sbx2_github.state.approve(REPO, run_id, "production", "bob", "ok")
    before = sbx2_github.http.get("/__velvet/state").json()
    for path in (
        f"/repos/{REPO}", f"{REPO_API}/secrets", f"{REPO_API}/secrets/public-key", ENV_API,
        f"{REPO_API}/runs/{run_id}", f"{REPO_API}/runs/{run_id}/approvals", "/user",
        f"/repos/{REPO}/environments", f"{REPO_API}/workflows/rotate.yml",
    ):  # fmt: skip
        assert sbx2_github.http.get(path).status_code == 200, path
    sbx2_github.http.get(f"/repos/{REPO}", headers={"Authorization": "Bearer wrong"})
    assert sbx2_github.http.get("/__velvet/state").json() == before
    assert sbx2_github.state.snapshot() == before

    sbx2_github.http.put(f"{REPO_API}/secrets/NEW", json=sbx2_github.seal(REPO_API, "n"))
    after = sbx2_github.state.snapshot(reveal=True)
    assert after != sbx2_github.state.snapshot(reveal=False) != before
    fresh = gh.State(clock=sbx2_github.clock)
    fresh.seed(after)
    assert fresh.snapshot(reveal=True) == after
    # the seeded copy still opens boxes sealed for the original's keys
    assert fresh.public_key(f"repo:{REPO}") == sbx2_github.state.public_key(f"repo:{REPO}")


def test_seed_over_http(sbx2_github: Sandbox) -> None:
    seed = {
        "repos": [
            {
                "full_name": "acme/seeded",
                "environments": [{"name": "prod", "reviewers": ["alice"]}],
                "secrets": [{"name": "pre", "value": "existing"}],
            }
        ]
    }
    assert sbx2_github.http.post("/__velvet/seed", json=seed).status_code == 200
    assert sbx2_github.state.secret_plaintext("repo:acme/seeded", "PRE") == "existing"
    assert sbx2_github.http.get("/repos/acme/seeded/environments/prod").status_code == 200
    assert sbx2_github.http.post("/__velvet/seed", json={"repos": [{}]}).status_code == 400


def test_the_state_route_shows_tokens_secrets_and_private_keys_as_fingerprints(
    sbx2_github: Sandbox,
) -> None:
    sbx2_github.state.set_secret(f"repo:{REPO}", "EXISTING", "v0-clear-value")
    text = sbx2_github.http.get("/__velvet/state").text
    clear = sbx2_github.state.snapshot(reveal=True)
    [repo] = [r for r in clear["repos"] if r["full_name"] == REPO]
    assert "v0-clear-value" not in text
    assert TOKEN not in text
    assert repo["key"]["private_key"] not in text
    shown = sbx2_github.http.get("/__velvet/state").json()
    [shown_repo] = [r for r in shown["repos"] if r["full_name"] == REPO]
    assert {"name": "EXISTING", "value": fingerprint("v0-clear-value")}.items() <= (
        [s for s in shown_repo["secrets"] if s["name"] == "EXISTING"][0].items()
    )
    assert shown_repo["key"]["private_key"] == fingerprint(repo["key"]["private_key"])
    assert fingerprint(TOKEN) in [t["token"] for t in shown["tokens"]]
    # the values stay reachable in process, through the fake's own methods
    assert sbx2_github.state.secret_plaintext(f"repo:{REPO}", "EXISTING") == "v0-clear-value"
    assert TOKEN in sbx2_github.state.token_values()
