"""AWS IAM access keys (vendor-apis.md section 6.3). The value is "ACCESS_KEY_ID:SECRET".

A user holds at most two keys, so verify refuses when both slots are taken. Mint creates the
second key; revoke deactivates the old key (reversible) and then deletes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr, StrictStr

from velvet_runner.aws import AwsClients, translate
from velvet_runner.errors import AuthRejected, NotFound, VendorRejected
from velvet_runner.manifest_models import Credential, Model
from velvet_runner.vendors import register
from velvet_runner.vendors.base import Identity, LastUse, Minted, Vendor

if TYPE_CHECKING:
    from velvet_runner.client import Supplies


class AwsIamOptions(Model):
    user_name: StrictStr = Field(description="The IAM user whose access key this is.")
    region: StrictStr = Field("us-east-1", description="The AWS region of the IAM calls.")


def split(value: SecretStr) -> tuple[str, str]:
    key_id, sep, secret = value.get_secret_value().partition(":")
    if not sep or not key_id or not secret:
        raise AuthRejected("aws_iam value is not ACCESS_KEY_ID:SECRET")
    return key_id, secret


class AwsIamVendor(Vendor):
    kind: ClassVar[str] = "aws_iam"
    options_model: ClassVar[type[Model]] = AwsIamOptions

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> AwsIamVendor:
        return cls(config, supplies.aws)

    def __init__(self, config: Credential, aws: AwsClients) -> None:
        self.config = config
        self.options: AwsIamOptions = config.options
        self.aws = aws
        self.user = self.options.user_name

    @property
    def iam(self) -> Any:
        return self.aws.client("iam", self.options.region)

    def _keys(self) -> list[dict[str, Any]]:
        try:
            listed = self.iam.list_access_keys(UserName=self.user)
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, f"iam ListAccessKeys {self.user}") from None
        return list(listed.get("AccessKeyMetadata", []))

    def verify(self, value: SecretStr) -> Identity:
        key_id, secret = split(value)
        keys = {k["AccessKeyId"]: k for k in self._keys()}
        if key_id not in keys or keys[key_id].get("Status") != "Active":
            raise AuthRejected(f"access key {key_id} is not an active key of {self.user}")
        try:
            sts = self.aws.client("sts", self.options.region, access_key_id=key_id,
                                  secret_access_key=secret)
            caller = sts.get_caller_identity()
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "sts GetCallerIdentity") from None
        return Identity(subject=str(caller.get("Arn", self.user)), auth_id=key_id)

    def slots_free(self) -> int:
        return 2 - len(self._keys())

    def mint(self, current: SecretStr, label: str) -> Minted:
        if self.slots_free() < 1:
            raise VendorRejected(f"both access key slots of {self.user} are in use; delete the "
                                 "inactive key before rotating")
        try:
            created = self.iam.create_access_key(UserName=self.user)["AccessKey"]
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"iam CreateAccessKey {self.user}") from None
        value = SecretStr(f"{created['AccessKeyId']}:{created['SecretAccessKey']}")
        return Minted(auth_id=str(created["AccessKeyId"]), value=value)

    def find_minted(self, current: SecretStr, label: str) -> str | None:
        # IAM keys carry no label: after verify saw one key, a second one is this job's.
        key_id, _ = split(current)
        others = [k["AccessKeyId"] for k in self._keys() if k["AccessKeyId"] != key_id]
        return str(others[0]) if others else None

    def revoke(self, auth_id: str | None, *, using: SecretStr, value: SecretStr) -> bool:
        if auth_id is None:
            raise VendorRejected("aws_iam revoke needs the access key id")
        try:
            self.iam.update_access_key(UserName=self.user, AccessKeyId=auth_id,
                                       Status="Inactive")
            self.iam.delete_access_key(UserName=self.user, AccessKeyId=auth_id)
        except Exception as exc:  # noqa: BLE001
            err = translate(exc, f"iam revoke {auth_id}")
            if isinstance(err, NotFound):
                return False
            raise err from None
        return True

    def exists(self, auth_id: str, *, using: SecretStr) -> bool | None:
        return any(k["AccessKeyId"] == auth_id for k in self._keys())

    def last_used(self, auth_id: str, *, using: SecretStr) -> LastUse | None:
        """IAM's GetAccessKeyLastUsed: the last request signed with the key (AWS may take up
        to four hours to record one), and the service and region it went to."""
        try:
            found = self.iam.get_access_key_last_used(AccessKeyId=auth_id)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"iam GetAccessKeyLastUsed {auth_id}") from None
        used = found.get("AccessKeyLastUsed") or {}
        at = used.get("LastUsedDate")
        where = f"{used.get('ServiceName', 'N/A')} in {used.get('Region', 'N/A')}"
        return LastUse(at, f"GetAccessKeyLastUsed: {where}" if at else
                       "GetAccessKeyLastUsed: never used")

    def check_rotatable(self) -> None:
        if self.slots_free() < 1:
            raise VendorRejected(f"both access key slots of {self.user} are in use; delete the "
                                 "inactive key before rotating")


register(AwsIamVendor)
