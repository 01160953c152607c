"""When a credential is due: its schedule interval after its last `done` job, or never rotated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from velvet_runner.errors import BadArgument
from velvet_runner.machine import Flow, State
from velvet_runner.manifest import Manifest
from velvet_runner.records import Job, iso, utcnow
from velvet_runner.store import Store


def parse_now(text: str | None) -> datetime:
    if text is None:
        return utcnow()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadArgument(f"--now {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def done_at(job: Job) -> datetime:
    """When the job reached `done`: its transition event, not a later note (a notification)."""
    for event in reversed(job.events):
        if event.to_state == State.DONE and event.from_state != State.DONE:
            return event.at
    return job.updated_at


def last_done(store: Store, credential: str) -> datetime | None:
    """When the newest finished operational rotation of `credential` ended.

    Every job is read, not a recent window: dry runs and aborted attempts must not push the
    last real rotation out of sight and make the credential look never rotated.
    """
    for job in store.list_jobs(credential, None, fetch=False):
        if job.flow_type == Flow.OPERATIONAL and job.status == State.DONE:
            return done_at(job)
    return None


def next_due(manifest: Manifest, store: Store, credential: str) -> datetime | None:
    cred = manifest.credential(credential)
    if cred is None or cred.schedule_hours is None:
        return None
    done = last_done(store, credential)
    if done is None:
        return None
    return done + timedelta(hours=cred.schedule_hours)


def due_credentials(manifest: Manifest, store: Store, now: datetime, *,
                    env: str | None = None) -> list[dict[str, Any]]:
    """Active, scheduled credentials whose interval has passed; idempotent for cron ticks."""
    store.refresh()
    rows = []
    for cred in manifest.credentials:
        if not cred.active or cred.schedule_hours is None or (env and cred.env != env):
            continue
        if not any(c.active and c.env == cred.env for c in cred.consumers):
            continue
        holder = store.lock_holder(cred.name, fetch=False)
        if holder is not None:
            continue  # a job is in flight; starting another would be refused anyway
        done = last_done(store, cred.name)
        if done is None:
            rows.append({"credential": cred.name, "due_at": iso(now),
                         "reason": "never rotated by Velvet", "schedule": cred.schedule})
            continue
        due_at = done + timedelta(hours=cred.schedule_hours)
        if due_at <= now:
            rows.append({"credential": cred.name, "due_at": iso(due_at),
                         "reason": f"last done {iso(done)}", "schedule": cred.schedule})
    return rows
