"""A GitHub Actions secret: repository, environment or organisation (vendor-apis.md 5.2, 5.3).

Values are sealed with libsodium's sealed box for the scope's own public key (an environment
has a key of its own). GitHub never returns a secret's value, so this target is write-only: its
consumers are validated by their health checks, not by readback.
"""

from __future__ import annotations

import base64
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import SecretStr

from velvet_runner.client import request
from velvet_runner.errors import NotFound, VendorRejected
from velvet_runner.manifest import GithubActionsSecret
from velvet_runner.targets import register
from velvet_runner.targets.base import Target

_KEYS: weakref.WeakKeyDictionary[httpx.Client, dict[str, tuple[str, bytes]]] = (
    weakref.WeakKeyDictionary())

if TYPE_CHECKING:
    from velvet_runner.wiring import Wiring


class GithubActionsSecretTarget(Target):
    kind: ClassVar[str] = "github_actions_secret"
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

    def _public_key(self, *, fresh: bool = False) -> tuple[str, bytes]:
        # One GET per scope and client, not per secret: 500 secrets in one repository would
        # otherwise spend 500 requests of GitHub's budget on the same key.
        cache = _KEYS.setdefault(self.client, {})
        if not fresh and self.base in cache:
            return cache[self.base]
        key = request(self.client, "GET", f"{self.base}/public-key",
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
                request(self.client, "PUT", f"{self.base}/{self.config.secret}",
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
            meta = request(self.client, "GET", f"{self.base}/{self.config.secret}",
                           f"GET {self.what}").json()
        except NotFound:
            return None
        return str(meta.get("updated_at"))

    def delete(self) -> None:
        request(self.client, "DELETE", f"{self.base}/{self.config.secret}", f"DELETE {self.what}")

    def probe(self) -> str:
        if self.config.repository:
            request(self.client, "GET", f"/repos/{self.config.repository}",
                    f"GET repository {self.config.repository}")
        key_id, key = self._public_key(fresh=True)
        if len(key) != 32:
            raise VendorRejected(f"{self.what}: public key is not a Curve25519 key")
        updated = self.updated_at()
        return f"{self.what}: public key {key_id} valid; " + (
            f"secret last updated {updated}" if updated else "secret not set yet")


register(GithubActionsSecretTarget)
