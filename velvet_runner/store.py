"""The state branch: job records in git, every write a compare-and-swap push.

Layout of the branch (an orphan branch; see state/README.md):

    jobs/<CREDENTIAL>/<job_id>.json     one record per job; ids sort by creation time
    locks/<CREDENTIAL>.json             the lease of the job in flight for that credential
    idempotency/<sha256(key)>.json      idempotency key -> job id
    debt/<CREDENTIAL>/<job_id>.json     index: this job lists revocation debt not yet settled
    debt/index.json                     the index above is complete (written with its first entry)

The git side (cache, fetch, compare-and-swap push, retries, the lost-history check) is
`gitbranch.GitBranch`; this module decides what the files are. Each write is a plan that reads
the freshest files and returns the Change to make, or refuses, for example when another job took
the lock; the branch writer calls it again after every lost race.

`velvet due` and `velvet stuck` read the branch as a whole (`in_flight`, `newest`, `owing`): a
few batched git reads per command, however many credentials, and never every job of history:
the lock files say what is in flight, the newest jobs say when each credential last rotated
(ids are time-ordered, so a read goes newest-first and stops), and the debt index says which
old jobs still owe a revocation. Every write keeps that index in the commit that writes the
job; the first write by this version on an older branch builds it from every job once.

A record that does not parse is named (CorruptRecord, exit 2). Listing reads skip it, so every
other job stays readable, and remember it in `problems` for the caller to report.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from pydantic import ValidationError

from velvet_runner.bulk import paused_gc
from velvet_runner.errors import (
    CorruptRecord,
    LocalFileError,
    NotFoundError,
    RotationInFlight,
)
from velvet_runner.gitbranch import Change, GitBranch, Ls, Plan, Read
from velvet_runner.gitobjects import TREE_MODE, parse_tree
from velvet_runner.machine import is_terminal
from velvet_runner.records import Job, iso, utcnow

JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CREDENTIAL_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
# What lock_holder answers for a lock file that does not parse: held, by a job nobody can name.
UNREADABLE_LOCK = "?"
DEBT_INDEX = "debt/index.json"
_RECORD = re.compile(rb'^  "job_id": "[0-9a-f-]{36}",?$', re.MULTILINE)  # looks like a job record
P = ParamSpec("P")
R = TypeVar("R")


def _on_disk(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """A failure of the disk under the cache or a local state repository (full, a file-size
    limit, permissions) is a LocalFileError naming the path and what to do."""
    @functools.wraps(method)
    def wrapper(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            name = exc.filename
            where = (Path(os.fsdecode(name)).absolute() if isinstance(name, str | bytes)
                     else self.cache)
            what = ("use the state cache at" if where.is_relative_to(self.cache.parent)
                    else "use the local state repository at")
            raise LocalFileError.from_os(exc, what, where) from None
    return wrapper


class Store:
    """Read and write job records on the state branch of `url` (a git URL or a local path)."""

    def __init__(self, url: str, branch: str = "velvet-state", cache_dir: Path | None = None,
                 *, sleep: Callable[[float], None] = time.sleep, create: bool = True,
                 env: dict[str, str] | None = None) -> None:
        """`create`: make a missing local repository at `url` (the CLI allows it only for
        the default one, so that a typo in VELVET_STATE is refused, not silently created).
        `env`: more environment for git (gitbranch.token_env: the token it fetches with)."""
        self.git = GitBranch(url, branch, cache_dir, sleep=sleep, create=create,
                             at_stake="The jobs, locks and revocation debt that history "
                                      "recorded", env=env)
        self.url = self.git.url
        self.branch = branch
        self.problems: list[str] = []  # records skipped by listing reads, each named
        self._owes_by_blob: dict[str, bool] = {}  # building the debt index: blobs already read

    @property
    def cache(self) -> Path:
        """The local cache repository (a test may point it elsewhere)."""
        return self.git.cache

    @cache.setter
    def cache(self, path: Path) -> None:
        self.git.cache = path

    @property
    def retries(self) -> int:
        """Pushes lost to a race since construction (benchmarks read it)."""
        return self.git.retries

    @_on_disk
    def transact(self, plan: Plan) -> None:
        """Run one compare-and-swap write of `plan` (see GitBranch.transact)."""
        self.git.transact(plan)

    # --- reads ---------------------------------------------------------------------------

    @_on_disk
    def refresh(self) -> str | None:
        """Fetch the branch; return its head commit (None while the branch does not exist)."""
        return self.git.refresh()

    @_on_disk
    def head(self, *, fetch: bool = True) -> str | None:
        return self.git.head(fetch=fetch)

    @_on_disk
    def committed_at(self, commit: str) -> datetime:
        """The committer time of a commit of the branch (the `as of` of a report about it)."""
        return datetime.fromtimestamp(self.git.committed_at(commit), tz=UTC)

    @_on_disk
    def credentials(self, *, fetch: bool = True) -> list[str]:
        return self.git.ls(self.head(fetch=fetch), "jobs")

    @_on_disk
    def job_ids(self, credential: str, *, fetch: bool = True) -> list[str]:
        """Job ids of a credential, newest first (ids are time-ordered)."""
        _check_credential(credential)
        names = self.git.ls(self.head(fetch=fetch), f"jobs/{credential}")
        return sorted((n.removesuffix(".json") for n in names if n.endswith(".json")),
                      reverse=True)

    @_on_disk
    def list_jobs(self, credential: str, limit: int | None = None, *,
                  fetch: bool = True) -> list[Job]:
        head = self.head(fetch=fetch)
        ids = sorted((n.removesuffix(".json") for n in self.git.ls(head, f"jobs/{credential}")
                      if n.endswith(".json")), reverse=True)
        if limit is not None:
            ids = ids[:limit]
        blobs = self.git.read(head, [f"jobs/{credential}/{i}.json" for i in ids])
        jobs = []
        for path, blob in blobs.items():
            if blob is None:
                continue
            try:
                jobs.append(self._job(path, blob))
            except CorruptRecord as exc:
                self._problem(str(exc))
        return jobs

    @_on_disk
    def get(self, credential: str, job_id: str, *, fetch: bool = True) -> Job:
        _check_credential(credential)
        _check_job_id(job_id)
        blob = self.git.read(self.head(fetch=fetch), [f"jobs/{credential}/{job_id}.json"])
        path, content = next(iter(blob.items()))
        if content is None:
            raise NotFoundError(f"no job {job_id} for credential {credential}")
        return self._job(path, content)

    @_on_disk
    def find(self, job_id: str, *, fetch: bool = True) -> Job:
        """A job by id alone (the CLI's `velvet stage JOB_ID`)."""
        _check_job_id(job_id)
        head = self.head(fetch=fetch)
        paths = [f"jobs/{credential}/{job_id}.json" for credential in self.git.ls(head, "jobs")]
        for path, content in self.git.read(head, paths).items():  # one cat-file for them all
            if content is not None:
                return self._job(path, content)
        raise NotFoundError(f"no job {job_id} on the state branch")

    @_on_disk
    def lock_holder(self, credential: str, *, fetch: bool = True) -> str | None:
        """The job id holding the credential's lock; UNREADABLE_LOCK for one that won't parse."""
        path = f"locks/{credential}.json"
        content = self.git.read(self.head(fetch=fetch), [path])[path]
        if content is None:
            return None
        try:
            return self._lock_job_id(path, content)
        except CorruptRecord as exc:
            self._problem(str(exc))
            return UNREADABLE_LOCK

    # --- whole-branch reads: a few git processes per command, however many credentials ------

    def job_ids_of(self, credentials: Iterable[str], *, head: str | None) -> dict[str, list[str]]:
        """Job ids of each credential at `head`, newest first, from one read of their folders."""
        folders = {c: f"jobs/{c}" for c in credentials}
        trees = self.git.ls_many(head, list(folders.values()))
        return {c: sorted((n.removesuffix(".json") for n in trees[f] if n.endswith(".json")),
                          reverse=True) for c, f in folders.items()}

    def jobs_at(self, paths: list[str], *, head: str | None) -> dict[str, Job]:
        """The jobs at `paths` (one cat-file); a record that does not parse is skipped and
        named in `problems`, a missing one left out."""
        jobs: dict[str, Job] = {}
        with paused_gc():
            for path, blob in self.git.read(head, paths).items():
                if blob is None:
                    continue
                try:
                    jobs[path] = self._job(path, blob)
                except CorruptRecord as exc:
                    self._problem(str(exc))
        return jobs

    def lock_holders(self, *, head: str | None) -> dict[str, str]:
        """Credential -> the job holding its lock (UNREADABLE_LOCK for a lock that won't parse),
        for every lock on the branch: what is in flight, in two git reads."""
        names = self.git.ls_many(head, ["locks"])["locks"]
        holders: dict[str, str] = {}
        paths = [f"locks/{n}" for n in sorted(names) if n.endswith(".json")]
        for path, blob in self.git.read(head, paths).items():
            if blob is None:
                continue
            credential = path.removeprefix("locks/").removesuffix(".json")
            try:
                holders[credential] = self._lock_job_id(path, blob)
            except CorruptRecord as exc:
                self._problem(str(exc))
                holders[credential] = UNREADABLE_LOCK
        return holders

    def in_flight(self, *, head: str | None) -> list[Job]:
        """The jobs the lock files name (every job not yet terminal holds its credential's
        lock), by credential."""
        holders = self.lock_holders(head=head)
        paths = [f"jobs/{c}/{j}.json" for c, j in sorted(holders.items())
                 if j != UNREADABLE_LOCK and CREDENTIAL_RE.fullmatch(c)
                 and JOB_ID_RE.fullmatch(j)]
        return list(self.jobs_at(paths, head=head).values())

    def newest(self, credentials: Iterable[str], accept: Callable[[Job], bool], *,
               head: str | None, hint: Mapping[str, str] | None = None) -> dict[str, Job | None]:
        """Per credential, the newest job that `accept` takes (None: none does).

        Jobs are read newest first in rounds, one batched read per round for every credential
        still looking (1 job each, then 2, 4, ...): a credential whose newest job answers costs
        one read, however long its history. `hint`: top-level fields `accept` needs (e.g.
        status "done"); a record whose bytes show other values is passed over unparsed (the
        records' bytes are deterministic: sorted keys, two-space indent), the rest are parsed
        and asked.
        """
        ids = self.job_ids_of(credentials, head=head)
        found: dict[str, Job | None] = dict.fromkeys(ids)
        looking = {c: 0 for c, i in ids.items() if i}
        # A top-level field's exact line start: a record's keys are indented two spaces, and
        # a found needle is always followed by "," or a newline (a literal find, not a regex:
        # 5,000 records of 8 KB each).
        needles = [f"\n  {json.dumps(k)}: {json.dumps(v)}".encode()
                   for k, v in (hint or {}).items()]
        chunk = 1
        with paused_gc():  # thousands of records parsed: bulk.py
            while looking:
                batch = {c: [f"jobs/{c}/{j}.json" for j in ids[c][start:start + chunk]]
                         for c, start in looking.items()}
                blobs = self.git.read(head, [p for paths in batch.values() for p in paths])
                for credential, paths in batch.items():
                    hit = None
                    for path in paths:
                        blob = blobs[path]
                        if blob is None or (not all(n in blob for n in needles)
                                            and _RECORD.search(blob)):
                            continue  # a record, of another status: passed over unparsed
                        try:
                            job = self._job(path, blob)
                        except CorruptRecord as exc:
                            self._problem(str(exc))
                            continue
                        if accept(job):
                            hit = job
                            break
                    if hit is not None:
                        found[credential] = hit
                        del looking[credential]
                    elif looking[credential] + chunk >= len(ids[credential]):
                        del looking[credential]
                    else:
                        looking[credential] += chunk
                chunk *= 2
        return found

    def owing(self, *, head: str | None) -> list[Job]:
        """Jobs listing revocation debt not yet settled, by credential, newest job first.

        From the debt index; on a branch no write of this version has touched yet (no
        `debt/index.json`), from every job, as before the index.
        """
        if head is None:
            return []
        if self.git.read(head, [DEBT_INDEX])[DEBT_INDEX] is None:
            credentials = sorted(self.git.ls_many(head, ["jobs"])["jobs"])
            ids = self.job_ids_of(credentials, head=head)
            paths = [f"jobs/{c}/{j}.json" for c in credentials for j in ids[c]]
        else:
            index = self.git.ls_many(head, ["debt"])["debt"]
            credentials = sorted(n for n, (mode, _) in index.items() if mode == TREE_MODE)
            listed = self.git.ls_many(head, [f"debt/{c}" for c in credentials])
            paths = [f"jobs/{c}/{j}.json" for c in credentials
                     for j in sorted((n.removesuffix(".json") for n in listed[f"debt/{c}"]
                                      if n.endswith(".json")), reverse=True)]
        return [job for job in self.jobs_at(paths, head=head).values() if _owes(job)]

    # --- parsing what the branch holds ---------------------------------------------------

    def _where(self) -> str:
        return f"state branch {self.branch} of {self.url}"

    def _job(self, path: str, blob: bytes) -> Job:
        try:
            return Job.from_json(blob)
        except ValidationError as exc:
            raise CorruptRecord(path, self._where(), _why(exc)) from None

    def _lock_job_id(self, path: str, blob: bytes) -> str:
        return self._json_fields(path, blob, "job_id")["job_id"]

    def _json_fields(self, path: str, blob: bytes, *names: str) -> dict[str, str]:
        try:
            data = json.loads(blob)
        except ValueError:
            raise CorruptRecord(path, self._where(), "not JSON") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(n), str) for n in names):
            raise CorruptRecord(path, self._where(), "expected a JSON object with "
                                + " and ".join(f"a string {n}" for n in names))
        return {n: data[n] for n in names}

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    # --- writes --------------------------------------------------------------------------

    def create(self, job: Job) -> tuple[Job, bool]:
        """Create `job` and take its credential's lock; (existing job, False) for a known key.

        Raises RotationInFlight when another job holds the lock.
        """
        result: list[tuple[Job, bool]] = []
        lock_path = f"locks/{job.credential}.json"
        idem_path = _idem_path(job.credential, job.idempotency_key)

        def plan(read: Read, ls: Ls) -> Change | None:
            result.clear()
            paths = [lock_path, DEBT_INDEX] + ([idem_path] if idem_path else [])
            found = read(paths)
            idem = found[idem_path] if idem_path else None
            if idem_path and idem:
                ref = self._json_fields(idem_path, idem, "credential", "job_id")
                existing_path = f"jobs/{ref['credential']}/{ref['job_id']}.json"
                blob = read([existing_path])[existing_path]
                if blob is not None:
                    result.append((self._job(existing_path, blob), False))
                    return None
            lock = found[lock_path]
            if lock:
                raise RotationInFlight(job.credential, self._lock_job_id(lock_path, lock))
            files: dict[str, bytes | None] = {
                f"jobs/{job.credential}/{job.job_id}.json": job.to_json().encode(),
                lock_path: _lock_blob(job),
            }
            if idem_path:
                files[idem_path] = _dumps({"credential": job.credential, "job_id": job.job_id})
            files.update(self._debt_files(read, found[DEBT_INDEX], job))
            result.append((job, True))
            return Change(files, f"{job.credential}: create {job.flow_type} job {job.job_id}")

        self.transact(plan)
        return result[0]

    def update(self, credential: str, job_id: str, apply: Callable[[Job], Job | None]) -> Job:
        """Compare-and-swap one job: `apply` gets the freshest record and returns the new one.

        `apply` returning None (or an unchanged record) writes nothing. The credential's lock
        is released in the same commit that moves the job to a terminal state.
        """
        _check_credential(credential)
        _check_job_id(job_id)
        path = f"jobs/{credential}/{job_id}.json"
        lock_path = f"locks/{credential}.json"
        result: list[Job] = []

        def plan(read: Read, ls: Ls) -> Change | None:
            result.clear()
            found = read([path, lock_path, DEBT_INDEX])
            blob = found[path]
            if blob is None:
                raise NotFoundError(f"no job {job_id} for credential {credential}")
            current = self._job(path, blob)
            # A second parse is a third of the cost of a deep copy for a big job.
            new = apply(Job.from_json(blob))
            if new is None or new == current:
                result.append(current)
                return None
            new.updated_at = utcnow()
            files: dict[str, bytes | None] = {path: new.to_json().encode()}
            lock = found[lock_path]
            if is_terminal(new.flow_type, new.status) and lock is not None:
                try:
                    holder: str | None = self._lock_job_id(lock_path, lock)
                except CorruptRecord as exc:
                    # Whose lock it is cannot be told: leave it for a person, keep the record.
                    holder = None
                    self._problem(str(exc))
                if holder == job_id:
                    files[lock_path] = None
            files.update(self._debt_files(read, found[DEBT_INDEX], new))
            result.append(new)
            return Change(files, f"{credential}: {job_id} {current.status} -> {new.status}")

        self.transact(plan)
        return result[0]

    # --- the debt index ----------------------------------------------------------------

    def _debt_files(self, read: Read, index: bytes | None, job: Job) -> dict[str, bytes | None]:
        """The debt index's part of a write of `job`: its entry while it owes, none after.

        On a branch without the index (written before it existed), the index of every job is
        built in the same commit, once: a write is the only time Velvet may change the branch.
        """
        files: dict[str, bytes | None] = {
            _debt_path(job.credential, job.job_id): _debt_blob(job) if _owes(job) else None}
        if index is None:
            for credential, job_id in self._owing_everywhere(read):
                files.setdefault(_debt_path(credential, job_id), _dumps(
                    {"credential": credential, "job_id": job_id}))
            files[DEBT_INDEX] = _dumps({"format": 1, "lists": "debt/<CREDENTIAL>/<job_id>.json"
                                                            " for each job owing revocation debt"})
        return files

    def _owing_everywhere(self, read: Read) -> list[tuple[str, str]]:
        """(credential, job id) of every job owing debt, reading each record once per Store
        (a retried write reads only the records that changed)."""
        width = self.git.width
        credentials = [n for n, (mode, _) in parse_tree(read(["jobs"])["jobs"], width).items()
                       if mode == TREE_MODE]
        folders = read([f"jobs/{c}" for c in credentials])
        entries = [(c, name.removesuffix(".json"), oid) for c in credentials
                   for name, (_, oid) in parse_tree(folders[f"jobs/{c}"], width).items()
                   if name.endswith(".json")]
        unread = [oid for _, _, oid in entries if oid not in self._owes_by_blob]
        for oid, blob in self.git.objects(unread).items():
            try:
                self._owes_by_blob[oid] = blob is not None and _owes(Job.from_json(blob))
            except ValidationError:
                self._owes_by_blob[oid] = False  # named by the listings that read it
        return [(c, j) for c, j, oid in entries if self._owes_by_blob[oid]]


def _why(exc: ValidationError) -> str:
    """pydantic's complaint without the input it echoes: the fields and what is wrong."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if errors and errors[0]["type"] == "json_invalid":
        return "invalid JSON: " + errors[0]["msg"].removeprefix("Invalid JSON: ")
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}"
             for e in errors[:3]]
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(parts) + more



def _dumps(data: object) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _lock_blob(job: Job) -> bytes:
    return _dumps({"job_id": job.job_id, "credential": job.credential,
                   "flow_type": str(job.flow_type), "acquired_at": iso(job.created_at)})


def _owes(job: Job) -> bool:
    """Whether the job lists revocation debt not yet settled (what `velvet stuck` reports)."""
    return any(d.settled_at is None for d in job.revocation_debt)


def _debt_path(credential: str, job_id: str) -> str:
    return f"debt/{credential}/{job_id}.json"


def _debt_blob(job: Job) -> bytes:
    return _dumps({"credential": job.credential, "job_id": job.job_id})


def _idem_path(credential: str, key: str | None) -> str | None:
    if not key:
        return None
    digest = hashlib.sha256(f"{credential}\0{key}".encode()).hexdigest()
    return f"idempotency/{digest}.json"


def _check_job_id(job_id: str) -> None:
    if not JOB_ID_RE.fullmatch(job_id):
        raise NotFoundError(f"no job {job_id!r}: job ids are UUIDs")


def _check_credential(credential: str) -> None:
    if not CREDENTIAL_RE.fullmatch(credential):
        raise NotFoundError(f"no credential {credential!r}")
