"""Who may read the status app: closed by default, `/healthz` and `/health` open to all.

Every other path (the API, its streams, the pages, `/flags`, `/openapi.json`, the static files)
needs a read token from VELVET_STATUS_TOKENS, presented as `Authorization: Bearer <token>`
(scripts, the runbook's API section) or as the password of HTTP Basic (a browser asks for it
on the 401's `Basic` challenge and then sends it with the page's own fetches and its event
stream). Several tokens are accepted at once so that one can be replaced while the next is
already in use. Each presented token is compared with every accepted one in constant time
(over SHA-256 digests, so not even the lengths are compared).

A wrong or malformed token is a failed attempt: logged with the client's address and the path,
never the token, and counted per client; past FAILURES_PER_WINDOW in WINDOW_SECONDS that client
gets 429 until the window has passed, whatever it presents. A request without any token is
answered 401 and not counted (a browser's first request always is one).

`velvet serve --public` turns all of this off; every page's banner then says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("velvet.web.auth")

PUBLIC_PATHS = frozenset({"/healthz", "/health"})
FAILURES_PER_WINDOW = 10
WINDOW_SECONDS = 60.0
MAX_CLIENTS_TRACKED = 10_000  # failure windows kept; the oldest client is forgotten first
REALM = "Velvet status"
CHALLENGES = (f'Bearer realm="{REALM}"', f'Basic realm="{REALM}", charset="UTF-8"')


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", errors="surrogateescape")).digest()


class Tokens:
    """The accepted read tokens (kept as digests); `accepts` compares against each of them."""

    def __init__(self, tokens: Iterable[SecretStr]) -> None:
        self._digests = [_digest(t.get_secret_value()) for t in tokens]

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, presented: str) -> bool:
        digest = _digest(presented)
        found = False
        for accepted in self._digests:  # every one, so the time says nothing of which matched
            found |= hmac.compare_digest(digest, accepted)
        return found


def presented_token(header: str) -> str | None:
    """The token in an Authorization header (Bearer, or Basic's password); None if malformed."""
    scheme, _, rest = header.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest:
        return rest
    if scheme.lower() == "basic" and rest:
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


class FailureLimiter:
    """Failed attempts per client in a sliding window; thread-safe, bounded in memory."""

    def __init__(self, limit: int = FAILURES_PER_WINDOW, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None while it is under the limit."""
        now = self.clock()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.limit:
                return None
            return max(1, int(times[0] + self.window - now + 0.999))

    def fail(self, client: str) -> int:
        """Count one failed attempt; the client's failures within the window."""
        now = self.clock()
        with self._lock:
            times = self._recent(client, now)
            times.append(now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > MAX_CLIENTS_TRACKED:
                self._failures.popitem(last=False)
            return len(times)


def _wants_html(headers: Headers) -> bool:
    return "text/html" in headers.get("accept", "")


Render = Callable[[int, str, str], HTMLResponse]  # status, title, message -> a plain page


def refusal(headers: Headers, status: int, message: str, render: Render,
            extra: dict[str, str] | None = None) -> Response:
    """A 401 or 429: a plain page for a browser, the API's error JSON for everything else."""
    response: Response
    if _wants_html(headers):
        title = "Sign in to Velvet" if status == 401 else "Too many failed attempts"
        response = render(status, title, message)
    else:
        response = JSONResponse({"error": message, "status": status}, status_code=status)
    for name, value in (extra or {}).items():
        response.headers[name] = value
    if status == 401:
        for challenge in CHALLENGES:
            response.headers.append("WWW-Authenticate", challenge)
    return response


class RequireToken:
    """The ASGI middleware that keeps everything but the health probes behind a token."""

    def __init__(self, app: ASGIApp, tokens: Tokens, render: Render,
                 limiter: FailureLimiter | None = None) -> None:
        self.app = app
        self.tokens = tokens
        self.render = render
        self.limiter = limiter or FailureLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.limiter.retry_after(client)
        if wait is not None:
            response = refusal(headers, 429, f"too many failed attempts from {client}; try "
                               f"again in {wait} s", self.render, {"Retry-After": str(wait)})
            await response(scope, receive, send)
            return
        header = headers.get("authorization")
        if header is None:
            response = refusal(headers, 401, "a read token is required: send "
                               "`Authorization: Bearer <token>` (a browser asks for it as a "
                               "password)", self.render)
            await response(scope, receive, send)
            return
        token = presented_token(header)
        if token is not None and self.tokens.accepts(token):
            await self.app(scope, receive, send)
            return
        count = self.limiter.fail(client)
        # The path as a repr, cut short: nothing a client sends can forge a log line.
        log.warning("refused %s %.200r from %s: %s (failed attempt %d of %d in %d s)",
                    scope["method"], scope["path"], client,
                    "malformed Authorization header" if token is None
                    else "the token matches none of VELVET_STATUS_TOKENS",
                    count, self.limiter.limit, int(self.limiter.window))
        response = refusal(headers, 401, "the token is not accepted", self.render)
        await response(scope, receive, send)
