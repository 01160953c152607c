"""Vendor adapters, keyed by the manifest's `vendor` string.

Each module declares its `options` model and registers; manifest.py builds the credential union
from what is registered here, so adding a vendor is that one module: `load_all` finds it.
"""

from __future__ import annotations

from velvet_runner.registry import Registry
from velvet_runner.vendors.base import Vendor

# The order the shipped JSON Schema lists the built-in vendors in. A module added to this
# package is found without being named here, and listed after them.
SCHEMA_ORDER: tuple[str, ...] = ("heroku", "cloudflare", "postmark", "aws_iam", "operator_manual")

REGISTRY: Registry[Vendor] = Registry("vendor", __name__, SCHEMA_ORDER, key=lambda cls: cls.kind)
VENDORS = REGISTRY.entries  # kind -> class


def register(cls: type[Vendor]) -> type[Vendor]:
    if not isinstance(getattr(cls, "options_model", None), type):
        raise ValueError(f"vendor {cls.kind} ({cls}) declares no options_model")
    return REGISTRY.add(cls)


def load_all() -> dict[str, type[Vendor]]:
    """Every vendor module in this package, imported (so `velvet --help` stays fast, only
    here): the schema's first kinds in SCHEMA_ORDER, then the rest as they registered."""
    return REGISTRY.load_all()
