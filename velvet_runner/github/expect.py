"""What the GitHub side of a Velvet repository must be, from its manifest and its workflows:
`velvet doctor` checks it and `velvet setup github` makes it (docs/setup.md is the manual way).

    expected = Expected.of(manifest, envs=["prod"], workflows=Path(".github/workflows"))
    expected.environments      velvet-<env>, -revoke (gates: the approvers review) and -verify
    expected.reads             every secret and variable a workflow's job reads, and where from
    expected.unpassed          secrets the manifest's adapters declare that no workflow passes
    expected.codeowners        the CODEOWNERS lines for the manifest and the workflows

Which environments a job reads from is read off its `environment:` expression: the names it
can form with the workflows' `env` input (`velvet-${{ inputs.env }}-revoke`,
`format('velvet-{0}', inputs.env)`). A job without one reads repository secrets and variables.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from velvet_runner.manifest import Manifest

# velvet-<env><suffix>: whether it gates (its required reviewers are the approvers)
ENVIRONMENTS: tuple[tuple[str, bool], ...] = (("", True), ("-revoke", True), ("-verify", False))
STATE_RULES = ("non_fast_forward", "deletion")  # on the state branch: no force-push, no delete
CODEOWNED = ("/manifest/", "/.github/workflows/")  # what only a reviewed pull request changes
FALLBACK_VARIABLE = "VELVET_FALLBACK_APPROVAL"
APP_CLIENT_VARIABLE = "VELVET_APP_CLIENT_ID"
_ENV_TEMPLATE = re.compile(
    r"velvet-(?:\$\{\{\s*inputs\.env(?:\s*\|\|\s*'[a-z-]*')?\s*\}\}|\{0\})(-[a-z]+)?")
_LITERAL_ENV = re.compile(r"^[\w.-]+$")
_SECRET = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)")
_VARIABLE = re.compile(r"vars\.([A-Za-z_][A-Za-z0-9_]*)")


def _uses(manifest: Manifest, *kinds: str) -> bool:
    """Whether any credential's vendor, vault or consumer is one of `kinds`."""
    return any(c.vendor in kinds or c.vault.kind in kinds or
               any(x.kind in kinds for x in c.consumers) for c in manifest.credentials)


# A secret or variable the workflows read -> (whether this manifest needs it, why). Anything a
# workflow reads that is not named here is needed.
NEEDS: dict[str, Any] = {
    "VELVET_HEROKU_TOKEN": (lambda m: _uses(m, "heroku", "heroku_config_var"),
                            "the manifest has no Heroku credential or config var"),
    "VELVET_INFISICAL_CLIENT_ID": (lambda m: _uses(m, "infisical_secret"),
                                   "the manifest has no Infisical vault or secret"),
    "VELVET_INFISICAL_CLIENT_SECRET": (lambda m: _uses(m, "infisical_secret"),
                                       "the manifest has no Infisical vault or secret"),
    "VELVET_AWS_ROLE_ARN": (lambda m: _uses(m, "aws_iam", "aws_ssm_parameter"),
                            "the manifest has nothing on AWS"),
    "VELVET_AWS_VERIFY_ROLE_ARN": (lambda m: _uses(m, "aws_iam", "aws_ssm_parameter"),
                                   "the manifest has nothing on AWS"),
    "VELVET_AWS_REGION": (lambda m: _uses(m, "aws_iam", "aws_ssm_parameter"),
                          "the manifest has nothing on AWS"),
    FALLBACK_VARIABLE: (lambda m: False, "optional: set to true only on plans without "
                        "required reviewers (docs/setup.md section 3b)"),
    **{name: (lambda m: False, "optional: only velvet-deploy-status.yml reads it, to deploy "
              "the status app (docs/setup.md section 11)")
       for name in ("VELVET_STATUS_APP", "VELVET_STATUS_DEPLOY_TOKEN", "VELVET_STATUS_URL",
                    "VELVET_STATUS_TOKEN", "VELVET_SMOKE_WAIT_SECONDS")},
    "VELVET_DOCTOR_TOKEN": (lambda m: False, "optional: a read-only token for "
                            "velvet-doctor.yml (without it, the run's GITHUB_TOKEN, which may "
                            "not read secrets, variables or installations)"),
}


def declared_secrets() -> dict[str, tuple[str, ...]]:
    """Velvet's own secrets the adapters declare (client.Api auth), each with the vendor and
    target kinds that read it; settings every command reads (VELVET_GITHUB_TOKEN) are not
    among them."""
    from velvet_runner.settings import VARIABLES
    from velvet_runner.targets import load_all as load_targets
    from velvet_runner.vendors import load_all as load_vendors

    core = {var.name for var in VARIABLES}
    apis = [(kind, vendor.APIS) for kind, vendor in load_vendors().items()]
    apis += [(kind, target.APIS) for kind, target in load_targets().items()]
    kinds: dict[str, list[str]] = {}
    for kind, declared in apis:
        for name in (n for api in declared for n in api.secrets if n not in core):
            kinds.setdefault(name, []).append(kind)
    return {name: tuple(dict.fromkeys(found)) for name, found in kinds.items()}


def need(name: str, declared: dict[str, tuple[str, ...]] | None = None
         ) -> tuple[Any, str] | None:
    """NEEDS' rule for `name`, else one from the adapters that declare it (`declared`, else
    declared_secrets()): needed when the manifest uses one of their kinds (a new adapter's
    secret needs no line here)."""
    if name in NEEDS:
        return NEEDS[name]  # type: ignore[no-any-return]
    kinds = (declared if declared is not None else declared_secrets()).get(name)
    if kinds is None:
        return None
    return (lambda m: _uses(m, *kinds), f"the manifest uses none of {', '.join(kinds)}")


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    env: str
    gated: bool
    reviewers: tuple[str, ...]  # the manifest's approvers for `env` (gated ones)


@dataclass(frozen=True)
class Read:
    """A secret or variable some workflow job reads, and the scopes it is read from."""

    kind: str  # "secret" or "variable"
    name: str
    environments: tuple[str, ...]  # the environments of the jobs that read it
    repository: bool  # a job without an environment reads it: a repository secret or variable
    workflows: tuple[str, ...]
    needed: bool
    why_not: str = ""  # why this manifest does not need it


@dataclass
class JobRead:
    workflow: str
    job: str
    environments: list[str]  # templates with {env}, or literal names
    secrets: set[str] = field(default_factory=set)
    variables: set[str] = field(default_factory=set)


def job_environments(expression: object) -> list[str]:
    """The environment names (with `{env}` for the env input) a job's `environment:` forms."""
    if isinstance(expression, dict):
        expression = expression.get("name")
    if not expression:
        return []
    text = str(expression)
    found = [f"velvet-{{env}}{m.group(1) or ''}" for m in _ENV_TEMPLATE.finditer(text)]
    if found:
        return list(dict.fromkeys(found))
    return [text] if _LITERAL_ENV.match(text) else []


def read_workflows(folder: Path) -> list[JobRead]:
    """What every job of every workflow in `folder` reads (secrets, variables, environment)."""
    import yaml

    out: list[JobRead] = []
    for path in sorted(folder.glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            continue
        for job_id, job in (doc.get("jobs") or {}).items():
            if not isinstance(job, dict):
                continue
            text = json.dumps(job)
            out.append(JobRead(path.name, str(job_id), job_environments(job.get("environment")),
                               set(_SECRET.findall(text)) - {"GITHUB_TOKEN"},
                               set(_VARIABLE.findall(text))))
    return out


@dataclass(frozen=True)
class Expected:
    manifest: Manifest
    envs: tuple[str, ...]
    jobs: tuple[JobRead, ...]

    @classmethod
    def of(cls, manifest: Manifest, *, envs: list[str] | None = None,
           workflows: Path | None = None) -> Expected:
        served = list(manifest.approvers_by_env())
        chosen = tuple(envs or served or ["prod"])
        jobs = tuple(read_workflows(workflows)) if workflows and workflows.is_dir() else ()
        return cls(manifest, chosen, jobs)

    @property
    def approvers(self) -> list[str]:
        """Every login allowed to approve in the chosen envs, in manifest order."""
        gates = self.manifest.approvers_by_env()
        return list(dict.fromkeys(login for env in self.envs for login in gates.get(env, [])))

    @property
    def environments(self) -> list[EnvironmentSpec]:
        gates = self.manifest.approvers_by_env()
        return [EnvironmentSpec(f"velvet-{env}{suffix}", env, gated,
                                tuple(gates.get(env, [])) if gated else ())
                for env in self.envs for suffix, gated in ENVIRONMENTS]

    @property
    def secret_repositories(self) -> list[str]:
        """owner/name of every repository whose Actions secrets a consumer in these envs is."""
        return sorted({str(getattr(c, "repository", "")) for cred in self.manifest.credentials
                       for c in cred.consumers
                       if c.kind == "github_actions_secret" and c.env in self.envs
                       and getattr(c, "repository", None)})

    @property
    def app_permissions(self) -> dict[str, str]:
        """What the App's installation must grant for the writes these envs' consumers need:
        repository secrets always, an environment's secrets and an organisation's when a
        consumer is one (GitHub answers 403 "Resource not accessible by integration")."""
        secrets = [c for cred in self.manifest.credentials for c in cred.consumers
                   if c.kind == "github_actions_secret" and c.env in self.envs]
        needed = {"secrets": "write"}
        if any(getattr(c, "environment", None) for c in secrets):
            needed["environments"] = "write"
        if any(getattr(c, "org", None) for c in secrets):
            needed["organization_secrets"] = "write"
        return needed

    @property
    def codeowners(self) -> list[str]:
        owners = " ".join(f"@{login}" for login in self.approvers)
        return [f"{path} {owners}" for path in CODEOWNED]

    @property
    def unpassed(self) -> dict[str, tuple[str, ...]]:
        """Secrets the manifest's kinds declare that no workflow job reads, with those kinds:
        a run would start without them (an adapter added, its secret never passed on)."""
        if not self.jobs:
            return {}
        read = {name for job in self.jobs for name in job.secrets}
        return {name: used for name, kinds in declared_secrets().items() if name not in read
                and (used := tuple(k for k in kinds if _uses(self.manifest, k)))}

    @property
    def reads(self) -> list[Read]:
        """Each secret and variable the workflows read, where from, and whether it is needed."""
        found: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
        for job in self.jobs:
            names = [t.format(env=env) for t in job.environments for env in self.envs] or [""]
            for kind, items in (("secret", job.secrets), ("variable", job.variables)):
                for name in items:
                    scopes, files = found.setdefault((kind, name), (set(), set()))
                    scopes.update(names)
                    files.add(job.workflow)
        out = []
        declared = declared_secrets()  # once: it walks every adapter's declared APIs
        for (kind, name), (scopes, files) in sorted(found.items()):
            rule = need(name, declared)
            needed = True if rule is None else bool(rule[0](self.manifest))
            why = "" if needed or rule is None else str(rule[1])
            out.append(Read(kind, name, tuple(sorted(s for s in scopes if s)), "" in scopes,
                            tuple(sorted(files)), needed, why))
        return out
