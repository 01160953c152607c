"""The GitHub fake as a Starlette app: the route table, the request gate around every handler,
the `x-ratelimit-*` headers, and the user, rate-limit, repo, org and environment routes.

Paths served (vendor-apis.md section 5, github-actions.md section 2):

    GET    /user                                                        the token's user
    GET    /rate_limit
    GET    /repos/{owner}/{repo}
    GET    /repos/{owner}/{repo}/actions/secrets/public-key
    GET    /repos/{owner}/{repo}/actions/secrets
    GET | PUT | DELETE /repos/{owner}/{repo}/actions/secrets/{name}
    GET    /repos/{owner}/{repo}/environments
    GET    /repos/{owner}/{repo}/environments/{env}
    GET    /repos/{owner}/{repo}/environments/{env}/deployment-branch-policies
    GET    /repos/{owner}/{repo}/environments/{env}/secrets/public-key
    GET    /repos/{owner}/{repo}/environments/{env}/secrets
    GET | PUT | DELETE /repos/{owner}/{repo}/environments/{env}/secrets/{name}
    GET    /orgs/{org}
    GET    /orgs/{org}/actions/secrets/public-key
    GET    /orgs/{org}/actions/secrets
    GET | PUT | DELETE /orgs/{org}/actions/secrets/{name}
    GET    /repos/{owner}/{repo}/actions/workflows
    GET    /repos/{owner}/{repo}/actions/workflows/{id or file}
    POST   /repos/{owner}/{repo}/actions/workflows/{id or file}/dispatches
    GET    /repos/{owner}/{repo}/actions/runs/{run_id}
    GET    /repos/{owner}/{repo}/actions/runs/{run_id}/approvals
    GET    /repos/{owner}/{repo}/actions/runs
    GET | POST /repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments
                                            (with an ActionsPlane attached: actions_plane.py)
    POST   /repos/{owner}/{repo}/issues
    GET    /repos/{owner}/{repo}/issues/{number}

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

from velvet_runner.sandbox.control import (
    CONTROL_PREFIX,
    build_app,
    json_response,
)
from velvet_runner.sandbox.github import issues, runs, secrets
from velvet_runner.sandbox.github.common import GitHubError, Json, _not_found, error
from velvet_runner.sandbox.github.records import _Token
from velvet_runner.sandbox.github.state import State
from velvet_runner.sandbox.github.views import Endpoint, _Views, env_of, listing, repo_of
from velvet_runner.sandbox.ratelimit import github_limits, github_reject


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


async def list_environments(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        envs = [repo.environments[n] for n in sorted(repo.environments)]
        return listing(request, envs, lambda e: views.environment(repo, e), "environments")


async def get_environment(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        env = env_of(repo, request.path_params["env"])
        return json_response(views.environment(repo, env))


async def branch_policies(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        env = env_of(repo, request.path_params["env"])
        if env.branches is None:
            raise _not_found()
        policies = [
            {"id": env.id * 100 + i, "node_id": f"RE_{env.id}_{i}", "name": p, "type": "branch"}
            for i, p in enumerate(env.branches, start=1)
        ]
        return listing(request, policies, dict, "branch_policies")


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


def create_app(state: State) -> Starlette:
    """The GitHub fake as a Starlette app with the shared `/__velvet/` control API."""

    def endpoint(handler: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                token = state._gate(request.headers)
                return await handler(request, token, _Views(state, str(request.base_url)))
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
    table: list[tuple[str, Endpoint, list[str]]] = [
        ("/user", get_user, ["GET"]),
        ("/rate_limit", get_rate_limit, ["GET"]),
        (r, get_repo, ["GET"]),
        (f"{r}/actions/secrets/public-key", secrets.get_public_key, ["GET"]),
        (f"{r}/actions/secrets", secrets.list_secrets, ["GET"]),
        (f"{r}/actions/secrets/{{name}}", secrets.one_secret, ["GET", "PUT", "DELETE"]),
        (f"{r}/environments", list_environments, ["GET"]),
        (env, get_environment, ["GET"]),
        (f"{env}/deployment-branch-policies", branch_policies, ["GET"]),
        (f"{env}/secrets/public-key", secrets.get_public_key, ["GET"]),
        (f"{env}/secrets", secrets.list_secrets, ["GET"]),
        (f"{env}/secrets/{{name}}", secrets.one_secret, ["GET", "PUT", "DELETE"]),
        (org, get_org, ["GET"]),
        (f"{org}/actions/secrets/public-key", secrets.get_public_key, ["GET"]),
        (f"{org}/actions/secrets", secrets.list_secrets, ["GET"]),
        (f"{org}/actions/secrets/{{name}}", secrets.one_secret, ["GET", "PUT", "DELETE"]),
        (f"{r}/actions/workflows", runs.list_workflows, ["GET"]),
        (wf, runs.get_workflow, ["GET"]),
        (f"{wf}/dispatches", runs.dispatch, ["POST"]),
        (run, runs.get_run, ["GET"]),
        (f"{run}/approvals", runs.get_approvals, ["GET"]),
        (f"{r}/actions/runs", runs.list_runs, ["GET"]),
        (f"{run}/pending_deployments", runs.pending_deployments, ["GET", "POST"]),
        (f"{r}/issues", issues.create_issue, ["POST"]),
        (f"{r}/issues/{{number}}", issues.get_issue, ["GET"]),
    ]
    routes: list[BaseRoute] = [
        Route(path, endpoint(handler), methods=methods) for path, handler, methods in table
    ]
    # Secondary limits (100 concurrent, points per endpoint, content-generating requests):
    # sandbox/ratelimit.py, settable and reported at /__velvet/limits. Its clock is the primary
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
