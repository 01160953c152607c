"""The one place HTTP clients are built and vendor responses become Velvet errors.

Adapters receive a ready `httpx.Client` (base URL, timeouts, User-Agent, optional transport,
and the vendor account's rate budget underneath: budget.py); they never read settings or build
clients themselves. `raise_for_vendor` maps a response to the error tree, and `RetryPolicy`
retries the retryable ones with an injected `sleep`.

A rate-limit answer is "wait", never "refused": GitHub's 403 with `x-ratelimit-remaining: 0`,
a `retry-after` or its "secondary rate limit" message is `RateLimited`, like a 429 anywhere.
When the vendor says how long to wait, the retry costs no attempt (up to `max_rate_wait`).
"""

from __future__ import annotations

import functools
import json
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from velvet_runner import __version__
from velvet_runner.budget import PAUSED, Budgets, BudgetTransport, github_rate_limited
from velvet_runner.errors import (
    AuthRejected,
    NotFound,
    RateLimited,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)

USER_AGENT = f"velvet-runner/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
T = TypeVar("T")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, as httpx builds it (certifi, or SSL_CERT_FILE).

    Every client shares it: building a context loads the whole CA bundle (tens of milliseconds
    each), and a stage builds a client per vendor, target kind and notification channel.
    """
    return httpx.create_ssl_context()


def make_client(base_url: str, *, headers: dict[str, str] | None = None,
                transport: httpx.BaseTransport | None = None,
                timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                max_connections: int = 64, budgets: Budgets | None = None,
                vendor: str | None = None) -> httpx.Client:
    """A client for one vendor API; with `budgets` and `vendor`, paced by the account's budget."""
    if budgets is not None and vendor is not None:
        inner = transport if transport is not None else httpx.HTTPTransport(
            verify=tls_context(), limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections))
        transport = BudgetTransport(inner, budgets, vendor, base_url)
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=timeout,
        transport=transport,
        verify=tls_context() if transport is None else True,  # a transport brings its own
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections),
        follow_redirects=False,
    )


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


GITHUB_DEFAULT_WAIT = 60.0  # GitHub: a rate limit with neither header means "wait a minute"


def raise_for_vendor(response: httpx.Response, what: str) -> None:
    """Map a non-2xx response to the error tree. `what` names the object; never a value.

    Every vendor answer passes here before an adapter reads it, so a success whose JSON body
    does not parse (cut short by the vendor or a proxy) is a vendor error here, never a
    JSONDecodeError later: VendorUnavailable, since what the vendor did is unknown (a write or
    a mint may have happened: the engine treats it as an outage it must reconcile).
    """
    status = response.status_code
    if status < 400:
        if _unparsable(response):
            raise VendorUnavailable(f"{what}: HTTP {status} but the answer's JSON body does not "
                                    "parse (cut short?); what the vendor did is unknown",
                                    status=status)
        return
    detail = f"{what}: HTTP {status}"
    paused = bool(response.extensions.get(PAUSED))
    if status == 403 and github_rate_limited(response):
        wait = retry_after(response)
        if wait is None and response.headers.get("x-ratelimit-remaining") != "0":
            wait = GITHUB_DEFAULT_WAIT
        raise RateLimited(f"{detail} (rate limited)", status=403, retry_after=wait,
                          paused=paused)
    if status in (401, 403):
        raise AuthRejected(f"{detail} (credential refused)", status=status)
    if status == 404:
        raise NotFound(f"{detail} (not found)", status=status)
    if status == 429:
        raise RateLimited(f"{detail} (rate limited)", retry_after=retry_after(response),
                          paused=paused)
    if status >= 500:
        raise VendorUnavailable(f"{detail} (vendor unavailable)", status=status)
    raise VendorRejected(f"{detail} (request refused)", status=status)


def _unparsable(response: httpx.Response) -> bool:
    """A body that does not parse as JSON: every vendor API here answers JSON (or nothing),
    whatever a proxy in between labels it."""
    if not response.content:
        return False
    try:
        json.loads(response.content)
    except ValueError:
        return True
    return False


@dataclass
class RetryPolicy:
    """Bounded retries with jittered exponential backoff; a rate limit waits as told.

    A rate limit the vendor put a wait on (`retry-after`, an exhausted GitHub limit, or a free
    probe saying the bucket is empty) is waited out without spending an attempt, for up to
    `max_rate_wait` seconds in all. When the account's budget already paused for it (the
    response went through a BudgetTransport), the retry simply queues at the budget.
    """

    attempts: int = 4
    base: float = 0.2
    cap: float = 5.0
    max_rate_wait: float = 900.0
    sleep: Callable[[float], None] = field(default=time.sleep)
    # Called on 429 without Retry-After (Heroku): returns seconds to wait, or None.
    rate_limit_probe: Callable[[], float | None] | None = None
    clock: Callable[[], float] = field(default=time.monotonic)
    # Told of each wait before it starts ("retry 2 of 4 in 1.6 s: ..."): the stage's progress.
    say: Callable[[str], None] | None = None

    def delay(self, attempt: int, exc: VendorError) -> float:
        return self._delay(attempt, exc)[0]

    def _delay(self, attempt: int, exc: VendorError) -> tuple[float, bool]:
        """(seconds to sleep, whether the vendor asked for the wait: no attempt spent)."""
        if isinstance(exc, RateLimited):
            if exc.retry_after is not None:
                return (0.0 if exc.paused else exc.retry_after), True
            if self.rate_limit_probe is not None:
                hint = self.rate_limit_probe()
                if hint is not None and hint > 0:
                    return hint, True
        backoff = min(self.cap, self.base * (2.0 ** attempt))
        return backoff * (0.5 + random.random() / 2), False  # noqa: S311 - jitter, not crypto

    def run(self, fn: Callable[[], T]) -> T:
        attempt = 0
        rate_deadline = self.clock() + self.max_rate_wait
        while True:
            try:
                return fn()
            except httpx.HTTPError as exc:
                err: VendorError = VendorUnavailable(f"{type(exc).__name__}")
                if attempt + 1 >= self.attempts:
                    raise err from None
                wait = self.delay(attempt, err)
                self._say(f"retry {attempt + 2} of {self.attempts} in {wait:.1f} s", err)
                self.sleep(wait)
                attempt += 1
            except VendorError as exc:
                if not exc.retryable:
                    raise
                wait, asked = self._delay(attempt, exc)
                if asked and self.clock() + wait < rate_deadline:
                    after = exc.retry_after if isinstance(exc, RateLimited) else None
                    told = (f"Retry-After {after:.0f} s" if after is not None
                            else f"the vendor's rate limit, {wait:.1f} s")
                    # A paused budget holds every caller of the account, this one included.
                    self._say(f"waiting for {told}", exc)
                    self.sleep(wait)
                    continue
                if attempt + 1 >= self.attempts:
                    raise
                self._say(f"retry {attempt + 2} of {self.attempts} in {wait:.1f} s", exc)
                self.sleep(wait)
                attempt += 1

    def _say(self, line: str, exc: VendorError) -> None:
        if self.say is not None and line:
            self.say(f"velvet: {line}: {exc}")


def request(client: httpx.Client, method: str, url: str, what: str,
            **kwargs: object) -> httpx.Response:
    """One HTTP call; transport failures become VendorUnavailable naming `what`."""
    try:
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        raise VendorUnavailable(f"{what}: timed out") from None
    except httpx.HTTPError as exc:
        raise VendorUnavailable(f"{what}: {type(exc).__name__}") from None
    raise_for_vendor(response, what)
    return response


def follow_links(client: httpx.Client, url: str, what: str, *,
                 send: Callable[[str], httpx.Response] | None = None) -> list[object]:
    """Every item of a GitHub listing, following `Link: <…>; rel="next"` to the last page.

    A page is a JSON array, or an object holding one (`{"total_count", "secrets": [...]}`).
    """
    items: list[object] = []
    next_url: str | None = url
    seen: set[str] = set()
    while next_url is not None and next_url not in seen:
        seen.add(next_url)
        response = send(next_url) if send is not None else request(client, "GET", next_url, what)
        body = response.json()
        if isinstance(body, dict):
            body = next((v for v in body.values() if isinstance(v, list)), [])
        items.extend(body if isinstance(body, list) else [])
        link = response.links.get("next")
        next_url = link.get("url") if link else None
    return items
