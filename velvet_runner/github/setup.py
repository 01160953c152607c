"""`velvet setup github`: what `velvet doctor` checks, made through GitHub's API, as a plan and
then an apply (octodns's or Terraform's way): every change is listed before any is made, and a
second apply finds nothing to change.

    + create   something missing (an environment, the state branch, a ruleset, a variable, a
               secret, CODEOWNERS lines)
    ~ update   something there but not as the manifest needs it (reviewers, self-review, admin
               bypass, branch policy, a variable's value, the App's repositories)
    ! manual   what the API cannot do for you (install the App, invite an approver, a value
               nobody gave): how to do it

Secrets come only from the environment (a variable of the secret's name) or standard input (a
JSON object of names and values, `--stdin`); each is sealed with its environment's public key
(PyNaCl) and never printed, logged or compared: a secret already set is left as it is.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import SetupError, VelvetError

from .codeowners import CODEOWNERS_FILES, codeowners_of
from .expect import APP_CLIENT_VARIABLE, CODEOWNED, FALLBACK_VARIABLE, STATE_RULES, Expected

if TYPE_CHECKING:
    from pydantic import SecretStr

    from .api import GitHubApi

MARKS = {"create": "+", "update": "~", "manual": "!"}
STATE_RULESET = "velvet-state"
REVIEW_RULESET = "velvet-default-branch"
SECRET_REPOSITORIES = "VELVET_SECRET_REPOSITORIES"
STATE_README = "Velvet job records: written by the runner only (docs/setup.md).\n"
REVIEW_RULE = {"type": "pull_request", "parameters": {
    "required_approving_review_count": 1, "require_code_owner_review": True,
    "dismiss_stale_reviews_on_push": True, "require_last_push_approval": False,
    "required_review_thread_resolution": False}}


@dataclass
class Change:
    id: str
    action: str  # create, update, manual
    what: str
    run: Callable[[], None] | None = None  # None: a manual step

    def line(self) -> str:
        return f"{MARKS[self.action]} {self.action:<6} {self.what}"


@dataclass
class Planner:
    expected: Expected
    api: GitHubApi
    repository: str
    state_branch: str
    values: Mapping[str, SecretStr]  # secret and variable values given (environment, stdin)
    default_branch: str = "main"
    changes: list[Change] = field(default_factory=list)

    # -- GitHub calls -----------------------------------------------------------------------

    def get(self, path: str) -> tuple[int, Any]:
        return self.api.call("GET", path)

    def send(self, verb: str, path: str, body: dict[str, Any] | None, what: str) -> Any:
        status, data = self.api.call(verb, path, body)
        if status >= 400:
            message = data.get("message") if isinstance(data, dict) else None
            raise SetupError(f"{what}: GitHub answered HTTP {status}"
                             + (f": {message}" if message else ""))
        return data

    def add(self, id: str, action: str, what: str, run: Callable[[], None] | None = None) -> None:
        self.changes.append(Change(id, action, what, run))

    # -- the plan ---------------------------------------------------------------------------

    def plan(self) -> list[Change]:
        status, repo = self.get(f"/repos/{self.repository}")
        if status != 200:
            raise SetupError(f"repository {self.repository} cannot be read with this token "
                             f"(HTTP {status})")
        self.default_branch = str(repo.get("default_branch") or "main")
        self.variables = self._variables()
        self._plan_environments()
        self._plan_state_branch()
        self._plan_codeowners()
        self._plan_review_rule()
        self._plan_variables()
        self._plan_secrets()
        self._plan_app()
        self._plan_approvers()
        return self.changes

    def _variables(self) -> dict[str, str]:
        try:
            rows = self.api.get_all(f"/repos/{self.repository}/actions/variables?per_page=30",
                                    "variables")
        except VelvetError:
            return {}
        return {str(r["name"]): str(r["value"]) for r in rows}

    def _user_ids(self, logins: tuple[str, ...]) -> list[int] | None:
        ids = []
        for login in logins:
            status, user = self.get(f"/users/{login}")
            if status != 200:
                self.add(f"user:{login}", "manual", f"approver {login} is not a GitHub user: "
                         "correct the manifest's approvers")
                return None
            ids.append(int(user["id"]))
        return ids

    def _plan_environments(self) -> None:
        fallback = self.variables.get(FALLBACK_VARIABLE, "").lower() == "true"
        for spec in self.expected.environments:
            path = f"/repos/{self.repository}/environments/{spec.name}"
            status, current = self.get(path)
            exists = status == 200
            body: dict[str, Any] = {"deployment_branch_policy": {
                "protected_branches": False, "custom_branch_policies": True}}
            reasons = []
            if spec.gated:
                body["can_admins_bypass"] = False
                rules = (current or {}).get("protection_rules") or [] if exists else []
                rule = next((r for r in rules if r.get("type") == "required_reviewers"), None)
                if not fallback:
                    ids = self._user_ids(spec.reviewers)
                    if ids is None:
                        continue
                    have = sorted(r.get("reviewer", {}).get("id") for r in (rule or {}).get(
                        "reviewers", []))
                    if have != sorted(ids):
                        body["reviewers"] = [{"type": "User", "id": i} for i in ids]
                        reasons.append(f"reviewers {', '.join(spec.reviewers)}")
                    if not (rule or {}).get("prevent_self_review"):
                        body["prevent_self_review"] = True
                        body.setdefault("reviewers", [{"type": "User", "id": i} for i in ids])
                        reasons.append("prevent self-review")
                if not exists or current.get("can_admins_bypass", True):
                    reasons.append("no admin bypass")
            policy = (current or {}).get("deployment_branch_policy") if exists else None
            if not policy or not policy.get("custom_branch_policies"):
                reasons.append(f"deployment branch {self.default_branch}")
            policies = self._policies(spec.name) if exists and policy and policy.get(
                "custom_branch_policies") else []
            wrong = [p for p in policies if (p.get("type", "branch"), p.get("name")) !=
                     ("branch", self.default_branch)]
            has_default = any((p.get("type", "branch"), p.get("name")) ==
                              ("branch", self.default_branch) for p in policies)
            if wrong or not has_default:
                if f"deployment branch {self.default_branch}" not in reasons:
                    reasons.append(f"deployment branch {self.default_branch} only")
            if not reasons:
                continue
            action = "update" if exists else "create"
            self.add(f"env:{spec.name}", action, f"environment {spec.name} "
                     f"({'; '.join(reasons)})",
                     self._environment(spec.name, body, wrong, has_default))

    def _policies(self, name: str) -> list[dict[str, Any]]:
        status, data = self.get(f"/repos/{self.repository}/environments/{name}"
                                "/deployment-branch-policies?per_page=100")
        return list(data.get("branch_policies", [])) if status == 200 else []

    def _environment(self, name: str, body: dict[str, Any], wrong: list[dict[str, Any]],
                     has_default: bool) -> Callable[[], None]:
        base = f"/repos/{self.repository}/environments/{name}"

        def run() -> None:
            self.send("PUT", base, body, f"environment {name}")
            for policy in wrong:
                self.send("DELETE", f"{base}/deployment-branch-policies/{policy['id']}", None,
                          f"environment {name}: branch policy {policy.get('name')}")
            if not has_default:
                self.send("POST", f"{base}/deployment-branch-policies",
                          {"name": self.default_branch, "type": "branch"},
                          f"environment {name}: branch policy {self.default_branch}")
        return run

    def _plan_state_branch(self) -> None:
        branch = self.state_branch
        status, _ = self.get(f"/repos/{self.repository}/branches/{branch}")
        if status == 404:
            self.add("state:branch", "create", f"state branch {branch} (an orphan holding a "
                     "README; no .github/)", self._create_state_branch)
        elif status == 200:
            status, data = self.get(f"/repos/{self.repository}/compare/"
                                    f"{self.default_branch}...{branch}")
            if status == 200:
                self.add("state:orphan", "manual", f"state branch {branch} shares history "
                         f"with {self.default_branch}: recreate it with `git switch --orphan` "
                         "carrying only its records (docs/setup.md §2)")
            status, _ = self.get(f"/repos/{self.repository}/contents/.github?ref={branch}")
            if status == 200:
                self.add("state:no-github", "manual", f"state branch {branch} holds .github/: "
                         "delete it there in a commit")
        status, rules = self.get(f"/repos/{self.repository}/rules/branches/{branch}")
        kinds = {r.get("type") for r in rules or []} if status == 200 else set()
        missing = [k for k in STATE_RULES if k not in kinds]
        if missing:
            self._ruleset(STATE_RULESET, [f"refs/heads/{branch}"],
                          [{"type": k} for k in STATE_RULES],
                          f"block force pushes and deletion of {branch}")

    def _create_state_branch(self) -> None:
        base = f"/repos/{self.repository}/git"
        tree = self.send("POST", f"{base}/trees", {"tree": [
            {"path": "README.md", "mode": "100644", "type": "blob", "content": STATE_README}]},
            "the state branch's tree")
        commit = self.send("POST", f"{base}/commits", {
            "message": "velvet: state branch", "tree": tree["sha"], "parents": []},
            "the state branch's first commit")
        self.send("POST", f"{base}/refs", {"ref": f"refs/heads/{self.state_branch}",
                                           "sha": commit["sha"]}, "the state branch")

    def _ruleset(self, name: str, include: list[str], rules: list[dict[str, Any]],
                 what: str) -> None:
        """Create the ruleset `name`, or put `rules` into the one of that name."""
        status, listed = self.get(f"/repos/{self.repository}/rulesets")
        same = next((r for r in listed or [] if r.get("name") == name), None) \
            if status == 200 else None
        body = {"name": name, "target": "branch", "enforcement": "active",
                "conditions": {"ref_name": {"include": include, "exclude": []}},
                "rules": rules, "bypass_actors": []}
        if same is None:
            self.add(f"ruleset:{name}", "create", f"ruleset {name}: {what}",
                     lambda: self.send("POST", f"/repos/{self.repository}/rulesets", body,
                                       f"ruleset {name}"))
        else:
            path = f"/repos/{self.repository}/rulesets/{same['id']}"
            self.add(f"ruleset:{name}", "update", f"ruleset {name}: {what}",
                     lambda: self.send("PUT", path, body, f"ruleset {name}"))

    def _codeowners_text(self) -> tuple[str | None, str | None, str | None]:
        """(path, text, blob sha) of the CODEOWNERS file GitHub reads, if there is one."""
        for path in CODEOWNERS_FILES:
            status, data = self.get(f"/repos/{self.repository}/contents/{path}"
                                    f"?ref={self.default_branch}")
            if status == 200 and isinstance(data, dict) and data.get("content") is not None:
                text = base64.b64decode(str(data["content"])).decode("utf-8", "replace")
                return path, text, str(data.get("sha"))
        return None, None, None

    def _plan_codeowners(self) -> None:
        path, text, sha = self._codeowners_text()
        approvers = set(self.expected.approvers)
        wanted = self.expected.codeowners
        if text is not None and all(
                (owners := codeowners_of(text, owned.strip("/") + "/x.yml")) and
                all(o.removeprefix("@") in approvers for o in owners if "/" not in o)
                for owned in CODEOWNED):
            return
        target = path or CODEOWNERS_FILES[0]
        content = (text.rstrip("\n") + "\n\n" if text else "") + \
            "# Velvet: the manifest and the workflows change only with an approver's review\n" \
            + "".join(f"{line}\n" for line in wanted)
        body: dict[str, Any] = {"message": "velvet: code owners of the manifest and workflows",
                                "content": base64.b64encode(content.encode()).decode(),
                                "branch": self.default_branch}
        if sha:
            body["sha"] = sha
        action = "update" if text is not None else "create"
        self.add("codeowners", action, f"{target} on {self.default_branch}: "
                 + "; ".join(wanted),
                 lambda: self.send("PUT", f"/repos/{self.repository}/contents/{target}", body,
                                   f"{target} (if the default branch takes only pull requests, "
                                   f"add these lines in one: {'; '.join(wanted)})"))

    def _plan_review_rule(self) -> None:
        status, rules = self.get(f"/repos/{self.repository}/rules/branches/"
                                 f"{self.default_branch}")
        for rule in rules if status == 200 else []:
            params = rule.get("parameters") or {}
            if rule.get("type") == "pull_request" and params.get(
                    "required_approving_review_count", 0) >= 1 and params.get(
                    "require_code_owner_review"):
                return
        status, protection = self.get(f"/repos/{self.repository}/branches/"
                                      f"{self.default_branch}/protection")
        reviews = (protection or {}).get("required_pull_request_reviews") \
            if status == 200 else None
        if reviews and reviews.get("required_approving_review_count", 0) >= 1 and \
                reviews.get("require_code_owner_reviews"):
            return  # classic branch protection already requires it
        self._ruleset(REVIEW_RULESET, ["~DEFAULT_BRANCH"], [REVIEW_RULE],
                      f"{self.default_branch} takes changes only through a pull request "
                      "approved by a code owner")

    def _needed(self, kind: str) -> list[Any]:
        return [r for r in self.expected.reads if r.kind == kind and r.needed]

    def _plan_variables(self) -> None:
        computed = {SECRET_REPOSITORIES: ",".join(
            r.partition("/")[2] for r in self.expected.secret_repositories)}
        for read in self._needed("variable"):
            name = read.name
            given = computed.get(name)
            if given is None and name in self.values:
                given = self.values[name].get_secret_value()
            have = self.variables.get(name)
            if given is None:
                if have is None:
                    self.add(f"variable:{name}", "manual", f"repository variable {name}: no "
                             f"value given (set {name} in the environment, or --stdin)")
                continue
            if have == given:
                continue
            base = f"/repos/{self.repository}/actions/variables"
            if have is None:
                self.add(f"variable:{name}", "create", f"repository variable {name} = "
                         f"{given!r}", self._variable("POST", base, name, given))
            else:
                self.add(f"variable:{name}", "update", f"repository variable {name} = "
                         f"{given!r} (was {have!r})",
                         self._variable("PATCH", f"{base}/{name}", name, given))

    def _variable(self, verb: str, path: str, name: str, value: str) -> Callable[[], None]:
        return lambda: self.send(verb, path, {"name": name, "value": value},
                                 f"variable {name}")

    def _plan_secrets(self) -> None:
        repo_names = self._secret_names(f"/repos/{self.repository}/actions/secrets")
        for read in self._needed("secret"):
            scopes = list(read.environments)
            for scope in scopes:
                have = self._secret_names(f"/repos/{self.repository}/environments/{scope}"
                                          "/secrets")
                if read.name in have | repo_names:
                    continue
                if read.name not in self.values:
                    self.add(f"secret:{read.name}@{scope}", "manual", f"secret {read.name} in "
                             f"environment {scope}: no value given (set {read.name} in the "
                             "environment, or give it with --stdin)")
                    continue
                self.add(f"secret:{read.name}@{scope}", "create", f"secret {read.name} in "
                         f"environment {scope} (sealed; the value is never shown)",
                         self._secret(scope, read.name))

    def _secret_names(self, path: str) -> set[str]:
        try:
            return {str(r["name"]) for r in self.api.get_all(f"{path}?per_page=100",
                                                             "secrets")}
        except VelvetError:
            return set()

    def _secret(self, environment: str, name: str) -> Callable[[], None]:
        def run() -> None:
            from nacl.public import PublicKey, SealedBox

            base = f"/repos/{self.repository}/environments/{environment}/secrets"
            key = self.send("GET", f"{base}/public-key", None, f"{environment}'s public key")
            box = SealedBox(PublicKey(base64.b64decode(key["key"])))
            sealed = box.encrypt(self.values[name].get_secret_value().encode("utf-8"))
            self.send("PUT", f"{base}/{name}", {
                "encrypted_value": base64.b64encode(sealed).decode("ascii"),
                "key_id": key["key_id"]}, f"secret {name} in {environment}")
        return run

    def _plan_app(self) -> None:
        targets = self.expected.secret_repositories
        if not targets:
            return
        owner = self.repository.partition("/")[0]
        others = sorted({t.partition("/")[0] for t in targets} - {owner})
        if others:
            self.add("app:owners", "manual", f"the manifest writes secrets of repositories "
                     f"owned by {', '.join(others)}, but the workflows mint the App's token "
                     f"for {owner} only: keep Velvet's targets under {owner}")
        client_id = self.variables.get(APP_CLIENT_VARIABLE) or (
            self.values[APP_CLIENT_VARIABLE].get_secret_value()
            if APP_CLIENT_VARIABLE in self.values else None)
        if not client_id:
            return  # the variable's own line asks for it
        status, _ = self.get(f"/orgs/{owner}")
        path = f"/orgs/{owner}/installations" if status == 200 else "/user/installations"
        status, data = self.get(f"{path}?per_page=100")
        found = next((i for i in (data or {}).get("installations", [])
                      if i.get("client_id") == client_id), None) if status == 200 else None
        if found is None:
            self.add("app:install", "manual", f"install the GitHub App (client id {client_id}) "
                     f"on {owner}, on {', '.join(targets)}, with Secrets: Read and write "
                     "(docs/setup.md §4)")
            return
        granted = found.get("permissions") or {}
        lacking = [k for k, v in self.expected.app_permissions.items() if granted.get(k) != v]
        if lacking:
            self.add("app:permissions", "manual", f"give the App {', '.join(lacking)}: Read "
                     "and write (its settings → Permissions; organization_secrets is an "
                     "Organization permission), then accept it on the installation")
        if found.get("repository_selection") == "all":
            return
        status, listed = self.get(f"/user/installations/{found['id']}/repositories"
                                  "?per_page=100")
        if status != 200:
            self.add("app:repositories", "manual", f"make sure the App's installation reaches "
                     f"{', '.join(targets)} (Configure → Repository access)")
            return
        have = {r.get("full_name") for r in listed.get("repositories", [])}
        for target in (t for t in targets if t not in have):
            self.add(f"app:{target}", "update", f"the App's installation: add {target}",
                     self._install_on(found["id"], target))

    def _install_on(self, installation: int, target: str) -> Callable[[], None]:
        def run() -> None:
            repo = self.send("GET", f"/repos/{target}", None, f"repository {target}")
            self.send("PUT", f"/user/installations/{installation}/repositories/{repo['id']}",
                      None, f"the App's installation on {target}")
        return run

    def _plan_approvers(self) -> None:
        for login in self.expected.approvers:
            status, data = self.get(f"/repos/{self.repository}/collaborators/{login}"
                                    "/permission")
            if status == 200 and data.get("permission") in ("admin", "write"):
                continue
            self.add(f"approver:{login}", "manual", f"give {login} Write access (Settings → "
                     "Collaborators and teams): an approver dispatches and reviews stages")
