"""The approval gate against the GitHub fake: environment approvals and the fallback dispatch.

Alice started every job here (job.actor); the manifest allows alice and bob for prod; stage runs
are dispatched by the bot unless a test says otherwise.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from velvet_runner.errors import GateRefused
from velvet_runner.github.gate import (
    FALLBACK_EVENT,
    record_fallback_approval,
)
from velvet_runner.machine import Action, State
from velvet_runner.records import Event
from velvet_runner.settings import Settings

from .conftest import REPO

ENV = "velvet-prod"


def test_approved_by_an_allowed_approver_passes_and_says_who(gh_github, gh_gate, gh_job,
                                                             gh_credential):
    env_id = gh_github.protected(ENV)
    run = gh_github.stage_run()
    gh_github.state.approve(REPO, run, ENV, "bob", "looks right")

    record = gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)

    assert record is not None
    assert record["kind"] == "environment_approval"
    assert record["approver"] == "bob"
    assert record["approver_id"]
    assert record["environment"] == ENV
    assert record["environment_id"] == env_id
    assert record["comment"] == "looks right"
    assert record["run_id"] == str(run)
    assert record["run_attempt"] == "1"
    assert record["run_url"].endswith(f"/actions/runs/{run}")
    assert record["job_actor"] == "alice"
    assert record["triggering_actor"] == "github-actions[bot]"
    assert record["observed_at"].endswith("Z")  # the API has no timestamp: when we saw it
    assert record["protection"]["required_reviewers"] is True
    assert record["protection"]["prevent_self_review"] is True


def test_no_approval_is_refused(gh_github, gh_gate, gh_job, gh_credential):
    gh_github.protected(ENV)
    run = gh_github.stage_run()

    with pytest.raises(GateRefused, match="no approval for environment velvet-prod"):
        gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)


def test_a_rejection_is_not_an_approval(gh_github, gh_gate, gh_job, gh_credential):
    gh_github.protected(ENV)
    run = gh_github.stage_run()
    gh_github.state.approve(REPO, run, ENV, "bob", "no", state="rejected")

    with pytest.raises(GateRefused, match="no approval"):
        gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)


def test_an_approval_of_another_environment_does_not_count(gh_github, gh_gate, gh_job,
                                                            gh_credential):
    gh_github.protected(ENV)
    gh_github.protected("velvet-staging")
    run = gh_github.stage_run()
    gh_github.state.approve(REPO, run, "velvet-staging", "bob")

    with pytest.raises(GateRefused, match="no approval for environment velvet-prod"):
        gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)


def test_approver_not_in_the_manifest_is_refused(gh_github, gh_gate, gh_job, gh_credential):
    gh_github.protected(ENV, ["alice", "bob", "mallory"])  # GitHub lets mallory review
    run = gh_github.stage_run()
    gh_github.state.approve(REPO, run, ENV, "mallory")

    with pytest.raises(GateRefused, match="mallory is not allowed.*alice, bob"):
        gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)


def test_approver_who_started_the_job_is_refused(gh_github, gh_gate, gh_job, gh_credential):
    gh_github.protected(ENV)
    run = gh_github.stage_run()  # dispatched by the bot, so GitHub's self-review rule is blind
    gh_github.state.approve(REPO, run, ENV, "alice")

    with pytest.raises(GateRefused, match="alice is also the person who started the job"):
        gh_gate(run).check(gh_job(actor="alice", save=False), Action.PROCEED_MINT,
                           gh_credential)


def test_approver_who_triggered_this_run_is_refused(gh_github, gh_gate, gh_job, gh_credential):
    gh_github.protected(ENV)
    run = gh_github.stage_run(actor="bob")  # bob dispatched stage 2 by hand ...
    gh_github.state.approve(REPO, run, ENV, "bob")  # ... and approved it himself

    with pytest.raises(GateRefused, match="bob is also the person who triggered run"):
        gh_gate(run).check(gh_job(actor="carol", save=False), Action.PROCEED_MINT,
                           gh_credential)


def test_one_good_approval_among_bad_ones_passes(gh_github, gh_gate, gh_job, gh_credential):
    gh_github.protected(ENV, ["alice", "bob", "mallory"])
    run = gh_github.stage_run()
    gh_github.state.approve(REPO, run, ENV, "mallory")
    gh_github.state.approve(REPO, run, ENV, "bob")

    record = gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)
    assert record is not None
    assert record["approver"] == "bob"


def test_revoke_stage_uses_the_revoke_environment(gh_github, gh_gate, gh_job, gh_credential):
    gh_github.protected(ENV)
    gh_github.protected("velvet-prod-revoke")
    run = gh_github.stage_run(workflow="velvet-stage-3-revoke.yml")
    gh_github.state.approve(REPO, run, ENV, "bob")  # the mint environment: wrong gate
    job = gh_job(State.VALIDATED, save=False)

    with pytest.raises(GateRefused, match="velvet-prod-revoke"):
        gh_gate(run).check(job, Action.PROCEED_REVOKE, gh_credential)
    gh_github.state.approve(REPO, run, "velvet-prod-revoke", "bob")
    record = gh_gate(run).check(job, Action.PROCEED_REVOKE, gh_credential)
    assert record is not None
    assert record["environment"] == "velvet-prod-revoke"


def test_ungated_actions_need_no_approval(gh_github, gh_gate, gh_job, gh_credential):
    run = gh_github.stage_run()
    assert gh_gate(run).check(gh_job(save=False), Action.VERIFY, gh_credential) is None
    assert gh_gate(run).check(gh_job(save=False), Action.ABORT, gh_credential) is None


def test_a_credential_without_approvers_is_refused(gh_github, gh_gate, gh_job, gh_credential):
    gh_github.protected(ENV)
    run = gh_github.stage_run()
    gh_github.state.approve(REPO, run, ENV, "bob")
    nobody = gh_credential.model_copy(update={"approvers": {}})

    with pytest.raises(GateRefused, match="lists no approvers for prod"):
        gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, nobody)


def test_a_run_started_for_another_credential_is_refused(gh_github, gh_gate, gh_job,
                                                          gh_credential):
    gh_github.protected(ENV)
    run = gh_github.stage_run()
    gh_github.state.approve(REPO, run, ENV, "bob")

    with pytest.raises(GateRefused, match="started for PM_SERVER_MAIL"):
        gh_gate(run, expect_credential="PM_SERVER_MAIL").check(
            gh_job(save=False), Action.PROCEED_MINT, gh_credential)


def test_without_a_token_the_gate_refuses(gh_github, gh_job, gh_credential, gh_manifest):
    from velvet_runner.github.api import GitHubApi
    from velvet_runner.github.gate import ActionsGate

    gh_github.protected(ENV)
    gate = ActionsGate(gh_manifest, api=GitHubApi(None, gh_github.url), repository=REPO,
                       run_id="1")
    with pytest.raises(GateRefused, match="VELVET_GATE_TOKEN"):
        gate.check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)


def test_a_token_github_refuses_means_no_stage(gh_github, gh_job, gh_credential, gh_manifest):
    from velvet_runner.github.gate import ActionsGate

    gh_github.protected(ENV)
    gate = ActionsGate(gh_manifest, api=gh_github.api("ghs_not_a_known_token_at_all"),
                       repository=REPO, run_id="1")
    with pytest.raises(GateRefused, match="HTTP 401"):
        gate.check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)


# --- environments without protection: refuse, unless a verified fallback approval exists ---


@pytest.mark.parametrize("configured", [True, False], ids=["unprotected", "missing"])
def test_unprotected_environment_without_fallback_is_refused(gh_github, gh_gate, gh_job,
                                                             gh_credential, configured):
    if configured:
        gh_github.unprotected(ENV)  # exists, but no required reviewers: GitHub lets it run
    run = gh_github.stage_run()

    with pytest.raises(GateRefused, match="no required-reviewers rule.*no fallback approval"):
        gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)


def _approve(gh_github, gh_actions_env, gh_store, gh_manifest, job, approver, *,
             action="proceed_mint", **run):
    approve_run = gh_github.approve_run(approver, **run)
    env = gh_actions_env(approve_run, actor=approver)
    settings = Settings.from_env(env | {"VELVET_ENV": "prod"})
    return record_fallback_approval(settings, gh_manifest, gh_store, job.job_id, action,
                                    environ=env), approve_run


def test_fallback_approval_by_an_allowed_approver_passes(gh_github, gh_gate, gh_job, gh_store,
                                                         gh_manifest, gh_credential,
                                                         gh_actions_env):
    gh_github.unprotected(ENV)
    job = gh_job(actor="kristerpher")  # the shipped manifest allows kristerpher, ops-oncall
    recorded, approve_run = _approve(gh_github, gh_actions_env, gh_store, gh_manifest, job,
                                     "ops-oncall")

    event = recorded.events[-1]
    assert event.action == FALLBACK_EVENT
    assert event.actor == "ops-oncall"
    assert event.data["approval_run_id"] == str(approve_run)
    assert event.from_state == event.to_state == "verified"  # an event, not a transition
    cred = gh_manifest.credential("HK_PLATFORM_FULL")
    stage_run = gh_github.stage_run()
    record = gh_gate(stage_run).check(gh_store.find(job.job_id), Action.PROCEED_MINT, cred)

    assert record is not None
    assert record["kind"] == "fallback_approval"
    assert record["approver"] == "ops-oncall"
    assert record["approval_run_id"] == str(approve_run)
    assert record["run_id"] == str(stage_run)
    assert record["protection"]["required_reviewers"] is False


def test_fallback_approver_must_be_allowed(gh_github, gh_job, gh_store, gh_manifest,
                                           gh_actions_env):
    gh_github.unprotected(ENV)
    job = gh_job(actor="kristerpher")
    with pytest.raises(GateRefused, match="mallory is not allowed"):
        _approve(gh_github, gh_actions_env, gh_store, gh_manifest, job, "mallory")
    assert not [e for e in gh_store.find(job.job_id).events if e.action == FALLBACK_EVENT]


def test_fallback_approver_may_not_approve_their_own_job(gh_github, gh_job, gh_store,
                                                         gh_manifest, gh_actions_env):
    gh_github.unprotected(ENV)
    job = gh_job(actor="kristerpher")
    with pytest.raises(GateRefused, match="kristerpher is also the person who started"):
        _approve(gh_github, gh_actions_env, gh_store, gh_manifest, job, "kristerpher")


def test_fallback_approval_is_refused_where_reviewers_exist(gh_github, gh_job, gh_store,
                                                            gh_manifest, gh_actions_env):
    gh_github.protected(ENV)
    job = gh_job(actor="kristerpher")
    with pytest.raises(GateRefused, match="has required reviewers"):
        _approve(gh_github, gh_actions_env, gh_store, gh_manifest, job, "ops-oncall")


def test_fallback_approval_must_match_what_the_job_waits_for(gh_github, gh_job, gh_store,
                                                             gh_manifest, gh_actions_env):
    gh_github.unprotected("velvet-prod-revoke")
    job = gh_job(actor="kristerpher")  # verified: waits for proceed_mint, not proceed_revoke
    with pytest.raises(GateRefused, match="not what it waits for"):
        _approve(gh_github, gh_actions_env, gh_store, gh_manifest, job, "ops-oncall",
                 action="proceed_revoke")


def test_fallback_approval_from_another_workflow_is_refused(gh_github, gh_job, gh_store,
                                                            gh_manifest, gh_actions_env):
    gh_github.unprotected(ENV)
    job = gh_job(actor="kristerpher")
    with pytest.raises(GateRefused, match="is not a run of velvet-approve.yml"):
        _approve(gh_github, gh_actions_env, gh_store, gh_manifest, job, "ops-oncall",
                 workflow="velvet-stage-1-verify.yml")


def test_fallback_approval_rerun_by_someone_else_is_refused(gh_github, gh_job, gh_store,
                                                            gh_manifest, gh_actions_env):
    gh_github.unprotected(ENV)
    job = gh_job(actor="kristerpher")
    with pytest.raises(GateRefused, match="re-run by kristerpher"):
        _approve(gh_github, gh_actions_env, gh_store, gh_manifest, job, "ops-oncall",
                 triggering_actor="kristerpher")


def test_fallback_approval_outside_actions_is_refused(gh_job, gh_store, gh_manifest):
    job = gh_job(actor="kristerpher")
    with pytest.raises(GateRefused, match="only runs inside GitHub Actions"):
        record_fallback_approval(Settings.from_env({"VELVET_ENV": "prod"}), gh_manifest,
                                 gh_store, job.job_id, "proceed_mint", environ={})


def _forge(gh_store, job_id, data, *, ago=timedelta(0)):
    """Write a fallback_approval event straight onto the state branch, as anyone with push
    access could, without going through `velvet approve`."""
    from datetime import UTC, datetime

    def apply(current):
        current.events.append(Event(at=datetime.now(UTC).replace(microsecond=0) - ago,
                                    actor=data["approver"], action=FALLBACK_EVENT,
                                    from_state=str(current.status),
                                    to_state=str(current.status), data=data))
        return current

    job = gh_store.find(job_id)
    return gh_store.update(job.credential, job_id, apply)


def _fallback_data(run_id, approver="ops-oncall", action="proceed_mint"):
    return {"action": action, "environment": ENV, "approver": approver,
            "approval_run_id": str(run_id), "kind": "fallback_approval"}


def test_forged_fallback_naming_someone_elses_run_is_refused(gh_github, gh_gate, gh_job,
                                                             gh_store, gh_manifest):
    gh_github.unprotected(ENV)
    job = gh_job(actor="kristerpher")
    kristerphers_run = gh_github.approve_run("kristerpher")
    forged = _forge(gh_store, job.job_id, _fallback_data(kristerphers_run))

    with pytest.raises(GateRefused, match="not by the recorded approver ops-oncall"):
        gh_gate(gh_github.stage_run()).check(forged, Action.PROCEED_MINT,
                                             gh_manifest.credential("HK_PLATFORM_FULL"))


def test_forged_fallback_naming_no_real_run_is_refused(gh_github, gh_gate, gh_job, gh_store,
                                                       gh_manifest):
    gh_github.unprotected(ENV)
    job = gh_job(actor="kristerpher")
    forged = _forge(gh_store, job.job_id, _fallback_data(987654321))

    with pytest.raises(GateRefused, match="HTTP 404"):
        gh_gate(gh_github.stage_run()).check(forged, Action.PROCEED_MINT,
                                             gh_manifest.credential("HK_PLATFORM_FULL"))


def test_fallback_recorded_before_the_job_reached_its_state_is_refused(
        gh_github, gh_gate, gh_job, gh_store, gh_manifest):
    gh_github.unprotected(ENV)
    job = gh_job(actor="kristerpher", reached_ago=timedelta(minutes=5))
    run = gh_github.approve_run("ops-oncall")
    stale = _forge(gh_store, job.job_id, _fallback_data(run), ago=timedelta(minutes=10))

    with pytest.raises(GateRefused, match="no fallback approval"):
        gh_gate(gh_github.stage_run()).check(stale, Action.PROCEED_MINT,
                                             gh_manifest.credential("HK_PLATFORM_FULL"))


def test_fallback_approval_run_older_than_the_state_is_refused(gh_github, gh_gate, gh_job,
                                                               gh_store, gh_manifest):
    gh_github.unprotected(ENV)
    run = gh_github.approve_run("ops-oncall")
    job = gh_job(actor="kristerpher", reached_ago=timedelta(0))
    # The run was created "now" but the job reached verified later: push the run into the
    # past by re-seeding it with an old creation time.
    gh_github.state.seed({"repos": [{"full_name": REPO, "runs": [
        {"id": run, "actor": "ops-oncall", "workflow": "velvet-approve.yml",
         "created_at": 1_000_000_000.0}]}]})
    forged = _forge(gh_store, job.job_id, _fallback_data(run))

    with pytest.raises(GateRefused, match="predates the job reaching verified"):
        gh_gate(gh_github.stage_run()).check(forged, Action.PROCEED_MINT,
                                             gh_manifest.credential("HK_PLATFORM_FULL"))
