"""State writes under contention, refused pushes, and what child git processes see.

A real bare repository is the remote; its hooks stand in for a slow remote (a push that takes
50 ms), one that refuses every push (a hook), and a spy on the environment git passes on.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from velvet_runner.errors import StateWriteLost, StateWriteRefused
from velvet_runner.gitbranch import Change
from velvet_runner.machine import INITIAL, Flow
from velvet_runner.records import Event, Job, new_job_id, utcnow
from velvet_runner.store import Store

WAIT = 120  # seconds; a safety net for threads, never a timing assertion


def make_job(credential: str) -> Job:
    now = utcnow()
    return Job(job_id=new_job_id(), credential=credential, vendor="heroku",
               flow_type=Flow.OPERATIONAL, env="prod", status=INITIAL[Flow.OPERATIONAL],
               created_at=now, updated_at=now, actor="test",
               events=[Event(at=now, actor="test", action="create", to_state="init")])


def hook(repo: Path, name: str, body: str) -> None:
    hooks = repo / "hooks"
    hooks.mkdir(exist_ok=True)
    path = hooks / name
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def note(i: int) -> Callable[[Job], Job]:
    def apply(job: Job) -> Job:
        job.events.append(Event(at=utcnow(), actor="test", action=f"note-{i}"))
        return job
    return apply


def test_writers_on_a_slow_remote_all_land_without_giving_up(bare_repo: Path,
                                                             tmp_path: Path) -> None:
    """Six writers, each with its own cache (as on six runners), four transitions each,
    through a remote whose every push takes 50 ms: every transition lands, in order."""
    setup = Store(str(bare_repo), cache_dir=tmp_path / "setup")
    jobs = [setup.create(make_job(f"CRED_{i}"))[0] for i in range(6)]
    hook(bare_repo, "pre-receive", "sleep 0.05")
    errors: list[BaseException] = []
    stores = [Store(str(bare_repo), cache_dir=tmp_path / f"w{i}") for i in range(6)]
    start = threading.Barrier(6)

    def writer(store: Store, job: Job) -> None:
        try:
            start.wait()
            for i in range(4):
                store.update(job.credential, job.job_id, note(i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s, j)) for s, j in zip(stores, jobs,
                                                                          strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []
    for job in jobs:
        got = setup.get(job.credential, job.job_id)
        assert [e.action for e in got.events[1:]] == [f"note-{i}" for i in range(4)]
    assert sum(s.retries for s in stores) > 0  # they did contend


def test_a_write_outlasts_more_lost_races_than_the_old_attempt_cap(bare_repo: Path,
                                                                   tmp_path: Path) -> None:
    """While the branch keeps moving the write keeps trying: 70 lost races (the old cap gave
    up after 60), then it lands."""
    store = Store(str(bare_repo), cache_dir=tmp_path / "mine", sleep=lambda s: None)
    rival = Store(str(bare_repo), cache_dir=tmp_path / "rival")
    job, _ = store.create(make_job("CRED_A"))
    other, _ = rival.create(make_job("CRED_B"))
    calls = [0]

    def plan(read: object, ls: object) -> Change:
        calls[0] += 1
        if calls[0] <= 70:  # someone else lands a commit between our read and our push
            rival.update(other.credential, other.job_id, note(calls[0]))
        return Change({"notes/mine.txt": f"{calls[0]}\n".encode()}, "mine")

    store.transact(plan)
    assert store.retries == 70
    assert store.git.read(store.head(), ["notes/mine.txt"])["notes/mine.txt"] == b"71\n"


def test_a_write_gives_up_only_when_its_patience_runs_out(bare_repo: Path,
                                                          tmp_path: Path) -> None:
    store = Store(str(bare_repo), cache_dir=tmp_path / "mine", sleep=lambda s: None)
    store.git.patience = 0.0
    rival = Store(str(bare_repo), cache_dir=tmp_path / "rival")
    other, _ = rival.create(make_job("CRED_B"))

    def plan(read: object, ls: object) -> Change:
        rival.update(other.credential, other.job_id, note(0))
        return Change({"notes/mine.txt": b"x\n"}, "mine")

    with pytest.raises(StateWriteLost, match="kept moving: this write lost 1 races"):
        store.transact(plan)


def test_a_remote_that_refuses_every_push_is_named_with_gits_reason(bare_repo: Path,
                                                                   tmp_path: Path) -> None:
    store = Store(str(bare_repo), cache_dir=tmp_path / "c")
    store.create(make_job("CRED_A"))
    hook(bare_repo, "pre-receive", "echo 'policy: the state branch is frozen by ops' >&2\n"
                                   "exit 1")
    with pytest.raises(StateWriteRefused) as info:
        store.create(make_job("CRED_B"))
    message = str(info.value)
    assert "refused the push" in message
    assert "pre-receive hook declined" in message
    assert "policy: the state branch is frozen by ops" in message
    assert "kept moving" not in message
    assert store.retries == 0


def test_a_race_like_refusal_on_a_branch_that_stands_still_is_a_refusal(bare_repo: Path,
                                                                       tmp_path: Path) -> None:
    """A hook whose words look like a lost race: nobody else is writing, so after a few tries
    it is reported as refused, quoting git, not retried until the deadline."""
    store = Store(str(bare_repo), cache_dir=tmp_path / "c", sleep=lambda s: None)
    store.create(make_job("CRED_A"))
    hook(bare_repo, "pre-receive", "echo 'cannot lock ref: the disk is full' >&2\nexit 1")
    with pytest.raises(StateWriteRefused, match="the disk is full"):
        store.create(make_job("CRED_B"))
    assert store.retries == 3  # three pushes refused while the fetched head never moved


def test_child_git_gets_only_the_environment_it_needs(bare_repo: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The remote's hook runs in the environment our `git push` passed on: no vendor token, no
    bootstrap secret; the state token a credential helper reads, and git's own settings."""
    secrets = {"VELVET_HEROKU_TOKEN": "hk-secret-1", "VELVET_GITHUB_TOKEN": "ghs-secret-2",
               "VELVET_INFISICAL_CLIENT_SECRET": "inf-secret-3", "AWS_SECRET_ACCESS_KEY": "aws-4"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VELVET_STATE_TOKEN", "state-token")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "velvet.test")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "yes")
    spy = tmp_path / "env.json"
    hook(bare_repo, "pre-receive",
         f"python3 -c 'import json, os; json.dump(dict(os.environ), open(\"{spy}\", \"w\"))'")
    Store(str(bare_repo), cache_dir=tmp_path / "c").create(make_job("CRED_A"))
    seen = json.loads(spy.read_text(encoding="utf-8"))
    for name, value in secrets.items():
        assert name not in seen
        assert value not in json.dumps(seen)
    assert seen["VELVET_STATE_TOKEN"] == "state-token"
    assert seen["GIT_CONFIG_KEY_0"] == "velvet.test"
    assert seen["PATH"].endswith(os.environ["PATH"])  # git puts its exec-path first
