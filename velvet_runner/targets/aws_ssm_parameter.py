"""An AWS SSM parameter, written as a SecureString with Overwrite (vendor-apis.md 6.2).

botocore retries throttling and 5xx itself but not TooManyUpdates (concurrent writes to one
parameter): that is retried here with a short backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, StrictStr

from velvet_runner.aws import translate
from velvet_runner.errors import NotFound, RateLimited
from velvet_runner.manifest_models import TargetConfig, VaultConfig
from velvet_runner.records import fingerprint
from velvet_runner.targets import register
from velvet_runner.targets.base import Found, Target

TOO_MANY_UPDATES_ATTEMPTS = 5

if TYPE_CHECKING:
    from velvet_runner.client import Supplies
    from velvet_runner.manifest import Manifest
    from velvet_runner.manifest_models import Credential


class AwsSsmParameter(VaultConfig):
    kind: Literal["aws_ssm_parameter"] = Field(
        description="An AWS SSM Parameter Store SecureString.")
    name: Annotated[StrictStr, Field(pattern=r"^/[A-Za-z0-9_.\-/]+$")] = Field(
        description="The parameter's full path.")
    region: StrictStr = Field("us-east-1", description="The AWS region of the parameter.")

    def describe(self) -> str:
        return f"aws ssm parameter {self.name}"

    def place(self) -> tuple[str, ...]:
        return (self.kind, self.region, self.name)  # parameters are regional


class AwsSsmParameterTarget(Target):
    kind: ClassVar[str] = "aws_ssm_parameter"
    config_model: ClassVar[type[TargetConfig]] = AwsSsmParameter
    CAN_BE_VAULT: ClassVar[bool] = True
    # SSM's standard throughput is a few writes a second.
    BOUND: ClassVar[int | None] = 32

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> AwsSsmParameterTarget:
        return cls(config, supplies.aws.client("ssm", config.region), sleep=supplies.sleep)

    def __init__(self, config: AwsSsmParameter, ssm: Any,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.ssm = ssm
        self.sleep = sleep
        self.what = f"ssm parameter {config.name}"

    def write(self, value: SecretStr) -> None:
        for attempt in range(TOO_MANY_UPDATES_ATTEMPTS):
            try:
                self.ssm.put_parameter(Name=self.config.name, Value=value.get_secret_value(),
                                       Type="SecureString", Overwrite=True)
                return
            except Exception as exc:  # noqa: BLE001 - translated
                err = translate(exc, f"PutParameter {self.config.name}")
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code != "TooManyUpdates" or attempt + 1 == TOO_MANY_UPDATES_ATTEMPTS:
                    raise err from None
                self.sleep(0.1 * (2 ** attempt))
        raise RateLimited(f"PutParameter {self.config.name}: TooManyUpdates")  # pragma: no cover

    def read(self) -> SecretStr | None:
        try:
            found = self.ssm.get_parameter(Name=self.config.name, WithDecryption=True)
        except Exception as exc:  # noqa: BLE001
            err = translate(exc, f"GetParameter {self.config.name}")
            if isinstance(err, NotFound):
                return None
            raise err from None
        return SecretStr(found["Parameter"]["Value"])

    def delete(self) -> None:
        try:
            self.ssm.delete_parameter(Name=self.config.name)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"DeleteParameter {self.config.name}") from None

    def probe(self) -> str:
        try:
            found = self.ssm.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals",
                                   "Values": [self.config.name]}])
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"DescribeParameters {self.config.name}") from None
        exists = bool(found.get("Parameters"))
        return f"{self.what}: " + ("exists" if exists else "not created yet (first write creates "
                                   "it)")

    @classmethod
    def sweep(cls, supplies: Supplies, manifest: Manifest,
              credential: Credential) -> Iterator[Found]:
        """Every parameter under the manifest's prefixes (`prefixes`), decrypted and
        fingerprinted, followed through GetParametersByPath's NextToken."""
        for region, roots in sorted(prefixes(manifest).items()):
            ssm = supplies.aws.client("ssm", region)
            for root in roots:
                token: str | None = None
                while True:
                    page: dict[str, Any] = {"Path": root, "Recursive": True,
                                            "WithDecryption": True, "MaxResults": 10}
                    if token:
                        page["NextToken"] = token
                    try:
                        found = ssm.get_parameters_by_path(**page)
                    except Exception as exc:  # noqa: BLE001 - translated
                        raise translate(exc, f"GetParametersByPath {root}") from None
                    for parameter in found.get("Parameters", []):
                        place = AwsSsmParameter.model_construct(
                            kind="aws_ssm_parameter", name=parameter["Name"], region=region)
                        yield Found(place.describe(), fingerprint(str(parameter["Value"])))
                    token = found.get("NextToken")
                    if not token:
                        break


def prefixes(manifest: Manifest) -> dict[str, list[str]]:
    """The manifest's SSM prefixes, per region: the first path segment of every parameter it
    names (a consumer's or a vault's), e.g. `/raxx` for `/raxx/prod/heroku/KEY`; a parameter at
    the root makes the root itself one."""
    roots: dict[str, set[str]] = {}
    for credential in manifest.credentials:
        for config in (credential.vault, *credential.consumers):
            if isinstance(config, AwsSsmParameter):
                first, _, rest = config.name.strip("/").partition("/")
                roots.setdefault(config.region, set()).add(f"/{first}" if rest else "/")
    return {region: ["/"] if "/" in found else sorted(found) for region, found in roots.items()}


register(AwsSsmParameterTarget)
