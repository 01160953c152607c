"""`velvet demo`: a real process that starts its own sandbox and rotates HK_PLATFORM_FULL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The demo takes seconds; a minute is the ceiling the issue sets, used as the child's timeout
# (a hung demo fails here) rather than as a timing assertion.
DEMO_TIMEOUT = 60


def test_velvet_demo_proves_a_rotation(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VELVET_", "AWS_"))}
    proc = subprocess.run([sys.executable, "-m", "velvet_runner", "demo"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, check=False,
                          timeout=DEMO_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rotation proven" in proc.stdout
    assert "NOT proven" not in proc.stdout
    assert "revoking -> done" in proc.stdout
    assert "proof: the old value is refused by the vendor" in proc.stdout
