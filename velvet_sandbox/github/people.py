"""Users, a collaborator's permission on a repository, and GitHub App installations
(docs.github.com/rest/users, .../collaborators, .../apps/installations).

A user exists once the fake has seen the login (a token, a collaborator, a reviewer, an
approver). A collaborator's `permission` is GitHub's older word for the role (maintain shows
as write, triage as read); `role_name` is the role. The owner of a repository (a user, or an
owner of its organisation) is admin; anyone else without a role is "none" on a private
repository and "read" on a public one.

Installations: `/orgs/{org}/installations` and `/user/installations` list them with their
permissions (a person's token); `/user/installations/{id}/repositories` (a person's token)
and `/installation/repositories` (the installation's own token) list the repositories one
reaches; `PUT /user/installations/{id}/repositories/{repository_id}` adds one.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import GitHubError, _no_content, _not_found
from velvet_sandbox.github.records import Installation, Repo, _Token
from velvet_sandbox.github.views import _Views, listing, repo_of

# role -> the `permission` GitHub shows beside it
PERMISSION_OF_ROLE = {"admin": "admin", "maintain": "write", "write": "write",
                      "triage": "read", "read": "read"}


async def get_user(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        login = request.path_params["username"]
        known = next((u for u in views.state._users if u.lower() == login.lower()), None)
        if known is None and login not in views.state._orgs:
            raise _not_found()
        return json_response(views.public_user(known or login))


async def collaborator_permission(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        repo = repo_of(request, token, views)
        login = request.path_params["username"]
        known = next((u for u in views.state._users if u.lower() == login.lower()), None)
        if known is None:
            raise GitHubError(404, f"{login} is not a user")
        role = views.state.role(repo, known)
        if role is None:
            role = "none" if repo.private else "read"
        permission = PERMISSION_OF_ROLE.get(role, "none")
        user = {**views.user(known), "role_name": role,
                "permissions": {"admin": role == "admin",
                                "maintain": role in ("admin", "maintain"),
                                "push": permission in ("admin", "write"),
                                "triage": role != "none" and role != "read",
                                "pull": role != "none"}}
        return json_response({"permission": permission, "role_name": role, "user": user})


def _installations(views: _Views, account: str) -> list[Installation]:
    found = views.state._installations
    return [found[i] for i in sorted(found) if found[i].account.lower() == account.lower()]


async def org_installations(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        org = views.state._org(request.path_params["org"])
        rows = _installations(views, org.name)
        return listing(request, rows, views.installation, "installations")


async def user_installations(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        # Installations on the user's own account and on the organisations they own.
        accounts = [token.login, *(o.name for o in views.state._orgs.values()
                                   if token.login in o.owners)]
        rows = [i for account in accounts for i in _installations(views, account)]
        return listing(request, rows, views.installation, "installations")


def _reachable(views: _Views, installation: Installation) -> list[Repo]:
    repos = views.state._repos
    if installation.repository_selection == "all":
        return [repos[n] for n in sorted(repos) if repos[n].owner == installation.account]
    return [repos[n] for n in sorted(installation.repositories) if n in repos]


def _mine(views: _Views, token: _Token, raw: str) -> Installation:
    """An installation the token's user administers (its account is theirs), else 404."""
    installation = views.state._installations.get(int(raw)) if raw.isdigit() else None
    if installation is None:
        raise _not_found()
    org = views.state._orgs.get(installation.account)
    if installation.account != token.login and (org is None or token.login not in org.owners):
        raise _not_found()
    return installation


async def user_installation_repositories(request: Request, token: _Token,
                                         views: _Views) -> Response:
    with views.state._lock:
        installation = _mine(views, token, request.path_params["installation_id"])
        return _repositories(request, views, installation)


def _repositories(request: Request, views: _Views, installation: Installation) -> Response:
    # GitHub adds the installation's selection beside the page.
    return listing(request, _reachable(views, installation), views.repo, "repositories",
                   {"repository_selection": installation.repository_selection})


async def installation_repositories(request: Request, token: _Token,
                                    views: _Views) -> Response:
    with views.state._lock:
        installation = views.state._installations.get(token.installation or -1)
        if installation is None:
            raise GitHubError(403, "This endpoint requires an installation access token "
                              "(a GitHub App's token).")
        return _repositories(request, views, installation)


async def add_installation_repository(request: Request, token: _Token,
                                      views: _Views) -> Response:
    with views.state._lock:
        installation = _mine(views, token, request.path_params["installation_id"])
        raw = request.path_params["repository_id"]
        repo = next((r for r in views.state._repos.values() if str(r.id) == raw), None)
        if repo is None or repo.owner != installation.account:
            raise _not_found()
        if views.state.role(repo, token.login) != "admin":
            raise GitHubError(403, "Must have admin rights to Repository.")
        views.state.install_on(installation.id, repo.full_name)
        return _no_content()
