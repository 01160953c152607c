"""Every registered fake that says it serves the control API (`Fake.control`, the default) does:
the sandbox resets, seeds and scans fakes through `/__velvet/`, so a new fake whose app is not
built by `control.build_app` is named here, not found later by a sandbox test that fails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from velvet_sandbox import registry


def _without_control(fakes: Mapping[str, type[registry.Fake]]) -> list[str]:
    """Each fake with `control` whose served app does not answer GET /__velvet/state and
    POST /__velvet/reset, with what it answered."""
    missing = []
    for name, cls in fakes.items():
        if not cls.control:
            continue
        fake = cls()
        server = fake.serve(0)
        assert server is not None, f"fake {name} says it serves the control API but serves nothing"
        server.start()
        try:
            with httpx.Client(base_url=server.url + "/__velvet", timeout=30) as control:
                answers = {"GET /__velvet/state": control.get("/state").status_code,
                           "POST /__velvet/reset": control.post("/reset").status_code}
        finally:
            server.stop()
        wrong = {call: status for call, status in answers.items() if status != 200}
        if wrong:
            missing.append(f"fake {name} ({cls.__module__}): {wrong}: build its app with "
                           "control.build_app (or set control = False)")
    return missing


def test_every_registered_fake_with_control_serves_it() -> None:
    fakes = registry.load_all()
    assert sum(cls.control for cls in fakes.values()) >= 7  # the built-ins, at least
    assert _without_control(fakes) == []


class _BareFake(registry.Fake):
    """A new vendor's fake served as a bare app: its routes, no control API."""

    name: ClassVar[str] = "bare"

    def app(self) -> Any:
        async def keys(request: Any) -> JSONResponse:
            return JSONResponse({"keys": []})

        return Starlette(routes=[Route("/v3/api_keys", keys)])


def test_a_fake_without_the_control_api_is_named_with_the_fix() -> None:
    assert _without_control({"bare": _BareFake}) == [
        f"fake bare ({__name__}): {{'GET /__velvet/state': 404, 'POST /__velvet/reset': 404}}: "
        "build its app with control.build_app (or set control = False)"]
