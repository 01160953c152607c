"""Fixtures for the end-to-end rotation tests; all prefixed `eng_`.

One Sandbox (every fake vendor, the consumer apps and moto, on 127.0.0.1) serves this whole
directory. Before each test every fake is reset through its control API (state, faults and request
log) and a fresh world is seeded into the test's own directory, with its own bare state
repository; that costs about a tenth of a second, against more than a second and a half for a
new Sandbox. After each test everything the test's Velvet runs produced is scanned for every
secret value the fakes issued.

moto keeps AWS state per process (world.py), so AWS is not reset wholesale: this test's
leftovers (pending slots, a second access key) are removed instead, and the seed adopts the
live deploy key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from velvet_sandbox.world import Sandbox

from .support import EngWorld, _Capture, fresh_world, leaks


@pytest.fixture(scope="package")
def eng_sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def eng_world(eng_sandbox: Sandbox, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[EngWorld]:
    """A freshly seeded world, this process's environment pointed at it, and a leak scan after."""
    eng = fresh_world(eng_sandbox, tmp_path / "eng")
    for name, value in eng.env.items():
        monkeypatch.setenv(name, value)  # boto3 in this process reads AWS_* from here
    monkeypatch.chdir(eng.workdir)
    velvet_log = logging.getLogger("velvet")
    capture = _Capture(eng.artifacts)
    velvet_log.addHandler(capture)
    old_level = velvet_log.level
    velvet_log.setLevel(logging.DEBUG)
    try:
        yield eng
        found = leaks(eng.everything_produced(), eng_sandbox.token_values())
        assert found == [], "secret values leaked:\n" + "\n".join(found)
    finally:
        velvet_log.removeHandler(capture)
        velvet_log.setLevel(old_level)
        eng.clear_faults()
        eng.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from session_figures import record

    from .campaign import STATS
    from .support import CRASH_CELLS

    if STATS.examples:
        record("campaign", [STATS.line()])
    record("crash_cells", sorted(CRASH_CELLS))
