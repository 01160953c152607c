"""The GitHub fake as an Actions control plane: workflows, environments, runs that wait.

`ActionsPlane(state)` learns a repository's `.github/workflows/*.yml` (names and
`workflow_dispatch` inputs, the expression each job's `environment:` and the workflow's
`concurrency.group` use) and its environments. A dispatch (the fake's dispatch endpoint) then
makes a run that, as on GitHub:

    pending      another run of its concurrency group is active; a newer pending run cancels
                 it ("Canceling since a higher priority waiting request ... exists")
    waiting      its job names an environment with required reviewers: it waits for a review
                 through GET/POST .../actions/runs/{run_id}/pending_deployments
    queued       ready: an executor (velvet rehearse) takes it with `take()`, runs it and
                 reports `finish(run_id, conclusion)`
    completed    success, failure (a rejected review too) or cancelled

The reviews land in the run's approvals (GET .../approvals), which the runner's gate reads. Only
the subset of GitHub's expression language the workflows use is evaluated (see `evaluate`).
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
    from velvet_runner.sandbox.github import Repo, Run, State

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


@dataclass
class WorkflowSpec:
    """What the plane needs of one workflow file."""

    file: str
    name: str
    triggers: Json
    inputs: Json  # workflow_dispatch inputs, with their defaults
    concurrency: str | None
    environments: list[str]  # each job's `environment:` (name or expression)

    @classmethod
    def read(cls, path: Path) -> WorkflowSpec:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a workflow")
        triggers = _triggers(doc)
        inputs = dict((triggers.get("workflow_dispatch") or {}).get("inputs") or {})
        concurrency = doc.get("concurrency")
        group = concurrency.get("group") if isinstance(concurrency, dict) else concurrency
        environments = []
        for job in (doc.get("jobs") or {}).values():
            env = job.get("environment")
            if isinstance(env, dict):
                env = env.get("name")
            if env:
                environments.append(str(env))
        return cls(path.name, str(doc.get("name") or path.name), triggers, inputs,
                   None if group is None else str(group), environments)

    def context(self, inputs: Json, event: Json, event_name: str) -> Json:
        values = {name: (spec or {}).get("default", "") for name, spec in self.inputs.items()}
        values.update(inputs)
        github = {"event": event, "event_name": event_name, "ref": "refs/heads/main",
                  "ref_name": "main", "repository": "", "run_id": ""}
        return {"inputs": values, "github": github}


@dataclass
class RunInfo:
    """The plane's side of a run: what started it and what it waits for."""

    run_id: int
    repo: str
    workflow: str
    event: str
    inputs: Json
    payload: Json
    group: str | None
    environment: str | None
    pending: list[str] = field(default_factory=list)  # environments waiting for a review


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
                                    name=spec.name)
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
        context = spec.context(inputs, event, run.event)
        group = evaluate(spec.concurrency, context).lower() if spec.concurrency else None
        environment = evaluate(spec.environments[0], context) if spec.environments else None
        info = RunInfo(run.id, repo.full_name, spec.file, run.event, dict(context["inputs"]),
                       event, group, environment)
        self.runs[run.id] = info
        if group and any(self._active(other) for other in self.runs.values()
                         if other.group == group and other.run_id != run.id):
            for other in self.runs.values():
                older = self.state._repos[other.repo].runs[other.run_id]
                if other.group == group and older.status == "pending":
                    older.status, older.conclusion = "completed", "cancelled"
            run.status = "pending"
            return
        self._admit(repo, run, info)

    def _active(self, info: RunInfo) -> bool:
        return self.state._repos[info.repo].runs[info.run_id].status in ACTIVE

    def _admit(self, repo: Repo, run: Run, info: RunInfo) -> None:
        env = repo.environments.get(info.environment or "")
        if env is not None and env.reviewers:
            info.pending = [env.name]
            run.status = "waiting"
        else:
            run.status = "queued"

    def take(self) -> RunInfo | None:
        """The oldest queued run, now in_progress; None when nothing is ready."""
        with self.state._lock:
            for info in sorted(self.runs.values(), key=lambda i: i.run_id):
                run = self.state._repos[info.repo].runs[info.run_id]
                if run.status == "queued":
                    run.status = "in_progress"
                    return info
            return None

    def finish(self, run_id: int, conclusion: str) -> None:
        """The executor's verdict; the next pending run of the group moves on."""
        with self.state._lock:
            info = self.runs[run_id]
            self._complete(info, conclusion)

    def _complete(self, info: RunInfo, conclusion: str) -> None:
        repo = self.state._repos[info.repo]
        run = repo.runs[info.run_id]
        run.status, run.conclusion = "completed", conclusion
        info.pending = []
        for other in sorted(self.runs.values(), key=lambda i: i.run_id):
            waiting = repo.runs.get(other.run_id)
            if other.group == info.group and waiting is not None and waiting.status == "pending":
                self._admit(repo, waiting, other)
                break

    def status(self, run_id: int) -> tuple[str, str | None]:
        with self.state._lock:
            info = self.runs[run_id]
            run = self.state._repos[info.repo].runs[run_id]
            return run.status, run.conclusion

    # -- reviews -------------------------------------------------------------------------

    def pending_deployments(self, repo: Repo, run: Run, login: str,
                            user: Callable[[str], Json],
                            environment: Callable[[Any], Json]) -> list[Json]:
        info = self.runs.get(run.id)
        rows = []
        for name in info.pending if info else []:
            env = repo.environments[name]
            keys = ("id", "node_id", "name", "url", "html_url")
            env_json = environment(env)
            rows.append({
                "environment": {k: env_json[k] for k in keys},
                "wait_timer": env.wait_timer,
                "wait_timer_started_at": None,
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
        from velvet_runner.sandbox.github import Approval

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
            info.pending.remove(env.name)
            out.append({"id": self.state._next_id(), "environment": env.name, "state": state,
                        "creator": login})
        if state == "rejected":
            self._complete(info, "failure")
        elif not info.pending:
            run.status = "queued"
        return out
