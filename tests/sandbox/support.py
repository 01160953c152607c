"""Helpers shared by the sandbox tests (kept out of conftest so tests can import them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


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
