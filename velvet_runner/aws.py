"""boto3 clients (imported lazily: the CLI must start fast) and the one ClientError translator."""

from __future__ import annotations

import threading
from typing import Any

from velvet_runner.errors import (
    AuthRejected,
    NotFound,
    RateLimited,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)

AUTH = {"AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
        "InvalidClientTokenId", "SignatureDoesNotMatch", "InvalidSignatureException",
        "ExpiredToken", "ExpiredTokenException", "InvalidKeyId"}
MISSING = {"ParameterNotFound", "NoSuchEntity", "ParameterVersionNotFound"}
BACK_OFF = {"Throttling", "ThrottlingException", "TooManyUpdates", "RequestLimitExceeded"}
TRANSIENT = {"InternalServerError", "ServiceFailure", "ServiceUnavailable", "InternalFailure"}


def translate(exc: Exception, what: str) -> VendorError:
    """botocore's errors, as Velvet's; the message names the call, never a value."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = f"{what}: {code}"
        if code in AUTH:
            return AuthRejected(message, status=status)
        if code in MISSING:
            return NotFound(message, status=status)
        if code in BACK_OFF:
            return RateLimited(message, status=status)
        if code in TRANSIENT or (isinstance(status, int) and status >= 500):
            return VendorUnavailable(message, status=status)
        return VendorRejected(message, status=status)
    if isinstance(exc, BotoCoreError):
        return VendorUnavailable(f"{what}: {type(exc).__name__}")
    raise exc


class AwsClients:
    """boto3 clients for one endpoint; cached per (service, region) for Velvet's own identity."""

    def __init__(self, endpoint_url: str | None) -> None:
        self.endpoint_url = endpoint_url
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str, *, access_key_id: str | None = None,
               secret_access_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 3, "mode": "standard"},
                        max_pool_connections=64, connect_timeout=5, read_timeout=15)
        # Any: boto3-stubs types client() per literal service name; ours is a parameter.
        session: Any = boto3.session.Session()
        if access_key_id is not None:
            return session.client(
                service, region_name=region, endpoint_url=self.endpoint_url, config=config,
                aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)
        key = (service, region)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url, config=config)
            return self._cache[key]
