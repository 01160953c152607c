"""Adapters are looked up, not dispatched: the manifest and wiring use whatever is registered.

A vendor is one module: it declares its options model and registers, and the manifest's schema,
its validation and wiring all take it up without another file changing.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from velvet_runner import manifest as manifest_mod
from velvet_runner.errors import ManifestError
from velvet_runner.manifest import json_schema, json_schema_text, parse
from velvet_runner.manifest_models import TargetConfig
from velvet_runner.settings import Settings
from velvet_runner.targets import load_all as load_targets
from velvet_runner.targets import register as register_target
from velvet_runner.targets.base import Target
from velvet_runner.vendors import VENDORS, register
from velvet_runner.vendors import load_all as load_vendors
from velvet_runner.vendors.base import Identity, Vendor
from velvet_runner.wiring import Wiring
from velvet_sandbox.server import ServerThread

SHIPPED_SCHEMA = Path(__file__).resolve().parent.parent / "manifest" / \
    "subscription-manifest.schema.json"

THROWAWAY = '''
from typing import Any, ClassVar, Literal

from pydantic import SecretStr, StrictStr

from velvet_runner.client import Api, request
from velvet_runner.manifest_models import Model
from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, Vendor

# Its own API, declared here: no field in settings, no client recipe in wiring.
THROWAWAY = Api("throwaway", "https://api.throwaway.invalid",
                headers=(("Accept", "application/json"),))


class ThrowawayOptions(Model):
    region: StrictStr
    tier: Literal["free", "paid"] = "free"


class ThrowawayVendor(Vendor):
    kind: ClassVar[str] = "throwaway"
    options_model: ClassVar[type[Model]] = ThrowawayOptions
    APIS: ClassVar[tuple[Api, ...]] = (THROWAWAY,)

    @classmethod
    def build(cls, config: Any, supplies: Any) -> "ThrowawayVendor":
        return cls(config, supplies.client(THROWAWAY))

    def __init__(self, config: Any, client: Any) -> None:
        self.config, self.client = config, client
        self.options: ThrowawayOptions = config.options

    def verify(self, value: SecretStr) -> Identity:
        whoami = request(self.client, "GET", f"/{self.options.region}/whoami",
                         "throwaway whoami",
                         headers={"Authorization": f"Bearer {value.get_secret_value()}"})
        return Identity(subject=whoami.json()["subject"])


register(ThrowawayVendor)
'''

THROWAWAY_MANIFEST = """
credentials:
  - name: THROWAWAY_TOKEN
    vendor: throwaway
    env: prod
    vault: {kind: aws_ssm_parameter, name: /velvet/throwaway}
    options:
      region: eu-west-1
EXTRA
"""


def throwaway_manifest(extra: str = "") -> str:
    return THROWAWAY_MANIFEST.replace("EXTRA", extra)


@contextmanager
def throwaway_module(root: Path) -> Iterator[type]:
    """extra_adapters/throwaway.py under `root`, imported (so registered), then forgotten."""
    package = root / "extra_adapters"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "throwaway.py").write_text(textwrap.dedent(THROWAWAY))
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("extra_adapters.throwaway")
        yield module.ThrowawayVendor
    finally:
        VENDORS.pop("throwaway", None)
        sys.path.remove(str(root))
        for name in ("extra_adapters.throwaway", "extra_adapters"):
            sys.modules.pop(name, None)


@pytest.fixture
def throwaway(tmp_path: Path) -> Iterator[type]:
    with throwaway_module(tmp_path) as cls:
        yield cls


async def _whoami(request: Request) -> JSONResponse:
    """The throwaway vendor's API: it knows one token, and says where it was asked."""
    known = request.headers.get("authorization") == "Bearer tok-123"
    subject = f"ops@throwaway at {request.url.path} ({request.headers.get('accept')})"
    return JSONResponse({"subject": subject}, status_code=200 if known else 401)


@pytest.fixture
def throwaway_api() -> Iterator[str]:
    app = Starlette(routes=[Route("/{region}/whoami", _whoami)])
    with ServerThread(app) as server:
        yield server.url


def mapping(union: dict[str, Any]) -> set[str]:
    return set(union["discriminator"]["mapping"])


def test_every_registered_adapter_says_how_it_is_built() -> None:
    for cls in [*load_vendors().values(), *load_targets().values()]:
        assert "build" not in getattr(cls, "__abstractmethods__", ()), cls


def test_the_schema_names_exactly_the_registered_adapters() -> None:
    schema = json_schema()
    vendors, targets = load_vendors(), load_targets()
    credentials = schema["properties"]["credentials"]["items"]
    assert mapping(credentials) == set(vendors)
    vault_kinds = {kind for kind, cls in targets.items() if cls.CAN_BE_VAULT}
    assert vault_kinds == {"infisical_secret", "aws_ssm_parameter"}
    for ref in credentials["discriminator"]["mapping"].values():
        credential = schema["$defs"][ref.removeprefix("#/$defs/")]
        assert mapping(credential["properties"]["consumers"]["items"]) == set(targets)
        assert mapping(credential["properties"]["vault"]) == vault_kinds
    assert manifest_mod.vendor_kinds() == tuple(vendors)
    assert manifest_mod.target_kinds() == tuple(targets)
    assert set(manifest_mod.vault_kinds()) == vault_kinds


def test_a_vendor_module_registered_later_is_in_schema_parse_and_wiring(
        throwaway: type, throwaway_api: str) -> None:
    schema = json_schema()
    credentials = schema["properties"]["credentials"]["items"]
    assert credentials["discriminator"]["mapping"]["throwaway"] == "#/$defs/ThrowawayCredential"
    defined = schema["$defs"]["ThrowawayCredential"]
    assert defined["properties"]["options"]["$ref"] == "#/$defs/ThrowawayOptions"
    assert defined["properties"]["vendor"]["const"] == "throwaway"
    assert "options" in defined["required"]  # region has no default
    assert schema["$defs"]["ThrowawayOptions"]["required"] == ["region"]

    credential = parse(throwaway_manifest()).credentials[0]
    assert credential.vendor == "throwaway"
    assert credential.options.region == "eu-west-1"
    assert credential.options.tier == "free"

    # Its API's URL comes from VELVET_THROWAWAY_API_URL, which settings never heard of.
    wiring = Wiring(Settings.from_env({"VELVET_THROWAWAY_API_URL": throwaway_api}))
    try:
        vendor = wiring.vendor(credential)
        assert isinstance(vendor, throwaway)
        assert vendor.config is credential
        assert vendor.client is wiring.api_client("throwaway", "https://unused.invalid")
        assert vendor.verify(SecretStr("tok-123")).subject == (
            "ops@throwaway at /eu-west-1/whoami (application/json)")
        assert vendor.is_live(SecretStr("tok-123"))
        assert not vendor.is_live(SecretStr("tok-456"))
    finally:
        wiring.close()
    default = Wiring(Settings())
    try:
        assert str(default.vendor(credential).client.base_url) == "https://api.throwaway.invalid"
    finally:
        default.close()


def test_a_bad_option_of_a_vendor_registered_later_is_refused_by_name(throwaway: type) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(throwaway_manifest("      colour: red\n      tier: gold"), "m.yml")
    assert caught.value.reasons == [
        "m.yml:9: credentials[THROWAWAY_TOKEN].options.colour: unknown field (check the "
        "spelling)",
        "m.yml:10: credentials[THROWAWAY_TOKEN].options.tier: Input should be 'free' or "
        "'paid'",
    ]
    no_region = throwaway_manifest("      tier: paid").replace(
        "      region: eu-west-1\n", "")
    with pytest.raises(ManifestError) as caught:
        parse(no_region, "m.yml")
    assert caught.value.reasons == [
        "m.yml:8: credentials[THROWAWAY_TOKEN].options.region: required field is missing"]


def test_unregistering_the_vendor_gives_back_the_committed_schema(tmp_path: Path) -> None:
    with throwaway_module(tmp_path):
        assert "ThrowawayCredential" in json_schema()["$defs"]
        parse(throwaway_manifest())
    assert json_schema_text() == SHIPPED_SCHEMA.read_text(encoding="utf-8")
    with pytest.raises(ManifestError, match="unknown value 'throwaway'"):
        parse(throwaway_manifest())


def test_registering_a_kind_twice_names_both(throwaway: type) -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(throwaway)


def test_a_vendor_without_an_options_model_is_refused() -> None:
    class Bare(Vendor):
        kind: ClassVar[str] = "bare"

        @classmethod
        def build(cls, config: Any, supplies: Any) -> Bare:
            return cls()

        def verify(self, value: SecretStr) -> Identity:
            return Identity(subject="bare")

    with pytest.raises(ValueError, match="vendor bare .* declares no options_model"):
        register(Bare)
    assert "bare" not in VENDORS


def test_a_target_whose_config_names_another_kind_is_refused() -> None:
    class Elsewhere(TargetConfig):
        kind: str = "somewhere_else"

    class Mislabelled(Target):
        kind: ClassVar[str] = "mislabelled"
        config_model: ClassVar[type[TargetConfig]] = Elsewhere

        @classmethod
        def build(cls, config: Any, supplies: Any) -> Mislabelled:
            return cls()

        def write(self, value: SecretStr) -> None:
            pass

        def read(self) -> SecretStr | None:
            return None

        def probe(self) -> str:
            return "mislabelled"

    with pytest.raises(ValueError, match=r"Elsewhere.kind must be Literal\['mislabelled'\]"):
        register_target(Mislabelled)
    assert "mislabelled" not in load_targets()


def test_an_api_url_without_a_settings_field_is_read_from_the_environment() -> None:
    settings = Settings.from_env({"VELVET_THROWAWAY_API_URL": "http://127.0.0.1:1",
                                  "VELVET_HEROKU_API_URL": "http://127.0.0.1:2"})
    assert settings.api_url("throwaway", "https://api.throwaway.invalid") == "http://127.0.0.1:1"
    assert settings.api_url("acme", "https://api.acme.invalid") == "https://api.acme.invalid"
    assert settings.heroku_api_url == "http://127.0.0.1:2"  # a field keeps its variable
    assert settings.api_urls == {"throwaway": "http://127.0.0.1:1"}
