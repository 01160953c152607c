"""The generated fault campaign in CI: a fixed seed and a bounded number of examples (a few
minutes on a 2-core machine). `tests/engine/campaign.py` runs it longer with a random seed.

A broken promise fails the test with the failing steps; what it finds becomes a regression test
in test_campaign_findings.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from velvet_sandbox.world import Sandbox

from .campaign import STATS, run

SEED = 20261206
EXAMPLES = int(os.environ.get("VELVET_CAMPAIGN_EXAMPLES", "6"))
STEPS = int(os.environ.get("VELVET_CAMPAIGN_STEPS", "20"))


def test_the_promises_hold_under_generated_faults_and_crashes(
        eng_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in eng_sandbox.env(tmp_path).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)  # boto3 in this process reads moto's from here
    run(eng_sandbox, tmp_path, examples=EXAMPLES, steps=STEPS, seed=SEED, shrink=False)
    assert STATS.examples >= EXAMPLES
