"""Local fakes of every vendor Velvet talks to, served on 127.0.0.1 for tests and demos.

A package beside the runner, in the same distribution: it imports velvet_runner, and no module
of velvet_runner imports it (tests/test_imports.py). Its commands (`velvet sandbox`, `demo`,
`rehearse`, in cli.py) are mounted on `velvet` through entry points; `rehearse/` runs a
repository's workflows on nektos/act against it.

`Sandbox` (in `world.py`) starts them all; it is imported lazily so that importing one fake
(or `control`) does not pull in every other fake, moto and boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from velvet_sandbox.world import Sandbox, main

__all__ = ["Sandbox", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        # The sandbox's dependencies are an extra: the commands name it when one is missing
        # (cli.py).
        from velvet_sandbox import world

        return getattr(world, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
