"""A rate-limit answer without Retry-After (Heroku never sends one) is waited out by the vendor's
published refill, doubling while the answers keep coming, within the stage's patience, and the
progress says so (issue #22: it used to give up after four quick attempts, in under a second).

The pauses go through RetryPolicy's `sleep` seam and are recorded: the assertions are on what
was asked for, never on how long anything took.
"""

from __future__ import annotations

import time

import httpx
import pytest
from pydantic import SecretStr

from velvet_runner.budget import Budgets
from velvet_runner.client import RATE_DOUBLINGS, RetryPolicy, make_client
from velvet_runner.errors import RateLimited
from velvet_runner.ratepolicy import POLICIES
from velvet_runner.targets.heroku_config_var import HerokuConfigVar, HerokuConfigVarTarget

from .conftest import Fake

SCALE = 60.0  # the budgets' clock: one real second is a minute of Heroku's
HEROKU_ACCEPT = {"Accept": "application/vnd.heroku+json; version=3"}
APP = "silent-app"
PATCH = f"/apps/{APP}/config-vars"
REFILL = 60 / 75 / SCALE  # Heroku: 75 requests a minute, one every 0.8 s of its time


class Recorder:
    """The sleep seam: remembers every pause asked for, and sleeps none of it."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.said: list[str] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def _target(hk: Fake, budgets: Budgets) -> tuple[HerokuConfigVarTarget, httpx.Client]:
    _, token = hk.state.add_authorization("bot@raxx.app", ["global"], "bootstrap")
    hk.state.add_app(APP, {"KEY": "old"})
    client = make_client(hk.url, headers={**HEROKU_ACCEPT, "Authorization": f"Bearer {token}"},
                         budgets=budgets, vendor="heroku")
    return HerokuConfigVarTarget(HerokuConfigVar(kind="heroku_config_var", app=APP, var="KEY"),
                                 client), client


def _fault(hk: Fake, times: int | None) -> None:
    response = hk.control.post("/faults", json={"method": "PATCH", "path": PATCH, "status": 429,
                                                "times": times})
    assert response.status_code == 201, response.text


def test_six_silent_429s_are_waited_out_by_the_refill(hk: Fake) -> None:
    budgets = Budgets(time_scale=SCALE)
    target, client = _target(hk, budgets)
    _fault(hk, 6)
    seen = Recorder()
    policy = RetryPolicy(sleep=seen.sleep, say=seen.said.append)
    with client:
        policy.run(lambda: target.write(SecretStr("new")))
    assert hk.state.config_var(APP, "KEY") == "new"
    assert seen.waits == pytest.approx([REFILL * 2 ** k for k in range(6)])
    assert len(seen.said) == 6
    for line in seen.said:
        assert "rate limited (no Retry-After; heroku's bucket refills 75 requests a minute)" \
            in line
        assert f"PATCH heroku app {APP} config var KEY: HTTP 429" in line
    assert "patience spent" in seen.said[-1]


def test_a_limit_that_outlasts_the_patience_gives_up_saying_so(hk: Fake) -> None:
    budgets = Budgets(time_scale=SCALE)
    target, client = _target(hk, budgets)
    _fault(hk, None)
    seen = Recorder()
    patience = 2.0
    policy = RetryPolicy(sleep=seen.sleep, say=seen.said.append, max_rate_wait=patience)
    with client, pytest.raises(RateLimited) as raised:
        policy.run(lambda: target.write(SecretStr("new")))
    assert hk.state.config_var(APP, "KEY") == "old"
    assert "still rate limited after" in str(raised.value)
    assert "the stage's 2 s patience" in str(raised.value)
    assert sum(seen.waits) <= patience
    assert max(seen.waits) == pytest.approx(REFILL * 2 ** RATE_DOUBLINGS)  # doubling stops
    assert len(seen.waits) > policy.attempts  # no attempt was spent on a rate limit


def test_the_real_bucket_empty_then_refilled(hk: Fake) -> None:
    """No fault: the fake's own bucket is empty and refills 75 a minute on the real clock (one
    request every 0.8 s): the write waits for it and lands."""
    budgets = Budgets(time_scale=1.0)
    target, client = _target(hk, budgets)
    hk.limits(time_scale=1.0)
    hk.state.set_rate_limit(0, refill_per_minute=75)
    seen = Recorder()
    policy = RetryPolicy(sleep=time.sleep, say=seen.said.append)
    with client:
        policy.run(lambda: target.write(SecretStr("new")))
    assert hk.state.config_var(APP, "KEY") == "new"
    assert seen.said, "the empty bucket answered 429 first"
    assert "heroku's bucket refills 75 requests a minute" in seen.said[0]


def test_every_vendor_publishes_how_it_refills() -> None:
    assert POLICIES["heroku"].refill_words() == (
        "heroku's bucket refills 75 requests a minute")
    assert POLICIES["cloudflare"].refill_words() == (
        "cloudflare allows 1200 requests per 5 minutes")
    assert POLICIES["postmark"].refill_words() == "postmark publishes no rate limit"
