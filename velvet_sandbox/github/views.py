"""Records rendered as GitHub JSON, and what every route handler shares (`Endpoint`, `repo_of`,
`listing`)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import quote

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import (
    PER_PAGE_DEFAULT,
    PER_PAGE_MAX,
    Json,
    _iso,
    _not_found,
)
from velvet_sandbox.github.records import (
    Approval,
    BranchPolicy,
    Environment,
    Installation,
    Issue,
    KeyPair,
    Repo,
    Ruleset,
    Run,
    Workflow,
    _Token,
)
from velvet_sandbox.github.state import State

# Repository URL fields: (name, template suffix) -> "<name>_url": ".../<name with /><suffix>".
_REPO_URLS = (
    ("archive", "/{archive_format}{/ref}"), ("assignees", "{/user}"), ("blobs", "{/sha}"),
    ("branches", "{/branch}"), ("collaborators", "{/collaborator}"), ("comments", "{/number}"),
    ("commits", "{/sha}"), ("compare", "/{base}...{head}"), ("contents", "/{+path}"),
    ("contributors", ""), ("deployments", ""), ("downloads", ""), ("events", ""),
    ("forks", ""), ("git_commits", "{/sha}"), ("git_refs", "{/sha}"), ("git_tags", "{/sha}"),
    ("hooks", ""), ("issue_comment", "{/number}"), ("issue_events", "{/number}"),
    ("keys", "{/key_id}"), ("labels", "{/name}"), ("languages", ""), ("merges", ""),
    ("milestones", "{/number}"), ("notifications", "{?since,all,participating}"),
    ("pulls", "{/number}"), ("releases", "{/id}"), ("stargazers", ""),
    ("statuses", "/{sha}"), ("subscribers", ""), ("subscription", ""), ("tags", ""),
    ("teams", ""), ("trees", "{/sha}"),
)


class _Views:
    """Renders records as GitHub JSON, with URLs on the fake's own origin (PyGithub needs
    `url` fields on the host and port it was given)."""

    def __init__(self, state: State, base: str) -> None:
        self.state = state
        self.base = base.rstrip("/")

    def user(self, login: str) -> Json:
        kind = "Organization" if login in self.state._orgs else "User"
        if kind == "Organization":
            uid = self.state._orgs[login].id
        else:
            uid = self.state._peek_user_id(login)
        url = f"{self.base}/{'orgs' if kind == 'Organization' else 'users'}/{login}"
        users = f"{self.base}/users/{login}"
        return {  # GitHub's simple-user, every required field
            "login": login,
            "id": uid,
            "node_id": f"U_{uid}",
            "type": kind,
            "site_admin": False,
            "avatar_url": f"{self.base}/avatars/u/{uid}",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self.base}/{login}",
            "followers_url": f"{users}/followers",
            "following_url": f"{users}/following{{/other_user}}",
            "gists_url": f"{users}/gists{{/gist_id}}",
            "starred_url": f"{users}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{users}/subscriptions",
            "organizations_url": f"{users}/orgs",
            "repos_url": f"{users}/repos",
            "events_url": f"{users}/events{{/privacy}}",
            "received_events_url": f"{users}/received_events",
            "user_view_type": "public",
        }

    def public_user(self, login: str) -> Json:
        """GET /users/{login}: the simple user and the public profile (empty in the fake)."""
        return {**self.user(login), "name": None, "company": None, "blog": "",
                "location": None, "email": None, "hireable": None, "bio": None,
                "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
                "created_at": _iso(0), "updated_at": _iso(0)}

    def repo(self, repo: Repo) -> Json:
        url = f"{self.base}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "owner": self.user(repo.owner),
            "html_url": f"{self.base}/{repo.full_name}",
            "url": url,
            "description": None,
            "fork": False,
            "archived": False,
            "disabled": False,
            "has_issues": True,
            "default_branch": repo.default_branch,
            "created_at": _iso(repo.created_at),
            "updated_at": _iso(repo.created_at),
            "pushed_at": _iso(repo.created_at),
            "permissions": {
                "admin": True,
                "maintain": True,
                "push": True,
                "triage": True,
                "pull": True,
            },
            "issues_url": f"{url}/issues{{/number}}",
            # The rest of GitHub's repository object (every field it requires).
            **{f"{name}_url": f"{url}/{name.replace('_', '/')}{suffix}"
               for name, suffix in _REPO_URLS},
            "clone_url": f"{self.base}/{repo.full_name}.git",
            "git_url": f"git://127.0.0.1/{repo.full_name}.git",
            "ssh_url": f"git@127.0.0.1:{repo.full_name}.git",
            "svn_url": f"{self.base}/{repo.full_name}",
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "license": None,
            "forks": 0, "forks_count": 0, "open_issues": len(repo.issues),
            "open_issues_count": len(repo.issues), "size": 0, "stargazers_count": 0,
            "watchers": 0, "watchers_count": 0,
            "has_downloads": True, "has_projects": False, "has_wiki": False,
            "has_pages": False,
        }

    def public_key(self, key: KeyPair) -> Json:
        return {"key_id": key.key_id, "key": key.public_b64}

    def environment(self, repo: Repo, env: Environment) -> Json:
        rules: list[Json] = []
        if env.reviewers is not None:
            rules.append(
                {
                    "id": env.id * 10 + 1,
                    "node_id": f"GA_{env.id}_1",
                    "type": "required_reviewers",
                    "prevent_self_review": env.prevent_self_review,
                    "reviewers": [
                        {"type": "User", "reviewer": self.user(login)} for login in env.reviewers
                    ],
                }
            )
        if env.wait_timer:
            rules.append(
                {
                    "id": env.id * 10 + 2,
                    "node_id": f"GA_{env.id}_2",
                    "type": "wait_timer",
                    "wait_timer": env.wait_timer,
                }
            )
        policy: Json | None = None
        if env.policies is not None or env.protected_branches:
            policy = {
                "protected_branches": env.protected_branches,
                "custom_branch_policies": env.policies is not None,
            }
            rules.append(
                {"id": env.id * 10 + 3, "node_id": f"GA_{env.id}_3", "type": "branch_policy"}
            )
        return {
            "id": env.id,
            "node_id": f"EN_{env.id}",
            "name": env.name,
            "url": f"{self.base}/repos/{repo.full_name}/environments/{quote(env.name, safe='')}",
            "html_url": f"{self.base}/{repo.full_name}/deployments/activity_log"
            f"?environments_filter={quote(env.name, safe='')}",
            "created_at": _iso(env.created_at),
            "updated_at": _iso(env.created_at),
            "can_admins_bypass": env.can_admins_bypass,
            "protection_rules": rules,
            "deployment_branch_policy": policy,
        }

    def workflow(self, repo: Repo, wf: Workflow) -> Json:
        return {
            "id": wf.id,
            "node_id": f"W_{wf.id}",
            "name": wf.name,
            "path": f".github/workflows/{wf.file}",
            "state": "active",
            "created_at": _iso(wf.created_at),
            "updated_at": _iso(wf.created_at),
            "url": f"{self.base}/repos/{repo.full_name}/actions/workflows/{wf.id}",
            "html_url": f"{self.base}/{repo.full_name}/blob/{repo.default_branch}"
            f"/.github/workflows/{wf.file}",
            "badge_url": f"{self.base}/{repo.full_name}/workflows/{wf.file}/badge.svg",
        }

    def run(self, repo: Repo, run: Run) -> Json:
        url = f"{self.base}/repos/{repo.full_name}/actions/runs/{run.id}"
        wf = repo.workflows.get(run.workflow or "")
        return {
            "id": run.id,
            "name": wf.name if wf else run.workflow,
            "node_id": f"WFR_{run.id}",
            "head_branch": run.head_branch,
            "head_sha": f"{run.id:040x}",
            "path": f".github/workflows/{run.workflow}" if run.workflow else "",
            "display_title": wf.name if wf else "",
            "run_number": run.id,
            "run_attempt": run.run_attempt,
            "event": run.event,
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": wf.id if wf else None,
            "url": url,
            "html_url": f"{self.base}/{repo.full_name}/actions/runs/{run.id}",
            "jobs_url": f"{url}/jobs",
            "logs_url": f"{url}/logs",
            "cancel_url": f"{url}/cancel",
            "rerun_url": f"{url}/rerun",
            "workflow_url": (
                f"{self.base}/repos/{repo.full_name}/actions/workflows/{wf.id}" if wf else None
            ),
            "pull_requests": [],
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.created_at),
            "run_started_at": _iso(run.created_at),
            "actor": self.user(run.actor),
            "triggering_actor": self.user(run.triggering_actor),
            "repository": {
                "id": repo.id,
                "name": repo.name,
                "full_name": repo.full_name,
                "url": f"{self.base}/repos/{repo.full_name}",
            },
        }

    def approval(self, repo: Repo, approval: Approval) -> Json:
        env = repo.environments[approval.environment]
        env_json = self.environment(repo, env)
        keys = ("id", "node_id", "name", "url", "html_url", "created_at", "updated_at")
        return {
            "environments": [{key: env_json[key] for key in keys}],
            "state": approval.state,
            "user": self.user(approval.login),
            "comment": approval.comment,
        }

    def issue(self, repo: Repo, issue: Issue) -> Json:
        url = f"{self.base}/repos/{repo.full_name}/issues/{issue.number}"
        return {
            "id": issue.id,
            "node_id": f"I_{issue.id}",
            "number": issue.number,
            "title": issue.title,
            "body": issue.body,
            "state": "open",
            "locked": False,
            "labels": [{"name": label} for label in issue.labels],
            "assignees": [],
            "comments": 0,
            "user": self.user(issue.user),
            "url": url,
            "html_url": f"{self.base}/{repo.full_name}/issues/{issue.number}",
            "repository_url": f"{self.base}/repos/{repo.full_name}",
            "comments_url": f"{url}/comments",
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.created_at),
        }


    def branch_policy(self, policy: BranchPolicy) -> Json:
        return {"id": policy.id, "node_id": f"RE_{policy.id}", "name": policy.name,
                "type": policy.type}

    def ruleset(self, repo: Repo, ruleset: Ruleset) -> Json:
        url = f"{self.base}/repos/{repo.full_name}/rulesets/{ruleset.id}"
        return {
            "id": ruleset.id,
            "name": ruleset.name,
            "target": ruleset.target,
            "source_type": "Repository",
            "source": repo.full_name,
            "enforcement": ruleset.enforcement,
            "bypass_actors": ruleset.bypass_actors,
            "current_user_can_bypass": "never",
            "node_id": f"RRS_{ruleset.id}",
            "_links": {"self": {"href": url},
                       "html": {"href": f"{self.base}/{repo.full_name}/rules/{ruleset.id}"}},
            "conditions": ruleset.conditions,
            "rules": ruleset.rules,
            "created_at": _iso(ruleset.created_at),
            "updated_at": _iso(ruleset.updated_at),
        }

    def installation(self, installation: Installation) -> Json:
        url = f"{self.base}/app/installations/{installation.id}"
        kind = "Organization" if installation.account in self.state._orgs else "User"
        return {
            "id": installation.id,
            "account": self.user(installation.account),
            "repository_selection": installation.repository_selection,
            "access_tokens_url": f"{url}/access_tokens",
            "repositories_url": f"{self.base}/installation/repositories",
            "html_url": f"{self.base}/settings/installations/{installation.id}",
            "app_id": installation.app_id,
            "client_id": installation.client_id,
            "app_slug": installation.app_slug,
            "target_id": self.state._peek_user_id(installation.account)
            if kind == "User" else self.state._orgs[installation.account].id,
            "target_type": kind,
            "permissions": dict(installation.permissions),
            "events": [],
            "created_at": _iso(installation.created_at),
            "updated_at": _iso(installation.created_at),
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None,
            "suspended_at": None,
        }


Endpoint = Callable[[Request, _Token, _Views], Awaitable[Response]]
T = TypeVar("T")


def _whole(request: Request, name: str, default: int) -> int:
    """A positive integer query parameter; anything else means the default, as on GitHub."""
    raw = request.query_params.get(name, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


def _links(url: URL, page: int, last: int) -> str:
    """GitHub's `Link` header: prev, next, last, first, each only where it leads somewhere."""
    rels: list[tuple[str, int]] = []
    if page > 1:
        rels.append(("prev", page - 1))
    if page < last:
        rels += [("next", page + 1), ("last", last)]
    if page > 1:
        rels.append(("first", 1))
    return ", ".join(f'<{url.include_query_params(page=n)}>; rel="{rel}"' for rel, n in rels)


def listing(
    request: Request, items: Sequence[T], render: Callable[[T], Json], key: str | None = None,
    extra: Json | None = None,
) -> Response:
    """One page of a listing, as GitHub pages every listing ("Using pagination in the REST API").

    `per_page` (default 30, at most 100) and `page` (from 1) pick the slice; the `Link` header
    names the other pages as absolute URLs on the request's host with its other parameters
    kept, and is left out when everything fits on one page. With `key` the body is
    `{"total_count": <all pages>, key: [...]}` (and `extra`'s fields), else a bare array.
    """
    per_page = min(_whole(request, "per_page", PER_PAGE_DEFAULT), PER_PAGE_MAX)
    page = _whole(request, "page", 1)
    last = max(1, math.ceil(len(items) / per_page))
    start = (page - 1) * per_page
    rows = [render(item) for item in items[start : start + per_page]]
    response = json_response(rows if key is None else
                             {"total_count": len(items), key: rows, **(extra or {})})
    if last > 1:
        response.headers["link"] = _links(request.url, page, last)
    return response


def repo_of(request: Request, token: _Token, views: _Views) -> Repo:
    """The repository the path names, as far as `token` may see it (else 404)."""
    params = request.path_params
    return views.state._repo(token, params["owner"], params["repo"])


def env_of(repo: Repo, name: str) -> Environment:
    """The repository's environment `name` (else 404)."""
    env = repo.environments.get(name)
    if env is None:
        raise _not_found()
    return env
