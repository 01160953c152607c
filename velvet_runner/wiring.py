"""Builds adapters and their clients from Settings: the only place I/O is assembled.

Tests and the sandbox change what is behind the clients (base URLs, an httpx transport), never
the adapters themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

import httpx

from velvet_runner.aws import AwsClients
from velvet_runner.checks import Checker
from velvet_runner.client import make_client
from velvet_runner.errors import BadArgument
from velvet_runner.manifest import (
    AwsSsmParameter,
    Credential,
    GithubActionsSecret,
    HerokuConfigVar,
    InfisicalSecret,
    TargetConfig,
)
from velvet_runner.settings import Settings
from velvet_runner.targets.base import Target
from velvet_runner.vault import Vault
from velvet_runner.vendors.base import Vendor

if TYPE_CHECKING:
    from velvet_runner.targets.infisical_secret import InfisicalSession

# How many writes may be in flight at once per target kind (each vendor's fair share).
DEFAULT_BOUNDS: dict[str, int] = {
    "heroku_config_var": 64,
    "github_actions_secret": 32,
    "infisical_secret": 64,
    "aws_ssm_parameter": 32,
}


class Wiring:
    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 bounds: dict[str, int] | None = None) -> None:
        self.settings = settings
        self.transport = transport
        self.sleep = sleep
        self.bounds = {**DEFAULT_BOUNDS, **(bounds or {})}
        self.aws = AwsClients(settings.aws_endpoint_url)
        self._clients: list[httpx.Client] = []

    def _client(self, base_url: str, headers: dict[str, str] | None = None,
                max_connections: int = 64) -> httpx.Client:
        client = make_client(base_url, headers=headers, transport=self.transport,
                             max_connections=max_connections)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def _secret(self, name: str) -> str:
        value = getattr(self.settings, name)
        if value is None:
            env = "VELVET_" + name.upper()
            raise BadArgument(f"{env} is not set; Velvet needs it to reach that vendor")
        return str(value.get_secret_value())

    # --- vendors --------------------------------------------------------------------------

    def vendor(self, credential: Credential) -> Vendor:
        from velvet_runner.vendors import load_all

        cls = load_all()[credential.vendor]
        if credential.vendor == "heroku":
            return cls(credential, self.heroku_client)  # type: ignore[call-arg]
        if credential.vendor == "cloudflare":
            return cls(credential, self.cloudflare_client)  # type: ignore[call-arg]
        if credential.vendor == "postmark":
            return cls(credential, self.postmark_client)  # type: ignore[call-arg]
        if credential.vendor == "aws_iam":
            return cls(credential, self.aws)  # type: ignore[call-arg]
        return cls(credential)  # type: ignore[call-arg]

    @cached_property
    def heroku_client(self) -> httpx.Client:
        return self._client(self.settings.heroku_api_url,
                            {"Accept": "application/vnd.heroku+json; version=3"})

    @cached_property
    def cloudflare_client(self) -> httpx.Client:
        return self._client(self.settings.cloudflare_api_url)

    @cached_property
    def postmark_client(self) -> httpx.Client:
        return self._client(self.settings.postmark_api_url, {"Accept": "application/json"})

    # --- targets --------------------------------------------------------------------------

    def target(self, config: TargetConfig) -> Target:
        from velvet_runner.targets import load_all

        cls = load_all()[config.kind]
        if isinstance(config, HerokuConfigVar):
            return cls(config, self.heroku_bootstrap_client)  # type: ignore[call-arg]
        if isinstance(config, GithubActionsSecret):
            return cls(config, self.github_client)  # type: ignore[call-arg]
        if isinstance(config, InfisicalSecret):
            return cls(config, self.infisical_session)  # type: ignore[call-arg]
        if isinstance(config, AwsSsmParameter):
            return cls(config, self.aws.client("ssm", config.region),  # type: ignore[call-arg]
                       sleep=self.sleep)
        raise BadArgument(f"unknown target kind {config.kind}")  # pragma: no cover

    def vault(self, credential: Credential) -> Vault:
        return Vault(credential.vault, self.target)

    @cached_property
    def heroku_bootstrap_client(self) -> httpx.Client:
        token = self._secret("heroku_token")
        return self._client(self.settings.heroku_api_url, {
            "Accept": "application/vnd.heroku+json; version=3",
            "Authorization": f"Bearer {token}",
        }, max_connections=self.bounds["heroku_config_var"])

    @cached_property
    def github_client(self) -> httpx.Client:
        token = self._secret("github_token")
        return self._client(self.settings.github_api_url, {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Authorization": f"Bearer {token}",
        }, max_connections=self.bounds["github_actions_secret"])

    @cached_property
    def infisical_session(self) -> InfisicalSession:
        from velvet_runner.targets.infisical_secret import InfisicalSession

        client = self._client(self.settings.infisical_api_url,
                              max_connections=self.bounds["infisical_secret"])
        return InfisicalSession(client, self._secret("infisical_client_id"),
                                self._secret("infisical_client_secret"))

    # --- checks ---------------------------------------------------------------------------

    @cached_property
    def health_client(self) -> httpx.Client:
        # Health URLs are absolute; no base URL, no vendor credentials.
        client = httpx.Client(transport=self.transport, timeout=httpx.Timeout(10.0, connect=5.0),
                              follow_redirects=False,
                              limits=httpx.Limits(max_connections=128,
                                                  max_keepalive_connections=128))
        self._clients.append(client)
        return client

    def checker(self) -> Checker:
        return Checker(self.health_client, settle_seconds=self.settings.settle_seconds,
                       sleep=self.sleep)
