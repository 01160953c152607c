"""Local fakes of every vendor Velvet talks to, served on 127.0.0.1 for tests and demos.

`Sandbox` (in `world.py`) starts them all; it is imported lazily so that importing one fake
(or `control`) does not pull in every other fake, moto and boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from velvet_runner.sandbox.world import Sandbox, main

__all__ = ["Sandbox", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        try:
            from velvet_runner.sandbox import world
        except ImportError as exc:  # the sandbox is an extra: stage installs leave it out
            from velvet_runner.errors import InputError

            raise InputError(f"the sandbox needs {exc.name}: pip install "
                             "'velvet-runner[sandbox]'") from None
        return getattr(world, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
