"""No token value anywhere a person or a log reader could see it.

Every test in this directory ends with a leak scan (the `eng_world` fixture's teardown) of what
its Velvet runs produced: stdout and stderr of every `velvet` process, every velvet log record
of this process (raw, before the formatter's scrubbing), the state repository's whole history
(`git log -p --all`), GITHUB_STEP_SUMMARY and GITHUB_OUTPUT, and the notifications the fakes
received. The values are every one the fakes ever issued (`Sandbox.token_values()`). This module
runs one busy rotation with every output switched on and scans explicitly, and proves the scan
can see a leak at all.
"""

from __future__ import annotations

import json

from .support import HK, EngWorld, leaks, tag, ticket

API_PATCH = "/apps/raxx-api-prod/config-vars"


def test_the_scan_finds_a_planted_value() -> None:
    produced = [("stdout", "ok"), ("log", "token=HRKU-0000-planted-value here")]
    assert leaks(produced, ["HRKU-0000-planted-value", "not-there-at-all"]) == [
        f"log: {tag('HRKU-0000-planted-value')}"]


def test_a_busy_rotation_leaks_nothing(eng_world: EngWorld) -> None:
    """Through the CLI: a partial fan-out, a retry, a refused revoke, a revoke, the status
    views; then a second credential, in process, aborted with its residual state printed."""
    job = eng_world.cli_job("rotate", HK)
    eng_world.cli_job("stage", job.job_id, "verify")
    eng_world.fault("heroku", method="PATCH", path=API_PATCH, status=500)
    eng_world.cli_job("stage", job.job_id, "proceed_mint", expect=1)
    eng_world.clear_faults("heroku")
    eng_world.cli_job("stage", job.job_id, "retry_distribute")
    assert eng_world.cli("stage", job.job_id, "proceed_revoke", "--confirm", HK).returncode == 2
    done = eng_world.cli_job("stage", job.job_id, "proceed_revoke", "--ticket", ticket(HK),
                             "--confirm", HK)
    assert done.status == "done"
    views = {" ".join(args): eng_world.cli(*args) for args in (
        ["status"], ["status", "--job", job.job_id, "--json"], ["stuck", "--json"])}
    record = json.loads(views[f"status --job {job.job_id} --json"].stdout)
    assert record["new_fingerprint"].startswith("sha256:")  # fingerprints, never values

    engine = eng_world.engine()  # a second credential, in process: its logs are scanned too
    other, _ = engine.create("CF_ZONE_READ")
    engine.run(other.job_id, "verify")
    assert engine.run(other.job_id, "proceed_mint").status == "validated"
    aborted = eng_world.cli("stage", other.job_id, "abort")
    assert "Residual state after abort" in aborted.stderr

    produced = eng_world.everything_produced()
    kinds = {where.split(" ")[0] for where, _ in produced}
    assert {"stdout", "stderr", "log", "state", "step-summary.md", "github-output.txt",
            "notification"} <= kinds
    history = next(text for where, text in produced if where.startswith("state branch"))
    assert job.job_id in history  # the scan really read the branch
    values = eng_world.sandbox.token_values()
    # The new values this run minted are among the scanned ones.
    assert eng_world.vault(HK) in values
    assert eng_world.vault("CF_ZONE_READ") in values
    assert leaks(produced, values) == []
