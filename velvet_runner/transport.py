"""Velvet's httpx transports: one that paces a client by its account's budget (budget.py), and
one that gives each fan-out thread a connection pool of its own.

Kept apart from budget.py and wiring.py so that reading the budgets' numbers, the settings, the
manifest and the adapters' declarations does not import httpx: a command that calls no vendor
(status, due, a refused setting) starts faster.
"""

from __future__ import annotations

import ssl
import threading
import weakref

import httpx

from velvet_runner.budget import PAUSED, Budget, Budgets


class BudgetTransport(httpx.BaseTransport):
    """Draws every request from its account's budget and reports the answer to it.

    The account is the client's base URL and the request's Authorization header (a vendor call
    authenticates per request with the credential being rotated; a target with Velvet's own).
    """

    def __init__(self, inner: httpx.BaseTransport, budgets: Budgets, vendor: str,
                 base_url: str) -> None:
        self.inner = inner
        self.budgets = budgets
        self.vendor = vendor
        self.base_url = base_url

    def budget_for(self, request: httpx.Request) -> Budget:
        return self.budgets.get(self.vendor, self.base_url, request.headers.get("authorization"))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        budget = self.budget_for(request)
        with budget.request(request.method) as answered:
            response = self.inner.handle_request(request)
            try:
                response.read()
            except BaseException:
                response.close()
                raise
            answered.append(response)
            if budget.policy.is_rate_limited(response):
                response.extensions[PAUSED] = True
        return response

    def close(self) -> None:
        self.inner.close()


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
