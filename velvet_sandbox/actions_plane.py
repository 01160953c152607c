"""The GitHub fake as an Actions control plane: workflows, environments, runs that wait.

`ActionsPlane(state)` learns a repository's `.github/workflows/*.yml` (names, typed
`workflow_dispatch` inputs, each job's `environment:`, `permissions:` and `needs:`, the
workflow's `concurrency`) and its environments. A dispatch (the fake's dispatch endpoint, which
checks `choice`, `boolean` and `number` inputs with GitHub's 422) then makes a run that, as on
GitHub:

    pending      another run of its concurrency group is active; a newer pending run cancels
                 it ("Canceling since a higher priority waiting request ... exists"), and
                 `cancel-in-progress: true` cancels the active one instead
    waiting      a job names an environment with required reviewers (each job waits on its
                 own; a review through GET/POST .../runs/{run_id}/pending_deployments) or a
                 wait timer that has not run out
    queued       a job is ready: an executor (velvet rehearse) takes it with `take()` (the run's
                 `job` says which), runs it and reports `finish(run_id, conclusion)`
    completed    success, failure (a rejected review, a ref the environment's deployment
                 branch policy does not allow: "Branch ... is not allowed to deploy to ... due
                 to environment protection rules.") or cancelled

A job's GITHUB_TOKEN may do what its `permissions:` (else the workflow's, else GitHub's
restricted default: contents and packages read) grant: `token_permissions` gives the fake's
token model. The reviews land in the run's approvals (GET .../approvals), which the runner's
gate reads. A workflow whose jobs `needs:` others runs as one unit once every job's gates have
cleared (act would re-run a job's needs if each job ran alone). Only the subset of GitHub's
expression language the workflows use is evaluated (see `evaluate`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from velvet_sandbox.github import Repo, Run, State

Json = dict[str, Any]
ACTIVE = ("waiting", "queued", "in_progress")
_TOKEN = re.compile(r"\s*(?:('(?:[^']|'')*')|(&&|\|\||==|!=|[!(),])|([\w.\-\[\]*]+))")


# -- expressions ---------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "")


def _lookup(context: Json, name: str) -> Any:
    value: Any = context
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _format(template: str, *args: Any) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1))]), template)


def _contains(haystack: Any, needle: Any) -> bool:
    if isinstance(haystack, list):
        return needle in haystack
    return str(needle).lower() in str(haystack).lower()


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "format": _format, "contains": _contains, "fromjson": json.loads,
    "startswith": lambda s, p: str(s).lower().startswith(str(p).lower()),
}


class _Parser:
    """`a || b`, `a && b`, `==`, `!=`, `!`, literals, context paths and FUNCTIONS."""

    def __init__(self, text: str, context: Json) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise ValueError(f"cannot read expression {text!r} at {pos}")
            kind = "str" if match.group(1) else "op" if match.group(2) else "name"
            self.tokens.append((kind, match.group(1) or match.group(2) or match.group(3)))
            pos = match.end()
        self.context = context

    def parse(self) -> Any:
        value = self._or()
        if self.tokens:
            raise ValueError(f"unexpected {self.tokens[0][1]!r}")
        return value

    def _peek(self, op: str) -> bool:
        return bool(self.tokens) and self.tokens[0] == ("op", op)

    def _or(self) -> Any:
        value = self._and()
        while self._peek("||"):
            self.tokens.pop(0)
            right = self._and()
            value = value if _truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._cmp()
        while self._peek("&&"):
            self.tokens.pop(0)
            right = self._cmp()
            value = right if _truthy(value) else value
        return value

    def _cmp(self) -> Any:
        value = self._unary()
        for op in ("==", "!="):
            if self._peek(op):
                self.tokens.pop(0)
                right = self._unary()
                same = str(value).lower() == str(right).lower()
                return same if op == "==" else not same
        return value

    def _unary(self) -> Any:
        if self._peek("!"):
            self.tokens.pop(0)
            return not _truthy(self._unary())
        kind, text = self.tokens.pop(0)
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if text == "(":
            value = self._or()
            self.tokens.pop(0)
            return value
        if self._peek("("):
            self.tokens.pop(0)
            args = []
            while not self._peek(")"):
                args.append(self._or())
                if self._peek(","):
                    self.tokens.pop(0)
            self.tokens.pop(0)
            return FUNCTIONS[text.lower()](*args)
        literals = {"true": True, "false": False, "null": None}
        if text in literals:
            return literals[text]
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return float(text) if "." in text else int(text)
        return _lookup(self.context, text)


def evaluate(template: str, context: Json) -> str:
    """`template` with every `${{ expression }}` replaced by its value (as text)."""

    def one(match: re.Match[str]) -> str:
        value = _Parser(match.group(1), context).parse()
        return "" if value is None else str(value).lower() if isinstance(value, bool) \
            else str(value)

    return re.sub(r"\$\{\{(.*?)\}\}", one, template, flags=re.S)


# -- workflows -----------------------------------------------------------------------------


def _triggers(doc: dict[Any, Any]) -> Json:
    value = doc.get("on", doc.get(True))  # PyYAML reads the key `on` as True
    if isinstance(value, str):
        return {value: None}
    if isinstance(value, list):
        return dict.fromkeys(value)
    return dict(value or {})


# The GITHUB_TOKEN's permission keys (workflow syntax) -> the fake's permission names.
TOKEN_SCOPES = ("actions", "attestations", "checks", "contents", "deployments", "discussions",
                "issues", "models", "packages", "pages", "pull-requests", "security-events",
                "statuses")
# A repository's default for a job that declares nothing ("restricted", GitHub's default for
# new repositories and organisations since 2023): contents and packages read.
DEFAULT_PERMISSIONS: Json = {"contents": "read", "packages": "read"}


def token_permissions(declared: Any) -> dict[str, str]:
    """A job's `permissions:` as the GitHub fake's token permissions (metadata always read)."""
    if declared in ("read-all", "write-all"):
        level = declared.removesuffix("-all")
        granted = dict.fromkeys(TOKEN_SCOPES, level)
    elif isinstance(declared, dict):
        granted = {str(k): str(v) for k, v in declared.items()
                   if k in TOKEN_SCOPES and v in ("read", "write")}
    else:
        granted = {}
    out = {k.replace("-", "_"): v for k, v in granted.items()}
    out["metadata"] = "read"
    return out


@dataclass
class JobSpec:
    """What the plane needs of one job."""

    id: str
    environment: str | None  # name or expression
    permissions: Any  # as written (a mapping, read-all, write-all), or the inherited one
    needs: list[str]


@dataclass
class WorkflowSpec:
    """What the plane needs of one workflow file."""

    file: str
    name: str
    triggers: Json
    inputs: Json  # workflow_dispatch inputs: their type, options and defaults
    concurrency: str | None
    cancel_in_progress: str | None  # `true`, `false` or an expression
    jobs: list[JobSpec]

    @property
    def environments(self) -> list[str]:
        """Each job's `environment:` (name or expression), in job order."""
        return [job.environment for job in self.jobs if job.environment]

    @classmethod
    def read(cls, path: Path) -> WorkflowSpec:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a workflow")
        triggers = _triggers(doc)
        inputs = dict((triggers.get("workflow_dispatch") or {}).get("inputs") or {})
        concurrency = doc.get("concurrency")
        group = concurrency.get("group") if isinstance(concurrency, dict) else concurrency
        cancel = concurrency.get("cancel-in-progress") if isinstance(concurrency, dict) else None
        inherited = doc.get("permissions", DEFAULT_PERMISSIONS)
        jobs = []
        for job_id, job in (doc.get("jobs") or {}).items():
            env = job.get("environment")
            if isinstance(env, dict):
                env = env.get("name")
            needs = job.get("needs") or []
            jobs.append(JobSpec(str(job_id), str(env) if env else None,
                                job.get("permissions", inherited),
                                [needs] if isinstance(needs, str) else list(needs)))
        return cls(path.name, str(doc.get("name") or path.name), triggers, inputs,
                   None if group is None else str(group),
                   None if cancel is None else str(cancel).lower(), jobs)

    def input_types(self) -> Json:
        """Each input's type (and a choice's options), for the dispatch endpoint to check."""
        return {name: {"type": (spec or {}).get("type", "string"),
                       "options": [str(o) for o in (spec or {}).get("options") or []]}
                for name, spec in self.inputs.items()}

    def context(self, inputs: Json, event: Json, event_name: str, branch: str = "main") -> Json:
        values = {name: (spec or {}).get("default", "") for name, spec in self.inputs.items()}
        values.update(inputs)
        github = {"event": event, "event_name": event_name, "ref": f"refs/heads/{branch}",
                  "ref_name": branch, "repository": "", "run_id": ""}
        return {"inputs": values, "github": github}


@dataclass
class JobState:
    """One job of a run, as the plane gates it."""

    id: str
    environment: str | None  # evaluated
    permissions: dict[str, str]
    needs: list[str]
    status: str = "blocked"  # blocked, review, timer, ready, running, done
    conclusion: str | None = None
    wait_until: float | None = None  # the wait timer's end (the fake's clock)
    timer_started: float | None = None
    message: str | None = None  # why the plane failed it without running it


@dataclass
class RunInfo:
    """The plane's side of a run: what started it, its jobs and what they wait for."""

    run_id: int
    repo: str
    workflow: str
    event: str
    inputs: Json
    payload: Json
    group: str | None
    environment: str | None  # the first job's (what the run table shows)
    jobs: dict[str, JobState] = field(default_factory=dict)
    whole: bool = False  # jobs need each other: one execution of every job
    job: str | None = None  # the job an executor took (None with `whole`)
    cancel_requested: bool = False
    admitted: bool = False  # out of the concurrency queue (a pending run is not)

    @property
    def pending(self) -> list[str]:
        """Environments a job of this run waits to have reviewed."""
        return list(dict.fromkeys(j.environment for j in self.jobs.values()
                                  if j.status == "review" and j.environment))

    @property
    def failures(self) -> list[str]:
        """Why the plane failed jobs without running them."""
        return [f"job {j.id}: {j.message}" for j in self.jobs.values() if j.message]


class ActionsPlane:
    """Attach to a `github.State` (sets `state.plane`); thread-safe under the state's lock."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.specs: dict[str, dict[str, WorkflowSpec]] = {}
        self.runs: dict[int, RunInfo] = {}
        state.plane = self

    def learn(self, repo: str, root: Path) -> list[WorkflowSpec]:
        """Register every `.github/workflows/*.yml` of the checkout at `root` on `repo`."""
        specs = []
        for path in sorted((root / ".github" / "workflows").glob("*.y*ml")):
            spec = WorkflowSpec.read(path)
            # Omitted inputs take their defaults: only a required input without one must be sent.
            required = [n for n, s in spec.inputs.items()
                        if (s or {}).get("required") and (s or {}).get("default") is None]
            self.state.add_workflow(repo, spec.file, list(spec.inputs), required=required,
                                    dispatchable="workflow_dispatch" in spec.triggers,
                                    name=spec.name, types=spec.input_types())
            self.specs.setdefault(repo, {})[spec.file] = spec
            specs.append(spec)
        return specs

    def add_environments(self, repo: str, env: str, reviewers: list[str]) -> None:
        """velvet-<env> and velvet-<env>-revoke gated by `reviewers`; velvet-<env>-verify not."""
        for suffix, gated in (("", True), ("-revoke", True), ("-verify", False)):
            self.state.add_environment(repo, f"velvet-{env}{suffix}",
                                       list(reviewers) if gated else None, branches=["main"])

    # -- runs ----------------------------------------------------------------------------

    def create_run(self, repo: str, workflow: str, *, actor: str, event: str,
                   inputs: Json | None = None, payload: Json | None = None) -> int:
        """A run of `workflow` started by `event` (schedule, pull_request, ...)."""
        with self.state._lock:
            target = self.state._repos[repo]
            run = self.state._seed_run(target, {"actor": actor, "workflow": workflow,
                                                "status": "queued", "event": event})
            self.dispatched(target, run, inputs or {}, payload)
            return run.id

    def dispatched(self, repo: Repo, run: Run, inputs: Json, payload: Json | None = None) -> None:
        """Called by the fake (under its lock) for every run it creates."""
        spec = self.specs.get(repo.full_name, {}).get(run.workflow or "")
        if spec is None:
            return  # a workflow the plane was not taught: the run stays as the fake made it
        event = payload if payload is not None else {"inputs": dict(inputs)}
        context = spec.context(inputs, event, run.event, run.head_branch)
        group = evaluate(spec.concurrency, context).lower() if spec.concurrency else None
        jobs = {job.id: JobState(job.id, evaluate(job.environment, context)
                                 if job.environment else None,
                                 token_permissions(job.permissions), job.needs)
                for job in spec.jobs}
        first = next((j.environment for j in jobs.values() if j.environment), None)
        info = RunInfo(run.id, repo.full_name, spec.file, run.event, dict(context["inputs"]),
                       event, group, first, jobs,
                       whole=any(job.needs for job in spec.jobs))
        self.runs[run.id] = info
        flag = spec.cancel_in_progress or "false"
        cancel = evaluate(flag if "${{" in flag else f"${{{{ {flag} }}}}", context) == "true"
        others = [o for o in self.runs.values() if group and o.group == group
                  and o.run_id != run.id and self._active(o)]
        if others and cancel:  # the active run and any pending one give way
            for other in self.runs.values():
                status = self.state._repos[other.repo].runs[other.run_id].status
                if other.group == group and other.run_id != run.id and \
                        status in (*ACTIVE, "pending"):
                    self._cancel(other)
        elif others:
            for other in self.runs.values():
                older = self.state._repos[other.repo].runs[other.run_id]
                if other.group == group and older.status == "pending":
                    older.status, older.conclusion = "completed", "cancelled"
            run.status = "pending"
            return
        self._admit(repo, run, info)

    def _active(self, info: RunInfo) -> bool:
        return self.state._repos[info.repo].runs[info.run_id].status in ACTIVE

    def _cancel(self, info: RunInfo) -> None:
        """`cancel-in-progress`: a running job finishes as cancelled; nothing else starts."""
        for job in info.jobs.values():
            if job.status == "running":
                info.cancel_requested = True
            elif job.status != "done":
                job.status, job.conclusion = "done", "cancelled"
        if not info.cancel_requested:
            info.admitted = True  # a pending run ends cancelled too
            self._settle(info)

    def _admit(self, repo: Repo, run: Run, info: RunInfo) -> None:
        """The run leaves the concurrency queue: each job that needs nothing is triggered."""
        info.admitted = True
        for job in info.jobs.values():
            if not job.needs or info.whole:
                self._trigger(repo, run, job)
        self._settle(info)

    def _trigger(self, repo: Repo, run: Run, job: JobState) -> None:
        """A job's environment protection rules start: branch policy, reviewers, wait timer."""
        env = repo.environments.get(job.environment or "")
        if env is None:  # no environment, or one GitHub creates unprotected on the fly
            job.status = "ready"
            return
        if not self._branch_allowed(repo, env, run.head_branch):
            job.status, job.conclusion = "done", "failure"
            job.message = (f'Branch "{run.head_branch}" is not allowed to deploy to {env.name} '
                           "due to environment protection rules.")
            return
        now = self.state.clock()
        job.timer_started = now
        job.wait_until = now + env.wait_timer * 60 if env.wait_timer else None
        job.status = "review" if env.reviewers else "timer" if job.wait_until else "ready"

    def _branch_allowed(self, repo: Repo, env: Any, branch: str) -> bool:
        from velvet_sandbox.github.common import glob_match
        from velvet_sandbox.github.rules import active_rules

        if env.protected_branches:
            return branch in repo.protections or bool(active_rules(repo, branch))
        if env.branches is None:
            return True
        return any(glob_match(pattern, branch) for pattern in env.branches)

    def _settle(self, info: RunInfo) -> None:
        """The run's status from its jobs', as GitHub shows it (a pending run keeps its own)."""
        run = self.state._repos[info.repo].runs[info.run_id]
        if not info.admitted:
            return
        now = self.state.clock()
        for job in info.jobs.values():
            if job.status == "timer" and job.wait_until is not None and now >= job.wait_until:
                job.status = "ready"
        jobs = list(info.jobs.values())
        statuses = {j.status for j in jobs}
        if "running" in statuses:
            run.status = "in_progress"
        elif "ready" in statuses and (not info.whole or statuses <= {"ready", "done"}):
            run.status = "queued"  # (a `needs` workflow: once every job's gates cleared)
        elif statuses & {"review", "timer", "ready"}:
            run.status = "waiting"
        elif statuses & {"blocked"}:
            run.status = "queued"
        else:
            conclusions = {j.conclusion for j in jobs}
            run.status = "completed"
            run.conclusion = ("cancelled" if "cancelled" in conclusions else
                              "failure" if "failure" in conclusions else "success")

    def take(self) -> RunInfo | None:
        """The oldest ready job (its run's `job`; with `whole`, every job), now in progress;
        None when nothing is ready."""
        with self.state._lock:
            for info in sorted(self.runs.values(), key=lambda i: i.run_id):
                self._settle(info)
                run = self.state._repos[info.repo].runs[info.run_id]
                if run.status != "queued":
                    continue
                ready = [j for j in info.jobs.values() if j.status == "ready"]
                if not ready:
                    continue
                if info.whole:
                    for job in ready:
                        job.status = "running"
                    info.job = None
                else:
                    ready[0].status = "running"
                    info.job = ready[0].id
                run.status = "in_progress"
                return info
            return None

    def finish(self, run_id: int, conclusion: str) -> None:
        """The executor's verdict on the job it took; then what it unblocks moves on."""
        with self.state._lock:
            info = self.runs[run_id]
            if info.cancel_requested:
                conclusion = "cancelled"
            repo = self.state._repos[info.repo]
            run = repo.runs[run_id]
            for job in info.jobs.values():
                if job.status == "running":
                    job.status, job.conclusion = "done", conclusion
            for job in info.jobs.values():
                if job.status == "blocked" and all(
                        info.jobs[n].status == "done" for n in job.needs if n in info.jobs):
                    if all(info.jobs[n].conclusion == "success" for n in job.needs
                           if n in info.jobs):
                        self._trigger(repo, run, job)
                    else:
                        job.status, job.conclusion = "done", "skipped"
            self._settle(info)
            if run.status == "completed":
                self._next_in_group(info)

    def _next_in_group(self, info: RunInfo) -> None:
        repo = self.state._repos[info.repo]
        for other in sorted(self.runs.values(), key=lambda i: i.run_id):
            waiting = repo.runs.get(other.run_id)
            if other.group == info.group and waiting is not None and waiting.status == "pending":
                self._admit(repo, waiting, other)
                break

    def status(self, run_id: int) -> tuple[str, str | None]:
        with self.state._lock:
            info = self.runs[run_id]
            self._settle(info)
            run = self.state._repos[info.repo].runs[run_id]
            return run.status, run.conclusion

    # -- reviews -------------------------------------------------------------------------

    def pending_deployments(self, repo: Repo, run: Run, login: str,
                            user: Callable[[str], Json],
                            environment: Callable[[Any], Json]) -> list[Json]:
        from velvet_sandbox.github.common import _iso

        info = self.runs.get(run.id)
        rows = []
        for name in info.pending if info else []:
            env = repo.environments[name]
            started = min((j.timer_started for j in info.jobs.values()  # type: ignore[union-attr]
                           if j.environment == name and j.timer_started), default=None)
            keys = ("id", "node_id", "name", "url", "html_url")
            env_json = environment(env)
            rows.append({
                "environment": {k: env_json[k] for k in keys},
                "wait_timer": env.wait_timer,
                "wait_timer_started_at": _iso(started) if started and env.wait_timer else None,
                "current_user_can_approve": self._may_review(env, run, login) is None,
                "reviewers": [{"type": "User", "reviewer": user(r)}
                              for r in env.reviewers or []],
            })
        return rows

    def _may_review(self, env: Any, run: Run, login: str) -> str | None:
        """Why `login` may not review `run` for `env` (None: they may)."""
        if login not in (env.reviewers or []):
            return f"{login} is not a required reviewer of environment {env.name}"
        if env.prevent_self_review and login.lower() == run.triggering_actor.lower():
            return (f"{login} triggered run {run.id} and environment {env.name} prevents "
                    "self-review")
        return None

    def review(self, repo: Repo, run: Run, login: str, body: Json) -> list[Json]:
        """POST pending_deployments: approve or reject; raises ValueError with GitHub's 422."""
        from velvet_sandbox.github import Approval

        info = self.runs.get(run.id)
        state, comment = body.get("state"), body.get("comment")
        ids = body.get("environment_ids")
        if state not in ("approved", "rejected"):
            raise ValueError("state must be approved or rejected")
        if not isinstance(comment, str):
            raise ValueError('"comment" wasn\'t supplied.')
        if not isinstance(ids, list) or not ids:
            raise ValueError('"environment_ids" wasn\'t supplied.')
        if info is None or not info.pending or run.status != "waiting":
            raise ValueError(f"run {run.id} has no deployment waiting for a review")
        by_id = {repo.environments[n].id: repo.environments[n] for n in info.pending}
        chosen = []
        for env_id in ids:
            env = by_id.get(env_id) if isinstance(env_id, int) else None
            if env is None:
                raise ValueError(f"environment {env_id} is not waiting in run {run.id}")
            problem = self._may_review(env, run, login)
            if problem:
                raise ValueError(problem)
            chosen.append(env)
        out = []
        for env in chosen:
            run.approvals.append(Approval(env.name, login, comment, state))
            for job in info.jobs.values():
                if job.status == "review" and job.environment == env.name:
                    if state == "rejected":
                        job.status, job.conclusion = "done", "failure"
                    else:
                        job.status = "timer" if job.wait_until else "ready"
            out.append({"id": self.state._next_id(), "environment": env.name, "state": state,
                        "creator": login})
        self._settle(info)
        if run.status == "completed":
            self._next_in_group(info)
        return out
