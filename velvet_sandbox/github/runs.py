"""Workflows, `workflow_dispatch`, workflow runs, their approvals and pending deployments (the
review routes answer through an attached ActionsPlane, actions_plane.py)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import (
    MAX_DISPATCH_INPUTS,
    GitHubError,
    _body,
    _invalid,
    _no_content,
    _not_found,
)
from velvet_sandbox.github.records import Repo, Run, Workflow, _Token
from velvet_sandbox.github.views import _Views, listing, repo_of


def find_workflow(repo: Repo, ident: str) -> Workflow:
    for wf in repo.workflows.values():
        if ident in (wf.file, str(wf.id)):
            return wf
    raise _not_found()


async def list_workflows(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        rows = [repo.workflows[f] for f in sorted(repo.workflows)]
        return listing(request, rows, lambda wf: views.workflow(repo, wf), "workflows")


async def get_workflow(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        return json_response(
            views.workflow(repo, find_workflow(repo, request.path_params["workflow"]))
        )


async def dispatch(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request)
    with views.state._lock:
        repo = repo_of(request, token, views)
        wf = find_workflow(repo, request.path_params["workflow"])
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            raise _invalid('"ref" wasn\'t supplied.')
        if not wf.dispatchable:
            raise GitHubError(422, "Workflow does not have 'workflow_dispatch' trigger")
        branch = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        if branch not in repo.branches:
            raise GitHubError(422, f"No ref found for: {ref}")
        inputs = body.get("inputs", {})
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            raise _invalid("For 'properties/inputs', is not an object.")
        if len(inputs) > MAX_DISPATCH_INPUTS:
            raise GitHubError(
                422, "you may only define up to 25 `inputs` for a `workflow_dispatch` event"
            )
        unexpected = sorted(set(inputs) - set(wf.inputs))
        if unexpected:
            raise GitHubError(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        missing = [name for name in wf.required if name not in inputs]
        if missing:
            raise GitHubError(422, f"Required input '{missing[0]}' not provided")
        for name, value in inputs.items():
            _check_input(repo, wf, name, value)
        details = body.get("return_run_details", False)
        if not isinstance(details, bool):
            raise _invalid("For 'properties/return_run_details', is not a boolean.")
        now = views.state.clock()
        run = views.state._seed_run(
            repo,
            {
                "actor": token.login,
                "workflow": wf.file,
                "status": "queued",
                "head_branch": branch,
                "created_at": now,
            },
        )
        repo.dispatches.append(
            {
                "workflow": wf.file,
                "ref": ref,
                "inputs": json.loads(json.dumps(inputs)),
                "actor": token.login,
                "run_id": run.id,
                "at": now,
            }
        )
        if views.state.plane is not None:
            views.state.plane.dispatched(repo, run, inputs)
        if not details:
            return _no_content()
        run_json = views.run(repo, run)
        return json_response(
            {
                "workflow_run_id": run.id,
                "run_url": run_json["url"],
                "html_url": run_json["html_url"],
            }
        )


def _check_input(repo: Repo, wf: Workflow, name: str, value: object) -> None:
    """A dispatched input against its declared type, with GitHub's 422: a `choice` must be
    one of its options, a `boolean` true or false (JSON or text), a `number` a number, an
    `environment` one of the repository's environments."""
    spec = wf.types.get(name) or {}
    kind = spec.get("type", "string")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    allowed: list[str] | None = None
    if kind == "choice":
        allowed = [str(o) for o in spec.get("options") or []]
    elif kind == "boolean":
        allowed = ["true", "false"]
    elif kind == "environment":
        allowed = sorted(repo.environments)
    elif kind == "number":
        try:
            float(text)
        except ValueError:
            raise GitHubError(422, f"Provided value '{text}' for input '{name}' is not a valid "
                              "number") from None
    if allowed is not None and text not in allowed:
        raise GitHubError(422, f"Provided value '{text}' for input '{name}' not in the list of "
                          "allowed values")


def find_run(repo: Repo, raw: str) -> Run:
    run = repo.runs.get(int(raw)) if raw.isdigit() else None
    if run is None:
        raise _not_found()
    return run


async def get_run(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        return json_response(views.run(repo, find_run(repo, request.path_params["run_id"])))


async def get_approvals(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        run = find_run(repo, request.path_params["run_id"])
        return listing(request, run.approvals, lambda a: views.approval(repo, a))


async def list_runs(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        rows = [repo.runs[i] for i in sorted(repo.runs, reverse=True)]
        return listing(request, rows, lambda r: views.run(repo, r), "workflow_runs")


async def pending_deployments(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "POST" else {}
    with views.state._lock:
        repo = repo_of(request, token, views)
        run = find_run(repo, request.path_params["run_id"])
        if request.method == "GET":
            plane = views.state.plane
            pending = [] if plane is None else plane.pending_deployments(
                repo, run, token.login, views.user, lambda e: views.environment(repo, e)
            )
            return listing(request, pending, dict)
        if views.state.plane is None:
            return json_response([])
        try:
            return json_response(views.state.plane.review(repo, run, token.login, body))
        except ValueError as exc:
            raise _invalid(str(exc)) from None
