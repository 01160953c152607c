"""The generated fault campaign in CI: a fixed seed and a bounded number of examples (a few
minutes on a 2-core machine). `tests/engine/campaign.py` runs it longer with a random seed.

The engine is known to break some of the promises today (issue #20 lists six ways; the lead's
fixes are pending), so the test is xfail(strict=False) until they land: it must still run to
its end or to a broken promise, never to an error of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from velvet_runner.sandbox.world import Sandbox

from .campaign import STATS, run

SEED = 20261206
EXAMPLES = int(os.environ.get("VELVET_CAMPAIGN_EXAMPLES", "6"))
STEPS = int(os.environ.get("VELVET_CAMPAIGN_STEPS", "20"))


@pytest.mark.xfail(strict=False, reason="issue #20: the engine's proofs of death are being "
                   "rebuilt (lead); the campaign finds the known ways the promises break")
def test_the_promises_hold_under_generated_faults_and_crashes(
        eng_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in eng_sandbox.env(tmp_path).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)  # boto3 in this process reads moto's from here
    run(eng_sandbox, tmp_path, examples=EXAMPLES, steps=STEPS, seed=SEED, shrink=False)
    assert STATS.examples >= EXAMPLES
