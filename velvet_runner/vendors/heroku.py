"""Heroku OAuth authorizations (vendor-apis.md section 1).

Overlap, not regenerate: mint creates a second authorization; revoke deletes the old one by its
authorization id (the vault companion NAME__AUTH_ID). Regenerate is for the revocation flow and
for recovering an authorization whose token a crash lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr, StrictInt, StrictStr

from velvet_runner.client import Api, follow_ranges, request
from velvet_runner.errors import NotFound, VendorRejected
from velvet_runner.manifest_models import Credential, Model
from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, Minted, Vendor

if TYPE_CHECKING:
    import httpx

    from velvet_runner.client import Supplies

# The Platform API; each call authenticates with the token being rotated.
HEROKU = Api("heroku", "https://api.heroku.com",
             headers=(("Accept", "application/vnd.heroku+json; version=3"),))


class HerokuOptions(Model):
    scope: list[StrictStr] = Field(default_factory=lambda: ["global"], min_length=1,
                                   description="OAuth scopes of the minted authorization.")
    expires_in: StrictInt | None = Field(
        default=None, gt=0, description="Seconds until a minted authorization expires "
        "(none: it does not).")


def _auth(value: SecretStr) -> dict[str, str]:
    return {"Authorization": f"Bearer {value.get_secret_value()}"}


class HerokuVendor(Vendor):
    kind: ClassVar[str] = "heroku"
    options_model: ClassVar[type[Model]] = HerokuOptions
    CAN_ROLL: ClassVar[bool] = True
    CAN_REGENERATE: ClassVar[bool] = True
    APIS: ClassVar[tuple[Api, ...]] = (HEROKU,)

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> HerokuVendor:
        return cls(config, supplies.client(HEROKU))

    def __init__(self, config: Credential, client: httpx.Client) -> None:
        self.config = config
        self.options: HerokuOptions = config.options
        self.client = client

    def _call(self, method: str, path: str, value: SecretStr, what: str,
              headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return request(self.client, method, path, f"heroku {what}",
                       headers={**_auth(value), **(headers or {})}, **kwargs)

    def verify(self, value: SecretStr) -> Identity:
        account = self._call("GET", "/account", value, "GET /account").json()
        return Identity(subject=str(account.get("email") or account.get("id")))

    def mint(self, current: SecretStr, label: str) -> Minted:
        body: dict[str, Any] = {"scope": self.options.scope, "description": label}
        if self.options.expires_in is not None:
            body["expires_in"] = self.options.expires_in
        created = self._call("POST", "/oauth/authorizations", current,
                             "create authorization", json=body).json()
        return self._minted(created)

    def find_minted(self, current: SecretStr, label: str) -> str | None:
        # Lists come in pages (206 with Next-Range); a label missed here means minting twice.
        def send(page: str) -> httpx.Response:
            return self._call("GET", "/oauth/authorizations", current, "list authorizations",
                              headers={"Range": page})

        for auth in follow_ranges(self.client, "/oauth/authorizations", "list authorizations",
                                  "id ..; max=1000", send=send):
            if isinstance(auth, dict) and auth.get("description") == label:
                return str(auth["id"])
        return None

    def recover_minted(self, current: SecretStr, auth_id: str, label: str) -> Minted:
        return self._regenerate(auth_id, current)

    def revoke(self, auth_id: str | None, *, using: SecretStr, value: SecretStr) -> bool:
        if auth_id is None:
            raise VendorRejected("heroku revoke needs the authorization id")
        try:
            self._call("DELETE", f"/oauth/authorizations/{auth_id}", using,
                       f"delete authorization {auth_id}")
        except NotFound:
            return False
        return True

    def exists(self, auth_id: str, *, using: SecretStr) -> bool | None:
        try:
            self._call("GET", f"/oauth/authorizations/{auth_id}", using,
                       f"info authorization {auth_id}")
        except NotFound:
            return False
        return True

    def roll(self, auth_id: str | None, current: SecretStr) -> Minted:
        if auth_id is None:
            raise VendorRejected("heroku regenerate needs the authorization id "
                                 "(the vault's NAME__AUTH_ID)")
        return self._regenerate(auth_id, current)

    def _regenerate(self, auth_id: str, using: SecretStr) -> Minted:
        regenerated = self._call("POST", f"/oauth/authorizations/{auth_id}/actions/"
                                 "regenerate-tokens", using,
                                 f"regenerate authorization {auth_id}").json()
        return self._minted(regenerated)

    @staticmethod
    def _minted(body: dict[str, Any]) -> Minted:
        token = (body.get("access_token") or {}).get("token")
        if not token:
            raise VendorRejected("heroku returned an authorization without a token")
        return Minted(auth_id=str(body["id"]), value=SecretStr(token))


register(HerokuVendor)
