"""Shares of one vendor account leased through the state branch (shares.py).

Runs are ShareKeepers on one real state branch (a bare repository), each with its own cache and
its own Budget, as separate processes would be; their steps are called one at a time so every
hand-over is seen. What the account may see is checked on the Budgets' own windows.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from velvet_runner.budget import POLICIES, Budget
from velvet_runner.engine.journal import stale
from velvet_runner.records import utcnow
from velvet_runner.shares import Account, ShareKeeper, account_folder
from velvet_runner.store import Store

GITHUB = POLICIES["github"]
FOLDER = account_folder("github", "https://api.github.com")
PER_MINUTE = "content-generating requests per minute"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # noqa: ANN204 - a datetime, for ShareKeeper's `now`
        return self.now


def keeper(bare_repo: Path, tmp_path: Path, name: str, clock: Clock,
           owner: str | None = None) -> ShareKeeper:
    store = Store(str(bare_repo), "velvet-state", tmp_path / f"cache-{name}")
    budget = Budget(GITHUB)
    return ShareKeeper(store, [Account(FOLDER, "github https://api.github.com", budget)],
                       owner=owner or f"{socket.gethostname()}:{os.getpid()}:{name}",
                       job_id=f"job-{name}", credential=f"CRED_{name.upper()}", stale=stale,
                       now=clock)


def spend(k: ShareKeeper, writes: int) -> None:
    budget = k.accounts[0].budget
    for _ in range(writes):
        budget.release(budget.acquire("PUT"), None)


def share(k: ShareKeeper) -> float:
    return k.accounts[0].budget.share


def leases(store: Store) -> dict[str, dict]:
    head = store.head()
    names = store.git.ls_many(head, [FOLDER])[FOLDER]
    blobs = store.git.read(head, [f"{FOLDER}/{n}" for n in names])
    return {path: json.loads(blob) for path, blob in blobs.items() if blob is not None}


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_runs_split_an_account_and_hand_over_what_one_spent(bare_repo: Path, tmp_path: Path,
                                                            clock: Clock) -> None:
    a, b = keeper(bare_repo, tmp_path, "a", clock), keeper(bare_repo, tmp_path, "b", clock)
    a.join()
    assert share(a) == 1.0  # alone: the whole account
    spend(a, 60)  # 60 of the 80 content-generating writes a minute
    b.join()
    assert share(b) == 0.0  # everything is held: b waits rather than overdraw
    a.step()
    assert share(a) == 0.5  # a shrinks to its fair share, and says what it spent
    b.step()
    assert share(b) == 0.5
    # b counts the 20 writes a spent beyond its half as its own until the minute forgets them:
    # together they stay within 80 a minute.
    assert b.accounts[0].budget.usage()[PER_MINUTE] == 20
    a_budget, b_budget = a.accounts[0].budget, b.accounts[0].budget
    room_a = 0.5 * 80 - a_budget.usage()[PER_MINUTE]
    room_b = 0.5 * 80 - b_budget.usage()[PER_MINUTE]
    assert 60 + max(0, room_a) + room_b <= 80
    # Counted once: a second step does not carry it again.
    b.step()
    assert b_budget.usage()[PER_MINUTE] == 20

    a.leave()
    b.step()
    assert share(b) == 1.0  # a's half is free again...
    # ...and what a spent of it still counts here until the window forgets it.
    assert b_budget.usage()[PER_MINUTE] >= 60
    shares = {lease["credential"]: lease for lease in leases(b.store).values()}
    assert shares["CRED_A"]["released_at"] is not None
    assert shares["CRED_A"]["share"] == 0.0
    assert shares["CRED_B"]["share"] == 1.0
    b.leave()
    assert sum(lease["share"] for lease in leases(b.store).values()) == 0


def test_the_shares_on_the_branch_never_add_up_to_more_than_the_account(
        bare_repo: Path, tmp_path: Path, clock: Clock) -> None:
    runs = [keeper(bare_repo, tmp_path, f"r{i}", clock) for i in range(4)]
    for i, k in enumerate(runs):
        k.join()
        for other in runs[:i + 1]:
            other.step()
        on_branch = [lease["share"] for lease in leases(k.store).values()]
        assert sum(on_branch) <= 1.0 + 1e-9
    for k in runs:
        k.step()
    assert [share(k) for k in runs] == [0.25] * 4


def test_a_crashed_runs_share_is_reclaimed_at_once_on_its_own_host(
        bare_repo: Path, tmp_path: Path, clock: Clock) -> None:
    """A process of this host that died: its share is taken over at the next poll, counted as
    wholly spent at that moment (it may have spent it just before dying)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    crashed = keeper(bare_repo, tmp_path, "crashed", clock,
                     owner=f"{socket.gethostname()}:{dead}:deadbeef")
    crashed.join()  # share 1.0, then the process is gone without leaving
    survivor = keeper(bare_repo, tmp_path, "survivor", clock)
    survivor.join()
    assert share(survivor) == 1.0
    assert survivor.accounts[0].budget.usage()[PER_MINUTE] == 80  # the whole minute, carried
    reclaimed = next(lease for lease in leases(survivor.store).values()
                     if lease["credential"] == "CRED_CRASHED")
    assert reclaimed["share"] == 0.0
    assert reclaimed["released_at"] is not None
    assert reclaimed["reclaimed_by"] == survivor.owner


def test_a_lease_elsewhere_is_reclaimed_when_it_goes_unrenewed(bare_repo: Path, tmp_path: Path,
                                                              clock: Clock) -> None:
    """Another host's run cannot be asked whether it lives: its lease is taken over two
    minutes after its last renewal; a released lease is swept once the hour's window forgets."""
    elsewhere = keeper(bare_repo, tmp_path, "elsewhere", clock,
                       owner="runner-elsewhere:4242:abcd1234")
    elsewhere.join()
    here = keeper(bare_repo, tmp_path, "here", clock)
    here.join()
    assert share(here) == 0.0  # alive as far as anyone can tell
    clock.now += timedelta(seconds=90)
    here.step(renew=True)
    assert share(here) == 0.0
    clock.now += timedelta(seconds=40)  # 130 s since its renewal
    here.step()
    assert share(here) == 1.0
    assert len(leases(here.store)) == 2
    clock.now += timedelta(hours=1, minutes=1)  # GitHub's longest window is an hour
    here.step(renew=True)
    assert [lease["credential"] for lease in leases(here.store).values()] == ["CRED_HERE"]


def test_runs_growing_at_once_split_what_the_leaver_spent(bare_repo: Path, tmp_path: Path,
                                                          clock: Clock) -> None:
    """Four runs at a quarter each; one leaves having spent its 20 of the minute's 80. The
    other three each take a twelfth more and carry a twelfth's worth of its 20 (all 20 between
    them), not all 20 each, which would leave 40 of the account idle for a minute."""
    runs = [keeper(bare_repo, tmp_path, f"r{i}", clock) for i in range(4)]
    for i, k in enumerate(runs):
        k.join()
        for other in runs[:i + 1]:
            other.step()
    for k in runs:
        k.step()
    assert [share(k) for k in runs] == [0.25] * 4
    spend(runs[0], 20)
    runs[0].leave()
    rest = runs[1:]
    for k in rest:
        k.step()
    assert [round(share(k), 6) for k in rest] == [round(1 / 3, 6)] * 3
    carried = [k.accounts[0].budget.usage()[PER_MINUTE] for k in rest]
    assert [round(x, 6) for x in carried] == [round(80 / 12, 6)] * 3
    assert round(sum(carried), 6) == 20  # all of the leaver's spend, counted once
    room = sum(80 / 3 - x for x in carried)
    assert 20 + room <= 80 + 1e-9
