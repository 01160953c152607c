"""Helpers shared by the tests in this folder (kept out of conftest so tests can import them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from velvet_runner.gitbranch import Change
from velvet_runner.machine import Flow, State
from velvet_runner.records import Event, Job, new_job_id, utcnow
from velvet_runner.store import Store
from velvet_sandbox.world import GITHUB_REPOSITORY, Sandbox


@dataclass
class Ran:
    """One `velvet` invocation."""

    code: int
    out: str
    err: str
    seconds: float

    @property
    def job(self) -> dict[str, Any]:
        return dict(json.loads(self.out))

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Sleeps:
    """A `sleep` that records the pauses it was asked for and returns at once."""

    calls: list[float]

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def fault(sandbox: Sandbox, service: str, **spec: Any) -> None:
    """Arm a fault on one fake (cleared by `rev_world` after the test)."""
    httpx.post(sandbox.control_url(service) + "/faults", json=spec,
               timeout=10.0).raise_for_status()


def clear_faults(sandbox: Sandbox, service: str) -> None:
    httpx.delete(sandbox.control_url(service) + "/faults", timeout=10.0).raise_for_status()


def requests_to(sandbox: Sandbox, service: str, path: str) -> list[dict[str, Any]]:
    """The fake's request log (method, path, status) for one path."""
    log = httpx.get(sandbox.control_url(service) + "/requests", timeout=10.0).json()
    return [r for r in log["requests"] if r["path"] == path]


def events(job: dict[str, Any] | Job, action: str) -> list[dict[str, Any]]:
    data = job.model_dump(mode="json") if isinstance(job, Job) else job
    return [e for e in data["events"] if e["action"] == action]


def slack_messages(sandbox: Sandbox, job_id: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.slack.messages if job_id in m["text"]]


def emails(sandbox: Sandbox, job_id: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.postmark.sent() if job_id in (m.get("TextBody") or "")]


def issues(sandbox: Sandbox, job_id: str) -> list[dict[str, Any]]:
    return [i for i in sandbox.github.issues(GITHUB_REPOSITORY) if job_id in (i["body"] or "")]


def at(text: str) -> datetime:
    """A record's UTC timestamp ("2026-05-04T06:00:00Z")."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seed_dry_runs(store: Store, credential: str, vendor: str, count: int) -> list[str]:
    """`count` finished dry-run jobs, newer than anything on the branch, in one commit."""
    now = utcnow()
    files: dict[str, bytes | None] = {}
    for _ in range(count):
        job = Job(job_id=new_job_id(), credential=credential, vendor=vendor,
                  flow_type=Flow.TESTING, env="prod", status=State.DONE, created_at=now,
                  updated_at=now, actor="seed",
                  events=[Event(at=now, actor="seed", action="create", to_state="init"),
                          Event(at=now, actor="seed", action="verify", from_state="init",
                                to_state="verifying"),
                          Event(at=now, actor="seed", action="ok", from_state="verifying",
                                to_state="done")])
        files[f"jobs/{credential}/{job.job_id}.json"] = job.to_json().encode()
    store.transact(lambda read, ls: Change(files, f"{credential}: seed {count} dry runs"))
    return sorted(p.rsplit("/", 1)[1].removesuffix(".json") for p in files)
