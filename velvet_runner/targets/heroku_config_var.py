"""A Heroku app's config var (vendor-apis.md 1.2). PATCH merges and restarts the app's dynos."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import SecretStr

from velvet_runner.client import request
from velvet_runner.errors import VendorError
from velvet_runner.manifest import HerokuConfigVar
from velvet_runner.targets import register
from velvet_runner.targets.base import Target

REFILL_PER_SECOND = 75 / 60  # Heroku's bucket refills about 75 tokens a minute

if TYPE_CHECKING:
    from velvet_runner.wiring import Wiring


class HerokuConfigVarTarget(Target):
    kind: ClassVar[str] = "heroku_config_var"

    @classmethod
    def build(cls, config: Any, wiring: Wiring) -> HerokuConfigVarTarget:
        return cls(config, wiring.heroku_bootstrap_client)

    def __init__(self, config: HerokuConfigVar, client: httpx.Client) -> None:
        """`client` carries Velvet's own Heroku token (HK_VELVET_BOOTSTRAP)."""
        self.config = config
        self.client = client
        self.path = f"/apps/{config.app}/config-vars"
        self.what = f"heroku app {config.app} config var {config.var}"

    def write(self, value: SecretStr) -> None:
        request(self.client, "PATCH", self.path, f"PATCH {self.what}",
                json={self.config.var: value.get_secret_value()})

    def read(self) -> SecretStr | None:
        config = request(self.client, "GET", self.path, f"GET {self.what}").json()
        value = config.get(self.config.var)
        return SecretStr(value) if isinstance(value, str) else None

    def delete(self) -> None:
        request(self.client, "PATCH", self.path, f"unset {self.what}",
                json={self.config.var: None})

    def probe(self) -> str:
        request(self.client, "GET", f"/apps/{self.config.app}", f"GET heroku app {self.config.app}")
        present = self.read() is not None
        return f"app {self.config.app} exists; config readable; {self.config.var} " + (
            "set" if present else "not set yet")

    def backoff_hint(self) -> float | None:
        """Heroku sends no Retry-After: ask the free rate-limit endpoint how long to wait."""
        try:
            remaining = request(self.client, "GET", "/account/rate-limits",
                                "heroku rate limits").json().get("remaining", 0)
        except VendorError:
            return None
        return 0.0 if remaining > 0 else 1 / REFILL_PER_SECOND


register(HerokuConfigVarTarget)
