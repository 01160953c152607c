"""A rehearsal is as strict as GitHub where the runs meet it (fidelity.md items 2, 3, 4): a
typed input GitHub refuses is 422, a run from a branch the environment does not allow fails its
job before it starts, and a job whose `permissions:` lack what a step does gets GitHub's 403."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from velvet_runner import adopt
from velvet_runner.errors import BadArgument
from velvet_sandbox.rehearse.runner import Rehearsal

STAGE1 = "velvet-stage-1-verify.yml"


def test_a_bad_choice_input_gets_githubs_422(rehearsal: Rehearsal) -> None:
    rh = rehearsal
    with pytest.raises(BadArgument, match="HTTP 422: Provided value 'sideways' for input "
                       "'flow' not in the list of allowed values"):
        rh.dispatch(STAGE1, {"credential": "CF_ZONE_READ", "flow": "sideways", "env": "prod"},
                    as_login=rh.starter)
    # velvet-approve.yml offers proceed_mint and proceed_revoke, not revoke.
    with pytest.raises(BadArgument, match="Provided value 'revoke' for input 'action'"):
        rh.dispatch("velvet-approve.yml", {"job_id": "x", "action": "revoke", "env": "prod"},
                    as_login=rh.reviewer)
    assert rh.drain() == []


def test_a_run_from_a_branch_its_environment_does_not_allow_fails_as_on_github(
        rehearsal: Rehearsal) -> None:
    rh = rehearsal
    rh.sandbox.github.seed({"repos": [{"full_name": rh.repository,
                                       "branches": ["main", "try-a-change"]}]})
    run_id = rh.dispatch(STAGE1, {"credential": "CF_ZONE_READ", "flow": "testing",
                                  "env": "prod"}, as_login=rh.starter, ref="try-a-change")
    assert rh.drain() == []  # its only job never reached a runner
    assert rh.plane.status(run_id) == ("completed", "failure")
    assert rh.plane.runs[run_id].failures == [
        'job verify: Branch "try-a-change" is not allowed to deploy to velvet-prod-verify due '
        "to environment protection rules."]
    # From the default branch the same dispatch runs.
    ok = rh.dispatch(STAGE1, {"credential": "CF_ZONE_READ", "flow": "testing", "env": "prod"},
                     as_login=rh.starter)
    [result] = rh.drain()
    assert (result.run_id, result.conclusion) == (ok, "success"), result.log


def test_a_job_missing_a_permission_gets_githubs_403(rehearsal: Rehearsal,
                                                     tmp_path: Path) -> None:
    """Stage 1 without `actions: write` verifies, then cannot start stage 2: on GitHub its
    GITHUB_TOKEN may not dispatch, and the rehearsal's may not either."""
    rh = rehearsal
    caller = tmp_path / "caller"
    folder = caller / ".github" / "workflows"
    folder.mkdir(parents=True)
    text = adopt.workflows("raxx/velvet-runner", "0" * 40, "0.1.0")[
        f".github/workflows/{STAGE1}"]
    grant = "      actions: write  # dispatching stage 2\n"
    assert grant in text
    (folder / "velvet-stage-1-no-dispatch.yml").write_text(text.replace(grant, ""))
    subprocess.run(["git", "init", "--quiet", str(caller)], check=True)
    run_id = rh.caller(caller, "velvet-stage-1-no-dispatch.yml",
                       {"credential": "HK_DEPLOY_BOT", "flow": "operational", "env": "prod"},
                       as_login=rh.starter)
    [result] = rh.drain()
    assert result.run_id == run_id
    assert result.outputs.get("status") == "verified", result.log  # what it may do, it did
    assert result.conclusion == "failure"
    assert "HTTP 403: Resource not accessible by integration" in result.log
    assert "step 'Start stage 2" in "; ".join(result.failures)
    assert not [r for r in rh.waiting()
                if rh.plane.runs[r].workflow == "velvet-stage-2-mint.yml"]


def test_the_doctor_workflow_writes_its_checklist_to_the_step_summary(
        rehearsal: Rehearsal) -> None:
    """velvet-doctor.yml with the run's own GITHUB_TOKEN (no VELVET_DOCTOR_TOKEN here): what
    that token may read is checked, what it may not (secrets, variables, installations) is
    skipped with why, and the bootstrap credentials of velvet-prod-verify are checked."""
    rh = rehearsal
    run_id = rh.dispatch("velvet-doctor.yml", {"env": "prod"}, as_login=rh.starter)
    [result] = rh.drain()
    assert result.run_id == run_id
    assert result.conclusion == "success", result.log
    summary = result.summary
    assert "## Velvet doctor" in summary
    assert "✓ environment velvet-prod: required reviewers: alice, bob" in summary
    assert "✓ state branch velvet-state: ruleset: force pushes and deletion blocked" in summary
    assert "– secret VELVET_HEROKU_TOKEN: skipped: this token cannot list secrets" in summary
    assert "✓ reach heroku app raxx-console-prod config var HEROKU_API_KEY" in summary
    assert "✗" not in summary
