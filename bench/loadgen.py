"""A bounded asyncio load generator: C keep-alive HTTP/1.1 connections, each sending one GET
after another, until `total` requests were sent or `seconds` passed (whichever comes first).

It speaks HTTP/1.1 over asyncio streams itself rather than through httpx: on this machine
httpx's AsyncClient tops out near 400 requests/s whatever the server (measured against the
bare hello-world app, which serves ~2,500/s), so with httpx every app would look alike. The
same generator (same connections, same bounds) measures every app.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class _Conn:
    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise RuntimeError("response without Content-Length")
        await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(url: str, concurrency: int, total: int, seconds: float,
                warmup: int, headers: dict[str, str]) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"User-Agent: velvet-bench\r\nAccept: */*\r\n{extra}\r\n").encode()
    conns = [_Conn(host, port, request) for _ in range(concurrency)]
    for i in range(warmup):
        if await conns[i % concurrency].get() != 200:
            raise RuntimeError(f"warm-up request to {url} failed")
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(conn: _Conn) -> None:
        nonlocal sent, errors
        while sent < total and time.perf_counter() < deadline:
            sent += 1
            t = time.perf_counter()
            try:
                ok = await conn.get() == 200
            except (OSError, asyncio.IncompleteReadError, RuntimeError):
                conn.close()
                ok = False
            latencies.append(time.perf_counter() - t)
            if not ok:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    latencies.sort()
    n = len(latencies)
    return LoadResult(
        requests=n, errors=errors, seconds=elapsed, rps=n / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1000,
        max_ms=latencies[-1] * 1000,
    )


def load(url: str, *, concurrency: int = 8, total: int = 20000, seconds: float = 10.0,
         warmup: int = 200, headers: dict[str, str] | None = None) -> LoadResult:
    return asyncio.run(_load(url, concurrency, total, seconds, warmup, headers or {}))
