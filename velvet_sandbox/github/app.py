"""The GitHub fake as a Starlette app: the route table, the request gate around every handler,
the `x-ratelimit-*` headers, and the user, rate-limit, repo, org and environment routes.

Paths served (vendor-apis.md section 5, github-actions.md section 2), each with the permission
a token needs (`table` in create_app):

    GET    /user, /rate_limit, /users/{username}
    GET    /user/installations, /user/installations/{id}/repositories,
           /installation/repositories, /orgs/{org}/installations
    PUT    /user/installations/{id}/repositories/{repository_id}
    GET    /repos/{owner}/{repo}, .../collaborators/{username}/permission
    GET | PUT | DELETE  .../actions/secrets/{name} (and the list, the public key)
    GET | POST | PATCH | DELETE  .../actions/variables[/{name}]
    GET    .../environments
    GET | PUT | DELETE  .../environments/{env}
    GET | POST | DELETE .../environments/{env}/deployment-branch-policies[/{id}]
           .../environments/{env}/secrets/..., .../environments/{env}/variables/...
    GET    /orgs/{org}, /orgs/{org}/actions/secrets/... (as the repository's)
    GET    .../actions/workflows[/{id or file}], .../actions/runs[/{run_id}[/approvals]]
    POST   .../actions/workflows/{id or file}/dispatches
    GET | POST .../actions/runs/{run_id}/pending_deployments (an attached ActionsPlane)
    POST   .../issues; GET .../issues/{number}
    GET    .../branches/{branch}[/protection], .../compare/{base}...{head}
    GET | PUT .../contents/{path}; POST .../git/trees, .../git/commits, .../git/refs
    GET    .../rules/branches/{branch}
    GET | POST .../rulesets; GET | PUT | DELETE .../rulesets/{id}

environments.py, variables.py, rules.py, git.py and people.py hold the newer routes. Who may
call what (`authorize`): an integration's token (a workflow's GITHUB_TOKEN, an App
installation's) needs the route's permission, else 403 "Resource not accessible by
integration"; a person's token needs the admin role for administration, else 403 "Must have
admin rights to Repository." (a person's write access is not modelled: it may do the rest).

Every listing pages as GitHub's do: `per_page`, `page` and a `Link` header (views.listing).
Besides the shared control API, `/__velvet/limits` shows and sets the primary rate limit too
(`"primary"`, `PrimaryLimit`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from velvet_sandbox.control import (
    CONTROL_PREFIX,
    build_app,
    json_response,
)
from velvet_sandbox.github import (
    environments,
    git,
    issues,
    people,
    rules,
    runs,
    secrets,
    variables,
)
from velvet_sandbox.github.common import MSG_INTEGRATION, GitHubError, Json, error
from velvet_sandbox.github.records import _Token
from velvet_sandbox.github.state import State
from velvet_sandbox.github.views import Endpoint, _Views, repo_of
from velvet_sandbox.ratelimit import github_limits, github_reject


class _RateLimitHeaders:
    """Adds the `x-ratelimit-*` headers to every vendor response, faults and 404s included."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.state._rate_headers().items():
                    if name not in headers:
                        headers[name] = value
                headers.setdefault("x-github-api-version-selected", "2022-11-28")
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def get_user(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        return json_response(views.user(token.login))


async def get_rate_limit(request: Request, token: _Token, views: _Views) -> Response:
    primary = views.state.primary_limit()
    core = {k: primary[k] for k in ("limit", "remaining", "used", "reset")}
    return json_response({"resources": {"core": core}, "rate": core})


async def get_repo(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        return json_response(views.repo(repo_of(request, token, views)))


async def get_org(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        org = views.state._org(request.path_params["org"])
        return json_response(
            {
                "login": org.name,
                "id": org.id,
                "node_id": f"O_{org.id}",
                "url": f"{views.base}/orgs/{org.name}",
                "html_url": f"{views.base}/{org.name}",
                "type": "Organization",
            }
        )


class PrimaryLimit:
    """GitHub's primary limit at `/__velvet/limits` (the limiter's `part`): `"primary"` in what
    GET shows; `"primary": {"limit"?, "remaining"?, "status"?}` in a POST starts a new window
    (`State.set_rate_limit`), as `"reset": true` does."""

    key = "primary"

    def __init__(self, state: State) -> None:
        self.state = state

    def shown(self) -> Json:
        return self.state.primary_limit()

    def configure(self, data: Json) -> None:
        if not isinstance(data, dict):
            raise ValueError("primary must be a JSON object")
        unknown = set(data) - {"limit", "remaining", "status"}
        if unknown:
            raise ValueError(f"unknown primary fields: {sorted(unknown)}")
        self.state.set_rate_limit(**data)

    def restart(self) -> None:
        current = self.state.primary_limit()
        self.state.set_rate_limit(current["limit"], status=current["status"])


# What a call needs of its token: GitHub's permission name and level for an integration's
# token (a workflow's GITHUB_TOKEN, an App installation's), PERSON for a person's token only,
# None for nothing. ADMIN is administration write: a person's token needs the admin role.
Need = tuple[str, str] | None
Needs = dict[str, Need]
PERSON: Need = ("person", "")
META: Need = ("metadata", "read")
ADMIN: Need = ("administration", "write")
_LEVELS = {"read": 1, "write": 2}


def read(permission: str) -> Needs:
    return {"GET": (permission, "read")}


def rw(permission: str) -> Needs:
    return {"GET": (permission, "read"), "PUT": (permission, "write"),
            "POST": (permission, "write"), "PATCH": (permission, "write"),
            "DELETE": (permission, "write")}


def admin(needs: Needs) -> Needs:
    """`needs` for reading; administration for PUT, POST and DELETE."""
    return {**needs, "PUT": ADMIN, "POST": ADMIN, "DELETE": ADMIN}


def authorize(state: State, token: _Token, need: Need, request: Request) -> None:
    """GitHub's permission check, after authentication: an integration's token needs the
    permission (else 403 "Resource not accessible by integration"); a person's token needs the
    admin role for administration (else 403 "Must have admin rights to Repository.")."""
    if need is None:
        return
    permission, level = need
    integration = token.permissions is not None
    if permission == "person":
        if integration:
            raise GitHubError(403, MSG_INTEGRATION)
        return
    if integration:
        have = (token.permissions or {}).get(permission)
        if permission != "metadata" and _LEVELS.get(have or "", 0) < _LEVELS[level]:
            raise GitHubError(403, MSG_INTEGRATION)
        return
    params = request.path_params
    if permission == "administration" and "owner" in params and "repo" in params:
        with state._lock:
            repo = state._repo(token, params["owner"], params["repo"])
            if state.role(repo, token.login) != "admin":
                raise GitHubError(403, "Must have admin rights to Repository.")


def create_app(state: State) -> Starlette:
    """The GitHub fake as a Starlette app with the shared `/__velvet/` control API."""

    def endpoint(handler: Endpoint, needs: Needs) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                token = state._gate(request.headers)
                views = _Views(state, str(request.base_url))
                authorize(state, token, needs.get(request.method), request)
                return await handler(request, token, views)
            except GitHubError as exc:
                if exc.plain:
                    return PlainTextResponse(exc.message, status_code=403)
                return error(exc.status, exc.message, exc.errors, docs=exc.docs)

        return wrapper

    r = "/repos/{owner}/{repo}"
    env = f"{r}/environments/{{env}}"
    org = "/orgs/{org}"
    wf = f"{r}/actions/workflows/{{workflow}}"
    run = f"{r}/actions/runs/{{run_id}}"
    inst = "/user/installations/{installation_id}"
    # path, handler, {method: the permission a token needs}
    table: list[tuple[str, Endpoint, Needs]] = [
        ("/user", get_user, {"GET": PERSON}),
        ("/rate_limit", get_rate_limit, {"GET": None}),
        ("/users/{username}", people.get_user, {"GET": None}),
        ("/user/installations", people.user_installations, {"GET": PERSON}),
        (f"{inst}/repositories", people.user_installation_repositories, {"GET": PERSON}),
        (f"{inst}/repositories/{{repository_id}}", people.add_installation_repository,
         {"PUT": PERSON}),
        ("/installation/repositories", people.installation_repositories, {"GET": None}),
        (r, get_repo, {"GET": META}),
        (f"{r}/collaborators/{{username}}/permission", people.collaborator_permission,
         {"GET": META}),
        (f"{r}/actions/secrets/public-key", secrets.get_public_key, read("secrets")),
        (f"{r}/actions/secrets", secrets.list_secrets, read("secrets")),
        (f"{r}/actions/secrets/{{name}}", secrets.one_secret, rw("secrets")),
        (f"{r}/actions/variables", variables.variables, rw("variables")),
        (f"{r}/actions/variables/{{name}}", variables.one_variable, rw("variables")),
        (f"{r}/environments", environments.list_environments, read("actions")),
        (env, environments.one_environment, admin(read("actions"))),
        (f"{env}/deployment-branch-policies", environments.branch_policies,
         admin(read("actions"))),
        (f"{env}/deployment-branch-policies/{{policy_id}}", environments.one_branch_policy,
         admin(read("actions"))),
        (f"{env}/secrets/public-key", secrets.get_public_key, read("environments")),
        (f"{env}/secrets", secrets.list_secrets, read("environments")),
        (f"{env}/secrets/{{name}}", secrets.one_secret, rw("environments")),
        (f"{env}/variables", variables.variables, rw("environments")),
        (f"{env}/variables/{{name}}", variables.one_variable, rw("environments")),
        (org, get_org, {"GET": None}),
        (f"{org}/installations", people.org_installations, {"GET": PERSON}),
        (f"{org}/actions/secrets/public-key", secrets.get_public_key,
         read("organization_secrets")),
        (f"{org}/actions/secrets", secrets.list_secrets, read("organization_secrets")),
        (f"{org}/actions/secrets/{{name}}", secrets.one_secret, rw("organization_secrets")),
        (f"{r}/actions/workflows", runs.list_workflows, read("actions")),
        (wf, runs.get_workflow, read("actions")),
        (f"{wf}/dispatches", runs.dispatch, {"POST": ("actions", "write")}),
        (run, runs.get_run, read("actions")),
        (f"{run}/approvals", runs.get_approvals, read("actions")),
        (f"{r}/actions/runs", runs.list_runs, read("actions")),
        (f"{run}/pending_deployments", runs.pending_deployments,
         {"GET": ("actions", "read"), "POST": ("deployments", "write")}),
        (f"{r}/issues", issues.create_issue, {"POST": ("issues", "write")}),
        (f"{r}/issues/{{number}}", issues.get_issue, read("issues")),
        (f"{r}/branches/{{branch:path}}/protection", rules.branch_protection,
         {"GET": ("administration", "read")}),
        (f"{r}/branches/{{branch:path}}", git.get_branch, read("contents")),
        (f"{r}/compare/{{basehead:path}}", git.compare, read("contents")),
        (f"{r}/contents/{{path:path}}", git.contents, rw("contents")),
        (f"{r}/git/trees", git.create_tree, {"POST": ("contents", "write")}),
        (f"{r}/git/commits", git.create_commit, {"POST": ("contents", "write")}),
        (f"{r}/git/refs", git.create_ref, {"POST": ("contents", "write")}),
        (f"{r}/rules/branches/{{branch:path}}", rules.branch_rules, {"GET": META}),
        (f"{r}/rulesets", rules.rulesets, {"GET": META, "POST": ADMIN}),
        (f"{r}/rulesets/{{ruleset_id}}", rules.one_ruleset,
         {"GET": META, "PUT": ADMIN, "DELETE": ADMIN}),
    ]
    routes: list[BaseRoute] = [
        Route(path, endpoint(handler, needs), methods=list(needs)) for path, handler, needs in table
    ]
    # Secondary limits (100 concurrent, points per endpoint, content-generating requests):
    # ratelimit.py, settable and reported at /__velvet/limits. Its clock is the primary
    # limit's too.
    limiter = github_limits()
    limiter.part = PrimaryLimit(state)
    state.attach_limiter(limiter)
    app = build_app(
        "github",
        routes,
        error=error,
        state=state,
        limiter=limiter,
        reject=github_reject(),
    )
    app.add_middleware(_RateLimitHeaders, state=state)
    return app
