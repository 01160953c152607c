"""Rate limits for the fakes: the vendors' published numbers, a time scale, and a breach log.

A `Limiter` belongs to one fake. It keeps vendor time (real time multiplied by `time_scale`, so
a test or the benchmark can replay an hour of budget in a minute), counts requests in flight
(concurrency) and the requests of each rule's window, and records every request a limit
refused as a breach. Rules are sliding windows: at most `limit` cost units in any `window`
seconds of vendor time, counted per key (a token, a token and an endpoint, ...).

Served on the fake's control API (never spent by it, never faulted):

    GET  /__velvet/limits   {"time_scale", "rules", "concurrency", "peak_in_flight",
                             "requests", "rejected", "breaches": [{"rule", "count"}]}
    POST /__velvet/limits   {"time_scale"?: float, "rules"?: {name: {"limit"?, "window"?}},
                             "concurrency"?: int | null, "reset"?: bool}

`github_limits` and `GitHubSecondaryLimits` are GitHub's secondary limits ("Rate limits for
the REST API"): at most 100 concurrent requests; 900 points a minute per REST endpoint, a GET
costing 1 point and a POST, PATCH, PUT or DELETE 5; at most 80 content-generating requests a
minute and 500 an hour. Over any of them GitHub answers 403 with a `retry-after` and its
"secondary rate limit" message.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from velvet_sandbox.control import CONTROL_PREFIX, bearer_token, control_route, json_response

Json = dict[str, Any]
WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass
class Rule:
    """At most `limit` cost units in any `window` vendor seconds, per key."""

    name: str
    limit: float
    window: float
    # (method, endpoint, key) -> cost units of one request; 0 means the rule does not apply.
    cost: Callable[[str, str], float] = field(default=lambda method, endpoint: 1.0)
    per_endpoint: bool = False


@dataclass(frozen=True)
class Refusal:
    rule: str
    retry_after: int  # whole vendor seconds until the window admits the request


class LimitsPart(Protocol):
    """A limit a fake keeps itself (GitHub's primary limit), shown and set at /__velvet/limits
    under `key`, beside the limiter's own."""

    key: str

    def shown(self) -> Json: ...

    def configure(self, data: Json) -> None: ...

    def restart(self) -> None:
        """Nothing counted any more (a POST with `"reset": true`)."""


class Limiter:
    """Concurrency, sliding windows and a breach log for one fake, on a scalable clock."""

    part: LimitsPart | None = None

    def __init__(self, name: str, rules: Sequence[Rule] = (), *, concurrency: int | None = None,
                 time_scale: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._clock = clock
        self._defaults = {r.name: (r.limit, r.window) for r in rules}
        self._default_concurrency = concurrency
        self.rules = {r.name: r for r in rules}
        self.concurrency = concurrency
        self._scale = float(time_scale)
        self._real0 = clock()
        self._vendor0 = 0.0
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._windows: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._sums: dict[tuple[str, str], float] = {}
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests = 0
        self.rejected = 0
        self.breaches: dict[str, int] = {}

    # --- vendor time ------------------------------------------------------------------------

    @property
    def time_scale(self) -> float:
        return self._scale

    def now(self) -> float:
        """Vendor seconds since this limiter started (real seconds x time_scale)."""
        with self._lock:
            return self._now()

    def _now(self) -> float:
        return self._vendor0 + (self._clock() - self._real0) * self._scale

    def set_time_scale(self, scale: float) -> None:
        if not scale > 0:
            raise ValueError("time_scale must be positive")
        with self._lock:
            self._vendor0, self._real0 = self._now(), self._clock()
            self._scale = float(scale)

    # --- counting -----------------------------------------------------------------------------

    def enter(self) -> bool:
        """One more request in flight; False (and a breach) past the concurrency limit."""
        with self._lock:
            self.in_flight += 1
            self.requests += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if self.concurrency is not None and self.in_flight > self.concurrency:
                self._breach("concurrency")
                return False
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def spend(self, method: str, endpoint: str, key: str) -> Refusal | None:
        """Count one request against every rule; the first rule it would break refuses it.

        A refused request spends nothing (the vendor did not serve it).
        """
        with self._lock:
            now = self._now()
            costs: list[tuple[tuple[str, str], float]] = []
            for rule in self.rules.values():
                cost = rule.cost(method, endpoint)
                if cost <= 0:
                    continue
                slot = (rule.name, f"{key} {method} {endpoint}" if rule.per_endpoint else key)
                window = self._windows.setdefault(slot, deque())
                total = self._sums.get(slot, 0.0)
                while window and window[0][0] <= now - rule.window:
                    total -= window.popleft()[1]
                self._sums[slot] = total
                if total + cost > rule.limit:
                    # When enough of the window has drained for this request to fit.
                    need, wait = total + cost - rule.limit, rule.window
                    for at, spent in window:
                        need -= spent
                        if need <= 0:
                            wait = at + rule.window - now
                            break
                    self._breach(rule.name)
                    return Refusal(rule.name, max(1, math.ceil(wait)))
                costs.append((slot, cost))
            for slot, cost in costs:
                self._windows[slot].append((now, cost))
                self._sums[slot] += cost
            return None

    def left(self, method: str, endpoint: str, key: str) -> tuple[Rule, int, int] | None:
        """The first rule counting this request, with what it leaves this caller: (rule, whole
        cost units left, whole vendor seconds until the oldest counted unit leaves the window);
        None when no rule counts the request. What @fastify/rate-limit reports on every answer.
        """
        with self._lock:
            now = self._now()
            for rule in self.rules.values():
                if rule.cost(method, endpoint) <= 0:
                    continue
                slot = (rule.name, f"{key} {method} {endpoint}" if rule.per_endpoint else key)
                live = [(at, spent) for at, spent in self._windows.get(slot, ())
                        if at > now - rule.window]
                used = sum(spent for _, spent in live)
                reset = live[0][0] + rule.window - now if live else rule.window
                return rule, max(0, math.floor(rule.limit - used)), max(1, math.ceil(reset))
            return None

    def breach(self, rule: str) -> None:
        """Record a refusal decided by the fake itself (Heroku's bucket, Slack's burst)."""
        with self._lock:
            self._breach(rule)

    def _breach(self, rule: str) -> None:
        self.rejected += 1
        self.breaches[rule] = self.breaches.get(rule, 0) + 1

    # --- control API --------------------------------------------------------------------------

    def snapshot(self) -> Json:
        shown = {self.part.key: self.part.shown()} if self.part is not None else {}
        with self._lock:
            return shown | {
                "name": self.name, "time_scale": self._scale,
                "rules": {r.name: {"limit": r.limit, "window": r.window}
                          for r in self.rules.values()},
                "concurrency": self.concurrency, "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight, "requests": self.requests,
                "rejected": self.rejected,
                "breaches": [{"rule": k, "count": v} for k, v in sorted(self.breaches.items())],
            }

    def configure(self, data: Json) -> None:
        if self.part is not None:
            data = dict(data)
            if data.get("reset"):
                self.part.restart()
            if self.part.key in data:
                self.part.configure(data.pop(self.part.key))
        if "time_scale" in data:
            self.set_time_scale(float(data["time_scale"]))
        with self._lock:
            for name, change in (data.get("rules") or {}).items():
                rule = self.rules[name]
                if "limit" in change:
                    rule.limit = float(change["limit"])
                if "window" in change:
                    rule.window = float(change["window"])
            if "concurrency" in data:
                value = data["concurrency"]
                self.concurrency = None if value is None else int(value)
            if data.get("reset"):
                self._reset_counts()

    def restore(self) -> None:
        """The real numbers, time scale 1, nothing counted (the fake's reset)."""
        with self._lock:
            for name, (limit, window) in self._defaults.items():
                self.rules[name].limit, self.rules[name].window = limit, window
            self.concurrency = self._default_concurrency
            self._vendor0, self._real0, self._scale = self._now(), self._clock(), 1.0
            self._reset_counts()

    def control_routes(self) -> list[BaseRoute]:
        async def get_limits(request: Request) -> Response:
            return json_response(self.snapshot())

        async def set_limits(request: Request) -> Response:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("limits body must be a JSON object")
            self.configure(body)
            return json_response(self.snapshot())

        return [control_route("/limits", get_limits, ["GET"]),
                control_route("/limits", set_limits, ["POST"])]


def token_key(scope: Scope) -> str:
    """Which caller a request counts against: a digest of its token (never the token)."""
    headers = dict(scope.get("headers") or [])
    raw = headers.get(b"authorization", b"").decode("latin-1")
    token = bearer_token(raw, ("bearer", "token")) or "anonymous"
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def route_template(routes: Sequence[BaseRoute]) -> Callable[[Scope], str]:
    """The route a request hits, as its path template (`/repos/{owner}/{repo}/...`)."""
    def find(candidates: Sequence[BaseRoute], scope: Scope, prefix: str) -> str | None:
        for route in candidates:
            match, child = route.matches(scope)
            if match != Match.FULL:
                continue
            if isinstance(route, Route):
                return prefix + route.path
            if isinstance(route, Mount):
                return find(route.routes, {**scope, **child}, prefix + route.path)
        return None

    def template(scope: Scope) -> str:
        return find(routes, scope, "") or str(scope.get("path", ""))
    return template


Reject = Callable[[Refusal], Response]


class LimitMiddleware:
    """Counts every vendor request against a Limiter; answers a refusal the vendor's way.

    Installed twice around a fake's fault middleware: outside it with `part="concurrency"`
    (a request is in flight from its arrival, injected latency included), inside it with
    `part="rate"` (an injected fault is not traffic the vendor counted, and a refusal shows in
    the request log).
    """

    def __init__(self, app: ASGIApp, *, limiter: Limiter, reject: Reject, part: str,
                 endpoint: Callable[[Scope], str] = lambda scope: str(scope.get("path", "")),
                 key: Callable[[Scope], str] = token_key) -> None:
        self.app = app
        self.limiter = limiter
        self.reject = reject
        self.part = part
        self.endpoint = endpoint
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        if self.part == "rate":
            refusal = self.limiter.spend(scope["method"], self.endpoint(scope), self.key(scope))
            if refusal is None:
                await self.app(scope, receive, send)
            else:
                await self.reject(refusal)(scope, receive, send)
            return
        admitted = self.limiter.enter()
        try:
            if admitted:
                await self.app(scope, receive, send)
            else:
                await self.reject(Refusal("concurrency", 1))(scope, receive, send)
        finally:
            self.limiter.leave()


# --- GitHub -------------------------------------------------------------------------------

GITHUB_SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID "
    "{request_id}.")
GITHUB_SECONDARY_DOCS = ("https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-"
                         "rest-api#about-secondary-rate-limits")


def _points(method: str, endpoint: str) -> float:
    return 5.0 if method.upper() in WRITES else 1.0


def _content(method: str, endpoint: str) -> float:
    return 1.0 if method.upper() in WRITES else 0.0


def github_limits(time_scale: float = 1.0) -> Limiter:
    """GitHub's secondary limits at the real numbers."""
    return Limiter("github", [
        Rule("points_per_minute", 900, 60, _points, per_endpoint=True),
        Rule("content_per_minute", 80, 60, _content),
        Rule("content_per_hour", 500, 3600, _content),
    ], concurrency=100, time_scale=time_scale)


def github_reject(status: int = 403) -> Reject:
    """GitHub's answer to a secondary limit: 403, `retry-after`, the documented message."""
    counter = [0]

    def reject(refusal: Refusal) -> Response:
        counter[0] += 1
        body = {"message": GITHUB_SECONDARY_MESSAGE.format(
                    request_id=f"F00D:{counter[0]:06X}:BUDGET"),
                "documentation_url": GITHUB_SECONDARY_DOCS, "status": str(status)}
        response = json_response(body, status)
        response.headers["retry-after"] = str(refusal.retry_after)
        return response

    return reject


# --- Infisical ------------------------------------------------------------------------------

_INFISICAL_SECRETS = ("/api/v3/secrets", "/api/v4/secrets")


def _infisical_secrets(method: str, endpoint: str) -> float:
    return 1.0 if endpoint.startswith(_INFISICAL_SECRETS) else 0.0


def _infisical_other(method: str, endpoint: str, writes: bool) -> float:
    other = endpoint.startswith("/api/") and not endpoint.startswith(_INFISICAL_SECRETS)
    return 1.0 if other and (method.upper() in WRITES) == writes else 0.0


def _infisical_reads(method: str, endpoint: str) -> float:
    return _infisical_other(method, endpoint, writes=False)


def _infisical_writes(method: str, endpoint: str) -> float:
    return _infisical_other(method, endpoint, writes=True)


def infisical_limits(clock: Callable[[], float] = time.monotonic) -> Limiter:
    """Infisical's limits at the self-hosted defaults (backend/src/server/config/rateLimiter.ts,
    on @fastify/rate-limit): every route has its own window of a minute, and a route names its
    limit, which replaces the global 600: the secret routes (v3 raw and v4) `secretsLimit`, 60;
    universal-auth reads `readLimit`, 60, and its login and other writes `writeLimit`, 200.

    Infisical counts per client IP. The fake counts per access token: on loopback every caller
    shares one address, and a run's budget is kept per token (one login, one budget).
    """
    return Limiter("infisical", [
        Rule("secrets_per_minute", 60, 60, _infisical_secrets, per_endpoint=True),
        Rule("reads_per_minute", 60, 60, _infisical_reads, per_endpoint=True),
        Rule("writes_per_minute", 200, 60, _infisical_writes, per_endpoint=True),
    ], clock=clock)


# --- Slack --------------------------------------------------------------------------------

# What Slack's rule counts: messages to one channel. Not a route template, so LimitMiddleware
# (which runs before the body names the channel) never spends it; the fake's handler does.
SLACK_CHANNEL = "chat.postMessage to one channel"


def _slack_channel(method: str, endpoint: str) -> float:
    return 1.0 if endpoint == SLACK_CHANNEL else 0.0


def slack_limits(burst_per_second: float, clock: Callable[[], float] = time.monotonic) -> Limiter:
    """Slack's chat.postMessage limit, per channel: `burst_per_second` messages in any second.

    Slack allows about one a second per channel and tolerates short bursts; the default the
    fake passes is more generous, since one sandbox channel hears every run of a test session.
    `POST /__velvet/limits {"rules": {"burst_per_second": {"limit": 1}}}` sets Slack's rate.
    """
    return Limiter("slack", [Rule("burst_per_second", burst_per_second, 1.0, _slack_channel)],
                   clock=clock)
