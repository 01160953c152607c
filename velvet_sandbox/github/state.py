"""The GitHub fake's whole memory (`State`): seed, snapshot, reset, the test helpers and the
request gate (User-Agent, token, primary rate limit).

The memory is records.py's pydantic models; `snapshot` dumps them as one `Snapshot` and `seed`
validates one and merges it, so both have the one shape, and secret fields (tokens, secret
values, private keys) are fingerprints everywhere but `snapshot(reveal=True)` in process.

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
`x-ratelimit-*` headers; `State.set_rate_limit` (or `POST /__velvet/limits` with "primary") can
exhaust the primary limit: 403 (or 429), "API rate limit exceeded", no `retry-after`.

The primary limit's hour runs on the fake's vendor clock: the `Limiter` of its secondary limits
(ratelimit.py), which `create_app` attaches, so `time_scale` 3600 makes the hour a real
second. `x-ratelimit-reset` stays a wall-clock epoch (the vendor seconds left, scaled to real
ones), so a client that waits until it waits the right real time.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
import zlib
from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.datastructures import Headers

from velvet_sandbox.control import Stored, bearer_token
from velvet_sandbox.github.common import (
    _KEY_ID_BASE,
    MSG_NO_USER_AGENT,
    PRIMARY_LIMIT_DOCS,
    RATE_LIMIT,
    RATE_WINDOW_SECONDS,
    ROLES,
    Clock,
    GitHubError,
    Json,
    _not_found,
)
from velvet_sandbox.github.records import (
    Approval,
    Environment,
    Installation,
    KeyPair,
    Org,
    Repo,
    Run,
    Secret,
    SecretScope,
    Seeding,
    Snapshot,
    Workflow,
    _Token,
)

if TYPE_CHECKING:
    from velvet_sandbox.actions_plane import ActionsPlane
    from velvet_sandbox.ratelimit import Limiter


def _reasons(exc: ValidationError) -> str:
    """Each error as `field.path: message`, never the input: a seed carries secret values."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'seed'}: {e['msg']}"
                     for e in exc.errors(include_url=False, include_input=False))


class State(Stored):
    """The fake's whole memory. Every method takes the lock; call them from any thread.

    Public helpers (repo arguments are "owner/name"):

        add_token(token, login="velvet-bot", repos=None)
        add_repo(full_name, *, private=True, default_branch="main", branches=None) -> repo id
        add_file(repo, path, text)                  a file on the default branch (contents API)
        add_org(name) -> org id
        add_environment(repo, name, reviewers=None, prevent_self_review=True, *,
                        wait_timer=0, branches=None, protected_branches=False) -> env id
        add_workflow(repo, file, inputs, *, required=(), dispatchable=True, name=None,
                     types=None) -> id              types: input -> {"type", "options"}
        add_run(repo, actor, *, workflow=None, triggering_actor=None, status="waiting",
                run_attempt=1, head_branch=None) -> run id
        approve(repo, run_id, environment, login, comment="", *, state="approved")
        set_secret(scope, name, value)              store a plaintext as if PUT
        secret_plaintext(scope, name) -> str | None
        token_values() -> list[str]                 every accepted token (leak scans)
        secret_names(scope) -> list[str]
        public_key(scope) -> (key_id, base64 public key)
        rotate_key(scope) -> new key_id             the old key_id is refused from then on
        dispatches(repo) -> list[dict]              {workflow, ref, inputs, actor, run_id, at}
        issues(repo) -> list[dict]                  {number, id, title, body, labels, user, ...}
        set_rate_limit(limit=5000, remaining=None, *, status=403)
                                                    remaining=0 exhausts the primary limit
        primary_limit() -> dict                     {limit, remaining, used, reset, window, status}

    Scope strings: "repo:owner/name", "env:owner/name:envname", "org:name".
    """

    # A dropped write is taken back (control.Stored); rate-limit counters are traffic.
    STORED = ("_tokens", "_users", "_repos", "_orgs")

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.plane: ActionsPlane | None = None  # actions_plane.ActionsPlane attaches itself
        self.limiter: Limiter | None = None  # create_app attaches the app's (vendor time)
        self._reset()

    def attach_limiter(self, limiter: Limiter) -> None:
        """Count the primary limit's hour on `limiter`'s vendor clock from now on.

        The window is restarted on that clock: one begun on the fake's own epoch clock would
        end 1.7e9 vendor seconds away, and its `x-ratelimit-reset` would name the year 2083.
        """
        with self._lock:
            self.limiter = limiter
            self._rate_reset = self._vendor_now() + RATE_WINDOW_SECONDS

    def _reset(self) -> None:
        self._seq = 1000
        self._tokens: dict[str, _Token] = {}
        self._users: dict[str, int] = {}
        self._repos: dict[str, Repo] = {}
        self._orgs: dict[str, Org] = {}
        self._installations: dict[int, Installation] = {}
        self._rate_limit = RATE_LIMIT
        self._rate_used = 0
        self._rate_status = 403
        self._rate_reset = self._vendor_now() + RATE_WINDOW_SECONDS  # vendor seconds

    def _next_id(self) -> int:
        self._seq += 1
        return self._seq

    def _new_key(self) -> KeyPair:
        return KeyPair.generate(str(_KEY_ID_BASE + self._next_id()))

    def _seeding(self) -> Seeding:
        """What fills in the ids, key pairs and timestamps a seed leaves out."""
        return Seeding(now=self.clock(), next_id=self._next_id, new_key=self._new_key)

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

    def snapshot(self, reveal: bool = False) -> Json:
        """The `Snapshot` model, sorted, as `GET /__velvet/state` shows it.

        Includes tokens, users, repos (with secrets, key pairs, environments, workflows, runs,
        approvals, issues, dispatches) and orgs. Tokens, secret values and private keys appear
        as fingerprints; with `reveal=True` (in process only) as values, and then
        `seed(snapshot(reveal=True))` on a reset state reproduces it. Rate-limit counters are
        left out: every request moves them, and the snapshot shows what a run changed.
        """
        with self._lock:
            model = Snapshot(
                sequence=self._seq,
                tokens=[self._tokens[t] for t in sorted(self._tokens)],
                users=dict(sorted(self._users.items())),
                repos=[self._repos[n] for n in sorted(self._repos)],
                orgs=[self._orgs[n] for n in sorted(self._orgs)],
                installations=[self._installations[i] for i in sorted(self._installations)],
            )
            return model.model_dump(mode="json", context={"reveal": reveal})

    def seed(self, data: Json) -> None:
        """Merge a `Snapshot`-shaped document (ids, key pairs and timestamps optional; what is
        left out is new). Raises ValueError (pydantic's ValidationError, naming the field) on a
        malformed one, and then changes nothing but the id sequence."""
        with self._lock:
            sequence = data.get("sequence")
            if isinstance(sequence, int):
                self._seq = max(self._seq, sequence)  # new ids come after the document's
            try:
                model = Snapshot.model_validate(data, context=self._seeding())
            except ValidationError as exc:
                raise ValueError(_reasons(exc)) from None
            self._users.update(model.users)
            for token in model.tokens:
                self._tokens[token.token] = token
                self._user_id(token.login)
            for org in model.orgs:
                known = self._orgs.setdefault(org.name, org)
                if known is not org:
                    known.secrets.update(org.secrets)
            for repo in model.repos:
                self._merge_repo(repo)
            for installation in model.installations:
                self._installations[installation.id] = installation
                self._user_id(installation.account)

    def _merge_repo(self, row: Repo) -> Repo:
        repo = self._repos.get(row.full_name)
        if repo is None:
            repo = self._repos[row.full_name] = row
            if repo.owner not in self._orgs:
                self._user_id(repo.owner)
        else:
            repo.secrets.update(row.secrets)
            repo.variables.update(row.variables)
            repo.workflows.update(row.workflows)
            repo.issues.extend(row.issues)
            repo.dispatches.extend(row.dispatches)
            repo.collaborators.update(row.collaborators)
            repo.rulesets.update(row.rulesets)
            repo.protections.update(row.protections)
            repo.commits.update(row.commits)
            repo.trees.update(row.trees)
            repo.blobs.update(row.blobs)
            explicit = "refs" in row.model_fields_set  # else: refs the validator made up
            for branch in row.branches:
                if branch not in repo.branches or explicit:
                    repo.set_ref(branch, row.refs[branch])
        for login in repo.collaborators:
            self._user_id(login)
        for env in row.environments.values():
            self._merge_environment(repo, env)
        for run in row.runs.values():
            self._add_run(repo, run)
        return repo

    def _merge_environment(self, repo: Repo, row: Environment) -> Environment:
        """A new environment, or an existing one's rules replaced and secrets merged."""
        env = repo.environments.setdefault(row.name, row)
        if env is not row:
            for rule in ("reviewers", "prevent_self_review", "wait_timer", "policies",
                         "protected_branches", "can_admins_bypass"):
                setattr(env, rule, getattr(row, rule))
            env.secrets.update(row.secrets)
            env.variables.update(row.variables)
        for login in env.reviewers or []:
            self._user_id(login)
        return env

    def _add_run(self, repo: Repo, run: Run) -> Run:
        run.head_branch = run.head_branch or repo.default_branch
        for login in (run.actor, run.triggering_actor, *(a.login for a in run.approvals)):
            self._user_id(login)
        repo.runs[run.id] = run
        return run

    def _seed_run(self, repo: Repo, row: Json) -> Run:
        """A new run of `repo` from a `Run`-shaped row (dispatch, add_run)."""
        return self._add_run(repo, Run.model_validate(row, context=self._seeding()))

    def reset(self) -> None:
        with self._lock:
            self._reset()

    def keep(self) -> Json:
        """What `put_back` restores after a dropped request: the stored state and the runs
        the Actions plane tracks (a dropped dispatch starts no run)."""
        with self._lock:
            kept = super().keep()
            if self.plane is not None:
                kept["plane.runs"] = copy.deepcopy(self.plane.runs)
            return kept

    def put_back(self, kept: Json) -> None:
        with self._lock:
            runs = kept.pop("plane.runs", None)
            if self.plane is not None and runs is not None:
                self.plane.runs = runs
            super().put_back(kept)

    # -- public helpers ----------------------------------------------------------------------

    def add_token(
        self,
        token: str,
        login: str = "velvet-bot",
        repos: list[str] | None = None,
        *,
        permissions: dict[str, str] | None = None,
        installation: int | None = None,
    ) -> None:
        """Accept `token` as `login`; `repos` limits which repositories it can see.

        `permissions` (GitHub's names -> read/write) makes it an integration's token (a
        workflow's GITHUB_TOKEN): any other call is 403 "Resource not accessible by
        integration". `installation` makes it that App installation's token: its permissions
        and repositories are the installation's.
        """
        row: Json = {"token": token, "login": login, "repos": repos,
                     "permissions": permissions, "installation": installation}
        if installation is not None:
            with self._lock:
                found = self._installations[installation]
                row["permissions"] = {"metadata": "read", **found.permissions}
                if found.repository_selection == "selected":
                    row["repos"] = list(found.repositories)
        self.seed({"tokens": [row]})

    def add_collaborator(self, repo: str, login: str, role: str = "write") -> None:
        """`login` gets `role` (admin, maintain, write, triage, read) on `repo`."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        with self._lock:
            self._repos[repo].collaborators[login] = role
            self._user_id(login)

    def add_installation(self, account: str, client_id: str, *, app_slug: str = "velvet",
                         permissions: dict[str, str] | None = None,
                         repositories: list[str] | None = None) -> int:
        """Install a GitHub App on `account`: on `repositories` (None: all of them)."""
        row: Json = {"account": account, "client_id": client_id, "app_slug": app_slug,
                     "permissions": permissions or {"secrets": "write", "metadata": "read"},
                     "repository_selection": "all" if repositories is None else "selected",
                     "repositories": repositories or []}
        with self._lock:
            model = Installation.model_validate(row, context=self._seeding())
            self._installations[model.id] = model
            self._user_id(account)
            return model.id

    def install_on(self, installation: int, repo: str) -> None:
        """Add `repo` to an installation on selected repositories; its tokens reach it now."""
        with self._lock:
            found = self._installations[installation]
            if found.repository_selection == "selected" and repo not in found.repositories:
                found.repositories = sorted([*found.repositories, repo])
                for tok in self._tokens.values():
                    if tok.installation == installation and tok.repos is not None:
                        tok.repos = sorted({*tok.repos, repo})

    def role(self, repo: Repo, login: str) -> str | None:
        """`login`'s role on `repo`: the owner (or an owner of its organisation) is admin."""
        if login.lower() == repo.owner.lower():
            return "admin"
        org = self._orgs.get(repo.owner)
        if org is not None and login in org.owners:
            return "admin"
        return repo.collaborators.get(login)

    def add_repo(
        self,
        full_name: str,
        *,
        private: bool = True,
        default_branch: str = "main",
        branches: list[str] | None = None,
    ) -> int:
        row = {"full_name": full_name, "private": private, "default_branch": default_branch,
               "branches": branches or []}
        with self._lock:
            self.seed({"repos": [row]})
            return self._repos[full_name].id

    def add_file(self, repo: str, path: str, text: str) -> None:
        """Commit `text` at `path` on `repo`'s default branch (the contents API reads it)."""
        with self._lock:
            if repo not in self._repos:
                self.add_repo(repo)
            found = self._repos[repo]
            head = found.refs[found.default_branch]
            files = found.files(head) or {}
            files[path.strip("/")] = text
            blobs = {p: found.blob(t) for p, t in files.items()}
            found.set_ref(found.default_branch,
                          found.commit(blobs, [head], f"add {path}", self.clock()))

    def add_org(self, name: str) -> int:
        with self._lock:
            self.seed({"orgs": [{"name": name}]})
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
            target = self._repos[repo]
            row = Environment.model_validate(
                {"name": name, "reviewers": reviewers, "prevent_self_review": prevent_self_review,
                 "wait_timer": wait_timer, "branches": branches,
                 "protected_branches": protected_branches},
                context=self._seeding(),
            )
            return self._merge_environment(target, row).id

    def add_workflow(
        self,
        repo: str,
        file: str,
        inputs: list[str],
        *,
        required: list[str] | tuple[str, ...] = (),
        dispatchable: bool = True,
        name: str | None = None,
        types: Json | None = None,
    ) -> int:
        with self._lock:
            target = self._repos[repo]
            wf = Workflow.model_validate(
                {"file": file, "name": name or file, "inputs": inputs,
                 "required": list(required), "dispatchable": dispatchable,
                 "types": types or {}},
                context=self._seeding(),
            )
            target.workflows[file] = wf
            return wf.id

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
                {"actor": actor, "triggering_actor": triggering_actor or "", "workflow": workflow,
                 "status": status, "run_attempt": run_attempt, "head_branch": head_branch or ""},
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
            now = self.clock()
            if existing is not None:
                existing.value = value
                existing.updated_at = now
                return
            secret = Secret(name=name, value=value, created_at=now, updated_at=now,
                            visibility="all" if isinstance(target, Org) else None)
            target.secrets[secret.name] = secret

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

    def token_values(self) -> list[str]:
        """Every token the fake accepts (for leak scans)."""
        with self._lock:
            return sorted(self._tokens)

    def dispatches(self, repo: str) -> list[Json]:
        with self._lock:
            return [json.loads(json.dumps(d)) for d in self._repos[repo].dispatches]

    def issues(self, repo: str) -> list[Json]:
        with self._lock:
            return [i.model_dump(mode="json") for i in self._repos[repo].issues]

    def set_rate_limit(
        self, limit: int = RATE_LIMIT, remaining: int | None = None, *, status: int = 403
    ) -> None:
        """Start a new primary rate-limit window (an hour of vendor time) with `limit` requests
        and `remaining` of them left; `remaining=0` makes every call a `status` (403 or 429)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError("limit must be a non-negative integer")
        if remaining is not None and (
            isinstance(remaining, bool) or not isinstance(remaining, int)
            or not 0 <= remaining <= limit
        ):
            raise ValueError("remaining must be an integer from 0 to limit")
        if status not in (403, 429):
            raise ValueError("status must be 403 or 429, as GitHub answers")
        with self._lock:
            self._rate_limit = limit
            self._rate_used = limit - (limit if remaining is None else remaining)
            self._rate_status = status
            self._rate_reset = self._vendor_now() + RATE_WINDOW_SECONDS

    def primary_limit(self) -> Json:
        """The primary limit as `GET /__velvet/limits` shows it (`reset`: a wall-clock epoch)."""
        with self._lock:
            headers = self._rate_headers()
            return {
                "limit": int(headers["x-ratelimit-limit"]),
                "remaining": int(headers["x-ratelimit-remaining"]),
                "used": int(headers["x-ratelimit-used"]),
                "reset": int(headers["x-ratelimit-reset"]),
                "window": RATE_WINDOW_SECONDS,
                "status": self._rate_status,
            }

    # -- request gate ------------------------------------------------------------------------

    def _vendor_now(self) -> float:
        """Vendor seconds: the limiter's clock when attached (time_scale), else the fake's own."""
        return self.limiter.now() if self.limiter is not None else self.clock()

    def _rate_headers(self) -> dict[str, str]:
        with self._lock:
            now = self._vendor_now()
            if now >= self._rate_reset:
                self._rate_used = 0
                self._rate_reset = now + RATE_WINDOW_SECONDS
            scale = self.limiter.time_scale if self.limiter is not None else 1.0
            # Rounded up: a client that waits until this epoch never comes back early.
            reset = math.ceil(self.clock() + (self._rate_reset - now) / scale)
            return {
                "x-ratelimit-limit": str(self._rate_limit),
                "x-ratelimit-remaining": str(max(self._rate_limit - self._rate_used, 0)),
                "x-ratelimit-used": str(self._rate_used),
                "x-ratelimit-reset": str(reset),
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
                if self.limiter is not None:
                    self.limiter.breach("primary")  # reported at /__velvet/limits
                raise GitHubError(
                    self._rate_status,
                    f"API rate limit exceeded for user ID {self._peek_user_id(info.login)}. "
                    "If you reach out to GitHub Support for help, please include the request ID.",
                    docs=PRIMARY_LIMIT_DOCS,
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
