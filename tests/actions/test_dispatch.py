"""Starting the next stage: workflow dispatch with return_run_details, against the GitHub fake."""

from __future__ import annotations

import httpx
import pytest

from velvet_runner.errors import BadArgument, ConflictError
from velvet_runner.github import dispatch
from velvet_runner.machine import State

from .conftest import REPO


def test_dispatch_returns_the_new_runs_id_and_url(gh_github):
    result = dispatch.dispatch_workflow(gh_github.api(), REPO, "velvet-stage-2-mint.yml", "main",
                                       {"job_id": "J", "credential": "C", "env": "prod"})
    [sent] = gh_github.state.dispatches(REPO)
    assert sent["inputs"] == {"job_id": "J", "credential": "C", "env": "prod"}
    assert sent["ref"] == "main"
    assert sent["actor"] == "github-actions[bot]"
    assert result["run_id"] == sent["run_id"]
    assert result["html_url"].endswith(f"/actions/runs/{sent['run_id']}")


def test_dispatch_falls_back_when_run_details_are_not_supported(gh_github):
    """GHES answers 422 to return_run_details: dispatch again without it (204, no run id)."""
    httpx.post(gh_github.url + "/__velvet/faults", json={
        "method": "POST", "path": "*/dispatches", "status": 422, "times": 1,
        "message": "Invalid request: return_run_details is not a permitted key."},
        timeout=5).raise_for_status()
    result = dispatch.dispatch_workflow(gh_github.api(), REPO, "velvet-stage-2-mint.yml", "main",
                                       {"job_id": "J", "credential": "C", "env": "prod"})
    assert len(gh_github.state.dispatches(REPO)) == 1
    assert result["run_id"] is None


def test_a_refused_dispatch_is_an_error_not_a_green_run(gh_github):
    with pytest.raises(ConflictError, match="Unexpected inputs"):
        dispatch.dispatch_workflow(gh_github.api(), REPO, "velvet-stage-2-mint.yml", "main",
                                  {"job_id": "J", "credential": "C", "bogus": "x"})
    with pytest.raises(BadArgument, match="file name"):
        dispatch.dispatch_workflow(gh_github.api(), REPO, "../../evil", "main", {})


def test_the_started_run_is_recorded_on_the_job(gh_github, gh_job, gh_store):
    job = gh_job(State.VERIFIED)
    inputs = {"job_id": job.job_id, "credential": job.credential, "env": "prod"}
    result = dispatch.dispatch_workflow(gh_github.api(), REPO, "velvet-stage-2-mint.yml", "main",
                                       inputs)
    recorded = dispatch.record_dispatch(gh_store, job.job_id, result, inputs,
                                       actor="github-actions[bot]")
    event = recorded.events[-1]
    assert event.action == "dispatched"
    assert event.to_state == "verified"
    assert event.data["run_id"] == result["run_id"]
    assert event.data["inputs"] == ["credential", "env", "job_id"]  # names, never values


def test_a_tick_starts_the_most_overdue_first_up_to_its_bound_without_sleeping(gh_github):
    """Never rotated first (its age is unknown), then the earliest due time; past
    `max_starts` the rest wait for the next tick. Nothing sleeps between dispatches."""
    from velvet_runner.schedule import NEVER_ROTATED, tick

    rows = [{"credential": "C_RECENT", "due_at": "2026-08-05T00:00:00Z", "reason": "last done x"},
            {"credential": "C_NEVER", "due_at": "2026-09-01T00:00:00Z", "reason": NEVER_ROTATED},
            {"credential": "C_OLDEST", "due_at": "2026-01-01T00:00:00Z", "reason": "last done y"},
            {"credential": "C_MIDDLE", "due_at": "2026-05-01T00:00:00+00:00",
             "reason": "last done z"}]
    start, later = tick(rows, 3)
    assert [r["credential"] for r in start] == ["C_NEVER", "C_OLDEST", "C_MIDDLE"]
    assert [r["credential"] for r in later] == ["C_RECENT"]
    pauses: list[float] = []
    dispatch.dispatch_due(gh_github.api(), REPO, "velvet-stage-1-verify.yml", "main", start,
                          env="prod", sleep=pauses.append)
    sent = gh_github.state.dispatches(REPO)
    assert [d["inputs"]["credential"] for d in sent] == ["C_NEVER", "C_OLDEST", "C_MIDDLE"]
    assert pauses == []
    # A repeated cron tick sends the same idempotency key, so it creates no second job.
    assert sent[1]["inputs"]["idempotency_key"] == "due-C_OLDEST-2026-01-01T00:00:00Z"
    # Spacing is still there for whoever asks for it.
    dispatch.dispatch_due(gh_github.api(), REPO, "velvet-stage-1-verify.yml", "main",
                          later + start[:1],
                          env="prod", stagger_seconds=90, sleep=pauses.append)
    assert pauses == [90]


def test_a_due_time_that_is_not_a_time_is_refused_by_name():
    from velvet_runner.schedule import tick

    with pytest.raises(BadArgument, match="not an ISO 8601 time"):
        tick([{"credential": "C", "due_at": "soon"}], 5)