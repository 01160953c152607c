"""`velvet doctor`: the GitHub side of a Velvet repository and Velvet's own credentials, checked
read-only through their APIs against what the manifest and the workflows need (expect.py).

One `Check` per fact: `ok`, `fail` with the exact fix (the settings path, or the `velvet
setup github` change that makes it), or `skip` with why it could not be checked here (a token
that may not read secrets, a bootstrap credential not present on this machine). Nothing is
written anywhere: every GitHub call is a GET, every vendor call a read (the targets' `probe`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import VelvetError

from . import access, branches
from .checklist import Check, fail, ok, skip
from .expect import FALLBACK_VARIABLE, Expected
from .reach import reach_checks

if TYPE_CHECKING:
    from velvet_runner.settings import Settings

    from .api import GitHubApi


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

    def _bootstrap(self) -> list[Check]:
        if self.wiring is None:
            return []
        return reach_checks(self.expected, self.settings, self.wiring)

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
        checks += self._environments()
        for section in (branches.state_branch, branches.default_branch, access.reads,
                        access.app, access.approvers):
            checks += section(self)
        checks += self._bootstrap()
        return checks

    # -- environments ----------------------------------------------------------------------

    def variable(self, name: str) -> str | None:
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
        fallback = (self.variable(FALLBACK_VARIABLE) or "").lower() == "true"
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
