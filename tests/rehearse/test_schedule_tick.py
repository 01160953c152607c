"""A cron tick at scale: every due credential started at once, the most overdue first, up to
the manifest's `scheduler.max_starts`, each its own stage-1 run (bench/ starts 50; this test
starts fewer to keep CI short).

The world's manifest gets copies of HK_PLATFORM_FULL (Sandbox.add_twins: each its own vault
slot, consumer places and live token); every other credential is taken off the schedule. Two
copies rotated before (jobs written onto the state branch), the rest never did.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml

from velvet_runner.gitbranch import Change
from velvet_runner.machine import Flow, State
from velvet_runner.records import Event, Job, new_job_id, utcnow
from velvet_runner.store import Store
from velvet_sandbox.rehearse.runner import Rehearsal

STAGE1 = "velvet-stage-1-verify.yml"
COPIES = 6
MAX_STARTS = 5


def _rotated(credential: str, days_ago: int) -> Job:
    at = utcnow() - timedelta(days=days_ago)
    return Job(job_id=new_job_id(), credential=credential, vendor="heroku",
               flow_type=Flow.OPERATIONAL, env="prod", status=State.DONE, created_at=at,
               updated_at=at, actor="t",
               events=[Event(at=at, actor="t", action="create", to_state="init"),
                       Event(at=at, actor="t", action="ok", from_state="revoking",
                             to_state="done")])


def test_a_tick_starts_every_due_credential_most_overdue_first_up_to_its_bound(
        rehearsal: Rehearsal, tmp_path: Path) -> None:
    rh = rehearsal
    manifest = rh.world.manifest_path
    doc = yaml.safe_load(manifest.read_text())
    for cred in doc["credentials"]:
        cred.pop("schedule", None)
    doc["scheduler"] = {"max_starts": MAX_STARTS}
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    names = [f"HK_TICK_{k}" for k in range(COPIES)]
    rh.sandbox.add_twins(rh.world, "HK_PLATFORM_FULL", names)
    doc = yaml.safe_load(manifest.read_text())
    for cred in doc["credentials"]:
        if cred["name"] in names:
            cred["schedule"] = "90d"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    # HK_TICK_0 rotated 200 days ago (due 110 days ago), HK_TICK_1 100 days ago (due 10 days
    # ago): both due, after every never-rotated one; HK_TICK_1 is the least overdue.
    state = rh.sandbox.env(rh.folder / "world")["VELVET_STATE"]  # what the runs' velvet uses
    store = Store(state, "velvet-state", tmp_path / "cache")
    done = [_rotated("HK_TICK_0", 200), _rotated("HK_TICK_1", 100)]
    store.transact(lambda read, ls: Change(  # finished jobs: no lock held
        {f"jobs/{j.credential}/{j.job_id}.json": j.to_json().encode() for j in done},
        "two rotations finished long ago"))

    tick = rh.schedule()
    results = rh.drain()
    # the tick's jobs (due, then stuck) each report; the due job's log names what it started
    [scheduled] = [r for r in results if r.run_id == tick
                   and ": started velvet-stage-1-verify.yml" in r.log]
    assert scheduled.conclusion in ("success", "failure"), scheduled.log  # stuck: red is fine
    started = sorted((r for r in results if r.workflow == STAGE1), key=lambda r: r.run_id)
    order = [line.split(":")[0] for line in scheduled.log.splitlines()
             if ": started velvet-stage-1-verify.yml" in line]
    order = [word for line in order for word in line.split() if word.startswith("HK_TICK_")]
    assert order == ["HK_TICK_2", "HK_TICK_3", "HK_TICK_4", "HK_TICK_5", "HK_TICK_0"], (
        scheduled.log[-3000:])
    assert sorted(rh.plane.runs[r.run_id].inputs["credential"] for r in started) == sorted(order)
    assert "1 more due, left for the next tick" in scheduled.log
    assert "HK_TICK_1" in scheduled.log
    for result in started:
        assert result.conclusion == "success", result.log
        assert result.outputs["status"] == "verified"
