"""Operator-managed credentials in the sandbox's registry (vendor `operator_manual`)."""

from __future__ import annotations

import secrets
from typing import Any

from velvet_sandbox import registry


class OperatorManualFake(registry.Fake):
    """Operator-managed tokens: no API, so nothing to serve; a value the sandbox made stands
    in for the one a person would have issued, and stays live (nothing can prove it dead)."""

    name = "operator_manual"
    control = False
    vendors = ("operator_manual",)

    def __init__(self) -> None:
        super().__init__()
        self.issued: list[str] = []

    def serve(self, port: int) -> registry.Server | None:
        return None

    def issue(self, credential: Any, identity: registry.Identity) -> registry.Issued:
        self.issued.append("manual-" + secrets.token_urlsafe(24))
        return registry.Issued(self.issued[-1])

    def is_live(self, value: str) -> bool:
        return True

    def token_values(self) -> list[str]:
        return list(self.issued)


registry.register(OperatorManualFake)
