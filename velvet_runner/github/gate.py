"""The approval gate: a gated stage checks, before any side effect, that someone else approved it.

Gates can fail open (required reviewers need a public repository or Enterprise; a job naming a
missing environment runs unprotected), so a gated stage checks, before any side effect:

    protected environment    this run has an `approved` review for the stage's environment
                             (GET /runs/{id}/approvals) by an approver the manifest allows for the
                             job's env, who neither started the job (job.actor) nor triggered this
                             run (the run's triggering actor): four eyes across a dispatch chain
    unprotected environment  the job carries a `fallback_approval` event, recorded while the job
                             sat in its current state by `velvet approve` running in the
                             velvet-approve.yml workflow; the gate re-reads that run through the
                             runs API and requires that the run exists, is a workflow_dispatch of
                             velvet-approve.yml started (and not re-run by someone else) by the
                             recorded approver, after the job reached its current state; the same
                             allowed/four-eyes rules apply. A name typed into an input or an env
                             var never counts: the approver is whoever GitHub says ran the
                             workflow.

Nothing else. The approvals API has no timestamps, so the gate records when it saw the approval.
The approval record goes into the job's events (the engine notes it) together with the run URL,
the run's actor and triggering actor, and the environment's protection settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import BadArgument, GateRefused, InputError

from .api import (
    Environ,
    GitHubApi,
    api_from_env,
    environ_or_os,
    in_actions,
    iso,
    now_utc,
    parse_iso,
)

if TYPE_CHECKING:
    from velvet_runner.machine import Action
    from velvet_runner.manifest import Credential, Manifest
    from velvet_runner.records import Job
    from velvet_runner.settings import Settings
    from velvet_runner.store import Store

# Stage action -> the GitHub environment its job is bound to ({env} is the job's env).
GATED: dict[str, str] = {
    "proceed_mint": "velvet-{env}",
    "proceed_revoke": "velvet-{env}-revoke",
    "revoke": "velvet-{env}-revoke",  # the revocation flow, once the engine gates it
}
APPROVE_WORKFLOW = "velvet-approve.yml"
FALLBACK_EVENT = "fallback_approval"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def environment_for(action: str, env: str) -> str | None:
    """The GitHub environment a stage action runs in, or None when it is not gated."""
    template = GATED.get(str(action))
    return template.format(env=env) if template else None



def _login(user: object) -> str | None:
    return user.get("login") if isinstance(user, dict) else None


def _run_actors(run: dict[str, Any]) -> tuple[str | None, str | None]:
    actor = _login(run.get("actor"))
    return actor, _login(run.get("triggering_actor")) or actor


def _approvers(credential: Credential, env: str) -> set[str]:
    return {login for key, logins in credential.approvers.items() if key == env
            for login in logins}


def _four_eyes(login: str | None, job: Job, allowed: set[str],
               initiators: dict[str, str | None]) -> None:
    if not login or login not in allowed:
        raise GateRefused(f"approver {login or '(none)'} is not allowed to approve "
                          f"{job.credential} in {job.env}; the manifest's approvers for {job.env} "
                          f"are: {', '.join(sorted(allowed))}")
    for role, who in initiators.items():
        if who and login.lower() == who.lower():
            raise GateRefused(f"approver {login} is also {role}; a second person must approve "
                              "(four eyes)")


class ActionsGate:
    """Checks a gated stage's approval through the GitHub API before any side effect."""

    def __init__(self, manifest: Manifest | None, *, api: GitHubApi, repository: str,
                 run_id: str, run_attempt: str | None = None,
                 expect_credential: str | None = None,
                 server_url: str = "https://github.com",
                 now: Callable[[], datetime] = now_utc) -> None:
        self.manifest = manifest
        self.api = api
        self.repository = repository
        self.run_id = run_id
        self.run_attempt = run_attempt
        self.expect_credential = expect_credential
        self.server_url = server_url.rstrip("/")
        self.now = now

    def check(self, job: Job, action: Action, credential: Credential) -> dict[str, Any] | None:
        """None for an ungated action; the approval record for a gated one; else GateRefused."""
        environment = environment_for(str(action), job.env)
        if environment is None:
            return None
        if self.expect_credential and self.expect_credential != job.credential:
            raise GateRefused(f"this run was started for {self.expect_credential} but job "
                              f"{job.job_id} rotates {job.credential}")
        allowed = _approvers(credential, job.env)
        if not allowed:
            raise GateRefused(f"{credential.name} lists no approvers for {job.env}; add "
                              f"approvers.{job.env} to the manifest")
        repo = self.repository
        run = self.api.get(f"/repos/{repo}/actions/runs/{self.run_id}", f"run {self.run_id}")
        run_actor, triggered_by = _run_actors(run)
        initiators = {"the person who started the job": job.actor,
                      f"the person who triggered run {self.run_id}": triggered_by}
        env_status, env_data = self.api.call("GET", f"/repos/{repo}/environments/{environment}")
        if env_status == 404:
            env_data = None
        elif env_status >= 400:
            raise GateRefused(f"cannot read environment {environment}: HTTP {env_status}")
        rules = (env_data or {}).get("protection_rules") or []
        reviewers_rule = next((r for r in rules if r.get("type") == "required_reviewers"
                               and r.get("reviewers")), None)
        base = {"environment": environment, "run_id": self.run_id,
                "run_attempt": self.run_attempt or str(run.get("run_attempt") or ""),
                "run_url": run.get("html_url") or
                f"{self.server_url}/{repo}/actions/runs/{self.run_id}",
                "run_actor": run_actor, "triggering_actor": triggered_by,
                "job_actor": job.actor, "observed_at": iso(self.now()),
                "protection": {
                    "required_reviewers": reviewers_rule is not None,
                    "prevent_self_review": bool(reviewers_rule and
                                                reviewers_rule.get("prevent_self_review")),
                    "wait_timer": next((r.get("wait_timer") for r in rules
                                        if r.get("type") == "wait_timer"), 0),
                    "branch_policy": (env_data or {}).get("deployment_branch_policy"),
                }}
        if reviewers_rule is not None:
            return self._environment_approval(job, environment, allowed, initiators, base)
        return self._fallback_approval(job, action, environment, allowed, initiators, base)

    def _environment_approval(self, job: Job, environment: str, allowed: set[str],
                              initiators: dict[str, str | None],
                              base: dict[str, Any]) -> dict[str, Any]:
        path = f"/repos/{self.repository}/actions/runs/{self.run_id}/approvals"
        entries = self.api.get_all(path, f"the approvals of run {self.run_id}")
        mine = [e for e in entries if environment in {
            env.get("name") for env in e.get("environments") or []}]
        approved = [e for e in mine if e.get("state") == "approved"]
        if not approved:
            raise GateRefused(f"run {self.run_id} has no approval for environment {environment} "
                              "(an admin bypass or a missing review leaves none); an allowed "
                              "reviewer must approve the deployment")
        refusal: GateRefused | None = None
        for entry in approved:
            user = entry.get("user") or {}
            try:
                _four_eyes(_login(user), job, allowed, initiators)
            except GateRefused as exc:
                refusal = refusal or exc
                continue
            env_ids = [e.get("id") for e in entry.get("environments") or []
                       if e.get("name") == environment]
            return {**base, "kind": "environment_approval", "approver": _login(user),
                    "approver_id": user.get("id"), "environment_id": env_ids[0] if env_ids
                    else None, "comment": entry.get("comment") or ""}
        assert refusal is not None  # noqa: S101 - approved was not empty
        raise refusal

    def _fallback_approval(self, job: Job, action: Action, environment: str,
                           allowed: set[str], initiators: dict[str, str | None],
                           base: dict[str, Any]) -> dict[str, Any]:
        from velvet_runner.timeline import since as entered_status

        since = entered_status(job)  # approvals must come after it
        candidates = [e for e in job.events if e.action == FALLBACK_EVENT
                      and e.data.get("action") == str(action)
                      and e.data.get("environment") == environment and e.at >= since]
        if not candidates:
            raise GateRefused(
                f"environment {environment} has no required-reviewers rule (or does not exist) "
                f"and job {job.job_id} has no fallback approval for {action} since it became "
                f"{job.status}; refusing to run unprotected. An allowed approver other than "
                f"{job.actor} must run {APPROVE_WORKFLOW} for this job and action")
        refusal: GateRefused | None = None
        for event in reversed(candidates):
            try:
                record = self._verify_fallback(job, event.data, allowed, initiators, since)
            except GateRefused as exc:
                refusal = refusal or exc
                continue
            return {**base, **record}
        assert refusal is not None  # noqa: S101 - candidates was not empty
        raise refusal

    def _verify_fallback(self, job: Job, data: dict[str, Any], allowed: set[str],
                         initiators: dict[str, str | None], since: datetime) -> dict[str, Any]:
        run_id = str(data.get("approval_run_id") or "")
        if not run_id.isdigit() or run_id == str(self.run_id):
            raise GateRefused(f"fallback approval names no usable approve run ({run_id!r})")
        run = self.api.get(f"/repos/{self.repository}/actions/runs/{run_id}",
                           f"approve run {run_id}")
        problem = _approve_run_problem(run, job.job_id)
        if problem:
            raise GateRefused(f"fallback approval run {run_id} {problem}")
        actor, triggered = _run_actors(run)
        if actor != data.get("approver") or triggered != actor:
            raise GateRefused(f"fallback approval run {run_id} was run by {triggered}, not by "
                              f"the recorded approver {data.get('approver')}")
        created = parse_iso(run.get("created_at"))
        if created is None or created < since:
            raise GateRefused(f"fallback approval run {run_id} predates the job reaching "
                              f"{job.status}; approve again")
        _four_eyes(actor, job, allowed, initiators)
        user = run.get("actor") or {}
        return {"kind": "fallback_approval", "approver": actor, "approver_id": user.get("id"),
                "approval_run_id": run_id, "approval_run_url": run.get("html_url"),
                "approval_recorded_at": data.get("observed_at")}


def _approve_run_problem(run: dict[str, Any], job_id: str) -> str | None:
    """Why `run` is not a genuine velvet-approve.yml dispatch for `job_id` (None if it is)."""
    path = str(run.get("path") or "")
    if not path.split("@", 1)[0].endswith(f".github/workflows/{APPROVE_WORKFLOW}"):
        return f"is not a run of {APPROVE_WORKFLOW} (it ran {path or 'an unknown workflow'})"
    if run.get("event") != "workflow_dispatch":
        return f"was started by {run.get('event')}, not by a manual dispatch"
    # velvet-approve.yml sets run-name to name the job; a run that names another job is not
    # an approval of this one.
    named = set(_UUID.findall(str(run.get("display_title") or "")))
    if named and job_id not in named:
        return "approves a different job"
    return None


def gate_from_env(settings: Settings, manifest: Manifest,
                  environ: Environ | None = None) -> ActionsGate | None:
    """The gate when running inside GitHub Actions; None for a local operator's CLI.

    The approval is read with VELVET_GATE_TOKEN (the workflow's GITHUB_TOKEN with
    `actions: read`) from GITHUB_API_URL, the GitHub that runs the workflow.
    """
    env = environ_or_os(environ)
    if not in_actions(env):
        return None
    repository = env.get("GITHUB_REPOSITORY")
    run_id = env.get("GITHUB_RUN_ID")
    if not repository or not run_id:
        raise GateRefused("GITHUB_REPOSITORY and GITHUB_RUN_ID must be set in Actions")
    return ActionsGate(manifest, api=api_from_env(settings, env), repository=repository,
                       run_id=run_id, run_attempt=env.get("GITHUB_RUN_ATTEMPT"),
                       expect_credential=env.get("VELVET_EXPECT_CREDENTIAL") or None,
                       server_url=env.get("GITHUB_SERVER_URL", "https://github.com"))


# --- the fallback approval -------------------------------------------------------------------


def record_fallback_approval(settings: Settings, manifest: Manifest, store: Store, job_id: str,
                             action: str, *, environ: Environ | None = None,
                             now: Callable[[], datetime] = now_utc) -> Job:
    """Record that the person running this velvet-approve.yml dispatch approves `action`.

    Who approves is read from the runs API (the run's actor), never from an argument. Refused
    unless the stage's environment lacks a required-reviewers rule (there, the deployment review
    is the approval), the job is waiting for exactly this action, and the approver is allowed
    and is not the job's initiator.
    """
    from velvet_runner.engine.journal import Journal
    from velvet_runner.machine import Action, allowed
    from velvet_runner.timeline import require_serves

    env = environ_or_os(environ)
    if not in_actions(env):
        raise GateRefused("velvet approve only runs inside GitHub Actions "
                          f"({APPROVE_WORKFLOW}): the approver is the workflow run's actor")
    try:
        act = Action(action)
    except ValueError:
        raise BadArgument(f"unknown action {action!r}") from None
    repository, run_id = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    if not repository or not run_id:
        raise GateRefused("GITHUB_REPOSITORY and GITHUB_RUN_ID must be set in Actions")
    job = store.find(job_id)
    environment = environment_for(str(act), job.env)
    if environment is None:
        raise BadArgument(f"{act} needs no approval; gated actions: {', '.join(GATED)}")
    require_serves(settings.env, job.env, f"job {job_id}")
    cred = manifest.credential(job.credential)
    if cred is None:
        raise InputError(f"credential {job.credential} is not in the manifest")
    if act not in allowed(job.flow_type, job.status, force_revoke=job.force_revoke):
        raise GateRefused(f"job {job_id} is {job.status}; {act} is not what it waits for")
    api = api_from_env(settings, env)
    env_status, env_data = api.call("GET", f"/repos/{repository}/environments/{environment}")
    if env_status < 400 and any(r.get("type") == "required_reviewers" and r.get("reviewers")
                                for r in (env_data or {}).get("protection_rules") or []):
        raise GateRefused(f"environment {environment} has required reviewers: approve the "
                          "waiting deployment in the stage's run instead")
    if env_status >= 400 and env_status != 404:
        raise GateRefused(f"cannot read environment {environment}: HTTP {env_status}")
    run = api.get(f"/repos/{repository}/actions/runs/{run_id}", f"run {run_id}")
    problem = _approve_run_problem(run, job.job_id)
    if problem:
        raise GateRefused(f"this run ({run_id}) {problem}")
    actor, triggered = _run_actors(run)
    if actor is None or triggered != actor:
        raise GateRefused(f"run {run_id} was re-run by {triggered}; {actor} dispatched it. "
                          f"Dispatch {APPROVE_WORKFLOW} afresh to approve")
    _four_eyes(actor, job, _approvers(cred, job.env),
               {"the person who started the job": job.actor})
    observed = now()
    data = {"action": str(act), "environment": environment, "approver": actor,
            "approver_id": (run.get("actor") or {}).get("id"), "approval_run_id": str(run_id),
            "approval_run_url": run.get("html_url"), "observed_at": iso(observed),
            "kind": "fallback_approval"}
    # The journal refuses the write if the job moved meanwhile (its compare-and-swap).
    journal = Journal(job, store, now=now, actor=actor)
    return journal.note(FALLBACK_EVENT, f"{act} approved by {actor} ({APPROVE_WORKFLOW} run "
                        f"{run_id})", data, at=observed)

