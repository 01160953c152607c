"""Postmark server tokens (vendor-apis.md section 2): verify only.

Postmark has no API to create or delete tokens. Mint is operator-assisted (a person adds a token
in the dashboard and puts it in the vault's pending slot); revoke is manual_required, and the
job reaches done only once the old token is seen refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr

from velvet_runner.client import Api, request
from velvet_runner.manifest_models import Credential, Model
from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, Vendor

if TYPE_CHECKING:
    import httpx

    from velvet_runner.client import Supplies

# Each call authenticates with the server token being checked.
POSTMARK = Api("postmark", "https://api.postmarkapp.com",
               headers=(("Accept", "application/json"),))


class PostmarkOptions(Model):
    token_type: Literal["server"] = Field(
        "server", description="A server token (the only kind Velvet rotates).")


class PostmarkVendor(Vendor):
    kind: ClassVar[str] = "postmark"
    options_model: ClassVar[type[Model]] = PostmarkOptions
    CAN_MINT: ClassVar[bool] = False
    CAN_REVOKE: ClassVar[bool] = False
    APIS: ClassVar[tuple[Api, ...]] = (POSTMARK,)

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> PostmarkVendor:
        return cls(config, supplies.client(POSTMARK))

    def __init__(self, config: Credential, client: httpx.Client) -> None:
        self.config = config
        self.client = client

    def verify(self, value: SecretStr) -> Identity:
        # The body lists every sibling token (ApiTokens): read the name and id only.
        server = request(self.client, "GET", "/server", "postmark GET /server",
                         headers={"X-Postmark-Server-Token": value.get_secret_value()}).json()
        return Identity(subject=f"server {server.get('Name')} ({server.get('ID')})")


register(PostmarkVendor)
