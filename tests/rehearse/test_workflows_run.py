"""The repository's workflows, run by act against the sandbox: buttons, reviews, cron, PRs.

Every run is a real act run of the file under .github/workflows; stage N+1 is dispatched by
stage N through the GitHub fake, and waits in `waiting` until a review is posted to
pending_deployments. Tests share one rehearsal (one sandbox), each on its own credential, and
run in file order (the schedule test relies on what earlier tests left in flight).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from velvet_runner.errors import InputError
from velvet_sandbox.rehearse.runner import Rehearsal, local_repositories
from velvet_sandbox.world import GITHUB_REPOSITORY

STAGE1 = "velvet-stage-1-verify.yml"
STAGE2 = "velvet-stage-2-mint.yml"
STAGE3 = "velvet-stage-3-revoke.yml"
LEAKY = "heroku-config-worker-prod"


def _status(rh: Rehearsal, run_id: int) -> str:
    status, conclusion = rh.plane.status(run_id)
    return conclusion or status


def _only_waiting(rh: Rehearsal, workflow: str) -> int:
    [run_id] = [r for r in rh.waiting() if rh.plane.runs[r].workflow == workflow]
    return run_id


def _start(rh: Rehearsal, credential: str, login: str = "alice") -> tuple[str, int]:
    """Stage 1 by `login`; returns the job id and the stage-2 run it left waiting."""
    run_id = rh.dispatch(STAGE1, {"credential": credential, "flow": "operational",
                                  "env": "prod"}, as_login=login)
    [result] = rh.drain()
    assert result.run_id == run_id
    assert result.conclusion == "success", result.log
    assert result.outputs["status"] == "verified"
    return result.outputs["job_id"], _only_waiting(rh, STAGE2)


def _no_values(rh: Rehearsal, *texts: str) -> None:
    values = [v for v in [*rh.sandbox.token_values(), *rh.tokens.values(), rh.app_token]
              if len(v) >= 8]
    for text in texts:
        for value in values:
            assert value not in text


def test_a_full_rotation_by_buttons_and_approvals(rehearsal):
    rh = rehearsal
    job_id, stage2 = _start(rh, "HK_PLATFORM_FULL")
    assert rh.drain() == []  # nothing runs while the review is missing
    assert rh.approve(stage2, "bob", comment="ROT-1 ok").status_code == 200
    [minted] = rh.drain()
    assert minted.conclusion == "success", minted.log
    assert minted.outputs["status"] == "validated"
    assert "| `bob` | `velvet-prod` | environment_approval |" in minted.summary

    stage3 = rh.dispatch(STAGE3, {"job_id": job_id, "ticket": "ROT-1",
                                  "confirm": "HK_PLATFORM_FULL", "env": "prod"},
                         as_login="alice")
    assert _status(rh, stage3) == "waiting"
    # GitHub's prevent-self-review: alice started this run, so she may not review it.
    own = rh.approve(stage3, "alice")
    assert own.status_code == 422
    assert "prevents self-review" in own.json()["message"]
    assert rh.approve(stage3, "bob").status_code == 200
    [revoked] = rh.drain()
    assert revoked.conclusion == "success", revoked.log
    assert revoked.outputs["status"] == "done"
    _no_values(rh, minted.log, minted.summary, revoked.log, revoked.summary,
               json.dumps(minted.outputs), json.dumps(revoked.outputs))
    table = rh.table()
    assert f"{stage3}  velvet-stage-3-revoke" in table
    assert "bob approved" in table


def test_refusals(rehearsal):
    rh = rehearsal
    credential = "CF_ZONE_READ"
    job_id, stage2 = _start(rh, credential)

    # Not a reviewer of the environment: GitHub refuses the review.
    stranger = rh.approve(stage2, "carol")
    assert stranger.status_code == 422
    assert "not a required reviewer" in stranger.json()["message"]

    # Self-approval across the dispatch chain: GitHub accepts alice (the bot triggered the
    # run), the runner refuses her (she started the job), before any side effect.
    assert rh.approve(stage2, "alice").status_code == 200
    [refused] = rh.drain()
    assert refused.conclusion == "failure"
    assert "four eyes" in refused.log

    # No approval: a rejected review fails the run without running it.
    again = rh.dispatch(STAGE2, {"job_id": job_id, "credential": credential, "env": "prod"},
                        as_login="carol")
    assert rh.approve(again, "bob", reject=True).status_code == 200
    assert rh.drain() == []
    assert _status(rh, again) == "failure"
    assert again not in rh.results

    # The wrong environment: velvet-staging does not exist, so GitHub runs the job unprotected
    # (it fails open); the runner still wants a review of velvet-prod, the job's environment.
    staging = rh.dispatch(STAGE2, {"job_id": job_id, "credential": credential,
                                   "env": "staging"}, as_login="carol")
    [wrong_env] = rh.drain()
    assert wrong_env.run_id == staging
    assert wrong_env.conclusion == "failure"
    assert "has no approval for environment velvet-prod" in wrong_env.log

    # The wrong name typed back at stage 3 (after a proper stage 2).
    ok = rh.dispatch(STAGE2, {"job_id": job_id, "credential": credential, "env": "prod"},
                     as_login="carol")
    rh.approve(ok, "bob")
    [minted] = rh.drain()
    assert minted.outputs["status"] == "validated", minted.log
    typo = rh.dispatch(STAGE3, {"job_id": job_id, "ticket": "ROT-2", "confirm": "CF_ZONE_REAd",
                                "env": "prod"}, as_login="carol")
    rh.approve(typo, "bob")
    [refused] = rh.drain()
    assert refused.conclusion == "failure"
    assert "needs --confirm CF_ZONE_READ" in refused.log
    assert "done" not in refused.outputs.get("status", "")


def test_an_emergency_revocation_with_a_leak_never_queues_behind_a_waiting_stage(rehearsal):
    rh = rehearsal
    credential = "HK_DEPLOY_BOT"
    job_id, stage2 = _start(rh, credential)

    emergency = rh.dispatch("velvet-revocation.yml", {"credential": credential,
                                                      "ticket": "INC-7", "env": "prod"},
                            as_login="alice")
    assert _status(rh, emergency) == "waiting"  # not pending behind stage 2's group

    # A recovery shares the stage's group: it queues until the waiting stage 2 is rejected.
    abort = rh.dispatch("velvet-recovery.yml", {"job_id": job_id, "credential": credential,
                                                "action": "abort", "env": "prod"},
                        as_login="alice")
    assert _status(rh, abort) == "pending"
    rh.approve(stage2, "bob", reject=True)
    assert _status(rh, abort) == "waiting"
    rh.approve(abort, "bob")
    [aborted] = rh.drain()
    assert aborted.conclusion == "success", aborted.log
    assert aborted.outputs["status"] == "aborted"

    # The worker has been serving traffic: it validated the live value and caches that answer
    # (the runbook's first rev_leaked root cause).
    assert httpx.get(rh.sandbox.health_url(LEAKY), timeout=10).status_code == 200
    rh.approve(emergency, "bob", comment="INC-7")
    [revoked] = rh.drain()
    assert revoked.outputs["status"] == "rev_leaked", revoked.log
    assert revoked.conclusion == "failure"
    [issue] = rh.sandbox.github.issues(GITHUB_REPOSITORY)
    assert credential in issue["title"]
    assert LEAKY in (issue["body"] or "")
    _no_values(rh, revoked.log, revoked.summary, json.dumps(revoked.outputs))


def test_a_pull_request_changing_the_manifest_gets_a_plan(rehearsal, tmp_path):
    rh = rehearsal
    work = tmp_path / "pr"
    subprocess.run(["git", "init", "--quiet", str(work)], check=True)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["cp", "-a", f"{rh.project}/.", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "base"], check=True)
    base = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    path = work / "manifest" / "subscription-manifest.yml"
    doc = yaml.safe_load(path.read_text())
    removed = doc["credentials"].pop()["name"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    subprocess.run([*git, "commit", "--quiet", "-am", "drop a credential"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()

    run_id = rh.pull_request(work, base, head)
    [result] = rh.drain()
    assert result.run_id == run_id
    assert result.conclusion == "success", result.log
    assert removed in result.summary
    assert "remov" in result.summary.lower()


def test_the_composite_action_from_a_caller_workflow(rehearsal, tmp_path):
    rh = rehearsal
    caller = tmp_path / "caller"
    (caller / ".github" / "workflows").mkdir(parents=True)
    (caller / ".github" / "workflows" / "caller-dry-run.yml").write_text(f"""\
name: Caller dry run
on:
  workflow_dispatch:
    inputs:
      credential:
        type: string
        required: true
permissions: {{}}
jobs:
  dry-run:
    runs-on: ubuntu-latest
    permissions:
      contents: write
    env:
      VELVET_ENV: prod
    steps:
      - id: velvet
        uses: raxx/velvet-runner@{'0' * 40} # v0.1.0
        with:
          command: rotate
          credential: ${{{{ inputs.credential }}}}
          flow: testing
      - run: test "$JOB_STATUS" = init
        env:
          JOB_STATUS: ${{{{ steps.velvet.outputs.status }}}}
""")
    subprocess.run(["git", "init", "--quiet", str(caller)], check=True)
    run_id = rh.caller(caller, "caller-dry-run.yml", {"credential": "PM_SERVER_MAIL"},
                       as_login="alice")
    [result] = rh.drain()
    assert result.run_id == run_id
    assert result.conclusion == "success", result.log
    assert result.outputs["credential"] == "PM_SERVER_MAIL"


def test_an_unknown_action_is_refused_naming_the_step(tmp_path):
    workflow = tmp_path / "w.yml"
    workflow.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                        "      - name: Lint\n        uses: someone/lint@v1\n")
    with pytest.raises(InputError, match=r"job a step Lint uses someone/lint@v1"):
        local_repositories(workflow, Path("."))


def test_a_schedule_tick_starts_stage_1_once_even_when_it_repeats(rehearsal):
    rh = rehearsal
    manifest = rh.world.manifest_path
    doc = yaml.safe_load(manifest.read_text())
    for cred in doc["credentials"]:  # one due credential: the others are done or in flight
        if cred["name"] != "AWS_DEPLOY_KEY":
            cred.pop("schedule", None)
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))

    starts = []
    for _tick in range(2):
        rh.schedule()
        for result in rh.drain():
            if result.workflow == STAGE1:
                starts.append(result)
    [stage1] = starts
    assert stage1.conclusion == "success", stage1.log
    assert stage1.outputs["credential"] == "AWS_DEPLOY_KEY"
    assert stage1.actor == "github-actions[bot]"
    assert _only_waiting(rh, STAGE2)


def test_an_emergency_revocation_preempts_a_rotation_waiting_for_approval(rehearsal):
    """Issue #12: the revocation workflow's `preempt` input aborts the credential's in-flight
    job (here the one the schedule tick left waiting for stage 2) and revokes in one run."""
    rh = rehearsal
    credential = "AWS_DEPLOY_KEY"
    stage2 = _only_waiting(rh, STAGE2)
    refused = rh.dispatch("velvet-revocation.yml", {"credential": credential,
                                                    "ticket": "INC-9", "env": "prod"},
                          as_login="alice")
    rh.approve(refused, "bob", comment="INC-9")
    [first] = rh.drain()
    assert first.conclusion == "failure"
    assert "--preempt" in first.log  # the refusal names the command that takes over

    emergency = rh.dispatch("velvet-revocation.yml", {"credential": credential,
                                                      "ticket": "INC-9", "env": "prod",
                                                      "preempt": "true"}, as_login="alice")
    rh.approve(emergency, "bob", comment="INC-9")
    [revoked] = rh.drain()
    assert "preempted by an emergency revocation" in revoked.log, revoked.log
    assert revoked.outputs["status"] in ("rev_done", "rev_leaked"), revoked.log
    rh.approve(stage2, "bob", reject=True)
    _no_values(rh, revoked.log, revoked.summary, json.dumps(revoked.outputs))
