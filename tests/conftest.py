"""Shared fixtures: a clean environment per test, a real bare git repository as the state
remote, a private copy of the manifest folder, and a `velvet` runner that is a real subprocess.

Nothing here patches Velvet's code; only the process environment and the working directory
are set (as httpx's `clean_environ` does), so every test starts from the same place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MANIFEST_DIR = REPO_ROOT / "manifest"
MANIFEST_FILES = ("subscription-manifest.yml", "flags.yml")
CLEARED_PREFIXES = ("VELVET_", "GITHUB_", "AWS_")
STATE_BRANCH = "velvet-state"
# A generous safety net so a hung child fails the test instead of the whole run; it is not a
# timing assertion.
SUBPROCESS_TIMEOUT = 120

RunVelvet = Callable[..., "subprocess.CompletedProcess[str]"]
Git = Callable[..., str]


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=SUBPROCESS_TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """A fresh, empty bare repository: the state remote `VELVET_STATE` points at."""
    path = tmp_path / "state.git"
    _git("init", "--quiet", "--bare", "--template=", str(path))
    return path


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    """A private copy of the repository's manifest/ folder (manifest and flags)."""
    target = tmp_path / "manifest"
    target.mkdir()
    for name in MANIFEST_FILES:
        shutil.copyfile(SHIPPED_MANIFEST_DIR / name, target / name)
    return target


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bare_repo: Path,
                      manifest_dir: Path) -> None:
    """No VELVET_*/GITHUB_*/AWS_* leaks in from the caller; prod, a fresh remote, a fresh cache."""
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VELVET_ENV", "prod")
    monkeypatch.setenv("VELVET_STATE", str(bare_repo))
    monkeypatch.setenv("VELVET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VELVET_MANIFEST", str(manifest_dir / "subscription-manifest.yml"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def run_velvet(tmp_path: Path) -> RunVelvet:
    """Run `python -m velvet_runner ARGS...` as a real process in this test's environment.

    `env` adds variables on top of the test's environment; a value of None removes one.
    """

    def run(*args: str, env: Mapping[str, str | None] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        child_env = dict(os.environ)
        for name, value in (env or {}).items():
            if value is None:
                child_env.pop(name, None)
            else:
                child_env[name] = value
        return subprocess.run(
            [sys.executable, "-m", "velvet_runner", *args],
            cwd=tmp_path, env=child_env, input=input, capture_output=True, text=True,
            check=False, timeout=SUBPROCESS_TIMEOUT,
        )

    return run


@pytest.fixture
def git() -> Git:
    """`git(*args, cwd=None, check=True) -> stdout` for inspecting repositories."""
    return _git


@pytest.fixture(scope="session")
def runner_venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where rehearsals keep the runner's prepared virtualenvs: one folder for the whole run,
    shared by the xdist workers (each builds a given runner source's once, under a lock)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "runner-venvs"


# --- pytest-xdist: a file's tests together ------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """A file's tests run on one worker, in order, as they do one at a time: a module's world
    (a rehearsal, a sandbox) is built once, and its tests may build on each other's runs.
    `--dist loadfile` keeps them so; xdist's default (`load`) scatters them. (`loadgroup` no
    longer groups under pytest 9.2, whose node ids it can no longer rewrite.)"""
    dist = config.getoption("dist", default="no")
    if dist not in ("no", "loadfile"):
        raise pytest.UsageError(
            f"--dist {dist}: this suite's files build on their own tests' runs; run it with "
            "-n 4 --dist loadfile (the README's test command)")
    if not hasattr(config, "workerinput"):  # once, on the controller
        _compile_packages()


def _compile_packages() -> None:
    """Byte-compile this checkout's packages before the suite spawns its `velvet` processes.
    The editable install leaves them uncompiled, and under PYTHONDONTWRITEBYTECODE (set on
    this machine and on many CI images) every process compiled the runner from source again:
    0.41 s of CPU for `velvet due` against 0.29 s. Python still checks each file's stamp, so a
    stale cache is never used."""
    import compileall

    for package in sorted(p.parent for p in REPO_ROOT.glob("*/__init__.py")):
        compileall.compile_dir(package, quiet=1)


# --- the session's figures, from every xdist worker (session_figures.py) ---------------------


@pytest.hookimpl(trylast=True)  # after the conftests that record figures
def pytest_sessionfinish(session: pytest.Session) -> None:
    from session_figures import FIGURES

    out = getattr(session.config, "workeroutput", None)
    if out is not None:  # an xdist worker: hand them to the controller
        out["velvet_figures"] = FIGURES


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    from session_figures import merge

    merge(getattr(node, "workeroutput", {}).get("velvet_figures", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from session_figures import lines

    for line in lines():
        terminalreporter.write_line(line)
