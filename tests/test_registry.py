"""Adapters are looked up, not dispatched: wiring builds whatever the registries hold."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from velvet_runner.manifest import parse
from velvet_runner.settings import Settings
from velvet_runner.targets import load_all as load_targets
from velvet_runner.vendors import VENDORS, register
from velvet_runner.vendors import load_all as load_vendors
from velvet_runner.wiring import Wiring

THROWAWAY = '''
from typing import Any, ClassVar

from pydantic import SecretStr

from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, Vendor


class ThrowawayVendor(Vendor):
    kind: ClassVar[str] = "throwaway"

    @classmethod
    def build(cls, config: Any, wiring: Any) -> "ThrowawayVendor":
        return cls(config, wiring.aws)

    def __init__(self, config: Any, aws: Any) -> None:
        self.config, self.aws = config, aws

    def verify(self, value: SecretStr) -> Identity:
        return Identity(subject="throwaway")


register(ThrowawayVendor)
'''

MANIFEST = """
credentials:
  - name: OP_MANUAL
    vendor: operator_manual
    env: prod
    vault: {kind: aws_ssm_parameter, name: /velvet/op-manual}
"""


@pytest.fixture
def throwaway(tmp_path: Path) -> Iterator[type]:
    package = tmp_path / "extra_adapters"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "throwaway.py").write_text(textwrap.dedent(THROWAWAY))
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("extra_adapters.throwaway")
        yield module.ThrowawayVendor
    finally:
        VENDORS.pop("throwaway", None)
        sys.path.remove(str(tmp_path))
        for name in ("extra_adapters.throwaway", "extra_adapters"):
            sys.modules.pop(name, None)


def test_every_registered_adapter_says_how_it_is_built() -> None:
    for cls in [*load_vendors().values(), *load_targets().values()]:
        assert "build" not in getattr(cls, "__abstractmethods__", ()), cls


def test_wiring_builds_a_vendor_module_it_has_never_heard_of(throwaway: type) -> None:
    credential = parse(MANIFEST).credentials[0].model_copy(update={"vendor": "throwaway"})
    wiring = Wiring(Settings())
    try:
        vendor = wiring.vendor(credential)
    finally:
        wiring.close()
    assert isinstance(vendor, throwaway)
    assert vendor.aws is wiring.aws
    assert vendor.config is credential


def test_registering_a_kind_twice_names_both(throwaway: type) -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(throwaway)
