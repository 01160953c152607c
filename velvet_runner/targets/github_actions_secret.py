"""A GitHub Actions secret: repository, environment or organisation (vendor-apis.md 5.2, 5.3).

Values are sealed with libsodium's sealed box for the scope's own public key (an environment
has a key of its own). GitHub never returns a secret's value, so this target is write-only: its
consumers are validated by their health checks, not by readback.
"""

from __future__ import annotations

import base64
import weakref
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, StrictStr, model_validator

from velvet_runner.errors import NotFound, VendorRejected
from velvet_runner.manifest_models import TargetConfig
from velvet_runner.targets import register
from velvet_runner.targets.base import Target

if TYPE_CHECKING:
    import httpx

    from velvet_runner.wiring import Wiring

_KEYS: weakref.WeakKeyDictionary[httpx.Client, dict[str, tuple[str, bytes]]] = (
    weakref.WeakKeyDictionary())


class GithubActionsSecret(TargetConfig):
    kind: Literal["github_actions_secret"]
    secret: Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    repository: Annotated[StrictStr, Field(pattern=r"^[\w.-]+/[\w.-]+$")] | None = None
    environment: StrictStr | None = None
    org: StrictStr | None = None
    visibility: Literal["all", "private", "selected"] = "private"

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


class GithubActionsSecretTarget(Target):
    kind: ClassVar[str] = "github_actions_secret"
    config_model: ClassVar[type[TargetConfig]] = GithubActionsSecret
    READABLE: ClassVar[bool] = False

    @classmethod
    def build(cls, config: Any, wiring: Wiring) -> GithubActionsSecretTarget:
        return cls(config, wiring.github_client)

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
        # Imported here: the manifest imports this module for GithubActionsSecret, without httpx.
        from velvet_runner.client import request

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

    def fingerprint(self) -> str | None:
        return None

    def updated_at(self) -> str | None:
        try:
            meta = self._call("GET", f"{self.base}/{self.config.secret}",
                              f"GET {self.what}").json()
        except NotFound:
            return None
        return str(meta.get("updated_at"))

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


register(GithubActionsSecretTarget)
