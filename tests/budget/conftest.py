"""One GitHub, Heroku and Cloudflare fake per session on loopback, reset before every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from velvet_sandbox import cloudflare, github, heroku
from velvet_sandbox.server import ServerThread


@dataclass
class Fake:
    state: Any
    url: str
    control: httpx.Client

    def limits(self, **settings: Any) -> dict[str, Any]:
        if settings:
            self.control.post("/limits", json=settings).raise_for_status()
        return dict(self.control.get("/limits").json())


def _serve(state: Any, make: Callable[[Any], Starlette], base: str = "") -> Iterator[Fake]:
    with (
        ServerThread(make(state)) as server,
        httpx.Client(base_url=server.url + "/__velvet", timeout=10.0) as control,
    ):
        yield Fake(state=state, url=server.url + base, control=control)


@pytest.fixture(scope="session")
def _budget_github() -> Iterator[Fake]:
    yield from _serve(github.State(), github.create_app)


@pytest.fixture(scope="session")
def _budget_heroku() -> Iterator[Fake]:
    yield from _serve(heroku.HerokuState(), heroku.create_app)


@pytest.fixture(scope="session")
def _budget_cloudflare() -> Iterator[Fake]:
    yield from _serve(cloudflare.CloudflareState(), cloudflare.create_app, cloudflare.BASE_PATH)


def _fresh(fake: Fake) -> Fake:
    fake.control.post("/reset").raise_for_status()
    return fake


@pytest.fixture
def gh(_budget_github: Fake) -> Fake:
    return _fresh(_budget_github)


@pytest.fixture
def hk(_budget_heroku: Fake) -> Fake:
    return _fresh(_budget_heroku)


@pytest.fixture
def cf(_budget_cloudflare: Fake) -> Fake:
    return _fresh(_budget_cloudflare)
