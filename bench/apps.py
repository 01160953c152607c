"""ASGI apps for the status-app benchmark, served by uvicorn in a separate process:

    uvicorn --factory bench.apps:velvet     the real status app (settings from VELVET_*)
    uvicorn --factory bench.apps:hello      a bare Starlette hello world, the baseline
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def velvet() -> Starlette:
    from velvet_runner.settings import Settings
    from velvet_runner.web import create_app

    return create_app(Settings.from_env())


def hello() -> Starlette:
    async def index(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route("/{path:path}", index, methods=["GET"])])
