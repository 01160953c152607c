"""Deployment environments and their branch policies: read, created, reconfigured and deleted
as GitHub's REST API does it (docs.github.com/rest/deployments/environments and
.../branch-policies).

`PUT .../environments/{name}` takes `wait_timer` (0-43,200 minutes), `prevent_self_review`,
`reviewers` (at most 6, `{"type": "User", "id"}`), `deployment_branch_policy` (null, or exactly
one of `protected_branches` and `custom_branch_policies` true) and `can_admins_bypass` (on
github.com; undocumented in the OpenAPI description, refused by older GHES as "not a permitted
key"); any other key is 422 "... is not a permitted key." Omitted settings keep their values.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import (
    GitHubError,
    Json,
    _body,
    _invalid,
    _no_content,
    _not_found,
)
from velvet_sandbox.github.records import BranchPolicy, Environment, Repo, _Token
from velvet_sandbox.github.views import _Views, env_of, listing, repo_of

MAX_REVIEWERS = 6
MAX_WAIT_MINUTES = 43_200
ENV_KEYS = ("wait_timer", "prevent_self_review", "reviewers", "deployment_branch_policy",
            "can_admins_bypass")


async def list_environments(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        envs = [repo.environments[n] for n in sorted(repo.environments)]
        return listing(request, envs, lambda e: views.environment(repo, e), "environments")


async def one_environment(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "PUT" else {}
    with views.state._lock:
        repo = repo_of(request, token, views)
        name = request.path_params["env"]
        if request.method == "GET":
            return json_response(views.environment(repo, env_of(repo, name)))
        if request.method == "DELETE":
            if repo.environments.pop(name, None) is None:
                raise _not_found()
            return _no_content()
        settings = _settings(views, body)
        env = repo.environments.get(name)
        if env is None:
            if not name or len(name) > 255 or any(c in name for c in "'\"`,;/\\"):
                raise GitHubError(422, "Invalid request.\n\nEnvironment name is invalid.")
            env = Environment.model_validate({"name": name}, context=views.state._seeding())
            repo.environments[name] = env
        if settings.get("policies") == [] and env.policies is not None:
            settings["policies"] = env.policies  # still custom: its patterns stay
        for key, value in settings.items():
            setattr(env, key, value)
        for login in env.reviewers or []:
            views.state._user_id(login)
        return json_response(views.environment(repo, env))


def _settings(views: _Views, body: Json) -> Json:
    """The environment settings a PUT body asks for (only the keys it names), checked as
    GitHub checks them."""
    unknown = [key for key in body if key not in ENV_KEYS]
    if unknown:
        raise _invalid(f'"{unknown[0]}" is not a permitted key.')
    out: Json = {}
    if "wait_timer" in body:
        wait = body["wait_timer"]
        if isinstance(wait, bool) or not isinstance(wait, int):
            raise _invalid(f"For 'properties/wait_timer', {json.dumps(wait)} is not an integer.")
        if not 0 <= wait <= MAX_WAIT_MINUTES:
            raise _invalid(f"wait_timer must be between 0 and {MAX_WAIT_MINUTES} minutes.")
        out["wait_timer"] = wait
    for key in ("prevent_self_review", "can_admins_bypass"):
        if key in body:
            if not isinstance(body[key], bool):
                raise _invalid(f"For 'properties/{key}', {json.dumps(body[key])} is not a "
                               "boolean.")
            out[key] = body[key]
    if "reviewers" in body:
        out["reviewers"] = _reviewers(views, body["reviewers"])
    if "deployment_branch_policy" in body:
        out.update(_branch_policy(body["deployment_branch_policy"]))
    return out


def _reviewers(views: _Views, rows: object) -> list[str] | None:
    if rows is None:
        return None
    if not isinstance(rows, list):
        raise _invalid("For 'properties/reviewers', is not an array.")
    if len(rows) > MAX_REVIEWERS:
        raise _invalid(f"reviewers: at most {MAX_REVIEWERS} users or teams can be required "
                       "reviewers.")
    by_id = {uid: login for login, uid in views.state._users.items()}
    logins: list[str] = []
    for row in rows:
        if not isinstance(row, dict) or row.get("type") not in ("User", "Team") or \
                isinstance(row.get("id"), bool) or not isinstance(row.get("id"), int):
            raise _invalid("For 'items', reviewers must be objects with a type (User or Team) "
                           "and an integer id.")
        login = by_id.get(row["id"]) if row["type"] == "User" else None
        if login is None:  # the fake knows no teams
            raise _invalid(f"Reviewer {row['type']} with id {row['id']} was not found.")
        if login not in logins:
            logins.append(login)
    return logins or None  # no reviewers: no required-reviewers rule


def _branch_policy(policy: object) -> Json:
    if policy is None:
        return {"policies": None, "protected_branches": False}
    if not isinstance(policy, dict) or not all(
            isinstance(policy.get(k), bool) for k in ("protected_branches",
                                                      "custom_branch_policies")):
        raise _invalid("For 'properties/deployment_branch_policy', protected_branches and "
                       "custom_branch_policies are required booleans.")
    if policy["protected_branches"] == policy["custom_branch_policies"]:
        raise GitHubError(422, "Invalid request.\n\nprotected_branches and "
                          "custom_branch_policies cannot have the same value.")
    return {"protected_branches": policy["protected_branches"],
            "policies": [] if policy["custom_branch_policies"] else None}


def _custom(repo: Repo, request: Request) -> Environment:
    """The environment the path names, which must use custom branch policies (else 404)."""
    env = env_of(repo, request.path_params["env"])
    if env.policies is None:
        raise _not_found()
    return env


async def branch_policies(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "POST" else {}
    with views.state._lock:
        repo = repo_of(request, token, views)
        env = _custom(repo, request)
        policies = env.policies or []
        if request.method == "GET":
            return listing(request, policies, views.branch_policy, "branch_policies")
        name, kind = body.get("name"), body.get("type", "branch")
        if not isinstance(name, str) or not name:
            raise _invalid('"name" wasn\'t supplied.')
        if kind not in ("branch", "tag"):
            raise _invalid(f"For 'properties/type', {json.dumps(kind)} is not one of "
                           '["branch", "tag"].')
        same = next((p for p in policies if p.name == name and p.type == kind), None)
        if same is not None:  # GitHub answers 303 See Other, pointing at the one there
            return RedirectResponse(f"{request.url}/{same.id}", status_code=303)
        policy = BranchPolicy.model_validate({"name": name, "type": kind},
                                             context=views.state._seeding())
        env.policies = [*policies, policy]
        return json_response(views.branch_policy(policy))


async def one_branch_policy(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        env = _custom(repo, request)
        raw = request.path_params["policy_id"]
        found = next((p for p in env.policies or [] if str(p.id) == raw), None)
        if found is None:
            raise _not_found()
        if request.method == "GET":
            return json_response(views.branch_policy(found))
        env.policies = [p for p in env.policies or [] if p is not found]
        return _no_content()
