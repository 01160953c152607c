"""Fixtures for the sandbox's own tests; all prefixed `sbx_` to stay out of the lead's way.

Each vendor fake used by a contract test runs once per session on its own loopback port, and
is reset through its control API before every test. The full Sandbox (all fakes, consumers,
moto and a seeded world) is started once per module: moto keeps AWS per process, so a world
shared by files could be reseeded by another file's sandbox run between them on one worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from velvet_sandbox import cloudflare, heroku, postmark
from velvet_sandbox.server import ServerThread
from velvet_sandbox.world import Sandbox, World

from .support import Fake


def _serve(state: Any, make: Callable[[Any], Starlette], base: str = "") -> Iterator[Fake]:
    with (
        ServerThread(make(state)) as server,
        httpx.Client(base_url=server.url + "/__velvet", timeout=5.0) as control,
    ):
        yield Fake(state=state, url=server.url + base, root=server.url, control=control)


@pytest.fixture(scope="session")
def _sbx_heroku_server() -> Iterator[Fake]:
    yield from _serve(heroku.HerokuState(), heroku.create_app)


@pytest.fixture(scope="session")
def _sbx_cloudflare_server() -> Iterator[Fake]:
    yield from _serve(cloudflare.CloudflareState(), cloudflare.create_app, cloudflare.BASE_PATH)


@pytest.fixture(scope="session")
def _sbx_postmark_server() -> Iterator[Fake]:
    yield from _serve(postmark.PostmarkState(), postmark.create_app)


def _fresh(fake: Fake) -> Fake:
    fake.control.post("/reset").raise_for_status()
    return fake


@pytest.fixture
def sbx_heroku(_sbx_heroku_server: Fake) -> Fake:
    return _fresh(_sbx_heroku_server)


@pytest.fixture
def sbx_cloudflare(_sbx_cloudflare_server: Fake) -> Fake:
    return _fresh(_sbx_cloudflare_server)


@pytest.fixture
def sbx_postmark(_sbx_postmark_server: Fake) -> Fake:
    return _fresh(_sbx_postmark_server)


@pytest.fixture(scope="module")
def sbx_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sbx-world")


@pytest.fixture(scope="module")
def sbx_sandbox(sbx_workdir: Path) -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def sbx_world(sbx_sandbox: Sandbox, sbx_workdir: Path) -> World:
    return sbx_sandbox.seed_world(sbx_workdir)
