"""The GitHub fake's primary rate limit on its vendor clock, and the runner waiting it out.

The fake runs on the real wall clock here (its `x-ratelimit-reset` is an epoch the runner
compares with `time.time()`), at time scale 3600: the primary limit's hour is a real second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from velvet_runner.budget import Budgets
from velvet_runner.client import RetryPolicy, make_client
from velvet_runner.github.api import GitHubApi
from velvet_runner.targets.github_actions_secret import (
    GithubActionsSecret,
    GithubActionsSecretTarget,
)
from velvet_sandbox import github as gh
from velvet_sandbox.server import ServerThread

TOKEN = "ghs_primary_limit_tests_0123456789"
REPO = "raxx/limits"
SCALE = 3600.0  # one real second is GitHub's hour


class Fake:
    def __init__(self, state: gh.State, url: str, http: httpx.Client) -> None:
        self.state, self.url, self.http = state, url, http

    def limits(self, **settings: Any) -> dict[str, Any]:
        path = "/__velvet/limits"
        response = self.http.post(path, json=settings) if settings else self.http.get(path)
        response.raise_for_status()
        return dict(response.json())

    def statuses(self, suffix: str) -> list[int]:
        log = self.http.get("/__velvet/requests").json()["requests"]
        return [r["status"] for r in log if r["path"].endswith(suffix)]


@pytest.fixture(scope="module")
def _sbx2_limits_server() -> Iterator[tuple[gh.State, str]]:
    state = gh.State()
    with ServerThread(gh.create_app(state), name="sbx2-github-limits") as server:
        yield state, server.url


@pytest.fixture
def fake(_sbx2_limits_server: tuple[gh.State, str]) -> Iterator[Fake]:
    state, url = _sbx2_limits_server
    headers = {"Authorization": f"Bearer {TOKEN}", "User-Agent": "velvet-tests"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        http.post("/__velvet/reset").raise_for_status()
        state.add_token(TOKEN, "velvet-bot")
        state.add_repo(REPO)
        yield Fake(state, url, http)


def _exhaust(fake: Fake, **primary: Any) -> dict[str, Any]:
    """Time scale 3600 and no request left this (vendor) hour, through the control API."""
    return fake.limits(time_scale=SCALE, primary={"remaining": 0, **primary})


def test_an_exhausted_primary_limit_resets_after_an_hour_of_vendor_time(fake: Fake) -> None:
    started = time.time()
    shown = _exhaust(fake)["primary"]
    assert (shown["limit"], shown["remaining"], shown["window"]) == (5000, 0, 3600)
    # The reset is a wall-clock epoch: the hour left, at this scale about a second from now.
    assert started <= shown["reset"] <= started + 2
    refused = fake.http.get(f"/repos/{REPO}")
    assert refused.status_code == 403
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) == shown["reset"]
    assert refused.json()["message"].startswith("API rate limit exceeded")
    while (response := fake.http.get(f"/repos/{REPO}")).status_code == 403:
        assert time.time() < started + 3, "the primary limit never reset"
        time.sleep(0.05)
    assert response.status_code == 200
    assert 0.5 < time.time() - started
    assert int(response.headers["x-ratelimit-remaining"]) == 4999
    limits = fake.limits()
    breaches = {b["rule"]: b["count"] for b in limits["breaches"]}
    assert breaches["primary"] == fake.statuses(f"/repos/{REPO}").count(403)


def test_the_primary_limit_can_answer_429_and_bad_settings_are_400(fake: Fake) -> None:
    _exhaust(fake, status=429)
    refused = fake.http.get(f"/repos/{REPO}")
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert "retry-after" not in refused.headers
    for bad in ({"remaining": -1}, {"remaining": 6000}, {"status": 500}, {"reset": 1}, []):
        response = fake.http.post("/__velvet/limits", json={"primary": bad})
        assert response.status_code == 400, bad
    assert fake.limits()["primary"]["status"] == 429  # the refused settings changed nothing


def test_resets_restore_the_primary_limit(fake: Fake) -> None:
    _exhaust(fake, limit=10, status=429)
    counts = fake.limits(reset=True)  # the limiter's counts and the primary window
    assert (counts["primary"]["remaining"], counts["primary"]["status"]) == (10, 429)
    assert counts["time_scale"] == SCALE
    _exhaust(fake)
    fake.http.post("/__velvet/reset").raise_for_status()  # everything
    limits = fake.limits()
    assert limits["time_scale"] == 1.0
    assert (limits["primary"]["remaining"], limits["primary"]["status"]) == (5000, 403)


def test_the_runners_github_api_waits_for_the_reset_and_then_succeeds(fake: Fake) -> None:
    """GitHubApi under its budget: the 403 pauses the account until `x-ratelimit-reset` (an
    epoch: a real second, unscaled) and the retry then gets the page."""
    fake.state.set_secret(f"repo:{REPO}", "ONE", "v")
    _exhaust(fake)
    started = time.monotonic()
    budgets = Budgets(time_scale=SCALE)
    api = GitHubApi(TOKEN, fake.url, budgets=budgets)
    entries = api.get_all(f"/repos/{REPO}/actions/secrets", "secrets")
    assert [e["name"] for e in entries] == ["ONE"]
    assert time.monotonic() - started > 0.3  # it did wait for the reset
    assert fake.statuses("/actions/secrets") == [403, 200]  # one refusal, then the answer
    assert budgets.totals().rejected == 1


def test_a_secret_write_refused_by_the_primary_limit_is_retried_and_lands(fake: Fake) -> None:
    """A target write under the engine's RetryPolicy: the rate-limit 403 is a wait, not a
    refused credential, and the value the fake stores is the one written."""
    _exhaust(fake)
    budgets = Budgets(time_scale=SCALE)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with make_client(fake.url, headers=headers, budgets=budgets, vendor="github") as client:
        target = GithubActionsSecretTarget(GithubActionsSecret(
            kind="github_actions_secret", secret="ROTATED", repository=REPO), client)
        RetryPolicy().run(lambda: target.write(SecretStr("v-new")))
    assert fake.state.secret_plaintext(f"repo:{REPO}", "ROTATED") == "v-new"
    # The first call (when GitHub last stored it: 404, never) met the limit; then the key
    # and the write.
    assert fake.statuses("/secrets/ROTATED") == [403, 404, 201]
    assert fake.statuses("/secrets/public-key") == [200]
    assert budgets.totals().rejected == 1


def test_a_fresh_fakes_primary_window_ends_within_the_hour() -> None:
    """fidelity.md #1: the window a new fake starts with is an hour of its vendor clock, so
    `x-ratelimit-reset` is an epoch within the hour (it was ~3.59e9, the year 2083, and the
    5,000-request window of a long sandbox run never reset)."""
    state = gh.State()
    state.add_token(TOKEN, "velvet-bot")
    with ServerThread(gh.create_app(state), name="sbx2-github-fresh") as server:
        started = time.time()
        response = httpx.get(server.url + "/rate_limit", timeout=10, headers={
            "Authorization": f"Bearer {TOKEN}", "User-Agent": "velvet-tests"})
    assert response.status_code == 200
    reset = int(response.headers["x-ratelimit-reset"])
    assert started < reset <= started + 3601
    assert response.json()["rate"]["reset"] == reset
