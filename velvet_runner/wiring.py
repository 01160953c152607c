"""Builds adapters and their clients from Settings: the only place I/O is assembled.

Tests and the sandbox change what is behind the clients (base URLs, an httpx transport), never
the adapters themselves.
"""

from __future__ import annotations

import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx

from velvet_runner.aws import AwsClients
from velvet_runner.budget import Budget, Budgets, Policy
from velvet_runner.checks import Checker
from velvet_runner.client import make_client, tls_context
from velvet_runner.errors import BadArgument
from velvet_runner.manifest import Credential, TargetConfig
from velvet_runner.settings import Settings
from velvet_runner.targets.base import Target
from velvet_runner.vault import Vault
from velvet_runner.vendors.base import Vendor

if TYPE_CHECKING:
    from velvet_runner.shares import Account
    from velvet_runner.targets.infisical_secret import InfisicalSession

# How many writes may be in flight at once per target kind (each vendor's fair share). Heroku's
# limit is a request budget (4,500 an hour per account), not a concurrency cap: a rotation
# spends one request per consumer however many run at once, so its bound only has to keep a
# big fan-out from waiting on round trips (2,000 apps at 100 ms each: 1.6 s at 128 in flight,
# 3.1 s at 64). Past ~128 threads the runner is CPU-bound on two cores and more threads only
# add GIL contention (bench/results.md). GitHub asks for at most 100 concurrent requests per
# client, and SSM's standard throughput is a few writes a second, so those stay low.
DEFAULT_BOUNDS: dict[str, int] = {
    "heroku_config_var": 128,
    "github_actions_secret": 32,
    "infisical_secret": 64,
    "aws_ssm_parameter": 32,
}
# Connections one thread may hold per client: a fan-out thread has one request in flight.
PER_THREAD_CONNECTIONS = 4


class PerThreadTransport(httpx.BaseTransport):
    """An HTTP transport that gives each thread a connection pool of its own.

    httpcore's pool serialises every request on one lock and, at each hand-over, matches every
    queued request against every connection: with the fan-out's threads sharing one pool of
    `bound` connections that is O(bound^2) work per request (at 2,000 consumers and 64
    connections, ~15 s of CPU in the pool alone). A fan-out thread only ever has one request in
    flight, so a small pool of its own never queues and the threads never contend. Pools of
    threads that have ended are closed when the next thread starts one, and all at close().
    """

    def __init__(self, verify: ssl.SSLContext) -> None:
        self._verify = verify
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pools: dict[int, tuple[weakref.ref[threading.Thread], httpx.HTTPTransport]] = {}
        self._closed = False

    def _pool(self) -> httpx.HTTPTransport:
        pool: httpx.HTTPTransport | None = getattr(self._local, "pool", None)
        if pool is not None:
            return pool
        pool = httpx.HTTPTransport(verify=self._verify, limits=httpx.Limits(
            max_connections=PER_THREAD_CONNECTIONS,
            max_keepalive_connections=PER_THREAD_CONNECTIONS))
        with self._lock:
            if self._closed:
                raise RuntimeError("transport is closed")
            for ident, (thread, old) in list(self._pools.items()):
                alive = thread()
                if alive is None or not alive.is_alive():
                    old.close()
                    del self._pools[ident]
            self._pools[threading.get_ident()] = (weakref.ref(threading.current_thread()), pool)
        self._local.pool = pool
        return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._pool().handle_request(request)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools = [pool for _, pool in self._pools.values()]
            self._pools.clear()
        for pool in pools:
            pool.close()


class Wiring:
    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 bounds: dict[str, int] | None = None,
                 budgets: Budgets | None = None) -> None:
        self.settings = settings
        # One rate budget per vendor account, shared by every client below (and the notifier
        # when it is given `wiring.budgets`): budget.py.
        self.budgets = (budgets if budgets is not None
                        else Budgets(time_scale=settings.budget_time_scale))
        self.transport = transport
        self.sleep = sleep
        self.bounds = {**DEFAULT_BOUNDS, **(bounds or {})}
        self.aws = AwsClients(settings.aws_endpoint_url)
        self._clients: list[httpx.Client] = []
        self._api_clients: dict[str, httpx.Client] = {}

    def _transport(self) -> httpx.BaseTransport:
        """The injected transport (tests, sandbox), else one pool per thread per client."""
        if self.transport is not None:
            return self.transport
        # One TLS context for every thread's pool: loading the CA bundle costs milliseconds.
        return PerThreadTransport(tls_context())

    def _client(self, base_url: str, headers: dict[str, str] | None = None,
                max_connections: int = 64, *, vendor: str) -> httpx.Client:
        client = make_client(base_url, headers=headers, transport=self._transport(),
                             max_connections=max_connections, budgets=self.budgets,
                             vendor=vendor)
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

        return load_all()[credential.vendor].build(credential, self)

    def api_client(self, name: str, default_url: str,
                   headers: dict[str, str] | None = None) -> httpx.Client:
        """The client of API `name`, one per wiring, at VELVET_<NAME>_API_URL or `default_url`.

        For a vendor that brings its own API: its module names the URL and headers in `build`,
        so adding it needs no edit here or in settings. Its requests are paced by its policy in
        budget.POLICIES, else as a vendor's without published limits (8 in flight).
        """
        client = self._api_clients.get(name)
        if client is None:
            self.budgets.policies.setdefault(name, Policy(name, concurrency=8))
            client = self._client(self.settings.api_url(name, default_url), headers,
                                  vendor=name)
            self._api_clients[name] = client
        return client

    @cached_property
    def heroku_client(self) -> httpx.Client:
        return self._client(self.settings.heroku_api_url,
                            {"Accept": "application/vnd.heroku+json; version=3"},
                            vendor="heroku")

    @cached_property
    def cloudflare_client(self) -> httpx.Client:
        return self._client(self.settings.cloudflare_api_url, vendor="cloudflare")

    @cached_property
    def postmark_client(self) -> httpx.Client:
        return self._client(self.settings.postmark_api_url, {"Accept": "application/json"},
                            vendor="postmark")

    # --- targets --------------------------------------------------------------------------

    def target(self, config: TargetConfig) -> Target:
        from velvet_runner.targets import load_all

        return load_all()[config.kind].build(config, self)

    def vault(self, credential: Credential) -> Vault:
        return Vault(credential.vault, self.target)

    @cached_property
    def heroku_bootstrap_client(self) -> httpx.Client:
        token = self._secret("heroku_token")
        return self._client(self.settings.heroku_api_url, {
            "Accept": "application/vnd.heroku+json; version=3",
            "Authorization": f"Bearer {token}",
        }, max_connections=self.bounds["heroku_config_var"], vendor="heroku")

    @cached_property
    def github_client(self) -> httpx.Client:
        token = self._secret("github_token")
        return self._client(self.settings.github_api_url, {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Authorization": f"Bearer {token}",
        }, max_connections=self.bounds["github_actions_secret"], vendor="github")

    @cached_property
    def infisical_session(self) -> InfisicalSession:
        from velvet_runner.targets.infisical_secret import InfisicalSession

        client = self._client(self.settings.infisical_api_url,
                              max_connections=self.bounds["infisical_secret"],
                              vendor="infisical")
        return InfisicalSession(client, self._secret("infisical_client_id"),
                                self._secret("infisical_client_secret"))

    # --- rate budgets ---------------------------------------------------------------------

    def _account_of_kind(self, kind: str) -> tuple[str, str, str] | None:
        """(vendor, API URL, bootstrap secret) of the account a target kind's writes draw
        from; None: not an HTTP budget, or no credential to reach it."""
        accounts = {
            "heroku_config_var": ("heroku", self.settings.heroku_api_url, "heroku_token"),
            "github_actions_secret": ("github", self.settings.github_api_url, "github_token"),
        }
        account = accounts.get(kind)
        if account is None or getattr(self.settings, account[2]) is None:
            return None
        return account

    def budget_for_kind(self, kind: str) -> Budget | None:
        """The account budget a target kind's writes draw from (None: not an HTTP budget)."""
        account = self._account_of_kind(kind)
        if account is None:
            return None
        vendor, url, secret = account
        return self.budgets.get(vendor, url, f"Bearer {self._secret(secret)}")

    def share_accounts(self, kinds: Mapping[str, int]) -> list[Account]:
        """The accounts a fan-out of `kinds` (kind -> writes) spends heavily enough to lease a
        share of across runs (shares.py; Budget.heavy): one per vendor and API URL, never
        keyed by a token. A small fan-out does not lease: it needs under half of every window."""
        from velvet_runner.shares import Account, account_folder

        found: dict[str, Account] = {}
        writes: dict[str, int] = {}
        for kind, count in kinds.items():
            account, budget = self._account_of_kind(kind), self.budget_for_kind(kind)
            if account is None or budget is None:
                continue
            folder = account_folder(account[0], account[1])
            found.setdefault(folder, Account(folder, f"{account[0]} {account[1]}", budget))
            writes[folder] = writes.get(folder, 0) + count
        return [a for folder, a in found.items() if a.budget.heavy(writes[folder])]

    def budget_estimate(self, kinds: Mapping[Any, int]) -> tuple[float, str]:
        """Seconds the budgets need for one write per consumer, and what binds the longest."""
        best, why = 0.0, ""
        for kind, count in kinds.items():
            budget = self.budget_for_kind(str(kind))
            if budget is None:
                continue
            seconds, reason = budget.estimate(count)
            if seconds > best:
                best, why = seconds, f"{budget.policy.vendor} {reason}"
        return best, why

    # --- checks ---------------------------------------------------------------------------

    @cached_property
    def health_client(self) -> httpx.Client:
        # Health URLs are absolute; no base URL, no vendor credentials.
        client = httpx.Client(transport=self._transport(),
                              timeout=httpx.Timeout(10.0, connect=5.0),
                              follow_redirects=False,
                              limits=httpx.Limits(max_connections=128,
                                                  max_keepalive_connections=128))
        self._clients.append(client)
        return client

    def checker(self) -> Checker:
        return Checker(self.health_client, settle_seconds=self.settings.settle_seconds,
                       sleep=self.sleep)
