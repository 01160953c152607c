"""Postmark server tokens (vendor-apis.md section 2): verify only.

Postmark has no API to create or delete tokens. Mint is operator-assisted (a person adds a token
in the dashboard and puts it in the vault's pending slot); revoke is manual_required, and the
job reaches done only once the old token is seen refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import SecretStr

from velvet_runner.client import request
from velvet_runner.manifest import PostmarkCredential
from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, Vendor

if TYPE_CHECKING:
    from velvet_runner.wiring import Wiring


class PostmarkVendor(Vendor):
    kind: ClassVar[str] = "postmark"
    CAN_MINT: ClassVar[bool] = False
    CAN_REVOKE: ClassVar[bool] = False

    @classmethod
    def build(cls, config: Any, wiring: Wiring) -> PostmarkVendor:
        return cls(config, wiring.postmark_client)

    def __init__(self, config: PostmarkCredential, client: httpx.Client) -> None:
        self.config = config
        self.client = client

    def verify(self, value: SecretStr) -> Identity:
        # The body lists every sibling token (ApiTokens): read the name and id only.
        server = request(self.client, "GET", "/server", "postmark GET /server",
                         headers={"X-Postmark-Server-Token": value.get_secret_value()}).json()
        return Identity(subject=f"server {server.get('Name')} ({server.get('ID')})")


register(PostmarkVendor)
