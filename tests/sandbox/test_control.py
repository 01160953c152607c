"""The shared control layer: faults, request log, state endpoints, and the loopback server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from velvet_sandbox.control import Faults, FaultSpec, Stored, build_app
from velvet_sandbox.server import HOST, ServerThread


class _Store(Stored):
    STORED = ("data",)

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.data: dict[str, Any] = {}

    def snapshot(self) -> dict[str, Any]:
        return dict(self.data)

    def seed(self, data: dict[str, Any]) -> None:
        self.data.update(data)

    def reset(self) -> None:
        self.data.clear()


def _vendor_error(status: int, message: str) -> Response:
    return JSONResponse({"vendor_error": message}, status)


async def _hello(request: Request) -> Response:
    return JSONResponse({"hello": request.path_params["name"]})


def _writer(store: _Store) -> Route:
    """PATCH /store/{name}: stores the body after a pause (`?pause=` seconds), answers it."""

    async def write(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("pause", "0")))
        body = await request.json()
        with store._lock:
            store.data[request.path_params["name"]] = body
        return JSONResponse({"stored": body})

    return Route("/store/{name}", write, methods=["PATCH"])


@pytest.fixture(scope="module")
def _served() -> Iterator[tuple[_Store, str]]:
    store = _Store()
    app = build_app("toy", [Route("/apps/{name}/config-vars", _hello, methods=["GET", "PATCH"]),
                            _writer(store)],
                    error=_vendor_error, state=store)
    server = ServerThread(app)
    server.start()
    yield store, server.url
    server.stop()


@pytest.fixture
def toy(_served: tuple[_Store, str]) -> Iterator[tuple[_Store, httpx.Client]]:
    store, url = _served
    with httpx.Client(base_url=url, timeout=5.0) as client:
        client.post("/__velvet/reset").raise_for_status()
        yield store, client


def _fault(client: httpx.Client, **spec: Any) -> None:
    client.post("/__velvet/faults", json=spec).raise_for_status()


def test_fault_answers_status_n_times_then_normal(toy: tuple[_Store, httpx.Client]) -> None:
    _, client = toy
    _fault(client, method="PATCH", path="/apps/*/config-vars", status=503, times=2)
    assert client.get("/apps/a/config-vars").status_code == 200  # method does not match
    statuses = [client.patch("/apps/a/config-vars").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_fault_uses_the_vendor_error_body(toy: tuple[_Store, httpx.Client]) -> None:
    _, client = toy
    _fault(client, path="*", status=500, message="boom")
    response = client.get("/apps/a/config-vars")
    assert response.status_code == 500
    assert response.json() == {"vendor_error": "boom"}


def test_429_has_retry_after_only_when_asked(toy: tuple[_Store, httpx.Client]) -> None:
    _, client = toy
    _fault(client, path="/apps/*", status=429, times=1)
    bare = client.get("/apps/a/config-vars")
    _fault(client, path="/apps/*", status=429, times=1, retry_after=3)
    with_header = client.get("/apps/a/config-vars")
    assert bare.status_code == with_header.status_code == 429
    assert "retry-after" not in bare.headers
    assert with_header.headers["retry-after"] == "3"


def test_latency_only_fault_delays_then_serves(toy: tuple[_Store, httpx.Client]) -> None:
    _, client = toy
    _fault(client, path="/apps/*", status=None, latency_ms=300, times=1)
    started = time.monotonic()
    response = client.get("/apps/a/config-vars")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_hang_times_the_client_out_and_clear_releases_it(
    toy: tuple[_Store, httpx.Client],
) -> None:
    _, client = toy
    _fault(client, path="/apps/*", status=None, hang=True)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/apps/a/config-vars", timeout=0.3)

    result: dict[str, int] = {}

    def waiting_call() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=10.0) as other:
            result["status"] = other.get("/apps/b/config-vars").status_code

    worker = threading.Thread(target=waiting_call)
    worker.start()
    time.sleep(0.2)
    assert worker.is_alive()  # still hanging
    client.delete("/__velvet/faults").raise_for_status()
    worker.join(timeout=5)
    assert result == {"status": 200}


def test_a_hung_write_times_its_client_out_and_lands_when_released(
    toy: tuple[_Store, httpx.Client],
) -> None:
    """The vendor got the whole request and never answered: a timeout whose write happened."""
    store, client = toy
    _fault(client, method="PATCH", path="/store/*", status=None, hang=True, times=1)
    with pytest.raises(httpx.ReadTimeout):
        client.patch("/store/late", json={"v": 1}, timeout=0.3)
    assert store.data == {}
    client.delete("/__velvet/faults").raise_for_status()
    deadline = time.monotonic() + 5
    while not store.data and time.monotonic() < deadline:
        time.sleep(0.02)  # the released request finishes on the server's own time
    assert store.data == {"late": {"v": 1}}


def test_regex_path_and_control_routes_are_never_faulted(
    toy: tuple[_Store, httpx.Client],
) -> None:
    _, client = toy
    _fault(client, method="*", path=r"^/apps/[a-z]+/config-vars$", status=502)
    assert client.get("/apps/abc/config-vars").status_code == 502
    assert client.get("/apps/a1/config-vars").status_code == 200
    _fault(client, method="*", path="*", status=503)
    assert client.get("/__velvet/state").status_code == 200
    assert len(client.get("/__velvet/faults").json()["faults"]) == 2


def test_a_dropped_write_answers_for_real_and_stores_nothing(
    toy: tuple[_Store, httpx.Client],
) -> None:
    store, client = toy
    _fault(client, method="PATCH", path="/store/*", drop=True, times=1)
    answer = client.patch("/store/a", json={"v": 1})
    assert answer.status_code == 200
    assert answer.json() == {"stored": {"v": 1}}  # the vendor's own success
    assert store.data == {}
    client.patch("/store/a", json={"v": 2})  # the fault was used up
    assert store.data == {"a": {"v": 2}}


def test_a_dropped_write_runs_alone_and_takes_back_only_its_own_change(
    toy: tuple[_Store, httpx.Client],
) -> None:
    """A write in flight when the dropped one arrives finishes first, and a write arriving
    while it runs waits: putting the state back must not undo either of them."""
    store, client = toy
    url = str(client.base_url)
    _fault(client, method="PATCH", path="/store/dropped", drop=True, times=1)

    def patch(name: str, pause: float) -> None:
        with httpx.Client(base_url=url, timeout=10.0) as other:
            other.patch(f"/store/{name}", params={"pause": pause}, json={"by": name})

    before = threading.Thread(target=patch, args=("before", 0.3))
    before.start()
    time.sleep(0.1)  # (ordering only: either order must end the same way)
    dropped = threading.Thread(target=patch, args=("dropped", 0.3))
    dropped.start()
    time.sleep(0.1)
    after = threading.Thread(target=patch, args=("after", 0))
    after.start()
    for worker in (before, dropped, after):
        worker.join(timeout=10)
    assert store.data == {"before": {"by": "before"}, "after": {"by": "after"}}


def test_a_truncated_answer_is_cut_in_half_with_an_honest_length(
    toy: tuple[_Store, httpx.Client],
) -> None:
    store, client = toy
    whole = client.patch("/store/t", json={"value": "x" * 40})
    _fault(client, method="PATCH", path="/store/*", truncate=True, times=1)
    cut = client.patch("/store/t", json={"value": "y" * 40})
    assert cut.status_code == 200
    assert len(cut.content) == len(whole.content) // 2
    assert cut.headers["content-length"] == str(len(cut.content))
    with pytest.raises(json.JSONDecodeError):
        cut.json()
    assert store.data == {"t": {"value": "y" * 40}}  # the request did what it did


@pytest.mark.parametrize(("spec", "status"), [
    ({}, 503),
    ({"hang": True}, 503),
    ({"latency_ms": 10}, None),
    ({"latency_ms": 10, "hang": True}, 503),
    ({"drop": True}, None),
    ({"truncate": True}, None),
    ({"truncate": True, "status": 500}, 500),
])
def test_status_left_out_answers_503_unless_the_fault_only_delays_drops_or_truncates(
    toy: tuple[_Store, httpx.Client], spec: dict[str, Any], status: int | None,
) -> None:
    _, client = toy
    added = client.post("/__velvet/faults", json=spec)
    assert added.status_code == 201, added.text
    assert added.json()["fault"]["status"] == status


def test_bad_fault_is_refused(toy: tuple[_Store, httpx.Client]) -> None:
    _, client = toy
    assert client.post("/__velvet/faults", json={"status": 42}).status_code == 400
    assert client.post("/__velvet/faults", json={"nope": 1}).status_code == 400
    assert client.post("/__velvet/faults", json={"times": 0}).status_code == 400
    assert client.post("/__velvet/faults", content=b"{").status_code == 400
    assert client.post("/__velvet/faults", json={"drop": "yes"}).status_code == 400
    for success in (200, 201, 204, 299):
        refused = client.post("/__velvet/faults", json={"status": success})
        assert refused.status_code == 400
        assert 'use "drop": true' in refused.json()["error"]


def test_request_log_has_method_path_status_only(toy: tuple[_Store, httpx.Client]) -> None:
    _, client = toy
    client.patch("/apps/x/config-vars?token=secret-in-query", json={"K": "secret-body"},
                 headers={"Authorization": "Bearer secret-header"})
    client.get("/nowhere")
    log = client.get("/__velvet/requests").json()["requests"]
    assert log == [
        {"method": "PATCH", "path": "/apps/x/config-vars", "status": 200},
        {"method": "GET", "path": "/nowhere", "status": 404},
    ]
    assert "secret" not in client.get("/__velvet/requests").text


def test_state_seed_reset(toy: tuple[_Store, httpx.Client]) -> None:
    store, client = toy
    client.post("/__velvet/seed", json={"b": 2, "a": 1}).raise_for_status()
    assert client.get("/__velvet/state").text == '{"a":1,"b":2}'  # sorted, deterministic
    assert client.post("/__velvet/seed", json=[1]).status_code == 400
    client.post("/__velvet/reset").raise_for_status()
    assert store.data == {}


def test_unknown_vendor_route_uses_the_vendor_error(toy: tuple[_Store, httpx.Client]) -> None:
    _, client = toy
    assert client.get("/nowhere").json() == {"vendor_error": "Not Found"}


def test_faults_match_decrements_and_expires() -> None:
    faults = Faults()
    faults.add(FaultSpec(method="GET", path="/a/*", status=500, times=2))
    assert faults.match("POST", "/a/1") is None
    assert faults.match("get", "/a/1") is not None
    assert faults.active()[0].times == 1
    assert faults.match("GET", "/a/2") is not None
    assert faults.match("GET", "/a/3") is None
    faults.add(FaultSpec(path="/b", status=None, latency_ms=5))  # times None: forever
    for _ in range(5):
        assert faults.match("PUT", "/b") is not None
    faults.clear()
    assert faults.active() == []


def test_server_binds_loopback_on_a_real_port_and_stops_cleanly() -> None:
    server = ServerThread(build_app("empty", [], error=_vendor_error, state=_Store()))
    port = server.start()
    assert port > 0
    assert server.url == f"http://{HOST}:{port}"
    assert httpx.get(server.url + "/__velvet/state").json() == {}
    server.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection((HOST, port), timeout=1):
        pass
