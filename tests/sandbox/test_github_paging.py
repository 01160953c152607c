"""The GitHub fake pages every listing the way GitHub does (`per_page`, `page`, `Link`), and the
runner's own paging (`follow_links`, `GitHubApi.get_all`, the approval gate) reads every page
of it, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from velvet_runner import manifest as manifest_mod
from velvet_runner.client import follow_links, make_client
from velvet_runner.github.api import GitHubApi
from velvet_runner.github.gate import ActionsGate
from velvet_runner.machine import Action, Flow, State
from velvet_runner.records import Event, Job, new_job_id

from . import test_github
from .test_github import REPO, TOKEN, Sandbox

REPO_API = f"/repos/{REPO}/actions"
# test_github.py's fixtures: this module gets a server of its own, reset before every test.
sbx2_github_server = test_github.sbx2_github_server
sbx2_github = test_github.sbx2_github


def _links(response: httpx.Response) -> dict[str, str]:
    return {rel: link["url"] for rel, link in response.links.items()}


def _requests(sbx: Sandbox, suffix: str) -> list[dict[str, object]]:
    log = sbx.http.get("/__velvet/requests").json()["requests"]
    return [r for r in log if r["path"].endswith(suffix)]


def _seed_secrets(sbx: Sandbox, n: int) -> list[str]:
    names = [f"S_{i:03d}" for i in range(n)]
    for name in names:
        sbx.state.set_secret(f"repo:{REPO}", name, "v")
    return names


def test_a_listing_that_fits_one_page_has_no_link_header(sbx2_github: Sandbox) -> None:
    _seed_secrets(sbx2_github, 30)
    response = sbx2_github.http.get(f"{REPO_API}/secrets")
    assert "link" not in response.headers
    assert len(response.json()["secrets"]) == 30


def test_pages_of_a_listing_link_to_each_other_and_keep_the_total(sbx2_github: Sandbox) -> None:
    names = _seed_secrets(sbx2_github, 25)
    first = sbx2_github.http.get(f"{REPO_API}/secrets", params={"per_page": 10, "visibility": "x"})
    base = f"{sbx2_github.url}{REPO_API}/secrets?per_page=10&visibility=x"
    assert _links(first) == {"next": f"{base}&page=2", "last": f"{base}&page=3"}
    assert first.headers["link"] == (f'<{base}&page=2>; rel="next", '
                                     f'<{base}&page=3>; rel="last"')
    middle = sbx2_github.http.get(_links(first)["next"])
    assert list(_links(middle)) == ["prev", "next", "last", "first"]
    assert _links(middle)["prev"] == _links(middle)["first"] == f"{base}&page=1"
    last = sbx2_github.http.get(_links(first)["last"])
    assert list(_links(last)) == ["prev", "first"]
    seen = []
    for page in (first, middle, last):
        assert page.json()["total_count"] == 25
        seen += [s["name"] for s in page.json()["secrets"]]
    assert seen == names
    beyond = sbx2_github.http.get(f"{REPO_API}/secrets", params={"per_page": 10, "page": 9})
    assert beyond.json() == {"total_count": 25, "secrets": []}


def test_per_page_is_capped_at_100_and_nonsense_means_the_default(sbx2_github: Sandbox) -> None:
    _seed_secrets(sbx2_github, 130)
    capped = sbx2_github.http.get(f"{REPO_API}/secrets", params={"per_page": 500})
    assert len(capped.json()["secrets"]) == 100
    assert "page=2" in _links(capped)["last"]
    for nonsense in ("0", "-3", "many"):
        page = sbx2_github.http.get(f"{REPO_API}/secrets",
                                    params={"per_page": nonsense, "page": nonsense})
        assert [s["name"] for s in page.json()["secrets"]][:1] == ["S_000"]
        assert len(page.json()["secrets"]) == 30


def test_every_listing_route_pages(sbx2_github: Sandbox) -> None:
    state = sbx2_github.state
    for i in range(3):
        state.add_environment(REPO, f"env-{i}", ["alice"], branches=["main", "r1", "r2"])
        state.add_workflow(REPO, f"wf-{i}.yml", [])
        state.set_secret(f"env:{REPO}:env-0", f"E{i}", "v")
        state.set_secret("org:acme", f"O{i}", "v")
    run = state.add_run(REPO, "alice")
    for _ in range(3):
        state.add_run(REPO, "alice")
        state.approve(REPO, run, "env-0", "bob")
    for path, key, total in (
        (f"/repos/{REPO}/environments", "environments", 4),
        (f"/repos/{REPO}/environments/env-0/deployment-branch-policies", "branch_policies", 3),
        (f"/repos/{REPO}/environments/env-0/secrets", "secrets", 3),
        ("/orgs/acme/actions/secrets", "secrets", 3),
        (f"{REPO_API}/workflows", "workflows", 4),
        (f"{REPO_API}/runs", "workflow_runs", 4),
        (f"{REPO_API}/runs/{run}/approvals", None, 3),
    ):
        response = sbx2_github.http.get(path, params={"per_page": 2})
        assert response.status_code == 200, path
        body = response.json()
        rows = body if key is None else body[key]
        assert len(rows) == 2, path
        assert key is None or body["total_count"] == total, path
        assert f"page={(total + 1) // 2}" in _links(response)["last"], path
        rest = sbx2_github.http.get(_links(response)["next"]).json()
        assert len(rest if key is None else rest[key]) == min(2, total - 2), path


def test_follow_links_reads_every_page_of_the_fake(sbx2_github: Sandbox) -> None:
    names = _seed_secrets(sbx2_github, 205)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with make_client(sbx2_github.url, headers=headers) as client:
        items = follow_links(client, f"{REPO_API}/secrets?per_page=100", "secrets")
    assert [i["name"] for i in items if isinstance(i, dict)] == names
    assert len(_requests(sbx2_github, f"{REPO_API}/secrets")) == 3


def test_get_all_reads_every_page_of_run_approvals(sbx2_github: Sandbox) -> None:
    run = sbx2_github.state.add_run(REPO, "alice")
    for i in range(75):  # two and a half of GitHub's default pages of 30
        sbx2_github.state.approve(REPO, run, "production", "bob", f"review {i}")
    entries = GitHubApi(TOKEN, sbx2_github.url).get_all(
        f"{REPO_API}/runs/{run}/approvals", "approvals")
    assert [e["comment"] for e in entries] == [f"review {i}" for i in range(75)]


@pytest.fixture
def credential() -> manifest_mod.Credential:
    """HK_PLATFORM_FULL from the shipped manifest, approved in prod by alice and bob."""
    cred = manifest_mod.load(os.environ["VELVET_MANIFEST"]).credential("HK_PLATFORM_FULL")
    assert cred is not None
    return cred.model_copy(update={"approvers": {"prod": ["alice", "bob"]}})


def test_the_gate_finds_the_one_good_approval_on_a_later_page(
    sbx2_github: Sandbox, credential: manifest_mod.Credential
) -> None:
    """Forty reviews by mallory (whom GitHub lets review, the manifest does not) come first;
    bob's approval is on the second page of GitHub's default 30."""
    state = sbx2_github.state
    state.add_environment(REPO, "velvet-prod", ["alice", "bob", "mallory"])
    run = state.add_run(REPO, "github-actions[bot]", workflow="velvet-stage-2-mint.yml")
    for _ in range(40):
        state.approve(REPO, run, "velvet-prod", "mallory")
    state.approve(REPO, run, "velvet-prod", "bob", "ROT-9")
    reached = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    job = Job(job_id=new_job_id(), credential="HK_PLATFORM_FULL", vendor="heroku",
              flow_type=Flow.OPERATIONAL, env="prod", status=State.VERIFIED,
              created_at=reached, updated_at=reached, actor="alice",
              events=[Event(at=reached, actor="alice", action="verify", from_state="init",
                            to_state="verified")])
    gate = ActionsGate(None, api=GitHubApi(TOKEN, sbx2_github.url), repository=REPO,
                       run_id=str(run), run_attempt="1")
    record = gate.check(job, Action.PROCEED_MINT, credential)
    assert record is not None
    assert (record["approver"], record["comment"]) == ("bob", "ROT-9")
    assert len(_requests(sbx2_github, "/approvals")) == 2
