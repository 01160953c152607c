"""The runner's GitHub Actions side: outputs, step summary, and the approval gate.

Gates can fail open (required reviewers need a public repository or Enterprise; a job naming a
missing environment runs unprotected), so a gated stage checks, before any side effect, that
this run has an approval for its environment from an approver the manifest allows, who is not
the person who started the job. With no protected environment, an explicit `approve` dispatch
recorded as a fallback approval is required instead.
"""

from __future__ import annotations

import os
from typing import Any

from velvet_runner.errors import GateRefused
from velvet_runner.machine import Action
from velvet_runner.manifest import Credential, Manifest
from velvet_runner.records import Job, utcnow
from velvet_runner.redact import in_actions
from velvet_runner.report import step_summary
from velvet_runner.settings import Settings

GATED = {Action.PROCEED_MINT: "velvet-{env}", Action.PROCEED_REVOKE: "velvet-{env}-revoke"}


def write_outputs(job: Job, environ: dict[str, str] | None = None) -> None:
    """GITHUB_OUTPUT gets the job id and status (never a value); the summary gets the table."""
    env = os.environ if environ is None else environ
    output = env.get("GITHUB_OUTPUT")
    if output:
        with open(output, "a", encoding="utf-8") as handle:
            handle.write(f"job_id={job.job_id}\nstatus={job.status}\n")
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(step_summary(job))


class ActionsGate:
    """Checks this run's environment approval through the GitHub API (PyGithub)."""

    def __init__(self, settings: Settings, manifest: Manifest, *, run_id: str,
                 repository: str, fallback_approver: str | None = None) -> None:
        self.settings = settings
        self.manifest = manifest
        self.run_id = run_id
        self.repository = repository
        self.fallback_approver = fallback_approver

    def _requester(self) -> Any:
        from github import Auth, Github

        if self.settings.github_token is None:
            raise GateRefused("VELVET_GITHUB_TOKEN is not set; cannot check the approval")
        gh = Github(auth=Auth.Token(self.settings.github_token.get_secret_value()),
                    base_url=self.settings.github_api_url, retry=None)
        return gh.requester

    def _get(self, path: str) -> Any:
        from github import GithubException

        try:
            _headers, data = self._requester().requestJsonAndCheck("GET", path)
        except GithubException as exc:
            raise GateRefused(f"cannot read {path} from GitHub: HTTP {exc.status}") from None
        return data

    def check(self, job: Job, action: Action, credential: Credential) -> dict[str, Any] | None:
        if action not in GATED:
            return None
        environment = GATED[action].format(env=job.env)
        allowed = set(credential.approvers.get(job.env, []))  # type: ignore[call-overload]
        if not allowed:
            raise GateRefused(f"{credential.name} lists no approvers for {job.env}; "
                              "add them to the manifest")
        repo = self.repository
        protected = self._protected(repo, environment)
        observed = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        run = self._get(f"/repos/{repo}/actions/runs/{self.run_id}")
        triggered_by = ((run.get("triggering_actor") or run.get("actor") or {}).get("login"))
        if protected:
            approvals = self._get(f"/repos/{repo}/actions/runs/{self.run_id}/approvals") or []
            for entry in approvals:
                envs = {e.get("name") for e in entry.get("environments", [])}
                login = (entry.get("user") or {}).get("login")
                if entry.get("state") != "approved" or environment not in envs:
                    continue
                self._four_eyes(login, job, triggered_by, allowed)
                return {"approver": login, "approver_id": (entry.get("user") or {}).get("id"),
                        "environment": environment, "run_id": self.run_id,
                        "run_attempt": os.environ.get("GITHUB_RUN_ATTEMPT"),
                        "comment": entry.get("comment"), "observed_at": observed,
                        "kind": "environment_approval"}
            raise GateRefused(f"no approval of environment {environment} on run {self.run_id}; "
                              "an allowed reviewer must approve the deployment")
        if self.fallback_approver is None:
            raise GateRefused(f"environment {environment} has no required-reviewers rule and no "
                              "fallback approval was given; refusing to run unprotected")
        self._four_eyes(self.fallback_approver, job, triggered_by, allowed)
        return {"approver": self.fallback_approver, "environment": environment,
                "run_id": self.run_id, "observed_at": observed, "kind": "fallback_dispatch"}

    def _protected(self, repo: str, environment: str) -> bool:
        from github import GithubException

        try:
            _h, data = self._requester().requestJsonAndCheck(
                "GET", f"/repos/{repo}/environments/{environment}")
        except GithubException as exc:
            if exc.status == 404:
                return False
            raise GateRefused(f"cannot read environment {environment}: HTTP {exc.status}") from None
        rules = data.get("protection_rules") or []
        return any(r.get("type") == "required_reviewers" and r.get("reviewers") for r in rules)

    @staticmethod
    def _four_eyes(login: str | None, job: Job, triggered_by: str | None,
                   allowed: set[str]) -> None:
        if login is None or login not in allowed:
            raise GateRefused(f"approver {login} is not allowed for {job.credential} in "
                              f"{job.env}; allowed: {', '.join(sorted(allowed))}")
        if login in {job.actor, triggered_by}:
            raise GateRefused(f"approver {login} started this job; a second person must approve")


def gate_from_env(settings: Settings, manifest: Manifest) -> ActionsGate | None:
    """The gate when running inside GitHub Actions; None for a local operator's CLI."""
    if not in_actions():
        return None
    repository = os.environ.get("GITHUB_REPOSITORY")
    run_id = os.environ.get("GITHUB_RUN_ID")
    if not repository or not run_id:
        raise GateRefused("GITHUB_REPOSITORY and GITHUB_RUN_ID must be set in Actions")
    return ActionsGate(settings, manifest, run_id=run_id, repository=repository,
                       fallback_approver=os.environ.get("VELVET_FALLBACK_APPROVER") or None)
