"""Run the fakes on loopback: uvicorn (ASGI fakes) and moto (AWS) in background threads.

Both always bind 127.0.0.1. Port 0 lets the kernel pick a free port; the real one is read back
from the bound socket, so parallel test runs never collide.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import Generator
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import LifespanType

HOST = "127.0.0.1"
_START_TIMEOUT_SECONDS = 10.0


class _ThreadServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to whoever owns the main thread."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ServerThread:
    """One ASGI app served by uvicorn on 127.0.0.1 in a daemon thread.

    Also a context manager: `with ServerThread(app) as server:` starts it and stops it after.
    The fakes need no lifespan; an app with startup/shutdown work passes `lifespan="on"`.
    """

    def __init__(
        self,
        app: ASGIApp,
        port: int = 0,
        *,
        name: str = "sandbox",
        lifespan: LifespanType = "off",
    ) -> None:
        config = uvicorn.Config(
            app,
            host=HOST,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan=lifespan,
            # Hanging requests (injected faults) must not hold up stop() for long.
            timeout_graceful_shutdown=1,
        )
        self._server = _ThreadServer(config)
        self._thread = threading.Thread(target=self._server.run, name=f"velvet-{name}", daemon=True)
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> int:
        """Start serving and return the bound port."""
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self._thread.name} failed to start on {HOST}")
            time.sleep(0.01)
        sockets: list[Any] = [s for srv in self._server.servers for s in srv.sockets]
        self._port = int(sockets[0].getsockname()[1])
        return self._port

    def request_stop(self) -> None:
        """Ask the server to stop without waiting (lets several stop in parallel)."""
        self._server.should_exit = True

    def stop(self) -> None:
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class MotoThread:
    """moto's AWS server on 127.0.0.1 (moto binds every interface unless told otherwise),
    behind `SignatureCheck`: a request signed with an access key of an IAM user must carry
    that key's real signature, as AWS requires."""

    def __init__(self, port: int = 0, *, trusted: frozenset[str] = frozenset()) -> None:
        self._port_asked = port
        self._trusted = trusted
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("moto not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> int:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        # werkzeug logs every request to stderr at INFO; the sandbox's output is the env only.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = SignatureCheck(DomainDispatcherApplication(create_backend_app), self._trusted)
        self._server = make_server(HOST, self._port_asked, app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="velvet-moto",
                                        daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        if host != HOST:
            raise RuntimeError(f"moto bound {host}, expected {HOST}")
        self._port = int(port)
        return self._port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class SignatureCheck:
    """A WSGI layer in front of moto that checks SigV4 signatures as AWS does.

    moto checks a signature only with IAM authorization switched on for the whole process
    (`INITIAL_NO_AUTH_ACTION_COUNT`), and then every caller needs IAM policies; off (the
    default), STS GetCallerIdentity answers for inactive, deleted and made-up keys alike, so a
    wrong secret in a vault would pass every rehearsal (fidelity.md #5). This layer checks a
    request signed with any key but the `trusted` ones (the sandbox's own credentials, which
    stand in for an assumed role): the key must be an active access key of an IAM user of
    moto's, and the signature must be the one that key's secret makes (moto's own
    `IAMRequest` recomputes it). Otherwise AWS's answer: `InvalidClientTokenId` or
    `SignatureDoesNotMatch` (403, XML) for the query APIs (STS, IAM), and
    `UnrecognizedClientException` or `InvalidSignatureException` (400, JSON) for the JSON
    ones (SSM).
    """

    def __init__(self, app: Any, trusted: frozenset[str]) -> None:
        self.app = app
        self.trusted = trusted

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wrappers import Request

        request = Request(environ)
        authorization = request.headers.get("Authorization", "")
        key_id = authorization.partition("Credential=")[2].partition("/")[0]
        if not authorization.startswith("AWS4-HMAC-SHA256") or not key_id \
                or key_id in self.trusted:
            return self.app(environ, start_response)
        body = request.get_data(cache=True)  # read once; moto reads it again from the cache
        environ["wsgi.input"] = io.BytesIO(body)
        problem = _signature_problem(request, key_id, body)
        if problem is None:
            return self.app(environ, start_response)
        json_api = "X-Amz-Target" in request.headers
        code, message = problem
        if json_api:
            code = {"InvalidClientTokenId": "UnrecognizedClientException",
                    "SignatureDoesNotMatch": "InvalidSignatureException"}[code]
            payload = json.dumps({"__type": code, "message": message}).encode()
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                               ("Content-Length", str(len(payload)))])
            return [payload]
        payload = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                   f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                   "</Error><RequestId>velvet-sandbox</RequestId></ErrorResponse>").encode()
        start_response("403 Forbidden", [("Content-Type", "text/xml"),
                                          ("Content-Length", str(len(payload)))])
        return [payload]


_INVALID_TOKEN = "The security token included in the request is invalid."
_BAD_SIGNATURE = ("The request signature we calculated does not match the signature you "
                  "provided. Check your AWS Secret Access Key and signing method. Consult the "
                  "service documentation for details.")


def _signature_problem(request: Any, key_id: str, body: bytes) -> tuple[str, str] | None:
    """(AWS error code, message) when `key_id` or the request's signature is not good."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.iam.access_control import IAMRequest
    from moto.iam.models import iam_backends

    active = {key.access_key_id: key.status == "Active"
              for account in list(iam_backends.values())
              for user in list(account["aws"].users.values())
              for key in list(user.access_keys)}
    if not active.get(key_id):
        return "InvalidClientTokenId", _INVALID_TOKEN  # unknown, deleted or inactive
    path = request.full_path.rstrip("?") if request.query_string else request.path
    try:
        checked = IAMRequest(account_id=DEFAULT_ACCOUNT_ID, method=request.method, path=path,
                             data={}, body=body, headers=dict(request.headers), action="Call")
        checked.check_signature()
    except Exception as exc:  # noqa: BLE001 - moto raises its own HTTP exception classes
        if type(exc).__name__ == "InvalidClientTokenIdError":
            return "InvalidClientTokenId", _INVALID_TOKEN
        return "SignatureDoesNotMatch", _BAD_SIGNATURE
    return None
