"""The state branch: records in a real git repository, every write a compare-and-swap push.

Every test uses a real bare repository in tmp_path as the remote and reads what landed there
with git itself, so the assertions are about the branch, not about the Store's own view.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from velvet_runner.errors import NotFoundError, RotationInFlight
from velvet_runner.gitbranch import DIRECT_READS, Change
from velvet_runner.machine import INITIAL, Flow, State
from velvet_runner.records import Event, Job, new_job_id, utcnow
from velvet_runner.store import DEBT_INDEX, Store

CRED = "HK_PLATFORM_FULL"
BRANCH = "velvet-state"
WAIT = 60  # seconds; a safety net for thread hand-offs, never a timing assertion


def make_job(credential: str = CRED, *, key: str | None = None,
             flow: Flow = Flow.OPERATIONAL) -> Job:
    now = utcnow()
    return Job(job_id=new_job_id(), credential=credential, vendor="heroku", flow_type=flow,
               env="prod", status=INITIAL[flow], created_at=now, updated_at=now, actor="test",
               idempotency_key=key,
               events=[Event(at=now, actor="test", action="create",
                             to_state=str(INITIAL[flow]))])


def moved(state: State, action: str = "test") -> Callable[[Job], Job]:
    def apply(job: Job) -> Job:
        job.events.append(Event(at=utcnow(), actor="test", action=action,
                                from_state=str(job.status), to_state=str(state)))
        job.status = state
        return job
    return apply


def noted(action: str) -> Callable[[Job], Job]:
    def apply(job: Job) -> Job:
        job.events.append(Event(at=utcnow(), actor="test", action=action))
        return job
    return apply


def remote_git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True,
                          check=False, timeout=WAIT)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr.decode()}")
    return proc


def blob(repo: Path, path: str, branch: str = BRANCH) -> bytes:
    return remote_git(repo, "cat-file", "blob", f"{branch}:{path}").stdout


def has_path(repo: Path, path: str, branch: str = BRANCH) -> bool:
    return remote_git(repo, "cat-file", "-e", f"{branch}:{path}", check=False).returncode == 0


def branch_head(repo: Path, branch: str = BRANCH) -> str | None:
    proc = remote_git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}",
                      check=False)
    return proc.stdout.decode().strip() or None


def files_on_branch(repo: Path, branch: str = BRANCH) -> list[str]:
    out = remote_git(repo, "ls-tree", "-r", "--name-only", branch).stdout.decode()
    return sorted(out.splitlines())


def commit_count(repo: Path, branch: str = BRANCH) -> int:
    return int(remote_git(repo, "rev-list", "--count", branch).stdout.decode())


@pytest.fixture
def store(bare_repo: Path, tmp_path: Path) -> Store:
    return Store(str(bare_repo), BRANCH, tmp_path / "cache-main")


def other_store(bare_repo: Path, tmp_path: Path, name: str) -> Store:
    return Store(str(bare_repo), BRANCH, tmp_path / f"cache-{name}")


# --- create / get / list / find / update ------------------------------------------------------


def test_create_then_read_back_every_way(store: Store, bare_repo: Path) -> None:
    assert branch_head(bare_repo) is None
    job = make_job()
    stored, created = store.create(job)
    assert created is True
    assert stored == job
    assert store.get(CRED, job.job_id) == job
    assert store.find(job.job_id) == job
    assert store.list_jobs(CRED) == [job]
    assert store.job_ids(CRED) == [job.job_id]
    assert store.credentials() == [CRED]
    assert store.lock_holder(CRED) == job.job_id
    assert files_on_branch(bare_repo) == [DEBT_INDEX, f"jobs/{CRED}/{job.job_id}.json",
                                          f"locks/{CRED}.json"]


def test_the_state_branch_is_an_orphan_with_only_state_files(store: Store,
                                                             bare_repo: Path) -> None:
    store.create(make_job(key="k-1"))
    roots = remote_git(bare_repo, "rev-list", "--max-parents=0", BRANCH).stdout.split()
    assert len(roots) == 1
    assert {p.split("/")[0] for p in files_on_branch(bare_repo)} == {
        "jobs", "locks", "idempotency", "debt"}


def test_list_is_newest_first(store: Store) -> None:
    jobs = []
    for _ in range(3):
        job, created = store.create(make_job())
        assert created
        store.update(CRED, job.job_id, moved(State.ABORTED))
        jobs.append(job.job_id)
    newest_first = jobs[::-1]
    assert [j.job_id for j in store.list_jobs(CRED)] == newest_first
    assert [j.job_id for j in store.list_jobs(CRED, limit=2)] == newest_first[:2]
    assert store.job_ids(CRED) == newest_first
    assert all(j.status == State.ABORTED for j in store.list_jobs(CRED))


def test_list_of_a_credential_without_jobs_is_empty(store: Store) -> None:
    assert store.list_jobs(CRED) == []
    store.create(make_job())
    assert store.list_jobs("PM_SERVER_MAIL") == []
    assert store.job_ids("PM_SERVER_MAIL") == []


def test_update_writes_the_new_record(store: Store, bare_repo: Path) -> None:
    job, _ = store.create(make_job())
    before = branch_head(bare_repo)
    new = store.update(CRED, job.job_id, moved(State.VERIFYING, "verify"))
    assert new.status == State.VERIFYING
    assert new.updated_at >= job.updated_at
    assert [e.action for e in new.events] == ["create", "verify"]
    assert store.get(CRED, job.job_id) == new
    assert Job.from_json(blob(bare_repo, f"jobs/{CRED}/{job.job_id}.json")) == new
    assert branch_head(bare_repo) != before
    message = remote_git(bare_repo, "log", "-1", "--format=%s", BRANCH).stdout.decode()
    assert message.strip() == f"{CRED}: {job.job_id} init -> verifying"


def test_update_that_changes_nothing_writes_nothing(store: Store, bare_repo: Path) -> None:
    job, _ = store.create(make_job())
    before = branch_head(bare_repo)
    assert store.update(CRED, job.job_id, lambda current: None) == job
    assert store.update(CRED, job.job_id, lambda current: current) == job
    assert branch_head(bare_repo) == before


@pytest.mark.parametrize("job_id", ["../../etc", "../../etc/passwd", "not-a-uuid", "",
                                    "01a219fb-089b-7937-bf5b-485c224ef87a/../x"])
def test_bad_job_ids_are_not_found(store: Store, job_id: str) -> None:
    store.create(make_job())
    with pytest.raises(NotFoundError):
        store.get(CRED, job_id)
    with pytest.raises(NotFoundError):
        store.find(job_id)
    with pytest.raises(NotFoundError):
        store.update(CRED, job_id, noted("x"))


def test_unknown_jobs_and_credentials_are_not_found(store: Store, bare_repo: Path) -> None:
    job, _ = store.create(make_job())
    before = branch_head(bare_repo)
    unknown = new_job_id()
    with pytest.raises(NotFoundError, match=unknown):
        store.get(CRED, unknown)
    with pytest.raises(NotFoundError, match=unknown):
        store.find(unknown)
    with pytest.raises(NotFoundError):
        store.update(CRED, unknown, noted("x"))
    with pytest.raises(NotFoundError):
        store.get("../jobs", job.job_id)
    with pytest.raises(NotFoundError):
        store.get("PM_SERVER_MAIL", job.job_id)
    assert branch_head(bare_repo) == before


# --- deterministic bytes ---------------------------------------------------------------------


def test_job_file_bytes_are_deterministic(store: Store, bare_repo: Path) -> None:
    job, _ = store.create(make_job())
    store.update(CRED, job.job_id, moved(State.VERIFYING))
    raw = blob(bare_repo, f"jobs/{CRED}/{job.job_id}.json")
    text = raw.decode("utf-8")
    data = json.loads(text)
    assert raw == Job.from_json(raw).to_json().encode()
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert text.endswith("}\n")
    assert not text.endswith("\n\n")
    for stamp in (data["created_at"], data["updated_at"], data["events"][-1]["at"]):
        assert stamp.endswith("Z")
        assert len(stamp) == len("2026-01-01T00:00:00Z")


def test_lock_and_idempotency_files_are_deterministic(store: Store, bare_repo: Path) -> None:
    job, _ = store.create(make_job(key="same-key"))
    lock = blob(bare_repo, f"locks/{CRED}.json").decode()
    assert lock == json.dumps(json.loads(lock), indent=2, sort_keys=True) + "\n"
    assert json.loads(lock)["job_id"] == job.job_id
    assert json.loads(lock)["acquired_at"].endswith("Z")
    (idem,) = [p for p in files_on_branch(bare_repo) if p.startswith("idempotency/")]
    text = blob(bare_repo, idem).decode()
    assert json.loads(text) == {"credential": CRED, "job_id": job.job_id}
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert "same-key" not in idem  # the key is hashed into the path


def test_two_writers_write_identical_bytes(tmp_path: Path, git: Callable[..., str]) -> None:
    job = make_job()
    hashes = []
    for name in ("one", "two"):
        remote = tmp_path / f"{name}.git"
        git("init", "--quiet", "--bare", str(remote))
        Store(str(remote), BRANCH, tmp_path / f"cache-{name}").create(job)
        hashes.append(remote_git(remote, "rev-parse", f"{BRANCH}:jobs").stdout)
    assert hashes[0] == hashes[1]


# --- compare-and-swap ------------------------------------------------------------------------


def test_a_write_based_on_a_stale_view_is_reapplied(bare_repo: Path, tmp_path: Path) -> None:
    """A reads the job, B commits meanwhile, A's push is refused; A re-applies on B's record."""
    a = other_store(bare_repo, tmp_path, "a")
    b = other_store(bare_repo, tmp_path, "b")
    job, _ = a.create(make_job())
    a_has_read = threading.Event()
    b_has_written = threading.Event()
    seen_by_a: list[list[str]] = []
    errors: list[BaseException] = []

    def apply_a(current: Job) -> Job:
        seen_by_a.append([e.action for e in current.events])
        if len(seen_by_a) == 1:
            a_has_read.set()
            assert b_has_written.wait(WAIT)
        current.events.append(Event(at=utcnow(), actor="a", action="from-a"))
        return current

    def run_a() -> None:
        try:
            a.update(CRED, job.job_id, apply_a)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=run_a)
    thread.start()
    try:
        assert a_has_read.wait(WAIT)
        b.update(CRED, job.job_id, noted("from-b"))
    finally:
        b_has_written.set()
        thread.join(WAIT)
    assert errors == []
    assert seen_by_a == [["create"], ["create", "from-b"]]
    assert a.retries == 1
    final = b.get(CRED, job.job_id)
    assert [e.action for e in final.events] == ["create", "from-b", "from-a"]


def test_concurrent_updates_from_threads_all_land(bare_repo: Path, tmp_path: Path) -> None:
    writers = 6
    job, _ = Store(str(bare_repo), BRANCH, tmp_path / "cache-creator").create(make_job())
    stores = [other_store(bare_repo, tmp_path, f"w{i}") for i in range(writers)]
    for s in stores:
        s.refresh()  # every writer starts from the same, soon stale, view
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            barrier.wait(WAIT)
            stores[i].update(CRED, job.job_id, noted(f"writer-{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []
    final = stores[0].get(CRED, job.job_id)
    actions = [e.action for e in final.events]
    assert actions[0] == "create"
    assert sorted(actions[1:]) == sorted(f"writer-{i}" for i in range(writers))
    assert commit_count(bare_repo) == 1 + writers


def test_concurrent_creates_one_job_wins(bare_repo: Path, tmp_path: Path) -> None:
    contenders = 6
    stores = [other_store(bare_repo, tmp_path, f"c{i}") for i in range(contenders)]
    jobs = [make_job() for _ in range(contenders)]
    barrier = threading.Barrier(contenders)
    created: list[Job] = []
    refused: list[RotationInFlight] = []
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            barrier.wait(WAIT)
            job, was_created = stores[i].create(jobs[i])
            assert was_created
            created.append(job)
        except RotationInFlight as exc:
            refused.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []
    assert len(created) == 1
    winner = created[0].job_id
    assert len(refused) == contenders - 1
    assert {exc.job_id for exc in refused} == {winner}
    assert all(winner in str(exc) for exc in refused)
    assert files_on_branch(bare_repo) == [DEBT_INDEX, f"jobs/{CRED}/{winner}.json",
                                          f"locks/{CRED}.json"]
    assert commit_count(bare_repo) == 1


# --- the per-credential lock -------------------------------------------------------------------


def test_second_create_is_refused_naming_the_job(store: Store, bare_repo: Path) -> None:
    first, _ = store.create(make_job())
    before = branch_head(bare_repo)
    with pytest.raises(RotationInFlight) as info:
        store.create(make_job())
    assert info.value.job_id == first.job_id
    assert "active rotation already in progress" in str(info.value)
    assert info.value.exit_code == 3
    assert branch_head(bare_repo) == before
    # Another credential is not locked by it.
    other, created = store.create(make_job("PM_SERVER_MAIL"))
    assert created


def test_lock_is_released_in_the_commit_that_makes_the_job_terminal(store: Store,
                                                                    bare_repo: Path) -> None:
    job, _ = store.create(make_job())
    store.update(CRED, job.job_id, moved(State.VERIFYING))
    assert has_path(bare_repo, f"locks/{CRED}.json")
    store.update(CRED, job.job_id, moved(State.VERIFY_FAILED))
    assert has_path(bare_repo, f"locks/{CRED}.json")
    store.update(CRED, job.job_id, moved(State.ABORTED))
    assert not has_path(bare_repo, f"locks/{CRED}.json")
    changed = remote_git(bare_repo, "show", "--name-status", "--format=", BRANCH)
    assert sorted(changed.stdout.decode().split("\n")[:-1]) == [
        f"D\tlocks/{CRED}.json", f"M\tjobs/{CRED}/{job.job_id}.json"]
    assert has_path(bare_repo, f"locks/{CRED}.json", f"{BRANCH}~1")
    assert store.lock_holder(CRED) is None
    _, created = store.create(make_job())
    assert created


def test_objects_written_in_process_pass_git_fsck(store: Store, bare_repo: Path) -> None:
    # The Store writes blobs, trees and commits itself; git must find them well formed (tree
    # order, modes, no empty trees), on the remote and in the cache alike.
    jobs = [store.create(make_job(name, key=f"k-{name}"))[0]
            for name in ("A_CRED", "B", "B_CRED", "B_X", "Z9")]
    for job in jobs:
        store.update(job.credential, job.job_id, moved(State.VERIFYING))
        store.update(job.credential, job.job_id, moved(State.ABORTED))  # deletes its lock
    root = remote_git(bare_repo, "ls-tree", BRANCH).stdout.decode()
    assert [line.split("\t")[1] for line in root.splitlines()] == ["debt", "idempotency", "jobs"]
    for repo in (bare_repo, store.cache):
        fsck = remote_git(repo, "fsck", "--strict", "--no-dangling", check=False)
        assert fsck.returncode == 0, fsck.stderr.decode()
    assert sorted(files_on_branch(bare_repo)) == sorted(
        [f"jobs/{j.credential}/{j.job_id}.json" for j in jobs]
        + [p for p in files_on_branch(bare_repo) if p.startswith("idempotency/")]
        + [DEBT_INDEX])
    assert [store.get(j.credential, j.job_id).status for j in jobs] == [State.ABORTED] * 5


@pytest.mark.parametrize(("flow", "path"), [
    (Flow.OPERATIONAL, [State.VERIFYING, State.VERIFIED, State.MINTING, State.MINTED,
                        State.DISTRIBUTING, State.DISTRIBUTED, State.VALIDATING, State.VALIDATED,
                        State.REVOKING, State.DONE]),
    (Flow.REVOCATION, [State.REV_REVOKING, State.REV_REVOKED, State.REV_VALIDATING,
                       State.REV_LEAKED, State.REV_VALIDATING, State.REV_DONE]),
    (Flow.TESTING, [State.VERIFYING, State.VALIDATE_FAILED]),
])
def test_lock_is_held_until_the_flow_is_terminal(store: Store, bare_repo: Path, flow: Flow,
                                                 path: list[State]) -> None:
    job, _ = store.create(make_job(flow=flow))
    for state in path[:-1]:
        store.update(CRED, job.job_id, moved(state))
        assert store.lock_holder(CRED) == job.job_id, f"lock lost in {state}"
    store.update(CRED, job.job_id, moved(path[-1]))
    assert store.lock_holder(CRED) is None


def test_updating_an_old_job_leaves_the_current_lock_alone(store: Store,
                                                           bare_repo: Path) -> None:
    old, _ = store.create(make_job())
    store.update(CRED, old.job_id, moved(State.ABORTED))
    current, _ = store.create(make_job())
    store.update(CRED, old.job_id, noted("late note"))
    assert store.lock_holder(CRED) == current.job_id
    assert json.loads(blob(bare_repo, f"locks/{CRED}.json"))["job_id"] == current.job_id


# --- idempotency -----------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_existing_job(store: Store, bare_repo: Path) -> None:
    first, created = store.create(make_job(key="3fa85f64-5717-4562-b3fc-2c963f66afa6"))
    assert created
    head = branch_head(bare_repo)
    files = files_on_branch(bare_repo)
    again, created = store.create(make_job(key="3fa85f64-5717-4562-b3fc-2c963f66afa6"))
    assert created is False
    assert again == first
    assert branch_head(bare_repo) == head
    assert files_on_branch(bare_repo) == files


def test_same_idempotency_key_after_the_job_finished(store: Store, bare_repo: Path) -> None:
    first, _ = store.create(make_job(key="k"))
    store.update(CRED, first.job_id, moved(State.ABORTED))
    head = branch_head(bare_repo)
    again, created = store.create(make_job(key="k"))
    assert created is False
    assert again.job_id == first.job_id
    assert again.status == State.ABORTED
    assert branch_head(bare_repo) == head


def test_idempotency_keys_are_per_credential(store: Store) -> None:
    hk, _ = store.create(make_job(key="k"))
    pm, created = store.create(make_job("PM_SERVER_MAIL", key="k"))
    assert created
    assert pm.job_id != hk.job_id


def test_a_different_key_does_not_bypass_the_lock(store: Store) -> None:
    first, _ = store.create(make_job(key="k1"))
    with pytest.raises(RotationInFlight) as info:
        store.create(make_job(key="k2"))
    assert info.value.job_id == first.job_id


# --- remotes ---------------------------------------------------------------------------------


def test_a_local_remote_that_does_not_exist_yet_is_created(tmp_path: Path) -> None:
    remote = tmp_path / "not" / "yet" / "state.git"
    assert not remote.exists()
    s = Store(str(remote), BRANCH, tmp_path / "cache-new")
    assert s.list_jobs(CRED) == []
    job, created = s.create(make_job())
    assert created
    assert remote_git(remote, "rev-parse", "--is-bare-repository").stdout.strip() == b"true"
    assert files_on_branch(remote) == [DEBT_INDEX, f"jobs/{CRED}/{job.job_id}.json",
                                       f"locks/{CRED}.json"]


def test_a_file_url_remote(bare_repo: Path, tmp_path: Path) -> None:
    s = Store(bare_repo.as_uri(), BRANCH, tmp_path / "cache-url")
    job, _ = s.create(make_job())
    assert Store(str(bare_repo), BRANCH, tmp_path / "cache-path").get(CRED, job.job_id) == job
    assert branch_head(bare_repo) is not None


def test_another_branch_name(bare_repo: Path, tmp_path: Path) -> None:
    s = Store(str(bare_repo), "state-staging", tmp_path / "cache-staging")
    job, _ = s.create(make_job())
    assert branch_head(bare_repo, "state-staging") is not None
    assert branch_head(bare_repo) is None
    assert s.get(CRED, job.job_id) == job


def test_a_fresh_cache_reads_what_another_wrote(bare_repo: Path, tmp_path: Path) -> None:
    job, _ = other_store(bare_repo, tmp_path, "writer").create(make_job())
    reader = other_store(bare_repo, tmp_path, "reader")
    assert reader.get(CRED, job.job_id) == job
    updated = other_store(bare_repo, tmp_path, "writer").update(
        CRED, job.job_id, moved(State.VERIFYING))
    assert reader.get(CRED, job.job_id) == updated  # reads fetch first


# --- listing touches only that credential's files -----------------------------------------


def test_a_corrupt_job_of_another_credential_does_not_break_listing(store: Store) -> None:
    job, _ = store.create(make_job())
    corrupt = new_job_id()

    def plant(read: object, ls: object) -> Change:
        return Change({f"jobs/AAA_CORRUPT/{corrupt}.json": b"{ this is not json",
                       "jobs/AAA_CORRUPT/README": b"not a job\n"}, "plant corrupt files")

    store.transact(plant)
    assert store.credentials() == ["AAA_CORRUPT", CRED]
    assert store.list_jobs(CRED) == [job]
    assert store.get(CRED, job.job_id) == job
    assert store.find(job.job_id) == job
    assert store.job_ids(CRED) == [job.job_id]
    updated = store.update(CRED, job.job_id, moved(State.VERIFYING))
    assert updated.status == State.VERIFYING


# --- records that do not parse, history that went away, repositories that are not there -------


def _write(store: Store, files: dict[str, bytes | None]) -> None:
    store.transact(lambda read, ls: Change(files, "by hand"))


def test_a_corrupt_job_is_skipped_by_listings_and_named(store: Store) -> None:
    from velvet_runner.errors import CorruptRecord

    good, _ = store.create(make_job())
    bad_path = f"jobs/{CRED}/00000000-0000-7000-8000-000000000000.json"
    _write(store, {bad_path: b'{"secret-ish": '})
    assert [j.job_id for j in store.list_jobs(CRED)] == [good.job_id]
    assert len(store.problems) == 1
    assert bad_path in store.problems[0]
    assert "secret-ish" not in store.problems[0]
    with pytest.raises(CorruptRecord, match="invalid JSON") as info:
        store.get(CRED, "00000000-0000-7000-8000-000000000000")
    assert info.value.path == bad_path
    assert isinstance(info.value, ValueError)  # what callers caught before


def test_a_corrupt_lock_refuses_create_and_is_left_by_a_terminal_move(store: Store,
                                                                      bare_repo: Path) -> None:
    from velvet_runner.errors import CorruptRecord
    from velvet_runner.store import UNREADABLE_LOCK

    job, _ = store.create(make_job())
    _write(store, {f"locks/{CRED}.json": b"[]"})
    with pytest.raises(CorruptRecord, match=f"locks/{CRED}.json"):
        store.create(make_job())
    assert store.lock_holder(CRED) == UNREADABLE_LOCK
    store.update(CRED, job.job_id, moved(State.ABORTED))  # the job's own move is not lost
    assert json.loads(blob(bare_repo, f"jobs/{CRED}/{job.job_id}.json"))["status"] == "aborted"
    assert blob(bare_repo, f"locks/{CRED}.json") == b"[]"  # whose lock it is cannot be told


def test_history_this_cache_saw_must_stay(store: Store, bare_repo: Path,
                                          tmp_path: Path) -> None:
    from velvet_runner.errors import StateHistoryLost

    store.create(make_job())
    seen = branch_head(bare_repo)
    other = Store(str(bare_repo), BRANCH, tmp_path / "cache-elsewhere")
    other.refresh()
    # Someone replaces the branch with unrelated history.
    empty_tree = subprocess.run(["git", "--git-dir", str(bare_repo), "hash-object", "-t",
                                 "tree", "-w", "--stdin"], input=b"", capture_output=True,
                                check=True).stdout.decode().strip()
    orphan = subprocess.run(["git", "--git-dir", str(bare_repo), "-c", "user.name=x", "-c",
                             "user.email=x@x", "commit-tree", empty_tree, "-m", "orphan"],
                            capture_output=True, check=True).stdout.decode().strip()
    remote_git(bare_repo, "update-ref", f"refs/heads/{BRANCH}", orphan)
    with pytest.raises(StateHistoryLost, match="was replaced"):
        store.refresh()
    with pytest.raises(StateHistoryLost):
        store.create(make_job())
    assert store.head(fetch=False) == seen  # readers keep the history they know
    remote_git(bare_repo, "update-ref", "-d", f"refs/heads/{BRANCH}")
    with pytest.raises(StateHistoryLost, match="is gone"):
        other.refresh()
    remote_git(bare_repo, "update-ref", f"refs/heads/{BRANCH}", seen or "")
    assert store.refresh() == seen  # restored: accepted again


def test_a_missing_local_repository_is_created_only_when_allowed(tmp_path: Path) -> None:
    from velvet_runner.errors import BadArgument

    missing = tmp_path / "typo.git"
    with pytest.raises(BadArgument, match="no state repository at"):
        Store(str(missing), BRANCH, tmp_path / "cache", create=False).refresh()
    assert not missing.exists()
    Store(str(missing), BRANCH, tmp_path / "cache").refresh()
    assert (missing / "HEAD").exists()


def test_batched_reads_answer_as_gits_own_path_lookup(store: Store, bare_repo: Path) -> None:
    """`read` walks the trees itself (each read once); every answer, for files, folders, the
    root, missing paths and paths through a file, is what `git cat-file head:path` says."""
    jobs = [make_job(), make_job("CF_ZONE_READ")]
    for job in jobs:
        store.create(job)
    head = store.head(fetch=True)
    assert head is not None
    paths = ["", "jobs", "locks", f"locks/{CRED}.json", f"jobs/{CRED}",
             *(f"jobs/{j.credential}/{j.job_id}.json" for j in jobs),
             "jobs/NOPE", f"jobs/{CRED}/missing.json", f"locks/{CRED}.json/inside",
             "nowhere/at/all", DEBT_INDEX]
    found = store.git.read(head, paths)
    # Many paths are walked to, a few looked up by git itself: both answer the same.
    assert len(paths) <= DIRECT_READS < len(paths * 2)
    assert store.git.read(head, paths * 2) == found
    for path in paths:
        proc = subprocess.run(["git", "--git-dir", str(store.git.cache), "cat-file",
                               "--batch"], input=f"{head}:{path}\n".encode(),
                              capture_output=True, check=True, timeout=WAIT)
        header, _, rest = proc.stdout.partition(b"\n")
        expected = None if header.endswith(b"missing") else rest[:int(header.split()[2])]
        assert found[path] == expected, path
    assert store.git.read(None, paths) == dict.fromkeys(paths)
    folders = ["", "jobs", f"jobs/{CRED}", "locks", f"locks/{CRED}.json", "nope", "jobs/NOPE"]
    listed = store.git.ls_many(head, folders)
    for folder in folders:
        proc = subprocess.run(["git", "--git-dir", str(store.git.cache), "ls-tree",
                               "--format=%(objectmode) %(objectname) %(path)",
                               f"{head}:{folder}"], capture_output=True, check=False,
                              timeout=WAIT)
        lines = proc.stdout.decode().splitlines() if proc.returncode == 0 else []
        expected = {name: (mode.lstrip("0").encode(), oid)
                    for mode, oid, name in (line.split(" ", 2) for line in lines)}
        if folder == f"locks/{CRED}.json":
            expected = {}  # a file, not a folder: nothing listed
        assert listed[folder] == expected, folder
