"""Fake Infisical: universal-auth login, client secrets, and secrets over the v3 raw and v4 APIs.

Paths served (vendor-apis.md section 4):

    POST   /api/v1/auth/universal-auth/login
    POST   /api/v1/auth/universal-auth/identities/{identityId}/client-secrets
    GET    /api/v1/auth/universal-auth/identities/{identityId}/client-secrets
    GET    /api/v1/auth/universal-auth/identities/{identityId}/client-secrets/{id}
    POST   /api/v1/auth/universal-auth/identities/{identityId}/client-secrets/{id}/revoke
    GET    /api/v1/projects                        the projects the identity is a member of
    GET    /api/v3/secrets/raw                     ?workspaceId=&environment=&secretPath=&recursive=
    GET    /api/v3/secrets/raw/{secretName}        ?workspaceId=&environment=&secretPath=
    POST | PATCH | DELETE /api/v3/secrets/raw/{secretName}   JSON body with workspaceId
    GET    /api/v4/secrets                         ?projectId=&environment=&secretPath=&recursive=
    GET    /api/v4/secrets/{secretName}            ?projectId=&environment=&secretPath=
    POST | PATCH | DELETE /api/v4/secrets/{secretName}       JSON body with projectId

Both secret APIs share one store keyed by (project, environment, secretPath, name). A project
exists once an identity is granted it or a secret is stored in it; its environments are
Infisical's defaults (dev, staging, prod) and every one a secret of it is stored in. Neither
listing pages: Infisical answers a project list, and a folder's secrets (recursive or not),
whole.

Quirks kept on purpose: creates answer 200 (not 201); a duplicate create is 400 "Secret already
exist" (not 409); an expired, malformed or wrongly signed access token is 403 `TokenError` (not
401) while a missing one is 401; 422 `ValidationFailure` carries `message` as an array of
zod-style issues; three failed logins within 30 s lock the client id for 300 s; values are
trimmed, keeping a single trailing newline.

Time comes from the injectable `clock` (seconds since the epoch), so tests can expire tokens
and lockouts without sleeping.

Rate limits are Infisical's own at the self-hosted defaults (`ratelimit.infisical_limits`: a
window of a minute per route, 60 for the secret routes, 60 reads and 200 writes for the
others), on the limiter's vendor clock (`state.limiter`, sharing `clock`; its time scale is
settable and its breaches are served at `/__velvet/limits`). As @fastify/rate-limit does,
every answer carries `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset`
(seconds until the oldest counted request leaves the window, not an epoch); over a limit the
answer is 429 `RateLimitExceeded` "Rate limit exceeded. Please try again in N seconds" with
`retry-after` N. An injected 429 fault has the same shape and headers (the fault's message,
the global ceiling of 600 as its limit, the reset equal to the fault's retry-after).

The state is pydantic models (`Snapshot`: identities with their client secrets, and stored
secrets); client secrets and secret values are the shared `Secret` field type.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from velvet_sandbox import registry
from velvet_sandbox.control import (
    CONTROL_PREFIX,
    Secret,
    StateModel,
    Stored,
    bearer_token,
    build_app,
    json_response,
)
from velvet_sandbox.ratelimit import (
    Limiter,
    Refusal,
    infisical_limits,
    route_template,
    token_key,
)

Json = dict[str, Any]
Clock = Callable[[], float]

TOKEN_TTL_SECONDS = 2_592_000
LOCKOUT_THRESHOLD = 3
LOCKOUT_WINDOW_SECONDS = 30.0
LOCKOUT_DURATION_SECONDS = 300.0

MSG_INVALID_CREDENTIALS = "Invalid credentials"
MSG_LOCKED = "This identity auth method is temporarily locked, please try again later"
MSG_TOKEN_EXPIRED = "Your token has expired. Please re-authenticate."
MSG_TOKEN_MALFORMED = (
    "The provided access token is malformed. Please use a valid token or generate a new one "
    "and try again."
)
MSG_TOKEN_BAD_SIGNATURE = "invalid signature"

_ERROR_NAMES = {
    400: "BadRequest",
    401: "UnauthorizedError",
    403: "PermissionDenied",
    404: "NotFound",
    422: "ValidationFailure",
    429: "RateLimitExceeded",
    500: "InternalServerError",
    504: "GatewayTimeoutError",
}
_NAMESPACE = uuid.UUID("6f1d0c2e-6a55-4c1b-9d7e-76656c766574")
# Every new Infisical project has these environments.
DEFAULT_ENVIRONMENTS = ("dev", "staging", "prod")
ENVIRONMENT_NAMES = {"dev": "Development", "staging": "Staging", "prod": "Production"}


class InfisicalError(Exception):
    """An API error, rendered as Infisical's `{reqId, statusCode, message, error}` body."""

    def __init__(
        self, status: int, message: str | list[Json], name: str | None = None, **extra: Any
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.name = name or _ERROR_NAMES.get(status, "InternalServerError")
        self.extra = extra


def error(
    status: int, message: str | list[Json], name: str | None = None, **extra: Any
) -> Response:
    """Infisical's error body; also used by the control layer for injected faults."""
    body: Json = {
        "reqId": f"req-{secrets.token_urlsafe(10)}",
        "statusCode": status,
        "message": message,
        "error": name or _ERROR_NAMES.get(status, "InternalServerError"),
        **extra,
    }
    response = json_response(body, status)
    if status == 429:
        # An injected fault: the global ceiling, spent; `_RateLimitHeaders` keeps the reset
        # equal to whatever retry-after the fault sets.
        _limit_headers(response.headers, 600, 0, 60)
        response.headers["retry-after"] = "60"
    return response


def _limit_headers(headers: MutableHeaders, limit: float, remaining: int, reset: int) -> None:
    headers["x-ratelimit-limit"] = f"{limit:g}"
    headers["x-ratelimit-remaining"] = str(remaining)
    headers["x-ratelimit-reset"] = str(reset)


def _reject(limiter: Limiter) -> Callable[[Refusal], Response]:
    """Infisical's answer over a limit (its `errorResponseBuilder` and the plugin's headers)."""

    def reject(refusal: Refusal) -> Response:
        seconds = refusal.retry_after
        response = error(429, f"Rate limit exceeded. Please try again in {seconds} seconds")
        rule = limiter.rules.get(refusal.rule)
        _limit_headers(response.headers, rule.limit if rule else 0, 0, seconds)
        response.headers["retry-after"] = str(seconds)
        return response

    return reject


class _RateLimitHeaders:
    """`x-ratelimit-*` on every vendor answer, as @fastify/rate-limit adds them: what the
    request's window leaves its caller. Outermost, so it also sees injected faults; it keeps
    headers a refusal already set, and on any 429 makes the reset agree with retry-after."""

    def __init__(self, app: ASGIApp, *, limiter: Limiter,
                 endpoint: Callable[[Scope], str]) -> None:
        self.app = app
        self.limiter = limiter
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(CONTROL_PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                left = self.limiter.left(scope["method"], self.endpoint(scope),
                                         token_key(scope))
                if left is not None and "x-ratelimit-limit" not in headers:
                    rule, remaining, reset = left
                    _limit_headers(headers, rule.limit, remaining, reset)
                if message["status"] == 429 and "retry-after" in headers:
                    headers["x-ratelimit-reset"] = headers["retry-after"]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _issue(path: str, expected: str = "string", received: str = "undefined") -> Json:
    """One zod issue, the element type of a 422's `message` array."""
    return {
        "code": "invalid_type",
        "expected": expected,
        "received": received,
        "path": [path],
        "message": "Required" if received == "undefined" else f"Expected {expected}",
    }


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _normalise_path(path: str) -> str:
    path = "/" + path.strip().strip("/")
    return path


def trim_value(value: str) -> str:
    """Infisical trims values but keeps a single trailing newline."""
    trimmed = value.strip()
    if trimmed and value.rstrip(" \t\r").endswith("\n"):
        trimmed += "\n"
    return trimmed


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Model(StateModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)


class _Timestamped(_Model):
    """Created and updated in the fake's clock seconds; a seed may leave them out, and then
    they are the moment of the seed (`context={"now": ...}`)."""

    created_at: float
    updated_at: float

    @model_validator(mode="before")
    @classmethod
    def _now_by_default(cls, data: Any, info: ValidationInfo) -> Any:
        now = (info.context or {}).get("now")
        if isinstance(data, dict) and now is not None:
            return {"created_at": now, "updated_at": now, **data}
        return data


class ClientSecret(_Timestamped):
    id: str
    client_secret: Secret
    description: str = ""
    num_uses_limit: int = 0
    ttl: int = 0
    revoked: bool = False
    # Login side effect: not part of the snapshot (see State.snapshot).
    num_uses: int = Field(default=0, exclude=True)

    def data(self, ua_id: str) -> Json:
        """`clientSecretData` as the API shows it: never the secret itself."""
        return {
            "id": self.id,
            "clientSecretPrefix": self.client_secret[:4],
            "description": self.description,
            "clientSecretNumUses": self.num_uses,
            "clientSecretNumUsesLimit": self.num_uses_limit,
            "clientSecretTTL": self.ttl,
            "identityUAId": ua_id,
            "isClientSecretRevoked": self.revoked,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
        }


class Identity(_Model):
    identity_id: str = ""  # "" in a seed: the fake assigns one
    client_id: str
    projects: set[str] = set()
    client_secrets: list[ClientSecret] = []
    # Seed only: one more client secret, by value (its id and times are the fake's).
    client_secret: Secret | None = Field(default=None, exclude=True)

    @property
    def ua_id(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"ua:{self.identity_id}"))

    @field_serializer("projects")
    def _sorted(self, projects: set[str]) -> list[str]:
        return sorted(projects)


SecretKey = tuple[str, str, str, str]  # (project, environment, secretPath, name)


class StoredSecret(_Timestamped):
    id: str = ""  # "" in a seed: the fake assigns one
    project: str
    environment: str
    path: str = "/"
    name: str
    value: Secret
    comment: str = ""
    version: int = 1

    @field_validator("path")
    @classmethod
    def _normalised(cls, path: str) -> str:
        return _normalise_path(path)

    @property
    def key(self) -> SecretKey:
        return (self.project, self.environment, self.path, self.name)

    def api(self) -> Json:
        """The secret object of vendor-apis.md 4.5."""
        return {
            "id": self.id,
            "_id": self.id,
            "workspace": self.project,
            "environment": self.environment,
            "version": self.version,
            "type": "shared",
            "secretKey": self.name,
            "secretValue": self.value,
            "secretComment": self.comment,
            "secretValueHidden": False,
            "secretPath": self.path,
            "tags": [],
            "secretMetadata": [],
            "skipMultilineEncoding": False,
            "secretReminderNote": None,
            "secretReminderRepeatDays": None,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
            "actor": None,
            "isRotatedSecret": False,
            "rotationId": None,
        }


class Snapshot(_Model):
    """The fake's state as `GET /__velvet/state` shows it and `POST /__velvet/seed` merges it."""

    sequence: int = 0
    identities: list[Identity] = []
    secrets: list[StoredSecret] = []


@dataclass
class _Token:
    identity_id: str
    client_secret_id: str
    expires_at: float
    value: str = ""


@dataclass
class _Lockout:
    failures: int = 0
    window_ends: float = 0.0
    locked_until: float = 0.0


class State(Stored):
    """The fake's whole memory. Every method takes the lock; call them from any thread.

    Public helpers for tests and `world.py`:

        add_identity(client_id, client_secret, projects) -> identity_id
        grant(client_id, project)                 give an identity access to one more project
        revoke_project(client_id, project)        take it away again
        identity_id(client_id) -> str
        issue_token(client_id) -> str             an access token without a login call
        set_secret(project, env, path, name, value)
        secret_value(project, env, path, name) -> str | None
        login_count(client_id) -> int             successful logins, all client secrets
        issued_tokens() -> list[str]              every access token handed out (leak scans)
        token_values() -> list[str]               every client secret (leak scans)
    """

    # A dropped write is taken back (control.Stored); login lockouts are traffic.
    STORED = ("_identities", "_secrets", "_tokens")

    def __init__(self, *, clock: Clock = time.time, token_ttl: int = TOKEN_TTL_SECONDS) -> None:
        self.clock = clock
        self.token_ttl = token_ttl
        # Infisical's rate limits on vendor time (same clock; settable time scale).
        self.limiter = infisical_limits(clock=clock)
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._seq = 0
        self._signing_key = secrets.token_bytes(32)
        self._identities: dict[str, Identity] = {}  # by client_id
        self._secrets: dict[SecretKey, StoredSecret] = {}
        self._tokens: dict[str, _Token] = {}  # by token id (jti)
        self._lockouts: dict[str, _Lockout] = {}

    def _next_id(self, kind: str) -> str:
        self._seq += 1
        return str(uuid.uuid5(_NAMESPACE, f"{kind}:{self._seq}"))

    # -- snapshot / seed / reset -------------------------------------------------------------

    def snapshot(self, reveal: bool = False) -> Json:
        """The `Snapshot` model, sorted, as `GET /__velvet/state` shows it: client secrets and
        secret values as fingerprints. With `reveal=True` (in process only) they are values,
        and `seed(snapshot(reveal=True))` restores the state.

        Login side effects are left out on purpose: issued access tokens, failed-login counters,
        lockouts and client-secret use counts. A read-only probe logs in, and the snapshot is
        there to show what a run changed in the vendor's configuration.
        """
        with self._lock:
            model = Snapshot(
                sequence=self._seq,
                identities=[self._identities[c] for c in sorted(self._identities)],
                secrets=[self._secrets[k] for k in sorted(self._secrets)],
            )
            return model.model_dump(mode="json", context={"reveal": reveal})

    def seed(self, data: Json) -> None:
        """Merge a `Snapshot`-shaped document: identities by client id (their projects and
        client secrets added; `client_secret` adds one by value), secrets by key (replaced);
        ids and times left out are the fake's. Raises ValueError (pydantic's ValidationError,
        naming the field) if it is malformed."""
        with self._lock:
            model = Snapshot.model_validate(data, context={"now": self.clock()})
            self._seq = max(self._seq, model.sequence)
            for row in model.identities:
                self._seed_identity(row)
            for secret in model.secrets:
                self._seed_secret(secret)

    def _seed_identity(self, row: Identity) -> None:
        identity = self._identities.get(row.client_id)
        if identity is None:
            identity = Identity(identity_id=row.identity_id or self._next_id("identity"),
                                client_id=row.client_id)
            self._identities[row.client_id] = identity
        identity.projects.update(row.projects)
        if row.client_secret is not None:
            self._add_client_secret(identity, row.client_secret)
        known = {c.id for c in identity.client_secrets}
        identity.client_secrets += [c for c in row.client_secrets if c.id not in known]

    def _seed_secret(self, secret: StoredSecret) -> None:
        secret.id = secret.id or self._next_id("secret")
        self._secrets[secret.key] = secret

    def reset(self) -> None:
        """Forget everything, including issued tokens (the signing key is replaced)."""
        with self._lock:
            self._reset()

    # -- public helpers ----------------------------------------------------------------------

    def add_identity(self, client_id: str, client_secret: str, projects: list[str]) -> str:
        """Create (or extend) a universal-auth identity; returns its identity id."""
        with self._lock:
            self._seed_identity(Identity(client_id=client_id, client_secret=client_secret,
                                         projects=set(projects)))
            return self._identities[client_id].identity_id

    def grant(self, client_id: str, project: str) -> None:
        with self._lock:
            self._identities[client_id].projects.add(project)

    def revoke_project(self, client_id: str, project: str) -> None:
        with self._lock:
            self._identities[client_id].projects.discard(project)

    def identity_id(self, client_id: str) -> str:
        with self._lock:
            return self._identities[client_id].identity_id

    def issue_token(self, client_id: str) -> str:
        """An access token for the identity, as a login with its first live secret would give."""
        with self._lock:
            identity = self._identities[client_id]
            live = [c for c in identity.client_secrets if not c.revoked]
            return self._mint_token(identity, live[0].id if live else "")

    def issued_tokens(self) -> list[str]:
        """Every access token issued since the last reset, sorted; not part of the snapshot."""
        with self._lock:
            return sorted(t.value for t in self._tokens.values())

    def token_values(self) -> list[str]:
        """Every client secret of every identity, revoked ones included, sorted."""
        with self._lock:
            return sorted(
                c.client_secret for i in self._identities.values() for c in i.client_secrets
            )

    def login_count(self, client_id: str) -> int:
        with self._lock:
            return sum(c.num_uses for c in self._identities[client_id].client_secrets)

    def set_secret(self, project: str, env: str, path: str, name: str, value: str) -> None:
        """Create or overwrite a secret (an overwrite bumps the version), value stored as given."""
        with self._lock:
            key = (project, env, _normalise_path(path), name)
            existing = self._secrets.get(key)
            if existing is None:
                now = self.clock()
                self._seed_secret(StoredSecret(project=project, environment=env, path=path,
                                               name=name, value=value, created_at=now,
                                               updated_at=now))
            else:
                existing.value = value
                existing.version += 1
                existing.updated_at = self.clock()

    def delete_secret(self, project: str, env: str, path: str, name: str) -> None:
        """Remove a secret if it exists (a fresh world drops the last world's pending slots)."""
        with self._lock:
            self._secrets.pop((project, env, _normalise_path(path), name), None)

    def secret_value(self, project: str, env: str, path: str, name: str) -> str | None:
        with self._lock:
            secret = self._secrets.get((project, env, _normalise_path(path), name))
            return None if secret is None else secret.value

    # -- auth --------------------------------------------------------------------------------

    def _add_client_secret(
        self,
        identity: Identity,
        value: str,
        *,
        description: str = "",
        num_uses_limit: int = 0,
        ttl: int = 0,
    ) -> ClientSecret:
        for existing in identity.client_secrets:
            if existing.client_secret == value:
                return existing
        now = self.clock()
        secret = ClientSecret(
            id=self._next_id("client-secret"),
            client_secret=value,
            description=description,
            num_uses_limit=num_uses_limit,
            ttl=ttl,
            created_at=now,
            updated_at=now,
        )
        identity.client_secrets.append(secret)
        return secret

    def _mint_token(self, identity: Identity, client_secret_id: str) -> str:
        now = self.clock()
        token_id = secrets.token_hex(12)
        self._tokens[token_id] = _Token(
            identity.identity_id, client_secret_id, now + self.token_ttl
        )
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {
            "identityId": identity.identity_id,
            "clientSecretId": client_secret_id,
            "identityAccessTokenId": token_id,
            "authTokenType": "identityAccessToken",
            "iat": int(now),
            "exp": int(now + self.token_ttl),
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(payload, separators=(",", ":")).encode())
        )
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{_b64url(signature)}"
        self._tokens[token_id].value = token
        return token

    def _login(self, client_id: str, client_secret: str) -> Json:
        with self._lock:
            now = self.clock()
            identity = self._identities.get(client_id)
            if identity is None:
                raise InfisicalError(401, MSG_INVALID_CREDENTIALS)
            lockout = self._lockouts.setdefault(client_id, _Lockout())
            if lockout.locked_until > now:
                raise InfisicalError(401, MSG_LOCKED)
            match = next(
                (
                    c
                    for c in identity.client_secrets
                    if not c.revoked and hmac.compare_digest(c.client_secret, client_secret)
                ),
                None,
            )
            if match is None:
                if lockout.window_ends <= now:
                    lockout.failures = 0
                lockout.failures += 1
                lockout.window_ends = now + LOCKOUT_WINDOW_SECONDS
                if lockout.failures >= LOCKOUT_THRESHOLD:
                    lockout.failures = 0
                    lockout.locked_until = now + LOCKOUT_DURATION_SECONDS
                raise InfisicalError(401, MSG_INVALID_CREDENTIALS)
            if match.ttl and match.created_at + match.ttl <= now:
                raise InfisicalError(401, "Access denied due to expired client secret")
            if match.num_uses_limit and match.num_uses >= match.num_uses_limit:
                raise InfisicalError(401, "Access denied due to client secret usage limit reached")
            match.num_uses += 1
            return {
                "accessToken": self._mint_token(identity, match.id),
                "expiresIn": self.token_ttl,
                "accessTokenMaxTTL": self.token_ttl,
                "tokenType": "Bearer",
            }

    def _authenticate(self, authorization: str | None) -> Identity:
        """The identity behind an `Authorization` header, or the error Infisical gives."""
        token = bearer_token(authorization)
        if token is None:
            raise InfisicalError(401, "Token missing")
        parts = token.split(".")
        try:
            if len(parts) != 3:
                raise ValueError("not three segments")
            payload = json.loads(_b64url_decode(parts[1]))
            if not isinstance(payload, dict):
                raise ValueError("payload is not an object")
            signature = _b64url_decode(parts[2])
        except ValueError:
            raise InfisicalError(403, MSG_TOKEN_MALFORMED, "TokenError") from None
        with self._lock:
            expected = hmac.new(
                self._signing_key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256
            ).digest()
            if not hmac.compare_digest(expected, signature):
                raise InfisicalError(403, MSG_TOKEN_BAD_SIGNATURE, "TokenError")
            record = self._tokens.get(str(payload.get("identityAccessTokenId")))
            if record is None:
                raise InfisicalError(403, MSG_TOKEN_BAD_SIGNATURE, "TokenError")
            if record.expires_at <= self.clock():
                raise InfisicalError(403, MSG_TOKEN_EXPIRED, "TokenError")
            for identity in self._identities.values():
                if identity.identity_id == record.identity_id:
                    return identity
            raise InfisicalError(401, "Failed to authenticate identity: identity not found")

    def _identity_by_id(self, identity_id: str) -> Identity:
        for identity in self._identities.values():
            if identity.identity_id == identity_id:
                return identity
        raise InfisicalError(404, f"Failed to find identity with ID {identity_id}")

    # -- client secrets ----------------------------------------------------------------------

    def _create_client_secret(self, identity_id: str, body: Json) -> Json:
        with self._lock:
            identity = self._identity_by_id(identity_id)
            value = secrets.token_hex(32)
            created = self._add_client_secret(
                identity,
                value,
                description=str(body.get("description", "")),
                num_uses_limit=int(body.get("numUsesLimit", 0)),
                ttl=int(body.get("ttl", 0)),
            )
            return {"clientSecret": value, "clientSecretData": created.data(identity.ua_id)}

    def _list_client_secrets(self, identity_id: str) -> Json:
        with self._lock:
            identity = self._identity_by_id(identity_id)
            return {
                "clientSecretData": [
                    c.data(identity.ua_id) for c in identity.client_secrets if not c.revoked
                ]
            }

    def _client_secret(self, identity_id: str, secret_id: str) -> tuple[Identity, ClientSecret]:
        identity = self._identity_by_id(identity_id)
        for candidate in identity.client_secrets:
            if candidate.id == secret_id:
                return identity, candidate
        raise InfisicalError(404, f"Client secret with ID {secret_id} not found")

    def _get_client_secret(self, identity_id: str, secret_id: str) -> Json:
        with self._lock:
            identity, found = self._client_secret(identity_id, secret_id)
            return {"clientSecretData": found.data(identity.ua_id)}

    def _revoke_client_secret(self, identity_id: str, secret_id: str) -> Json:
        with self._lock:
            identity, found = self._client_secret(identity_id, secret_id)
            if not found.revoked:
                found.revoked = True
                found.updated_at = self.clock()
            return {"clientSecretData": found.data(identity.ua_id)}

    # -- secrets -----------------------------------------------------------------------------

    def _check_access(self, identity: Identity, project: str, action: str) -> None:
        if project not in identity.projects:
            raise InfisicalError(
                403,
                f"You are not allowed to {action} on secrets",
                "PermissionDenied",
                details=[],
            )

    def _list_projects(self, identity: Identity) -> Json:
        """`GET /api/v1/projects`: the projects the identity is a member of, with their
        environments (vendor-apis.md section 4; Infisical's own answer, trimmed)."""
        with self._lock:
            return {"projects": [self._project(p) for p in sorted(identity.projects)]}

    def _project(self, project: str) -> Json:
        slugs = set(DEFAULT_ENVIRONMENTS) | {s.environment for s in self._secrets.values()
                                            if s.project == project}
        order = {slug: i for i, slug in enumerate(DEFAULT_ENVIRONMENTS)}
        envs = sorted(slugs, key=lambda slug: (order.get(slug, len(order)), slug))
        return {"id": project, "_id": project, "name": project, "slug": project,
                "type": "secret-manager", "environments": [
                    {"name": ENVIRONMENT_NAMES.get(slug, slug), "slug": slug,
                     "id": str(uuid.uuid5(_NAMESPACE, f"env:{project}:{slug}"))}
                    for slug in envs]}

    def _secrets_under(
        self, project: str, env: str, path: str, recursive: bool
    ) -> Iterator[StoredSecret]:
        for key in sorted(self._secrets):
            secret = self._secrets[key]
            if secret.project != project or secret.environment != env:
                continue
            if secret.path == path or (
                recursive and (path == "/" or secret.path.startswith(path + "/"))
            ):
                yield secret

    def _list_secrets(
        self, identity: Identity, project: str, env: str, path: str, recursive: bool
    ) -> Json:
        with self._lock:
            self._check_access(identity, project, "read")
            found = self._secrets_under(project, env, path, recursive)
            return {"secrets": [s.api() for s in found], "imports": []}

    def _get_secret(self, identity: Identity, key: SecretKey) -> Json:
        with self._lock:
            self._check_access(identity, key[0], "read")
            secret = self._secrets.get(key)
            if secret is None:
                raise InfisicalError(404, f"Secret with name '{key[3]}' not found")
            return {"secret": secret.api()}

    def _create_secret(self, identity: Identity, key: SecretKey, value: str, comment: str) -> Json:
        with self._lock:
            self._check_access(identity, key[0], "create")
            if key in self._secrets:
                raise InfisicalError(400, "Secret already exist")
            now = self.clock()
            secret = StoredSecret(
                id=self._next_id("secret"),
                project=key[0],
                environment=key[1],
                path=key[2],
                name=key[3],
                value=trim_value(value),
                comment=comment,
                created_at=now,
                updated_at=now,
            )
            self._secrets[key] = secret
            return {"secret": secret.api()}

    def _update_secret(self, identity: Identity, key: SecretKey, body: Json) -> Json:
        with self._lock:
            self._check_access(identity, key[0], "edit")
            secret = self._secrets.get(key)
            if secret is None:
                raise InfisicalError(404, f"Secret with name '{key[3]}' not found")
            new_name = body.get("newSecretName")
            if isinstance(new_name, str) and new_name and new_name != key[3]:
                new_key = (key[0], key[1], key[2], new_name)
                if new_key in self._secrets:
                    raise InfisicalError(400, "Secret with the new name already exist")
                del self._secrets[key]
                secret.name = new_name
                self._secrets[new_key] = secret
            if isinstance(body.get("secretValue"), str):
                secret.value = trim_value(body["secretValue"])
            if isinstance(body.get("secretComment"), str):
                secret.comment = body["secretComment"]
            secret.version += 1
            secret.updated_at = self.clock()
            return {"secret": secret.api()}

    def _delete_secret(self, identity: Identity, key: SecretKey) -> Json:
        with self._lock:
            self._check_access(identity, key[0], "delete")
            secret = self._secrets.pop(key, None)
            if secret is None:
                raise InfisicalError(404, f"Secret with name '{key[3]}' not found")
            return {"secret": secret.api()}


# -- HTTP layer ------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except InfisicalError as exc:
            return error(exc.status, exc.message, exc.name, **exc.extra)

    return wrapper


async def _body(request: Request) -> Json:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise InfisicalError(400, "Body is not valid JSON", "Bad Request") from None
    if not isinstance(data, dict):
        raise InfisicalError(422, [_issue("body", "object", type(data).__name__)])
    return data


def _str_field(data: Json, name: str, issues: list[Json], *, required: bool = True) -> str:
    value = data.get(name)
    if value is None:
        if required:
            issues.append(_issue(name))
        return ""
    if not isinstance(value, str):
        issues.append(_issue(name, "string", type(value).__name__))
        return ""
    return value


def _secret_key(data: Json, project_field: str, name: str, *, v3: bool) -> SecretKey:
    """(project, env, path, name) from query or body fields; 422 or 400 like the vendor."""
    issues: list[Json] = []
    project = _str_field(data, project_field, issues, required=not v3)
    environment = _str_field(data, "environment", issues)
    path = _str_field(data, "secretPath", issues, required=False) or "/"
    if issues:
        raise InfisicalError(422, issues)
    if not project:
        raise InfisicalError(400, "Missing project id or environment")
    return (project, environment, _normalise_path(path), name)


def create_app(state: State) -> Starlette:
    """The Infisical fake as a Starlette app with the shared `/__velvet/` control API."""

    def auth(request: Request) -> Identity:
        return state._authenticate(request.headers.get("authorization"))

    @_guarded
    async def login(request: Request) -> Response:
        body = await _body(request)
        issues: list[Json] = []
        client_id = _str_field(body, "clientId", issues)
        client_secret = _str_field(body, "clientSecret", issues)
        if issues:
            raise InfisicalError(422, issues)
        return json_response(state._login(client_id, client_secret))

    @_guarded
    async def client_secrets(request: Request) -> Response:
        auth(request)
        identity_id = request.path_params["identity_id"]
        if request.method == "POST":
            return json_response(state._create_client_secret(identity_id, await _body(request)))
        return json_response(state._list_client_secrets(identity_id))

    @_guarded
    async def client_secret(request: Request) -> Response:
        auth(request)
        params = request.path_params
        return json_response(state._get_client_secret(params["identity_id"], params["secret_id"]))

    @_guarded
    async def revoke_client_secret(request: Request) -> Response:
        auth(request)
        params = request.path_params
        return json_response(
            state._revoke_client_secret(params["identity_id"], params["secret_id"])
        )

    @_guarded
    async def projects(request: Request) -> Response:
        return json_response(state._list_projects(auth(request)))

    def list_handler(project_field: str, *, v3: bool) -> Handler:
        @_guarded
        async def handler(request: Request) -> Response:
            identity = auth(request)
            query = dict(request.query_params)
            if v3 and "workspaceId" not in query and "workspaceSlug" in query:
                query["workspaceId"] = query["workspaceSlug"]
            if v3 and (not query.get("workspaceId") or not query.get("environment")):
                raise InfisicalError(400, "Missing project id or environment")
            project, env, path, _ = _secret_key(query, project_field, "", v3=v3)
            recursive = query.get("recursive", "false").lower() == "true"
            return json_response(state._list_secrets(identity, project, env, path, recursive))

        return handler

    def one_handler(project_field: str, *, v3: bool) -> Handler:
        @_guarded
        async def handler(request: Request) -> Response:
            identity = auth(request)
            name = request.path_params["name"]
            if request.method == "GET":
                key = _secret_key(dict(request.query_params), project_field, name, v3=v3)
                return json_response(state._get_secret(identity, key))
            body = await _body(request)
            if request.method == "DELETE" and not body:
                body = dict(request.query_params)
            if v3 and "workspaceId" not in body and "projectSlug" in body:
                body["workspaceId"] = body["projectSlug"]
            key = _secret_key(body, project_field, name, v3=v3)
            if request.method == "POST":
                issues: list[Json] = []
                value = _str_field(body, "secretValue", issues)
                comment = _str_field(body, "secretComment", issues, required=False)
                if issues:
                    raise InfisicalError(422, issues)
                return json_response(state._create_secret(identity, key, value, comment))
            if request.method == "PATCH":
                issues = []
                _str_field(body, "secretValue", issues, required=False)
                _str_field(body, "secretComment", issues, required=False)
                _str_field(body, "newSecretName", issues, required=False)
                if issues:
                    raise InfisicalError(422, issues)
                return json_response(state._update_secret(identity, key, body))
            return json_response(state._delete_secret(identity, key))

        return handler

    ua = "/api/v1/auth/universal-auth"
    one_methods = ["GET", "POST", "PATCH", "DELETE"]
    routes: list[BaseRoute] = [
        Route(f"{ua}/login", login, methods=["POST"]),
        Route(
            f"{ua}/identities/{{identity_id}}/client-secrets",
            client_secrets,
            methods=["GET", "POST"],
        ),
        Route(
            f"{ua}/identities/{{identity_id}}/client-secrets/{{secret_id}}",
            client_secret,
            methods=["GET"],
        ),
        Route(
            f"{ua}/identities/{{identity_id}}/client-secrets/{{secret_id}}/revoke",
            revoke_client_secret,
            methods=["POST"],
        ),
        Route("/api/v1/projects", projects, methods=["GET"]),
        Route("/api/v3/secrets/raw", list_handler("workspaceId", v3=True), methods=["GET"]),
        Route(
            "/api/v3/secrets/raw/{name}", one_handler("workspaceId", v3=True), methods=one_methods
        ),
        Route("/api/v4/secrets", list_handler("projectId", v3=False), methods=["GET"]),
        Route("/api/v4/secrets/{name}", one_handler("projectId", v3=False), methods=one_methods),
    ]
    app = build_app(
        "infisical",
        routes,
        error=error,
        state=state,
        limiter=state.limiter,
        reject=_reject(state.limiter),
    )
    app.add_middleware(_RateLimitHeaders, limiter=state.limiter,
                       endpoint=route_template(routes))
    return app


# --- the sandbox's registry: provisioning from a manifest ----------------------------------


class InfisicalFake(registry.Fake):
    """Infisical: Velvet's machine identity, granted every project a manifest's secrets live in."""

    name = "infisical"
    setting = "VELVET_INFISICAL_API_URL"
    targets = ("infisical_secret",)

    def new_state(self) -> State:
        return State()

    def app(self) -> Any:
        return create_app(self.state)

    def bootstrap(self, identity: registry.Identity) -> dict[str, str]:
        self.client_id = str(uuid.uuid4())
        client_secret = secrets.token_hex(32)
        self.state.add_identity(self.client_id, client_secret, [])
        return {"VELVET_INFISICAL_CLIENT_ID": self.client_id,
                "VELVET_INFISICAL_CLIENT_SECRET": client_secret}

    def prepare(self, manifest: Any, identity: registry.Identity) -> None:
        """Velvet's identity may reach every project the manifest's secrets live in."""
        for credential in manifest.credentials:
            for config in (credential.vault, *credential.consumers):
                if config.kind in self.targets:
                    self.state.grant(self.client_id, config.project_id)

    def hold(self, config: Any, value: str) -> None:
        self.state.grant(self.client_id, config.project_id)
        self.state.set_secret(config.project_id, config.environment, config.secret_path,
                              config.name, value)

    def held(self, config: Any) -> str | None:
        value: str | None = self.state.secret_value(config.project_id, config.environment,
                                                    config.secret_path, config.name)
        return value

    def forget(self, config: Any) -> None:
        self.state.delete_secret(config.project_id, config.environment, config.secret_path,
                                 config.name)


registry.register(InfisicalFake)
