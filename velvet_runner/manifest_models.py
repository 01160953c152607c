"""The manifest's shared model pieces, apart from manifest.py so adapters can build on them.

Each vendor module declares its `options` model and each target module its config model on
these bases; manifest.py then builds the discriminated unions from the registries. This module
imports pydantic and nothing of Velvet's, so an adapter module can import it without a cycle.

A model here carries no docstring unless the schema should show it: pydantic turns a model's
docstring into its JSON Schema description, and the committed schema is compared byte for byte.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

ENV_RE = r"^[a-z][a-z0-9-]{0,31}$"
# An environment a Velvet serves: one of the manifest's `environments` (manifest.py checks).
Env = Annotated[StrictStr, Field(pattern=ENV_RE)]
DEFAULT_ENVS: tuple[str, ...] = ("prod", "staging")

NAME_RE = r"^[A-Z][A-Z0-9_]{0,127}$"
CONSUMER_ID_RE = r"^[a-z0-9][a-z0-9-]{0,99}$"
SCHEDULE_RE = re.compile(r"^([1-9][0-9]{0,4})([hdw])$")
SCHEDULE_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- health checks -------------------------------------------------------------------------


class HttpCheck(Model):
    """GET the consumer's health URL; it must answer `expect_status` with the value it holds."""

    type: Literal["http"] = Field(description="An HTTP health check.")
    url: AnyHttpUrl = Field(description="The consumer's health URL (http:// or https://).")
    expect_status: StrictInt = Field(default=200, ge=100, le=599,
                                     description="The status a healthy consumer answers.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120,
                                   description="How long one check may take.")

    @field_validator("url", mode="before")
    @classmethod
    def _http_only(cls, value: object) -> object:
        if isinstance(value, str) and not re.match(r"^https?://", value):
            raise ValueError("healthcheck url must be http:// or https://")
        return value


class ReadbackCheck(Model):
    """Read the target back and compare its fingerprint with the new value's."""

    type: Literal["readback"] = Field(description="Read the target back.")


class ManualCheck(Model):
    """No automatic check: an operator confirms the consumer works (manual_confirm)."""

    type: Literal["none"] = Field(description="No automatic check.")


HealthCheck = Annotated[HttpCheck | ReadbackCheck | ManualCheck, Field(discriminator="type")]
HEALTHCHECK_TYPES: tuple[str, ...] = ("http", "readback", "none")


# --- the rows adapters are configured by ---------------------------------------------------


class TargetConfig(Model):
    # Every target kind's config model: `kind` narrowed to its Literal, plus its own fields.
    kind: str

    def describe(self) -> str:  # pragma: no cover - overridden by every kind
        raise NotImplementedError

    def place(self) -> tuple[str, ...]:  # pragma: no cover - overridden by every kind
        # Where a write lands, compared the way the vendor tells places apart (GitHub ignores
        # case in names): two configs with one place write one value. The manifest refuses
        # two writers of one place, and any consumer writing a vault slot.
        raise NotImplementedError


# The slots of a vault: the current value at `name`, its companions at `name` + a suffix
# (vault.py reads and writes them).
AUTH_ID, PENDING, PENDING_META = "__AUTH_ID", "__PENDING", "__PENDING_META"
COMPANIONS: tuple[str, ...] = (AUTH_ID, PENDING, PENDING_META)


class VaultConfig(TargetConfig):
    # A config a vault can live at (its target sets CAN_BE_VAULT): the pending value and the
    # companions sit in slots named `name` + a suffix. Declared for the type checker only, so
    # the field keeps its place in each kind's model (and in the committed schema).
    if TYPE_CHECKING:
        name: str

    def slot(self, suffix: str) -> Self:
        """The config of this vault's slot `suffix` ("" for the current value, or one of
        COMPANIONS)."""
        return self.model_copy(update={"name": self.name + suffix})

    def companion_of(self) -> Self | None:
        """The vault whose companion slot this config names (`X__PENDING` is one of X's
        slots), or None when its name has no companion's suffix."""
        if not self.name.endswith(COMPANIONS):  # the common case, and cheap
            return None
        suffix = next(s for s in COMPANIONS if self.name.endswith(s))
        return self.model_copy(update={"name": self.name.removesuffix(suffix)})


class ConsumerFields(Model):
    consumer_id: Annotated[StrictStr, Field(pattern=CONSUMER_ID_RE)] = Field(
        description="Unique in the manifest: lower-case letters, digits and dashes.")
    env: Env = Field(description="The environment the consumer belongs to; a job fans out only "
                     "to consumers of its own env.")
    active: StrictBool = Field(True, description="false: skipped by every rotation.")
    healthcheck: HealthCheck = Field(
        default_factory=lambda: ManualCheck(type="none"),
        description="How Velvet proves the consumer works with the new value (default none: "
        "an operator confirms).")


class Consumer(TargetConfig, ConsumerFields):
    # A consumer row: a target's config plus who reads it. manifest.py builds one class per
    # kind, (config model, Consumer); with these bases the consumer fields come first.
    pass


class Scheduler(Model):
    """What one cron tick of the schedule workflow may start."""

    max_starts: StrictInt = Field(
        default=50, ge=1, le=1000,
        description="Rotations one tick starts at most, the most overdue first (a credential "
                    "never rotated by Velvet counts as the most overdue); the rest wait for "
                    "the next tick. Each is its own workflow run, started at once: the vendors' "
                    "rate budgets, shared through the state branch, pace them, not a sleep.")


class Credential(Model):
    # A credential row. manifest.py builds one class per vendor with `vendor` narrowed to its
    # Literal, `options` typed by the vendor's options model, and the built vault and consumer
    # unions in place of the bases below (the field order stays this one).
    name: Annotated[StrictStr, Field(pattern=NAME_RE)] = Field(
        description="Unique in the manifest, UPPER_SNAKE_CASE (the vault's key by convention).")
    env: Env = Field(description="The environment whose Velvet rotates this credential.")
    active: StrictBool = Field(True, description="false: every rotation is refused with the "
                               "manual procedure.")
    schedule: StrictStr | None = Field(None, description="How often to rotate: an interval such "
                                       "as 90d, 12w or 36h (none: only by hand).")
    vault: VaultConfig
    approvers: dict[Env, list[StrictStr]] = Field(
        default_factory=dict, description="Per environment, the GitHub logins allowed to "
        "approve a gated stage (never the person who started the job).")
    consumers: list[Consumer] = Field(default_factory=list)
    description: StrictStr | None = Field(None, description="What the credential is, for "
                                          "people.")
    vendor: str
    options: Any = None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None and not SCHEDULE_RE.match(value):
            raise ValueError("schedule must be an interval such as 90d, 12w or 36h")
        return value

    @property
    def schedule_hours(self) -> int | None:
        if self.schedule is None:
            return None
        match = SCHEDULE_RE.match(self.schedule)
        assert match is not None  # noqa: S101 - validated above
        return int(match.group(1)) * SCHEDULE_UNIT_HOURS[match.group(2)]

    def consumer(self, consumer_id: str) -> Consumer | None:
        return next((c for c in self.consumers if c.consumer_id == consumer_id), None)
