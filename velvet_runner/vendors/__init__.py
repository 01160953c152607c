"""Vendor adapters, keyed by the manifest's `vendor` string."""

from __future__ import annotations

from velvet_runner.vendors.base import Vendor

VENDORS: dict[str, type[Vendor]] = {}


def register(cls: type[Vendor]) -> type[Vendor]:
    if cls.kind in VENDORS:
        raise ValueError(f"vendor {cls.kind} registered twice: {VENDORS[cls.kind]} and {cls}")
    VENDORS[cls.kind] = cls
    return cls


def load_all() -> dict[str, type[Vendor]]:
    # Imported here, not at module import, so `velvet --help` stays fast.
    from velvet_runner.vendors import (  # noqa: F401
        aws_iam,
        cloudflare,
        heroku,
        operator_manual,
        postmark,
    )

    return VENDORS
