"""Rate budgets: how fast Velvet may call each vendor account, and the waits that keeps it under.

Each vendor declares a `Policy` (ratepolicy.py): how many requests may be in flight, its
sliding windows (at most `limit` cost units in any `seconds`), its refilling bucket, the
headers that report what is left, and how a rate-limit answer looks. One `Budget` per vendor
account (base URL and token) is shared by everything that calls that account in a run: target
writes, vendor calls, readback checks and notifications. A `BudgetTransport` under the
account's httpx client draws from the budget before each request and feeds it every answer,
so adapters and the engine's fan-out are paced without knowing it:

    before a request    wait for a concurrency slot, for every window and the bucket to admit
                        it, for any pause a rate-limit answer imposed, and (when the account
                        reports it is running low) for its share of what is left until reset
    after an answer     read what is left (`RateLimit-Remaining`, `x-ratelimit-*`,
                        `Ratelimit: "default";r=…;t=…`); on a rate-limit answer (GitHub 403/429
                        with `x-ratelimit-remaining: 0` or `retry-after` or its "secondary rate
                        limit" message; 429 elsewhere) pause every caller of the account

Runs at once on one account (two stage-2 runs writing through one GitHub App installation)
split it: each run leases a share of the account through the state branch (shares.py) and
its Budget paces to that share (`set_share`): every window's limit, the bucket, concurrency and
what the vendor reports as left are taken times the share. Capacity another run handed over
counts what that run spent of it until its windows forget it (`carried`), so runs changing
shares never add up to more than the account allows.

A rate-limit answer is "wait", never "refused": `client.raise_for_vendor` turns it into
`RateLimited` with the pause, and `RetryPolicy` retries it without spending an attempt until
`max_rate_wait` has passed. Windows are kept conservatively: a request is counted from when it
is sent until its answer arrives, so the vendor (who counts it somewhere in between) never sees
more in any window than the policy allows. `time_scale` runs budget time faster than real time
(the sandbox replays an hour of budget in a minute); 1 is the vendors' real clock.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from velvet_runner.ratepolicy import (
    POLICIES,
    WRITES,
    Bucket,
    Policy,
    Window,
    github_rate_limited,
)

__all__ = ["POLICIES", "WRITES", "Bucket", "Budget", "Budgets", "Policy",
           "Stats", "Window", "account_key", "github_rate_limited"]

if TYPE_CHECKING:
    import httpx

TIME_SCALE_ENV = "VELVET_BUDGET_TIME_SCALE"
PAUSED = "velvet_budget_paused"  # response extension: this rate-limit answer paused the budget


_CLOUDFLARE_RATELIMIT = re.compile(r"r=(\d+)\s*;\s*t=(\d+)")


@dataclass
class Stats:
    requests: int = 0
    rejected: int = 0
    waits: int = 0
    waited: float = 0.0  # real seconds callers spent waiting for the budget
    longest: float = 0.0
    reasons: dict[str, float] = field(default_factory=dict)  # what made them wait, seconds


class Budget:
    """One vendor account's budget, shared by every thread and client that calls it."""

    def __init__(self, policy: Policy, *, time_scale: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.scale = float(time_scale)
        self._clock = clock
        self._wall = wall
        self._cond = threading.Condition()
        self.in_flight = 0
        # Per window: (sent at, answered at or inf, cost); real seconds.
        self._logs: list[deque[list[float]]] = [deque() for _ in policy.windows]
        self._tokens = policy.bucket.capacity if policy.bucket else 0.0
        self._filled = clock()
        # A bucket's level is unknown until the first answer reports it: until then it is
        # taken as full, so at most `concurrency` requests can overshoot it (and are waited out,
        # never refused) instead of every fan-out paying a round trip before it starts.
        self._known = policy.bucket is None
        self._remaining: float | None = None
        self._reset_in: float | None = None  # real seconds from _reported_at
        self._reported_at = clock()
        self._paused_until = 0.0
        self._next_slot = 0.0
        self.stats = Stats()
        self.waiting: dict[str, int] = {}  # callers waiting now, by what holds them
        self.share = 1.0  # of the account's limits this run may use (shares.py leases it)

    # --- seconds ------------------------------------------------------------------------------

    def _real(self, vendor_seconds: float) -> float:
        return vendor_seconds / self.scale

    # --- this run's share of the account -------------------------------------------------------

    def set_share(self, share: float, carried: dict[str, float] | None = None,
                  at_wall: float | None = None) -> None:
        """Pace to `share` (0..1) of the account's limits from now on.

        `carried`: cost units per window (by name) that other runs spent before handing this
        capacity over, counted here as if answered at `at_wall` (a time.time()) until the window
        forgets them; they leave when the spender's own entries would have left, or later.
        """
        with self._cond:
            self.share = max(0.0, min(1.0, share))
            if self.policy.bucket is not None:
                self._tokens = min(self._tokens, self.policy.bucket.capacity * self.share)
            if carried:
                now = self._clock()
                at = now - max(0.0, self._wall() - (at_wall if at_wall is not None
                                                    else self._wall()))
                for window, log in zip(self.policy.windows, self._logs, strict=True):
                    cost = carried.get(window.name, 0.0)
                    if cost > 0:
                        log.append([at, at, cost])
            self._cond.notify_all()

    def usage(self) -> dict[str, float]:
        """Cost units each window counts now (in flight or answered within its span)."""
        with self._cond:
            now = self._clock()
            return {w.name: sum(e[2] for e in log if e[1] > now - self._real(w.seconds))
                    for w, log in zip(self.policy.windows, self._logs, strict=True)}

    def heavy(self, requests: int, method: str = "PUT") -> bool:
        """Whether `requests` more would take half of one of the account's windows or of its
        bucket: a fan-out that large leases a share of the account (shares.py)."""
        for window in self.policy.windows:
            cost = window.cost(method)
            if cost > 0 and requests * cost * 2 >= window.limit:
                return True
        bucket = self.policy.bucket
        return bucket is not None and requests * 2 >= bucket.capacity

    def spans(self) -> dict[str, float]:
        """Real seconds each window remembers a request for."""
        return {w.name: self._real(w.seconds) for w in self.policy.windows}

    # --- drawing and reporting ----------------------------------------------------------------

    @contextmanager
    def request(self, method: str) -> Iterator[list[httpx.Response]]:
        """Hold a slot for one request; put its response in the yielded list to report it."""
        entries = self.acquire(method)
        answered: list[httpx.Response] = []
        try:
            yield answered
        finally:
            self.release(entries, answered[0] if answered else None)

    def acquire(self, method: str) -> list[list[float] | None]:
        started = self._clock()
        reason = ""
        with self._cond:
            while True:
                now = self._clock()
                wait, why = self._wait_for(method, now)
                if wait <= 0:
                    break
                reason = why
                self.waiting[why] = self.waiting.get(why, 0) + 1
                try:
                    self._cond.wait(timeout=min(wait, 5.0))
                finally:
                    self.waiting[why] -= 1
            self.in_flight += 1
            entries: list[list[float] | None] = []
            for window, log in zip(self.policy.windows, self._logs, strict=True):
                cost = window.cost(method)
                if cost > 0:
                    entry = [now, math.inf, cost]
                    log.append(entry)
                    entries.append(entry)
                else:
                    entries.append(None)
            if self.policy.bucket is not None:
                self._tokens -= 1
            if self._spacing(now) > 0:
                self._next_slot = max(self._next_slot, now) + self._spacing(now)
            self.stats.requests += 1
            waited = now - started
            if waited > 0.001:
                self.stats.waits += 1
                self.stats.waited += waited
                self.stats.longest = max(self.stats.longest, waited)
                self.stats.reasons[reason] = self.stats.reasons.get(reason, 0.0) + waited
            return entries

    def release(self, entries: Sequence[list[float] | None],
                response: httpx.Response | None) -> None:
        with self._cond:
            now = self._clock()
            self.in_flight -= 1
            for entry in entries:
                if entry is not None:
                    entry[1] = now
            if response is not None:
                self._report(response, now)
            self._cond.notify_all()

    def _report(self, response: httpx.Response, now: float) -> None:
        policy = self.policy
        remaining, reset_in = self._read_headers(response)
        if remaining is not None:
            self._remaining, self._reset_in, self._reported_at = remaining, reset_in, now
            if policy.bucket is not None:
                self._refill(now)
                # Our share of what is left, less what this budget has in flight (not yet
                # counted there).
                level = remaining * self.share - max(0, self.in_flight)
                self._tokens = level if not self._known else min(self._tokens, level)
                self._known = True
        if policy.is_rate_limited(response):
            self.stats.rejected += 1
            pause = self.pause_for(response)
            self._paused_until = max(self._paused_until, now + pause)
            if policy.bucket is not None:
                self._tokens = min(self._tokens, 0.0)
                self._known = True

    def pause_for(self, response: httpx.Response) -> float:
        """Real seconds a rate-limit answer asks every caller of the account to wait."""
        value = response.headers.get("retry-after")
        if value is not None:
            try:
                return self._real(max(0.0, float(value)))
            except ValueError:
                pass
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = response.headers.get("x-ratelimit-reset")
            if reset is not None and reset.isdigit():
                return max(1.0, int(reset) - self._wall())  # an epoch: not scaled
        return self._real(self.policy.default_pause)

    def _read_headers(self, response: httpx.Response) -> tuple[float | None, float | None]:
        name = self.policy.remaining_header
        if name is None:
            return None, None
        raw = response.headers.get(name)
        if raw is None:
            return None, None
        if name == "ratelimit":
            match = _CLOUDFLARE_RATELIMIT.search(raw)
            if match is None:
                return None, None
            return float(match.group(1)), self._real(float(match.group(2)))
        try:
            remaining = float(raw)
        except ValueError:
            return None, None
        reset = response.headers.get("x-ratelimit-reset")
        if not (reset and reset.isdigit()):
            return remaining, None
        if self.policy.reset_in_seconds:
            return remaining, self._real(float(reset))
        return remaining, max(0.0, int(reset) - self._wall())

    # --- when may the next request go ----------------------------------------------------------

    def _refill(self, now: float) -> None:
        bucket = self.policy.bucket
        if bucket is None:
            return
        gained = (now - self._filled) * bucket.per_second * self.scale * self.share
        self._tokens = min(bucket.capacity * self.share, self._tokens + gained)
        self._filled = now

    def _spacing(self, now: float) -> float:
        """When the account reports it is running low: its share of what is left until reset."""
        if self._remaining is None or self._reset_in is None or self.policy.low_water <= 0:
            return 0.0
        left = self._reset_in - (now - self._reported_at)
        if left <= 0 or self._remaining >= self.policy.low_water:
            return 0.0
        if self.share <= 0:
            return left
        return left / max(1.0, self._remaining * self.share)

    def _wait_for(self, method: str, now: float) -> tuple[float, str]:
        policy = self.policy
        if now < self._paused_until:
            return self._paused_until - now, "a rate-limit answer"
        if self.share <= 0:
            return 5.0, "a share of the account (other runs hold it)"  # woken by set_share
        if self.in_flight >= max(1, int(policy.concurrency * self.share)):
            return 5.0, "concurrency"  # woken by a release
        if policy.bucket is not None:
            self._refill(now)
            if self._tokens < 1:
                return ((1 - self._tokens)
                        / (policy.bucket.per_second * self.scale * self.share)), "bucket"
        if now < self._next_slot:
            return self._next_slot - now, "remaining running low"
        for window, log in zip(policy.windows, self._logs, strict=True):
            cost = window.cost(method)
            if cost <= 0:
                continue
            span = self._real(window.seconds)
            # Answers arrive out of order: an entry leaves when its own answer is old enough.
            if log and any(e[1] <= now - span for e in log):
                live = [e for e in log if e[1] > now - span]
                log.clear()
                log.extend(live)
            used = sum(e[2] for e in log)
            limit = window.limit * self.share
            if used + cost <= limit:
                continue
            # The earliest time enough answered entries leave the window for this one to fit.
            need = used + cost - limit
            for entry in sorted(log, key=lambda e: e[1]):
                need -= entry[2]
                if need <= 0:
                    if math.isinf(entry[1]):
                        return 5.0, window.name  # still in flight: woken by its release
                    return max(entry[1] + span - now, 0.001), window.name
            return 5.0, window.name
        return 0.0, ""

    # --- planning -------------------------------------------------------------------------------

    def estimate(self, requests: int, method: str = "PUT") -> tuple[float, str]:
        """Real seconds the budget needs to let `requests` more through, and what binds."""
        with self._cond:
            now = self._clock()
            best, why = 0.0, ""
            for window, log in zip(self.policy.windows, self._logs, strict=True):
                cost = window.cost(method)
                if cost <= 0:
                    continue
                span = self._real(window.seconds)
                used = sum(e[2] for e in log if e[1] > now - span)
                limit = window.limit * max(self.share, 1e-9)
                over = requests * cost - (limit - used)
                if over > 0:
                    seconds = math.ceil(over / limit) * span
                    if seconds > best:
                        best, why = seconds, f"{window.name}: {limit:g}"
            if self.policy.bucket is not None:
                self._refill(now)
                short = requests - max(0.0, self._tokens)
                if short > 0:
                    seconds = short / (self.policy.bucket.per_second * self.scale
                                       * max(self.share, 1e-9))
                    if seconds > best:
                        best, why = seconds, "request bucket refill"
            return best, why


def account_key(vendor: str, base_url: str, authorization: str | None) -> str:
    """One budget per vendor account: its API and a digest of the credential (never the value)."""
    digest = hashlib.sha256((authorization or "").encode()).hexdigest()[:16]
    return f"{vendor} {base_url.rstrip('/')} {digest}"


class Budgets:
    """Every account's budget for one run (a Wiring and its notifier share one)."""

    def __init__(self, *, time_scale: float | None = None,
                 policies: dict[str, Policy] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if time_scale is None:
            time_scale = float(os.environ.get(TIME_SCALE_ENV) or 1.0)
        if not time_scale > 0:
            raise ValueError(f"{TIME_SCALE_ENV} must be positive")
        self.time_scale = time_scale
        self.policies = {**POLICIES, **(policies or {})}
        self._clock = clock
        self._lock = threading.Lock()
        self._budgets: dict[str, Budget] = {}

    def get(self, vendor: str, base_url: str, authorization: str | None) -> Budget:
        key = account_key(vendor, base_url, authorization)
        with self._lock:
            budget = self._budgets.get(key)
            if budget is None:
                budget = Budget(self.policies[vendor], time_scale=self.time_scale,
                                clock=self._clock)
                self._budgets[key] = budget
            return budget

    def all(self) -> dict[str, Budget]:
        with self._lock:
            return dict(self._budgets)

    def of(self, vendor: str) -> list[Budget]:
        return [b for b in self.all().values() if b.policy.vendor == vendor]

    def waiting_now(self) -> str:
        """Who waits for which budget right now, for a progress line ("" when nobody does)."""
        parts = []
        for budget in self.all().values():
            with budget._cond:
                held = {why: n for why, n in budget.waiting.items() if n > 0}
            for why, n in sorted(held.items()):
                parts.append(f"{n} waiting for {budget.policy.vendor}'s {why}")
        return "; ".join(parts)

    def totals(self) -> Stats:
        out = Stats()
        for budget in self.all().values():
            s = budget.stats
            out.requests += s.requests
            out.rejected += s.rejected
            out.waits += s.waits
            out.waited += s.waited
            out.longest = max(out.longest, s.longest)
            for reason, seconds in s.reasons.items():
                out.reasons[reason] = out.reasons.get(reason, 0.0) + seconds
        return out
