"""The fake's records as pydantic models: key pairs, secrets and their scopes, variables, repos
(with collaborators, rulesets, branch protections and git data), environments and their branch
policies, workflows, runs, approvals, issues, orgs, App installations, tokens, and the
`Snapshot` of them all.

One model serves memory, `GET /__velvet/state` and `POST /__velvet/seed` (as in slack.py):
`Snapshot.model_dump(mode="json", context={"reveal": ...})` is the snapshot, secret fields
(`control.Secret`: tokens, secret values, private keys) shown as fingerprints unless revealed;
`Snapshot.model_validate(data, context=Seeding(...))` reads a seed, naming the field of any
error. What a seed may leave out (ids, key pairs, timestamps) is filled in from the `Seeding`
context while validating. Collections keyed in memory (secrets by name, environments by name,
workflows by file, runs by id) are lists in the document, sorted. No locking, no HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nacl.public import PrivateKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)

from velvet_sandbox.control import Secret as Hidden
from velvet_sandbox.control import StateModel
from velvet_sandbox.github.common import Json, _iso


@dataclass(frozen=True)
class Seeding:
    """The validation context of a seed: what fills in the fields a document left out."""

    now: float
    next_id: Callable[[], int]
    new_key: Callable[[], KeyPair]


def _seeding(info: ValidationInfo) -> Seeding:
    if not isinstance(info.context, Seeding):
        raise ValueError("required (no seeding context to fill it in)")
    return info.context


def _filled_id(value: Any, info: ValidationInfo) -> Any:
    """An id the document left out (or gave as 0): the state's next."""
    return value or _seeding(info).next_id()


def _filled_time(value: Any, info: ValidationInfo) -> Any:
    return _seeding(info).now if value is None else value


def _rekeyed(rows: Any, handler: ValidatorFunctionWrapHandler, attr: str) -> Any:
    """A document's list of rows as the mapping memory keeps, by each row's `attr` (later rows
    win). Validated as a mapping by position first, so an error names `<field>.<index>`."""
    if not isinstance(rows, list):
        return handler(rows)
    validated = handler({str(i): row for i, row in enumerate(rows)})
    return {getattr(model, attr): model for model in validated.values()}


class _Model(StateModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)


class KeyPair(_Model):
    key_id: str
    private_key: Hidden  # base64 of the 32-byte Curve25519 private key

    @field_validator("private_key")
    @classmethod
    def _curve25519(cls, value: str) -> str:
        try:
            if len(base64.b64decode(value, validate=True)) != 32:
                raise ValueError("not 32 bytes")
        except (binascii.Error, ValueError):
            raise ValueError("must be the base64 of a 32-byte private key") from None
        return value

    @classmethod
    def generate(cls, key_id: str) -> KeyPair:
        raw = bytes(PrivateKey.generate())
        return cls(key_id=key_id, private_key=base64.b64encode(raw).decode("ascii"))

    @property
    def private(self) -> PrivateKey:
        return PrivateKey(base64.b64decode(self.private_key))

    @property
    def public_b64(self) -> str:
        return base64.b64encode(bytes(self.private.public_key)).decode("ascii")


class Secret(_Model):
    name: str
    value: Hidden
    created_at: float = Field(default=None, validate_default=True)
    updated_at: float = Field(default=None, validate_default=True)
    visibility: str | None = None  # org secrets only
    selected_repository_ids: list[int] = []

    _times = field_validator("created_at", "updated_at", mode="before")(_filled_time)

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()  # GitHub stores secret names in upper case

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


class SecretScope(_Model):
    """One secret store with its key pair: a repo, an environment or an org (each is one)."""

    key: KeyPair = Field(default=None, validate_default=True)
    secrets: dict[str, Secret] = {}

    @field_validator("key", mode="before")
    @classmethod
    def _new_key(cls, value: Any, info: ValidationInfo) -> Any:
        return _seeding(info).new_key() if value is None else value

    @field_validator("secrets", mode="wrap")
    @classmethod
    def _by_name(cls, rows: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _rekeyed(rows, handler, "name")

    @field_serializer("secrets")
    def _sorted_secrets(self, secrets: dict[str, Secret]) -> list[Secret]:
        return [secrets[n] for n in sorted(secrets)]

    @property
    def scope(self) -> SecretScope:
        return self


class _Record(_Model):
    """An id and a creation time, each the state's next / now when a seed leaves it out."""

    id: int = Field(default=0, validate_default=True)
    created_at: float = Field(default=None, validate_default=True)

    _id = field_validator("id", mode="before")(_filled_id)
    _time = field_validator("created_at", mode="before")(_filled_time)


class Variable(_Model):
    """An Actions variable (repository or environment): its value is readable by design."""

    name: str
    value: str
    created_at: float = Field(default=None, validate_default=True)
    updated_at: float = Field(default=None, validate_default=True)

    _times = field_validator("created_at", "updated_at", mode="before")(_filled_time)

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()  # GitHub stores variable names in upper case

    def api(self) -> Json:
        return {"name": self.name, "value": self.value, "created_at": _iso(self.created_at),
                "updated_at": _iso(self.updated_at)}


class Variables(_Model):
    """What holds Actions variables (a repository, an environment), keyed by name."""

    variables: dict[str, Variable] = {}

    @field_validator("variables", mode="wrap")
    @classmethod
    def _variables_by_name(cls, rows: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _rekeyed(rows, handler, "name")

    @field_serializer("variables")
    def _sorted_variables(self, rows: dict[str, Variable]) -> list[Variable]:
        return [rows[n] for n in sorted(rows)]


class BranchPolicy(_Model):
    """One deployment branch (or tag) policy of an environment: a name pattern."""

    id: int = Field(default=0, validate_default=True)
    name: str
    type: str = "branch"

    _id = field_validator("id", mode="before")(_filled_id)


class Environment(Variables, SecretScope, _Record):
    name: str
    reviewers: list[str] | None = None  # None: no required-reviewers rule at all
    prevent_self_review: bool = True
    wait_timer: int = 0  # minutes
    can_admins_bypass: bool = True  # GitHub's default: admins may bypass the rules
    policies: list[BranchPolicy] | None = None  # None: no custom branch policy
    protected_branches: bool = False

    @model_validator(mode="before")
    @classmethod
    def _branches(cls, data: Any) -> Any:
        """`branches: [pattern, ...]` (a seed's or add_environment's shorthand) is a custom
        policy of those branch patterns."""
        if isinstance(data, dict) and "branches" in data:
            data = dict(data)
            names = data.pop("branches")
            if "policies" not in data:
                data["policies"] = None if names is None else [
                    {"name": name, "type": "branch"} for name in names]
        return data

    @model_validator(mode="after")
    def _one_branch_policy(self) -> Environment:
        if self.policies is not None and self.protected_branches:
            raise ValueError("an environment uses protected branches or custom branches, not both")
        return self

    @property
    def branches(self) -> list[str] | None:
        """The branch name patterns of a custom policy (None: no custom policy)."""
        if self.policies is None:
            return None
        return [p.name for p in self.policies if p.type == "branch"]


class Workflow(_Record):
    file: str
    name: str = ""  # "": the file name
    inputs: list[str] = []
    required: list[str] = []
    dispatchable: bool = True
    # input -> {"type": string|boolean|choice|number|environment, "options": [...]}; an input
    # not named here is a string
    types: dict[str, Json] = {}

    @model_validator(mode="after")
    def _default_name(self) -> Workflow:
        self.name = self.name or self.file
        return self


class Approval(_Model):
    environment: str
    login: str
    comment: str = ""
    state: str = "approved"

    def __init__(self, environment: str, login: str, comment: str = "",
                 state: str = "approved") -> None:
        # Positional, as actions_plane.py builds one; a seed goes through model_validate.
        BaseModel.__init__(self, environment=environment, login=login, comment=comment,
                           state=state)


class Run(_Record):
    actor: str
    triggering_actor: str = ""  # "": the actor
    workflow: str | None = None
    status: str = "queued"
    conclusion: str | None = None
    run_attempt: int = 1
    head_branch: str = ""  # "": the repository's default branch (filled in by the state)
    event: str = "workflow_dispatch"
    approvals: list[Approval] = []

    @model_validator(mode="after")
    def _default_trigger(self) -> Run:
        self.triggering_actor = self.triggering_actor or self.actor
        return self


class Issue(_Record):
    number: int
    title: str
    body: str | None = None
    labels: list[str] = []
    user: str = "velvet-bot"


class GitCommit(_Model):
    """A commit of the fake's git data: its tree flattened to path -> blob sha."""

    sha: str
    tree: str
    parents: list[str] = []
    message: str = ""
    at: float = 0.0


class Ruleset(_Record):
    """A repository ruleset, as `POST .../rulesets` takes it (GitHub's names)."""

    name: str
    target: str = "branch"
    enforcement: str = "active"
    conditions: Json = {}
    rules: list[Json] = []
    bypass_actors: list[Json] = []
    updated_at: float = Field(default=None, validate_default=True)

    _updated = field_validator("updated_at", mode="before")(_filled_time)


class Repo(Variables, SecretScope, _Record):
    full_name: str
    private: bool = True
    default_branch: str = "main"
    branches: list[str] = []  # the default branch is always one of them; each has a ref
    environments: dict[str, Environment] = {}
    workflows: dict[str, Workflow] = {}  # by file name
    runs: dict[int, Run] = {}
    issues: list[Issue] = []
    dispatches: list[Json] = []
    collaborators: dict[str, str] = {}  # login -> role (admin, maintain, write, triage, read)
    rulesets: dict[int, Ruleset] = {}
    protections: dict[str, Json] = {}  # branch -> classic branch protection (as GET shows it)
    refs: dict[str, str] = {}  # branch -> commit sha
    commits: dict[str, GitCommit] = {}
    trees: dict[str, dict[str, str]] = {}  # tree sha -> {path: blob sha}
    blobs: dict[str, str] = {}  # blob sha -> content (text)

    @field_validator("full_name")
    @classmethod
    def _owner_and_name(cls, value: str) -> str:
        owner, sep, name = value.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"repository must be owner/name, got {value!r}")
        return value

    @field_validator("environments", "workflows", "runs", "rulesets", "commits", mode="wrap")
    @classmethod
    def _by_key(cls, rows: Any, handler: ValidatorFunctionWrapHandler,
                info: ValidationInfo) -> Any:
        return _rekeyed(rows, handler, {"environments": "name", "workflows": "file",
                                        "commits": "sha"}.get(str(info.field_name), "id"))

    @model_validator(mode="after")
    def _default_branch_listed(self) -> Repo:
        if self.default_branch not in self.branches:
            self.branches.insert(0, self.default_branch)
        for branch in self.branches:
            if branch not in self.refs:  # a branch named without history: one empty commit
                self.refs[branch] = self.commit({}, [], f"{branch} of {self.full_name}", 0.0)
        for run in self.runs.values():
            run.head_branch = run.head_branch or self.default_branch
        return self

    # -- git data (git's blob ids; trees and commits hashed over their content) -------------

    def blob(self, content: str) -> str:
        data = content.encode("utf-8")
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
        self.blobs[sha] = content
        return sha

    def tree(self, files: dict[str, str]) -> str:
        """A tree of `files` (path -> blob sha); its sha."""
        flat = dict(sorted(files.items()))
        sha = hashlib.sha1(b"tree " + json.dumps(flat).encode(),
                           usedforsecurity=False).hexdigest()
        self.trees[sha] = flat
        return sha

    def commit(self, files: dict[str, str], parents: list[str], message: str,
               at: float) -> str:
        """A commit of the tree `files` on `parents`; its sha."""
        tree = self.tree(files)
        sha = hashlib.sha1(b"commit " + json.dumps([tree, parents, message, at]).encode(),
                           usedforsecurity=False).hexdigest()
        self.commits[sha] = GitCommit(sha=sha, tree=tree, parents=list(parents),
                                      message=message, at=at)
        return sha

    def files(self, ref: str) -> dict[str, str] | None:
        """path -> content at a branch or commit sha (None: no such ref)."""
        sha = self.refs.get(ref, ref)
        commit = self.commits.get(sha)
        if commit is None:
            return None
        return {path: self.blobs.get(blob, "") for path, blob in self.trees[commit.tree].items()}

    def ancestors(self, sha: str) -> list[str]:
        """`sha` and every commit before it, nearest first."""
        seen: list[str] = []
        todo = [sha]
        while todo:
            current = todo.pop(0)
            if current in seen or current not in self.commits:
                continue
            seen.append(current)
            todo += self.commits[current].parents
        return seen

    def set_ref(self, branch: str, sha: str) -> None:
        self.refs[branch] = sha
        if branch not in self.branches:
            self.branches.append(branch)

    @field_serializer("environments")
    def _sorted_environments(self, rows: dict[str, Environment]) -> list[Environment]:
        return [rows[k] for k in sorted(rows)]

    @field_serializer("workflows")
    def _sorted_workflows(self, rows: dict[str, Workflow]) -> list[Workflow]:
        return [rows[k] for k in sorted(rows)]

    @field_serializer("runs")
    def _sorted_runs(self, rows: dict[int, Run]) -> list[Run]:
        return [rows[k] for k in sorted(rows)]

    @field_serializer("rulesets")
    def _sorted_rulesets(self, rows: dict[int, Ruleset]) -> list[Ruleset]:
        return [rows[k] for k in sorted(rows)]

    @field_serializer("commits")
    def _sorted_commits(self, rows: dict[str, GitCommit]) -> list[GitCommit]:
        return [rows[k] for k in sorted(rows)]

    @property
    def owner(self) -> str:
        return self.full_name.partition("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.partition("/")[2]


class Org(SecretScope):
    name: str
    id: int = Field(default=0, validate_default=True)
    owners: list[str] = []  # the organisation's owners: admins of every repository of it

    _id = field_validator("id", mode="before")(_filled_id)


class Installation(_Record):
    """A GitHub App's installation on an account: what it may do, and where."""

    account: str  # the user or organisation it is installed on
    app_slug: str
    app_id: int = 1
    client_id: str
    permissions: dict[str, str] = {}  # e.g. {"secrets": "write", "metadata": "read"}
    repository_selection: str = "selected"  # or "all"
    repositories: list[str] = []  # owner/name, when selected

    @field_validator("repository_selection")
    @classmethod
    def _selection(cls, value: str) -> str:
        if value not in ("all", "selected"):
            raise ValueError("repository_selection must be all or selected")
        return value


class _Token(_Model):
    token: Hidden
    login: str = "velvet-bot"
    repos: list[str] | None = None  # None: every repository
    # An integration's token (a workflow's GITHUB_TOKEN, an App installation's): what it may
    # do, GitHub's permission name -> read or write. None: a person's token, which may do what
    # its user may.
    permissions: dict[str, str] | None = None
    installation: int | None = None  # an App installation's token: its installation's id

    @field_validator("repos")
    @classmethod
    def _sorted(cls, repos: list[str] | None) -> list[str] | None:
        return None if repos is None else sorted(set(repos))


class Snapshot(_Model):
    """The fake's whole state as `GET /__velvet/state` shows it and `POST /__velvet/seed` merges
    it. Rate-limit counters are not in it: every request moves them."""

    sequence: int = 0
    tokens: list[_Token] = []
    users: dict[str, int] = {}
    repos: list[Repo] = []
    orgs: list[Org] = []
    installations: list[Installation] = []
