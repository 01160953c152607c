"""What every part of the GitHub fake shares: limits, the error type and body, small helpers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from velvet_runner.github.globs import glob_regex
from velvet_sandbox.control import json_response

Json = dict[str, Any]
Clock = Callable[[], float]

DOCS = "https://docs.github.com/rest"
PRIMARY_LIMIT_DOCS = (
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
    "#about-primary-rate-limits"
)
RATE_LIMIT = 5000
RATE_WINDOW_SECONDS = 3600
MAX_SECRET_BYTES = 48 * 1024
MAX_DISPATCH_INPUTS = 25
PER_PAGE_DEFAULT = 30  # GitHub's listings: 30 items a page unless `per_page` asks (at most 100)
PER_PAGE_MAX = 100
_KEY_ID_BASE = 3_380_204_578_043_523_000
_BASE64 = re.compile(r"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VISIBILITIES = ("all", "private", "selected")
ROLES = ("admin", "maintain", "write", "triage", "read")  # a collaborator's repository roles
MSG_INTEGRATION = "Resource not accessible by integration"
MSG_NO_USER_AGENT = (
    "Request forbidden by administrative rules. Please make sure your request has a "
    "User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api"
    "#user-agent-required). Check https://developer.github.com for other possible causes.\n"
)


class GitHubError(Exception):
    """An API error, rendered as `{"message", "documentation_url", "status"}`."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[Json] | None = None,
        *,
        plain: bool = False,
        docs: str = DOCS,
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.errors = errors
        self.plain = plain  # GitHub answers a missing User-Agent in text, not JSON
        self.docs = docs


def error(
    status: int, message: str, errors: list[Json] | None = None, *, docs: str = DOCS
) -> Response:
    """GitHub's error body; also used by the control layer for injected faults.

    A secondary rate limit (or a bare 429) carries a `retry-after`; an exhausted primary limit
    does not: GitHub points at `x-ratelimit-reset` instead.
    """
    body: Json = {"message": message, "documentation_url": docs, "status": str(status)}
    if errors:
        body["errors"] = errors
    response = json_response(body, status)
    if "secondary rate limit" in message.lower() or (
        status == 429 and "api rate limit exceeded" not in message.lower()
    ):
        response.headers["retry-after"] = "60"
    return response


def glob_match(pattern: str, name: str) -> bool:
    """GitHub's ref patterns (Ruby's File.fnmatch): `*` and `?` never match `/`, `**` does."""
    return re.fullmatch(glob_regex(pattern), name) is not None


def _not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


def _invalid(detail: str) -> GitHubError:
    return GitHubError(422, f"Invalid request.\n\n{detail}")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _body(request: Request) -> Json:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise GitHubError(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise GitHubError(400, "Body should be a JSON object")
    return data


def _no_content() -> Response:
    return Response(status_code=204)
