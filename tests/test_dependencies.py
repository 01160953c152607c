"""The runtime lock holds what the runner runs: every dependency pyproject.toml declares for the
runner itself (what a stage job holding production secrets installs, requirements/stage.txt) is
imported by runtime code, and nothing the sandbox, the rehearsal or the tests need is among them."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Every module of the runner is runtime code: the sandbox and the rehearsals, which run beside
# it and never in a stage, are velvet_sandbox/, whose imports do not count.
PACKAGE = ROOT / "velvet_runner"


def _runtime_imports() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_runtime_dependency_is_imported_by_runtime_code() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = {_distribution(r) for r in declared["project"]["dependencies"]}
    imported = _runtime_imports()
    modules_of: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    unused = sorted(d for d in wanted if not modules_of.get(d, set()) & imported)
    assert unused == [], (f"declared as runtime dependencies but imported by no runtime module "
                          f"(move them to the extra that uses them): {unused}")


def test_the_stage_lock_holds_no_package_the_runtime_does_not_need() -> None:
    lock = (ROOT / "requirements" / "stage.txt").read_text(encoding="utf-8")
    pinned = {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", lock, re.M)}
    for unwanted in ("pygithub", "requests", "pyjwt", "moto", "starlette", "pytest"):
        assert unwanted not in pinned, f"requirements/stage.txt pins {unwanted}"
