"""The fake consumer services: health reflects whether the vendor accepts the held value."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from velvet_sandbox import consumers
from velvet_sandbox.consumers import ConsumersState
from velvet_sandbox.heroku import HerokuState
from velvet_sandbox.server import ServerThread


class _Env:
    def __init__(self) -> None:
        self.heroku = HerokuState()
        self.store: dict[str, str | None] = {}
        self.state = ConsumersState({"heroku": self.heroku.token_is_live})


@pytest.fixture(scope="module")
def _served() -> Iterator[tuple[_Env, str]]:
    env = _Env()
    server = ServerThread(consumers.create_app(env.state))
    server.start()
    yield env, server.url
    server.stop()


@pytest.fixture
def world(_served: tuple[_Env, str]) -> Iterator[tuple[_Env, httpx.Client]]:
    env, url = _served
    env.state.reset()
    env.heroku.reset()
    env.store.clear()
    with httpx.Client(base_url=url, timeout=5.0) as client:
        yield env, client


def _health(client: httpx.Client, consumer_id: str) -> httpx.Response:
    return client.get(consumers.health_path(consumer_id))


def _register(env: _Env, consumer_id: str, *, cache: bool = False) -> str:
    auth_id, token = env.heroku.add_authorization("bot@raxx.app")
    env.store[consumer_id] = token
    env.state.register(consumer_id, "heroku", lambda: env.store.get(consumer_id), cache=cache,
                       description=f"test store {consumer_id}")
    return auth_id


def test_live_value_is_200_and_revoked_is_401(world: tuple[_Env, httpx.Client]) -> None:
    env, client = world
    auth_id = _register(env, "app-a")
    ok = _health(client, "app-a")
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok"}
    env.heroku.revoke_authorization(auth_id)
    refused = _health(client, "app-a")
    assert refused.status_code == 401
    assert refused.json() == {"status": "unauthorized"}


def test_follows_the_store(world: tuple[_Env, httpx.Client]) -> None:
    env, client = world
    _register(env, "app-a")
    env.store["app-a"] = None
    assert _health(client, "app-a").status_code == 401
    _, fresh = env.heroku.add_authorization("bot@raxx.app")
    env.store["app-a"] = fresh
    assert _health(client, "app-a").status_code == 200


def test_caching_consumer_keeps_200_until_restarted(world: tuple[_Env, httpx.Client]) -> None:
    env, client = world
    auth_id = _register(env, "worker", cache=True)
    assert _health(client, "worker").status_code == 200
    env.heroku.revoke_authorization(auth_id)
    assert _health(client, "worker").status_code == 200  # the rev_leaked root cause
    assert client.post("/__velvet/consumers/worker/restart").status_code == 200
    assert _health(client, "worker").status_code == 401


def test_unknown_consumer_and_broken_store(world: tuple[_Env, httpx.Client]) -> None:
    env, client = world
    assert _health(client, "nobody").status_code == 404
    assert client.post("/__velvet/consumers/nobody/restart").status_code == 404

    def broken() -> str | None:
        raise RuntimeError("store down")

    env.state.register("broken", "heroku", broken)
    response = _health(client, "broken")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_listing_and_responses_never_show_values(world: tuple[_Env, httpx.Client]) -> None:
    env, client = world
    _register(env, "app-a")
    _register(env, "worker", cache=True)
    _health(client, "worker")
    listed = client.get("/__velvet/consumers").json()["consumers"]
    assert [c["consumer_id"] for c in listed] == ["app-a", "worker"]
    assert listed[1]["cache"] is True
    assert listed[1]["cached"] == "ok"
    texts = [client.get("/__velvet/consumers").text, client.get("/__velvet/state").text,
             _health(client, "app-a").text, client.get("/__velvet/requests").text]
    for value in env.store.values():
        assert value is not None
        assert all(value not in text for text in texts)


def test_register_through_control_with_a_fixed_value(world: tuple[_Env, httpx.Client]) -> None:
    env, client = world
    _, token = env.heroku.add_authorization("bot@raxx.app")
    response = client.post("/__velvet/consumers",
                           json={"consumer_id": "fixed", "vendor": "heroku", "value": token})
    assert response.status_code == 201
    assert _health(client, "fixed").status_code == 200
    bad = client.post("/__velvet/consumers", json={"consumer_id": "x", "vendor": "nope"})
    assert bad.status_code == 400


def test_unknown_vendor_is_refused() -> None:
    with pytest.raises(ValueError, match="no validator"):
        ConsumersState({}).register("x", "heroku", lambda: None)
