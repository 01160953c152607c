"""Fake GitHub REST API: Actions secrets (repo, environment, org), environments, workflow
dispatch, workflow runs and their approvals, and issues. Enough for PyGithub 2.x.

Paths served (vendor-apis.md section 5, github-actions.md section 2):

    GET    /user                                                        the token's user
    GET    /rate_limit
    GET    /repos/{owner}/{repo}
    GET    /repos/{owner}/{repo}/actions/secrets/public-key
    GET    /repos/{owner}/{repo}/actions/secrets
    GET | PUT | DELETE /repos/{owner}/{repo}/actions/secrets/{name}
    GET    /repos/{owner}/{repo}/environments
    GET    /repos/{owner}/{repo}/environments/{env}
    GET    /repos/{owner}/{repo}/environments/{env}/deployment-branch-policies
    GET    /repos/{owner}/{repo}/environments/{env}/secrets/public-key
    GET    /repos/{owner}/{repo}/environments/{env}/secrets
    GET | PUT | DELETE /repos/{owner}/{repo}/environments/{env}/secrets/{name}
    GET    /orgs/{org}
    GET    /orgs/{org}/actions/secrets/public-key
    GET    /orgs/{org}/actions/secrets
    GET | PUT | DELETE /orgs/{org}/actions/secrets/{name}
    GET    /repos/{owner}/{repo}/actions/workflows
    GET    /repos/{owner}/{repo}/actions/workflows/{id or file}
    POST   /repos/{owner}/{repo}/actions/workflows/{id or file}/dispatches
    GET    /repos/{owner}/{repo}/actions/runs/{run_id}
    GET    /repos/{owner}/{repo}/actions/runs/{run_id}/approvals
    GET    /repos/{owner}/{repo}/actions/runs
    GET | POST /repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments
                                            (with an ActionsPlane attached: actions_plane.py)
    POST   /repos/{owner}/{repo}/issues
    GET    /repos/{owner}/{repo}/issues/{number}

Secret scopes. Every secret store is named by a scope string, used by `State.secret_plaintext`,
`State.set_secret`, `State.public_key` and `State.rotate_key`:

    "repo:{owner}/{repo}"            repository Actions secrets
    "env:{owner}/{repo}:{env}"       one environment's secrets
    "org:{org}"                      organisation Actions secrets

Each scope has its own Curve25519 key pair with a stable numeric-string `key_id`. A `PUT` must
name the scope's current `key_id` and carry a sealed box that scope's private key opens;
otherwise 422, as GitHub answers. The fake keeps the decrypted plaintext so tests can check
exactly what was stored; the API itself never returns it.

Every request needs a `User-Agent` (else 403) and a token (`Bearer` or `token`; missing: 401
"Requires authentication", unknown: 401 "Bad credentials"). Every response carries the
`x-ratelimit-*` headers; `State.set_rate_limit` can exhaust the primary limit (403).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from velvet_runner.sandbox.actions_plane import ActionsPlane
from velvet_runner.sandbox.control import CONTROL_PREFIX, bearer_token, build_app, json_response
from velvet_runner.sandbox.ratelimit import github_limits, github_reject

Json = dict[str, Any]
Clock = Callable[[], float]

DOCS = "https://docs.github.com/rest"
RATE_LIMIT = 5000
RATE_WINDOW_SECONDS = 3600
MAX_SECRET_BYTES = 48 * 1024
MAX_DISPATCH_INPUTS = 25
_KEY_ID_BASE = 3_380_204_578_043_523_000
_BASE64 = re.compile(r"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VISIBILITIES = ("all", "private", "selected")
MSG_NO_USER_AGENT = (
    "Request forbidden by administrative rules. Please make sure your request has a "
    "User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api"
    "#user-agent-required). Check https://developer.github.com for other possible causes.\n"
)


class GitHubError(Exception):
    """An API error, rendered as `{"message", "documentation_url", "status"}`."""

    def __init__(
        self, status: int, message: str, errors: list[Json] | None = None, *, plain: bool = False
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.errors = errors
        self.plain = plain  # GitHub answers a missing User-Agent in text, not JSON


def error(status: int, message: str, errors: list[Json] | None = None) -> Response:
    """GitHub's error body; also used by the control layer for injected faults."""
    body: Json = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors:
        body["errors"] = errors
    response = json_response(body, status)
    if status == 429 or (status == 403 and "rate limit" in message.lower()):
        response.headers["retry-after"] = "60"
    return response


def _not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


def _invalid(detail: str) -> GitHubError:
    return GitHubError(422, f"Invalid request.\n\n{detail}")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- records ---------------------------------------------------------------------------------


@dataclass
class KeyPair:
    key_id: str
    private: PrivateKey

    @property
    def public_b64(self) -> str:
        return base64.b64encode(bytes(self.private.public_key)).decode("ascii")

    def snapshot(self) -> Json:
        return {
            "key_id": self.key_id,
            "private_key": base64.b64encode(bytes(self.private)).decode("ascii"),
        }


@dataclass
class Secret:
    name: str
    value: str
    created_at: float
    updated_at: float
    visibility: str | None = None  # org secrets only
    selected_repository_ids: list[int] = field(default_factory=list)

    def snapshot(self) -> Json:
        row: Json = {
            "name": self.name,
            "value": self.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.visibility is not None:
            row["visibility"] = self.visibility
            row["selected_repository_ids"] = list(self.selected_repository_ids)
        return row

    def api(self, scope_url: str) -> Json:
        """Metadata as GitHub shows it: never the value."""
        body: Json = {
            "name": self.name,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }
        if self.visibility is not None:
            body["visibility"] = self.visibility
            if self.visibility == "selected":
                body["selected_repositories_url"] = f"{scope_url}/secrets/{self.name}/repositories"
        return body


@dataclass
class SecretScope:
    """One secret store with its key pair: a repo, an environment or an org."""

    name: str
    key: KeyPair
    secrets: dict[str, Secret] = field(default_factory=dict)

    def snapshot(self) -> Json:
        return {
            "key": self.key.snapshot(),
            "secrets": [self.secrets[n].snapshot() for n in sorted(self.secrets)],
        }


@dataclass
class Environment:
    id: int
    name: str
    scope: SecretScope
    reviewers: list[str] | None = None
    prevent_self_review: bool = True
    wait_timer: int = 0
    branches: list[str] | None = None
    protected_branches: bool = False
    created_at: float = 0.0

    def snapshot(self) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "reviewers": None if self.reviewers is None else list(self.reviewers),
            "prevent_self_review": self.prevent_self_review,
            "wait_timer": self.wait_timer,
            "branches": None if self.branches is None else list(self.branches),
            "protected_branches": self.protected_branches,
            "created_at": self.created_at,
            **self.scope.snapshot(),
        }


@dataclass
class Workflow:
    id: int
    file: str
    name: str
    inputs: list[str]
    required: list[str] = field(default_factory=list)
    dispatchable: bool = True
    created_at: float = 0.0

    def snapshot(self) -> Json:
        return {
            "id": self.id,
            "file": self.file,
            "name": self.name,
            "inputs": list(self.inputs),
            "required": list(self.required),
            "dispatchable": self.dispatchable,
            "created_at": self.created_at,
        }


@dataclass
class Approval:
    environment: str
    login: str
    comment: str
    state: str = "approved"

    def snapshot(self) -> Json:
        return {
            "environment": self.environment,
            "login": self.login,
            "comment": self.comment,
            "state": self.state,
        }


@dataclass
class Run:
    id: int
    actor: str
    triggering_actor: str
    workflow: str | None = None
    status: str = "queued"
    conclusion: str | None = None
    run_attempt: int = 1
    head_branch: str = "main"
    event: str = "workflow_dispatch"
    created_at: float = 0.0
    approvals: list[Approval] = field(default_factory=list)

    def snapshot(self) -> Json:
        return {
            "id": self.id,
            "actor": self.actor,
            "triggering_actor": self.triggering_actor,
            "workflow": self.workflow,
            "status": self.status,
            "conclusion": self.conclusion,
            "run_attempt": self.run_attempt,
            "head_branch": self.head_branch,
            "event": self.event,
            "created_at": self.created_at,
            "approvals": [a.snapshot() for a in self.approvals],
        }


@dataclass
class Issue:
    number: int
    id: int
    title: str
    body: str | None
    labels: list[str]
    user: str
    created_at: float

    def snapshot(self) -> Json:
        return {
            "number": self.number,
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "labels": list(self.labels),
            "user": self.user,
            "created_at": self.created_at,
        }


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    scope: SecretScope
    private: bool = True
    default_branch: str = "main"
    branches: list[str] = field(default_factory=lambda: ["main"])
    created_at: float = 0.0
    environments: dict[str, Environment] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)  # by file name
    runs: dict[int, Run] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    dispatches: list[Json] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def snapshot(self) -> Json:
        return {
            "full_name": self.full_name,
            "id": self.id,
            "private": self.private,
            "default_branch": self.default_branch,
            "branches": list(self.branches),
            "created_at": self.created_at,
            **self.scope.snapshot(),
            "environments": [self.environments[n].snapshot() for n in sorted(self.environments)],
            "workflows": [self.workflows[f].snapshot() for f in sorted(self.workflows)],
            "runs": [self.runs[i].snapshot() for i in sorted(self.runs)],
            "issues": [i.snapshot() for i in self.issues],
            "dispatches": [dict(d) for d in self.dispatches],
        }


@dataclass
class Org:
    id: int
    name: str
    scope: SecretScope

    def snapshot(self) -> Json:
        return {"name": self.name, "id": self.id, **self.scope.snapshot()}


@dataclass
class _Token:
    login: str
    repos: set[str] | None = None  # None: every repository


# -- state -----------------------------------------------------------------------------------


class State:
    """The fake's whole memory. Every method takes the lock; call them from any thread.

    Public helpers (repo arguments are "owner/name"):

        add_token(token, login="velvet-bot", repos=None)
        add_repo(full_name, *, private=True, default_branch="main", branches=None) -> repo id
        add_org(name) -> org id
        add_environment(repo, name, reviewers=None, prevent_self_review=True, *,
                        wait_timer=0, branches=None, protected_branches=False) -> env id
        add_workflow(repo, file, inputs, *, required=(), dispatchable=True, name=None) -> id
        add_run(repo, actor, *, workflow=None, triggering_actor=None, status="waiting",
                run_attempt=1, head_branch=None) -> run id
        approve(repo, run_id, environment, login, comment="", *, state="approved")
        set_secret(scope, name, value)              store a plaintext as if PUT
        secret_plaintext(scope, name) -> str | None
        secret_names(scope) -> list[str]
        public_key(scope) -> (key_id, base64 public key)
        rotate_key(scope) -> new key_id             the old key_id is refused from then on
        dispatches(repo) -> list[dict]              {workflow, ref, inputs, actor, run_id, at}
        issues(repo) -> list[dict]                  {number, id, title, body, labels, user, ...}
        set_rate_limit(limit=5000, remaining=None)  remaining=0 exhausts the primary limit

    Scope strings: "repo:owner/name", "env:owner/name:envname", "org:name".
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.plane: ActionsPlane | None = None  # actions_plane.ActionsPlane attaches itself
        self._reset()

    def _reset(self) -> None:
        self._seq = 1000
        self._tokens: dict[str, _Token] = {}
        self._users: dict[str, int] = {}
        self._repos: dict[str, Repo] = {}
        self._orgs: dict[str, Org] = {}
        self._rate_limit = RATE_LIMIT
        self._rate_used = 0
        self._rate_reset = self.clock() + RATE_WINDOW_SECONDS

    def _next_id(self) -> int:
        self._seq += 1
        return self._seq

    def _new_key(self, seed: Json | None = None) -> KeyPair:
        if seed:
            raw = base64.b64decode(str(seed["private_key"]), validate=True)
            return KeyPair(str(seed["key_id"]), PrivateKey(raw))
        return KeyPair(str(_KEY_ID_BASE + self._next_id()), PrivateKey.generate())

    def _user_id(self, login: str) -> int:
        """The user's id, registering the user (a state change) on first sight."""
        if login not in self._users:
            self._users[login] = self._next_id()
        return self._users[login]

    def _peek_user_id(self, login: str) -> int:
        """The user's id without registering it: rendering a response must not change state."""
        known = self._users.get(login)
        return known if known is not None else 10_000_000 + zlib.crc32(login.encode())

    # -- snapshot / seed / reset -------------------------------------------------------------

    def snapshot(self) -> Json:
        """Everything, sorted; `seed(snapshot())` on a reset state reproduces it.

        Includes tokens, users, repos (with secrets and plaintexts, key pairs, environments,
        workflows, runs, approvals, issues, dispatches) and orgs. Rate-limit counters are left
        out: every request moves them, and the snapshot shows what a run changed.
        """
        with self._lock:
            return {
                "sequence": self._seq,
                "tokens": [
                    {
                        "token": t,
                        "login": info.login,
                        "repos": None if info.repos is None else sorted(info.repos),
                    }
                    for t, info in sorted(self._tokens.items())
                ],
                "users": dict(sorted(self._users.items())),
                "repos": [self._repos[n].snapshot() for n in sorted(self._repos)],
                "orgs": [self._orgs[n].snapshot() for n in sorted(self._orgs)],
            }

    def seed(self, data: Json) -> None:
        """Merge `data` (the snapshot's shape; ids, keys and timestamps optional).

        Raises KeyError, TypeError or ValueError on a malformed document.
        """
        unknown = set(data) - {"sequence", "tokens", "users", "repos", "orgs"}
        if unknown:
            raise ValueError(f"unknown seed keys: {sorted(unknown)}")
        with self._lock:
            self._seq = max(self._seq, int(data.get("sequence", 0)))
            for login, user_id in dict(data.get("users", {})).items():
                self._users[str(login)] = int(user_id)
            for row in data.get("tokens", []):
                repos = row.get("repos")
                self._tokens[str(row["token"])] = _Token(
                    str(row.get("login", "velvet-bot")),
                    None if repos is None else {str(r) for r in repos},
                )
                self._user_id(str(row.get("login", "velvet-bot")))
            for row in data.get("orgs", []):
                self._seed_org(row)
            for row in data.get("repos", []):
                self._seed_repo(row)

    def _seed_secrets(self, scope: SecretScope, rows: list[Json]) -> None:
        now = self.clock()
        for row in rows:
            name = str(row["name"]).upper()
            scope.secrets[name] = Secret(
                name=name,
                value=str(row["value"]),
                created_at=float(row.get("created_at", now)),
                updated_at=float(row.get("updated_at", now)),
                visibility=row.get("visibility"),
                selected_repository_ids=[int(i) for i in row.get("selected_repository_ids", [])],
            )

    def _seed_org(self, row: Json) -> None:
        name = str(row["name"])
        org = self._orgs.get(name)
        if org is None:
            scope = SecretScope(f"org:{name}", self._new_key(row.get("key")))
            org = Org(int(row.get("id") or self._next_id()), name, scope)
            self._orgs[name] = org
        self._seed_secrets(org.scope, row.get("secrets", []))

    def _seed_repo(self, row: Json) -> None:
        full_name = str(row["full_name"])
        owner, sep, name = full_name.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"repository must be owner/name, got {full_name!r}")
        repo = self._repos.get(full_name)
        now = self.clock()
        if repo is None:
            default_branch = str(row.get("default_branch", "main"))
            branches = [str(b) for b in row.get("branches") or [default_branch]]
            if default_branch not in branches:
                branches.insert(0, default_branch)
            repo = Repo(
                id=int(row.get("id") or self._next_id()),
                owner=owner,
                name=name,
                scope=SecretScope(f"repo:{full_name}", self._new_key(row.get("key"))),
                private=bool(row.get("private", True)),
                default_branch=default_branch,
                branches=branches,
                created_at=float(row.get("created_at", now)),
            )
            self._repos[full_name] = repo
            if owner not in self._orgs:
                self._user_id(owner)
        self._seed_secrets(repo.scope, row.get("secrets", []))
        for env in row.get("environments", []):
            self._seed_environment(repo, env)
        for wf in row.get("workflows", []):
            file = str(wf["file"])
            repo.workflows[file] = Workflow(
                id=int(wf.get("id") or self._next_id()),
                file=file,
                name=str(wf.get("name") or file),
                inputs=[str(i) for i in wf.get("inputs", [])],
                required=[str(i) for i in wf.get("required", [])],
                dispatchable=bool(wf.get("dispatchable", True)),
                created_at=float(wf.get("created_at", now)),
            )
        for run in row.get("runs", []):
            self._seed_run(repo, run)
        for issue in row.get("issues", []):
            repo.issues.append(
                Issue(
                    number=int(issue["number"]),
                    id=int(issue.get("id") or self._next_id()),
                    title=str(issue["title"]),
                    body=issue.get("body"),
                    labels=[str(label) for label in issue.get("labels", [])],
                    user=str(issue.get("user", "velvet-bot")),
                    created_at=float(issue.get("created_at", now)),
                )
            )
        repo.dispatches.extend(dict(d) for d in row.get("dispatches", []))

    def _seed_environment(self, repo: Repo, row: Json) -> Environment:
        name = str(row["name"])
        reviewers = row.get("reviewers")
        branches = row.get("branches")
        protected = bool(row.get("protected_branches", False))
        if branches is not None and protected:
            raise ValueError("an environment uses protected branches or custom branches, not both")
        env = repo.environments.get(name)
        if env is None:
            scope = SecretScope(f"env:{repo.full_name}:{name}", self._new_key(row.get("key")))
            env = Environment(
                id=int(row.get("id") or self._next_id()),
                name=name,
                scope=scope,
                created_at=float(row.get("created_at", self.clock())),
            )
            repo.environments[name] = env
        env.reviewers = None if reviewers is None else [str(r) for r in reviewers]
        env.prevent_self_review = bool(row.get("prevent_self_review", True))
        env.wait_timer = int(row.get("wait_timer", 0))
        env.branches = None if branches is None else [str(b) for b in branches]
        env.protected_branches = protected
        for login in env.reviewers or []:
            self._user_id(login)
        self._seed_secrets(env.scope, row.get("secrets", []))
        return env

    def _seed_run(self, repo: Repo, row: Json) -> Run:
        actor = str(row["actor"])
        run = Run(
            id=int(row.get("id") or self._next_id()),
            actor=actor,
            triggering_actor=str(row.get("triggering_actor") or actor),
            workflow=row.get("workflow"),
            status=str(row.get("status", "queued")),
            conclusion=row.get("conclusion"),
            run_attempt=int(row.get("run_attempt", 1)),
            head_branch=str(row.get("head_branch") or repo.default_branch),
            event=str(row.get("event", "workflow_dispatch")),
            created_at=float(row.get("created_at", self.clock())),
            approvals=[
                Approval(
                    str(a["environment"]),
                    str(a["login"]),
                    str(a.get("comment", "")),
                    str(a.get("state", "approved")),
                )
                for a in row.get("approvals", [])
            ],
        )
        for login in (run.actor, run.triggering_actor, *(a.login for a in run.approvals)):
            self._user_id(login)
        repo.runs[run.id] = run
        return run

    def reset(self) -> None:
        with self._lock:
            self._reset()

    # -- public helpers ----------------------------------------------------------------------

    def add_token(
        self, token: str, login: str = "velvet-bot", repos: list[str] | None = None
    ) -> None:
        """Accept `token` as `login`; `repos` limits which repositories it can see."""
        self.seed({"tokens": [{"token": token, "login": login, "repos": repos}]})

    def add_repo(
        self,
        full_name: str,
        *,
        private: bool = True,
        default_branch: str = "main",
        branches: list[str] | None = None,
    ) -> int:
        with self._lock:
            self._seed_repo(
                {
                    "full_name": full_name,
                    "private": private,
                    "default_branch": default_branch,
                    "branches": branches,
                }
            )
            return self._repos[full_name].id

    def add_org(self, name: str) -> int:
        with self._lock:
            self._seed_org({"name": name})
            return self._orgs[name].id

    def add_environment(
        self,
        repo: str,
        name: str,
        reviewers: list[str] | None = None,
        prevent_self_review: bool = True,
        *,
        wait_timer: int = 0,
        branches: list[str] | None = None,
        protected_branches: bool = False,
    ) -> int:
        """Create or reconfigure an environment. `reviewers=None` means no required-reviewers
        rule at all; `branches` sets a custom deployment branch policy with those patterns."""
        with self._lock:
            env = self._seed_environment(
                self._repos[repo],
                {
                    "name": name,
                    "reviewers": reviewers,
                    "prevent_self_review": prevent_self_review,
                    "wait_timer": wait_timer,
                    "branches": branches,
                    "protected_branches": protected_branches,
                },
            )
            return env.id

    def add_workflow(
        self,
        repo: str,
        file: str,
        inputs: list[str],
        *,
        required: list[str] | tuple[str, ...] = (),
        dispatchable: bool = True,
        name: str | None = None,
    ) -> int:
        with self._lock:
            target = self._repos[repo]
            self._seed_repo(
                {
                    "full_name": repo,
                    "workflows": [
                        {
                            "file": file,
                            "name": name or file,
                            "inputs": inputs,
                            "required": list(required),
                            "dispatchable": dispatchable,
                        }
                    ],
                }
            )
            return target.workflows[file].id

    def add_run(
        self,
        repo: str,
        actor: str,
        *,
        workflow: str | None = None,
        triggering_actor: str | None = None,
        status: str = "waiting",
        run_attempt: int = 1,
        head_branch: str | None = None,
    ) -> int:
        with self._lock:
            run = self._seed_run(
                self._repos[repo],
                {
                    "actor": actor,
                    "triggering_actor": triggering_actor,
                    "workflow": workflow,
                    "status": status,
                    "run_attempt": run_attempt,
                    "head_branch": head_branch,
                },
            )
            return run.id

    def approve(
        self,
        repo: str,
        run_id: int,
        environment: str,
        login: str,
        comment: str = "",
        *,
        state: str = "approved",
    ) -> None:
        """Record a review of `run_id` for `environment` (which must exist)."""
        with self._lock:
            target = self._repos[repo]
            if environment not in target.environments:
                raise KeyError(f"no environment {environment!r} in {repo}")
            target.runs[run_id].approvals.append(Approval(environment, login, comment, state))
            self._user_id(login)

    def _scope(self, scope: str) -> SecretScope:
        kind, _, rest = scope.partition(":")
        if kind == "repo" and rest in self._repos:
            return self._repos[rest].scope
        if kind == "org" and rest in self._orgs:
            return self._orgs[rest].scope
        if kind == "env":
            repo, _, env = rest.partition(":")
            if repo in self._repos and env in self._repos[repo].environments:
                return self._repos[repo].environments[env].scope
        raise KeyError(f"unknown secret scope {scope!r}")

    def set_secret(self, scope: str, name: str, value: str) -> None:
        with self._lock:
            target = self._scope(scope)
            existing = target.secrets.get(name.upper())
            if existing is not None:
                existing.value = value
                existing.updated_at = self.clock()
                return
            row: Json = {"name": name, "value": value}
            if scope.startswith("org:"):
                row["visibility"] = "all"
            self._seed_secrets(target, [row])

    def secret_plaintext(self, scope: str, name: str) -> str | None:
        """The decrypted value last stored under `name` in `scope`, or None."""
        with self._lock:
            secret = self._scope(scope).secrets.get(name.upper())
            return None if secret is None else secret.value

    def secret_names(self, scope: str) -> list[str]:
        with self._lock:
            return sorted(self._scope(scope).secrets)

    def public_key(self, scope: str) -> tuple[str, str]:
        with self._lock:
            key = self._scope(scope).key
            return key.key_id, key.public_b64

    def rotate_key(self, scope: str) -> str:
        with self._lock:
            target = self._scope(scope)
            target.key = self._new_key()
            return target.key.key_id

    def dispatches(self, repo: str) -> list[Json]:
        with self._lock:
            return [json.loads(json.dumps(d)) for d in self._repos[repo].dispatches]

    def issues(self, repo: str) -> list[Json]:
        with self._lock:
            return [i.snapshot() for i in self._repos[repo].issues]

    def set_rate_limit(self, limit: int = RATE_LIMIT, remaining: int | None = None) -> None:
        """Reset the primary rate-limit window; `remaining=0` makes every call a 403."""
        with self._lock:
            self._rate_limit = limit
            self._rate_used = limit - (limit if remaining is None else remaining)
            self._rate_reset = self.clock() + RATE_WINDOW_SECONDS

    # -- request gate ------------------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        with self._lock:
            if self.clock() >= self._rate_reset:
                self._rate_used = 0
                self._rate_reset = self.clock() + RATE_WINDOW_SECONDS
            return {
                "x-ratelimit-limit": str(self._rate_limit),
                "x-ratelimit-remaining": str(max(self._rate_limit - self._rate_used, 0)),
                "x-ratelimit-used": str(self._rate_used),
                "x-ratelimit-reset": str(int(self._rate_reset)),
                "x-ratelimit-resource": "core",
            }

    def _gate(self, headers: Headers) -> _Token:
        """User-Agent, token and primary rate limit, in GitHub's order; counts the request."""
        if not headers.get("user-agent", "").strip():
            raise GitHubError(403, MSG_NO_USER_AGENT, plain=True)
        token = bearer_token(headers.get("authorization"), ("bearer", "token"))
        if token is None:
            raise GitHubError(401, "Requires authentication")
        with self._lock:
            info = self._tokens.get(token)
            if info is None:
                raise GitHubError(401, "Bad credentials")
            self._rate_headers()
            if self._rate_used >= self._rate_limit:
                raise GitHubError(
                    403,
                    f"API rate limit exceeded for user ID {self._peek_user_id(info.login)}. "
                    "If you reach out to GitHub Support for help, please include the request ID.",
                )
            self._rate_used += 1
            return info

    def _repo(self, token: _Token, owner: str, name: str) -> Repo:
        full_name = f"{owner}/{name}"
        repo = self._repos.get(full_name)
        if repo is None or (token.repos is not None and full_name not in token.repos):
            raise _not_found()  # GitHub hides what the token may not see
        return repo

    def _org(self, name: str) -> Org:
        org = self._orgs.get(name)
        if org is None:
            raise _not_found()
        return org


# -- JSON views ------------------------------------------------------------------------------


class _Views:
    """Renders records as GitHub JSON, with URLs on the fake's own origin (PyGithub needs
    `url` fields on the host and port it was given)."""

    def __init__(self, state: State, base: str) -> None:
        self.state = state
        self.base = base.rstrip("/")

    def user(self, login: str) -> Json:
        kind = "Organization" if login in self.state._orgs else "User"
        if kind == "Organization":
            uid = self.state._orgs[login].id
        else:
            uid = self.state._peek_user_id(login)
        return {
            "login": login,
            "id": uid,
            "node_id": f"U_{uid}",
            "type": kind,
            "site_admin": False,
            "avatar_url": "",
            "url": f"{self.base}/{'orgs' if kind == 'Organization' else 'users'}/{login}",
            "html_url": f"{self.base}/{login}",
        }

    def repo(self, repo: Repo) -> Json:
        url = f"{self.base}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "owner": self.user(repo.owner),
            "html_url": f"{self.base}/{repo.full_name}",
            "url": url,
            "description": None,
            "fork": False,
            "archived": False,
            "disabled": False,
            "has_issues": True,
            "default_branch": repo.default_branch,
            "created_at": _iso(repo.created_at),
            "updated_at": _iso(repo.created_at),
            "pushed_at": _iso(repo.created_at),
            "permissions": {
                "admin": True,
                "maintain": True,
                "push": True,
                "triage": True,
                "pull": True,
            },
            "issues_url": f"{url}/issues{{/number}}",
        }

    def public_key(self, key: KeyPair) -> Json:
        return {"key_id": key.key_id, "key": key.public_b64}

    def environment(self, repo: Repo, env: Environment) -> Json:
        rules: list[Json] = []
        if env.reviewers is not None:
            rules.append(
                {
                    "id": env.id * 10 + 1,
                    "node_id": f"GA_{env.id}_1",
                    "type": "required_reviewers",
                    "prevent_self_review": env.prevent_self_review,
                    "reviewers": [
                        {"type": "User", "reviewer": self.user(login)} for login in env.reviewers
                    ],
                }
            )
        if env.wait_timer:
            rules.append(
                {
                    "id": env.id * 10 + 2,
                    "node_id": f"GA_{env.id}_2",
                    "type": "wait_timer",
                    "wait_timer": env.wait_timer,
                }
            )
        policy: Json | None = None
        if env.branches is not None or env.protected_branches:
            policy = {
                "protected_branches": env.protected_branches,
                "custom_branch_policies": env.branches is not None,
            }
            rules.append(
                {"id": env.id * 10 + 3, "node_id": f"GA_{env.id}_3", "type": "branch_policy"}
            )
        return {
            "id": env.id,
            "node_id": f"EN_{env.id}",
            "name": env.name,
            "url": f"{self.base}/repos/{repo.full_name}/environments/{quote(env.name, safe='')}",
            "html_url": f"{self.base}/{repo.full_name}/deployments/activity_log"
            f"?environments_filter={quote(env.name, safe='')}",
            "created_at": _iso(env.created_at),
            "updated_at": _iso(env.created_at),
            "can_admins_bypass": True,
            "protection_rules": rules,
            "deployment_branch_policy": policy,
        }

    def workflow(self, repo: Repo, wf: Workflow) -> Json:
        return {
            "id": wf.id,
            "node_id": f"W_{wf.id}",
            "name": wf.name,
            "path": f".github/workflows/{wf.file}",
            "state": "active",
            "created_at": _iso(wf.created_at),
            "updated_at": _iso(wf.created_at),
            "url": f"{self.base}/repos/{repo.full_name}/actions/workflows/{wf.id}",
            "html_url": f"{self.base}/{repo.full_name}/blob/{repo.default_branch}"
            f"/.github/workflows/{wf.file}",
            "badge_url": f"{self.base}/{repo.full_name}/workflows/{wf.file}/badge.svg",
        }

    def run(self, repo: Repo, run: Run) -> Json:
        url = f"{self.base}/repos/{repo.full_name}/actions/runs/{run.id}"
        wf = repo.workflows.get(run.workflow or "")
        return {
            "id": run.id,
            "name": wf.name if wf else run.workflow,
            "node_id": f"WFR_{run.id}",
            "head_branch": run.head_branch,
            "head_sha": f"{run.id:040x}",
            "path": f".github/workflows/{run.workflow}" if run.workflow else "",
            "display_title": wf.name if wf else "",
            "run_number": run.id,
            "run_attempt": run.run_attempt,
            "event": run.event,
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": wf.id if wf else None,
            "url": url,
            "html_url": f"{self.base}/{repo.full_name}/actions/runs/{run.id}",
            "jobs_url": f"{url}/jobs",
            "logs_url": f"{url}/logs",
            "cancel_url": f"{url}/cancel",
            "rerun_url": f"{url}/rerun",
            "workflow_url": (
                f"{self.base}/repos/{repo.full_name}/actions/workflows/{wf.id}" if wf else None
            ),
            "pull_requests": [],
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.created_at),
            "run_started_at": _iso(run.created_at),
            "actor": self.user(run.actor),
            "triggering_actor": self.user(run.triggering_actor),
            "repository": {
                "id": repo.id,
                "name": repo.name,
                "full_name": repo.full_name,
                "url": f"{self.base}/repos/{repo.full_name}",
            },
        }

    def approval(self, repo: Repo, approval: Approval) -> Json:
        env = repo.environments[approval.environment]
        env_json = self.environment(repo, env)
        keys = ("id", "node_id", "name", "url", "html_url", "created_at", "updated_at")
        return {
            "environments": [{key: env_json[key] for key in keys}],
            "state": approval.state,
            "user": self.user(approval.login),
            "comment": approval.comment,
        }

    def issue(self, repo: Repo, issue: Issue) -> Json:
        url = f"{self.base}/repos/{repo.full_name}/issues/{issue.number}"
        return {
            "id": issue.id,
            "node_id": f"I_{issue.id}",
            "number": issue.number,
            "title": issue.title,
            "body": issue.body,
            "state": "open",
            "locked": False,
            "labels": [{"name": label} for label in issue.labels],
            "assignees": [],
            "comments": 0,
            "user": self.user(issue.user),
            "url": url,
            "html_url": f"{self.base}/{repo.full_name}/issues/{issue.number}",
            "repository_url": f"{self.base}/repos/{repo.full_name}",
            "comments_url": f"{url}/comments",
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.created_at),
        }


# -- HTTP layer ------------------------------------------------------------------------------

Endpoint = Callable[[Request, _Token, _Views], Awaitable[Response]]


async def _body(request: Request) -> Json:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise GitHubError(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise GitHubError(400, "Body should be a JSON object")
    return data


def _no_content() -> Response:
    return Response(status_code=204)


def _decrypt(key: KeyPair, body: Json) -> str:
    """The plaintext of a PUT body, checked the way GitHub checks it."""
    key_id = body.get("key_id")
    value = body.get("encrypted_value")
    if key_id is None:
        raise _invalid('"key_id" wasn\'t supplied.')
    if value is None:
        raise _invalid('"encrypted_value" wasn\'t supplied.')
    if not isinstance(value, str) or not _BASE64.fullmatch(value):
        raise _invalid(f"encrypted_value does not match {_BASE64.pattern!r}.")
    if str(key_id) != key.key_id:
        raise GitHubError(422, "Bad request - key_id is not the current public key.")
    try:
        plaintext = SealedBox(key.private).decrypt(base64.b64decode(value))
        text = plaintext.decode("utf-8")
    except (CryptoError, binascii.Error, UnicodeDecodeError):
        raise GitHubError(
            422, "Bad request - could not decrypt encrypted_value with the key for key_id."
        ) from None
    if len(plaintext) > MAX_SECRET_BYTES:
        raise _invalid("Secret value is too large; the maximum size is 48 KB.")
    return text


def _secret_name(raw: str) -> str:
    if not _SECRET_NAME.fullmatch(raw) or raw.upper().startswith("GITHUB_"):
        raise _invalid(
            "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or "
            "underscores (_), must not start with a number or GITHUB_."
        )
    return raw.upper()


class _RateLimitHeaders:
    """Adds the `x-ratelimit-*` headers to every vendor response, faults and 404s included."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.state._rate_headers().items():
                    if name not in headers:
                        headers[name] = value
                headers.setdefault("x-github-api-version-selected", "2022-11-28")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(state: State) -> Starlette:
    """The GitHub fake as a Starlette app with the shared `/__velvet/` control API."""

    def endpoint(handler: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                token = state._gate(request.headers)
                return await handler(request, token, _Views(state, str(request.base_url)))
            except GitHubError as exc:
                if exc.plain:
                    return PlainTextResponse(exc.message, status_code=403)
                return error(exc.status, exc.message, exc.errors)

        return wrapper

    def repo_of(request: Request, token: _Token) -> Repo:
        params = request.path_params
        return state._repo(token, params["owner"], params["repo"])

    def scope_of(request: Request, token: _Token) -> tuple[SecretScope, str]:
        """The secret scope a path names, and that scope's API URL prefix."""
        params = request.path_params
        base = str(request.base_url).rstrip("/")
        if "org" in params:
            return state._org(params["org"]).scope, f"{base}/orgs/{params['org']}/actions"
        repo = repo_of(request, token)
        if "env" in params:
            env = repo.environments.get(params["env"])
            if env is None:
                raise _not_found()
            return env.scope, f"{base}/repos/{repo.full_name}/environments/{params['env']}"
        return repo.scope, f"{base}/repos/{repo.full_name}/actions"

    async def get_user(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            return json_response(views.user(token.login))

    async def get_rate_limit(request: Request, token: _Token, views: _Views) -> Response:
        headers = state._rate_headers()
        core = {
            "limit": int(headers["x-ratelimit-limit"]),
            "remaining": int(headers["x-ratelimit-remaining"]),
            "used": int(headers["x-ratelimit-used"]),
            "reset": int(headers["x-ratelimit-reset"]),
        }
        return json_response({"resources": {"core": core}, "rate": core})

    async def get_repo(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            return json_response(views.repo(repo_of(request, token)))

    async def get_org(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            org = state._org(request.path_params["org"])
            return json_response(
                {
                    "login": org.name,
                    "id": org.id,
                    "node_id": f"O_{org.id}",
                    "url": f"{views.base}/orgs/{org.name}",
                    "html_url": f"{views.base}/{org.name}",
                    "type": "Organization",
                }
            )

    async def get_public_key(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            scope, _ = scope_of(request, token)
            return json_response(views.public_key(scope.key))

    async def list_secrets(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            scope, url = scope_of(request, token)
            rows = [scope.secrets[n].api(url) for n in sorted(scope.secrets)]
            return json_response({"total_count": len(rows), "secrets": rows})

    async def one_secret(request: Request, token: _Token, views: _Views) -> Response:
        body = await _body(request) if request.method == "PUT" else {}
        with state._lock:
            scope, url = scope_of(request, token)
            raw_name = request.path_params["name"]
            if request.method == "GET":
                found = scope.secrets.get(raw_name.upper())
                if found is None:
                    raise _not_found()
                return json_response(found.api(url))
            if request.method == "DELETE":
                if scope.secrets.pop(raw_name.upper(), None) is None:
                    raise _not_found()
                return _no_content()
            name = _secret_name(raw_name)
            visibility: str | None = None
            selected: list[int] = []
            if scope.name.startswith("org:"):
                visibility = body.get("visibility")
                if visibility is None:
                    raise _invalid('"visibility" wasn\'t supplied.')
                if visibility not in _VISIBILITIES:
                    raise _invalid(f"visibility is not included in the list {_VISIBILITIES}.")
                ids = body.get("selected_repository_ids", [])
                if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                    raise _invalid("selected_repository_ids is not an array of integers.")
                selected = list(ids) if visibility == "selected" else []
            plaintext = _decrypt(scope.key, body)
            now = state.clock()
            existing = scope.secrets.get(name)
            if existing is not None:
                existing.value = plaintext
                existing.updated_at = now
                existing.visibility = visibility
                existing.selected_repository_ids = selected
                return _no_content()
            scope.secrets[name] = Secret(name, plaintext, now, now, visibility, selected)
            return json_response({}, 201)

    async def list_environments(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            envs = [
                views.environment(repo, repo.environments[n]) for n in sorted(repo.environments)
            ]
            return json_response({"total_count": len(envs), "environments": envs})

    async def get_environment(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            env = repo.environments.get(request.path_params["env"])
            if env is None:
                raise _not_found()
            return json_response(views.environment(repo, env))

    async def branch_policies(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            env = repo.environments.get(request.path_params["env"])
            if env is None:
                raise _not_found()
            if env.branches is None:
                raise _not_found()
            policies = [
                {"id": env.id * 100 + i, "node_id": f"RE_{env.id}_{i}", "name": p, "type": "branch"}
                for i, p in enumerate(env.branches, start=1)
            ]
            return json_response({"total_count": len(policies), "branch_policies": policies})

    def find_workflow(repo: Repo, ident: str) -> Workflow:
        for wf in repo.workflows.values():
            if ident in (wf.file, str(wf.id)):
                return wf
        raise _not_found()

    async def list_workflows(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            rows = [views.workflow(repo, repo.workflows[f]) for f in sorted(repo.workflows)]
            return json_response({"total_count": len(rows), "workflows": rows})

    async def get_workflow(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            return json_response(
                views.workflow(repo, find_workflow(repo, request.path_params["workflow"]))
            )

    async def dispatch(request: Request, token: _Token, views: _Views) -> Response:
        body = await _body(request)
        with state._lock:
            repo = repo_of(request, token)
            wf = find_workflow(repo, request.path_params["workflow"])
            ref = body.get("ref")
            if not isinstance(ref, str) or not ref:
                raise _invalid('"ref" wasn\'t supplied.')
            if not wf.dispatchable:
                raise GitHubError(422, "Workflow does not have 'workflow_dispatch' trigger")
            branch = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
            if branch not in repo.branches:
                raise GitHubError(422, f"No ref found for: {ref}")
            inputs = body.get("inputs", {})
            if inputs is None:
                inputs = {}
            if not isinstance(inputs, dict):
                raise _invalid("For 'properties/inputs', is not an object.")
            if len(inputs) > MAX_DISPATCH_INPUTS:
                raise GitHubError(
                    422, "you may only define up to 25 `inputs` for a `workflow_dispatch` event"
                )
            unexpected = sorted(set(inputs) - set(wf.inputs))
            if unexpected:
                raise GitHubError(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
            missing = [name for name in wf.required if name not in inputs]
            if missing:
                raise GitHubError(422, f"Required input '{missing[0]}' not provided")
            details = body.get("return_run_details", False)
            if not isinstance(details, bool):
                raise _invalid("For 'properties/return_run_details', is not a boolean.")
            now = state.clock()
            run = state._seed_run(
                repo,
                {
                    "actor": token.login,
                    "workflow": wf.file,
                    "status": "queued",
                    "head_branch": branch,
                    "created_at": now,
                },
            )
            repo.dispatches.append(
                {
                    "workflow": wf.file,
                    "ref": ref,
                    "inputs": json.loads(json.dumps(inputs)),
                    "actor": token.login,
                    "run_id": run.id,
                    "at": now,
                }
            )
            if state.plane is not None:
                state.plane.dispatched(repo, run, inputs)
            if not details:
                return _no_content()
            run_json = views.run(repo, run)
            return json_response(
                {
                    "workflow_run_id": run.id,
                    "run_url": run_json["url"],
                    "html_url": run_json["html_url"],
                }
            )

    def find_run(repo: Repo, raw: str) -> Run:
        run = repo.runs.get(int(raw)) if raw.isdigit() else None
        if run is None:
            raise _not_found()
        return run

    async def get_run(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            return json_response(views.run(repo, find_run(repo, request.path_params["run_id"])))

    async def get_approvals(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            run = find_run(repo, request.path_params["run_id"])
            return json_response([views.approval(repo, a) for a in run.approvals])

    async def list_runs(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            rows = [views.run(repo, repo.runs[i]) for i in sorted(repo.runs, reverse=True)]
            return json_response({"total_count": len(rows), "workflow_runs": rows})

    async def pending_deployments(request: Request, token: _Token, views: _Views) -> Response:
        body = await _body(request) if request.method == "POST" else {}
        with state._lock:
            repo = repo_of(request, token)
            run = find_run(repo, request.path_params["run_id"])
            if state.plane is None:
                return json_response([])
            if request.method == "GET":
                return json_response(state.plane.pending_deployments(
                    repo, run, token.login, views.user, lambda e: views.environment(repo, e)))
            try:
                return json_response(state.plane.review(repo, run, token.login, body))
            except ValueError as exc:
                raise _invalid(str(exc)) from None

    async def create_issue(request: Request, token: _Token, views: _Views) -> Response:
        body = await _body(request)
        with state._lock:
            repo = repo_of(request, token)
            title = body.get("title")
            if title is None or title == "":
                raise GitHubError(
                    422,
                    'Invalid request.\n\n"title" wasn\'t supplied.',
                    [{"resource": "Issue", "field": "title", "code": "missing_field"}],
                )
            if not isinstance(title, str | int):
                raise _invalid("For 'properties/title', is not a string or integer.")
            labels = body.get("labels", [])
            if not isinstance(labels, list):
                raise _invalid("For 'properties/labels', is not an array.")
            issue = Issue(
                number=len(repo.issues) + 1,
                id=state._next_id(),
                title=str(title),
                body=body.get("body") if isinstance(body.get("body"), str) else None,
                labels=[str(x["name"] if isinstance(x, dict) else x) for x in labels],
                user=token.login,
                created_at=state.clock(),
            )
            repo.issues.append(issue)
            return json_response(views.issue(repo, issue), 201)

    async def get_issue(request: Request, token: _Token, views: _Views) -> Response:
        with state._lock:
            repo = repo_of(request, token)
            raw = request.path_params["number"]
            for issue in repo.issues:
                if str(issue.number) == raw:
                    return json_response(views.issue(repo, issue))
            raise _not_found()

    r = "/repos/{owner}/{repo}"
    env = f"{r}/environments/{{env}}"
    org = "/orgs/{org}"
    wf = f"{r}/actions/workflows/{{workflow}}"
    run = f"{r}/actions/runs/{{run_id}}"
    table: list[tuple[str, Endpoint, list[str]]] = [
        ("/user", get_user, ["GET"]),
        ("/rate_limit", get_rate_limit, ["GET"]),
        (r, get_repo, ["GET"]),
        (f"{r}/actions/secrets/public-key", get_public_key, ["GET"]),
        (f"{r}/actions/secrets", list_secrets, ["GET"]),
        (f"{r}/actions/secrets/{{name}}", one_secret, ["GET", "PUT", "DELETE"]),
        (f"{r}/environments", list_environments, ["GET"]),
        (env, get_environment, ["GET"]),
        (f"{env}/deployment-branch-policies", branch_policies, ["GET"]),
        (f"{env}/secrets/public-key", get_public_key, ["GET"]),
        (f"{env}/secrets", list_secrets, ["GET"]),
        (f"{env}/secrets/{{name}}", one_secret, ["GET", "PUT", "DELETE"]),
        (org, get_org, ["GET"]),
        (f"{org}/actions/secrets/public-key", get_public_key, ["GET"]),
        (f"{org}/actions/secrets", list_secrets, ["GET"]),
        (f"{org}/actions/secrets/{{name}}", one_secret, ["GET", "PUT", "DELETE"]),
        (f"{r}/actions/workflows", list_workflows, ["GET"]),
        (wf, get_workflow, ["GET"]),
        (f"{wf}/dispatches", dispatch, ["POST"]),
        (run, get_run, ["GET"]),
        (f"{run}/approvals", get_approvals, ["GET"]),
        (f"{r}/actions/runs", list_runs, ["GET"]),
        (f"{run}/pending_deployments", pending_deployments, ["GET", "POST"]),
        (f"{r}/issues", create_issue, ["POST"]),
        (f"{r}/issues/{{number}}", get_issue, ["GET"]),
    ]
    routes: list[BaseRoute] = [
        Route(path, endpoint(handler), methods=methods) for path, handler, methods in table
    ]
    app = build_app(
        "github",
        routes,
        error=error,
        state=state,
        # Secondary limits (100 concurrent, points per endpoint, content-generating requests):
        # sandbox/ratelimit.py, settable and reported at /__velvet/limits.
        limiter=github_limits(),
        reject=github_reject(),
    )
    app.add_middleware(_RateLimitHeaders, state=state)
    return app
