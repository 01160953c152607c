"""A recording proxy on loopback: whatever is pointed at it reaches the fake behind it, and
every request (method, path, query, JSON body) is kept for a test to check. Nothing is
patched: Velvet is simply given the proxy's URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from velvet_sandbox.server import ServerThread

HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any  # the parsed JSON body, None when there is none
    status: int


@contextmanager
def recording(target: str) -> Iterator[tuple[str, list[Recorded]]]:
    """(the proxy's URL, the requests it has forwarded so far)."""
    seen: list[Recorded] = []
    client = httpx.Client(base_url=target, timeout=30)

    async def forward(request: Request) -> Response:
        raw = await request.body()
        # The Host stays the proxy's: the fake builds its links (Link, url fields) on it, so
        # a client following them comes back through the proxy.
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        answer = client.request(request.method, request.url.path,
                                params=list(request.query_params.multi_items()),
                                content=raw, headers=headers)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        seen.append(Recorded(request.method, request.url.path, dict(request.query_params),
                             body, answer.status_code))
        return Response(answer.content, status_code=answer.status_code,
                        headers={k: v for k, v in answer.headers.items()
                                 if k.lower() not in HOP_BY_HOP})

    app = Starlette(routes=[Route("/{path:path}", forward,
                                  methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])
    try:
        with ServerThread(app, name="contract-recorder") as server:
            yield server.url, seen
    finally:
        client.close()
