"""A Heroku app's config var (vendor-apis.md 1.2). PATCH merges and restarts the app's dynos."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, StrictStr

from velvet_runner.errors import VendorError
from velvet_runner.manifest_models import TargetConfig
from velvet_runner.targets import register
from velvet_runner.targets.base import Target

REFILL_PER_SECOND = 75 / 60  # Heroku's bucket refills about 75 tokens a minute

if TYPE_CHECKING:
    import httpx

    from velvet_runner.wiring import Wiring


class HerokuConfigVar(TargetConfig):
    kind: Literal["heroku_config_var"]
    app: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]{1,99}$")]
    var: Annotated[StrictStr, Field(pattern=r"^\w+$")]

    def describe(self) -> str:
        return f"heroku app {self.app} config var {self.var}"

    def place(self) -> tuple[str, ...]:
        return (self.kind, self.app, self.var)


class HerokuConfigVarTarget(Target):
    kind: ClassVar[str] = "heroku_config_var"
    config_model: ClassVar[type[TargetConfig]] = HerokuConfigVar

    @classmethod
    def build(cls, config: Any, wiring: Wiring) -> HerokuConfigVarTarget:
        return cls(config, wiring.heroku_bootstrap_client)

    def __init__(self, config: HerokuConfigVar, client: httpx.Client) -> None:
        """`client` carries Velvet's own Heroku token (HK_VELVET_BOOTSTRAP)."""
        self.config = config
        self.client = client
        self.path = f"/apps/{config.app}/config-vars"
        self.what = f"heroku app {config.app} config var {config.var}"

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        # Imported here: the manifest imports this module for HerokuConfigVar, without httpx.
        from velvet_runner.client import request

        return request(self.client, method, path, what, **kwargs)

    def write(self, value: SecretStr) -> None:
        self._call("PATCH", self.path, f"PATCH {self.what}",
                   json={self.config.var: value.get_secret_value()})

    def read(self) -> SecretStr | None:
        config = self._call("GET", self.path, f"GET {self.what}").json()
        value = config.get(self.config.var)
        return SecretStr(value) if isinstance(value, str) else None

    def delete(self) -> None:
        self._call("PATCH", self.path, f"unset {self.what}",
                   json={self.config.var: None})

    def probe(self) -> str:
        self._call("GET", f"/apps/{self.config.app}", f"GET heroku app {self.config.app}")
        present = self.read() is not None
        return f"app {self.config.app} exists; config readable; {self.config.var} " + (
            "set" if present else "not set yet")

    def backoff_hint(self) -> float | None:
        """Heroku sends no Retry-After: ask the free rate-limit endpoint how long to wait."""
        try:
            remaining = self._call("GET", "/account/rate-limits",
                                   "heroku rate limits").json().get("remaining", 0)
        except VendorError:
            return None
        return 0.0 if remaining > 0 else 1 / REFILL_PER_SECOND


register(HerokuConfigVarTarget)
