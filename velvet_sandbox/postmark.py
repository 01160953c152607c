"""Fake Postmark API (vendor-apis.md section 2).

What it reproduces, because adapters depend on it:
- `X-Postmark-Server-Token` / `X-Postmark-Account-Token` (header names case-insensitive) and a
  required `Accept: application/json` (422 ErrorCode 409 without it).
- 401 ErrorCode 10 for a missing or unknown token, and for the wrong kind of token (an account
  token on `/server`, a server token on `/servers`).
- `GET /server` lists the server's tokens in `ApiTokens`; `GET /servers` and
  `GET /servers/{id}` (account token); `POST /email`, recorded in an outbox for tests.
- No API to create or delete a token, as on the real service: the operator's dashboard actions
  are control routes (`POST /__velvet/servers/{id}/tokens`, `DELETE /__velvet/tokens/{token}`).
  A server holds at most three tokens.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import Field, model_validator
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
    build_app,
    control_route,
    json_response,
    read_json,
    token_status_route,
    utc_now,
)

MAX_TOKENS_PER_SERVER = 3
MAX_ACCOUNT_TOKENS = 3
TEST_TOKEN = "POSTMARK_API_TEST"  # accepted by /email as a dry-run server token

BAD_TOKEN = 10
INVALID_REQUEST = 300
JSON_REQUIRED = 409
SERVER_QUERY_ERROR = 600
SERVER_NOT_FOUND = 601

_FIRST_SERVER_ID = 1_000_001
_NO_TOKEN = ("No Account or Server API tokens were supplied in the HTTP headers. Please add a "
             "header for either X-Postmark-Server-Token or X-Postmark-Account-Token.")
_BAD_SERVER_TOKEN = ("The Server Token you provided in the X-Postmark-Server-Token request "
                     "header was invalid. Please verify that you are using a valid token.")
_BAD_ACCOUNT_TOKEN = ("The Account Token you provided in the X-Postmark-Account-Token request "
                      "header was invalid. Please verify that you are using a valid token.")


def error(status: int, message: str, code: int | None = None) -> Response:
    """Postmark's error body: {"ErrorCode", "Message"}."""
    if code is None:
        code = {401: BAD_TOKEN, 422: INVALID_REQUEST}.get(status, 0)
    return json_response({"ErrorCode": code, "Message": message}, status)


class _Model(StateModel):
    """This fake's state records (control.StateModel: strict, never echoing a seed's input)."""


class Server(_Model):
    """A server; its tokens are shown as fingerprints."""

    id: int
    name: str
    tokens: list[Secret] = Field([], max_length=MAX_TOKENS_PER_SERVER)
    color: str = "Purple"
    delivery_type: Literal["Live", "Sandbox"] = "Live"

    def public(self) -> Json:
        inbound_hash = uuid.uuid5(uuid.NAMESPACE_URL, f"postmark/{self.id}").hex
        return {
            "ID": self.id, "Name": self.name,
            "ApiTokens": list(self.tokens),
            "Color": self.color, "SmtpApiActivated": True, "RawEmailEnabled": False,
            "DeliveryType": self.delivery_type,
            "ServerLink": f"https://account.postmarkapp.com/servers/{self.id}/streams",
            "InboundAddress": f"{inbound_hash}@inbound.postmarkapp.com",
            "InboundHookUrl": "", "BounceHookUrl": "", "OpenHookUrl": "",
            "DeliveryHookUrl": "", "ClickHookUrl": "", "PostFirstOpenOnly": False,
            "TrackOpens": False, "TrackLinks": "None", "InboundDomain": "",
            "InboundHash": inbound_hash, "InboundSpamThreshold": 0,
            "IncludeBounceContentInHook": False, "EnableSmtpApiErrorHooks": False,
        }


class Message(_Model):
    """An e-mail accepted by `POST /email`, as the outbox keeps it."""

    MessageID: str
    ServerID: int
    From: str
    To: str
    Subject: str | None = None
    TextBody: str | None = None
    HtmlBody: str | None = None
    MessageStream: str = "outbound"
    SubmittedAt: str


class Snapshot(_Model):
    """The fake's state as `GET /__velvet/state` shows it and `POST /__velvet/seed` merges it:
    servers keyed by id; account tokens are shown as fingerprints."""

    servers: dict[str, Server] = {}
    account_tokens: list[Secret] = Field([], max_length=MAX_ACCOUNT_TOKENS)
    outbox: list[Message] = []

    @model_validator(mode="after")
    def _keys_match(self) -> Snapshot:
        for key, server in self.servers.items():
            if str(server.id) != key:
                raise ValueError(f"servers.{key}: the key is not the server's id")
        return self


class PostmarkState(Stored):
    """Servers with their tokens, account tokens and the outbox, behind one lock."""

    STORED = ("_servers", "_account_tokens", "_outbox")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._servers: dict[int, Server] = {}
            self._account_tokens: list[str] = []
            self._outbox: list[Message] = []
            # Every token handed out, live or dead, in order: an ordered set for leak scans.
            self._issued: dict[str, None] = {}
            self._next_id = _FIRST_SERVER_ID

    def snapshot(self, reveal: bool = False) -> Json:
        """The `Snapshot` model: tokens as fingerprints unless `reveal=True` (in process only),
        and then `seed(snapshot(reveal=True))` restores it."""
        with self._lock:
            model = Snapshot(servers={str(s.id): s for s in self._servers.values()},
                             account_tokens=self._account_tokens, outbox=self._outbox)
            return model.model_dump(mode="json", context={"reveal": reveal})

    def seed(self, data: Json) -> None:
        """Merge a `Snapshot`-shaped document (servers by id, account tokens added, messages
        appended). Raises ValueError (pydantic's ValidationError) if it is malformed or the
        account would hold more than MAX_ACCOUNT_TOKENS."""
        model = Snapshot.model_validate(data)
        with self._lock:
            account_tokens = list(dict.fromkeys([*self._account_tokens, *model.account_tokens]))
            if len(account_tokens) > MAX_ACCOUNT_TOKENS:
                raise ValueError(f"account_tokens: at most {MAX_ACCOUNT_TOKENS} in all")
            self._account_tokens = account_tokens
            for server in model.servers.values():
                self._servers[server.id] = server
                self._next_id = max(self._next_id, server.id + 1)
            self._issued.update(dict.fromkeys(
                [*account_tokens, *(t for s in model.servers.values() for t in s.tokens)]))
            self._outbox.extend(model.outbox)

    # --- helpers for tests and the world ----------------------------------------------------

    def add_server(self, name: str) -> Server:
        """A new server with one fresh token, as `POST /servers` makes."""
        with self._lock:
            server = Server(id=self._next_id, name=name)
            self._next_id += 1
            self._servers[server.id] = server
            self.add_token(server.id)
            return server

    def server_by_name(self, name: str) -> Server | None:
        with self._lock:
            return next((s for s in self._servers.values() if s.name == name), None)

    def add_token(self, server_id: int) -> str:
        """The operator clicks "Generate another token"; refused past three."""
        with self._lock:
            server = self._servers[server_id]
            if len(server.tokens) >= MAX_TOKENS_PER_SERVER:
                raise ValueError(f"server {server_id} already has "
                                 f"{MAX_TOKENS_PER_SERVER} tokens")
            token = str(uuid.uuid4())
            server.tokens.append(token)
            self._issued[token] = None
            return token

    def delete_token(self, token: str) -> bool:
        """The operator deletes a token in the dashboard; it stops working at once."""
        with self._lock:
            for server in self._servers.values():
                if token in server.tokens:
                    server.tokens.remove(token)
                    return True
            if token in self._account_tokens:
                self._account_tokens.remove(token)
                return True
            return False

    def add_account_token(self) -> str:
        with self._lock:
            if len(self._account_tokens) >= MAX_ACCOUNT_TOKENS:
                raise ValueError(f"the account already has {MAX_ACCOUNT_TOKENS} tokens")
            token = str(uuid.uuid4())
            self._account_tokens.append(token)
            self._issued[token] = None
            return token

    def token_is_live(self, token: str) -> bool:
        """True for a current server token (what every consumer holds) or account token."""
        with self._lock:
            return self._server_for(token) is not None or token in self._account_tokens

    def server_tokens(self, server_id: int) -> list[str]:
        with self._lock:
            return list(self._servers[server_id].tokens)

    def sent(self) -> list[Json]:
        """Every message accepted by `POST /email`, oldest first."""
        with self._lock:
            return [m.model_dump(mode="json") for m in self._outbox]

    def token_values(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    # --- used by the routes ------------------------------------------------------------------

    def _server_for(self, token: str) -> Server | None:
        return next((s for s in self._servers.values() if token in s.tokens), None)


def _server_json(server: Server) -> Json:
    return server.public()


Handler = Callable[[Request, Any], Awaitable[Response]]


class _Api:
    def __init__(self, state: PostmarkState) -> None:
        self.state = state
        self.lock = state._lock

    def endpoint(self, handler: Handler, kind: str,
                 *, allow_test: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """`kind` is "server" or "account": which header and which token list to accept."""

        async def run(request: Request) -> Response:
            if "application/json" not in request.headers.get("accept", "").lower():
                return error(422, "Content-Type and Accept headers must be set to "
                             "application/json.", JSON_REQUIRED)
            value = request.headers.get(f"x-postmark-{kind}-token")
            if not value:
                return error(401, _NO_TOKEN)
            with self.lock:
                if kind == "server":
                    principal: Any = self.state._server_for(value)
                    if principal is None and allow_test and value == TEST_TOKEN:
                        principal = TEST_TOKEN
                else:
                    principal = value if value in self.state._account_tokens else None
            if principal is None:
                return error(401, _BAD_SERVER_TOKEN if kind == "server" else _BAD_ACCOUNT_TOKEN)
            return await handler(request, principal)

        return run

    async def get_server(self, request: Request, server: Server) -> Response:
        with self.lock:
            return json_response(_server_json(server))

    async def list_servers(self, request: Request, account: str) -> Response:
        try:
            count = int(request.query_params["count"])
            offset = int(request.query_params["offset"])
        except (KeyError, ValueError):
            return error(422, "The 'count' and 'offset' query parameters are required integers.",
                         SERVER_QUERY_ERROR)
        if not 1 <= count <= 500 or offset < 0:
            return error(422, "'count' must be between 1 and 500 and 'offset' at least 0.",
                         SERVER_QUERY_ERROR)
        name = request.query_params.get("name", "").lower()
        with self.lock:
            servers = [s for s in sorted(self.state._servers.values(), key=lambda s: s.id)
                       if name in s.name.lower()]
            return json_response({"TotalCount": len(servers),
                                  "Servers": [_server_json(s)
                                              for s in servers[offset:offset + count]]})

    async def get_server_by_id(self, request: Request, account: str) -> Response:
        try:
            server_id = int(request.path_params["server_id"])
        except ValueError:
            return error(422, "Server does not exist.", SERVER_NOT_FOUND)
        with self.lock:
            server = self.state._servers.get(server_id)
            if server is None:
                return error(422, "Server does not exist.", SERVER_NOT_FOUND)
            return json_response(_server_json(server))

    async def send_email(self, request: Request, server: Server | str) -> Response:
        if "application/json" not in request.headers.get("content-type", "").lower():
            return error(422, "Content-Type and Accept headers must be set to "
                         "application/json.", JSON_REQUIRED)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error(400, "The request body is not valid JSON.", 402)
        if not isinstance(body, dict):
            return error(422, "Invalid request.", INVALID_REQUEST)
        sender, to = body.get("From"), body.get("To")
        if not isinstance(sender, str) or not sender.strip():
            return error(422, "Error parsing 'From': Value cannot be null or empty.")
        if not isinstance(to, str) or not to.strip():
            return error(422, "Zero recipients specified")
        recipients = [a for a in to.split(",") if a.strip()]
        if len(recipients) > 50:
            return error(422, "Maximum of 50 recipients allowed per email message.")
        if not body.get("TextBody") and not body.get("HtmlBody"):
            return error(422, "Provide either email TextBody or HtmlBody or both.")
        sending = server if isinstance(server, Server) else None  # the test token sends nothing
        try:
            message = Message(
                MessageID=str(uuid.uuid4()), ServerID=sending.id if sending else 0, From=sender,
                To=to, Subject=body.get("Subject"), TextBody=body.get("TextBody"),
                HtmlBody=body.get("HtmlBody"), MessageStream=body.get("MessageStream", "outbound"),
                SubmittedAt=utc_now(),
            )
        except ValueError:
            return error(422, "Invalid request.", INVALID_REQUEST)
        if sending:
            with self.lock:
                self.state._outbox.append(message)
        return json_response({"To": to, "SubmittedAt": message.SubmittedAt,
                              "MessageID": message.MessageID,
                              "ErrorCode": 0, "Message": "OK"})

    def routes(self) -> list[BaseRoute]:
        e = self.endpoint
        return [
            Route("/server", e(self.get_server, "server"), methods=["GET"]),
            Route("/servers", e(self.list_servers, "account"), methods=["GET"]),
            Route("/servers/{server_id}", e(self.get_server_by_id, "account"), methods=["GET"]),
            Route("/email", e(self.send_email, "server", allow_test=True), methods=["POST"]),
        ]


def _control_routes(state: PostmarkState) -> list[BaseRoute]:
    """The dashboard actions the real API lacks."""

    async def add_server(request: Request) -> Response:
        body = await read_json(request) or {}
        server = state.add_server(str(body["Name"]))
        return json_response({"ID": server.id, "token": server.tokens[0]}, 201)

    async def add_token(request: Request) -> Response:
        server_id = int(request.path_params["server_id"])
        with state._lock:
            if server_id not in state._servers:
                return json_response({"error": "no such server"}, 404)
            try:
                token = state.add_token(server_id)
            except ValueError as exc:
                return json_response({"error": str(exc)}, 422)
        # Test-only route: handing the token back is its whole purpose.
        return json_response({"token": token}, 201)

    async def delete_token(request: Request) -> Response:
        if not state.delete_token(request.path_params["token"]):
            return json_response({"error": "no such token"}, 404)
        return json_response({"deleted": True})

    async def add_account_token(request: Request) -> Response:
        try:
            return json_response({"token": state.add_account_token()}, 201)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 422)

    async def outbox(request: Request) -> Response:
        return json_response({"messages": state.sent()})

    return [
        control_route("/servers", add_server, ["POST"]),
        control_route("/servers/{server_id}/tokens", add_token, ["POST"]),
        control_route("/tokens/{token}", delete_token, ["DELETE"]),
        control_route("/account-tokens", add_account_token, ["POST"]),
        control_route("/outbox", outbox, ["GET"]),
        token_status_route(state.token_is_live),
    ]


State = PostmarkState


def create_app(state: PostmarkState) -> Starlette:
    return build_app(
        "postmark",
        _Api(state).routes(),
        error=error,
        state=state,
        extra_control_routes=_control_routes(state),
    )


# --- the sandbox's registry: provisioning from a manifest ----------------------------------


class PostmarkFake(registry.Fake):
    """Postmark: a server per `postmark` credential (named by sandbox.yml's owners, else after
    the credential), its first token live; the ops server whose token sends Velvet's mail."""

    name = "postmark"
    setting = "VELVET_POSTMARK_API_URL"
    vendors = ("postmark",)

    def new_state(self) -> PostmarkState:
        return PostmarkState()

    def app(self) -> Starlette:
        return create_app(self.state)

    def bootstrap(self, identity: registry.Identity) -> dict[str, str]:
        return {"VELVET_POSTMARK_SERVER_TOKEN": self.state.add_server("velvet-ops").tokens[0]}

    def issue(self, credential: Any, identity: registry.Identity) -> registry.Issued:
        server = self.state.add_server(identity.owners.get(credential.name)
                                       or credential.name.lower().replace("_", "-"))
        return registry.Issued(server.tokens[0], str(server.id), {"SERVER_ID": str(server.id)})

    def is_live(self, value: str) -> bool:
        return bool(self.state.token_is_live(value))


registry.register(PostmarkFake)
