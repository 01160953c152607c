"""Contract tests for the Slack fake, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from velvet_runner.budget import Budgets
from velvet_runner.client import make_client
from velvet_runner.machine import Flow, State
from velvet_runner.notify import Channel, Notifier, slack_sender
from velvet_runner.records import Job, fingerprint
from velvet_sandbox import slack
from velvet_sandbox.server import ServerThread

from .support import FakeClock, reset_client, serve_on_fake_clock

TOKEN = "xoxb-velvet-sandbox"
CHANNEL = "C0VELVET01"
JSON_UTF8 = "application/json; charset=utf-8"


@dataclass
class Sandbox:
    state: slack.State
    clock: FakeClock
    http: httpx.Client

    def post(self, body: dict[str, object], token: str | None = TOKEN) -> httpx.Response:
        headers = {"Content-Type": JSON_UTF8}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post("/api/chat.postMessage", content=json.dumps(body), headers=headers)


@pytest.fixture(scope="module")
def sbx2_slack_server() -> Iterator[tuple[slack.State, FakeClock, str]]:
    yield from serve_on_fake_clock(slack.State, slack.create_app, "sbx2-slack")


@pytest.fixture
def sbx2_slack(sbx2_slack_server: tuple[slack.State, FakeClock, str]) -> Iterator[Sandbox]:
    state, clock, url = sbx2_slack_server
    with reset_client(url, clock) as http:
        state.burst_per_second = slack.DEFAULT_BURST_PER_SECOND
        state.add_token(TOKEN)
        state.add_channel(CHANNEL, "rotations")
        yield Sandbox(state, clock, http)


def test_post_message_success(sbx2_slack: Sandbox) -> None:
    response = sbx2_slack.post({"channel": CHANNEL, "text": "rotation done"})
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["channel"] == CHANNEL
    assert isinstance(body["ts"], str)
    assert body["message"]["text"] == "rotation done"
    assert body["message"]["ts"] == body["ts"]
    assert "warning" not in body
    (recorded,) = sbx2_slack.state.messages
    assert recorded["channel"] == CHANNEL
    assert recorded["text"] == "rotation done"
    assert recorded["ts"] == body["ts"]


def test_channel_by_name_and_unique_ts(sbx2_slack: Sandbox) -> None:
    first = sbx2_slack.post({"channel": "#rotations", "text": "a"}).json()
    second = sbx2_slack.post({"channel": "rotations", "text": "b"}).json()
    assert first["channel"] == second["channel"] == CHANNEL
    assert float(second["ts"]) > float(first["ts"])


@pytest.mark.parametrize(
    ("body", "token", "code"),
    [
        ({"channel": CHANNEL, "text": "x"}, None, "not_authed"),
        ({"channel": CHANNEL, "text": "x"}, "xoxb-wrong", "invalid_auth"),
        ({"channel": "C_UNKNOWN", "text": "x"}, TOKEN, "channel_not_found"),
        ({"channel": CHANNEL}, TOKEN, "no_text"),
        ({"channel": CHANNEL, "text": "", "blocks": []}, TOKEN, "no_text"),
        ({"channel": CHANNEL, "blocks": "not json"}, TOKEN, "invalid_blocks"),
        ({"channel": CHANNEL, "text": "x" * 40_001}, TOKEN, "msg_too_long"),
    ],
)
def test_method_errors_are_http_200_ok_false(
    sbx2_slack: Sandbox, body: dict[str, object], token: str | None, code: str
) -> None:
    response = sbx2_slack.post(body, token=token)
    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": code}
    assert sbx2_slack.state.messages == []


def test_archived_and_not_member_channels(sbx2_slack: Sandbox) -> None:
    sbx2_slack.state.add_channel("C0ARCHIVED", archived=True)
    sbx2_slack.state.add_channel("C0OUTSIDE", member=False)
    assert sbx2_slack.post({"channel": "C0ARCHIVED", "text": "x"}).json()["error"] == "is_archived"
    assert sbx2_slack.post({"channel": "C0OUTSIDE", "text": "x"}).json()["error"] == (
        "not_in_channel"
    )


def test_blocks_without_text_are_accepted(sbx2_slack: Sandbox) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*done*"}}]
    body = sbx2_slack.post({"channel": CHANNEL, "blocks": blocks}).json()
    assert body["ok"] is True
    assert body["message"]["blocks"] == blocks


def test_form_encoded_post_with_token_field(sbx2_slack: Sandbox) -> None:
    blocks = [{"type": "divider"}]
    response = sbx2_slack.http.post(
        "/api/chat.postMessage",
        data={"token": TOKEN, "channel": CHANNEL, "text": "form", "blocks": json.dumps(blocks)},
    )
    assert response.json()["ok"] is True
    assert sbx2_slack.state.messages[0]["blocks"] == blocks


def test_json_without_charset_warns(sbx2_slack: Sandbox) -> None:
    response = sbx2_slack.http.post(
        "/api/chat.postMessage",
        json={"channel": CHANNEL, "text": "x"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    body = response.json()
    assert body["ok"] is True
    assert body["warning"] == "missing_charset"
    assert body["response_metadata"] == {"warnings": ["missing_charset"]}


def test_burst_over_the_limit_is_429_with_retry_after(sbx2_slack: Sandbox) -> None:
    sbx2_slack.state.burst_per_second = 3
    for i in range(3):
        assert sbx2_slack.post({"channel": CHANNEL, "text": str(i)}).json()["ok"] is True
    limited = sbx2_slack.post({"channel": CHANNEL, "text": "too many"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    sbx2_slack.state.add_channel("C0OTHER")
    assert sbx2_slack.post({"channel": "C0OTHER", "text": "other channel"}).status_code == 200
    sbx2_slack.clock.advance(1.0)
    assert sbx2_slack.post({"channel": CHANNEL, "text": "later"}).status_code == 200
    assert [m["text"] for m in sbx2_slack.state.messages] == [
        "0",
        "1",
        "2",
        "other channel",
        "later",
    ]
    limits = sbx2_slack.http.get("/__velvet/limits").json()
    assert limits["breaches"] == [{"rule": "burst_per_second", "count": 1}]
    assert limits["rules"] == {"burst_per_second": {"limit": 3, "window": 1.0}}


def test_retry_after_is_when_the_channels_window_takes_one_more(sbx2_slack: Sandbox) -> None:
    rules = {"burst_per_second": {"limit": 2, "window": 10}}
    assert sbx2_slack.http.post("/__velvet/limits", json={"rules": rules}).status_code == 200
    assert sbx2_slack.post({"channel": CHANNEL, "text": "a"}).status_code == 200
    sbx2_slack.clock.advance(3.0)
    assert sbx2_slack.post({"channel": CHANNEL, "text": "b"}).status_code == 200
    sbx2_slack.clock.advance(1.5)
    limited = sbx2_slack.post({"channel": CHANNEL, "text": "c"})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "6")  # 5.5 s, rounded up
    sbx2_slack.clock.advance(5.5)
    assert sbx2_slack.post({"channel": CHANNEL, "text": "c"}).status_code == 200


def test_a_time_scale_drains_the_window_faster(sbx2_slack: Sandbox) -> None:
    sbx2_slack.state.burst_per_second = 1
    assert sbx2_slack.http.post("/__velvet/limits", json={"time_scale": 10}).status_code == 200
    assert sbx2_slack.post({"channel": CHANNEL, "text": "a"}).status_code == 200
    assert sbx2_slack.post({"channel": CHANNEL, "text": "b"}).status_code == 429
    sbx2_slack.clock.advance(0.15)  # a vendor second and a half
    assert sbx2_slack.post({"channel": CHANNEL, "text": "b"}).status_code == 200


def test_default_burst_is_generous(sbx2_slack: Sandbox) -> None:
    for i in range(slack.DEFAULT_BURST_PER_SECOND):
        assert sbx2_slack.post({"channel": CHANNEL, "text": str(i)}).status_code == 200


def test_injected_429_fault(sbx2_slack: Sandbox) -> None:
    fault = {"path": "/api/chat.postMessage", "status": 429, "times": 1, "retry_after": 7}
    assert sbx2_slack.http.post("/__velvet/faults", json=fault).status_code == 201
    limited = sbx2_slack.post({"channel": CHANNEL, "text": "x"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert sbx2_slack.post({"channel": CHANNEL, "text": "x"}).status_code == 200


def test_auth_test(sbx2_slack: Sandbox) -> None:
    ok = sbx2_slack.http.post("/api/auth.test", headers={"Authorization": f"Bearer {TOKEN}"})
    body = ok.json()
    assert body["ok"] is True
    assert {"url", "team", "user", "team_id", "user_id", "bot_id"} <= set(body)
    bad = sbx2_slack.http.post("/api/auth.test", headers={"Authorization": "Bearer xoxb-no"})
    assert bad.status_code == 200
    assert bad.json() == {"ok": False, "error": "invalid_auth"}
    assert sbx2_slack.http.post("/api/auth.test").json()["error"] == "not_authed"


def test_unknown_method_is_404_unknown_method(sbx2_slack: Sandbox) -> None:
    response = sbx2_slack.http.post("/api/chat.nope")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error": "unknown_method"}


def test_snapshot_round_trip_and_auth_test_changes_nothing(sbx2_slack: Sandbox) -> None:
    sbx2_slack.post({"channel": CHANNEL, "text": "kept"})
    before = sbx2_slack.http.get("/__velvet/state").json()
    sbx2_slack.http.post("/api/auth.test", headers={"Authorization": f"Bearer {TOKEN}"})
    sbx2_slack.post({"channel": "C_UNKNOWN", "text": "refused"})
    assert sbx2_slack.state.snapshot() == before
    assert TOKEN not in json.dumps(before)
    assert {"token": fingerprint(TOKEN), "user": "velvet-bot"} in before["tokens"]
    assert TOKEN in sbx2_slack.state.token_values()
    clear = sbx2_slack.state.snapshot(reveal=True)
    fresh = slack.State(clock=sbx2_slack.clock)
    fresh.seed(clear)
    assert fresh.snapshot(reveal=True) == clear
    assert fresh.snapshot() == before
    assert sbx2_slack.http.post("/__velvet/seed", json={"bogus": 1}).status_code == 400


def test_seed_and_snapshot_are_the_snapshot_model(sbx2_slack: Sandbox) -> None:
    sbx2_slack.post({"channel": CHANNEL, "text": "modelled"})
    clear = sbx2_slack.state.snapshot(reveal=True)
    restored = slack.Snapshot.model_validate(clear)
    assert restored.model_dump(mode="json", context={"reveal": True}) == clear
    bad_channel = {"channels": [{"id": "C9", "colour": "red"}]}
    assert sbx2_slack.http.post("/__velvet/seed", json=bad_channel).status_code == 400
    no_token = {"tokens": [{"user": "x"}]}
    assert sbx2_slack.http.post("/__velvet/seed", json=no_token).status_code == 400
    seeded = {"tokens": [{"token": "xoxb-seeded", "user": "seeder"}], "channels": [{"id": "C9"}]}
    assert sbx2_slack.http.post("/__velvet/seed", json=seeded).status_code == 200
    assert "xoxb-seeded" in sbx2_slack.state.token_values()
    shown = sbx2_slack.http.get("/__velvet/state").json()
    assert {"id": "C9", "name": "c9", "archived": False, "member": True} in shown["channels"]
    assert {"token": fingerprint("xoxb-seeded"), "user": "seeder"} in shown["tokens"]


# -- the runner's notifier against the fake's limit --------------------------------------------

SCALE = 10.0
BURST = 8


@pytest.fixture(scope="module")
def sbx2_slack_live() -> Iterator[tuple[slack.State, str]]:
    """A second fake on the real clock, at Slack's one message a second per channel."""
    state = slack.State()
    with ServerThread(slack.create_app(state), name="sbx2-slack-live") as server:
        yield state, server.url


def _live(fake: tuple[slack.State, str]) -> tuple[slack.State, str]:
    state, url = fake
    httpx.post(url + "/__velvet/reset").raise_for_status()
    state.add_token(TOKEN)
    state.add_channel(CHANNEL, "rotations")
    httpx.post(url + "/__velvet/limits", json={
        "time_scale": SCALE, "rules": {"burst_per_second": {"limit": 1}}}).raise_for_status()
    return state, url


def _job(i: int) -> Job:
    now = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
    return Job(job_id=f"01a20000-0000-7000-8000-{i:012d}", credential="HK_DEPLOY_BOT",
               vendor="heroku", flow_type=Flow.OPERATIONAL, env="prod", status=State.DONE,
               created_at=now, updated_at=now)


def test_the_notifier_paced_by_its_budget_sends_a_burst_unrefused(
    sbx2_slack_live: tuple[slack.State, str],
) -> None:
    state, url = _live(sbx2_slack_live)
    budgets = Budgets(time_scale=SCALE)
    client = make_client(url + "/api", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": JSON_UTF8},
        budgets=budgets, vendor="slack")
    with client:
        notifier = Notifier(lambda job: [Channel("slack", slack_sender(client, CHANNEL))])
        with ThreadPoolExecutor(BURST) as pool:
            results = list(pool.map(lambda i: notifier.job_changed(_job(i), State.VERIFIED),
                                    range(BURST)))
    assert [r[0]["ok"] for r in results] == [True] * BURST
    assert len(state.messages) == BURST
    limits = httpx.get(url + "/__velvet/limits").json()
    assert limits["rejected"] == 0, limits["breaches"]
    assert "messages per second" in budgets.totals().reasons  # the limit did bind


def test_an_unpaced_burst_is_refused_and_counted(sbx2_slack_live: tuple[slack.State, str]) -> None:
    state, url = _live(sbx2_slack_live)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": JSON_UTF8}
    body = json.dumps({"channel": CHANNEL, "text": "unpaced"})
    with httpx.Client(base_url=url, headers=headers) as http:
        answers = [http.post("/api/chat.postMessage", content=body) for _ in range(BURST)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused
    assert refused[0].json() == {"ok": False, "error": "ratelimited"}
    assert int(refused[0].headers["Retry-After"]) >= 1
    limits = httpx.get(url + "/__velvet/limits").json()
    assert limits["breaches"] == [{"rule": "burst_per_second", "count": len(refused)}]
    assert len(state.messages) == BURST - len(refused)
