"""A notification that fails never changes the job's outcome: it is retried (a bounded number
of times, inside the 30-second deadline) and then recorded on the job as `notify_failed`.

Failures are injected into the Slack fake (vendor-apis.md section 7): HTTP 500, HTTP 429 with
Retry-After, a request that hangs past the client's timeout, and `ok: false` `invalid_auth`.
The in-process tests use the CLI's own wiring with a 0.5 s request timeout and a recorded
`sleep`; one test runs the real `velvet` with its real timings.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from velvet_runner.engine import Engine
from velvet_runner.machine import Action, Flow, State
from velvet_runner.records import Job
from velvet_sandbox.world import Sandbox, World

from .conftest import Cli, EngineFactory
from .support import Sleeps, emails, events, fault, issues, requests_to, slack_messages

POST_MESSAGE = "/api/chat.postMessage"
LEAKY = "heroku-config-worker-prod"


def _aborted(engine: Engine, credential: str = "HK_PLATFORM_FULL") -> Job:
    job, _ = engine.create(credential, Flow.OPERATIONAL)
    return engine.run(job.job_id, Action.ABORT)


def _results(job: Job, action: str) -> dict[str, dict[str, Any]]:
    [event] = events(job, action)
    return {r["channel"]: r for r in event["data"]["results"]}


def test_slack_500_once_is_retried_and_delivered(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World,
        rev_sleeps: Sleeps) -> None:
    fault(rev_sandbox, "slack", method="POST", path=POST_MESSAGE, status=500, times=1)

    job = _aborted(rev_engine())

    assert job.status == State.ABORTED
    assert _results(job, "notified")["slack"] == {"channel": "slack", "ok": True, "attempts": 2}
    assert events(job, "notify_failed") == []
    assert [r["status"] for r in requests_to(rev_sandbox, "slack", POST_MESSAGE)][-2:] == [
        500, 200]
    assert rev_sleeps.calls == [0.5]
    assert len(slack_messages(rev_sandbox, job.job_id)) == 1


def test_slack_500_every_time_gives_up_and_records_it(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World,
        rev_sleeps: Sleeps) -> None:
    fault(rev_sandbox, "slack", method="POST", path=POST_MESSAGE, status=500)
    seen = len(requests_to(rev_sandbox, "slack", POST_MESSAGE))

    job = _aborted(rev_engine())

    assert job.status == State.ABORTED
    result = _results(job, "notify_failed")["slack"]
    assert result == {"channel": "slack", "ok": False, "attempts": 3, "error": "slack: HTTP 500"}
    [event] = events(job, "notify_failed")
    assert event["from_state"] == event["to_state"] == "aborted"
    assert event["detail"] == "notification failed: slack"
    tried = requests_to(rev_sandbox, "slack", POST_MESSAGE)[seen:]
    assert [r["status"] for r in tried] == [500, 500, 500]  # bounded: three attempts, no more
    assert rev_sleeps.calls == [0.5, 1.0]
    assert slack_messages(rev_sandbox, job.job_id) == []


def test_slack_429_waits_for_retry_after(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World,
        rev_sleeps: Sleeps) -> None:
    fault(rev_sandbox, "slack", method="POST", path=POST_MESSAGE, status=429, retry_after=3,
          times=1)

    job = _aborted(rev_engine())

    assert job.status == State.ABORTED
    assert _results(job, "notified")["slack"]["attempts"] == 2
    assert rev_sleeps.calls == [3.0]  # Slack's Retry-After, not our own backoff


def test_slack_429_beyond_the_deadline_is_not_waited_for(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World,
        rev_sleeps: Sleeps) -> None:
    fault(rev_sandbox, "slack", method="POST", path=POST_MESSAGE, status=429, retry_after=120)

    job = _aborted(rev_engine())

    assert job.status == State.ABORTED
    result = _results(job, "notify_failed")["slack"]
    assert result["attempts"] == 1
    assert "429" in result["error"]
    assert "deadline" in result["error"]
    assert rev_sleeps.calls == []


def test_slack_invalid_auth_is_not_retried(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World,
        rev_sleeps: Sleeps) -> None:
    # Slack reports method errors as HTTP 200 with ok: false.
    fault(rev_sandbox, "slack", method="POST", path=POST_MESSAGE, status=200,
          message="invalid_auth")
    seen = len(requests_to(rev_sandbox, "slack", POST_MESSAGE))

    job = _aborted(rev_engine())

    assert job.status == State.ABORTED
    result = _results(job, "notify_failed")["slack"]
    assert result == {"channel": "slack", "ok": False, "attempts": 1,
                      "error": "slack: invalid_auth"}
    assert len(requests_to(rev_sandbox, "slack", POST_MESSAGE)) == seen + 1
    assert rev_sleeps.calls == []


def test_slack_hang_times_out_and_is_retried(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World,
        rev_sleeps: Sleeps) -> None:
    fault(rev_sandbox, "slack", method="POST", path=POST_MESSAGE, hang=True, status=None)

    job = _aborted(rev_engine(timeout=0.5))

    assert job.status == State.ABORTED
    result = _results(job, "notify_failed")["slack"]
    assert result == {"channel": "slack", "ok": False, "attempts": 3,
                      "error": "slack: timed out"}
    assert rev_sleeps.calls == [0.5, 1.0]


def test_rev_leaked_with_slack_hanging_still_mails_and_opens_the_issue(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World) -> None:
    assert httpx.get(rev_sandbox.health_url(LEAKY), timeout=10.0).status_code == 200  # cached
    fault(rev_sandbox, "slack", method="POST", path=POST_MESSAGE, hang=True, status=None)
    engine = rev_engine(timeout=0.5)
    job, _ = engine.create("HK_DEPLOY_BOT", Flow.REVOCATION)

    job = engine.run(job.job_id, Action.REVOKE)

    assert job.status == State.REV_LEAKED  # the outcome, whatever Slack did
    results = _results(job, "notify_failed")
    assert results["slack"]["ok"] is False
    assert results["slack"]["attempts"] == 3
    assert results["email"] == {"channel": "email", "ok": True, "attempts": 1}
    assert results["github_issue"] == {"channel": "github_issue", "ok": True, "attempts": 1}
    assert len(emails(rev_sandbox, job.job_id)) == 1
    assert len(issues(rev_sandbox, job.job_id)) == 1
    assert slack_messages(rev_sandbox, job.job_id) == []


@pytest.mark.parametrize("channel", ["email", "github_issue"])
def test_rev_leaked_when_mail_or_issue_fails_still_leaks(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World,
        channel: str) -> None:
    if channel == "email":
        fault(rev_sandbox, "postmark", method="POST", path="/email", status=503)
    else:
        fault(rev_sandbox, "github", method="POST", path="/repos/raxx/velvet/issues", status=403)
    assert httpx.get(rev_sandbox.health_url(LEAKY), timeout=10.0).status_code == 200
    engine = rev_engine()
    job, _ = engine.create("HK_DEPLOY_BOT", Flow.REVOCATION)

    job = engine.run(job.job_id, Action.REVOKE)

    assert job.status == State.REV_LEAKED
    results = _results(job, "notify_failed")
    assert results[channel]["ok"] is False
    # A 503 is retried; a 403 (the token may not open issues) is not.
    assert results[channel]["attempts"] == (3 if channel == "email" else 1)
    assert all(r["ok"] for name, r in results.items() if name != channel)
    assert len(slack_messages(rev_sandbox, job.job_id)) == 1


def test_cli_outcome_and_exit_code_ignore_a_failing_slack(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World) -> None:
    fault(rev_sandbox, "slack", method="POST", path=POST_MESSAGE, status=500)
    job_id = rev_cli("rotate", "HK_PLATFORM_FULL").job["job_id"]

    ran = rev_cli("stage", job_id, "abort", env={"VELVET_LOG": "warning"})

    assert ran.code == 0, ran.err
    assert ran.job["status"] == "aborted"
    [event] = events(ran.job, "notify_failed")
    assert event["data"]["results"][0]["attempts"] == 3
    assert "notification via slack failed after 3 attempt(s)" in ran.err  # the log line
    assert rev_cli("status", "--job", job_id, "--json").job["status"] == "aborted"
    # For people (no log lines on a terminal), the summary says it.
    shown = rev_cli("status", "--job", job_id, "--human")
    assert "Notification failed (tell the people it was for by hand):" in shown.out
    assert "slack: failed after 3 attempt(s)" in shown.out


def test_testing_flow_notifies_nobody(
        rev_engine: EngineFactory, rev_sandbox: Sandbox, rev_world: World) -> None:
    engine = rev_engine()
    job, _ = engine.create("HK_PLATFORM_FULL", Flow.TESTING)

    job = engine.run(job.job_id, Action.VERIFY)

    assert job.status == State.DONE
    assert slack_messages(rev_sandbox, job.job_id) == []
    assert events(job, "notified") == events(job, "notify_failed") == []
