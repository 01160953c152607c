"""One run of a job at a time: the stage lease on the state branch.

In-progress states accept their action again so that a crashed stage can resume; the lease is
what stops two live runs from driving one job (and minting twice).
"""

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta

from velvet_runner.records import Lease, utcnow
from velvet_runner.store import Store


def _job(run_velvet) -> dict:
    created = run_velvet("rotate", "HK_PLATFORM_FULL")
    assert created.returncode == 0, created.stderr
    return json.loads(created.stdout)


def _hold(job: dict, owner: str, *, age: timedelta = timedelta(0)) -> None:
    store = Store(os.environ["VELVET_STATE"], cache_dir=None)
    store.cache = store.cache.parent / "lease-test"  # a cache of its own
    now = utcnow() - age

    def apply(current):
        current.lease = Lease(owner=owner, action="proceed_mint", acquired_at=now,
                              renewed_at=now)
        return current

    store.update(job["credential"], job["job_id"], apply)


def test_a_live_run_holds_the_job(run_velvet):
    job = _job(run_velvet)
    _hold(job, "runner-elsewhere:4242:abcd1234")

    refused = run_velvet("stage", job["job_id"], "abort")

    assert refused.returncode == 3
    assert "already running proceed_mint" in refused.stderr
    assert "runner-elsewhere:4242:abcd1234" in refused.stderr
    shown = json.loads(run_velvet("status", "--job", job["job_id"], "--json").stdout)
    assert shown["status"] == "init"  # nothing moved


def test_an_expired_lease_is_taken_over(run_velvet):
    job = _job(run_velvet)
    _hold(job, "runner-elsewhere:4242:abcd1234", age=timedelta(minutes=10))

    aborted = run_velvet("stage", job["job_id"], "abort")

    assert aborted.returncode == 0, aborted.stderr
    result = json.loads(aborted.stdout)
    assert result["status"] == "aborted"
    assert result["lease"] is None  # released when the stage ended


def test_a_crashed_run_on_this_host_is_taken_over_at_once(run_velvet):
    job = _job(run_velvet)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    _hold(job, f"{socket.gethostname()}:{dead.stdout.strip()}:deadbeef")

    aborted = run_velvet("stage", job["job_id"], "abort")

    assert aborted.returncode == 0, aborted.stderr
    assert json.loads(aborted.stdout)["status"] == "aborted"
