"""A Heroku app's config var (vendor-apis.md 1.2). PATCH merges and restarts the app's dynos."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, StrictStr

from velvet_runner.client import Api, Bearer, RetryPolicy, follow_ranges, request
from velvet_runner.errors import VendorError
from velvet_runner.manifest_models import TargetConfig
from velvet_runner.ratepolicy import POLICIES
from velvet_runner.records import fingerprint
from velvet_runner.targets import register
from velvet_runner.targets.base import Found, Target
from velvet_runner.vendors.heroku import HEROKU

if TYPE_CHECKING:
    import httpx

    from velvet_runner.client import Supplies
    from velvet_runner.manifest import Manifest
    from velvet_runner.manifest_models import Credential

# The Platform API with Velvet's own token (HK_VELVET_BOOTSTRAP), which may write config vars.
HEROKU_BOOTSTRAP = replace(HEROKU, auth=Bearer("VELVET_HEROKU_TOKEN"))


class HerokuConfigVar(TargetConfig):
    kind: Literal["heroku_config_var"] = Field(description="A Heroku app's config var.")
    app: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]{1,99}$",
                                    description="The Heroku app's name.")]
    var: Annotated[StrictStr, Field(pattern=r"^\w+$",
                                    description="The config var that holds the value.")]

    def describe(self) -> str:
        return f"heroku app {self.app} config var {self.var}"

    def place(self) -> tuple[str, ...]:
        return (self.kind, self.app, self.var)


class HerokuConfigVarTarget(Target):
    kind: ClassVar[str] = "heroku_config_var"
    config_model: ClassVar[type[TargetConfig]] = HerokuConfigVar
    APIS: ClassVar[tuple[Api, ...]] = (HEROKU_BOOTSTRAP,)
    # Heroku's limit is a request budget (4,500 an hour per account), not a concurrency cap:
    # a rotation spends one request per consumer however many run at once, so this bound only
    # has to keep a big fan-out from waiting on round trips (2,000 apps at 100 ms each: 1.6 s
    # at 128 in flight, 3.1 s at 64). Past ~128 threads the runner is CPU-bound on two cores
    # and more threads only add GIL contention (bench/results.md).
    BOUND: ClassVar[int | None] = 128
    BUDGET: ClassVar[Api | None] = HEROKU_BOOTSTRAP

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> HerokuConfigVarTarget:
        return cls(config, supplies.client(HEROKU_BOOTSTRAP))

    def __init__(self, config: HerokuConfigVar, client: httpx.Client) -> None:
        """`client` carries Velvet's own Heroku token (HK_VELVET_BOOTSTRAP)."""
        self.config = config
        self.client = client
        self.path = f"/apps/{config.app}/config-vars"
        self.what = f"heroku app {config.app} config var {config.var}"

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
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
        """Heroku sends no Retry-After: ask the free rate-limit endpoint how long until the
        bucket holds a request again (vendor seconds; RetryPolicy waits at least the refill)."""
        bucket = POLICIES["heroku"].bucket
        try:
            remaining = self._call("GET", "/account/rate-limits",
                                   "heroku rate limits").json().get("remaining", 0)
        except VendorError:
            return None
        if bucket is None or not isinstance(remaining, int | float) or remaining > 0:
            return 0.0
        return 1 / bucket.per_second

    @classmethod
    def sweep(cls, supplies: Supplies, manifest: Manifest,
              credential: Credential) -> Iterator[Found]:
        """Every config var of every app the bootstrap token may use (`GET /apps`, by Range
        pages), as fingerprints."""
        client = supplies.client(HEROKU_BOOTSTRAP)
        call = RetryPolicy(sleep=supplies.sleep).run

        def send(page: str) -> httpx.Response:
            return call(lambda: request(client, "GET", "/apps", "heroku list apps",
                                        headers={"Range": page}))

        def config(app: str) -> Any:
            return call(lambda: request(client, "GET", f"/apps/{app}/config-vars",
                                        f"GET heroku app {app} config vars")).json()

        for app in follow_ranges(client, "/apps", "heroku list apps", "name ..; max=1000",
                                 send=send):
            name = str(app.get("name")) if isinstance(app, dict) else ""
            try:
                found = config(name)
            except VendorError as exc:
                yield Found(f"heroku app {name}", error=str(exc))
                continue
            for var, value in sorted(found.items() if isinstance(found, dict) else []):
                if isinstance(value, str):
                    place = HerokuConfigVar.model_construct(kind="heroku_config_var",
                                                            app=name, var=var)
                    yield Found(place.describe(), fingerprint(value))


register(HerokuConfigVarTarget)
