"""Credentials a person issues and revokes by hand (for example Cloudflare user tokens that the
API cannot create). The operator puts the new value in the vault's pending slot; mint picks it
up from there, never from a CLI argument or workflow input. With no vendor probe, verify accepts
the value and revoke always needs mark_manually_revoked with a ticket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr, StrictStr

from velvet_runner.manifest_models import Credential, Model
from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, Vendor

if TYPE_CHECKING:
    from velvet_runner.client import Supplies


class OperatorManualOptions(Model):
    procedure: StrictStr | None = Field(
        None, description="Where the manual procedure is written down (shown to operators).")


class OperatorManualVendor(Vendor):
    kind: ClassVar[str] = "operator_manual"
    options_model: ClassVar[type[Model]] = OperatorManualOptions
    CAN_MINT: ClassVar[bool] = False
    CAN_REVOKE: ClassVar[bool] = False
    CAN_PROBE: ClassVar[bool] = False

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> OperatorManualVendor:
        return cls(config)

    def __init__(self, config: Credential) -> None:
        self.config = config
        self.options: OperatorManualOptions = config.options

    def verify(self, value: SecretStr) -> Identity:
        if not value.get_secret_value().strip():
            from velvet_runner.errors import AuthRejected

            raise AuthRejected("the value is empty")
        procedure = self.options.procedure or "the credential's manual procedure"
        return Identity(subject=f"operator-managed ({procedure}); no vendor probe")

    def is_live(self, value: SecretStr) -> bool:
        return True  # nothing can prove it dead: revocation is confirmed by a person


register(OperatorManualVendor)
