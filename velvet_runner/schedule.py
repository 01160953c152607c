"""When a credential is due: its schedule interval after its last `done` job, or never rotated.

The answers (last done, next due, live consumers, env) are `timeline`'s; this module reads the
state branch for them and shapes the rows `velvet due` and `velvet stuck` print.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from velvet_runner import timeline
from velvet_runner.errors import BadArgument
from velvet_runner.manifest import Manifest
from velvet_runner.records import iso, utcnow
from velvet_runner.store import Store

NEVER_ROTATED = "never rotated by Velvet"


def parse_now(text: str | None) -> datetime:
    if text is None:
        return utcnow()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadArgument(f"--now {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def last_done(store: Store, credential: str) -> datetime | None:
    """When the newest finished operational rotation of `credential` ended (at the head last
    fetched): its newest job that is one, read newest-first, so dry runs and aborted attempts
    since never hide it and older jobs are never read."""
    head = store.head(fetch=False)
    return timeline.last_done(filter(None, [
        store.newest([credential], timeline.rotated, head=head,
                     hint=timeline.ROTATED_FIELDS)[credential]]))


def due_credentials(manifest: Manifest, store: Store, now: datetime, *,
                    env: str | None, fetch: bool = True) -> list[dict[str, Any]]:
    """Active, scheduled credentials of the env this runner serves whose interval has passed.

    `due_at` is the one "due since" both `velvet due` and `velvet stuck` show: the schedule's
    due time, or `now` for a credential Velvet never rotated (due from the first tick on).
    Idempotent for cron ticks. `fetch=False` when the caller has just fetched the branch.
    A few batched reads of the branch, however many credentials and however much history:
    the locks, then each credential's newest rotation (Store.newest).
    """
    served = timeline.require_env(env)
    head = store.head(fetch=fetch)
    held = store.lock_holders(head=head)  # a job in flight: starting another would be refused
    creds = [c for c in manifest.credentials if timeline.serves(served, c.env)
             and not timeline.unscheduled(c) and c.name not in held]
    newest = store.newest([c.name for c in creds], timeline.rotated, head=head,
                          hint=timeline.ROTATED_FIELDS)
    rows = []
    for cred in creds:
        job = newest[cred.name]
        done = timeline.last_done([job] if job is not None else [])
        if done is None:
            rows.append({"credential": cred.name, "due_at": iso(now),
                         "reason": NEVER_ROTATED, "schedule": cred.schedule})
            continue
        due_at = timeline.next_due(cred, done)
        if due_at is not None and due_at <= now:
            rows.append({"credential": cred.name, "due_at": iso(due_at),
                         "reason": f"last done {iso(done)}", "schedule": cred.schedule})
    return rows


def tick(rows: list[dict[str, Any]], max_starts: int) -> tuple[list[dict[str, Any]],
                                                               list[dict[str, Any]]]:
    """What one cron tick starts from `velvet due` rows, and what it leaves for the next.

    The most overdue first: a credential Velvet never rotated (its age unknown) before every
    scheduled one, then the earliest `due_at`, then by name; at most `max_starts` (the
    manifest's `scheduler.max_starts`).
    """
    def overdue(row: dict[str, Any]) -> tuple[bool, datetime, str]:
        return (row.get("reason") != NEVER_ROTATED, parse_now(str(row.get("due_at") or "")),
                str(row["credential"]))

    ordered = sorted(rows, key=overdue)
    return ordered[:max_starts], ordered[max_starts:]
