"""Actions variables of a repository or an environment (docs.github.com/rest/actions/variables).

Names are stored in upper case and follow the secret-name rules; a listing pages at most 30
a page (GitHub's limit for variables); creating a name that exists is 409 "Already exists -
Variable already exists"; a PATCH may rename. Values are plain text, readable by design.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import (
    _SECRET_NAME,
    GitHubError,
    _body,
    _invalid,
    _no_content,
    _not_found,
)
from velvet_sandbox.github.records import Variable, Variables, _Token
from velvet_sandbox.github.views import _Views, env_of, listing, repo_of

MAX_VALUE_BYTES = 48 * 1024
MAX_PER_PAGE = 30


def _holder(request: Request, token: _Token, views: _Views) -> Variables:
    repo = repo_of(request, token, views)
    if "env" in request.path_params:
        return env_of(repo, request.path_params["env"])
    return repo


def _name(raw: object) -> str:
    if not isinstance(raw, str) or not _SECRET_NAME.fullmatch(raw) or \
            raw.upper().startswith("GITHUB_"):
        raise _invalid("Variable names can only contain alphanumeric characters ([a-z], [A-Z], "
                       "[0-9]) or underscores (_), must not start with a number or GITHUB_.")
    return raw.upper()


def _value(raw: object) -> str:
    if not isinstance(raw, str):
        raise _invalid("For 'properties/value', is not a string.")
    if len(raw.encode("utf-8")) > MAX_VALUE_BYTES:
        raise _invalid("Variable value is too large; the maximum size is 48 KB.")
    return raw


async def variables(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "POST" else {}
    with views.state._lock:
        holder = _holder(request, token, views)
        if request.method == "GET":
            if request.query_params.get("per_page", "").isdigit() and \
                    int(request.query_params["per_page"]) > MAX_PER_PAGE:
                raise _invalid(f"per_page must be at most {MAX_PER_PAGE} for variables.")
            rows = [holder.variables[n] for n in sorted(holder.variables)]
            return listing(request, rows, Variable.api, "variables")
        if "name" not in body:
            raise _invalid('"name" wasn\'t supplied.')
        if "value" not in body:
            raise _invalid('"value" wasn\'t supplied.')
        name, value = _name(body["name"]), _value(body["value"])
        if name in holder.variables:
            raise GitHubError(409, "Already exists - Variable already exists")
        now = views.state.clock()
        holder.variables[name] = Variable(name=name, value=value, created_at=now,
                                          updated_at=now)
        return json_response({}, 201)


async def one_variable(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "PATCH" else {}
    with views.state._lock:
        holder = _holder(request, token, views)
        found = holder.variables.get(request.path_params["name"].upper())
        if found is None:
            raise _not_found()
        if request.method == "GET":
            return json_response(found.api())
        if request.method == "DELETE":
            del holder.variables[found.name]
            return _no_content()
        name = _name(body["name"]) if "name" in body else found.name
        if name != found.name and name in holder.variables:
            raise GitHubError(409, "Already exists - Variable already exists")
        if "value" in body:
            found.value = _value(body["value"])
        del holder.variables[found.name]
        found.name = name
        found.updated_at = views.state.clock()
        holder.variables[name] = found
        return _no_content()
