"""`velvet doctor`: the GitHub side of a Velvet repository and Velvet's own credentials, checked
read-only through their APIs against what the manifest and the workflows need (expect.py).

One `Check` per fact: `ok`, `fail` with the exact fix (the settings path, or the `velvet
setup github` change that makes it), or `skip` with why it could not be checked here (a token
that may not read secrets, a bootstrap credential not present on this machine). Nothing is
written anywhere: every GitHub call is a GET, every vendor call a read (the targets' `probe`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import VelvetError

from .expect import APP_CLIENT_VARIABLE, CODEOWNED, FALLBACK_VARIABLE, STATE_RULES, Expected

if TYPE_CHECKING:
    from velvet_runner.manifest_models import TargetConfig
    from velvet_runner.settings import Settings

    from .api import GitHubApi

MARKS = {"ok": "✓", "fail": "✗", "skip": "–"}
CODEOWNERS_FILES = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")  # GitHub's order
WRITE = ("admin", "write")
# Each target kind -> the bootstrap setting(s) Velvet reaches it with (runbook section 8).
REACHED_WITH: dict[str, tuple[str, ...]] = {
    "heroku_config_var": ("VELVET_HEROKU_TOKEN",),
    "infisical_secret": ("VELVET_INFISICAL_CLIENT_ID", "VELVET_INFISICAL_CLIENT_SECRET"),
    "github_actions_secret": ("VELVET_GITHUB_TOKEN",),
    "aws_ssm_parameter": (),  # the AWS role of the job (OIDC) or the ambient credentials
}


@dataclass
class Check:
    id: str
    status: str  # ok, fail, skip
    title: str
    detail: str = ""
    fix: str = ""

    def line(self) -> str:
        text = f"{MARKS[self.status]} {self.title}"
        if self.detail:
            text += f": {self.detail}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


def ok(id: str, title: str, detail: str = "") -> Check:
    return Check(id, "ok", title, detail)


def fail(id: str, title: str, detail: str, fix: str) -> Check:
    return Check(id, "fail", title, detail, fix)


def skip(id: str, title: str, why: str) -> Check:
    return Check(id, "skip", title, f"skipped: {why}")


def report(checks: list[Check], repository: str, envs: list[str]) -> dict[str, Any]:
    """The `--json` document."""
    return {"repository": repository, "envs": envs,
            "ok": not any(c.status == "fail" for c in checks),
            "checks": [asdict(c) for c in checks]}


def codeowners_of(text: str, path: str) -> list[str] | None:
    """The owners CODEOWNERS gives `path` (the last matching line wins, as on GitHub); None
    when no line matches."""
    owners: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        pattern, *names = line.split()
        if _codeowners_match(pattern, path):
            owners = names
    return owners


def _codeowners_match(pattern: str, path: str) -> bool:
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    body = pattern.strip("/")
    regex = ""
    i = 0
    while i < len(body):
        if body.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif body[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        else:
            regex, i = regex + re.escape(body[i]), i + 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.match(f"^{prefix}{regex}(?:/.*)?$", path) is not None


class Doctor:
    """The checks, in the order `velvet doctor` prints them."""

    def __init__(self, expected: Expected, api: GitHubApi, repository: str, *,
                 settings: Settings, state_branch: str,
                 wiring: Callable[[], Any] | None = None) -> None:
        self.expected = expected
        self.api = api
        self.repo = repository
        self.owner = repository.partition("/")[0]
        self.settings = settings
        self.state_branch = state_branch
        self.wiring = wiring
        self.setup = f"velvet setup github --repo {repository} --apply"
        self.default_branch = "main"
        self.variables: dict[str, str] | None = None

    def get(self, path: str) -> tuple[int, Any]:
        try:
            return self.api.call("GET", path)
        except VelvetError as exc:
            return 0, {"message": str(exc)}

    def run(self) -> list[Check]:
        checks: list[Check] = []
        status, data = self.get(f"/repos/{self.repo}")
        if status != 200:
            why = (data or {}).get("message") if isinstance(data, dict) else None
            checks.append(fail("repository", f"repository {self.repo}",
                               f"cannot be read with this token (HTTP {status}"
                               f"{': ' + why if why else ''})",
                               "give doctor a token that can read the repository (GITHUB_TOKEN "
                               "or GH_TOKEN: `gh auth token`)"))
            checks += self._bootstrap()
            return checks
        self.default_branch = str(data.get("default_branch") or "main")
        checks.append(ok("repository", f"repository {self.repo}",
                         f"default branch {self.default_branch}"))
        for section in (self._environments, self._state_branch, self._default_branch,
                        self._reads, self._app, self._approvers, self._bootstrap):
            checks += section()
        return checks

    # -- environments ----------------------------------------------------------------------

    def _variable(self, name: str) -> str | None:
        """A repository variable's value (None: not set, or not readable with this token)."""
        if self.variables is None:
            self.variables = {}
            status, data = self.get(f"/repos/{self.repo}/actions/variables?per_page=30")
            if status == 200:
                rows = data.get("variables", [])
                if data.get("total_count", 0) > len(rows):  # GitHub pages variables by 30
                    try:
                        rows = self.api.get_all(f"/repos/{self.repo}/actions/variables",
                                                "variables")
                    except VelvetError:
                        rows = []
                self.variables = {row["name"]: str(row["value"]) for row in rows}
        return self.variables.get(name)

    def _environments(self) -> list[Check]:
        checks: list[Check] = []
        fallback = (self._variable(FALLBACK_VARIABLE) or "").lower() == "true"
        approvers = set(self.expected.approvers)
        for spec in self.expected.environments:
            name = spec.name
            where = f"Settings → Environments → {name}"
            status, env = self.get(f"/repos/{self.repo}/environments/{name}")
            if status == 404:
                checks.append(fail(f"env:{name}", f"environment {name}", "does not exist (a job "
                                   "naming it would create it unprotected)",
                                   f"Settings → Environments → New environment {name!r}; or "
                                   f"{self.setup}"))
                continue
            if status != 200:
                checks.append(skip(f"env:{name}", f"environment {name}",
                                   f"cannot be read (HTTP {status})"))
                continue
            checks.append(ok(f"env:{name}", f"environment {name}", "exists"))
            rules = env.get("protection_rules") or []
            rule = next((r for r in rules if r.get("type") == "required_reviewers"
                         and r.get("reviewers")), None)
            if spec.gated:
                checks += self._gate(spec.name, rule, env, approvers, fallback, where)
            checks.append(self._branches(name, env, where))
        return checks

    def _gate(self, name: str, rule: dict[str, Any] | None, env: dict[str, Any],
              approvers: set[str], fallback: bool, where: str) -> list[Check]:
        allowed = ", ".join(self.expected.approvers) or "(none in the manifest)"
        fix_reviewers = (f"{where} → Required reviewers: {allowed}; or {self.setup}")
        out: list[Check] = []
        if rule is None and fallback:
            out.append(ok(f"env:{name}:reviewers", f"environment {name}: the fallback gate",
                          f"no required reviewers; {FALLBACK_VARIABLE}=true, so an approver "
                          "runs velvet-approve.yml (docs/setup.md section 3b)"))
        elif rule is None:
            out.append(fail(f"env:{name}:reviewers", f"environment {name}: required reviewers",
                            "none: a stage bound to it runs without a review (the runner then "
                            "refuses it)", fix_reviewers))
        else:
            logins = [r.get("reviewer", {}).get("login") for r in rule.get("reviewers", [])
                      if r.get("type") == "User"]
            teams = [r.get("reviewer", {}).get("slug") for r in rule.get("reviewers", [])
                     if r.get("type") == "Team"]
            strangers = [login for login in logins if login not in approvers]
            if strangers or teams:
                out.append(fail(f"env:{name}:reviewers",
                                f"environment {name}: required reviewers",
                                f"{', '.join(strangers + [f'team {t}' for t in teams])} may "
                                "approve but the manifest does not allow them", fix_reviewers))
            else:
                out.append(ok(f"env:{name}:reviewers", f"environment {name}: required reviewers",
                              f"{', '.join(logins)} (each an approver in the manifest)"))
        if rule is not None or not fallback:
            if rule is not None and rule.get("prevent_self_review"):
                out.append(ok(f"env:{name}:self-review", f"environment {name}: prevent "
                              "self-review", "on"))
            else:
                out.append(fail(f"env:{name}:self-review", f"environment {name}: prevent "
                                "self-review", "off: whoever starts a stage may approve it",
                                f"{where} → Required reviewers → check 'Prevent self-review'; "
                                f"or {self.setup}"))
        if env.get("can_admins_bypass", True):
            out.append(fail(f"env:{name}:admin-bypass", f"environment {name}: admin bypass",
                            "administrators may bypass its rules (and leave no approval)",
                            f"{where} → uncheck 'Allow administrators to bypass configured "
                            f"protection rules'; or {self.setup}"))
        else:
            out.append(ok(f"env:{name}:admin-bypass", f"environment {name}: admin bypass",
                          "off"))
        return out

    def _branches(self, name: str, env: dict[str, Any], where: str) -> Check:
        title = f"environment {name}: deployment branches"
        fix = (f"{where} → Deployment branches and tags → Selected branches and tags → add "
               f"{self.default_branch!r} only; or {self.setup}")
        policy = env.get("deployment_branch_policy")
        if not policy or not policy.get("custom_branch_policies"):
            what = "protected branches" if policy else "any branch"
            return fail(f"env:{name}:branches", title, f"{what} may deploy to it: a dispatch "
                        "from a branch with an edited workflow reaches its secrets", fix)
        status, data = self.get(f"/repos/{self.repo}/environments/{name}"
                                "/deployment-branch-policies?per_page=100")
        if status != 200:
            return skip(f"env:{name}:branches", title, f"its policies cannot be read "
                        f"(HTTP {status})")
        names = sorted(f"{p.get('type', 'branch')}:{p.get('name')}"
                       for p in data.get("branch_policies", []))
        if names != [f"branch:{self.default_branch}"]:
            return fail(f"env:{name}:branches", title, "allowed: " + (", ".join(names) or
                        "no branch at all"), fix)
        return ok(f"env:{name}:branches", title, f"{self.default_branch} only")

    # -- the state branch and the default branch ------------------------------------------

    def _state_branch(self) -> list[Check]:
        branch, repo = self.state_branch, self.repo
        out: list[Check] = []
        fix = f"{self.setup} (an orphan branch holding a README only); or docs/setup.md §2"
        status, _ = self.get(f"/repos/{repo}/branches/{branch}")
        if status == 404:
            out.append(fail("state:exists", f"state branch {branch}", "does not exist", fix))
        else:
            out.append(ok("state:exists", f"state branch {branch}", "exists"))
            status, data = self.get(f"/repos/{repo}/compare/{self.default_branch}...{branch}")
            if status == 404 and "No common ancestor" in str((data or {}).get("message", "")):
                out.append(ok("state:orphan", f"state branch {branch}: orphan",
                              f"no history in common with {self.default_branch}"))
            else:
                out.append(fail("state:orphan", f"state branch {branch}: orphan",
                                f"it shares history with {self.default_branch}",
                                "recreate it with `git switch --orphan` carrying only its "
                                "records (docs/setup.md §2)"))
            status, _ = self.get(f"/repos/{repo}/contents/.github?ref={branch}")
            if status == 404:
                out.append(ok("state:no-github", f"state branch {branch}: no .github/",
                              "none"))
            else:
                out.append(fail("state:no-github", f"state branch {branch}: no .github/",
                                "it holds .github/ (workflows the state token could change)",
                                f"delete .github/ from {branch} in a commit"))
        status, rules = self.get(f"/repos/{repo}/rules/branches/{branch}")
        title = f"state branch {branch}: ruleset"
        rule_fix = (f"Settings → Rules → Rulesets → New branch ruleset on {branch}: Block force "
                    f"pushes, Restrict deletions; or {self.setup}")
        if status != 200:
            out.append(skip("state:ruleset", title, f"rules cannot be read (HTTP {status})"))
            return out
        kinds = {r.get("type") for r in rules or []}
        missing = [k for k in STATE_RULES if k not in kinds]
        blocking = sorted(kinds & {"update", "pull_request", "creation"})
        if missing:
            names = {"non_fast_forward": "force pushes", "deletion": "deletion"}
            out.append(fail("state:ruleset", title, "nothing blocks " +
                            " or ".join(names[k] for k in missing) + " (a rewritten branch "
                            "orphans a minted token)", rule_fix))
        elif blocking:
            out.append(fail("state:ruleset", title, f"{', '.join(blocking)} also applies: the "
                            "workflows' own pushes (GITHUB_TOKEN) would be refused",
                            f"Settings → Rules → Rulesets: keep only Block force pushes and "
                            f"Restrict deletions on {branch} (docs/setup.md §2, §9b)"))
        else:
            out.append(ok("state:ruleset", title, "force pushes and deletion blocked"))
        return out

    def _default_branch(self) -> list[Check]:
        branch, repo = self.default_branch, self.repo
        out: list[Check] = []
        title = f"default branch {branch}: reviewed pull requests"
        status, rules = self.get(f"/repos/{repo}/rules/branches/{branch}")
        review = None
        for rule in rules if status == 200 else []:
            params = rule.get("parameters") or {}
            if rule.get("type") == "pull_request" and \
                    params.get("required_approving_review_count", 0) >= 1:
                review = (params.get("required_approving_review_count"),
                          bool(params.get("require_code_owner_review")), "a ruleset")
        if review is None:
            status, protection = self.get(f"/repos/{repo}/branches/{branch}/protection")
            reviews = (protection or {}).get("required_pull_request_reviews") \
                if status == 200 else None
            if reviews and reviews.get("required_approving_review_count", 0) >= 1:
                review = (reviews.get("required_approving_review_count"),
                          bool(reviews.get("require_code_owner_reviews")), "branch protection")
        fix = (f"Settings → Rules → Rulesets → New branch ruleset on the default branch: "
               f"Require a pull request, 1 approval, review from Code Owners; or {self.setup}")
        if review is None:
            out.append(fail("default:review", title, "a push changes the manifest (where every "
                            "new token goes) or the workflows without a review", fix))
        elif not review[1]:
            out.append(fail("default:review", title, f"{review[2]} requires {review[0]} "
                            "approval(s) but not the code owners'", fix))
        else:
            out.append(ok("default:review", title, f"{review[2]} requires {review[0]} "
                          "approval(s), the code owners' among them"))
        out.append(self._codeowners(branch))
        return out

    def _codeowners(self, branch: str) -> Check:
        title = "CODEOWNERS: manifest and workflows"
        lines = "; ".join(self.expected.codeowners)
        fix = f"add to .github/CODEOWNERS on {branch}: {lines}; or {self.setup}"
        for path in CODEOWNERS_FILES:
            status, data = self.get(f"/repos/{self.repo}/contents/{path}?ref={branch}")
            if status == 200 and isinstance(data, dict) and data.get("content") is not None:
                text = base64.b64decode(str(data["content"])).decode("utf-8", "replace")
                break
        else:
            return fail("default:codeowners", title, "no CODEOWNERS file", fix)
        approvers = set(self.expected.approvers)
        problems = []
        for owned in CODEOWNED:
            sample = owned.strip("/") + "/x.yml"
            owners = codeowners_of(text, sample) or []
            users = [o.removeprefix("@") for o in owners if "/" not in o]
            if not owners:
                problems.append(f"{owned} has no owner")
            elif any(u not in approvers for u in users):
                problems.append(f"{owned} is owned by {', '.join(owners)}, not only the "
                                "manifest's approvers")
        if problems:
            return fail("default:codeowners", title, f"{path}: " + "; ".join(problems), fix)
        return ok("default:codeowners", title, f"{path} names the approvers for "
                  f"{' and '.join(CODEOWNED)}")

    # -- secrets and variables -------------------------------------------------------------

    def _names(self, path: str, key: str) -> tuple[set[str] | None, int]:
        status, data = self.get(f"{path}?per_page=100" if key == "secrets" else
                                f"{path}?per_page=30")
        if status != 200:
            return None, status
        names = {row["name"] for row in data.get(key, [])}
        if data.get("total_count", 0) > len(names):  # more than one page: follow them all
            try:
                names = {row["name"] for row in self.api.get_all(path, key)}
            except VelvetError:
                return None, 0
        return names, status

    def _reads(self) -> list[Check]:
        out: list[Check] = []
        if not self.expected.jobs:
            return [skip("reads", "secrets and variables the workflows read",
                         "no .github/workflows here: run doctor from the repository's root")]
        cache: dict[tuple[str, str], tuple[set[str] | None, int]] = {}

        def names(kind: str, scope: str) -> tuple[set[str] | None, int]:
            key = "secrets" if kind == "secret" else "variables"
            base = (f"/repos/{self.repo}/environments/{scope}" if scope
                    else f"/repos/{self.repo}/actions")
            if (kind, scope) not in cache:
                cache[(kind, scope)] = self._names(f"{base}/{key}", key)
            return cache[(kind, scope)]

        for read in self.expected.reads:
            title = f"{read.kind} {read.name}"
            if not read.needed:
                out.append(skip(f"{read.kind}:{read.name}", title, f"not needed: "
                                f"{read.why_not}"))
                continue
            repo_names, repo_status = names(read.kind, "")
            scopes = list(read.environments) + ([""] if read.repository else [])
            missing, unreadable = [], []
            for scope in scopes:
                env_names, status = names(read.kind, scope) if scope else (repo_names,
                                                                             repo_status)
                if env_names is None and repo_names is None:
                    unreadable.append(f"{scope or 'the repository'} (HTTP {status})")
                elif read.name not in (env_names or set()) | (repo_names or set()):
                    missing.append(scope or "the repository")
            where = ", ".join(s or "the repository" for s in scopes)
            if missing:
                out.append(fail(f"{read.kind}:{read.name}", title,
                                f"not set for {', '.join(missing)} (read by "
                                f"{', '.join(read.workflows)})", self._read_fix(read, missing)))
            elif unreadable:
                out.append(skip(f"{read.kind}:{read.name}", title,
                                f"this token cannot list {read.kind}s of "
                                f"{', '.join(unreadable)}: give doctor a token with "
                                f"{'Secrets' if read.kind == 'secret' else 'Variables'} and "
                                "Environments read"))
            else:
                out.append(ok(f"{read.kind}:{read.name}", title, f"set where {where} read it "
                              "(names only)"))
        return out

    def _read_fix(self, read: Any, missing: list[str]) -> str:
        if read.kind == "secret":
            return (f"Settings → Environments → {missing[0]} → Add environment secret "
                    f"{read.name}; or {read.name}=... {self.setup} (the value from the "
                    "environment or standard input)")
        return (f"Settings → Secrets and variables → Actions → Variables → New repository "
                f"variable {read.name}; or {read.name}=... {self.setup}")

    # -- the GitHub App and the approvers ----------------------------------------------------

    def _app(self) -> list[Check]:
        title = "GitHub App (writes Actions secrets)"
        targets = self.expected.secret_repositories
        if not targets:
            return [skip("app", title, "the manifest writes no GitHub Actions secret")]
        client_id = self._variable(APP_CLIENT_VARIABLE)
        if not client_id:
            return [skip("app", title, f"the repository variable {APP_CLIENT_VARIABLE} (the "
                         "App's client id) is not set or not readable")]
        status, org = self.get(f"/orgs/{self.owner}")
        path = f"/orgs/{self.owner}/installations" if status == 200 else "/user/installations"
        status, data = self.get(f"{path}?per_page=100")
        if status != 200:
            return [skip("app", title, f"installations cannot be listed with this token "
                         f"(HTTP {status}): use an owner's or organisation admin's token")]
        found = next((i for i in data.get("installations", [])
                      if i.get("client_id") == client_id
                      and str(i.get("account", {}).get("login", "")).lower()
                      == self.owner.lower()), None)
        app_fix = (f"install the App (client id {client_id}) on {self.owner}, on the "
                   f"repositories {', '.join(targets)} (docs/setup.md §4)")
        if found is None:
            return [fail("app", title, f"no installation of client id {client_id} on "
                         f"{self.owner}", app_fix)]
        out: list[Check] = []
        permissions = found.get("permissions") or {}
        needed = {"secrets": "write"}
        kinds = {c.kind for cred in self.expected.manifest.credentials for c in cred.consumers
                 if c.kind == "github_actions_secret" and getattr(c, "environment", None)}
        if kinds:
            needed["environments"] = "write"
        lacking = [f"{k}: {v}" for k, v in needed.items() if permissions.get(k) != v]
        if lacking:
            out.append(fail("app:permissions", f"{title}: permissions", "lacks " +
                            ", ".join(lacking), "the App's settings → Permissions → Repository "
                            "permissions → " + ", ".join(lacking).replace("write",
                                                                          "Read and write") +
                            "; then accept the new permissions on the installation"))
        else:
            out.append(ok("app:permissions", f"{title}: permissions",
                          ", ".join(f"{k}: {v}" for k, v in needed.items())))
        out.append(self._app_repositories(found, targets, title))
        return out

    def _app_repositories(self, found: dict[str, Any], targets: list[str], title: str) -> Check:
        if found.get("repository_selection") == "all":
            return ok("app:repositories", f"{title}: repositories", "all of "
                      f"{self.owner}'s repositories")
        status, data = self.get(f"/user/installations/{found['id']}/repositories?per_page=100")
        if status != 200 and self.settings.github_token is not None:
            from .api import GitHubApi

            app = GitHubApi(self.settings.github_token, self.api.api_url)
            status, data = app.call("GET", "/installation/repositories?per_page=100")
        if status != 200:
            return skip("app:repositories", f"{title}: repositories", "the installation's "
                        f"repositories cannot be listed here (HTTP {status})")
        have = {r.get("full_name") for r in data.get("repositories", [])}
        missing = [t for t in targets if t not in have]
        if missing:
            return fail("app:repositories", f"{title}: repositories", "not installed on "
                        f"{', '.join(missing)}", f"the App's installation → Configure → "
                        f"Repository access: add {', '.join(missing)}; or {self.setup}")
        return ok("app:repositories", f"{title}: repositories", f"installed on "
                  f"{', '.join(targets)}")

    def _approvers(self) -> list[Check]:
        out: list[Check] = []
        for login in self.expected.approvers:
            title = f"approver {login}: write access"
            status, data = self.get(f"/repos/{self.repo}/collaborators/{login}/permission")
            fix = (f"Settings → Collaborators and teams → Add people: {login}, role Write "
                   "(an approver dispatches stages and reviews deployments)")
            if status == 404:
                out.append(fail(f"approver:{login}", title, "no such GitHub user", fix))
            elif status != 200:
                out.append(skip(f"approver:{login}", title, f"cannot be read (HTTP {status})"))
            elif data.get("permission") in WRITE:
                out.append(ok(f"approver:{login}", title, str(data.get("role_name"))))
            else:
                out.append(fail(f"approver:{login}", title,
                                f"has {data.get('permission')} access", fix))
        return out

    # -- Velvet's own credentials ------------------------------------------------------------

    def _bootstrap(self) -> list[Check]:
        if self.wiring is None:
            return []
        from os import environ

        out: list[Check] = []
        wiring = self.wiring()
        try:
            seen: set[str] = set()
            for config in self._targets():
                key = config.describe()
                if key in seen:
                    continue
                seen.add(key)
                out.append(self._probe(wiring, config, environ))
            out += self._aws_users(wiring)
            out += self._notifications(wiring)
        finally:
            wiring.close()
        return out

    def _targets(self) -> Iterator[TargetConfig]:
        for cred in self.expected.manifest.credentials:
            if not cred.active or cred.env not in self.expected.envs:
                continue
            yield cred.vault
            for consumer in cred.consumers:
                if consumer.active and consumer.env == cred.env:
                    yield consumer

    def _probe(self, wiring: Any, config: TargetConfig, environ: Any) -> Check:
        needs = REACHED_WITH.get(config.kind, ())
        title = f"reach {config.describe()}"
        absent = [name for name in needs if not environ.get(name)]
        if absent:
            return skip(f"reach:{config.describe()}", title, f"{', '.join(absent)} not set "
                        "here (velvet-doctor.yml runs where the bootstrap secrets are)")
        try:
            target = wiring.target(config)
            detail = target.probe().removeprefix(f"{getattr(target, 'what', '')}: ")
        except VelvetError as exc:
            with_what = ", ".join(needs) or "the AWS role"
            return fail(f"reach:{config.describe()}", title, str(exc),
                        f"check {with_what} (a revoked or wrong value, or one without access "
                        f"there); runbook section 8 replaces a bootstrap credential")
        return ok(f"reach:{config.describe()}", title, detail)

    def _aws_users(self, wiring: Any) -> list[Check]:
        """The AWS role reaches each rotated IAM user's keys (ListAccessKeys, a read)."""
        from velvet_runner.aws import translate

        out: list[Check] = []
        for cred in self.expected.manifest.credentials:
            if cred.vendor != "aws_iam" or not cred.active or cred.env not in self.expected.envs:
                continue
            user, region = cred.options.user_name, cred.options.region
            title = f"reach IAM user {user}'s access keys ({cred.name})"
            try:
                keys = wiring.aws.client("iam", region).list_access_keys(UserName=user)
            except Exception as exc:  # noqa: BLE001 - translated below
                try:
                    error: VelvetError = translate(exc, f"iam ListAccessKeys {user}")
                except Exception:  # noqa: BLE001 - not a botocore error: name it
                    error = VelvetError(type(exc).__name__)
                out.append(fail(f"reach:iam:{user}", title, str(error), "grant the AWS role "
                                f"iam:ListAccessKeys, iam:CreateAccessKey, iam:DeleteAccessKey, "
                                f"iam:UpdateAccessKey on {user} (docs/setup.md §5)"))
                continue
            count = len(keys.get("AccessKeyMetadata", []))
            out.append(ok(f"reach:iam:{user}", title, f"{count} key(s)"))
        return out

    def _notifications(self, wiring: Any) -> list[Check]:
        out: list[Check] = []
        s = self.settings
        title = "Slack (VELVET_SLACK_TOKEN) reaches VELVET_SLACK_CHANNEL"
        if s.slack_token is None or not s.slack_channel:
            out.append(skip("notify:slack", title, "VELVET_SLACK_TOKEN or VELVET_SLACK_CHANNEL "
                            "not set here"))
        else:
            out.append(_slack(wiring, s, title))
        title = "Postmark (VELVET_POSTMARK_SERVER_TOKEN)"
        if s.postmark_server_token is None:
            out.append(skip("notify:postmark", title, "not set here"))
        else:
            out.append(_postmark(wiring, s, title))
        return out


def _slack(wiring: Any, s: Settings, title: str) -> Check:
    from velvet_runner.client import make_client

    assert s.slack_token is not None  # noqa: S101 - checked by the caller
    fix = ("replace VELVET_SLACK_TOKEN in the velvet-* environments (runbook section 8) and "
           "invite the bot to the channel")
    try:
        with make_client(s.slack_api_url, headers={
                "Authorization": f"Bearer {s.slack_token.get_secret_value()}"}) as client:
            auth = client.post("auth.test").json()
            if not auth.get("ok"):
                return fail("notify:slack", title, f"auth.test: {auth.get('error')}", fix)
            info = client.get("conversations.info", params={"channel": s.slack_channel}).json()
    except Exception as exc:  # noqa: BLE001 - any transport failure is the finding
        return fail("notify:slack", title, f"Slack unreachable: {type(exc).__name__}", fix)
    if not info.get("ok"):
        return fail("notify:slack", title, f"conversations.info: {info.get('error')}", fix)
    channel = info.get("channel") or {}
    if not channel.get("is_member") or channel.get("is_archived"):
        return fail("notify:slack", title, f"the bot is not in {s.slack_channel} (or it is "
                    "archived)", fix)
    return ok("notify:slack", title, f"as {auth.get('user')}, in {s.slack_channel}")


def _postmark(wiring: Any, s: Settings, title: str) -> Check:
    from velvet_runner.client import make_client

    assert s.postmark_server_token is not None  # noqa: S101 - checked by the caller
    try:
        with make_client(s.postmark_api_url, headers={
                "Accept": "application/json",
                "X-Postmark-Server-Token": s.postmark_server_token.get_secret_value()}) as client:
            response = client.get("/server")
    except Exception as exc:  # noqa: BLE001 - any transport failure is the finding
        return fail("notify:postmark", title, f"Postmark unreachable: {type(exc).__name__}",
                    "check VELVET_POSTMARK_API_URL and the network")
    if response.status_code != 200:
        return fail("notify:postmark", title, f"GET /server: HTTP {response.status_code}",
                    "replace VELVET_POSTMARK_SERVER_TOKEN in the velvet-* environments "
                    "(runbook section 8)")
    return ok("notify:postmark", title, f"server {response.json().get('Name', '?')}")
