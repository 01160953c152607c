"""The fakes list what the vendors list, with the vendors' paging: Heroku `GET /apps` (Range),
Infisical's projects and their environments, GitHub's installation repositories (Link) and
the contents API; over real HTTP on 127.0.0.1. `velvet scan` reads every place through them."""

from __future__ import annotations

import base64

import httpx
import pytest

from velvet_runner.client import follow_links, follow_ranges, make_client
from velvet_sandbox.heroku import HerokuState

from . import test_github, test_infisical
from .support import Fake
from .test_github import REPO
from .test_github import Sandbox as GitHub
from .test_infisical import PROJECT
from .test_infisical import Sandbox as Infisical

V3 = "application/vnd.heroku+json; version=3"
sbx2_github_server = test_github.sbx2_github_server
sbx2_github = test_github.sbx2_github
sbx2_infisical_server = test_infisical.sbx2_infisical_server
sbx2_infisical = test_infisical.sbx2_infisical


# --- Heroku GET /apps ---------------------------------------------------------------------------


@pytest.fixture
def apps(sbx_heroku: Fake) -> httpx.Client:
    """Five apps the bot may use, one it may not (collaborators), and the bot's token."""
    state: HerokuState = sbx_heroku.state
    for name in ("raxx-e", "raxx-a", "raxx-d", "raxx-b", "raxx-c"):
        state.add_app(name, {"K": name})
    state.add_app("someone-elses", collaborators=["other@raxx.app"])
    _, token = state.add_authorization("bot@raxx.app", ["read-protected"], "bot")
    return sbx_heroku.client(Authorization=f"Bearer {token}", Accept=V3)


def test_app_list_pages_by_range_and_hides_apps_the_user_may_not_use(
        apps: httpx.Client) -> None:
    first = apps.get("/apps", headers={"Range": "name ..; max=2"})
    assert first.status_code == 206
    assert [a["name"] for a in first.json()] == ["raxx-a", "raxx-b"]
    assert first.headers["Accept-Ranges"] == "id, name"
    assert first.headers["Content-Range"] == "name raxx-a..raxx-b"
    assert first.headers["Next-Range"] == "name ]raxx-b..; max=2"
    second = apps.get("/apps", headers={"Range": first.headers["Next-Range"]})
    assert [a["name"] for a in second.json()] == ["raxx-c", "raxx-d"]
    last = apps.get("/apps", headers={"Range": second.headers["Next-Range"]})
    assert last.status_code == 200
    assert "Next-Range" not in last.headers
    assert [a["name"] for a in last.json()] == ["raxx-e"]
    whole = apps.get("/apps")  # no Range: ordered by id, 200 a page
    assert whole.status_code == 200
    assert sorted(a["name"] for a in whole.json()) == [f"raxx-{c}" for c in "abcde"]
    assert [a["id"] for a in whole.json()] == sorted(a["id"] for a in whole.json())
    assert {"id", "name", "owner", "web_url", "created_at"} <= set(whole.json()[0])


def test_app_list_descending_and_bad_ranges(apps: httpx.Client) -> None:
    desc = apps.get("/apps", headers={"Range": "name ..; max=3, order=desc"})
    assert [a["name"] for a in desc.json()] == ["raxx-e", "raxx-d", "raxx-c"]
    assert desc.headers["Next-Range"] == "name ]raxx-c..; max=3; order=desc"
    for bad in ("created_at ..", "name ..; max=1001", "name ..; max=0", "nonsense"):
        refused = apps.get("/apps", headers={"Range": bad})
        assert refused.status_code == 416, bad
        assert refused.json()["id"] == "requested_range_not_satisfiable"
        assert refused.headers["Accept-Ranges"] == "id, name"


def test_app_list_needs_a_token_and_the_version_header(sbx_heroku: Fake,
                                                       apps: httpx.Client) -> None:
    assert sbx_heroku.client(Accept=V3).get("/apps").status_code == 401
    assert apps.get("/apps", headers={"Accept": "application/json"}).status_code == 406


def test_follow_ranges_reads_every_page(sbx_heroku: Fake, apps: httpx.Client) -> None:
    names = [a["name"] for a in follow_ranges(apps, "/apps", "apps", "name ..; max=2")
             if isinstance(a, dict)]
    assert names == [f"raxx-{c}" for c in "abcde"]
    ranges = [r["path"] for r in sbx_heroku.requests() if r["path"] == "/apps"]
    assert len(ranges) == 3


# --- Infisical projects ---------------------------------------------------------------------------


def test_projects_are_the_identitys_with_their_environments(sbx2_infisical: Infisical) -> None:
    state = sbx2_infisical.state
    state.set_secret(PROJECT, "qa", "/", "K", "v")  # an environment beyond the defaults
    state.set_secret("someone-elses", "prod", "/", "K", "v")  # a project it is not in
    headers = sbx2_infisical.authed()
    body = sbx2_infisical.http.get("/api/v1/projects", headers=headers).json()
    assert [p["id"] for p in body["projects"]] == [PROJECT]
    project = body["projects"][0]
    assert [e["slug"] for e in project["environments"]] == ["dev", "staging", "prod", "qa"]
    assert project["environments"][2]["name"] == "Production"
    assert sbx2_infisical.http.get("/api/v1/projects").status_code == 401


def test_secrets_of_an_environment_list_recursively_without_paging(
        sbx2_infisical: Infisical) -> None:
    state = sbx2_infisical.state
    for i in range(130):  # more than any page size Infisical documents elsewhere
        state.set_secret(PROJECT, "prod", f"/team-{i % 3}", f"K_{i:03d}", f"v{i}")
    body = sbx2_infisical.http.get("/api/v4/secrets", headers=sbx2_infisical.authed(), params={
        "projectId": PROJECT, "environment": "prod", "secretPath": "/", "recursive": "true",
        "viewSecretValue": "true"}).json()
    assert len(body["secrets"]) == 130
    assert {s["secretPath"] for s in body["secrets"]} == {"/team-0", "/team-1", "/team-2"}


# --- GitHub installation repositories and contents ---------------------------------------------


def test_installation_repositories_page_with_link_headers(sbx2_github: GitHub) -> None:
    for i in range(5):
        sbx2_github.state.add_repo(f"acme/extra-{i}")
    installation = sbx2_github.state.add_installation("acme", "Iv1.listings")  # every repo
    sbx2_github.state.add_token("ghs_app", "velvet-app[bot]", installation=installation)
    app = {"Authorization": "Bearer ghs_app"}
    first = sbx2_github.http.get("/installation/repositories", params={"per_page": 2},
                                 headers=app)
    body = first.json()
    assert body["total_count"] == 6
    assert body["repository_selection"] == "all"
    assert [r["full_name"] for r in body["repositories"]] == [REPO, "acme/extra-0"]
    assert first.links["next"]["url"].endswith("per_page=2&page=2")
    with make_client(sbx2_github.url, headers=app) as client:
        every = follow_links(client, "/installation/repositories?per_page=2", "repos")
    assert len(every) == 6


def test_an_installation_for_selected_repositories_sees_only_them(sbx2_github: GitHub) -> None:
    sbx2_github.state.add_repo("acme/hidden")
    installation = sbx2_github.state.add_installation(
        "acme", "Iv1.listings", repositories=[REPO],
        permissions={"contents": "read", "metadata": "read"})
    sbx2_github.state.add_token("ghs_selected", "velvet-app[bot]", installation=installation)
    body = sbx2_github.http.get("/installation/repositories",
                                headers={"Authorization": "Bearer ghs_selected"}).json()
    assert body["repository_selection"] == "selected"
    assert [r["full_name"] for r in body["repositories"]] == [REPO]
    hidden = sbx2_github.http.get("/repos/acme/hidden/contents/README.md",
                                  headers={"Authorization": "Bearer ghs_selected"})
    assert hidden.status_code == 404


def test_contents_api_reads_files_and_directories(sbx2_github: GitHub) -> None:
    text = "on: push\njobs:\n  a:\n    env:\n      K: ${{ secrets.HEROKU_API_KEY }}\n" * 20
    sbx2_github.state.add_file(REPO, ".github/workflows/deploy.yml", text)
    sbx2_github.state.add_file(REPO, ".github/workflows/lint.yaml", "on: push\n")
    sbx2_github.state.add_file(REPO, ".github/dependabot.yml", "version: 2\n")
    listing = sbx2_github.http.get(f"/repos/{REPO}/contents/.github").json()
    assert [(e["type"], e["path"]) for e in listing] == [
        ("file", ".github/dependabot.yml"), ("dir", ".github/workflows")]
    workflows = sbx2_github.http.get(f"/repos/{REPO}/contents/.github/workflows").json()
    assert [e["name"] for e in workflows] == ["deploy.yml", "lint.yaml"]
    file = sbx2_github.http.get(f"/repos/{REPO}/contents/.github/workflows/deploy.yml",
                                params={"ref": "main"}).json()
    assert file["type"] == "file"
    assert file["encoding"] == "base64"
    assert all(len(line) <= 60 for line in file["content"].splitlines())  # wrapped, as GitHub
    assert base64.b64decode(file["content"]).decode() == text
    assert file["sha"] == workflows[0]["sha"]
    assert file["size"] == len(text)
    missing = sbx2_github.http.get(f"/repos/{REPO}/contents/nope.yml")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"
    wrong_ref = sbx2_github.http.get(f"/repos/{REPO}/contents/.github",
                                     params={"ref": "no-such-branch"})
    assert wrong_ref.status_code == 404
    assert wrong_ref.json()["message"] == "No commit found for the ref no-such-branch"
