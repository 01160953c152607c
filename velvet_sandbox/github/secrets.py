"""Actions secrets (repo, environment, org): the scope a path names, sealed-box PUTs opened with
the scope's private key and checked as GitHub checks them, and the secret routes."""

from __future__ import annotations

import base64
import binascii

from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from starlette.requests import Request
from starlette.responses import Response

from velvet_sandbox.control import json_response
from velvet_sandbox.github.common import (
    _BASE64,
    _SECRET_NAME,
    _VISIBILITIES,
    MAX_SECRET_BYTES,
    GitHubError,
    Json,
    _body,
    _invalid,
    _no_content,
    _not_found,
)
from velvet_sandbox.github.records import KeyPair, Org, Secret, SecretScope, _Token
from velvet_sandbox.github.views import _Views, env_of, listing, repo_of


def _decrypt(key: KeyPair, body: Json) -> str:
    """The plaintext of a PUT body, checked the way GitHub checks it."""
    key_id = body.get("key_id")
    value = body.get("encrypted_value")
    if key_id is None:
        raise _invalid('"key_id" wasn\'t supplied.')
    if value is None:
        raise _invalid('"encrypted_value" wasn\'t supplied.')
    if not isinstance(value, str) or not _BASE64.fullmatch(value):
        raise _invalid(f"encrypted_value does not match {_BASE64.pattern!r}.")
    if str(key_id) != key.key_id:
        raise GitHubError(422, "Bad request - key_id is not the current public key.")
    try:
        plaintext = SealedBox(key.private).decrypt(base64.b64decode(value))
        text = plaintext.decode("utf-8")
    except (CryptoError, binascii.Error, UnicodeDecodeError):
        raise GitHubError(
            422, "Bad request - could not decrypt encrypted_value with the key for key_id."
        ) from None
    if len(plaintext) > MAX_SECRET_BYTES:
        raise _invalid("Secret value is too large; the maximum size is 48 KB.")
    return text


def _secret_name(raw: str) -> str:
    if not _SECRET_NAME.fullmatch(raw) or raw.upper().startswith("GITHUB_"):
        raise _invalid(
            "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or "
            "underscores (_), must not start with a number or GITHUB_."
        )
    return raw.upper()


def scope_of(request: Request, token: _Token, views: _Views) -> tuple[SecretScope, str]:
    """The secret scope a path names, and that scope's API URL prefix."""
    params = request.path_params
    base = views.base
    if "org" in params:
        return views.state._org(params["org"]).scope, f"{base}/orgs/{params['org']}/actions"
    repo = repo_of(request, token, views)
    if "env" in params:
        env = env_of(repo, params["env"])
        return env.scope, f"{base}/repos/{repo.full_name}/environments/{params['env']}"
    return repo.scope, f"{base}/repos/{repo.full_name}/actions"


async def get_public_key(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        scope, _ = scope_of(request, token, views)
        return json_response(views.public_key(scope.key))


async def list_secrets(request: Request, token: _Token, views: _Views) -> Response:
    with views.state._lock:
        scope, url = scope_of(request, token, views)
        rows = [scope.secrets[n] for n in sorted(scope.secrets)]
        return listing(request, rows, lambda secret: secret.api(url), "secrets")


async def one_secret(request: Request, token: _Token, views: _Views) -> Response:
    body = await _body(request) if request.method == "PUT" else {}
    with views.state._lock:
        scope, url = scope_of(request, token, views)
        raw_name = request.path_params["name"]
        if request.method == "GET":
            found = scope.secrets.get(raw_name.upper())
            if found is None:
                raise _not_found()
            return json_response(found.api(url))
        if request.method == "DELETE":
            if scope.secrets.pop(raw_name.upper(), None) is None:
                raise _not_found()
            return _no_content()
        name = _secret_name(raw_name)
        visibility: str | None = None
        selected: list[int] = []
        if isinstance(scope, Org):
            visibility = body.get("visibility")
            if visibility is None:
                raise _invalid('"visibility" wasn\'t supplied.')
            if visibility not in _VISIBILITIES:
                raise _invalid(f"visibility is not included in the list {_VISIBILITIES}.")
            ids = body.get("selected_repository_ids", [])
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise _invalid("selected_repository_ids is not an array of integers.")
            selected = list(ids) if visibility == "selected" else []
        plaintext = _decrypt(scope.key, body)
        now = views.state.clock()
        existing = scope.secrets.get(name)
        if existing is not None:
            existing.value = plaintext
            existing.updated_at = now
            existing.visibility = visibility
            existing.selected_repository_ids = selected
            return _no_content()
        scope.secrets[name] = Secret(name=name, value=plaintext, created_at=now, updated_at=now,
                                     visibility=visibility, selected_repository_ids=selected)
        return json_response({}, 201)
