"""Cloudflare API tokens, user or account-owned (vendor-apis.md section 3).

Overlap, not roll: mint creates a second token with the old token's policies; revoke deletes the
old one. Roll (`PUT …/value`) kills the old value at once and is for the revocation flow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, StrictStr, model_validator

from velvet_runner.client import Api, request
from velvet_runner.errors import AuthRejected, NotFound, VendorRejected
from velvet_runner.manifest_models import Credential, Model
from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, LastUse, Minted, Vendor

PAGE_SIZE = 50  # the most Cloudflare returns per page

if TYPE_CHECKING:
    import httpx

    from velvet_runner.client import Supplies

# Each call authenticates with the token being rotated.
CLOUDFLARE = Api("cloudflare", "https://api.cloudflare.com/client/v4")


class CloudflareOptions(Model):
    token_type: Literal["user", "account"] = Field(
        "user", description="A user token, or an account-owned token.")
    account_id: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{32}$")] | None = Field(
        None, description="The account of an account-owned token.")

    @model_validator(mode="after")
    def _account_needs_id(self) -> CloudflareOptions:
        if self.token_type == "account" and self.account_id is None:
            raise ValueError("an account-owned token needs account_id")
        return self


class CloudflareVendor(Vendor):
    kind: ClassVar[str] = "cloudflare"
    options_model: ClassVar[type[Model]] = CloudflareOptions
    CAN_ROLL: ClassVar[bool] = True
    CAN_REGENERATE: ClassVar[bool] = True
    APIS: ClassVar[tuple[Api, ...]] = (CLOUDFLARE,)

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> CloudflareVendor:
        return cls(config, supplies.client(CLOUDFLARE))

    def __init__(self, config: Credential, client: httpx.Client) -> None:
        self.config = config
        self.options: CloudflareOptions = config.options
        self.client = client
        opts = self.options
        self.prefix = ("/user/tokens" if opts.token_type == "user"
                       else f"/accounts/{opts.account_id}/tokens")

    def _envelope(self, method: str, path: str, value: SecretStr, what: str,
                  **kwargs: Any) -> dict[str, Any]:
        response = request(self.client, method, self.prefix + path, f"cloudflare {what}",
                           headers={"Authorization": f"Bearer {value.get_secret_value()}"},
                           **kwargs)
        body: dict[str, Any] = response.json()
        if not body.get("success", False):
            codes = [e.get("code") for e in body.get("errors", [])]
            raise VendorRejected(f"cloudflare {what}: errors {codes}")
        return body

    def _call(self, method: str, path: str, value: SecretStr, what: str,
              **kwargs: Any) -> Any:
        return self._envelope(method, path, value, what, **kwargs).get("result")

    def verify(self, value: SecretStr) -> Identity:
        result = self._call("GET", "/verify", value, "verify token")
        if result.get("status") != "active":
            raise AuthRejected(f"cloudflare token is {result.get('status')}")
        return Identity(subject=f"{self.options.token_type} token {result.get('id')}",
                        auth_id=str(result.get("id")))

    def mint(self, current: SecretStr, label: str) -> Minted:
        own_id = self.verify(current).auth_id
        old = self._call("GET", f"/{own_id}", current, f"get token {own_id}")
        policies = [_policy(p) for p in old.get("policies", [])]
        body: dict[str, Any] = {"name": label, "policies": policies}
        if old.get("condition"):
            body["condition"] = old["condition"]
        created = self._call("POST", "", current, "create token", json=body)
        return Minted(auth_id=str(created["id"]), value=SecretStr(created["value"]))

    def find_minted(self, current: SecretStr, label: str) -> str | None:
        # Every page: an account holds up to 500 tokens, and a label missed here means a second
        # live token minted for the same job. Pages run until a short one: `total_pages` is
        # not always there, and a missing one does not mean a single page.
        page = 1
        while True:
            body = self._envelope("GET", f"?per_page={PAGE_SIZE}&page={page}", current,
                                  "list tokens")
            tokens = body.get("result") or []
            for token in tokens:
                if token.get("name") == label:
                    return str(token["id"])
            if len(tokens) < PAGE_SIZE:
                return None
            page += 1

    def recover_minted(self, current: SecretStr, auth_id: str, label: str) -> Minted:
        value = self._call("PUT", f"/{auth_id}/value", current, f"roll token {auth_id}", json={})
        return Minted(auth_id=auth_id, value=SecretStr(str(value)))

    def revoke(self, auth_id: str | None, *, using: SecretStr, value: SecretStr) -> bool:
        if auth_id is None:
            raise VendorRejected("cloudflare revoke needs the token id")
        try:
            self._call("DELETE", f"/{auth_id}", using, f"delete token {auth_id}")
        except NotFound:
            return False
        return True

    def exists(self, auth_id: str, *, using: SecretStr) -> bool | None:
        try:
            self._call("GET", f"/{auth_id}", using, f"get token {auth_id}")
        except NotFound:
            return False
        return True

    def last_used(self, auth_id: str, *, using: SecretStr) -> LastUse | None:
        """The token's `last_used_on` (RFC 3339, or null when never used)."""
        from datetime import datetime

        token = self._call("GET", f"/{auth_id}", using, f"get token {auth_id}")
        raw = token.get("last_used_on") if isinstance(token, dict) else None
        if not raw:
            return LastUse(None, "last_used_on: never used")
        try:
            at = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            raise VendorRejected(f"cloudflare token {auth_id}: last_used_on is not a time") \
                from None
        return LastUse(at, f"last_used_on {raw}")

    def roll(self, auth_id: str | None, current: SecretStr) -> Minted:
        token_id = auth_id or self.verify(current).auth_id
        value = self._call("PUT", f"/{token_id}/value", current, f"roll token {token_id}",
                           json={})
        return Minted(auth_id=token_id, value=SecretStr(str(value)))


def _policy(policy: dict[str, Any]) -> dict[str, Any]:
    """A policy as create expects it (responses add ids and names that create does not take)."""
    groups = [{k: v for k, v in g.items() if k in ("id", "meta")}
              for g in policy.get("permission_groups", [])]
    return {"effect": policy.get("effect", "allow"), "resources": policy.get("resources", {}),
            "permission_groups": groups}


register(CloudflareVendor)
