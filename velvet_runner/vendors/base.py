"""What a vendor adapter must do: verify, mint and revoke one kind of credential."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr

from velvet_runner.client import Api
from velvet_runner.errors import InputError
from velvet_runner.manifest_models import Model

if TYPE_CHECKING:
    from velvet_runner.client import Supplies


@dataclass(frozen=True)
class Identity:
    """Who the vendor says a value belongs to; never the value itself."""

    subject: str
    auth_id: str | None = None


@dataclass(frozen=True)
class LastUse:
    """When the vendor says a credential was last used (None: never), and what else it said
    (the service and region, for example); never the value."""

    at: datetime | None
    detail: str


@dataclass(frozen=True)
class Minted:
    auth_id: str | None
    value: SecretStr


class Vendor(ABC):
    """A credential's issuer.

    Subclasses set `kind` to the manifest's `vendor` string, `options_model` to the model of
    the manifest's `options` for it, and declare what the vendor's API can do with the
    capability flags; the engine routes around what it cannot (for example
    `CAN_REVOKE = False` becomes `manual_required`, confirmed by seeing the old value refused).
    `APIS` declares the vendor APIs it calls (client.Api: URL, headers, the settings its auth
    reads); `build` receives their clients. Methods raise the VendorError subclasses of
    `errors.py` and never put a value in a message.
    """

    kind: ClassVar[str]
    options_model: ClassVar[type[Model]]
    APIS: ClassVar[tuple[Api, ...]] = ()
    CAN_MINT: ClassVar[bool] = True
    CAN_REVOKE: ClassVar[bool] = True
    CAN_ROLL: ClassVar[bool] = False
    # A lost value can be replaced in place under the same id (recover_minted).
    CAN_REGENERATE: ClassVar[bool] = False
    # is_live answers truthfully: without it nothing but a person can prove a token dead.
    CAN_PROBE: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def build(cls, config: Any, supplies: Supplies) -> Vendor:
        """This adapter for its manifest row, with the clients of the APIs it declared."""

    @abstractmethod
    def verify(self, value: SecretStr) -> Identity:
        """Probe that `value` works; AuthRejected when the vendor refuses it.

        May also refuse a rotation that cannot succeed (AWS: both key slots in use).
        """

    def check_rotatable(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Refuse, at verify, a rotation that cannot succeed (AWS: no free key slot)."""

    def mint(self, current: SecretStr, label: str) -> Minted:
        """Create a second, independent credential labelled `label` (the job id is in it).

        Never rolls or regenerates: the old value must keep working until revoke.
        """
        raise InputError(f"{self.kind} credentials cannot be minted by API")

    def find_minted(self, current: SecretStr, label: str) -> str | None:
        """The auth id of a credential this vendor already holds under `label`, if any.

        Lets an interrupted mint resume without leaving a second live token behind.
        """
        return None

    def recover_minted(self, current: SecretStr, auth_id: str, label: str) -> Minted:
        """Regenerate, in place, a credential minted before a crash lost its value (only where
        CAN_REGENERATE: the lost value dies with it)."""
        raise InputError(f"{self.kind} cannot recover a minted credential")

    def revoke(self, auth_id: str | None, *, using: SecretStr, value: SecretStr) -> bool:
        """Revoke the credential `auth_id` (whose value is `value`), authenticating with `using`.

        Idempotent: returns True when revoked now, False when it was already gone (404).
        """
        raise InputError(f"{self.kind} credentials cannot be revoked by API")

    def roll(self, auth_id: str | None, current: SecretStr) -> Minted:
        """Replace the value in place, killing the old one at once (revocation flow only)."""
        raise InputError(f"{self.kind} credentials cannot be rolled by API")

    def exists(self, auth_id: str, *, using: SecretStr) -> bool | None:
        """Whether the vendor still holds credential `auth_id` (None: the API cannot tell).

        Settles revocation debt: a token minted and never revoked stays listed until the
        vendor no longer knows it.
        """
        return None

    def last_used(self, auth_id: str, *, using: SecretStr) -> LastUse | None:
        """When the vendor last saw credential `auth_id` used, asking with the live value
        `using` where the vendor needs one; None when its API does not say (the default)."""
        return None

    def is_live(self, value: SecretStr) -> bool:
        """Whether the vendor still accepts `value`; vendor outages propagate."""
        from velvet_runner.errors import AuthRejected

        try:
            self.verify(value)
        except AuthRejected:
            return False
        return True
