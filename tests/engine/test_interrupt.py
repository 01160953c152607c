"""Ctrl-C during a stage (issue #16): a real SIGINT to a `velvet stage` that is waiting stops it
at the next safe point within a second or two, records why, prints the command that resumes
it, and the resume ends where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .support import CHILD_TIMEOUT, HK, EngWorld, last, start

CONSUMER = "heroku-config-api-prod"


def test_sigint_while_waiting_in_the_settle_window_stops_then_resumes(
        eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    # One consumer keeps failing its check, so validation waits out a long settle window.
    eng_world.fault("consumers", path=f"/consumers/{CONSUMER}/health", status=500)
    child = {**os.environ, **eng_world.env, "VELVET_SETTLE_SECONDS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "velvet_runner", "stage", job.job_id,
                             "proceed_mint"], cwd=eng_world.workdir, env=child,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waited = 0.0
    try:
        while eng_world.job(job.job_id).status != "validating" and waited < CHILD_TIMEOUT:
            time.sleep(0.2)
            waited += 0.2
        time.sleep(2.5)  # inside the settle window, polling the failing consumer
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
        stopped_after = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    eng_world.artifacts += [("stdout of interrupted stage", out), ("stderr", err)]
    assert proc.returncode == 130, err[-2000:]
    assert stopped_after < 10, stopped_after  # not the 120 s window (a bound, not a timing)
    assert "settle window" in err  # the wait was visible while it lasted
    assert f"resume with: velvet stage {job.job_id} proceed_mint" in err
    assert "Traceback" not in err
    record = eng_world.job(job.job_id)
    assert record.status == "validating", last(record)
    assert record.lease is None
    assert "interrupted" in [e.action for e in record.events]

    eng_world.clear_faults("consumers")
    resumed = eng_world.cli_job("stage", job.job_id, "proceed_mint")
    assert resumed.status == "validated", last(resumed)
    assert resumed.new_fingerprint is not None
    assert [t.token_id for t in resumed.ledger] == ["old", "new"]  # nothing minted twice
    assert {eng_world.vault(HK, "__PENDING")} == set(eng_world.consumer_values(HK).values())


@pytest.mark.parametrize(("service", "path", "fault", "said"), [
    ("heroku", "/apps/raxx-api-prod/config-vars", {"status": 429, "retry_after": 1},
     "velvet: rate limited (Retry-After 1 s): waiting 1.0 s"),
    ("heroku", "/apps/raxx-api-prod/config-vars", {"status": 429},
     "velvet: rate limited (no Retry-After; heroku's bucket refills 75 requests a minute): "
     "waiting 0.8 s"),
    ("infisical", "/api/v4/secrets/HEROKU_API_KEY", {"status": 500}, "velvet: retry 2 of 4 in"),
])
def test_a_stage_names_its_waits_on_stderr(eng_world: EngWorld, service: str, path: str,
                                           fault: dict[str, int], said: str) -> None:
    engine, job = start(eng_world)
    eng_world.fault(service, method="PATCH", path=path, times=1, **fault)
    proc = eng_world.cli("stage", job.job_id, "proceed_mint")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert said in proc.stderr
    assert eng_world.job(job.job_id).status == "validated"
