"""Fake Heroku Platform API (vendor-apis.md section 1).

What it reproduces, because adapters depend on it:
- Bearer auth only (401 `unauthorized`); the version-3 Accept header (406 `not_acceptable`).
- OAuth authorizations: create (201, new `HRKU-` token live at once), list/info (never showing
  the token again), PATCH, DELETE (200 with the object, token dead at once), regenerate (old
  token dead at once). A token sees only its own user's authorizations; managing them needs
  `global` scope.
- Config vars: GET needs read-protected/global, PATCH needs write-protected/global; PATCH
  merges, `null` deletes, keys must match `^\\w+$`, values must be strings (422
  `invalid_params`), answers the complete map, and counts a release and a restart.
- A per-account rate-limit bucket (4500, refilled 75/minute): `RateLimit-Remaining` on every
  authenticated response, 429 `rate_limit` with *no* Retry-After when empty, and
  `GET /account/rate-limits` free of charge. The bucket runs on the limiter's vendor time, so
  `/__velvet/limits` `{"time_scale": 60}` refills it 60 times faster.
- `Range` pagination of the authorization list (`id`, `created_at`) and of `GET /apps` (the
  apps the token's user may use; `id`, `name`): 200 per page unless `max=` asks for up to
  1000, `206 Partial Content` with `Next-Range` while more remain, 416 for a bad Range.
- Deploys (heroku_builds.py): sources, builds, releases and a web dyno that runs the app.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Self, get_args

from pydantic import Field, field_validator, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from velvet_sandbox import registry
from velvet_sandbox.control import (
    Json,
    Secret,
    StateModel,
    Stored,
    bearer_token,
    build_app,
    control_route,
    json_response,
    read_json,
    token_status_route,
    utc_now,
)
from velvet_sandbox.heroku_builds import Deploys
from velvet_sandbox.ratelimit import Limiter

ACCEPT_MEDIA_TYPE = "application/vnd.heroku+json"
Scope = Literal["global", "identity", "read", "write", "read-protected", "write-protected"]
SCOPES: frozenset[str] = frozenset(get_args(Scope))
DEFAULT_RATE_LIMIT = 4500
DEFAULT_REFILL_PER_MINUTE = 75.0

_KEY_RE = re.compile(r"\w+", re.ASCII)
_ERROR_IDS = {
    400: "bad_request",
    401: "unauthorized",
    402: "delinquent",
    403: "forbidden",
    404: "not_found",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    416: "requested_range_not_satisfiable",
    422: "invalid_params",
    429: "rate_limit",
    503: "service_unavailable",
}
_ANY_SCOPE = SCOPES
_APP_READ = frozenset({"global", "read", "write", "read-protected", "write-protected"})
_APP_WRITE = frozenset({"global", "write", "write-protected"})
_CONFIG_READ = frozenset({"global", "read-protected"})
_CONFIG_WRITE = frozenset({"global", "write-protected"})
_MANAGE_AUTHORIZATIONS = frozenset({"global"})


def error(status: int, message: str, error_id: str | None = None, **extra: str) -> Response:
    """Heroku's error body: {"id", "message"} (plus `resource` on some 404s)."""
    body: Json = {"id": error_id or _ERROR_IDS.get(status, "internal_server_error"),
                  "message": message}
    body.update(extra)
    return json_response(body, status)


class _Model(StateModel):
    """This fake's state records (control.StateModel: strict, never echoing a seed's input)."""


class _Dated(_Model):
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = ""  # "": created_at

    @model_validator(mode="after")
    def _default_updated(self) -> Self:
        self.updated_at = self.updated_at or self.created_at
        return self


class User(_Model):
    id: str
    email: str
    name: str = ""  # "": the email's local part
    created_at: str = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _default_name(self) -> User:
        self.name = self.name or self.email.split("@")[0]
        return self

    def public(self) -> Json:
        return {"id": self.id, "email": self.email, "full_name": self.name}


class Authorization(_Dated):
    """A direct authorization; its token is shown as a fingerprint."""

    id: str
    user_id: str
    scope: list[Scope] = ["global"]
    description: str = ""
    token: Secret
    token_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    expires_at: float | None = None  # epoch seconds

    def expires_in(self) -> int | None:
        if self.expires_at is None:
            return None
        return max(0, int(self.expires_at - time.time()))

    def live(self) -> bool:
        return self.expires_at is None or self.expires_at > time.time()


class App(_Dated):
    """An app; its config-var values are shown as fingerprints."""

    id: str
    name: str
    config_vars: dict[str, Secret] = {}
    release_version: int = 1
    restarts: int = 0
    # Emails allowed to use the app; empty means every user (the sandbox's usual case).
    collaborators: list[str] = []

    @field_validator("config_vars")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in value if not _KEY_RE.fullmatch(k))
        if bad:
            raise ValueError(f"config var names must match ^\\w+$: {bad}")
        return value


class Snapshot(_Model):
    """The fake's state as `GET /__velvet/state` shows it and `POST /__velvet/seed` merges it:
    users and authorizations keyed by id, apps by name."""

    users: dict[str, User] = {}
    authorizations: dict[str, Authorization] = {}
    apps: dict[str, App] = {}

    @model_validator(mode="after")
    def _keys_match(self) -> Snapshot:
        for part, rows, key in (("users", self.users, "id"),
                                ("authorizations", self.authorizations, "id"),
                                ("apps", self.apps, "name")):
            for k, row in rows.items():
                if getattr(row, key) != k:
                    raise ValueError(f"{part}.{k}: the key is not the row's {key}")
        return self


@dataclass
class _Bucket:
    remaining: float
    updated: float
    refill_per_minute: float

    def refill(self, now: float) -> None:
        gained = (now - self.updated) * self.refill_per_minute / 60
        self.remaining = min(float(DEFAULT_RATE_LIMIT), self.remaining + gained)
        self.updated = now


class HerokuState(Stored):
    """Users, authorizations, apps and rate-limit buckets, behind one lock."""

    STORED = ("_users", "_auths", "_by_token", "_apps")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # Vendor time (settable time scale), requests in flight and refusals (ratelimit.py).
        self.limiter = Limiter("heroku")
        self.deploys = Deploys(self)
        self.reset()

    # --- lifecycle ------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._users: dict[str, User] = {}
            self._auths: dict[str, Authorization] = {}
            self._by_token: dict[str, str] = {}
            self._apps: dict[str, App] = {}
            self._buckets: dict[str, _Bucket] = {}
            self._default_refill = DEFAULT_REFILL_PER_MINUTE
            # Every token handed out, live or dead, in order: an ordered set for leak scans.
            self._issued: dict[str, None] = {}
            self.deploys.reset()

    def snapshot(self, reveal: bool = False) -> Json:
        """The `Snapshot` model: tokens and config-var values as fingerprints unless
        `reveal=True` (in process only), and then `seed(snapshot(reveal=True))` restores it.

        Rate-limit buckets are left out: reads spend them, and they are traffic, not state.
        """
        with self._lock:
            model = Snapshot(users=self._users, authorizations=self._auths, apps=self._apps)
            return model.model_dump(mode="json", context={"reveal": reveal})

    def seed(self, data: Json) -> None:
        """Merge a `Snapshot`-shaped document (users and authorizations by id, apps by name).
        Raises ValueError (pydantic's ValidationError) if it is malformed or an authorization
        names a user the fake does not have."""
        model = Snapshot.model_validate(data)
        with self._lock:
            for auth in model.authorizations.values():
                if auth.user_id not in model.users and auth.user_id not in self._users:
                    raise ValueError(f"authorizations.{auth.id}.user_id: no such user")
            self._users.update(model.users)
            self._apps.update(model.apps)
            for auth in model.authorizations.values():
                replaced = self._auths.get(auth.id)
                if replaced is not None:
                    self._by_token.pop(replaced.token, None)
                self._store(auth)

    # --- helpers for tests and the world ----------------------------------------------------

    def add_user(self, email: str, name: str | None = None) -> User:
        with self._lock:
            user = User(id=str(uuid.uuid4()), email=email, name=name or "")
            self._users[user.id] = user
            return user

    def user_by_email(self, email: str) -> User | None:
        with self._lock:
            return next((u for u in self._users.values() if u.email == email), None)

    def add_authorization(
        self,
        user: User | str,
        scope: Iterable[str] = ("global",),
        description: str = "",
        *,
        expires_in: int | None = None,
        token: str | None = None,
    ) -> tuple[str, str]:
        """Create a direct authorization for `user` (object or email); returns (id, token)."""
        with self._lock:
            owner = user if isinstance(user, User) else (
                self.user_by_email(user) or self.add_user(user))
            auth = Authorization(
                id=str(uuid.uuid4()), user_id=owner.id, scope=list(scope),
                description=description, token=token or _new_token(),
                expires_at=time.time() + expires_in if expires_in else None,
            )
            self._store(auth)
            return auth.id, auth.token

    def token_is_live(self, token: str) -> bool:
        with self._lock:
            return self._lookup(token) is not None

    def authorization_id(self, token: str) -> str | None:
        with self._lock:
            return self._by_token.get(token)

    def authorization_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._auths)

    def revoke_authorization(self, auth_id: str) -> bool:
        with self._lock:
            auth = self._auths.pop(auth_id, None)
            if auth is None:
                return False
            self._by_token.pop(auth.token, None)
            return True

    def add_app(
        self, name: str, config_vars: dict[str, str] | None = None,
        collaborators: Iterable[str] = (),
    ) -> App:
        with self._lock:
            app = App(id=str(uuid.uuid4()), name=name, config_vars=dict(config_vars or {}),
                      collaborators=list(collaborators))
            self._apps[name] = app
            return app

    def config_vars(self, app: str) -> dict[str, str]:
        with self._lock:
            return dict(self._apps[app].config_vars)

    def config_var(self, app: str, var: str) -> str | None:
        with self._lock:
            found = self._apps.get(app)
            return found.config_vars.get(var) if found else None

    def set_config_vars(self, app: str, values: dict[str, str | None]) -> dict[str, str]:
        """Merge like PATCH does (null deletes), without spending rate limit or a restart."""
        with self._lock:
            target = self._apps[app]
            for key, value in values.items():
                if value is None:
                    target.config_vars.pop(key, None)
                else:
                    target.config_vars[key] = str(value)
            return dict(target.config_vars)

    def app_info(self, app: str) -> Json:
        """Release version and restart count: lets a test prove a PATCH restarted dynos."""
        with self._lock:
            found = self._apps[app]
            return {"release_version": found.release_version, "restarts": found.restarts}

    def set_rate_limit(
        self, remaining: int, *, email: str | None = None,
        refill_per_minute: float | None = None,
    ) -> None:
        """Set the bucket of one user (or every user, and the default for new ones)."""
        with self._lock:
            now = self.limiter.now()
            users = [u for u in self._users.values() if email is None or u.email == email]
            if email is not None and not users:
                raise KeyError(email)
            if email is None and refill_per_minute is not None:
                self._default_refill = float(refill_per_minute)
            for user in users:
                bucket = self._bucket(user.id, now)
                bucket.remaining = float(max(0, min(remaining, DEFAULT_RATE_LIMIT)))
                bucket.updated = now
                if refill_per_minute is not None:
                    bucket.refill_per_minute = float(refill_per_minute)

    def rate_limit_remaining(self, email: str) -> int:
        with self._lock:
            user = self.user_by_email(email)
            if user is None:
                raise KeyError(email)
            return self._peek(user.id)

    def token_values(self) -> list[str]:
        """Every token this fake ever issued, live or dead (for leak scans)."""
        with self._lock:
            return list(self._issued)

    # --- used by the routes ------------------------------------------------------------------

    def _lookup(self, token: str) -> tuple[Authorization, User] | None:
        auth_id = self._by_token.get(token)
        auth = self._auths.get(auth_id) if auth_id else None
        if auth is None or not auth.live():
            return None
        return auth, self._users[auth.user_id]

    def _bucket(self, user_id: str, now: float) -> _Bucket:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = _Bucket(float(DEFAULT_RATE_LIMIT), now, self._default_refill)
            self._buckets[user_id] = bucket
        bucket.refill(now)
        return bucket

    def _peek(self, user_id: str) -> int:
        return int(self._bucket(user_id, self.limiter.now()).remaining)

    def _spend(self, user_id: str) -> int | None:
        """One request's worth; None when the bucket is empty."""
        bucket = self._bucket(user_id, self.limiter.now())
        if bucket.remaining < 1:
            return None
        bucket.remaining -= 1
        return int(bucket.remaining)

    def _store(self, auth: Authorization) -> None:
        self._auths[auth.id] = auth
        self._by_token[auth.token] = auth.id
        self._issued[auth.token] = None

    def _regenerate(self, auth: Authorization) -> None:
        self._by_token.pop(auth.token, None)
        auth.token, auth.token_id = _new_token(), str(uuid.uuid4())
        auth.updated_at = utc_now()
        self._store(auth)

    def _authorization_json(self, auth: Authorization, *, with_token: bool) -> Json:
        # The token is shown on create and regenerate only; adapters must capture it there.
        return {
            "id": auth.id,
            "description": auth.description,
            "scope": list(auth.scope),
            "created_at": auth.created_at,
            "updated_at": auth.updated_at,
            "access_token": {"id": auth.token_id, "expires_in": auth.expires_in(),
                             "token": auth.token if with_token else None},
            "refresh_token": None,
            "client": None,
            "grant": None,
            "session": None,
            "user": self._users[auth.user_id].public(),
        }

    def _find_app(self, key: str) -> App | None:
        return self._apps.get(key) or next((a for a in self._apps.values() if a.id == key), None)


def _new_token() -> str:
    return f"HRKU-{uuid.uuid4()}"


def _accepts_v3(header: str) -> bool:
    for item in header.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if media.lower() == ACCEPT_MEDIA_TYPE and any(
            p.replace(" ", "").lower().startswith("version=3") for p in params
        ):
            return True
    return False


Handler = Callable[[Request, Authorization, User], Awaitable[Response]]


class _Api:
    """The vendor routes; `_endpoint` is the one place auth, scope and rate limit happen."""

    def __init__(self, state: HerokuState) -> None:
        self.state = state
        self.lock = state._lock

    def endpoint(
        self, handler: Handler, scopes: frozenset[str], *, free: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if not _accepts_v3(request.headers.get("accept", "")):
                return error(406, "The requested API version is not available. Use "
                             "'Accept: application/vnd.heroku+json; version=3'.")
            token = bearer_token(request.headers.get("authorization"))
            with self.lock:
                found = self.state._lookup(token) if token else None
                if found is None:
                    return error(401, "Invalid credentials provided.")
                auth, user = found
                remaining = (self.state._peek(user.id) if free
                             else self.state._spend(user.id))
            if remaining is None:
                self.state.limiter.breach("bucket")
                response = error(429, "Your account reached the API rate limit\n"
                                 "Please wait a few minutes before making new requests")
                response.headers["RateLimit-Remaining"] = "0"
                return response
            if not scopes & set(auth.scope):
                response = error(403, "This OAuth authorization does not have the scope "
                                 "required for this request.")
            else:
                response = await handler(request, auth, user)
            response.headers["RateLimit-Remaining"] = str(remaining)
            return response

        return run

    async def _body(self, request: Request) -> tuple[Any, Response | None]:
        raw = await request.body()
        if not raw:
            return {}, None
        try:
            return json.loads(raw), None
        except ValueError:
            return None, error(400, "Invalid JSON in request body.")

    # --- account ---------------------------------------------------------------------------

    async def account(self, request: Request, auth: Authorization, user: User) -> Response:
        return json_response({
            "id": user.id, "email": user.email, "name": user.name,
            "created_at": user.created_at, "updated_at": user.created_at,
            "last_login": user.created_at, "verified": True,
            "two_factor_authentication": False, "federated": False, "allow_tracking": False,
            "beta": False, "suspended_at": None, "delinquent_at": None, "default_team": None,
            "default_organization": None, "identity_provider": None, "sms_number": None,
            "country_of_residence": None,
        })

    async def rate_limits(self, request: Request, auth: Authorization, user: User) -> Response:
        with self.lock:
            return json_response({"remaining": self.state._peek(user.id)})

    # --- oauth authorizations ------------------------------------------------------------------

    def _own(self, auth_id: str, user: User) -> Authorization | None:
        found = self.state._auths.get(auth_id)
        return found if found is not None and found.user_id == user.id else None

    async def create_authorization(
        self, request: Request, auth: Authorization, user: User
    ) -> Response:
        body, bad = await self._body(request)
        if bad:
            return bad
        if not isinstance(body, dict):
            return error(422, "Request body must be a JSON object.")
        scope, description = body.get("scope"), body.get("description", "")
        expires_in = body.get("expires_in")
        if (not isinstance(scope, list) or not scope
                or not all(isinstance(s, str) and s in SCOPES for s in scope)):
            return error(422, "Invalid scope; expected a list of: " + ", ".join(sorted(SCOPES)))
        if description is not None and not isinstance(description, str):
            return error(422, "Invalid description.")
        if expires_in is not None and (
            not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0
        ):
            return error(422, "Invalid expires_in.")
        with self.lock:
            new_id, _ = self.state.add_authorization(
                user, scope, description or "", expires_in=expires_in)
            created = self.state._auths[new_id]
            return json_response(self.state._authorization_json(created, with_token=True), 201)

    async def list_authorizations(
        self, request: Request, auth: Authorization, user: User
    ) -> Response:
        with self.lock:
            mine = [a for a in self.state._auths.values() if a.user_id == user.id]
            return _ranged(request, mine, ("id", "created_at"),
                           lambda a: self.state._authorization_json(a, with_token=False))

    async def authorization_info(
        self, request: Request, auth: Authorization, user: User
    ) -> Response:
        with self.lock:
            found = self._own(request.path_params["auth_id"], user)
            if found is None:
                return _auth_not_found()
            return json_response(self.state._authorization_json(found, with_token=False))

    async def update_authorization(
        self, request: Request, auth: Authorization, user: User
    ) -> Response:
        body, bad = await self._body(request)
        if bad:
            return bad
        if not isinstance(body, dict) or not isinstance(body.get("description", ""), str):
            return error(422, "Invalid description.")
        with self.lock:
            found = self._own(request.path_params["auth_id"], user)
            if found is None:
                return _auth_not_found()
            if "description" in body:
                found.description = body["description"]
                found.updated_at = utc_now()
            return json_response(self.state._authorization_json(found, with_token=False))

    async def delete_authorization(
        self, request: Request, auth: Authorization, user: User
    ) -> Response:
        with self.lock:
            found = self._own(request.path_params["auth_id"], user)
            if found is None:
                return _auth_not_found()
            body = self.state._authorization_json(found, with_token=False)
            self.state.revoke_authorization(found.id)
            return json_response(body)

    async def regenerate(self, request: Request, auth: Authorization, user: User) -> Response:
        with self.lock:
            found = self._own(request.path_params["auth_id"], user)
            if found is None:
                return _auth_not_found()
            self.state._regenerate(found)
            return json_response(self.state._authorization_json(found, with_token=True))

    # --- apps ---------------------------------------------------------------------------------

    def _app(self, request: Request, user: User) -> App | Response:
        app = self.state._find_app(request.path_params["app"])
        if app is None:
            return error(404, "Couldn't find that app.", resource="app")
        if app.collaborators and user.email not in app.collaborators:
            return error(403, f"You do not have access to the app {app.name}.")
        return app

    async def list_apps(self, request: Request, auth: Authorization, user: User) -> Response:
        """The apps this user may use (collaborator, or an app open to every user)."""
        with self.lock:
            visible = [a for a in self.state._apps.values()
                       if not a.collaborators or user.email in a.collaborators]
            return _ranged(request, visible, ("id", "name"),
                           lambda a: self._app_json(a, user))

    async def app_info(self, request: Request, auth: Authorization, user: User) -> Response:
        with self.lock:
            app = self._app(request, user)
            if isinstance(app, Response):
                return app
            return json_response(self._app_json(app, user))

    def _app_json(self, app: App, user: User) -> Json:
        return {
            "id": app.id, "name": app.name, "created_at": app.created_at,
            "updated_at": app.updated_at, "released_at": app.updated_at,
            "maintenance": False, "owner": {"id": user.id, "email": user.email},
            "team": None, "region": {"id": "59accabd-516d-4f0e-83e6-6e3757701145",
                                     "name": "us"},
            "stack": {"id": "ee582d3c-717d-4a57-ba5f-8b3a39f3a817", "name": "heroku-24"},
            "web_url": self.state.deploys.web_url(app.name),
        }

    async def get_config(self, request: Request, auth: Authorization, user: User) -> Response:
        with self.lock:
            app = self._app(request, user)
            if isinstance(app, Response):
                return app
            return json_response(dict(app.config_vars))

    async def patch_config(self, request: Request, auth: Authorization, user: User) -> Response:
        body, bad = await self._body(request)
        if bad:
            return bad
        with self.lock:
            app = self._app(request, user)
            if isinstance(app, Response):
                return app
            if not isinstance(body, dict):
                return error(422, "Config vars must be a JSON object.")
            for key, value in body.items():
                if not _KEY_RE.fullmatch(key):
                    return error(422, f"Invalid config var name {key!r}; names must match "
                                 "^\\w+$.")
                if value is not None and not isinstance(value, str):
                    return error(422, f"Config var {key} must be a string or null.")
            if body:
                self.state.set_config_vars(app.name, body)
                # A config change is a new release, and Heroku restarts the dynos for it.
                app.release_version += 1
                app.restarts += 1
                app.updated_at = utc_now()
            response = json_response(dict(app.config_vars))
        if body:
            self.state.deploys.restart(app.name)
        return response

    # --- deploys (heroku_builds.py) -----------------------------------------------------------

    async def create_source(self, request: Request, auth: Authorization, user: User
                            ) -> Response:
        return await self.state.deploys.create_source(request, _base(request))

    async def create_build(self, request: Request, auth: Authorization, user: User
                           ) -> Response:
        body, bad = await self._body(request)
        if bad:
            return bad
        with self.lock:
            app = self._app(request, user)
            if isinstance(app, Response):
                return app
            return self.state.deploys.create_build(
                app.name, app.id, {"email": user.email, "id": user.id}, body, _base(request))

    async def builds(self, request: Request, auth: Authorization, user: User) -> Response:
        with self.lock:
            app = self._app(request, user)
            if isinstance(app, Response):
                return app
            return self.state.deploys.build_json(app.name, request.path_params.get("build_id"),
                                                 _base(request))

    async def dynos(self, request: Request, auth: Authorization, user: User) -> Response:
        with self.lock:
            app = self._app(request, user)
            if isinstance(app, Response):
                return app
            name, app_id = app.name, app.id
        return self.state.deploys.dynos_json(name, app_id)

    async def restart_dynos(self, request: Request, auth: Authorization, user: User) -> Response:
        with self.lock:
            app = self._app(request, user)
            if isinstance(app, Response):
                return app
            app.restarts += 1
            return json_response({}, 202)

    def routes(self) -> list[BaseRoute]:
        e = self.endpoint
        return [
            Route("/account", e(self.account, _ANY_SCOPE), methods=["GET"]),
            Route("/account/rate-limits", e(self.rate_limits, _ANY_SCOPE, free=True),
                  methods=["GET"]),
            Route("/oauth/authorizations", e(self.create_authorization, _MANAGE_AUTHORIZATIONS),
                  methods=["POST"]),
            Route("/oauth/authorizations", e(self.list_authorizations, _MANAGE_AUTHORIZATIONS),
                  methods=["GET"]),
            Route("/oauth/authorizations/{auth_id}",
                  e(self.authorization_info, _MANAGE_AUTHORIZATIONS), methods=["GET"]),
            Route("/oauth/authorizations/{auth_id}",
                  e(self.update_authorization, _MANAGE_AUTHORIZATIONS), methods=["PATCH"]),
            Route("/oauth/authorizations/{auth_id}",
                  e(self.delete_authorization, _MANAGE_AUTHORIZATIONS), methods=["DELETE"]),
            Route("/oauth/authorizations/{auth_id}/actions/regenerate-tokens",
                  e(self.regenerate, _MANAGE_AUTHORIZATIONS), methods=["POST"]),
            Route("/apps", e(self.list_apps, _APP_READ), methods=["GET"]),
            Route("/apps/{app}", e(self.app_info, _APP_READ), methods=["GET"]),
            Route("/apps/{app}/config-vars", e(self.get_config, _CONFIG_READ), methods=["GET"]),
            Route("/apps/{app}/config-vars", e(self.patch_config, _CONFIG_WRITE),
                  methods=["PATCH"]),
            Route("/apps/{app}/dynos", e(self.restart_dynos, _APP_WRITE), methods=["DELETE"]),
            Route("/apps/{app}/dynos", e(self.dynos, _APP_READ), methods=["GET"]),
            Route("/sources", e(self.create_source, _APP_WRITE), methods=["POST"]),
            Route("/apps/{app}/builds", e(self.create_build, _APP_WRITE), methods=["POST"]),
            Route("/apps/{app}/builds", e(self.builds, _APP_READ), methods=["GET"]),
            Route("/apps/{app}/builds/{build_id}", e(self.builds, _APP_READ), methods=["GET"]),
            Route("/apps/{app}/dynos/{dyno}", e(self.restart_dynos, _APP_WRITE),
                  methods=["DELETE"]),
        ]


PAGE_DEFAULT = 200  # Heroku's default page size; a Range may ask for up to PAGE_MAX
PAGE_MAX = 1000
_RANGE = re.compile(r"^\s*(\w+)\s*(\])?([^.;\s]*)\s*\.\.\s*([^;\s]*)\s*(;.*)?$")


def _parse_range(header: str | None,
                 fields: tuple[str, ...]) -> tuple[str, str, bool, int, bool] | None:
    """Heroku's `Range: <field> [<start>]..[<end>]; max=N, order=asc|desc` (a `]` before the
    start excludes it, as a Next-Range does) over one of the listing's `fields` (its
    Accept-Ranges); (field, start, exclusive, max, desc), None if bad. No header: the first
    field, ascending, PAGE_DEFAULT a page.
    """
    if header is None or not header.strip():
        return fields[0], "", False, PAGE_DEFAULT, False
    match = _RANGE.match(header)
    if match is None or match.group(1) not in fields:
        return None
    field_name, exclusive, start, _end, params = match.groups()
    page_max, descending = PAGE_DEFAULT, False
    for param in (params or "").lstrip(";").replace(";", ",").split(","):
        key, _, value = (p.strip() for p in param.partition("="))
        if key == "max":
            if not value.isdigit() or not 1 <= int(value) <= PAGE_MAX:
                return None
            page_max = int(value)
        elif key == "order":
            if value not in ("asc", "desc"):
                return None
            descending = value == "desc"
        elif key:
            return None
    return field_name, start, exclusive is not None, page_max, descending


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _ranged(request: Request, items: Iterable[Any], fields: tuple[str, ...],
            render: Callable[[Any], Json]) -> Response:
    """One page of a listing, as Heroku pages them: sorted on the Range's field, `206 Partial
    Content` with `Next-Range` while more remain, `Content-Range` naming the page, 416 for a
    Range the listing does not accept (`Accept-Ranges` says which)."""
    parsed = _parse_range(request.headers.get("range"), fields)
    if parsed is None:
        response = error(416, f"Invalid Range header; expected e.g. '{fields[0]} ..; max=200' "
                         f"(ranges: {', '.join(fields)}).")
        response.headers["Accept-Ranges"] = ", ".join(fields)
        return response
    field_name, start, exclusive, page_max, descending = parsed

    def key(item: Any) -> str:
        return str(getattr(item, field_name))

    rows = sorted(items, key=lambda i: (key(i), i.id), reverse=descending)
    if start:
        rows = [i for i in rows if (key(i) < start if descending else key(i) > start)
                or (not exclusive and key(i) == start)]
    page, more = rows[:page_max], len(rows) > page_max
    response = json_response([render(i) for i in page], 206 if more else 200)
    response.headers["Accept-Ranges"] = ", ".join(fields)
    if page:
        response.headers["Content-Range"] = f"{field_name} {key(page[0])}..{key(page[-1])}"
    if more:
        order = "; order=desc" if descending else ""
        response.headers["Next-Range"] = (
            f"{field_name} ]{key(page[-1])}..; max={page_max}{order}")
    return response


def _auth_not_found() -> Response:
    return error(404, "Couldn't find that authorization.", resource="oauth_authorization")


def _control_routes(state: HerokuState) -> list[BaseRoute]:
    """Operator/test shortcuts that real Heroku does through the dashboard or not at all."""
    async def add_user(request: Request) -> Response:
        body = await read_json(request) or {}
        user = state.user_by_email(body["email"]) or state.add_user(body["email"],
                                                                     body.get("name"))
        return json_response(user.public(), 201)

    async def add_authorization(request: Request) -> Response:
        body = await read_json(request) or {}
        auth_id, token = state.add_authorization(
            body["email"], body.get("scope", ["global"]), body.get("description", ""),
            expires_in=body.get("expires_in"))
        # Test-only route: handing the token back is its whole purpose.
        return json_response({"id": auth_id, "token": token}, 201)

    async def add_app(request: Request) -> Response:
        body = await read_json(request) or {}
        app = state.add_app(body["name"], body.get("config_vars"), body.get("collaborators", ()))
        return json_response({"id": app.id, "name": app.name}, 201)

    async def get_rate_limits(request: Request) -> Response:
        with state._lock:
            return json_response({u.email: state._peek(u.id) for u in state._users.values()})

    async def set_rate_limits(request: Request) -> Response:
        body = await read_json(request) or {}
        state.set_rate_limit(int(body["remaining"]), email=body.get("email"),
                             refill_per_minute=body.get("refill_per_minute"))
        return json_response({"ok": True})

    return [
        control_route("/users", add_user, ["POST"]),
        control_route("/authorizations", add_authorization, ["POST"]),
        control_route("/apps", add_app, ["POST"]),
        control_route("/rate-limits", get_rate_limits, ["GET"]),
        control_route("/rate-limits", set_rate_limits, ["POST"]),
        # S3's stand-in for the presigned source URLs, and a build's output stream
        control_route("/sources/{source_id}", state.deploys.blob, ["GET", "PUT"]),
        control_route("/builds/{build_id}/output", _output(state), ["GET"]),
        token_status_route(state.token_is_live),
    ]


def _output(state: HerokuState) -> Callable[[Request], Awaitable[Response]]:
    async def output(request: Request) -> Response:
        return state.deploys.output(request)

    return output


State = HerokuState


def create_app(state: HerokuState) -> Starlette:
    return build_app(
        "heroku",
        _Api(state).routes(),
        error=error,
        state=state,
        extra_control_routes=_control_routes(state),
        limiter=state.limiter,
    )


# --- the sandbox's registry: provisioning from a manifest ----------------------------------


class HerokuFake(registry.Fake):
    """Heroku: OAuth authorizations for `heroku` credentials, config vars for consumers."""

    name = "heroku"
    setting = "VELVET_HEROKU_API_URL"
    vendors = ("heroku",)
    targets = ("heroku_config_var",)

    def new_state(self) -> HerokuState:
        return HerokuState()

    def app(self) -> Starlette:
        return create_app(self.state)

    def bootstrap(self, identity: registry.Identity) -> dict[str, str]:
        bot = self.state.add_user(identity.bot_email, "Velvet bot")
        # Least privilege: the bot writes and reads config vars; it cannot mint authorizations.
        _, token = self.state.add_authorization(bot, ["read-protected", "write-protected"],
                                                "HK_VELVET_BOOTSTRAP")
        return {"VELVET_HEROKU_TOKEN": token}

    def issue(self, credential: Any, identity: registry.Identity) -> registry.Issued:
        owner = identity.owners.get(credential.name) or registry.owner_email(credential.name)
        auth_id, token = self.state.add_authorization(owner, credential.options.scope,
                                                      credential.name)
        return registry.Issued(token, auth_id, {"AUTH_ID": auth_id})

    def is_live(self, value: str) -> bool:
        return bool(self.state.token_is_live(value))

    def hold(self, config: Any, value: str) -> None:
        if self.state._find_app(config.app) is None:
            self.state.add_app(config.app)
        self.state.set_config_vars(config.app, {config.var: value})

    def held(self, config: Any) -> str | None:
        value: str | None = self.state.config_var(config.app, config.var)
        return value


registry.register(HerokuFake)
