"""The fake's records: key pairs, secrets and their scopes, repos, environments, workflows, runs,
approvals, issues, orgs and tokens. Plain data with a `snapshot()` each; no locking, no HTTP."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from nacl.public import PrivateKey

from velvet_runner.sandbox.control import shown
from velvet_runner.sandbox.github.common import Json, _iso


@dataclass
class KeyPair:
    key_id: str
    private: PrivateKey

    @property
    def public_b64(self) -> str:
        return base64.b64encode(bytes(self.private.public_key)).decode("ascii")

    def snapshot(self, reveal: bool = False) -> Json:
        private = base64.b64encode(bytes(self.private)).decode("ascii")
        return {"key_id": self.key_id, "private_key": shown(private, reveal)}


@dataclass
class Secret:
    name: str
    value: str
    created_at: float
    updated_at: float
    visibility: str | None = None  # org secrets only
    selected_repository_ids: list[int] = field(default_factory=list)

    def snapshot(self, reveal: bool = False) -> Json:
        row: Json = {
            "name": self.name,
            "value": shown(self.value, reveal),
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

    def snapshot(self, reveal: bool = False) -> Json:
        return {
            "key": self.key.snapshot(reveal),
            "secrets": [self.secrets[n].snapshot(reveal) for n in sorted(self.secrets)],
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

    def snapshot(self, reveal: bool = False) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "reviewers": None if self.reviewers is None else list(self.reviewers),
            "prevent_self_review": self.prevent_self_review,
            "wait_timer": self.wait_timer,
            "branches": None if self.branches is None else list(self.branches),
            "protected_branches": self.protected_branches,
            "created_at": self.created_at,
            **self.scope.snapshot(reveal),
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

    def snapshot(self, reveal: bool = False) -> Json:
        return {
            "full_name": self.full_name,
            "id": self.id,
            "private": self.private,
            "default_branch": self.default_branch,
            "branches": list(self.branches),
            "created_at": self.created_at,
            **self.scope.snapshot(reveal),
            "environments": [
                self.environments[n].snapshot(reveal) for n in sorted(self.environments)
            ],
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

    def snapshot(self, reveal: bool = False) -> Json:
        return {"name": self.name, "id": self.id, **self.scope.snapshot(reveal)}


@dataclass
class _Token:
    login: str
    repos: set[str] | None = None  # None: every repository
