"""The one place HTTP clients are built and vendor responses become Velvet errors.

Adapters receive a ready `httpx.Client` (base URL, timeouts, User-Agent, optional transport,
and the vendor account's rate budget underneath: budget.py); they never read settings or build
clients themselves. `raise_for_vendor` maps a response to the error tree, and `RetryPolicy`
retries the retryable ones with an injected `sleep`.

A rate-limit answer is "wait", never "refused": GitHub's 403 with `x-ratelimit-remaining: 0`,
a `retry-after` or its "secondary rate limit" message is `RateLimited`, like a 429 anywhere.
Waiting one out costs no attempt, within the stage's patience (`max_rate_wait`): as long as the
vendor says (`retry-after`), or, when it says nothing (Heroku never does), by the vendor's
published refill (ratepolicy.py: Heroku's bucket gains 75 requests a minute), doubling while
the answers keep coming, and saying so in the stage's progress.
"""

from __future__ import annotations

import functools
import json
import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from velvet_runner import __version__
from velvet_runner.budget import PAUSED, Budgets, github_rate_limited
from velvet_runner.errors import (
    AuthRejected,
    NotFound,
    RateLimited,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)
from velvet_runner.ratepolicy import Policy

if TYPE_CHECKING:
    import httpx

    from velvet_runner.aws import AwsClients

# httpx is imported where a client is made or called, not here: the adapters' declarations
# (client.Api) are read by every command, most of which call no vendor.

USER_AGENT = f"velvet-runner/{__version__}"
REFILL = "velvet_refill"  # response extension: (real seconds, words) of the vendor's refill
DEFAULT_TIMEOUT = (15.0, 5.0)  # seconds: a call, and making its connection
T = TypeVar("T")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, as httpx builds it (certifi, or SSL_CERT_FILE).

    Every client shares it: building a context loads the whole CA bundle (tens of milliseconds
    each), and a stage builds a client per vendor, target kind and notification channel.
    """
    import httpx

    return httpx.create_ssl_context()


# --- what an adapter declares it calls ----------------------------------------------------------


@dataclass(frozen=True)
class Bearer:
    """The API's client sends `Authorization: Bearer <value>` with every request, the value
    read from the setting `secret` (Velvet's own credential, never one it rotates)."""

    secret: str  # the environment variable, e.g. VELVET_HEROKU_TOKEN

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.secret,)

    def header(self, value: str) -> str:
        return f"Bearer {value}"


@dataclass(frozen=True)
class Login:
    """The API's client logs in with the settings `secrets`: `session(client, *values)` is
    what the adapter calls through, one per run, shared by every adapter of the run."""

    session: Callable[..., Any]
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Api:
    """One vendor API an adapter calls, as data: Wiring builds one client per API (and the
    credentials it carries) for a run, and hands it to every adapter that declares it.

    `name` keys its base URL (settings.api_url: VELVET_<NAME>_API_URL, else `default_url`)
    and its rate policy: ratepolicy.POLICIES (the built-in vendors'), else `policy` as a new
    adapter declares it, else 8 in flight for a vendor without published limits. `auth`: None
    when the adapter authenticates each request with the credential being rotated.
    """

    name: str
    default_url: str
    headers: tuple[tuple[str, str], ...] = ()
    auth: Bearer | Login | None = None
    policy: Policy | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.auth.secrets if self.auth is not None else ()


class Supplies:
    """What Wiring hands an adapter's `build` (and `sweep`): the clients of the APIs it
    declared, each built on first use (so a missing secret is refused only when needed),
    the AWS clients and the injected sleep. Never the builder itself."""

    def __init__(self, owner: str, apis: tuple[Api, ...], connect: Callable[[Api], Any],
                 aws: AwsClients, sleep: Callable[[float], None]) -> None:
        self._owner = owner
        self._apis = apis
        self._connect = connect
        self.aws = aws
        self.sleep = sleep

    def _of(self, api: Api) -> Any:
        if api not in self._apis:
            raise ValueError(f"{self._owner} did not declare the {api.name} API it asks for")
        return self._connect(api)

    def client(self, api: Api) -> httpx.Client:
        """The client of `api` (an API whose auth is a header, or none)."""
        if isinstance(api.auth, Login):
            raise ValueError(f"the {api.name} API logs in: ask for its session")
        client: httpx.Client = self._of(api)
        return client

    def session(self, api: Api) -> Any:
        """The session of `api` (an API whose auth is a Login): `api.auth.session`'s object."""
        if not isinstance(api.auth, Login):
            raise ValueError(f"the {api.name} API has no login session")
        return self._of(api)


def make_client(base_url: str, *, headers: dict[str, str] | None = None,
                transport: httpx.BaseTransport | None = None,
                timeout: httpx.Timeout | float | None = None,
                max_connections: int = 64, budgets: Budgets | None = None,
                vendor: str | None = None) -> httpx.Client:
    """A client for one vendor API; with `budgets` and `vendor`, paced by the account's budget."""
    import httpx

    from velvet_runner.transport import BudgetTransport

    if timeout is None:
        timeout = httpx.Timeout(DEFAULT_TIMEOUT[0], connect=DEFAULT_TIMEOUT[1])
    hooks: dict[str, list[Callable[[httpx.Response], None]]] = {}
    if budgets is not None and vendor is not None:
        inner = transport if transport is not None else httpx.HTTPTransport(
            verify=tls_context(), limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections))
        transport = BudgetTransport(inner, budgets, vendor, base_url)
        hooks["response"] = [_refill_hook(budgets.policies[vendor], budgets.time_scale)]
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=timeout,
        transport=transport,
        verify=tls_context() if transport is None else True,  # a transport brings its own
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections),
        follow_redirects=False,
        event_hooks=hooks,
    )


def _refill_hook(policy: Policy, time_scale: float) -> Callable[[httpx.Response], None]:
    """Tag each answer with how long the vendor's published refill takes to admit another
    request (on the budget's clock), for a rate-limit answer that does not say how long."""
    refill = (policy.default_pause / time_scale, policy.refill_words())

    def tag(response: httpx.Response) -> None:
        response.extensions[REFILL] = refill
    return tag


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
                          paused=paused, refill=response.extensions.get(REFILL))
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


RATE_PATIENCE = 900.0  # seconds a stage waits out a vendor's rate limit before giving up
RATE_DOUBLINGS = 6  # a silent rate limit's wait grows to at most 64 refills


@dataclass
class RetryPolicy:
    """Bounded retries with jittered exponential backoff; a rate limit is waited out.

    A rate-limit answer costs no attempt: the retry waits as long as the vendor said
    (`retry-after`, an exhausted GitHub limit), or, when it said nothing, for the vendor's
    published refill (`RateLimited.refill`; a free probe such as Heroku's rate-limit endpoint
    may ask for longer), doubled for each further rate-limit answer, until `max_rate_wait`
    seconds of waiting (the stage's patience) are spent. When the account's budget already
    paused for a `retry-after` (the response went through a BudgetTransport), the retry simply
    queues at the budget.
    """

    attempts: int = 4
    base: float = 0.2
    cap: float = 5.0
    max_rate_wait: float = RATE_PATIENCE
    sleep: Callable[[float], None] = field(default=time.sleep)
    # Called on a rate limit without Retry-After (Heroku): seconds to wait, or None.
    rate_limit_probe: Callable[[], float | None] | None = None
    clock: Callable[[], float] = field(default=time.monotonic)
    # Told of each wait before it starts ("retry 2 of 4 in 1.6 s: ..."): the stage's progress.
    say: Callable[[str], None] | None = None
    # The refill of a vendor whose client did not say (no rate budget under it): seconds.
    rate_base: float = 1.0

    def delay(self, attempt: int, exc: VendorError) -> float:
        return self._delay(attempt, exc, 0)[0]

    def _delay(self, attempt: int, exc: VendorError, silent: int) -> tuple[float, str | None]:
        """(seconds to sleep, why the vendor asked for it: None when it is our own backoff,
        which spends an attempt). `silent`: rate-limit answers without Retry-After so far."""
        if isinstance(exc, RateLimited):
            if exc.retry_after is not None:
                return (0.0 if exc.paused else exc.retry_after), \
                    f"Retry-After {exc.retry_after:.0f} s"
            refill, words = exc.refill or (self.rate_base, "no published refill")
            wait = refill * 2.0 ** min(silent, RATE_DOUBLINGS)
            if self.rate_limit_probe is not None:
                wait = max(wait, self.rate_limit_probe() or 0.0)
            return wait, f"no Retry-After; {words}"
        backoff = min(self.cap, self.base * (2.0 ** attempt))
        return backoff * (0.5 + random.random() / 2), None  # noqa: S311 - jitter, not crypto

    def run(self, fn: Callable[[], T]) -> T:
        import httpx

        attempt = 0
        started = self.clock()
        waited = 0.0  # asked-for waits so far (a shortened test sleep still counts them)
        silent = 0
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
                wait, asked = self._delay(attempt, exc, silent)
                if asked is not None:
                    # A paused budget holds every caller of the account, this one included:
                    # the wait is the vendor's even where this sleep is not.
                    told = exc.retry_after if exc.retry_after is not None else wait
                    spent = max(waited, self.clock() - started)
                    if spent + told > self.max_rate_wait:
                        raise _out_of_patience(exc, spent, told, self.max_rate_wait) from None
                    self._say(f"rate limited ({asked}): waiting {told:.1f} s "
                              f"({spent:.0f} s of the stage's {self.max_rate_wait:.0f} s "
                              "patience spent)", exc)
                    self.sleep(wait)
                    waited += told
                    if exc.retry_after is None:
                        silent += 1
                    continue
                if attempt + 1 >= self.attempts:
                    raise
                self._say(f"retry {attempt + 2} of {self.attempts} in {wait:.1f} s", exc)
                self.sleep(wait)
                attempt += 1

    def _say(self, line: str, exc: VendorError) -> None:
        if self.say is not None and line:
            self.say(f"velvet: {line}: {exc}")


def _out_of_patience(exc: VendorError, spent: float, wait: float,
                     patience: float) -> VendorError:
    """The rate limit outlasts the stage's patience: still "wait", and said so."""
    if not isinstance(exc, RateLimited):
        return exc
    return RateLimited(f"{exc}; still rate limited after {spent:.0f} s of waiting (the next "
                       f"wait, {wait:.0f} s, would pass the stage's {patience:.0f} s patience): "
                       "run the same action again later", status=exc.status)


def send(client: httpx.Client, method: str, url: str, what: str,
         **kwargs: object) -> httpx.Response:
    """One HTTP call, its answer unchecked; transport failures become VendorUnavailable naming
    `what`."""
    import httpx

    try:
        return client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        raise VendorUnavailable(f"{what}: timed out") from None
    except httpx.HTTPError as exc:
        raise VendorUnavailable(f"{what}: {type(exc).__name__}") from None


def request(client: httpx.Client, method: str, url: str, what: str,
            **kwargs: object) -> httpx.Response:
    """One HTTP call whose answer must be a success (raise_for_vendor)."""
    response = send(client, method, url, what, **kwargs)
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


def follow_ranges(client: httpx.Client, url: str, what: str, first: str, *,
                  send: Callable[[str], httpx.Response] | None = None) -> Iterator[object]:
    """Every item of a Heroku listing, asking for page `first` (a `Range`, e.g. `name ..;
    max=1000`) and then each `Next-Range` while the answer is `206 Partial Content`.

    A generator: a caller that finds what it looks for stops paging. `send(range)` makes one
    request (with the caller's retries and headers); by default a plain GET.
    """
    page: str | None = first
    seen: set[str] = set()
    while page is not None and page not in seen:
        seen.add(page)
        response = send(page) if send is not None else request(
            client, "GET", url, what, headers={"Range": page})
        body = response.json()
        yield from (body if isinstance(body, list) else [])
        page = response.headers.get("Next-Range") if response.status_code == 206 else None
