"""Vendor adapters, keyed by the manifest's `vendor` string.

Each module declares its `options` model and registers; manifest.py builds the credential union
from what is registered here, so adding a vendor is that one module (and its name below).
"""

from __future__ import annotations

import importlib

from velvet_runner.vendors.base import Vendor

# The built-in vendors, in the order the manifest's JSON Schema lists them.
BUILT_IN: tuple[str, ...] = ("heroku", "cloudflare", "postmark", "aws_iam", "operator_manual")

VENDORS: dict[str, type[Vendor]] = {}


def register(cls: type[Vendor]) -> type[Vendor]:
    if cls.kind in VENDORS:
        raise ValueError(f"vendor {cls.kind} registered twice: {VENDORS[cls.kind]} and {cls}")
    if not isinstance(getattr(cls, "options_model", None), type):
        raise ValueError(f"vendor {cls.kind} ({cls}) declares no options_model")
    VENDORS[cls.kind] = cls
    return cls


def load_all() -> dict[str, type[Vendor]]:
    """Every vendor: the built-ins in BUILT_IN order, then any registered later."""
    # Imported here, not at module import, so `velvet --help` stays fast.
    for name in BUILT_IN:
        importlib.import_module(f"{__name__}.{name}")
    return {**{kind: VENDORS[kind] for kind in BUILT_IN}, **VENDORS}
