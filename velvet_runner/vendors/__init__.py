"""Vendor adapters, keyed by the manifest's `vendor` string.

Each module declares its `options` model and registers; manifest.py builds the credential union
from what is registered here, so adding a vendor is that one module: `load_all` finds it.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from velvet_runner.vendors.base import Vendor

# The order the shipped JSON Schema lists the built-in vendors in. A module added to this
# package is found without being named here, and listed after them.
SCHEMA_ORDER: tuple[str, ...] = ("heroku", "cloudflare", "postmark", "aws_iam", "operator_manual")

VENDORS: dict[str, type[Vendor]] = {}


def register(cls: type[Vendor]) -> type[Vendor]:
    if cls.kind in VENDORS:
        raise ValueError(f"vendor {cls.kind} registered twice: {VENDORS[cls.kind]} and {cls}")
    if not isinstance(getattr(cls, "options_model", None), type):
        raise ValueError(f"vendor {cls.kind} ({cls}) declares no options_model")
    VENDORS[cls.kind] = cls
    return cls


def load_all() -> dict[str, type[Vendor]]:
    """Every vendor module in this package, imported (so `velvet --help` stays fast, only
    here): the schema's first kinds in SCHEMA_ORDER, then the rest as they registered."""
    _import_modules()
    return {**{kind: VENDORS[kind] for kind in SCHEMA_ORDER}, **VENDORS}


@functools.cache
def _import_modules() -> None:
    # Once per process: wiring looks an adapter up for every consumer of a fan-out.
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"):
        importlib.import_module(f"{__name__}.{module}")
