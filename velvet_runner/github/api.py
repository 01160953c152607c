"""The one GitHub client (GitHubApi) and what every part of the Actions layer reads from the run.

Module-level imports stay light: `velvet --help` must start fast, and cli.py reads `gate.GATED`
when it builds its commands.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import GateRefused, VelvetError

if TYPE_CHECKING:
    import httpx
    from pydantic import SecretStr

    from velvet_runner.budget import Budgets
    from velvet_runner.settings import Settings

Environ = Mapping[str, str]


def environ_or_os(environ: Environ | None) -> Environ:
    return os.environ if environ is None else environ


def in_actions(environ: Environ | None = None) -> bool:
    return environ_or_os(environ).get("GITHUB_ACTIONS") == "true"


def iso(value: datetime) -> str:
    # records.iso, without importing pydantic at CLI start (gate.GATED loads with the CLI).
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class GitHubApi:
    """The Actions layer's GitHub calls, through Velvet's one GitHub client.

    One httpx client for every GitHub call Velvet makes (secret targets, the issue channel,
    this gate and dispatcher), built by `client.make_client` with GitHub's rate-limit rules in
    its budget (budget.py) and one classification of GitHub's errors (`raise_for_vendor`):
    rather than PyGithub's GithubRetry, because a budget must be shared by every caller of an
    account and paced before requests are sent (concurrency, points, content-generating
    windows), which a per-session urllib3 retry that reacts after a rejection cannot do.
    A rate-limit answer is waited out (RetryPolicy); other errors come back as (status, data).
    """

    def __init__(self, token: SecretStr | str | None, api_url: str, *,
                 budgets: Budgets | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from pydantic import SecretStr

        self._token = SecretStr(token) if isinstance(token, str) else token
        self.api_url = api_url.rstrip("/")
        self._budgets = budgets
        self._sleep = sleep
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._token is None:
            raise GateRefused("no GitHub token: set VELVET_GATE_TOKEN to the workflow's "
                              "GITHUB_TOKEN (actions: read) so the runner can check approvals")
        if self._client is None:
            from velvet_runner.budget import Budgets
            from velvet_runner.client import make_client

            self._client = make_client(self.api_url, headers={
                "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                "Authorization": f"Bearer {self._token.get_secret_value()}"},
                budgets=self._budgets or Budgets(), vendor="github")
        return self._client

    def _send(self, verb: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        import httpx

        from velvet_runner.client import RetryPolicy, raise_for_vendor
        from velvet_runner.errors import RateLimited, VendorUnavailable

        def once() -> httpx.Response:
            try:
                response = self.client.request(verb, path, json=body)
            except httpx.HTTPError as exc:
                raise VendorUnavailable(f"GitHub {verb} {path}: {type(exc).__name__}") from None
            try:
                raise_for_vendor(response, f"GitHub {verb} {path}")
            except (RateLimited, VendorUnavailable):
                raise
            except VelvetError:
                pass  # the caller reads the status
            return response

        return RetryPolicy(sleep=self._sleep).run(once)

    def call(self, verb: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, data); GitHub errors become (status, data) too, never a traceback."""
        response = self._send(verb, path, body)
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        return response.status_code, data

    def get(self, path: str, what: str) -> Any:
        status, data = self.call("GET", path)
        if status >= 400:
            raise GateRefused(f"cannot read {what} from GitHub ({path}): HTTP {status}")
        return data

    def get_all(self, path: str, what: str) -> list[Any]:
        """A listing, every page of it (GitHub's `Link: rel="next"`)."""
        from velvet_runner.client import follow_links

        def send(url: str) -> httpx.Response:
            response = self._send("GET", url)
            if response.status_code >= 400:
                raise GateRefused(f"cannot read {what} from GitHub ({path}): "
                                  f"HTTP {response.status_code}")
            return response

        return follow_links(self.client, path, what, send=send)



def gate_token(settings: Settings | None, environ: Environ) -> SecretStr | None:
    from pydantic import SecretStr

    token = environ.get("VELVET_GATE_TOKEN")
    if token:
        return SecretStr(token)
    return settings.github_token if settings is not None else None


def api_from_env(settings: Settings | None, environ: Environ) -> GitHubApi:
    api_url = environ.get("GITHUB_API_URL") or (
        settings.github_api_url if settings is not None else "https://api.github.com")
    return GitHubApi(gate_token(settings, environ), api_url)

