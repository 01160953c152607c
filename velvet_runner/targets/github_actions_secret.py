"""A GitHub Actions secret: repository, environment or organisation (vendor-apis.md 5.2, 5.3).

Values are sealed with libsodium's sealed box for the scope's own public key (an environment
has a key of its own). GitHub never returns a secret's value, so this target is write-only: its
consumers are validated by their health checks, not by readback.
"""

from __future__ import annotations

import base64
import re
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, StrictStr, model_validator

from velvet_runner.client import Api, Bearer, RetryPolicy, follow_links, request
from velvet_runner.errors import NotFound, VendorError, VendorRejected
from velvet_runner.manifest_models import TargetConfig
from velvet_runner.targets import register
from velvet_runner.targets.base import Found, Stamped

if TYPE_CHECKING:
    import httpx

    from velvet_runner.client import Supplies
    from velvet_runner.manifest import Manifest
    from velvet_runner.manifest_models import Credential

# The REST API with a GitHub App installation token that may write secrets only.
GITHUB = Api("github", "https://api.github.com",
             headers=(("Accept", "application/vnd.github+json"),
                      ("X-GitHub-Api-Version", "2022-11-28")),
             auth=Bearer("VELVET_GITHUB_TOKEN"))

WORKFLOWS = ".github/workflows"

_KEYS: weakref.WeakKeyDictionary[httpx.Client, dict[str, tuple[str, bytes]]] = (
    weakref.WeakKeyDictionary())


class GithubActionsSecret(TargetConfig):
    kind: Literal["github_actions_secret"] = Field(
        description="A GitHub Actions secret of a repository, environment or organisation.")
    secret: Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                       description="The secret's name.")]
    repository: Annotated[StrictStr, Field(pattern=r"^[\w.-]+/[\w.-]+$")] | None = Field(
        None, description="owner/name of the repository (give this or org).")
    environment: StrictStr | None = Field(
        None, description="A deployment environment of the repository: the secret is that "
        "environment's.")
    org: StrictStr | None = Field(None, description="An organisation: the secret is the "
                                  "organisation's (give this or repository).")
    visibility: Literal["all", "private", "selected"] = Field(
        "private", description="Which repositories see an organisation secret.")

    @model_validator(mode="after")
    def _one_scope(self) -> GithubActionsSecret:
        if (self.repository is None) == (self.org is None):
            raise ValueError("give exactly one of repository or org")
        if self.environment is not None and self.repository is None:
            raise ValueError("an environment secret needs repository")
        return self

    def place(self) -> tuple[str, ...]:
        # GitHub compares repository, environment and secret names without case (it stores
        # secret names upper-cased).
        scope = (f"org {self.org}" if self.org
                 else f"repo {self.repository} environment {self.environment or ''}")
        return (self.kind, scope.casefold(), self.secret.upper())

    def describe(self) -> str:
        if self.org:
            return f"github org {self.org} secret {self.secret}"
        env = f" environment {self.environment}" if self.environment else ""
        return f"github {self.repository}{env} secret {self.secret}"


class GithubActionsSecretTarget(Stamped):
    kind: ClassVar[str] = "github_actions_secret"
    config_model: ClassVar[type[TargetConfig]] = GithubActionsSecret
    VENDOR: ClassVar[str] = "GitHub"
    NOTHING: ClassVar[str] = "no such secret"
    APIS: ClassVar[tuple[Api, ...]] = (GITHUB,)
    # GitHub asks for at most 100 concurrent requests per client.
    BOUND: ClassVar[int | None] = 32
    BUDGET: ClassVar[Api | None] = GITHUB

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> GithubActionsSecretTarget:
        return cls(config, supplies.client(GITHUB))

    def __init__(self, config: GithubActionsSecret, client: httpx.Client) -> None:
        """`client` carries a GitHub App installation token with secrets write only."""
        self.config = config
        self.client = client
        if config.org:
            self.base = f"/orgs/{config.org}/actions/secrets"
        elif config.environment:
            self.base = f"/repos/{config.repository}/environments/{config.environment}/secrets"
        else:
            self.base = f"/repos/{config.repository}/actions/secrets"
        self.what = config.describe()

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        return request(self.client, method, path, what, **kwargs)

    def _public_key(self, *, fresh: bool = False) -> tuple[str, bytes]:
        # One GET per scope and client, not per secret: 500 secrets in one repository would
        # otherwise spend 500 requests of GitHub's budget on the same key.
        cache = _KEYS.setdefault(self.client, {})
        if not fresh and self.base in cache:
            return cache[self.base]
        key = self._call("GET", f"{self.base}/public-key",
                         f"public key for {self.what}").json()
        cache[self.base] = (str(key["key_id"]), base64.b64decode(key["key"]))
        return cache[self.base]

    def write(self, value: SecretStr) -> None:
        from nacl.public import PublicKey, SealedBox

        self.before_write()  # when GitHub last stored it: `shows` compares the two times
        for fresh in (False, True):
            key_id, key = self._public_key(fresh=fresh)
            sealed = SealedBox(PublicKey(key)).encrypt(value.get_secret_value().encode("utf-8"))
            body: dict[str, Any] = {"encrypted_value": base64.b64encode(sealed).decode("ascii"),
                                    "key_id": key_id}
            if self.config.org:
                body["visibility"] = self.config.visibility
            try:
                self._call("PUT", f"{self.base}/{self.config.secret}",
                           f"PUT {self.what}", json=body)
                return
            except VendorRejected as exc:
                # 422: the scope's key changed since it was cached; fetch it again, once.
                if fresh or exc.status != 422:
                    raise

    def read(self) -> SecretStr | None:
        raise VendorRejected(f"{self.what}: GitHub never returns secret values")

    def updated_at(self) -> str | None:
        try:
            meta = self._call("GET", f"{self.base}/{self.config.secret}",
                              f"GET {self.what}").json()
        except NotFound:
            return None
        updated = meta.get("updated_at") if isinstance(meta, dict) else None
        return str(updated) if updated else None

    def delete(self) -> None:
        self._call("DELETE", f"{self.base}/{self.config.secret}", f"DELETE {self.what}")

    def probe(self) -> str:
        if self.config.repository:
            self._call("GET", f"/repos/{self.config.repository}",
                       f"GET repository {self.config.repository}")
        key_id, key = self._public_key(fresh=True)
        if len(key) != 32:
            raise VendorRejected(f"{self.what}: public key is not a Curve25519 key")
        updated = self.updated_at()
        return f"{self.what}: public key {key_id} valid; " + (
            f"secret last updated {updated}" if updated else "secret not set yet")

    @classmethod
    def sweep(cls, supplies: Supplies, manifest: Manifest,
              credential: Credential) -> Iterator[Found]:
        """GitHub never shows a secret's value, so a sweep finds who may use one: the workflow
        files (`.github/workflows/*.yml` on the default branch, through the contents API) that
        name one of the secrets the manifest writes for `credential`, in every repository the
        App's installation can see (`GET /installation/repositories`) that the manifest does
        not list. A repository of an organisation the manifest writes that secret to as an
        organisation secret reads the declared one, and is left out too."""
        mine = _secrets(credential)
        names = sorted({c.secret.upper() for c in mine})
        if not names:
            return
        listed = {c.repository for cred in manifest.credentials for c in _secrets(cred)
                  if c.repository}
        orgs = {c.org for c in mine if c.org}
        pattern = re.compile(r"\bsecrets\s*(?:\.\s*(\w+)|\[\s*['\"](\w+)['\"]\s*\])",
                             re.IGNORECASE)
        client = supplies.client(GITHUB)
        call = RetryPolicy(sleep=supplies.sleep).run

        def get(url: str, what: str) -> Any:
            return call(lambda: request(client, "GET", url, what)).json()

        repos = call(lambda: follow_links(client, "/installation/repositories?per_page=100",
                                          "github installation repositories"))
        for repo in repos:
            full = str(repo.get("full_name")) if isinstance(repo, dict) else ""
            if not full or full in listed or full.partition("/")[0] in orgs:
                continue
            try:
                entries = get(f"/repos/{full}/contents/{WORKFLOWS}", f"github {full} workflows")
            except NotFound:
                continue  # no workflows
            except VendorError as exc:
                yield Found(f"github {full}", error=str(exc))
                continue
            for entry in entries if isinstance(entries, list) else []:
                path = str(entry.get("path", ""))
                if entry.get("type") != "file" or not path.endswith((".yml", ".yaml")):
                    continue
                try:
                    body = get(f"/repos/{full}/contents/{path}", f"github {full} {path}")
                    text = base64.b64decode(str(body.get("content", ""))).decode(
                        "utf-8", "replace")
                except (VendorError, ValueError) as exc:
                    yield Found(f"github {full} {path}", error=str(exc))
                    continue
                yield Found(f"github {full} {path}")  # read: one more place searched
                for number, line in enumerate(text.splitlines(), start=1):
                    for match in pattern.finditer(line):
                        name = (match.group(1) or match.group(2)).upper()
                        if name in names:
                            yield Found(f"github {full}", reference=f"{path}:{number} "
                                        f"secrets.{name}")


def _secrets(credential: Credential) -> list[GithubActionsSecret]:
    configs: list[object] = list(credential.consumers)
    return [c for c in configs if isinstance(c, GithubActionsSecret)]


register(GithubActionsSecretTarget)
