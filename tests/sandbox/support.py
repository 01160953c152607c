"""Helpers shared by the sandbox tests (kept out of conftest so tests can import them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from starlette.types import ASGIApp

from velvet_sandbox.server import ServerThread

START = 1_800_000_000.0

S = TypeVar("S")


@dataclass
class Fake:
    """One running fake: its State, the vendor base URL, and clients for API and control."""

    state: Any
    url: str
    root: str
    control: httpx.Client

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=5.0)

    def fault(self, **spec: Any) -> None:
        self.control.post("/faults", json=spec).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return list(self.control.get("/requests").json()["requests"])


class FakeClock:
    """The `clock=` of a fake's State: tests set or advance it instead of sleeping."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def serve_on_fake_clock(
    make_state: Callable[..., S], create_app: Callable[[S], ASGIApp], name: str
) -> Iterator[tuple[S, FakeClock, str]]:
    """For a module-scoped fixture to `yield from`: a fake on a FakeClock, and its URL."""
    clock = FakeClock()
    state = make_state(clock=clock)
    with ServerThread(create_app(state), name=name) as server:
        yield state, clock, server.url


@contextmanager
def reset_client(
    url: str, clock: FakeClock, headers: dict[str, str] | None = None
) -> Iterator[httpx.Client]:
    """A client of the fake at `url`, reset through its control API, its clock back at START."""
    with httpx.Client(base_url=url, timeout=5, headers=headers) as http:
        assert http.post("/__velvet/reset").status_code == 200
        clock.now = START
        yield http
