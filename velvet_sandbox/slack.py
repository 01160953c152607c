"""Fake Slack Web API: `chat.postMessage` and `auth.test` (vendor-apis.md section 7).

Paths served:

    POST   /api/chat.postMessage     JSON (`application/json; charset=utf-8`) or form-encoded
    POST   /api/auth.test
    GET | POST /api/conversations.info   `channel`: the channel, and whether the bot is in it

Slack answers every method error with HTTP 200 and `{"ok": false, "error": "<code>"}`:
`not_authed` (no token), `invalid_auth` (unknown token), `channel_not_found`, `is_archived`,
`not_in_channel`, `no_text` (neither text, blocks nor attachments), `invalid_blocks`,
`msg_too_long`, `invalid_json`. The one exception is rate limiting: HTTP 429 with `Retry-After`
and `{"ok": false, "error": "ratelimited"}`, either from an injected fault or when one channel
gets more than `burst_per_second` messages within a second (generous by default, so tests only
hit it on purpose). That window is a rule of the shared limiter (`state.limiter`,
`ratelimit.slack_limits`) on the fake's clock: its limit and time scale are settable at
`/__velvet/limits`, which also counts the breaches, and `Retry-After` is the whole seconds until
the channel's window takes one more. JSON without `charset` is accepted with a
`missing_charset` warning.

Point `slack_sdk.WebClient(base_url="http://127.0.0.1:<port>/api/")` at it.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from pydantic import (
    ConfigDict,
    model_validator,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from velvet_sandbox import registry
from velvet_sandbox.control import (
    Secret,
    StateModel,
    Stored,
    bearer_token,
    build_app,
    json_response,
)
from velvet_sandbox.ratelimit import SLACK_CHANNEL, Refusal, slack_limits

Json = dict[str, Any]
Clock = Callable[[], float]

DEFAULT_BURST_PER_SECOND = 20
MAX_TEXT_CHARS = 40_000
TEAM_ID = "T0VELVET00"
TEAM_NAME = "Velvet Sandbox"
_CODE = re.compile(r"[a-z_]+")


def error(status: int, message: str, retry_after: int = 1) -> Response:
    """Slack's shape for HTTP-level failures (injected faults, unknown methods)."""
    if status == 429:
        code = "ratelimited"
    elif status == 404:
        code = "unknown_method"
    elif _CODE.fullmatch(message):
        code = message
    elif status >= 500:
        code = "internal_error"
    else:
        code = "invalid_request"
    response = json_response({"ok": False, "error": code}, status)
    if status == 429:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _fail(code: str) -> Response:
    """A method error: still HTTP 200."""
    return json_response({"ok": False, "error": code})


class _Model(StateModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)


class TokenRow(_Model):
    """A token the fake accepts and the user it calls as; shown as a fingerprint."""

    token: Secret
    user: str = "velvet-bot"


class Channel(_Model):
    id: str
    name: str | None = None  # None or "": the id in lower case
    archived: bool = False
    member: bool = True

    @model_validator(mode="after")
    def _default_name(self) -> Channel:
        self.name = self.name or self.id.lower()
        return self


class Message(_Model):
    """An accepted post: {channel, ts, text, blocks, attachments, thread_ts, user}; a seed may
    carry more fields, and they are kept."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)
    channel: str
    ts: str


class Snapshot(_Model):
    """The fake's state as `GET /__velvet/state` shows it and `POST /__velvet/seed` merges it."""

    tokens: list[TokenRow] = []
    channels: list[Channel] = []
    messages: list[Message] = []


class State(Stored):
    """The fake's whole memory. Every method takes the lock; call them from any thread.

    Public helpers:

        add_token(token, *, user="velvet-bot")
        token_values() -> list[str]  every accepted token (leak scans)
        add_channel(id, name=None, *, archived=False, member=True)
        messages -> list[dict]       every accepted post, oldest first:
                                     {channel, ts, text, blocks, thread_ts, user}
        burst_per_second             messages one channel takes per second before 429
    """

    STORED = ("_tokens", "_channels", "_messages")

    def __init__(
        self, *, clock: Clock = time.time, burst_per_second: int = DEFAULT_BURST_PER_SECOND
    ) -> None:
        self.clock = clock
        # The per-channel window on vendor time (the same clock; settable time scale).
        self.limiter = slack_limits(burst_per_second, clock=clock)
        self._lock = threading.RLock()
        self._reset()

    @property
    def burst_per_second(self) -> int:
        return int(self.limiter.rules["burst_per_second"].limit)

    @burst_per_second.setter
    def burst_per_second(self, value: int) -> None:
        self.limiter.configure({"rules": {"burst_per_second": {"limit": value}}})

    def _reset(self) -> None:
        self._tokens: dict[str, TokenRow] = {}
        self._channels: dict[str, Channel] = {}
        self._messages: list[Message] = []
        self._last_ts = 0.0

    # -- snapshot / seed / reset -------------------------------------------------------------

    def snapshot(self, reveal: bool = False) -> Json:
        """The `Snapshot` model, sorted: tokens as fingerprints unless `reveal=True` (in process
        only), and then `seed(snapshot(reveal=True))` restores the state.

        The rate-limit window is left out: it is traffic, not state a run leaves behind.
        """
        with self._lock:
            model = Snapshot(
                tokens=[self._tokens[t] for t in sorted(self._tokens)],
                channels=[self._channels[c] for c in sorted(self._channels)],
                messages=self._messages,
            )
            return model.model_dump(mode="json", context={"reveal": reveal})

    def seed(self, data: Json) -> None:
        """Merge a `Snapshot`-shaped document (tokens by value, channels by id; messages are
        appended). Raises ValueError (pydantic's ValidationError) if it is malformed."""
        model = Snapshot.model_validate(data)
        with self._lock:
            self._tokens.update((row.token, row) for row in model.tokens)
            self._channels.update((channel.id, channel) for channel in model.channels)
            for message in model.messages:
                self._last_ts = max(self._last_ts, float(message.ts))
                self._messages.append(message)

    def reset(self) -> None:
        with self._lock:
            self._reset()

    # -- public helpers ----------------------------------------------------------------------

    def token_values(self) -> list[str]:
        """Every token the fake accepts (for leak scans)."""
        with self._lock:
            return sorted(self._tokens)

    def add_token(self, token: str, *, user: str = "velvet-bot") -> None:
        with self._lock:
            self._tokens[token] = TokenRow(token=token, user=user)

    def add_channel(
        self, id: str, name: str | None = None, *, archived: bool = False, member: bool = True
    ) -> None:
        with self._lock:
            self._channels[id] = Channel(id=id, name=name, archived=archived, member=member)

    @property
    def messages(self) -> list[Json]:
        with self._lock:
            return [m.model_dump(mode="json") for m in self._messages]

    # -- API operations ----------------------------------------------------------------------

    def _user_for(self, token: str | None) -> str:
        """The token's user; raises _MethodError for a missing or unknown token."""
        if not token:
            raise _MethodError("not_authed")
        with self._lock:
            row = self._tokens.get(token)
        if row is None:
            raise _MethodError("invalid_auth")
        return row.user

    def _channel(self, ref: str) -> Channel:
        ref = ref.strip()
        if ref in self._channels:
            return self._channels[ref]
        name = ref.removeprefix("#")
        for channel in self._channels.values():
            if channel.name == name:
                return channel
        raise _MethodError("channel_not_found")

    def _next_ts(self) -> str:
        ts = max(round(self.clock(), 6), round(self._last_ts + 0.000001, 6))
        self._last_ts = ts
        return f"{ts:.6f}"

    def _post(self, user: str, params: Json) -> Json | Refusal:
        """Record a message; the limiter's refusal when the channel is over its limit."""
        with self._lock:
            channel_ref = params.get("channel")
            if not isinstance(channel_ref, str) or not channel_ref.strip():
                raise _MethodError("channel_not_found")
            channel = self._channel(channel_ref)
            if channel.archived:
                raise _MethodError("is_archived")
            if not channel.member:
                raise _MethodError("not_in_channel")
            text = params.get("text")
            if text is not None and not isinstance(text, str):
                text = str(text)
            blocks = _json_list(params.get("blocks"), "invalid_blocks")
            attachments = _json_list(params.get("attachments"), "invalid_attachments")
            if not text and not blocks and not attachments:
                raise _MethodError("no_text")
            if text and len(text) > MAX_TEXT_CHARS:
                raise _MethodError("msg_too_long")
            refusal = self.limiter.spend("POST", SLACK_CHANNEL, channel.id)
            if refusal is not None:
                return refusal
            ts = self._next_ts()
            thread_ts = params.get("thread_ts")
            self._messages.append(
                Message(
                    channel=channel.id,
                    ts=ts,
                    text=text or "",
                    blocks=blocks,
                    attachments=attachments,
                    thread_ts=thread_ts,
                    user=user,
                )
            )
            message: Json = {
                "type": "message",
                "subtype": "bot_message",
                "text": text or "",
                "bot_id": _bot_id(user),
                "user": _user_id(user),
                "ts": ts,
                "team": TEAM_ID,
            }
            if blocks:
                message["blocks"] = blocks
            if attachments:
                message["attachments"] = attachments
            if thread_ts:
                message["thread_ts"] = thread_ts
            return {"ok": True, "channel": channel.id, "ts": ts, "message": message}


class _MethodError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _json_list(value: Any, code: str) -> list[Any]:
    """Blocks and attachments arrive as arrays in JSON bodies and as JSON strings in forms."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _MethodError(code) from None
    if not isinstance(value, list):
        raise _MethodError(code)
    return value


def _user_id(user: str) -> str:
    return "U" + user.upper().replace("-", "")[:9].ljust(9, "0")


def _bot_id(user: str) -> str:
    return "B" + user.upper().replace("-", "")[:9].ljust(9, "0")


async def _params(request: Request) -> tuple[Json, list[str]]:
    """The method arguments from a JSON or form body, plus any Slack warnings."""
    content_type = request.headers.get("content-type", "")
    raw = await request.body()
    warnings: list[str] = []
    if content_type.split(";")[0].strip().lower() == "application/json":
        if "charset" not in content_type.lower():
            warnings.append("missing_charset")
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise _MethodError("invalid_json") from None
        if not isinstance(data, dict):
            raise _MethodError("invalid_json")
        return data, warnings
    form = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    form.update(parse_qs(request.url.query, keep_blank_values=True))
    return {k: v[-1] for k, v in form.items()}, warnings


def _token(request: Request, params: Json) -> str | None:
    bearer = bearer_token(request.headers.get("authorization"))
    if bearer is not None:
        return bearer
    # Form bodies may carry the token as a field; JSON bodies may not.
    form_token = params.get("token")
    return form_token if isinstance(form_token, str) and form_token else None


def _with_warnings(body: Json, warnings: list[str]) -> Response:
    if warnings:
        body["warning"] = ",".join(warnings)
        body["response_metadata"] = {"warnings": warnings}
    return json_response(body)


def create_app(state: State) -> Starlette:
    """The Slack fake as a Starlette app with the shared `/__velvet/` control API."""

    async def authenticated(request: Request) -> tuple[Json, list[str], str]:
        """Arguments, warnings and the caller's user; raises _MethodError like Slack fails."""
        params, warnings = await _params(request)
        if request.headers.get("content-type", "").startswith("application/json"):
            params.pop("token", None)
        return params, warnings, state._user_for(_token(request, params))

    async def post_message(request: Request) -> Response:
        try:
            params, warnings, user = await authenticated(request)
            body = state._post(user, params)
        except _MethodError as exc:
            return _fail(exc.code)
        if isinstance(body, Refusal):
            return error(429, "ratelimited", body.retry_after)
        return _with_warnings(body, warnings)

    async def auth_test(request: Request) -> Response:
        try:
            _, warnings, user = await authenticated(request)
        except _MethodError as exc:
            return _fail(exc.code)
        return _with_warnings(
            {
                "ok": True,
                "url": str(request.base_url),
                "team": TEAM_NAME,
                "user": user,
                "team_id": TEAM_ID,
                "user_id": _user_id(user),
                "bot_id": _bot_id(user),
                "is_enterprise_install": False,
            },
            warnings,
        )

    async def conversations_info(request: Request) -> Response:
        try:
            params, warnings, _ = await authenticated(request)
            ref = params.get("channel")
            if not isinstance(ref, str) or not ref.strip():
                raise _MethodError("channel_not_found")
            with state._lock:
                channel = state._channel(ref)
        except _MethodError as exc:
            return _fail(exc.code)
        return _with_warnings({"ok": True, "channel": {
            "id": channel.id, "name": channel.name or channel.id, "is_channel": True,
            "is_archived": channel.archived, "is_member": channel.member}}, warnings)

    routes: list[BaseRoute] = [
        Route("/api/chat.postMessage", post_message, methods=["POST"]),
        Route("/api/auth.test", auth_test, methods=["POST", "GET"]),
        Route("/api/conversations.info", conversations_info, methods=["POST", "GET"]),
    ]
    return build_app(
        "slack",
        routes,
        error=error,
        state=state,
        limiter=state.limiter,
        errors_at=(200,),  # Slack's method errors: HTTP 200 with {"ok": false}
    )


# --- the sandbox's registry ----------------------------------------------------------------


class SlackFake(registry.Fake):
    """Slack: Velvet's bot token and its ops channel."""

    name = "slack"
    setting = "VELVET_SLACK_API_URL"
    api_path = "/api/"

    def new_state(self) -> State:
        return State()

    def app(self) -> Any:
        return create_app(self.state)

    def bootstrap(self, identity: registry.Identity) -> dict[str, str]:
        token = "xoxb-" + secrets.token_hex(24)
        self.state.add_token(token, user="velvet-bot")
        self.state.add_channel(identity.slack_channel, "velvet-ops")
        return {"VELVET_SLACK_TOKEN": token, "VELVET_SLACK_CHANNEL": identity.slack_channel}


registry.register(SlackFake)
