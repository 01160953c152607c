"""The Notifier's delivery rules, with injected channels, clock and sleep (no servers needed):
bounded attempts, nothing started after the deadline, every request's timeout capped by the time
left, and the channels delivered side by side so one slow vendor delays none of the others.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from velvet_runner.errors import NotifyError
from velvet_runner.machine import Flow, State
from velvet_runner.notify import Channel, Notifier, message_text
from velvet_runner.records import ConsumerRow, Job, RowStatus


def _job(status: State = State.REV_LEAKED, flow: Flow = Flow.REVOCATION) -> Job:
    now = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
    rows = [ConsumerRow(consumer_id="app-a", kind="heroku_config_var", target="a",
                        validate_status=RowStatus.FAILED),
            ConsumerRow(consumer_id="app-b", kind="heroku_config_var", target="b",
                        validate_status=RowStatus.SUCCEEDED)]
    return Job(job_id="01a20000-0000-7000-8000-000000000001", credential="HK_DEPLOY_BOT",
               vendor="heroku", flow_type=flow, env="prod", status=status, created_at=now,
               updated_at=now, consumers=rows)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_attempts_stop_at_the_deadline_and_timeouts_shrink_to_fit() -> None:
    time = FakeTime()
    timeouts: list[float] = []

    def slow_failure(job: Job, timeout: float) -> None:
        timeouts.append(timeout)
        time.now += 10.0  # each attempt burns ten seconds, then fails retryably
        raise NotifyError("slack: HTTP 503", retryable=True)

    notifier = Notifier(lambda job: [Channel("slack", slow_failure)], sleep=time.sleep,
                        clock=time.clock, attempts=5, deadline=24.0, timeout=5.0)

    [result] = notifier.job_changed(_job(), State.REV_VALIDATING)

    assert result["ok"] is False
    assert result["attempts"] == 3
    assert timeouts == [5.0, 5.0, 2.5]  # the third may only use what is left of 24 s
    assert time.sleeps == [0.5, 1.0]


def test_channels_are_delivered_side_by_side() -> None:
    slack_done = threading.Event()

    def email(job: Job, timeout: float) -> None:
        # Succeeds only if Slack gets through while this one is still in flight.
        if not slack_done.wait(timeout=5):
            raise NotifyError("email: never saw slack finish", retryable=False)

    def slack(job: Job, timeout: float) -> None:
        slack_done.set()

    notifier = Notifier(lambda job: [Channel("email", email), Channel("slack", slack)])

    results = notifier.job_changed(_job(), State.REV_VALIDATING)

    assert [(r["channel"], r["ok"]) for r in results] == [("email", True), ("slack", True)]


def test_a_broken_channel_fails_alone() -> None:
    def broken(job: Job, timeout: float) -> None:
        raise KeyError("bug")

    def fine(job: Job, timeout: float) -> None:
        return None

    notifier = Notifier(lambda job: [Channel("slack", broken), Channel("email", fine)])

    results = notifier.job_changed(_job(), State.REV_VALIDATING)

    assert results[0] == {"channel": "slack", "ok": False, "attempts": 1,
                          "error": "internal error: KeyError"}
    assert results[1] == {"channel": "email", "ok": True, "attempts": 1}


def test_no_channels_means_no_results() -> None:
    assert Notifier(lambda job: []).job_changed(_job(), State.REV_VALIDATING) == []


def test_the_sev1_message_names_job_credential_leaking_consumers_and_link() -> None:
    text = message_text(_job(), "https://github.example/raxx/velvet/actions/runs/1")

    assert text.splitlines()[0] == (
        "SEV1 rev_leaked: HK_DEPLOY_BOT is still accepted after revocation")
    assert "job_id: 01a20000-0000-7000-8000-000000000001" in text
    assert "credential: HK_DEPLOY_BOT" in text
    assert "leaking consumers: app-a" in text
    assert "app-b" not in text
    assert "link: https://github.example/raxx/velvet/actions/runs/1" in text


def test_the_done_message_lists_every_consumer_row() -> None:
    text = message_text(_job(State.DONE, Flow.OPERATIONAL))

    assert text.splitlines()[0] == "Velvet: HK_DEPLOY_BOT rotation done"
    assert "app-a (pending/failed), app-b (pending/succeeded)" in text
    assert "link:" not in text
