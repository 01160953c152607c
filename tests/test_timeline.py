"""timeline: one answer to "entered", "last done", "next due", "live consumers" and "serves".

The pure answers are checked on hand-made records; the places that used to disagree (`velvet due`
against `velvet stuck`, VELVET_ENV's meanings) are checked through the real command and a real
state branch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from velvet_runner import timeline
from velvet_runner.errors import BadArgument
from velvet_runner.gitbranch import Change
from velvet_runner.machine import Flow, State
from velvet_runner.manifest import load
from velvet_runner.records import Event, Job, iso, new_job_id
from velvet_runner.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CRED = "HK_PLATFORM_FULL"


def job(status: State, *, flow: Flow = Flow.OPERATIONAL, moves: list[tuple[str, datetime]],
        notes: tuple[datetime, ...] = (), credential: str = CRED) -> Job:
    """A job that moved through `moves` (state, at), then got notes that are not transitions."""
    events = []
    previous: str | None = None
    for state, at in moves:
        events.append(Event(at=at, actor="t", action="step", from_state=previous, to_state=state))
        previous = state
    events += [Event(at=at, actor="t", action="notify", from_state=str(status),
                     to_state=str(status)) for at in notes]
    last = max([at for _, at in moves] + list(notes))
    return Job(job_id=new_job_id(), credential=credential, vendor="heroku", flow_type=flow,
               env="prod", status=status, created_at=moves[0][1], updated_at=last,
               events=events)


def done_job(at: datetime, *, flow: Flow = Flow.OPERATIONAL,
             notes: tuple[datetime, ...] = ()) -> Job:
    return job(State.DONE, flow=flow, notes=notes,
               moves=[("init", at - timedelta(hours=1)), ("revoking", at - timedelta(minutes=5)),
                      ("done", at)])


def test_entered_is_the_transition_not_a_later_note() -> None:
    j = done_job(T0, notes=(T0 + timedelta(minutes=3),))
    assert timeline.entered(j, State.DONE) == T0
    assert timeline.since(j) == T0
    assert j.updated_at == T0 + timedelta(minutes=3)
    assert timeline.entered(j, State.INIT) == T0 - timedelta(hours=1)
    assert timeline.entered(j, State.VALIDATED) is None


def test_since_counts_from_the_last_write_when_no_event_shows_the_move() -> None:
    j = done_job(T0).model_copy(update={"status": State.ABORTED})
    assert timeline.since(j) == j.updated_at


def test_a_dry_run_is_not_a_rotation() -> None:
    real = done_job(T0)
    dry = done_job(T0 + timedelta(days=30), flow=Flow.TESTING)
    newest_first = [dry, real]
    assert timeline.last_done(newest_first) == T0
    assert timeline.last_done([dry]) is None
    assert timeline.last_rotation(newest_first) is real
    assert timeline.last_rotation([dry]) is None


def test_last_done_is_the_latest_finish_among_every_job() -> None:
    older, newer = done_job(T0), done_job(T0 + timedelta(days=90))
    aborted = job(State.ABORTED, moves=[("init", T0 + timedelta(days=100)),
                                       ("aborted", T0 + timedelta(days=100))])
    assert timeline.last_done([aborted, older, newer]) == T0 + timedelta(days=90)
    assert timeline.last_done([]) is None


def test_live_consumers_unscheduled_and_next_due(manifest_dir: Path) -> None:
    manifest = load(manifest_dir / "subscription-manifest.yml")
    deploy = manifest.credential("AWS_DEPLOY_KEY")
    assert deploy is not None
    live = [c.consumer_id for c in timeline.live_consumers(deploy)]
    assert live
    assert all(c.env == deploy.env and c.active for c in timeline.live_consumers(deploy))
    assert len(live) < len(deploy.consumers)  # the staging consumer is another Velvet's
    inactive = manifest.credential("CF_DNS_EDIT_RAXX_APP")
    assert inactive is not None
    assert timeline.unscheduled(inactive) == "inactive — rotate manually"
    hk = manifest.credential(CRED)
    assert hk is not None
    assert hk.schedule == "90d"
    assert timeline.unscheduled(hk) is None
    assert timeline.next_due(hk, T0) == T0 + timedelta(days=90)
    assert timeline.next_due(hk, None) is None  # never rotated: due now
    unscheduled = hk.model_copy(update={"schedule": None})
    assert timeline.unscheduled(unscheduled) == "no schedule"
    assert timeline.next_due(unscheduled, T0) is None
    no_consumers = hk.model_copy(update={"consumers": []})
    assert timeline.unscheduled(no_consumers) == "no active prod consumers"


def test_serves_has_one_meaning() -> None:
    assert timeline.serves("prod", "prod")
    assert not timeline.serves("prod", "staging")
    assert not timeline.serves(None, "prod")  # unset serves nothing
    assert timeline.require_env("staging") == "staging"
    with pytest.raises(BadArgument, match="VELVET_ENV is not set"):
        timeline.require_env(None)
    with pytest.raises(BadArgument, match="VELVET_ENV is not set"):
        timeline.require_serves(None, "prod", "job x")
    with pytest.raises(BadArgument, match="job x is env prod but this runner is VELVET_ENV="
                                           "staging"):
        timeline.require_serves("staging", "prod", "job x")
    timeline.require_serves("prod", "prod", "job x")


# --- the commands agree ----------------------------------------------------------------------


def seed(store: Store, jobs: list[Job]) -> None:
    store.transact(lambda read, ls: Change(
        {f"jobs/{j.credential}/{j.job_id}.json": j.to_json().encode() for j in jobs}, "seed"))


def _table(text: str, after: str) -> list[list[str]]:
    """The rows of the table that follows the line starting with `after` (the summary's
    column header is skipped; the table ends at a blank line or the "Next:" commands)."""
    lines = text.split(after, 1)[1].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.strip() or line.startswith("Next:"):
            break
        rows.append(line.split())
    return rows


def due_since_by_due(text: str) -> dict[str, str]:
    # `velvet due --human`: CREDENTIAL  DUE SINCE  REASON
    return {cells[0]: cells[1] for cells in _table(text, "due for rotation")}


def due_since_by_stuck(text: str) -> dict[str, str]:
    # `velvet stuck --human`, overdue section: CREDENTIAL  SCHEDULE  DUE SINCE  REASON
    return {cells[0]: cells[2] for cells in _table(text, "overdue (")}


def test_due_and_stuck_agree_on_due_since(run_velvet: Callable[..., Any], bare_repo: Path,
                                          tmp_path: Path) -> None:
    store = Store(str(bare_repo), cache_dir=tmp_path / "seed-cache")
    done = done_job(T0, notes=(T0 + timedelta(days=1),))
    # 250 dry runs after it: more than any recent window, and none of them is a rotation
    seed(store, [done] + [done_job(T0 + timedelta(days=2), flow=Flow.TESTING)
                          for _ in range(250)])
    now = iso(T0 + timedelta(days=120))
    due = run_velvet("due", "--now", now, "--human")
    stuck = run_velvet("stuck", "--now", now, "--human")
    assert due.returncode == 0, due.stderr
    assert stuck.returncode == 1, stuck.stderr
    by_due, by_stuck = due_since_by_due(due.stdout), due_since_by_stuck(stuck.stdout)
    assert by_due == by_stuck
    assert by_due[CRED] == iso(T0 + timedelta(days=90))
    assert by_due["PM_SERVER_MAIL"] == now  # never rotated by Velvet: due from now on
    as_json = json.loads(run_velvet("due", "--now", now, "--json").stdout)
    stuck_json = json.loads(run_velvet("stuck", "--now", now, "--json").stdout)
    assert as_json == stuck_json["overdue"]


@pytest.mark.parametrize("command", [("due",), ("stuck",)])
def test_a_runner_without_velvet_env_serves_nothing(run_velvet: Callable[..., Any],
                                                   command: tuple[str, ...]) -> None:
    proc = run_velvet(*command, env={"VELVET_ENV": None})
    assert proc.returncode == 2
    assert "VELVET_ENV is not set" in proc.stderr


def test_a_staging_runner_reports_only_staging(run_velvet: Callable[..., Any]) -> None:
    # the shipped manifest's credentials are all prod: a staging runner has nothing due
    proc = run_velvet("due", "--json", env={"VELVET_ENV": "staging"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert json.loads(run_velvet("due", "--json").stdout) != []

