"""Fixtures for the revocation, dry-run, notification and watchdog tests (all prefixed `rev_`).

One Sandbox (every fake vendor, the consumer apps and moto on 127.0.0.1) runs for the session;
each test seeds a fresh world of credentials into its own directory, gets its own state
repository (the root conftest's `bare_repo`), and leaves no fault armed behind it. Velvet runs
as a real `velvet` process (`rev_cli`) or, where a test must shorten the notifier's timeouts,
as an in-process Engine built from the same settings (`rev_engine`). Nothing is patched.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from velvet_runner import flags as flags_mod
from velvet_runner import manifest as manifest_mod
from velvet_runner.engine import Engine
from velvet_runner.notify import notifier_from_settings
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.wiring import Wiring
from velvet_sandbox.world import GITHUB_REPOSITORY, SERVICES, Sandbox, World

from .support import Ran, Sleeps

# The CLI's own settle window is 30 s; a lock-out check that keeps failing waits all of it.
SETTLE_SECONDS = "1"
ACTOR = "rev-operator"
RUN_ID = "4242"


Cli = Callable[..., Ran]


@pytest.fixture(scope="session")
def rev_sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def rev_workdir(tmp_path: Path) -> Path:
    return tmp_path / "world"


@pytest.fixture
def rev_world(rev_sandbox: Sandbox, rev_workdir: Path) -> Iterator[World]:
    """A freshly seeded world; every fault is cleared (and hung requests released) after.

    The session's Cloudflare fake enforces the 50-user-token quota, so the tokens a test's
    world made (seeded or minted) are deleted again afterwards.
    """
    cloudflare_before = set(rev_sandbox.cloudflare.snapshot()["tokens"])
    world = rev_sandbox.seed_world(rev_workdir)
    yield world
    with httpx.Client(timeout=10.0) as http:
        for service in SERVICES:
            http.delete(rev_sandbox.control_url(service) + "/faults").raise_for_status()
    for token_id in set(rev_sandbox.cloudflare.snapshot()["tokens"]) - cloudflare_before:
        rev_sandbox.cloudflare.delete_token(token_id)


@pytest.fixture
def rev_env(clean_environment: None, rev_sandbox: Sandbox, rev_world: World, rev_workdir: Path,
            monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The sandbox's environment, on top of the root conftest's clean one (its state repo).

    GITHUB_REPOSITORY and GITHUB_RUN_ID are what Actions sets: the SEV1 issue goes to the
    repository, and every notification links to the run.
    """
    env = rev_sandbox.env(rev_workdir)
    env.pop("VELVET_STATE")  # keep the root conftest's fresh bare repository
    env.update({
        "VELVET_SETTLE_SECONDS": SETTLE_SECONDS,
        "VELVET_ACTOR": ACTOR,
        "GITHUB_REPOSITORY": GITHUB_REPOSITORY,
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_RUN_ID": RUN_ID,
    })
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def rev_cli(rev_env: dict[str, str], run_velvet: Callable[..., subprocess.CompletedProcess[str]],
            ) -> Cli:
    """`rev_cli("stage", job_id, "revoke")` runs the real `velvet` in the sandbox's env."""

    def run(*args: str, env: dict[str, str | None] | None = None) -> Ran:
        start = time.monotonic()
        proc = run_velvet(*args, env=env)
        return Ran(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    return run


@pytest.fixture
def rev_unscheduled(rev_env: dict[str, str]) -> Path:
    """The world's manifest with every `schedule` removed, so nothing is ever overdue."""
    path = Path(rev_env["VELVET_MANIFEST"])
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for credential in document["credentials"]:
        credential.pop("schedule", None)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def rev_sleeps() -> Sleeps:
    return Sleeps([])


EngineFactory = Callable[..., Engine]


@pytest.fixture
def rev_engine(rev_env: dict[str, str], rev_sleeps: Sleeps) -> Iterator[EngineFactory]:
    """An Engine wired exactly as the CLI wires it, except the notifier's request timeout
    (short, so a hanging Slack costs a second, not fifteen) and its pause between retries
    (recorded in `rev_sleeps` instead of slept)."""
    wirings: list[Wiring] = []

    def make(*, timeout: float = 0.5) -> Engine:
        settings = Settings.from_env()
        loaded = manifest_mod.load(settings.manifest)
        wiring = Wiring(settings)
        wirings.append(wiring)
        notifier = notifier_from_settings(settings, timeout=timeout, sleep=rev_sleeps)
        return Engine(settings, loaded, Store(settings.state, settings.state_branch,
                                              settings.cache_dir),
                      wiring, flags=flags_mod.load_flags(settings.manifest),
                      notifier=notifier)

    yield make
    for wiring in wirings:
        wiring.close()
