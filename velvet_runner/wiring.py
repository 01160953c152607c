"""Builds adapters and their clients from Settings: the only place I/O is assembled.

Tests and the sandbox change what is behind the clients (base URLs, an httpx transport), never
the adapters themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from velvet_runner.aws import AwsClients
from velvet_runner.budget import Budget, Budgets, Policy
from velvet_runner.checks import Checker
from velvet_runner.client import Api, Bearer, Login, Supplies, make_client, tls_context
from velvet_runner.errors import BadArgument
from velvet_runner.manifest import Credential, Manifest, TargetConfig
from velvet_runner.settings import Settings
from velvet_runner.targets import load_all as load_targets
from velvet_runner.targets.base import DEFAULT_BOUND, Found, Target
from velvet_runner.vault import Vault
from velvet_runner.vendors import load_all as load_vendors
from velvet_runner.vendors.base import Vendor

if TYPE_CHECKING:
    import httpx

    from velvet_runner.shares import Account

class Wiring:
    """Builds each adapter from what it declares (its `APIS`, `BOUND` and `BUDGET`): one
    client per API and the credentials it carries, shared by every adapter of the run that
    declares it, with the secrets its auth names read from the settings."""

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
        # Writes in flight at once per target kind: each kind's declared BOUND, overridden.
        self.bounds = {**{kind: cls.BOUND or DEFAULT_BOUND
                          for kind, cls in load_targets().items()}, **(bounds or {})}
        self.aws = AwsClients(settings.aws_endpoint_url)
        self._clients: list[httpx.Client] = []
        self._connected: dict[tuple[str, Bearer | Login | None], Any] = {}
        self._supplies: dict[type, Supplies] = {}
        # Fan-out threads build their targets at once: each API's client is built once.
        self._lock = threading.RLock()

    def _transport(self) -> httpx.BaseTransport:
        """The injected transport (tests, sandbox), else one pool per thread per client."""
        if self.transport is not None:
            return self.transport
        from velvet_runner.transport import PerThreadTransport

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
        self._connected.clear()

    def bound(self, kind: str) -> int:
        """How many writes of target kind `kind` may be in flight at once."""
        return self.bounds.get(kind, DEFAULT_BOUND)

    def secret(self, name: str) -> str:
        """The value of Velvet's own secret setting `name` (BadArgument naming it: unset)."""
        value = self.settings.secret(name)
        if value is None:
            raise BadArgument(f"{name} is not set; Velvet needs it to reach that vendor")
        return value.get_secret_value()

    def api_url(self, api: Api) -> str:
        return self.settings.api_url(api.name, api.default_url)

    # --- adapters -------------------------------------------------------------------------

    def vendor(self, credential: Credential) -> Vendor:
        cls = load_vendors()[credential.vendor]
        return cls.build(credential, self.supplies(cls))

    def target(self, config: TargetConfig) -> Target:
        cls = load_targets()[config.kind]
        return cls.build(config, self.supplies(cls))

    def vault(self, credential: Credential) -> Vault:
        return Vault(credential.vault, self.target)

    def sweep(self, kind: str, manifest: Manifest, credential: Credential) -> Iterator[Found]:
        """Target kind `kind`'s sweep (scan.py); a missing secret is raised when it starts."""
        cls = load_targets()[kind]
        yield from cls.sweep(self.supplies(cls), manifest, credential)

    def supplies(self, adapter: type[Vendor] | type[Target]) -> Supplies:
        """What `adapter` declared, ready: its APIs' clients (built on first use), AWS, sleep."""
        with self._lock:
            found = self._supplies.get(adapter)
            if found is None:
                kind = adapter.kind
                # A target's clients hold as many connections as its writes may need at once.
                most = self.bound(kind) if issubclass(adapter, Target) else 64
                found = Supplies(f"{kind} ({adapter.__name__})", adapter.APIS,
                                 lambda api: self.connect(api, most), self.aws, self.sleep)
                self._supplies[adapter] = found
            return found

    def connect(self, api: Api, max_connections: int = 64) -> Any:
        """The client of `api` for this run (its session, for an API that logs in): one per
        API name and auth, built on first use, at VELVET_<NAME>_API_URL or its default URL.
        Its requests are paced by its policy in ratepolicy.POLICIES, else the one it declares,
        else as a vendor's without published limits (8 in flight)."""
        key = (api.name, api.auth)
        with self._lock:
            found = self._connected.get(key)
            if found is None:
                found = self._connected[key] = self._connect(api, max_connections)
            return found

    def _connect(self, api: Api, max_connections: int) -> Any:
        values = [self.secret(name) for name in api.secrets]  # refused before any client
        headers = dict(api.headers)
        if isinstance(api.auth, Bearer):
            headers["Authorization"] = api.auth.header(values[0])
        self._pace(api)
        client = self._client(self.api_url(api), headers, max_connections, vendor=api.name)
        if isinstance(api.auth, Login):
            return api.auth.session(client, *values)
        return client

    def api_client(self, name: str, default_url: str,
                   headers: dict[str, str] | None = None) -> httpx.Client:
        """The client of API `name` that carries no credential of Velvet's (`connect`)."""
        client: httpx.Client = self.connect(Api(name, default_url,
                                                tuple((headers or {}).items())))
        return client

    # --- rate budgets ---------------------------------------------------------------------

    def _account_of_kind(self, kind: str) -> Api | None:
        """The API whose account a target kind's writes draw from (its declared BUDGET); None:
        not an HTTP budget, or no credential to reach it."""
        cls = load_targets().get(kind)
        api = cls.BUDGET if cls is not None else None
        if api is None or not isinstance(api.auth, Bearer) or \
                self.settings.secret(api.auth.secret) is None:
            return None
        return api

    def _pace(self, api: Api) -> None:
        """Its policy for the budgets, before a client or an estimate needs it."""
        self.budgets.policies.setdefault(api.name,
                                         api.policy or Policy(api.name, concurrency=8))

    def budget_for_kind(self, kind: str) -> Budget | None:
        """The account budget a target kind's writes draw from (None: not an HTTP budget)."""
        api = self._account_of_kind(kind)
        if api is None or not isinstance(api.auth, Bearer):
            return None
        self._pace(api)
        return self.budgets.get(api.name, self.api_url(api),
                                api.auth.header(self.secret(api.auth.secret)))

    def share_accounts(self, kinds: Mapping[str, int]) -> list[Account]:
        """The accounts a fan-out of `kinds` (kind -> writes) spends heavily enough to lease a
        share of across runs (shares.py; Budget.heavy): one per vendor and API URL, never
        keyed by a token. A small fan-out does not lease: it needs under half of every window."""
        from velvet_runner.shares import Account, account_folder

        found: dict[str, Account] = {}
        writes: dict[str, int] = {}
        for kind, count in kinds.items():
            api, budget = self._account_of_kind(kind), self.budget_for_kind(kind)
            if api is None or budget is None:
                continue
            url = self.api_url(api)
            folder = account_folder(api.name, url)
            found.setdefault(folder, Account(folder, f"{api.name} {url}", budget))
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
        import httpx

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
