"""The stage lease rides on the stage's own commits, and moves with nothing between them share one.

On GitHub every state commit is a push, so `proceed_mint` writes the lease with its first
transition and drops it with the move that brings the job to rest. A run that resumes an
in-progress state begins with a side effect instead, so it must write the lease on its own
first: these tests hold a live lease elsewhere and prove nothing reached a vendor or consumer.
"""

from __future__ import annotations

import json
import subprocess

from velvet_runner.records import Lease, utcnow
from velvet_runner.store import Store

from .support import HK, PLATFORM_EMAIL, EngWorld, labelled, last, start, to_validated

ELSEWHERE = "runner-elsewhere:4242:abcd1234"


def _history(eng: EngWorld, job_id: str) -> list[dict]:
    """The job record at every commit of the state branch that touched it, oldest first."""
    settings = eng.settings()
    path = f"jobs/{HK}/{job_id}.json"
    git = ["git", "--git-dir", str(eng.state_repo)]
    commits = subprocess.run([*git, "rev-list", "--reverse", settings.state_branch, "--", path],
                             capture_output=True, text=True, check=True).stdout.split()
    return [json.loads(subprocess.run([*git, "show", f"{c}:{path}"], capture_output=True,
                                      text=True, check=True).stdout) for c in commits]


def _hold_elsewhere(eng: EngWorld, job_id: str) -> None:
    settings = eng.settings()
    store = Store(settings.state, settings.state_branch, eng.workdir / "other-runner-cache")
    now = utcnow()

    def apply(current):
        current.lease = Lease(owner=ELSEWHERE, action="proceed_mint", acquired_at=now,
                              renewed_at=now)
        return current

    store.update(HK, job_id, apply)


def test_proceed_mint_takes_the_lease_with_its_first_move_and_drops_it_with_its_last(
        eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    before = len(_history(eng_world, job.job_id))

    job = engine.run(job.job_id, "proceed_mint")

    assert job.status == "validated", last(job)
    assert job.lease is None
    commits = _history(eng_world, job.job_id)[before:]
    states = [c["status"] for c in commits]
    # No commit for the lease alone, none for minted, distributed or validating on their own
    # (checks change nothing, so entering validation rides with the result): three commits
    # (plus a row flush if a fan-out ran past a second).
    assert states[0] == "minting", states
    assert states[-1] == "validated", states
    assert [s for s in states if s not in ("distributing", "validating")] == [
        "minting", "validated"], states
    assert "distributing" in states
    assert len(states) <= 5, states
    assert all(c["lease"] is not None for c in commits[:-1])
    assert commits[0]["lease"]["action"] == "proceed_mint"
    assert commits[-1]["lease"] is None
    # Every transition is still an event of its own, in order.
    moves = [(e["from_state"], e["to_state"]) for e in commits[-1]["events"]][-6:]
    assert moves == [("verified", "minting"), ("minting", "minted"),
                     ("minted", "distributing"), ("distributing", "distributed"),
                     ("distributed", "validating"), ("validating", "validated")]
    # The first distribution commit already says minted (the auth id) and has every row in
    # flight: a crash after it can be rolled back from what the branch holds.
    first_distributing = next(c for c in commits if c["status"] == "distributing")
    assert first_distributing["new_auth_id"] == job.new_auth_id
    assert {r["distribute_status"] for r in first_distributing["consumers"]} == {"in_progress"}


def test_a_resumed_mint_stops_at_a_live_lease_before_touching_the_vendor(
        eng_world: EngWorld) -> None:
    engine, job = start(eng_world)
    crashed = eng_world.cli("stage", job.job_id, "proceed_mint", crash_at="after_mint")
    assert crashed.returncode != 0
    assert eng_world.job(job.job_id).status == "minting"
    _hold_elsewhere(eng_world, job.job_id)
    posts = len(eng_world.requests("heroku", "POST", "/oauth/authorizations"))

    refused = eng_world.cli("stage", job.job_id, "proceed_mint")

    assert refused.returncode == 3, refused.stderr[-2000:]
    assert f"already running proceed_mint (run {ELSEWHERE}" in refused.stderr
    assert len(eng_world.requests("heroku", "POST", "/oauth/authorizations")) == posts
    assert len(labelled(eng_world.heroku_auths(PLATFORM_EMAIL), job.job_id)) == 1
    assert eng_world.vault(HK, "__PENDING") is None  # the resumed run wrote nothing
    after = eng_world.job(job.job_id)
    assert after.status == "minting"
    assert after.lease is not None
    assert after.lease.owner == ELSEWHERE


def test_abort_from_validated_stops_at_a_live_lease_before_promoting_the_vault(
        eng_world: EngWorld) -> None:
    _, job = to_validated(eng_world)
    old = eng_world.vault(HK)
    _hold_elsewhere(eng_world, job.job_id)

    refused = eng_world.cli("stage", job.job_id, "abort")

    assert refused.returncode == 3, refused.stderr[-2000:]
    assert "already running proceed_mint" in refused.stderr
    assert eng_world.vault(HK) == old  # not promoted
    assert eng_world.vault(HK, "__PENDING") is not None
    assert eng_world.job(job.job_id).status == "validated"


def test_a_live_lease_stops_a_stage_that_starts_with_a_move(eng_world: EngWorld) -> None:
    _, job = start(eng_world)
    _hold_elsewhere(eng_world, job.job_id)

    refused = eng_world.cli("stage", job.job_id, "proceed_mint")

    assert refused.returncode == 3, refused.stderr[-2000:]
    assert eng_world.requests("heroku", "POST", "/oauth/authorizations") == []
    assert eng_world.job(job.job_id).status == "verified"
