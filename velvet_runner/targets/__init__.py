"""Target adapters, keyed by the manifest's `kind` string.

Each module declares its config model (and whether it can be a vault) and registers; manifest.py
builds the consumer and vault unions from what is registered here.
"""

from __future__ import annotations

from typing import get_args

from velvet_runner.client import Bearer
from velvet_runner.manifest_models import VaultConfig
from velvet_runner.registry import Registry
from velvet_runner.targets.base import Target

# The order the shipped JSON Schema lists the built-in targets in. A module added to this
# package is found without being named here, and listed after them.
SCHEMA_ORDER: tuple[str, ...] = (
    "heroku_config_var", "github_actions_secret", "infisical_secret", "aws_ssm_parameter",
)

REGISTRY: Registry[Target] = Registry("target", __name__, SCHEMA_ORDER, key=lambda cls: cls.kind)
TARGETS = REGISTRY.entries  # kind -> class


def register(cls: type[Target]) -> type[Target]:
    if get_args(cls.config_model.model_fields["kind"].annotation) != (cls.kind,):
        raise ValueError(f"target {cls.kind}: {cls.config_model.__name__}.kind must be "
                         f"Literal[{cls.kind!r}]")
    if cls.CAN_BE_VAULT and not (cls.READABLE and issubclass(cls.config_model, VaultConfig)
                                 and "name" in cls.config_model.model_fields):
        raise ValueError(f"target {cls.kind} cannot be a vault: it must read back and its "
                         "config must be a VaultConfig with a name field")
    if cls.BUDGET is not None and not (cls.BUDGET in cls.APIS
                                       and isinstance(cls.BUDGET.auth, Bearer)):
        raise ValueError(f"target {cls.kind}: its BUDGET must be one of its APIS, with a Bearer "
                         "auth (the account is named by Velvet's own credential)")
    return REGISTRY.add(cls)


def load_all() -> dict[str, type[Target]]:
    """Every target module in this package, imported (so `velvet --help` stays fast, only
    here): the schema's first kinds in SCHEMA_ORDER, then the rest as they registered."""
    return REGISTRY.load_all()
