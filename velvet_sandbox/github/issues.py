"""Issues: create one (as the notifier does) and read it back."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import GitHubError, _body, _invalid, _not_found
from velvet_sandbox.github.records import Issue, _Token
from velvet_sandbox.github.views import _Views, repo_of


async def create_issue(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request)
    with views.state._lock:
        repo = repo_of(request, token, views)
        title = body.get("title")
        if title is None or title == "":
            raise GitHubError(
                422,
                'Invalid request.\n\n"title" wasn\'t supplied.',
                [{"resource": "Issue", "field": "title", "code": "missing_field"}],
            )
        if not isinstance(title, str | int):
            raise _invalid("For 'properties/title', is not a string or integer.")
        labels = body.get("labels", [])
        if not isinstance(labels, list):
            raise _invalid("For 'properties/labels', is not an array.")
        issue = Issue(
            number=len(repo.issues) + 1,
            id=views.state._next_id(),
            title=str(title),
            body=body.get("body") if isinstance(body.get("body"), str) else None,
            labels=[str(x["name"] if isinstance(x, dict) else x) for x in labels],
            user=token.login,
            created_at=views.state.clock(),
        )
        repo.issues.append(issue)
        return json_response(views.issue(repo, issue), 201)


async def get_issue(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        raw = request.path_params["number"]
        for issue in repo.issues:
            if str(issue.number) == raw:
                return json_response(views.issue(repo, issue))
        raise _not_found()
