"""moto (AWS IAM and SSM) in the sandbox's registry: access keys for `aws_iam` credentials, SSM
parameters for consumers and vaults.

moto keeps its AWS state per process, not per server: two sandboxes in one process share IAM
and SSM. Issuing is idempotent (a live key the vault already holds is adopted rather than
replaced), so a second sandbox never invalidates the first one's key.

Requests signed with an IAM user's key are checked as AWS checks them (server.SignatureCheck):
an unknown, deleted or inactive key, or a wrong secret, is refused. ACCESS_KEY, the sandbox's
own credentials (the stand-in for an assumed role), is trusted unchecked.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from velvet_sandbox import registry

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_ssm import SSMClient

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


class AwsFake(registry.Fake):
    name = "aws"
    setting = "AWS_ENDPOINT_URL"
    control = False
    vendors = ("aws_iam",)
    targets = ("aws_ssm_parameter",)

    def serve(self, port: int) -> registry.Server:
        from velvet_sandbox.server import MotoThread

        return MotoThread(port, trusted=frozenset({ACCESS_KEY}))

    def bootstrap(self, identity: registry.Identity) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION}

    def _kwargs(self, region: str = REGION) -> dict[str, Any]:
        if not self.root:
            raise RuntimeError("the sandbox is not started")
        return {"endpoint_url": self.root, "region_name": region,
                "aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}

    def ssm(self, region: str = REGION) -> SSMClient:
        import boto3

        return boto3.client("ssm", **self._kwargs(region))

    def iam(self) -> IAMClient:
        import boto3

        return boto3.client("iam", **self._kwargs())

    def parameter(self, name: str, region: str = REGION) -> str | None:
        """An SSM parameter's decrypted value, or None when it does not exist."""
        try:
            found = self.ssm(region).get_parameter(Name=name, WithDecryption=True)
        except Exception as exc:  # noqa: BLE001 - botocore raises a dynamic class
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise
        return found["Parameter"].get("Value")

    def issue(self, credential: Any, identity: registry.Identity) -> registry.Issued:
        """An access key of the credential's IAM user, as AKID:SECRET (the vault's format);
        a live key the vault already holds is adopted, and is the user's only key."""
        user = credential.options.user_name
        iam = self.iam()
        try:
            iam.create_user(UserName=user)
        except iam.exceptions.EntityAlreadyExistsException:
            pass
        keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        vault = credential.vault
        current = (self.parameter(vault.name, vault.region)
                   if vault.kind == "aws_ssm_parameter" else None)
        if current and self.is_live(current):  # its secret too: a wrong one is replaced
            adopted = current.split(":", 1)[0]
            # A fresh world's user holds the vault's key alone: a key an earlier rotation in
            # this process left behind would fill IAM's second slot.
            for listed in keys:
                if listed["AccessKeyId"] != adopted:
                    iam.delete_access_key(UserName=user, AccessKeyId=listed["AccessKeyId"])
            return registry.Issued(current, adopted)
        if len(keys) >= 2:  # IAM's two-key cap: make room, oldest first
            iam.delete_access_key(UserName=user, AccessKeyId=keys[0]["AccessKeyId"])
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return registry.Issued(f"{key['AccessKeyId']}:{key['SecretAccessKey']}",
                               key["AccessKeyId"])

    def is_live(self, value: str) -> bool:
        key_id, _, secret = value.partition(":")
        return any(key.access_key_id == key_id and key.secret_access_key == secret
                   and key.status == "Active" for key in _moto_keys())

    def hold(self, config: Any, value: str) -> None:
        self.ssm(config.region).put_parameter(Name=config.name, Value=value,
                                              Type="SecureString", Overwrite=True)

    def held(self, config: Any) -> str | None:
        return self.parameter(config.name, config.region)

    def forget(self, config: Any) -> None:
        ssm = self.ssm(config.region)
        with contextlib.suppress(ssm.exceptions.ParameterNotFound):
            ssm.delete_parameter(Name=config.name)

    def token_values(self) -> list[str]:
        """Secret access keys moto holds now (including ones Velvet created in a rotation)."""
        out: list[str] = []
        for key in _moto_keys():
            out += [key.secret_access_key, f"{key.access_key_id}:{key.secret_access_key}"]
        return out


def _moto_keys() -> list[Any]:
    from moto.iam.models import iam_backends

    return [key for account in list(iam_backends.values())
            for user in list(account["aws"].users.values()) for key in list(user.access_keys)]


registry.register(AwsFake)
