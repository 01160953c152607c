"""Notifications on terminal events: Slack always; for rev_leaked also e-mail and a GitHub issue.

Each channel is an injected httpx client. A notification is tried a few times inside a deadline
(rev_leaked must reach people within 30 seconds) and its failure is recorded on the job as an
event; it never changes the job's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from velvet_runner.client import make_client, retry_after
from velvet_runner.machine import State
from velvet_runner.records import Job
from velvet_runner.settings import Settings

DEADLINE_SECONDS = 25.0


class NotifyError(Exception):
    def __init__(self, message: str, *, retryable: bool, wait: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.wait = wait


def _headline(job: Job) -> str:
    if job.status == State.REV_LEAKED:
        return f"SEV1 rev_leaked: {job.credential} is still accepted after revocation"
    return f"Velvet: {job.credential} rotation {job.status}"


def _leaking(job: Job) -> list[str]:
    return [r.consumer_id for r in job.consumers if r.validate_status == "failed"]


def message_text(job: Job) -> str:
    consumers = _leaking(job) if job.status == State.REV_LEAKED else [
        f"{r.consumer_id} ({r.distribute_status}/{r.validate_status})" for r in job.consumers]
    label = "leaking consumers" if job.status == State.REV_LEAKED else "consumers"
    lines = [_headline(job), f"job_id: {job.job_id}", f"credential: {job.credential}",
             f"flow: {job.flow_type} · env: {job.env} · status: {job.status}",
             f"{label}: {', '.join(consumers) or 'none'}"]
    if job.run_url:
        lines.append(f"run: {job.run_url}")
    return "\n".join(lines)


@dataclass
class Channel:
    name: str
    send: Callable[[Job], None]


@dataclass
class Notifier:
    channels_for: Callable[[Job], list[Channel]]
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    attempts: int = 3
    deadline: float = DEADLINE_SECONDS
    results: list[dict[str, Any]] = field(default_factory=list)

    def job_changed(self, job: Job, previous: State) -> list[dict[str, Any]]:
        start = self.clock()
        out = []
        for channel in self.channels_for(job):
            out.append(self._deliver(channel, job, start))
        self.results.extend(out)
        return out

    def _deliver(self, channel: Channel, job: Job, start: float) -> dict[str, Any]:
        error = "not attempted"
        for attempt in range(self.attempts):
            remaining = self.deadline - (self.clock() - start)
            if remaining <= 0:
                error = "deadline passed"
                break
            try:
                channel.send(job)
                return {"channel": channel.name, "ok": True, "attempts": attempt + 1}
            except NotifyError as exc:
                error = str(exc)
                if not exc.retryable:
                    break
                wait = exc.wait if exc.wait is not None else 0.5 * (2 ** attempt)
                if wait >= remaining:
                    break
                self.sleep(wait)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}"
                self.sleep(min(0.5 * (2 ** attempt), max(0.0, remaining / 2)))
        return {"channel": channel.name, "ok": False, "error": error}


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code == 429:
        raise NotifyError(f"{what}: HTTP 429", retryable=True, wait=retry_after(response))
    if response.status_code >= 500:
        raise NotifyError(f"{what}: HTTP {response.status_code}", retryable=True)
    if response.status_code >= 400:
        raise NotifyError(f"{what}: HTTP {response.status_code}", retryable=False)


def slack_sender(client: httpx.Client, channel: str) -> Callable[[Job], None]:
    def send(job: Job) -> None:
        response = client.post("/chat.postMessage", json={
            "channel": channel, "text": message_text(job), "unfurl_links": False})
        _check(response, "slack")
        body = response.json()
        if not body.get("ok"):
            code = str(body.get("error"))
            raise NotifyError(f"slack: {code}", retryable=code in {
                "ratelimited", "rate_limited", "fatal_error", "internal_error", "request_timeout"})
    return send


def email_sender(client: httpx.Client, sender: str, to: str) -> Callable[[Job], None]:
    def send(job: Job) -> None:
        response = client.post("/email", json={
            "From": sender, "To": to, "Subject": _headline(job), "TextBody": message_text(job),
            "MessageStream": "outbound"})
        _check(response, "postmark")
    return send


def issue_sender(client: httpx.Client, repository: str) -> Callable[[Job], None]:
    def send(job: Job) -> None:
        leaking = _leaking(job)
        body = message_text(job) + "\n\nLeaking consumers:\n" + "\n".join(
            f"- [ ] `{c}`" for c in leaking) + ("\n\nRunbook section 10: restart or disable each "
                                               "consumer, re-run its healthcheck, then "
                                               "`velvet stage " + job.job_id +
                                               " confirm_leak_resolved`.")
        response = client.post(f"/repos/{repository}/issues", json={
            "title": _headline(job), "body": body, "labels": ["velvet", "sev1"]})
        _check(response, "github issue")
    return send


def notifier_from_settings(settings: Settings,
                           transport: httpx.BaseTransport | None = None) -> Notifier | None:
    """Channels configured by settings; None when nothing is configured."""
    timeout = httpx.Timeout(5.0, connect=3.0)
    slack = email = issue = None
    if settings.slack_token and settings.slack_channel:
        slack = slack_sender(make_client(settings.slack_api_url, headers={
            "Authorization": f"Bearer {settings.slack_token.get_secret_value()}",
            "Content-Type": "application/json; charset=utf-8"}, transport=transport,
            timeout=timeout), settings.slack_channel)
    if settings.postmark_server_token and settings.ops_email:
        email = email_sender(make_client(settings.postmark_api_url, headers={
            "Accept": "application/json",
            "X-Postmark-Server-Token": settings.postmark_server_token.get_secret_value()},
            transport=transport, timeout=timeout), settings.ops_email_from, settings.ops_email)
    if settings.github_token and settings.github_repository:
        issue = issue_sender(make_client(settings.github_api_url, headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {settings.github_token.get_secret_value()}"},
            transport=transport, timeout=timeout), settings.github_repository)
    if slack is None and email is None and issue is None:
        return None

    def channels_for(job: Job) -> list[Channel]:
        chosen = []
        if slack is not None:
            chosen.append(Channel("slack", slack))
        if job.status == State.REV_LEAKED:
            if email is not None:
                chosen.append(Channel("email", email))
            if issue is not None:
                chosen.append(Channel("github_issue", issue))
        return chosen

    return Notifier(channels_for)
