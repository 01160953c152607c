"""Target adapters, keyed by the manifest's `kind` string."""

from __future__ import annotations

from velvet_runner.targets.base import Target

TARGETS: dict[str, type[Target]] = {}


def register(cls: type[Target]) -> type[Target]:
    if cls.kind in TARGETS:
        raise ValueError(f"target {cls.kind} registered twice: {TARGETS[cls.kind]} and {cls}")
    TARGETS[cls.kind] = cls
    return cls


def load_all() -> dict[str, type[Target]]:
    from velvet_runner.targets import (  # noqa: F401
        aws_ssm_parameter,
        github_actions_secret,
        heroku_config_var,
        infisical_secret,
    )

    return TARGETS
