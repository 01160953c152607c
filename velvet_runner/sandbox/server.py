"""Run the fakes on loopback: uvicorn (ASGI fakes) and moto (AWS) in background threads.

Both always bind 127.0.0.1. Port 0 lets the kernel pick a free port; the real one is read back
from the bound socket, so parallel test runs never collide.
"""

from __future__ import annotations

import contextlib
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
    """moto's AWS server on 127.0.0.1; moto binds every interface unless told otherwise."""

    def __init__(self, port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
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
        # werkzeug logs every request to stderr at INFO; the sandbox's output is the env only.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        if host != HOST:
            raise RuntimeError(f"moto bound {host}, expected {HOST}")
        self._port = int(port)
        return self._port

    def stop(self) -> None:
        self._server.stop()
