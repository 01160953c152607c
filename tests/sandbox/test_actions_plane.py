"""The GitHub fake as an Actions control plane, as strict as GitHub (fidelity.md items 2, 3, 4,
10): typed dispatch inputs, deployment branch policies, every job's environment gated on its
own, wait timers, cancel-in-progress, and each job's GITHUB_TOKEN limited to its
`permissions:`. Runs are driven through the fake's REST API; nothing executes them (the
executor's part, `take` and `finish`, is called directly), so no act is needed here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from velvet_sandbox import github as gh
from velvet_sandbox.actions_plane import ActionsPlane, token_permissions

from .support import FakeClock, serve_on_fake_clock

REPO = "acme/velvet"
TOKEN = "ghp_plane_alice_0001"
WORKFLOW = """\
name: two gates
on:
  workflow_dispatch:
    inputs:
      env:
        type: choice
        options: [prod, staging]
        default: prod
      dry:
        type: boolean
        default: false
      count:
        type: number
        required: false
      note:
        type: string
        required: false
permissions: {}
concurrency:
  group: gates-${{ inputs.env }}
  cancel-in-progress: ${{ inputs.note == 'cancel' }}
jobs:
  mint:
    runs-on: ubuntu-latest
    environment: velvet-${{ inputs.env }}
    permissions:
      contents: write
      actions: read
    steps: [{run: "true"}]
  revoke:
    runs-on: ubuntu-latest
    environment: velvet-${{ inputs.env }}-revoke
    steps: [{run: "true"}]
"""


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[gh.State, FakeClock, str]]:
    yield from serve_on_fake_clock(gh.State, gh.create_app, "sbx2-plane")


class Plane:
    def __init__(self, state: gh.State, clock: FakeClock, url: str, root: Path) -> None:
        self.state, self.clock = state, clock
        self.plane = ActionsPlane(state)
        self.http = httpx.Client(base_url=url, timeout=10, headers={
            "Authorization": f"Bearer {TOKEN}", "User-Agent": "velvet-tests"})
        (root / ".github" / "workflows").mkdir(parents=True)
        (root / ".github" / "workflows" / "gates.yml").write_text(WORKFLOW)
        self.plane.learn(REPO, root)

    def dispatch(self, ref: str = "main", **inputs: object) -> httpx.Response:
        return self.http.post(f"/repos/{REPO}/actions/workflows/gates.yml/dispatches",
                              json={"ref": ref, "inputs": inputs, "return_run_details": True})

    def run(self, **inputs: object) -> int:
        response = self.dispatch(**inputs)
        assert response.status_code == 200, response.text
        return int(response.json()["workflow_run_id"])

    def review(self, run_id: int, env: str, login: str = "bob",
               state: str = "approved") -> httpx.Response:
        env_id = self.state._repos[REPO].environments[env].id
        token = f"ghp_plane_{login}"
        self.state.add_token(token, login)
        return self.http.post(f"/repos/{REPO}/actions/runs/{run_id}/pending_deployments",
                              headers={"Authorization": f"Bearer {token}"},
                              json={"environment_ids": [env_id], "state": state,
                                    "comment": ""})


@pytest.fixture
def plane(_server: tuple[gh.State, FakeClock, str], tmp_path: Path) -> Iterator[Plane]:
    state, clock, url = _server
    state.reset()
    state.add_repo(REPO, branches=["main", "feature/x"])
    state.add_token(TOKEN, "alice")
    for env in ("velvet-prod", "velvet-prod-revoke"):
        state.add_environment(REPO, env, ["alice", "bob"], branches=["main"])
    made = Plane(state, clock, url, tmp_path)
    try:
        yield made
    finally:
        made.http.close()


@pytest.mark.parametrize(("inputs", "message"), [
    ({"env": "qa"}, "Provided value 'qa' for input 'env' not in the list of allowed values"),
    ({"dry": "yes"}, "Provided value 'yes' for input 'dry' not in the list of allowed values"),
    ({"count": "many"}, "Provided value 'many' for input 'count' is not a valid number"),
])
def test_typed_inputs_are_checked_with_githubs_422(plane: Plane, inputs: dict[str, str],
                                                   message: str) -> None:
    refused = plane.dispatch(**inputs)
    assert refused.status_code == 422
    assert refused.json()["message"] == message
    assert plane.state._repos[REPO].runs == {}
    assert plane.dispatch(env="staging", dry=True, count="3", note="x").status_code == 200
    assert plane.dispatch(dry="false").status_code == 200


def test_every_job_waits_for_its_own_environments_review(plane: Plane) -> None:
    run = plane.run()
    assert plane.plane.status(run) == ("waiting", None)
    assert plane.plane.runs[run].pending == ["velvet-prod", "velvet-prod-revoke"]
    assert plane.review(run, "velvet-prod").status_code == 200
    info = plane.plane.take()
    assert info is not None
    assert info.job == "mint"
    assert plane.plane.take() is None  # ... the other still waits for its own review
    plane.plane.finish(run, "success")
    assert plane.plane.status(run) == ("waiting", None)
    plane.review(run, "velvet-prod-revoke")
    info = plane.plane.take()
    assert info is not None
    assert info.job == "revoke"
    plane.plane.finish(run, "success")
    assert plane.plane.status(run) == ("completed", "success")
    approvals = plane.http.get(f"/repos/{REPO}/actions/runs/{run}/approvals").json()
    assert sorted(a["environments"][0]["name"] for a in approvals) == [
        "velvet-prod", "velvet-prod-revoke"]


def test_a_ref_the_environment_does_not_allow_fails_its_job_as_github_does(plane: Plane) -> None:
    response = plane.dispatch(ref="feature/x")
    run = int(response.json()["workflow_run_id"])
    assert plane.plane.status(run) == ("completed", "failure")
    assert plane.plane.runs[run].failures == [
        'job mint: Branch "feature/x" is not allowed to deploy to velvet-prod due to '
        "environment protection rules.",
        'job revoke: Branch "feature/x" is not allowed to deploy to velvet-prod-revoke due to '
        "environment protection rules."]
    assert plane.plane.take() is None  # nothing of it runs
    # A pattern can allow it (`*` does not cross `/`; `**` does).
    plane.state.add_environment(REPO, "velvet-prod", ["alice", "bob"], branches=["feature/*"])
    plane.state.add_environment(REPO, "velvet-prod-revoke", ["alice", "bob"],
                                branches=["**"])
    allowed = int(plane.dispatch(ref="feature/x").json()["workflow_run_id"])
    assert plane.plane.runs[allowed].pending == ["velvet-prod", "velvet-prod-revoke"]


def test_wait_timers_hold_a_job_after_its_review(plane: Plane) -> None:
    plane.state.add_environment(REPO, "velvet-prod", ["alice", "bob"], branches=["main"],
                                wait_timer=30)
    run = plane.run()
    shown = plane.http.get(f"/repos/{REPO}/actions/runs/{run}/pending_deployments").json()
    timer = next(p for p in shown if p["environment"]["name"] == "velvet-prod")
    assert timer["wait_timer"] == 30
    assert timer["wait_timer_started_at"] is not None
    plane.review(run, "velvet-prod")
    assert plane.plane.take() is None  # reviewed, but the timer has not run out
    plane.clock.advance(30 * 60)
    info = plane.plane.take()
    assert info is not None
    assert info.job == "mint"


def test_cancel_in_progress_cancels_the_active_run_of_the_group(plane: Plane) -> None:
    first = plane.run()
    queued = plane.run()
    assert plane.plane.status(queued) == ("pending", None)  # one pending behind the first
    newest = plane.run(note="cancel")  # cancel-in-progress: true for this one
    assert plane.plane.status(first) == ("completed", "cancelled")
    assert plane.plane.status(queued) == ("completed", "cancelled")
    assert plane.plane.status(newest) == ("waiting", None)


def test_a_jobs_token_is_limited_to_its_permissions(plane: Plane) -> None:
    assert token_permissions({"contents": "write", "actions": "read", "id-token": "write"}) == {
        "contents": "write", "actions": "read", "metadata": "read"}
    assert token_permissions("read-all")["issues"] == "read"
    assert token_permissions({}) == {"metadata": "read"}
    run = plane.run()
    mint = plane.plane.runs[run].jobs["mint"].permissions
    revoke = plane.plane.runs[run].jobs["revoke"].permissions  # the workflow's `{}`
    assert (mint, revoke) == ({"contents": "write", "actions": "read", "metadata": "read"},
                              {"metadata": "read"})
    plane.state.add_token("ghs_plane_job", "github-actions[bot]", repos=[REPO],
                          permissions=mint)
    job = {"Authorization": "Bearer ghs_plane_job"}
    assert plane.http.get(f"/repos/{REPO}/actions/runs/{run}", headers=job).status_code == 200
    denied = plane.http.post(f"/repos/{REPO}/actions/workflows/gates.yml/dispatches",
                             headers=job, json={"ref": "main"})
    assert denied.status_code == 403
    assert denied.json()["message"] == "Resource not accessible by integration"
    issue = plane.http.post(f"/repos/{REPO}/issues", headers=job, json={"title": "x"})
    assert issue.status_code == 403
    other = plane.http.get("/repos/acme/elsewhere", headers=job)
    assert other.status_code == 404  # a GITHUB_TOKEN reaches its own repository only
