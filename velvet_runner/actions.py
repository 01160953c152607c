"""The runner's GitHub Actions side: outputs, step summary, the approval gate, dispatching.

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

Module-level imports stay light (click only): the commands below are mounted on the `velvet`
group, whose `--help` must start fast.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from velvet_runner.errors import BadArgument, ConflictError, GateRefused, InputError, VelvetError

if TYPE_CHECKING:
    import httpx
    from pydantic import SecretStr

    from velvet_runner.budget import Budgets
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
DISPATCH_EVENT = "dispatched"
SUMMARY_LIMIT = 900 * 1024  # GitHub refuses a step summary above 1 MiB
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OUTPUT_VALUE = re.compile(r"^[\w.:@/+-]*$")

Environ = Mapping[str, str]


def _environ(environ: Environ | None) -> Environ:
    return os.environ if environ is None else environ


def in_actions(environ: Environ | None = None) -> bool:
    return _environ(environ).get("GITHUB_ACTIONS") == "true"


def _iso(value: datetime) -> str:
    # records.iso, without importing pydantic at CLI start (this module loads with the CLI).
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def environment_for(action: str, env: str) -> str | None:
    """The GitHub environment a stage action runs in, or None when it is not gated."""
    template = GATED.get(str(action))
    return template.format(env=env) if template else None


# --- the run we are in -----------------------------------------------------------------------


def run_context(environ: Environ | None = None) -> dict[str, Any]:
    """This workflow run as the runner sees it (never a token): for events and summaries."""
    env = _environ(environ)
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    repo, run_id = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    context: dict[str, Any] = {
        "repository": repo, "run_id": run_id, "run_attempt": env.get("GITHUB_RUN_ATTEMPT"),
        "workflow": env.get("GITHUB_WORKFLOW_REF") or env.get("GITHUB_WORKFLOW"),
        "event": env.get("GITHUB_EVENT_NAME"), "ref": env.get("GITHUB_REF"),
        "actor": env.get("GITHUB_ACTOR"), "triggering_actor": env.get("GITHUB_TRIGGERING_ACTOR"),
        "run_url": f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else None,
    }
    return {k: v for k, v in context.items() if v}


# --- outputs and the step summary ------------------------------------------------------------


def write_outputs(job: Job, environ: Environ | None = None) -> None:
    """GITHUB_OUTPUT gets ids and statuses (never a value); GITHUB_STEP_SUMMARY the report."""
    env = _environ(environ)
    output = env.get("GITHUB_OUTPUT")
    if output:
        values = {"job_id": job.job_id, "status": str(job.status), "credential": job.credential,
                  "env": job.env, "flow": str(job.flow_type)}
        lines = []
        for key, value in values.items():
            if not _OUTPUT_VALUE.match(value):  # nothing multi-line or odd reaches the file
                raise BadArgument(f"refusing to write output {key}: unexpected characters")
            lines.append(f"{key}={value}\n")
        with open(output, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(summary_markdown(job, env))


def summary_markdown(job: Job, environ: Environ | None = None) -> str:
    """The step summary: consumer table and mermaid path (report.step_summary), then who
    approved what, which runs touched the job, and what the operator can do next."""
    from velvet_runner.redact import scrub
    from velvet_runner.report import step_summary

    parts = [step_summary(job)]
    approvals = [e for e in job.events if e.action in ("approval", FALLBACK_EVENT)]
    if approvals:
        parts += ["", "### Approvals", "", "| when | approver | environment | kind | run |",
                  "|---|---|---|---|---|"]
        for event in approvals:
            data = event.data
            run = data.get("run_url") or data.get("approval_run_url") or ""
            parts.append(f"| {_iso(event.at)} | `{data.get('approver', event.actor)}` | "
                         f"`{data.get('environment', '')}` | {data.get('kind', event.action)} | "
                         f"{run} |")
    unproven = job.unproven_rows()
    if any(unproven.values()):
        parts += ["", "### Rows Velvet did not prove", ""]
        parts += [f"- {kind.replace('_', ' ')}: " + ", ".join(f"`{c}`" for c in ids)
                  for kind, ids in unproven.items() if ids]
        parts += ["", "These keep (or may keep) the old value: revoking it cuts them off."]
    debt = [d for d in job.revocation_debt if d.settled_at is None]
    if debt:
        parts += ["", "### Revocation debt", "",
                  "Live (or not proven dead) tokens this job made that are not the vault's "
                  "current value. Revoke them at the vendor, then `velvet stuck --settle-debt`.",
                  "", "| auth id | fingerprint | since | why |", "|---|---|---|---|"]
        parts += [f"| `{d.auth_id}` | `{d.fingerprint}` | {_iso(d.since)} | {d.reason} |"
                  for d in debt]
    waits = [e for e in job.events if e.action == "budget_wait"]
    if waits:
        parts += ["", "### Waits for the vendors' rate budgets", ""]
        parts += [f"- {_iso(e.at)}: {e.detail}" for e in waits]
    dispatched = [e for e in job.events if e.action == DISPATCH_EVENT]
    if dispatched:
        parts += ["", "### Runs started for this job", ""]
        for event in dispatched:
            data = event.data
            parts.append(f"- `{data.get('workflow')}` → {data.get('html_url') or 'run id unknown'}")
    context = run_context(environ)
    if context.get("run_url"):
        parts += ["", f"This run: {context['run_url']} (actor `{context.get('actor', '?')}`)"]
    nxt = [str(a) for a in job.next_actions()]
    if nxt:
        gated = [f"`{a}` (environment `{environment_for(a, job.env)}`)" if environment_for(
            a, job.env) else f"`{a}`" for a in nxt]
        parts += ["", "Allowed next: " + ", ".join(gated)]
    text = scrub("\n".join(parts) + "\n")
    if len(text.encode("utf-8")) > SUMMARY_LIMIT:
        text = text.encode("utf-8")[:SUMMARY_LIMIT].decode("utf-8", "ignore")
        text += ("\n\n_(summary truncated at GitHub's size limit; `velvet status --job` "
                 "has it all)_\n")
    return text


# --- talking to GitHub -----------------------------------------------------------------------


class GitHubApi:
    """The Actions layer's GitHub calls, through Velvet's one GitHub client.

    One httpx client for every GitHub call Velvet makes (secret targets, the issue channel,
    this gate and dispatcher), built by `client.make_client` with GitHub's rate-limit rules in
    its budget (budget.py) and one classification of GitHub's errors (`raise_for_vendor`):
    rather than PyGithub's GithubRetry, because a budget must be shared by every caller of an
    account and paced before requests are sent (concurrency, points, content-generating
    windows), which a per-session urllib3 retry that reacts after a rejection cannot do.
    A rate-limit answer is waited out (RetryPolicy); other errors come back as (status, data).
    """

    def __init__(self, token: SecretStr | str | None, api_url: str, *,
                 budgets: Budgets | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from pydantic import SecretStr

        self._token = SecretStr(token) if isinstance(token, str) else token
        self.api_url = api_url.rstrip("/")
        self._budgets = budgets
        self._sleep = sleep
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._token is None:
            raise GateRefused("no GitHub token: set VELVET_GATE_TOKEN to the workflow's "
                              "GITHUB_TOKEN (actions: read) so the runner can check approvals")
        if self._client is None:
            from velvet_runner.budget import Budgets
            from velvet_runner.client import make_client

            self._client = make_client(self.api_url, headers={
                "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                "Authorization": f"Bearer {self._token.get_secret_value()}"},
                budgets=self._budgets or Budgets(), vendor="github")
        return self._client

    def _send(self, verb: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        import httpx

        from velvet_runner.client import RetryPolicy, raise_for_vendor
        from velvet_runner.errors import RateLimited, VendorUnavailable

        def once() -> httpx.Response:
            try:
                response = self.client.request(verb, path, json=body)
            except httpx.HTTPError as exc:
                raise VendorUnavailable(f"GitHub {verb} {path}: {type(exc).__name__}") from None
            try:
                raise_for_vendor(response, f"GitHub {verb} {path}")
            except (RateLimited, VendorUnavailable):
                raise
            except VelvetError:
                pass  # the caller reads the status
            return response

        return RetryPolicy(sleep=self._sleep).run(once)

    def call(self, verb: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, data); GitHub errors become (status, data) too, never a traceback."""
        response = self._send(verb, path, body)
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        return response.status_code, data

    def get(self, path: str, what: str) -> Any:
        status, data = self.call("GET", path)
        if status >= 400:
            raise GateRefused(f"cannot read {what} from GitHub ({path}): HTTP {status}")
        return data

    def get_all(self, path: str, what: str) -> list[Any]:
        """A listing, every page of it (GitHub's `Link: rel="next"`)."""
        from velvet_runner.client import follow_links

        def send(url: str) -> httpx.Response:
            response = self._send("GET", url)
            if response.status_code >= 400:
                raise GateRefused(f"cannot read {what} from GitHub ({path}): "
                                  f"HTTP {response.status_code}")
            return response

        return follow_links(self.client, path, what, send=send)


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
                 now: Callable[[], datetime] = _now) -> None:
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
                "job_actor": job.actor, "observed_at": _iso(self.now()),
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
        created = _parse_iso(run.get("created_at"))
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


def _gate_token(settings: Settings | None, environ: Environ) -> SecretStr | None:
    from pydantic import SecretStr

    token = environ.get("VELVET_GATE_TOKEN")
    if token:
        return SecretStr(token)
    return settings.github_token if settings is not None else None


def _api(settings: Settings | None, environ: Environ) -> GitHubApi:
    api_url = environ.get("GITHUB_API_URL") or (
        settings.github_api_url if settings is not None else "https://api.github.com")
    return GitHubApi(_gate_token(settings, environ), api_url)


def gate_from_env(settings: Settings, manifest: Manifest,
                  environ: Environ | None = None) -> ActionsGate | None:
    """The gate when running inside GitHub Actions; None for a local operator's CLI.

    The approval is read with VELVET_GATE_TOKEN (the workflow's GITHUB_TOKEN with
    `actions: read`) from GITHUB_API_URL, the GitHub that runs the workflow.
    """
    env = _environ(environ)
    if not in_actions(env):
        return None
    repository = env.get("GITHUB_REPOSITORY")
    run_id = env.get("GITHUB_RUN_ID")
    if not repository or not run_id:
        raise GateRefused("GITHUB_REPOSITORY and GITHUB_RUN_ID must be set in Actions")
    return ActionsGate(manifest, api=_api(settings, env), repository=repository, run_id=run_id,
                       run_attempt=env.get("GITHUB_RUN_ATTEMPT"),
                       expect_credential=env.get("VELVET_EXPECT_CREDENTIAL") or None,
                       server_url=env.get("GITHUB_SERVER_URL", "https://github.com"))


# --- the fallback approval -------------------------------------------------------------------


def record_fallback_approval(settings: Settings, manifest: Manifest, store: Store, job_id: str,
                             action: str, *, environ: Environ | None = None,
                             now: Callable[[], datetime] = _now) -> Job:
    """Record that the person running this velvet-approve.yml dispatch approves `action`.

    Who approves is read from the runs API (the run's actor), never from an argument. Refused
    unless the stage's environment lacks a required-reviewers rule (there, the deployment review
    is the approval), the job is waiting for exactly this action, and the approver is allowed
    and is not the job's initiator.
    """
    from velvet_runner.machine import Action, allowed
    from velvet_runner.records import Event
    from velvet_runner.timeline import require_serves

    env = _environ(environ)
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
    api = _api(settings, env)
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
            "approval_run_url": run.get("html_url"), "observed_at": _iso(observed),
            "kind": "fallback_approval"}
    expected = job.status

    def apply(current: Job) -> Job:
        if current.status != expected:
            raise ConflictError(f"job {current.job_id} moved from {expected} to "
                                f"{current.status} while approving; check it and approve again")
        current.events.append(Event(at=observed, actor=actor, action=FALLBACK_EVENT,
                                    from_state=str(current.status),
                                    to_state=str(current.status),
                                    detail=f"{act} approved by {actor} ({APPROVE_WORKFLOW} "
                                           f"run {run_id})", data=data))
        return current

    return store.update(job.credential, job.job_id, apply)


# --- dispatching the next stage --------------------------------------------------------------


def dispatch_workflow(api: GitHubApi, repository: str, workflow: str, ref: str,
                      inputs: dict[str, str]) -> dict[str, Any]:
    """POST .../dispatches with return_run_details; the run's id and URLs when GitHub says.

    GHES (and older GitHub) answer 400/422 to `return_run_details`: then dispatch again without
    it and return no run details (204).
    """
    if not re.fullmatch(r"[\w.-]+\.ya?ml", workflow):
        raise BadArgument(f"workflow must be a file name such as velvet-stage-2-mint.yml, "
                          f"not {workflow!r}")
    path = f"/repos/{repository}/actions/workflows/{workflow}/dispatches"
    body: dict[str, Any] = {"ref": ref, "inputs": inputs, "return_run_details": True}
    status, data = api.call("POST", path, body)
    if status in (400, 422):  # as github/gh-aw does: any 400/422, once, without the flag
        body.pop("return_run_details")
        status, data = api.call("POST", path, body)
    if status >= 400:
        message = (data or {}).get("message") if isinstance(data, dict) else None
        raise ConflictError(f"dispatching {workflow} on {ref} failed: HTTP {status}"
                            + (f": {message}" if message else ""))
    details = data if isinstance(data, dict) else {}
    return {"workflow": workflow, "ref": ref, "run_id": details.get("workflow_run_id"),
            "html_url": details.get("html_url"), "run_url": details.get("run_url")}


def record_dispatch(store: Store, job_id: str, result: dict[str, Any],
                    inputs: dict[str, str], *, actor: str,
                    now: Callable[[], datetime] = _now) -> Job:
    """Note on the job which run was started for it, so the chain of runs is traceable."""
    from velvet_runner.records import Event

    job = store.find(job_id)

    def apply(current: Job) -> Job:
        current.events.append(Event(
            at=now(), actor=actor, action=DISPATCH_EVENT, from_state=str(current.status),
            to_state=str(current.status),
            detail=f"started {result['workflow']}" + (
                f" run {result['run_id']}" if result.get("run_id") else ""),
            data={**result, "inputs": sorted(inputs)}))
        return current

    return store.update(job.credential, job.job_id, apply)


def dispatch_due(api: GitHubApi, repository: str, workflow: str, ref: str,
                 rows: Sequence[dict[str, Any]], *, env: str, stagger_seconds: float,
                 sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """One stage-1 run per due credential, `stagger_seconds` apart (never two at once).

    The idempotency key is the credential and its due time, so a late or repeated cron tick
    dispatches runs that find the job already created and create nothing.
    """
    results = []
    for i, row in enumerate(rows):
        credential = str(row["credential"])
        if i:
            sleep(stagger_seconds)
        inputs = {"credential": credential, "flow": "operational", "env": env,
                  "idempotency_key": f"due-{credential}-{row.get('due_at', '')}",
                  "force_revoke": "false"}
        results.append({"credential": credential,
                        **dispatch_workflow(api, repository, workflow, ref, inputs)})
    return results


# --- commands (mounted on the `velvet` group by cli.py) ---------------------------------------


def _store(settings: Settings) -> Store:
    from velvet_runner.store import Store

    return Store(settings.state, settings.state_branch, settings.cache_dir)


@click.command("approve")
@click.argument("job_id")
@click.argument("action", type=click.Choice(sorted(GATED)))
def approve_command(job_id: str, action: str) -> None:
    """Approve ACTION on JOB_ID where the environment has no required reviewers.

    Runs only in the velvet-approve.yml workflow: the approver is the person GitHub says
    dispatched that run, checked against the manifest's approvers; they may not be the person
    who started the job.
    """
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.errors import FeatureDisabled
    from velvet_runner.settings import Settings

    settings = Settings.from_env()
    loaded = manifest_mod.load(settings.manifest)
    if not manifest_mod.load_flags(settings.manifest).get("velvet_v2_rotation", False):
        raise FeatureDisabled("feature flag velvet_v2_rotation is off: Velvet refuses to change "
                              "anything; use the vendor's manual SOP (runbook section 1)")
    job = record_fallback_approval(settings, loaded, _store(settings), job_id, action)
    click.echo(f"job {job.job_id}: {job.events[-1].detail}")
    write_outputs(job)


def _parse_inputs(pairs: Sequence[str]) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w-]*", key):
            raise BadArgument(f"--input takes NAME=VALUE, not {pair!r}")
        inputs[key] = value
    return inputs


@click.command("dispatch")
@click.argument("workflow")
@click.option("--input", "-f", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A workflow input (repeatable).")
@click.option("--ref", default=None, help="Branch to run the workflow from (default: this "
              "run's branch, GITHUB_REF_NAME).")
@click.option("--job", "job_id", default=None, help="Record the started run on this job.")
@click.option("--each-due", "due_file", default=None, type=click.Path(dir_okay=False),
              help="`velvet due --json` output: dispatch WORKFLOW once per due credential.")
@click.option("--stagger", default=120.0, show_default=True, type=click.FloatRange(0, 3600),
              help="Seconds between two --each-due dispatches.")
def dispatch_command(workflow: str, pairs: Sequence[str], ref: str | None, job_id: str | None,
                     due_file: str | None, stagger: float) -> None:
    """Start WORKFLOW (workflow_dispatch) in this repository and print the new run's URL.

    Uses VELVET_GATE_TOKEN (the workflow's GITHUB_TOKEN, `actions: write`): a run started with
    GITHUB_TOKEN may dispatch workflows.
    """
    from velvet_runner.settings import Settings
    from velvet_runner.timeline import require_env

    env = os.environ
    settings = Settings.from_env()
    repository = env.get("GITHUB_REPOSITORY") or settings.github_repository
    ref = ref or env.get("GITHUB_REF_NAME")
    if not repository or not ref:
        raise BadArgument("dispatch needs GITHUB_REPOSITORY and --ref (or GITHUB_REF_NAME)")
    api = _api(settings, env)
    inputs = _parse_inputs(pairs)
    if due_file is not None:
        rows = json.loads(Path(due_file).read_text(encoding="utf-8") or "[]")
        if not isinstance(rows, list):
            raise BadArgument(f"{due_file} is not the list `velvet due --json` prints")
        for result in dispatch_due(api, repository, workflow, ref, rows,
                                   env=require_env(settings.env),
                                   stagger_seconds=stagger):
            click.echo(f"{result['credential']}: started {workflow} "
                       f"{result.get('html_url') or '(run id not returned)'}")
        if not rows:
            click.echo("nothing is due")
        return
    result = dispatch_workflow(api, repository, workflow, ref, inputs)
    if job_id is not None:
        record_dispatch(_store(settings), job_id, result, inputs,
                        actor=settings.actor or "github-actions")
    click.echo(f"started {workflow}: {result.get('html_url') or '(run id not returned)'}")


COMMANDS: tuple[click.Command, ...] = (approve_command, dispatch_command)
