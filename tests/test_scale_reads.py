"""`velvet due` and `velvet stuck` read the branch newest-first and by index: same answers.

The branch is built the way an older Velvet left it (job and lock files, no debt index), and
every answer is compared with what reading every job of history gives (the oracle below is
the algorithm `due` and `stuck` used before). Then a write of this version indexes the branch,
and the answers stay the same while debt is added and settled.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from velvet_runner import timeline
from velvet_runner.gitbranch import Change
from velvet_runner.machine import OPERATOR_STATES, Flow, State, is_terminal
from velvet_runner.manifest import Manifest, load
from velvet_runner.records import Event, Job, Life, Token, iso, new_job_id, utcnow
from velvet_runner.schedule import NEVER_ROTATED, due_credentials
from velvet_runner.store import DEBT_INDEX, Store
from velvet_runner.watchdog import GATE_STATES, SECTIONS, STUCK_AFTER, _job_row, find_stuck

NOW = utcnow()
DAY = timedelta(days=1)


def job(credential: str, status: State, at: datetime, *, flow: Flow = Flow.OPERATIONAL,
        debt: bool = False, settled: bool = False, env: str = "prod") -> Job:
    first = "rev_init" if flow == Flow.REVOCATION else "init"
    events = [Event(at=at, actor="t", action="create", to_state=first)]
    if status != first:
        events.append(Event(at=at + timedelta(minutes=1), actor="t", action="move",
                            from_state=first, to_state=str(status)))
    ledger = [Token(token_id="new", role="new", life=Life.PROVEN_DEAD if settled else Life.DEBT,
                    auth_id=f"auth-{at.timestamp():.0f}", fingerprint="sha256:0123456789ab",
                    evidence="aborted: orphaned", debt_since=at,
                    dead_at=at + DAY if settled else None)] if debt else []
    return Job(job_id=new_job_id(), credential=credential, vendor="heroku", flow_type=flow,
               env=env, status=status, created_at=at, updated_at=at + timedelta(minutes=1),
               actor="t", events=events, ledger=ledger)


def history() -> list[Job]:
    """Oldest first (ids are made in this order, so they sort by time)."""
    hk, pm, aws = "HK_PLATFORM_FULL", "PM_SERVER_MAIL", "AWS_DEPLOY_KEY"
    jobs = [
        # HK: rotated 100 days ago, then 40 aborted or dry-run jobs since: due, and the
        # newest rotation sits behind several rounds of newest-first reads.
        job(hk, State.DONE, NOW - 200 * DAY),
        job(hk, State.ABORTED, NOW - 150 * DAY, debt=True),  # old debt, still owed
        job(hk, State.DONE, NOW - 100 * DAY),
        *[job(hk, State.ABORTED if i % 3 else State.DONE, NOW - (99 - i) * DAY,
              flow=Flow.OPERATIONAL if i % 3 else Flow.TESTING) for i in range(40)],
        # PM: rotated 10 days ago (180d schedule: not due); a settled debt before it.
        job(pm, State.ABORTED, NOW - 30 * DAY, debt=True, settled=True),
        job(pm, State.DONE, NOW - 10 * DAY),
        # AWS: never rotated; a job in flight, stuck in `verifying`.
        job(aws, State.ABORTED, NOW - 5 * DAY),
        job(aws, State.VERIFYING, NOW - DAY),
        # A credential gone from the manifest: its debt and its job at a gate still show.
        job("OLD_GONE", State.ABORTED, NOW - 300 * DAY, debt=True),
        job("OLD_GONE", State.VERIFIED, NOW - 2 * DAY),
        # Staging is another runner's.
        job("STAGING_ONLY", State.ABORTED, NOW - 3 * DAY, debt=True, env="staging"),
    ]
    return jobs


def write_as_before(store: Store, jobs: list[Job]) -> None:
    """Job and lock files only, as a Velvet before the debt index wrote them."""
    files: dict[str, bytes | None] = {}
    for j in jobs:
        files[f"jobs/{j.credential}/{j.job_id}.json"] = j.to_json().encode()
        if not is_terminal(j.flow_type, j.status):
            files[f"locks/{j.credential}.json"] = json.dumps(
                {"job_id": j.job_id, "credential": j.credential, "flow_type": str(j.flow_type),
                 "acquired_at": iso(j.created_at)}).encode()
    store.transact(lambda read, ls: Change(files, "an older Velvet's history"))


# --- the oracle: every job of history, one read per credential (the code before) ----------------


def due_by_reading_everything(manifest: Manifest, store: Store) -> list[dict[str, Any]]:
    rows = []
    for cred in manifest.credentials:
        if not timeline.serves("prod", cred.env) or timeline.unscheduled(cred):
            continue
        if store.lock_holder(cred.name, fetch=False) is not None:
            continue
        done = timeline.last_done(store.list_jobs(cred.name, None, fetch=False))
        if done is None:
            rows.append({"credential": cred.name, "due_at": iso(NOW), "reason": NEVER_ROTATED,
                         "schedule": cred.schedule})
            continue
        due_at = timeline.next_due(cred, done)
        if due_at is not None and due_at <= NOW:
            rows.append({"credential": cred.name, "due_at": iso(due_at),
                         "reason": f"last done {iso(done)}", "schedule": cred.schedule})
    return rows


def stuck_by_reading_everything(manifest: Manifest,
                                store: Store) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {s: [] for s in SECTIONS}
    names = sorted(set(store.credentials(fetch=False)) | {c.name for c in manifest.credentials})
    for name in names:
        for j in store.list_jobs(name, None, fetch=False):
            if not timeline.serves("prod", j.env):
                continue
            for d in j.revocation_debt:
                if d.settled_at is None:
                    found["revocation_debt"].append({
                        "credential": j.credential, "job_id": j.job_id, "auth_id": d.auth_id,
                        "fingerprint": d.fingerprint, "reason": d.reason,
                        "since": iso(d.since)})
            if is_terminal(j.flow_type, j.status):
                continue
            age = NOW - timeline.since(j)
            if j.status in OPERATOR_STATES:
                found["waiting_on_operator"].append(_job_row(j, NOW, "needs an operator action"))
            elif j.status in GATE_STATES:
                if age > STUCK_AFTER:
                    found["approvals_waiting"].append(_job_row(
                        j, NOW, "waiting at an approval gate"))
            elif age > STUCK_AFTER:
                why = ("created and never started" if j.status in (State.INIT, State.REV_INIT)
                       else "interrupted mid-stage: re-run its action to resume")
                found["stuck"].append(_job_row(j, NOW, f"same status for over 5 minutes; {why}"))
    found["overdue"] = due_by_reading_everything(manifest, store)
    return found


@pytest.fixture
def manifest(manifest_dir: Path) -> Manifest:
    return load(manifest_dir / "subscription-manifest.yml")


@pytest.fixture
def store(bare_repo: Path, tmp_path: Path) -> Store:
    return Store(str(bare_repo), "velvet-state", tmp_path / "cache-scale")


def answers(manifest: Manifest, store: Store) -> tuple[Any, Any]:
    return (due_credentials(manifest, store, NOW, env="prod"),
            find_stuck(manifest, store, NOW, env="prod"))


def test_newest_first_and_indexed_reads_answer_as_reading_every_job(manifest: Manifest,
                                                                    store: Store) -> None:
    jobs = history()
    write_as_before(store, jobs)
    due, stuck = answers(manifest, store)
    assert due == due_by_reading_everything(manifest, store)
    assert stuck == stuck_by_reading_everything(manifest, store)
    # The answers are the ones the history above was built to give.
    assert [r["credential"] for r in due] == ["HK_PLATFORM_FULL"]
    assert due[0]["reason"] == f"last done {iso(timeline.since(jobs[2]))}"
    assert [(r["credential"], r["job_id"]) for r in stuck["revocation_debt"]] == [
        ("HK_PLATFORM_FULL", jobs[1].job_id), ("OLD_GONE", jobs[-3].job_id)]
    assert [r["credential"] for r in stuck["stuck"]] == ["AWS_DEPLOY_KEY"]
    assert [r["credential"] for r in stuck["approvals_waiting"]] == ["OLD_GONE"]

    # The first write of this version indexes the debt of the whole branch in its commit.
    store.update("AWS_DEPLOY_KEY", jobs[-4].job_id, lambda j: j.model_copy(
        update={"status": State.ABORTED}))
    files = set(store.git.ls_many(store.head(), ["debt"])["debt"])
    assert {DEBT_INDEX.removeprefix("debt/"), "HK_PLATFORM_FULL", "OLD_GONE",
            "STAGING_ONLY"} == files
    due, stuck = answers(manifest, store)
    assert due == due_by_reading_everything(manifest, store)
    assert stuck == stuck_by_reading_everything(manifest, store)
    assert [r["credential"] for r in due] == ["HK_PLATFORM_FULL", "AWS_DEPLOY_KEY"]
    assert stuck["stuck"] == []

    # Debt recorded later joins the index; debt settled leaves it.
    def owe(j: Job) -> Job:
        return job(j.credential, State.ABORTED, NOW - DAY, debt=True).model_copy(
            update={"job_id": j.job_id})

    store.update("PM_SERVER_MAIL", jobs[-6].job_id, owe)
    hk_debt = jobs[1]

    def settle(j: Job) -> Job:
        j.ledger[0].life, j.ledger[0].dead_at = Life.PROVEN_DEAD, NOW
        return j

    store.update(hk_debt.credential, hk_debt.job_id, settle)
    due, stuck = answers(manifest, store)
    assert stuck == stuck_by_reading_everything(manifest, store)
    assert [(r["credential"], r["job_id"]) for r in stuck["revocation_debt"]] == [
        ("OLD_GONE", jobs[-3].job_id), ("PM_SERVER_MAIL", jobs[-6].job_id)]
    assert due == due_by_reading_everything(manifest, store)


def test_newest_first_stops_at_the_newest_rotation(manifest: Manifest, store: Store) -> None:
    """An old record that no longer parses is never read once a newer rotation answers; the
    oracle, reading everything, trips over it."""
    old, done = (job("PM_SERVER_MAIL", State.DONE, NOW - 400 * DAY),
                 job("PM_SERVER_MAIL", State.DONE, NOW - 200 * DAY))
    write_as_before(store, [old, done])
    store.transact(lambda read, ls: Change(
        {f"jobs/PM_SERVER_MAIL/{old.job_id}.json": b"{ not json"}, "spoil the old record"))
    rows = due_credentials(manifest, store, NOW, env="prod")
    assert {r["credential"]: r["reason"] for r in rows}["PM_SERVER_MAIL"] == (
        f"last done {iso(timeline.since(done))}")
    assert store.problems == []
    due_by_reading_everything(manifest, store)
    assert len(store.problems) == 1
    assert old.job_id in store.problems[0]
