"""Notifications on terminal events: Slack always; for rev_leaked also e-mail and a GitHub issue.

Each channel is an injected httpx client. The channels are tried at the same time, each a few
times inside one shared deadline (rev_leaked must reach people within 30 seconds, runbook
section 10), so a hanging Slack never holds up the e-mail or the issue. A failure is returned to
the engine, which records it on the job as an event; it never changes the job's outcome.

A testing-flow job (a dry run) notifies nobody: it changed nothing, and "rotation done" in the
ops channel would say otherwise.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from velvet_runner.budget import Budgets, github_rate_limited
from velvet_runner.client import make_client, retry_after
from velvet_runner.errors import NotifyError
from velvet_runner.machine import Flow, State
from velvet_runner.records import Job
from velvet_runner.scan import before_revoke_lines
from velvet_runner.settings import Settings

if TYPE_CHECKING:
    import httpx

# No attempt starts later than this after the event; with the per-request timeout below that
# keeps every notification inside the runbook's 30 seconds.
DEADLINE_SECONDS = 24.0
REQUEST_TIMEOUT_SECONDS = 5.0
ATTEMPTS = 3
SLACK_RETRYABLE = frozenset({"ratelimited", "rate_limited", "fatal_error", "internal_error",
                             "request_timeout", "service_unavailable"})

log = logging.getLogger("velvet.notify")


def _headline(job: Job) -> str:
    if job.status == State.REV_LEAKED:
        return f"SEV1 rev_leaked: {job.credential} is still accepted after revocation"
    kind = "emergency revocation" if job.flow_type == Flow.REVOCATION else "rotation"
    return f"Velvet: {job.credential} {kind} {job.status}"


def _leaking(job: Job) -> list[str]:
    return [r.consumer_id for r in job.consumers if r.validate_status == "failed"]


def message_text(job: Job, link: str | None = None) -> str:
    """The notification body: ids, statuses and a link; never a value."""
    if job.status == State.REV_LEAKED:
        label, consumers = "leaking consumers", _leaking(job)
    else:
        label = "consumers"
        consumers = [f"{r.consumer_id} ({r.distribute_status}/{r.validate_status})"
                     for r in job.consumers]
    lines = [_headline(job), f"job_id: {job.job_id}", f"credential: {job.credential}",
             f"flow: {job.flow_type} · env: {job.env} · status: {job.status}",
             f"{label}: {', '.join(consumers) or 'none'}"]
    lines += [f"before the revoke: {line}" for line in before_revoke_lines(job)]
    if link:
        lines.append(f"link: {link}")
    return "\n".join(lines)


Send = Callable[[Job, float], None]


@dataclass
class Channel:
    name: str
    send: Send  # (job, per-request timeout in seconds); raises NotifyError or httpx.HTTPError


@dataclass
class Notifier:
    channels_for: Callable[[Job], list[Channel]]
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    attempts: int = ATTEMPTS
    deadline: float = DEADLINE_SECONDS
    timeout: float = REQUEST_TIMEOUT_SECONDS
    results: list[dict[str, Any]] = field(default_factory=list)

    def job_changed(self, job: Job, previous: State) -> list[dict[str, Any]]:
        """Deliver to every channel this job's new state calls for; one result per channel."""
        channels = self.channels_for(job)
        if not channels:
            return []
        start = self.clock()
        with ThreadPoolExecutor(max_workers=len(channels),
                                thread_name_prefix="velvet-notify") as pool:
            futures = [pool.submit(self._deliver, channel, job, start) for channel in channels]
            out = []
            for channel, future in zip(channels, futures, strict=True):
                try:
                    out.append(future.result())
                except Exception as exc:  # noqa: BLE001 - a sender bug fails one channel only
                    out.append({"channel": channel.name, "ok": False, "attempts": 1,
                                "error": f"internal error: {type(exc).__name__}"})
        for result in out:
            if not result["ok"]:
                log.warning("job_id=%s notification via %s failed after %s attempt(s): %s",
                            job.job_id, result["channel"], result["attempts"], result["error"])
        self.results.extend(out)
        return out

    def _deliver(self, channel: Channel, job: Job, start: float) -> dict[str, Any]:
        import httpx

        error = "not attempted"
        attempts = 0
        for attempt in range(self.attempts):
            remaining = self.deadline - (self.clock() - start)
            if remaining <= 0:
                error += " (deadline passed)"
                break
            attempts += 1
            try:
                channel.send(job, min(self.timeout, remaining))
                return {"channel": channel.name, "ok": True, "attempts": attempts}
            except NotifyError as exc:
                error = str(exc)
                if not exc.retryable:
                    break
                wait = exc.retry_after
            except httpx.TimeoutException:
                error = f"{channel.name}: timed out"
                wait = None
            except httpx.HTTPError as exc:
                error = f"{channel.name}: {type(exc).__name__}"
                wait = None
            if attempt + 1 >= self.attempts:
                break
            if wait is None:
                wait = 0.5 * (2 ** attempt)
            if wait >= self.deadline - (self.clock() - start):
                error += " (retry would pass the deadline)"
                break
            self.sleep(wait)
        return {"channel": channel.name, "ok": False, "attempts": attempts, "error": error}


def _check(response: httpx.Response, what: str) -> None:
    # A rate limit (a 429, or GitHub's rate-limit 403) is a wait, not a refusal.
    if response.status_code == 429 or github_rate_limited(response):
        raise NotifyError(f"{what}: HTTP 429", retryable=True,
                          retry_after=retry_after(response))
    if response.status_code >= 500:
        raise NotifyError(f"{what}: HTTP {response.status_code}", retryable=True)
    if response.status_code >= 400:
        raise NotifyError(f"{what}: HTTP {response.status_code}", retryable=False)


def slack_sender(client: httpx.Client, channel: str,
                 link: Callable[[Job], str | None] = lambda job: job.run_url) -> Send:
    def send(job: Job, timeout: float) -> None:
        response = client.post("/chat.postMessage", timeout=timeout, json={
            "channel": channel, "text": message_text(job, link(job)), "unfurl_links": False})
        _check(response, "slack")
        try:
            body = response.json()
        except ValueError:
            raise NotifyError("slack: response is not JSON", retryable=True) from None
        if not isinstance(body, dict) or not body.get("ok"):
            code = str(body.get("error")) if isinstance(body, dict) else "unexpected_response"
            raise NotifyError(f"slack: {code}", retryable=code in SLACK_RETRYABLE)
    return send


def email_sender(client: httpx.Client, sender: str, to: str,
                 link: Callable[[Job], str | None] = lambda job: job.run_url) -> Send:
    def send(job: Job, timeout: float) -> None:
        response = client.post("/email", timeout=timeout, json={
            "From": sender, "To": to, "Subject": _headline(job),
            "TextBody": message_text(job, link(job)), "MessageStream": "outbound"})
        _check(response, "postmark")
    return send


def issue_sender(client: httpx.Client, repository: str,
                 link: Callable[[Job], str | None] = lambda job: job.run_url) -> Send:
    def send(job: Job, timeout: float) -> None:
        leaking = _leaking(job)
        body = (message_text(job, link(job)) + "\n\nLeaking consumers:\n"
                + "\n".join(f"- [ ] `{c}`" for c in leaking)
                + "\n\nRunbook section 10: restart or disable each consumer, re-run its "
                  "healthcheck, then `velvet stage " + job.job_id + " confirm_leak_resolved`.")
        response = client.post(f"/repos/{repository}/issues", timeout=timeout, json={
            "title": _headline(job), "body": body, "labels": ["velvet", "sev1"]})
        _check(response, "github issue")
    return send


def job_link(settings: Settings) -> Callable[[Job], str | None]:
    """Where a person goes from the message: the Actions run, else the repository's Actions."""
    repo = settings.github_repository
    actions = (f"{settings.github_server_url.rstrip('/')}/{repo}/actions"
               if repo and re.fullmatch(r"[\w.-]+/[\w.-]+", repo) else None)

    def link(job: Job) -> str | None:
        return job.run_url or actions

    return link


def _on_first_use(make: Callable[[], Send]) -> Send:
    """A channel whose client is made when it first sends: most runs page nobody, and a
    client (httpx, the TLS context) is most of a short command's start."""
    lock = threading.Lock()
    made: list[Send] = []

    def send(job: Job, timeout: float) -> None:
        with lock:
            if not made:
                made.append(make())
        made[0](job, timeout)

    return send


def notifier_from_settings(settings: Settings, transport: httpx.BaseTransport | None = None,
                           *, timeout: float = REQUEST_TIMEOUT_SECONDS,
                           sleep: Callable[[float], None] = time.sleep,
                           deadline: float = DEADLINE_SECONDS,
                           budgets: Budgets | None = None) -> Notifier | None:
    """Channels configured by settings; None when nothing is configured.

    `budgets` are the run's rate budgets (`Wiring.budgets`), so a GitHub issue or a Slack
    message draws from the same account budget as the run's writes; a rate-limit answer is
    waited out when its wait fits inside the deadline.

    `timeout` is the per-request timeout (tests of a hanging vendor shorten it); `sleep` is the
    pause between retries.
    """
    budgets = budgets if budgets is not None else Budgets()
    link = job_link(settings)

    def client(base_url: str, headers: dict[str, str], vendor: str) -> httpx.Client:
        import httpx

        return make_client(base_url, headers=headers, transport=transport,
                           timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
                           budgets=budgets, vendor=vendor)

    slack: Send | None = None
    email: Send | None = None
    issue: Send | None = None
    if settings.slack_token and settings.slack_channel:
        slack_token, channel = settings.slack_token, settings.slack_channel
        slack = _on_first_use(lambda: slack_sender(client(settings.slack_api_url, {
            "Authorization": f"Bearer {slack_token.get_secret_value()}",
            "Content-Type": "application/json; charset=utf-8"}, "slack"), channel, link))
    if settings.postmark_server_token and settings.ops_email:
        server_token, ops = settings.postmark_server_token, settings.ops_email
        email = _on_first_use(lambda: email_sender(client(settings.postmark_api_url, {
            "Accept": "application/json",
            "X-Postmark-Server-Token": server_token.get_secret_value()}, "postmark"),
            settings.ops_email_from, ops, link))
    issues_token = settings.github_issues_token or settings.github_token
    if issues_token and settings.github_repository:
        token, repository = issues_token, settings.github_repository
        issue = _on_first_use(lambda: issue_sender(client(settings.github_api_url, {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Authorization": f"Bearer {token.get_secret_value()}"}, "github"),
            repository, link))
    if slack is None and email is None and issue is None:
        return None

    def channels_for(job: Job) -> list[Channel]:
        if job.flow_type == Flow.TESTING:
            return []  # a dry run changed nothing; nobody needs paging about it
        chosen = []
        if slack is not None:
            chosen.append(Channel("slack", slack))
        after_leak = job.status == State.REV_DONE and any(
            e.to_state == State.REV_LEAKED for e in job.events)
        if job.status == State.REV_LEAKED or after_leak:
            # The SEV1 inbox hears of the leak and of its resolution; the issue is opened once.
            if email is not None:
                chosen.append(Channel("email", email))
            if issue is not None and job.status == State.REV_LEAKED:
                chosen.append(Channel("github_issue", issue))
        return chosen

    return Notifier(channels_for, sleep=sleep, deadline=deadline, timeout=timeout)
