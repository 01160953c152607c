"""Fake Cloudflare API token endpoints (vendor-apis.md section 3), mounted at `/client/v4`.

What it reproduces, because adapters depend on it:
- The four-key envelope on every answer (`result: null` on failure), errors keyed by code.
- User tokens (`cfut_…`) under `/user/tokens`, account-owned tokens (`cfat_…`) under
  `/accounts/{account_id}/tokens`; verify succeeds only on the matching family, so an
  account token on `/user/tokens/verify` gets 401 code 1000 although it is valid.
- Managing tokens needs "API Tokens Write" (user) or "Account API Tokens Write" (account) in an
  allow policy, else 403 code 10000; reading needs the Read or Write group.
- Create returns `value` once; PUT replaces everything (a `disabled` token still verifies,
  with status disabled, but authenticates nothing else); roll (`PUT …/value`) kills the old
  value in the same instant and answers a bare string; DELETE answers `{"id"}`.
- Quotas (50 user tokens, 500 per account) and a per-token window of 1200 requests per 5
  minutes with `Ratelimit`/`Ratelimit-Policy` headers and 429 + Retry-After when spent, on
  the limiter's vendor time (`/__velvet/limits` sets its time scale and reports refusals).

Codes the docs do not pin down, chosen here and exported so tests and adapters agree:
VALIDATION_ERROR (1001) for a bad body, QUOTA_EXCEEDED (1002) when a quota is full and
TOKEN_NOT_FOUND (1003, with 404) for an unknown token id.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)
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
from velvet_sandbox.ratelimit import Limiter

BASE_PATH = "/client/v4"

# Permission group ids (fixed, so a manifest or test can name them).
API_TOKENS_WRITE = "686d18d5ac6c441c867cbf6771e58a0a"
API_TOKENS_READ = "0cc3a61731504c89b99ec1be78b77aa0"
ACCOUNT_API_TOKENS_WRITE = "5bc3f8b21c554832afc660159ab75fa4"
ACCOUNT_API_TOKENS_READ = "3e6bfa4b1ce34f7396e7fc1bb3a7d1a8"
ZONE_READ = "c8fed203ed3043cba015a93ad1616f1f"
DNS_READ = "82e64a83756745bbbb1c9c2701bf816b"
DNS_WRITE = "4755a26eedb94da69e1066d98aa820be"
PERMISSION_GROUPS: dict[str, tuple[str, str]] = {
    API_TOKENS_WRITE: ("API Tokens Write", "com.cloudflare.api.user"),
    API_TOKENS_READ: ("API Tokens Read", "com.cloudflare.api.user"),
    ACCOUNT_API_TOKENS_WRITE: ("Account API Tokens Write", "com.cloudflare.api.account"),
    ACCOUNT_API_TOKENS_READ: ("Account API Tokens Read", "com.cloudflare.api.account"),
    ZONE_READ: ("Zone Read", "com.cloudflare.api.account.zone"),
    DNS_READ: ("DNS Read", "com.cloudflare.api.account.zone"),
    DNS_WRITE: ("DNS Write", "com.cloudflare.api.account.zone"),
}

INVALID_TOKEN = 1000
VALIDATION_ERROR = 1001
QUOTA_EXCEEDED = 1002
TOKEN_NOT_FOUND = 1003
AUTHENTICATION_ERROR = 10000
BAD_HEADERS = 6003
NO_ROUTE = 7000
BAD_IDENTIFIER = 7003
RATE_LIMITED = 971

USER_TOKEN_QUOTA = 50
ACCOUNT_TOKEN_QUOTA = 500
RATE_LIMIT_REQUESTS = 1200
RATE_LIMIT_WINDOW_SECONDS = 300
DEFAULT_ACCOUNT_ID = "3f1e0c1b2a4d4e5f8a9b0c1d2e3f4a5b"
USER = "user"  # the owner of user tokens; account tokens are owned by an account id

_VALUE_ALPHABET = string.ascii_letters + string.digits


def envelope(result: Any, *, status: int = 200, messages: list[Json] | None = None,
             result_info: Json | None = None) -> Response:
    body: Json = {"success": True, "errors": [], "messages": messages or [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return json_response(body, status)


def error(status: int, message: str, code: int | None = None) -> Response:
    """A failed envelope. Without a code, one is picked from the status."""
    if code is None:
        code = {400: NO_ROUTE, 401: INVALID_TOKEN, 403: AUTHENTICATION_ERROR, 404: NO_ROUTE,
                405: NO_ROUTE, 429: RATE_LIMITED}.get(status, 1100 if status >= 500 else 1001)
    return json_response({"success": False, "errors": [{"code": code, "message": message}],
                          "messages": [], "result": None}, status)


TokenStatus = Literal["active", "disabled", "expired"]
_STATUS: TypeAdapter[TokenStatus] = TypeAdapter(TokenStatus)


class _Model(StateModel):
    """This fake's state records (control.StateModel: strict, never echoing a seed's input)."""


class PermissionGroup(BaseModel):
    """A policy's group as the caller sent it (other fields kept, as Cloudflare echoes them),
    named by Cloudflare."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)
    id: str
    name: str = ""

    @model_validator(mode="after")
    def _known_name(self) -> PermissionGroup:
        self.name = PERMISSION_GROUPS.get(self.id, ("Unknown", ""))[0]
        return self


class Policy(_Model):
    id: str = ""  # "": a fresh one, as Cloudflare assigns
    effect: Literal["allow", "deny"]
    resources: dict[str, Any]
    permission_groups: list[PermissionGroup]

    @model_validator(mode="after")
    def _fresh_id(self) -> Policy:
        self.id = self.id or uuid.uuid4().hex
        return self


class Token(_Model):
    """A user or account token; its value is shown as a fingerprint."""

    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    name: str
    owner: str  # USER or an account id
    value: Secret
    policies: list[Policy] = []
    status: TokenStatus = "active"
    issued_on: str = Field(default_factory=utc_now)
    modified_on: str = ""  # "": issued_on
    # Usage, not state: a read must not look like a write, so snapshots leave it out.
    last_used_on: str | None = Field(default=None, exclude=True)
    expires_on: str | None = None
    not_before: str | None = None
    condition: Json = {}

    @field_validator("issued_on", "expires_on", "not_before")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_time(value)
        return value

    @model_validator(mode="after")
    def _default_modified(self) -> Token:
        self.modified_on = self.modified_on or self.issued_on
        return self

    def effective_status(self) -> str:
        if self.status == "active" and self.expires_on and _parse_time(self.expires_on) <= (
            time.time()
        ):
            return "expired"
        return self.status

    def usable(self) -> bool:
        if self.effective_status() != "active":
            return False
        return not (self.not_before and _parse_time(self.not_before) > time.time())

    def allows(self, groups: Iterable[str]) -> bool:
        wanted = set(groups)
        return any(policy.effect == "allow" and wanted & {g.id for g in policy.permission_groups}
                   for policy in self.policies)

    def public(self) -> Json:
        return {
            "id": self.id, "name": self.name, "status": self.effective_status(),
            "issued_on": self.issued_on, "modified_on": self.modified_on,
            "last_used_on": self.last_used_on, "expires_on": self.expires_on,
            "not_before": self.not_before,
            "policies": [p.model_dump(mode="json") for p in self.policies],
            "condition": self.condition,
        }


class Snapshot(_Model):
    """The fake's state as `GET /__velvet/state` shows it and `POST /__velvet/seed` merges it:
    tokens keyed by id."""

    user_id: str = ""  # "": keep the fake's own
    accounts: list[str] = []
    tokens: dict[str, Token] = {}

    @model_validator(mode="after")
    def _keys_match(self) -> Snapshot:
        for key, token in self.tokens.items():
            if token.id != key:
                raise ValueError(f"tokens.{key}: the key is not the token's id")
        return self


@dataclass
class _Window:
    started: float
    used: int = 0


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


class CloudflareState(Stored):
    """Tokens (user and account-owned) and per-token rate windows, behind one lock."""

    STORED = ("user_id", "accounts", "_tokens", "_by_value")

    def __init__(self, user_id: str | None = None,
                 account_ids: Iterable[str] = (DEFAULT_ACCOUNT_ID,)) -> None:
        self._lock = threading.RLock()
        # Vendor time (settable time scale), requests in flight and refusals (ratelimit.py).
        self.limiter = Limiter("cloudflare")
        self._initial_user_id = user_id or uuid.uuid4().hex
        self._initial_accounts = list(account_ids)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.user_id = self._initial_user_id
            self.accounts: list[str] = list(self._initial_accounts)
            self._tokens: dict[str, Token] = {}
            self._by_value: dict[str, str] = {}
            self._windows: dict[str, _Window] = {}
            # Every value handed out, live or dead, in order: an ordered set for leak scans.
            self._issued: dict[str, None] = {}

    def snapshot(self, reveal: bool = False) -> Json:
        """The `Snapshot` model: token values as fingerprints unless `reveal=True` (in process
        only), and then `seed(snapshot(reveal=True))` restores it.

        Usage is left out (rate windows, last_used_on): a read must not look like a write.
        """
        with self._lock:
            model = Snapshot(user_id=self.user_id, accounts=sorted(self.accounts),
                             tokens=self._tokens)
            return model.model_dump(mode="json", context={"reveal": reveal})

    def seed(self, data: Json) -> None:
        """Merge a `Snapshot`-shaped document (accounts added, tokens by id; a token's account
        joins the accounts). Raises ValueError (pydantic's ValidationError) if it is
        malformed."""
        model = Snapshot.model_validate(data)
        with self._lock:
            self.user_id = model.user_id or self.user_id
            for account in model.accounts:
                self._add_account(account)
            for token in model.tokens.values():
                replaced = self._tokens.get(token.id)
                if replaced is not None:
                    self._by_value.pop(replaced.value, None)
                self._store(token)

    # --- helpers for tests and the world ----------------------------------------------------

    def add_token(
        self,
        owner: str = USER,
        policies: list[Json] | None = None,
        name: str = "token",
        *,
        status: str = "active",
        value: str | None = None,
    ) -> tuple[str, str]:
        """Create a token owned by "user" or an account id; returns (id, value)."""
        with self._lock:
            token = Token(id=uuid.uuid4().hex, name=name, owner=owner,
                          value=value or _new_value(owner), policies=policies or [],
                          status=status)
            self._store(token)
            return token.id, token.value

    def token_is_live(self, value: str) -> bool:
        """Would this value authenticate right now (exists, active, in its validity window)?"""
        with self._lock:
            token = self._find_value(value)
            return token is not None and token.usable()

    def token_id(self, value: str) -> str | None:
        with self._lock:
            return self._by_value.get(value)

    def token(self, token_id: str) -> Json | None:
        with self._lock:
            found = self._tokens.get(token_id)
            return {**found.public(), "owner": found.owner} if found else None

    def delete_token(self, token_id: str) -> bool:
        with self._lock:
            found = self._tokens.pop(token_id, None)
            if found is None:
                return False
            self._by_value.pop(found.value, None)
            return True

    def set_status(self, token_id: str, status: str) -> None:
        with self._lock:
            self._tokens[token_id].status = _STATUS.validate_python(status)

    def set_rate_limit_remaining(self, remaining: int, token_id: str | None = None) -> None:
        """Spend a token's window (or every token's) down to `remaining`."""
        with self._lock:
            ids = [token_id] if token_id else list(self._tokens)
            for tid in ids:
                self._windows[tid] = _Window(self.limiter.now(),
                                             max(0, RATE_LIMIT_REQUESTS - remaining))

    def token_values(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    # --- used by the routes ------------------------------------------------------------------

    def _find_value(self, value: str) -> Token | None:
        token_id = self._by_value.get(value)
        return self._tokens.get(token_id) if token_id else None

    def _count(self, owner: str) -> int:
        return sum(1 for t in self._tokens.values() if t.owner == owner)

    def _spend(self, token_id: str) -> tuple[bool, int, int]:
        """(allowed, remaining, seconds to window reset) for one request by this token."""
        now = self.limiter.now()
        window = self._windows.get(token_id)
        if window is None or now - window.started >= RATE_LIMIT_WINDOW_SECONDS:
            window = self._windows[token_id] = _Window(now)
        reset_in = max(1, int(window.started + RATE_LIMIT_WINDOW_SECONDS - now + 0.999))
        if window.used >= RATE_LIMIT_REQUESTS:
            return False, 0, reset_in
        window.used += 1
        return True, RATE_LIMIT_REQUESTS - window.used, reset_in

    def _add_account(self, account: str) -> None:
        if account not in self.accounts:
            self.accounts.append(account)

    def _store(self, token: Token) -> None:
        if token.owner != USER:
            self._add_account(token.owner)
        self._tokens[token.id] = token
        self._by_value[token.value] = token.id
        self._issued[token.value] = None

    def _roll(self, token: Token) -> str:
        self._by_value.pop(token.value, None)
        token.value = _new_value(token.owner)
        token.modified_on = utc_now()
        self._store(token)
        return token.value


def _new_value(owner: str) -> str:
    prefix = "cfut_" if owner == USER else "cfat_"
    return prefix + "".join(secrets.choice(_VALUE_ALPHABET) for _ in range(40))


def _validate_policies(policies: object) -> str | None:
    if not isinstance(policies, list) or not policies:
        return "policies must be a non-empty list"
    for policy in policies:
        if not isinstance(policy, dict):
            return "each policy must be an object"
        if policy.get("effect") not in ("allow", "deny"):
            return "policy effect must be allow or deny"
        resources = policy.get("resources")
        if not isinstance(resources, dict) or not resources or not all(
            isinstance(k, str) and k.startswith("com.cloudflare.") for k in resources
        ):
            return "policy resources must map com.cloudflare.* keys"
        groups = policy.get("permission_groups")
        if not isinstance(groups, list) or not groups:
            return "policy permission_groups must be a non-empty list"
        for group in groups:
            if not isinstance(group, dict) or group.get("id") not in PERMISSION_GROUPS:
                return "unknown permission group in policies"
    return None


Handler = Callable[[Request, Token, str], Awaitable[Response]]


class _Api:
    def __init__(self, state: CloudflareState) -> None:
        self.state = state
        self.lock = state._lock

    def endpoint(
        self, handler: Handler, *, need: frozenset[str] | None = None,
        family: str = "user",
    ) -> Callable[[Request], Awaitable[Response]]:
        """Auth, token family, permission and rate limit; `need` None = any valid token."""

        async def run(request: Request) -> Response:
            header = request.headers.get("authorization")
            if header is None:
                return error(400, "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
                             BAD_HEADERS)
            value = bearer_token(header)
            if value is None:
                return error(400, "Invalid format for Authorization header", BAD_HEADERS)
            owner = USER if family == "user" else request.path_params.get("account_id", "")
            with self.lock:
                token = self.state._find_value(value)
                if family == "account" and owner not in self.state.accounts:
                    return error(404, "Could not route to /accounts/" + owner +
                                 ", perhaps your object identifier is invalid?", BAD_IDENTIFIER)
                # A token of the other family is as good as unknown here.
                if token is None or token.owner != owner and not (
                    family == "account" and token.owner == USER and need is not None
                ):
                    return error(401, "Invalid API Token", INVALID_TOKEN)
                verify_only = need is None
                if not verify_only and not token.usable():
                    return error(401, "Invalid API Token", INVALID_TOKEN)
                allowed, remaining, reset_in = self.state._spend(token.id)
                token.last_used_on = utc_now()
            if not allowed:
                self.state.limiter.breach("requests_per_5_minutes")
                response = error(429, "Rate limited. Please wait and consider throttling your "
                                 "request speed", RATE_LIMITED)
                response.headers["Retry-After"] = str(reset_in)
            elif need is not None and not token.allows(need):
                response = error(403, "Authentication error", AUTHENTICATION_ERROR)
            else:
                response = await handler(request, token, owner)
            response.headers["Ratelimit"] = f'"default";r={remaining};t={reset_in}'
            response.headers["Ratelimit-Policy"] = (
                f'"default";q={RATE_LIMIT_REQUESTS};w={RATE_LIMIT_WINDOW_SECONDS}')
            return response

        return run

    async def _body(self, request: Request) -> tuple[Any, Response | None]:
        raw = await request.body()
        if not raw:
            return {}, None
        try:
            return json.loads(raw), None
        except ValueError:
            return None, error(400, "Malformed JSON in request body", VALIDATION_ERROR)

    def _target(self, request: Request, owner: str) -> Token | Response:
        token_id = request.path_params["token_id"]
        if len(token_id) != 32 or any(c not in "0123456789abcdef" for c in token_id):
            return error(400, f"Could not route to {request.url.path}, perhaps your object "
                         "identifier is invalid?", BAD_IDENTIFIER)
        found = self.state._tokens.get(token_id)
        if found is None or found.owner != owner:
            return error(404, "Token not found", TOKEN_NOT_FOUND)
        return found

    # --- endpoints ------------------------------------------------------------------------

    async def verify(self, request: Request, token: Token, owner: str) -> Response:
        status = token.effective_status()
        result = {"id": token.id, "status": status}
        if token.expires_on:
            result["expires_on"] = token.expires_on
        if token.not_before:
            result["not_before"] = token.not_before
        messages = ([{"code": 10000, "message": "This API Token is valid and active",
                      "type": None}] if status == "active" else [])
        return envelope(result, messages=messages)

    async def list_tokens(self, request: Request, token: Token, owner: str) -> Response:
        try:
            page = max(1, int(request.query_params.get("page", "1")))
            per_page = min(50, max(5, int(request.query_params.get("per_page", "20"))))
        except ValueError:
            return error(400, "page and per_page must be integers", VALIDATION_ERROR)
        with self.lock:
            mine = sorted((t for t in self.state._tokens.values() if t.owner == owner),
                          key=lambda t: (t.issued_on, t.id))
            if request.query_params.get("direction") == "desc":
                mine.reverse()
            chunk = mine[(page - 1) * per_page: page * per_page]
            total = len(mine)
            return envelope([t.public() for t in chunk], result_info={
                "page": page, "per_page": per_page, "count": len(chunk),
                "total_count": total, "total_pages": max(1, -(-total // per_page)),
            })

    def _parse_token_body(self, body: Any, *, full: bool) -> Response | Json:
        if not isinstance(body, dict):
            return error(400, "Request body must be a JSON object", VALIDATION_ERROR)
        name = body.get("name")
        if not isinstance(name, str) or not name or len(name) > 120:
            return error(400, "name is required (1-120 characters)", VALIDATION_ERROR)
        problem = _validate_policies(body.get("policies"))
        if problem:
            return error(400, problem, VALIDATION_ERROR)
        if full and body.get("status") not in get_args(TokenStatus):
            return error(400, "status is required: active, disabled or expired",
                         VALIDATION_ERROR)
        for key in ("expires_on", "not_before"):
            if body.get(key) is not None:
                try:
                    _parse_time(str(body[key]))
                except ValueError:
                    return error(400, f"{key} must be an RFC 3339 time", VALIDATION_ERROR)
        return body

    async def create_token(self, request: Request, token: Token, owner: str) -> Response:
        body, bad = await self._body(request)
        if bad:
            return bad
        parsed = self._parse_token_body(body, full=False)
        if isinstance(parsed, Response):
            return parsed
        with self.lock:
            quota = USER_TOKEN_QUOTA if owner == USER else ACCOUNT_TOKEN_QUOTA
            if self.state._count(owner) >= quota:
                return error(400, f"Token quota reached: at most {quota} tokens",
                             QUOTA_EXCEEDED)
            new_id, _ = self.state.add_token(owner, parsed["policies"], parsed["name"])
            created = self.state._tokens[new_id]
            created.expires_on = parsed.get("expires_on")
            created.not_before = parsed.get("not_before")
            created.condition = parsed.get("condition") or {}
            # The only time the value is ever shown.
            return envelope({**created.public(), "value": created.value})

    async def get_token(self, request: Request, token: Token, owner: str) -> Response:
        with self.lock:
            found = self._target(request, owner)
            if isinstance(found, Response):
                return found
            return envelope(found.public())

    async def update_token(self, request: Request, token: Token, owner: str) -> Response:
        body, bad = await self._body(request)
        if bad:
            return bad
        parsed = self._parse_token_body(body, full=True)
        if isinstance(parsed, Response):
            return parsed
        with self.lock:
            found = self._target(request, owner)
            if isinstance(found, Response):
                return found
            # Full replacement: anything not sent is gone, as on the real API.
            found.name = parsed["name"]
            found.policies = [Policy.model_validate(p) for p in parsed["policies"]]
            found.status = parsed["status"]
            found.condition = parsed.get("condition") or {}
            found.expires_on = parsed.get("expires_on")
            found.not_before = parsed.get("not_before")
            found.modified_on = utc_now()
            return envelope(found.public())

    async def delete_token(self, request: Request, token: Token, owner: str) -> Response:
        with self.lock:
            found = self._target(request, owner)
            if isinstance(found, Response):
                return found
            self.state.delete_token(found.id)
            return envelope({"id": found.id})

    async def roll_token(self, request: Request, token: Token, owner: str) -> Response:
        with self.lock:
            found = self._target(request, owner)
            if isinstance(found, Response):
                return found
            return envelope(self.state._roll(found))

    async def permission_groups(self, request: Request, token: Token, owner: str) -> Response:
        groups = [{"id": gid, "name": name, "scopes": [scope]}
                  for gid, (name, scope) in sorted(PERMISSION_GROUPS.items())]
        return envelope(groups)

    def routes(self) -> list[BaseRoute]:
        out: list[BaseRoute] = []
        families = (
            ("user", "/user/tokens", API_TOKENS_READ, API_TOKENS_WRITE),
            ("account", "/accounts/{account_id}/tokens", ACCOUNT_API_TOKENS_READ,
             ACCOUNT_API_TOKENS_WRITE),
        )
        for family, base, read, write in families:
            reads = frozenset({read, write})
            writes = frozenset({write})
            e = self.endpoint
            out += [
                Route(f"{base}/verify", e(self.verify, family=family), methods=["GET"]),
                Route(f"{base}/permission_groups",
                      e(self.permission_groups, need=frozenset(PERMISSION_GROUPS),
                        family=family), methods=["GET"]),
                Route(base, e(self.list_tokens, need=reads, family=family), methods=["GET"]),
                Route(base, e(self.create_token, need=writes, family=family), methods=["POST"]),
                Route(f"{base}/{{token_id}}", e(self.get_token, need=reads, family=family),
                      methods=["GET"]),
                Route(f"{base}/{{token_id}}", e(self.update_token, need=writes, family=family),
                      methods=["PUT"]),
                Route(f"{base}/{{token_id}}", e(self.delete_token, need=writes, family=family),
                      methods=["DELETE"]),
                Route(f"{base}/{{token_id}}/value",
                      e(self.roll_token, need=writes, family=family), methods=["PUT"]),
            ]
        return out


def _control_routes(state: CloudflareState) -> list[BaseRoute]:
    async def add_token(request: Request) -> Response:
        body = await read_json(request) or {}
        token_id, value = state.add_token(body.get("owner", USER), body["policies"],
                                          body.get("name", "token"),
                                          status=body.get("status", "active"))
        # Test-only route: handing the value back is its whole purpose.
        return json_response({"id": token_id, "value": value}, 201)

    async def set_rate_limit(request: Request) -> Response:
        body = await read_json(request) or {}
        state.set_rate_limit_remaining(int(body["remaining"]), body.get("token_id"))
        return json_response({"ok": True})

    return [
        control_route("/tokens", add_token, ["POST"]),
        control_route("/rate-limit", set_rate_limit, ["POST"]),
        token_status_route(state.token_is_live),
    ]


def _fault_or_routing_error(status: int, message: str) -> Response:
    # Starlette's own 404/405 mean "no such route", which Cloudflare answers as 400 code 7000.
    if (status, message) in ((404, "Not Found"), (405, "Method Not Allowed")):
        return error(400, "No route for that URI", NO_ROUTE)
    return error(status, message)


State = CloudflareState


def create_app(state: CloudflareState) -> Starlette:
    return build_app(
        "cloudflare",
        _Api(state).routes(),
        error=_fault_or_routing_error,
        state=state,
        limiter=state.limiter,
        extra_control_routes=_control_routes(state),
        prefix=BASE_PATH,
    )


# --- the sandbox's registry: provisioning from a manifest ----------------------------------


class CloudflareFake(registry.Fake):
    """Cloudflare: API tokens for `cloudflare` credentials, each allowed to manage tokens (the
    vendor mints its successor with it) and to read the account's zones."""

    name = "cloudflare"
    setting = "VELVET_CLOUDFLARE_API_URL"
    api_path = BASE_PATH
    vendors = ("cloudflare",)

    def new_state(self) -> CloudflareState:
        return CloudflareState()

    def app(self) -> Starlette:
        return create_app(self.state)

    def issue(self, credential: Any, identity: registry.Identity) -> registry.Issued:
        options = credential.options
        if options.token_type == "account":
            with self.state._lock:
                self.state._add_account(options.account_id)
            owner, manage = options.account_id, ACCOUNT_API_TOKENS_WRITE
            scope = f"com.cloudflare.api.account.{options.account_id}"
        else:
            owner, manage = USER, API_TOKENS_WRITE
            scope = f"com.cloudflare.api.user.{self.state.user_id}"
        policies = [{"effect": "allow", "resources": {"com.cloudflare.api.account.zone.*": "*"},
                     "permission_groups": [{"id": ZONE_READ}]},
                    {"effect": "allow", "resources": {scope: "*"},
                     "permission_groups": [{"id": manage}]}]
        token_id, value = self.state.add_token(owner, policies, credential.name)
        return registry.Issued(value, token_id, {"TOKEN_ID": token_id})

    def is_live(self, value: str) -> bool:
        return bool(self.state.token_is_live(value))


registry.register(CloudflareFake)
