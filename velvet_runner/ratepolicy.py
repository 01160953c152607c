"""What each vendor allows: its published rate limits, and how its rate-limit answer looks.

`budget.py` keeps every account under these numbers; this module is only the numbers, so that
a vendor's limits are read and changed in one place (vendor-apis.md; GitHub's "Rate limits for
the REST API").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
Cost = Callable[[str], float]  # method -> cost units of one request (0: not counted)


def _one(method: str) -> float:
    return 1.0


def _writes(method: str) -> float:
    return 1.0 if method.upper() in WRITES else 0.0


def _points(method: str) -> float:
    return 5.0 if method.upper() in WRITES else 1.0


@dataclass(frozen=True)
class Window:
    """At most `limit` cost units in any `seconds` of the vendor's time."""

    name: str
    limit: float
    seconds: float
    cost: Cost = _one


@dataclass(frozen=True)
class Bucket:
    """A bucket of `capacity` requests refilled at `per_second` (Heroku)."""

    capacity: float
    per_second: float


@dataclass(frozen=True)
class Policy:
    vendor: str
    concurrency: int
    windows: tuple[Window, ...] = ()
    bucket: Bucket | None = None
    # Header that reports the requests left: "ratelimit-remaining" (Heroku),
    # "x-ratelimit-remaining" (GitHub's primary limit, Infisical), "ratelimit" (Cloudflare).
    remaining_header: str | None = None
    # Below this many left, spread what is left evenly until the reset.
    low_water: float = 0.0
    # `x-ratelimit-reset` counts vendor seconds until the window resets (@fastify/rate-limit:
    # Infisical), not GitHub's epoch.
    reset_in_seconds: bool = False
    # A rate-limit answer that says nothing about how long to wait pauses this long.
    default_pause: float = 1.0
    is_rate_limited: Callable[[httpx.Response], bool] = field(
        default=lambda response: response.status_code == 429)

    def refill_words(self) -> str:
        """What the vendor publishes about refilling, for a progress line."""
        if self.bucket is not None:
            return (f"{self.vendor}'s bucket refills {self.bucket.per_second * 60:g} requests "
                    "a minute")
        if self.windows:
            window = self.windows[0]
            return f"{self.vendor} allows {window.limit:g} {window.name}"
        return f"{self.vendor} publishes no rate limit"


def github_rate_limited(response: httpx.Response) -> bool:
    """GitHub's rate-limit answer: 429, or 403 with its rate-limit headers or message."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers:
        return True
    try:
        message = str((response.json() or {}).get("message", ""))
    except ValueError:
        return False
    return "rate limit" in message.lower()


# The vendors' published numbers (vendor-apis.md; GitHub's "Rate limits for the REST API").
# Concurrency stays under each vendor's cap with room for the other callers of the account.
POLICIES: dict[str, Policy] = {
    "github": Policy(
        "github", concurrency=50,
        # 900 points a minute per endpoint (a write costs 5), counted here as if every call
        # hit one endpoint; 80 content-generating requests a minute and 500 an hour.
        windows=(Window("points per minute", 900, 60, _points),
                 Window("content-generating requests per minute", 80, 60, _writes),
                 Window("content-generating requests per hour", 500, 3600, _writes)),
        remaining_header="x-ratelimit-remaining", low_water=100,
        # GitHub: no retry-after and no exhausted primary limit: wait at least a minute.
        default_pause=60.0, is_rate_limited=github_rate_limited),
    "heroku": Policy("heroku", concurrency=128, bucket=Bucket(4500, 75 / 60),
                     remaining_header="ratelimit-remaining", default_pause=1 / (75 / 60)),
    "cloudflare": Policy("cloudflare", concurrency=32,
                         windows=(Window("requests per 5 minutes", 1200, 300),),
                         remaining_header="ratelimit", low_water=50, default_pause=5.0),
    # 60 a minute on each secret route (and 60 reads, 200 writes on the others), counted here
    # as if every read and every write hit one route.
    "infisical": Policy("infisical", concurrency=64,
                        windows=(Window("reads per minute", 60, 60,
                                        lambda method: 1.0 - _writes(method)),
                                 Window("writes per minute", 60, 60, _writes)),
                        remaining_header="x-ratelimit-remaining", low_water=10,
                        reset_in_seconds=True, default_pause=5.0),
    # About one message a second per channel, short bursts tolerated.
    "slack": Policy("slack", concurrency=4, windows=(Window("messages per second", 1, 1,
                                                            _writes),)),
    "postmark": Policy("postmark", concurrency=8),  # no published numbers
}
