"""A git host on loopback: bare repositories over smart HTTP, read-only, behind a token.

It stands where GitHub serves `https://github.com/<owner>/<repo>.git` to a fine-grained token
(or an App installation token) with `contents: read`: git's first request gets 401 with a
Basic challenge, git asks its credential helper, and the second carries the token as the
password (any user name, as GitHub takes `x-access-token`). Pushes are refused with 403, as
for a read-only token. The protocol itself is git's own `git http-backend` (CGI), so what a
client fetches is exactly what git serves.

    host = GitHost(root, tokens={"t0k3n..."})       # root holds <name>.git bare repositories
    with ServerThread(host.app()) as server: ...    # git fetch {server.url}/<name>.git
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

REALM = 'Basic realm="GitHub"'


class GitHost:
    """Bare repositories under `root`, readable with any of `tokens`; `refused` counts 401s."""

    def __init__(self, root: Path, tokens: Iterable[str]) -> None:
        self.root = root.resolve()
        self.tokens = set(tokens)
        self.refused = 0
        self.served = 0

    def _authorized(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return any(hmac.compare_digest(password.encode(), t.encode()) for t in self.tokens)

    async def handle(self, request: Request) -> Response:
        path = request.path_params["path"]
        service = request.query_params.get("service", "")
        if "receive-pack" in path or service == "git-receive-pack":
            return PlainTextResponse("Permission to push denied: the token is read-only.\n", 403)
        if not self._authorized(request.headers.get("authorization")):
            self.refused += 1
            return PlainTextResponse("Invalid username or token.\n", 401,
                                     headers={"WWW-Authenticate": REALM})
        body = await request.body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + path, "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.url.query, "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": request.client.host if request.client else "127.0.0.1",
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding", ""),
            "GIT_PROTOCOL": request.headers.get("git-protocol", ""),
        }
        proc = await run_in_threadpool(
            subprocess.run, ["git", "http-backend"], input=body, env=env, capture_output=True,
            check=False)
        out = proc.stdout
        # CGI headers end at the first blank line, whichever line ending the backend used
        ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := out.find(sep)) >= 0]
        at, width = min(ends) if ends else (len(out), 0)
        head, payload = out[:at], out[at + width:]
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        self.served += 1
        return Response(payload, status_code=status, headers=headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])
