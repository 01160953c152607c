"""The state branch: job records in git, every write a compare-and-swap push.

Layout of the branch (an orphan branch; see state/README.md):

    jobs/<CREDENTIAL>/<job_id>.json     one record per job; ids sort by creation time
    locks/<CREDENTIAL>.json             the lease of the job in flight for that credential
    idempotency/<sha256(key)>.json      idempotency key -> job id

The git side (cache, fetch, compare-and-swap push, retries, the lost-history check) is
`gitbranch.GitBranch`; this module decides what the files are. Each write is a plan that reads
the freshest files and returns the Change to make, or refuses, for example when another job took
the lock; the branch writer calls it again after every lost race.

A record that does not parse is named (CorruptRecord, exit 2). Listing reads skip it, so every
other job stays readable, and remember it in `problems` for the caller to report.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from velvet_runner.errors import (
    CorruptRecord,
    NotFoundError,
    RotationInFlight,
    StateHistoryLost,
    StateWriteLost,
)
from velvet_runner.gitbranch import Change, GitBranch, GitError, Ls, Plan, Read, create_repository
from velvet_runner.machine import is_terminal
from velvet_runner.records import Job, iso, utcnow

# The branch writer's and the errors' names that callers have always imported from here.
__all__ = ["CREDENTIAL_RE", "JOB_ID_RE", "UNREADABLE_LOCK", "Change", "CorruptRecord", "GitError",
           "StateHistoryLost", "StateWriteLost", "Store", "create_repository"]

JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CREDENTIAL_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
# What lock_holder answers for a lock file that does not parse: held, by a job nobody can name.
UNREADABLE_LOCK = "?"


class Store:
    """Read and write job records on the state branch of `url` (a git URL or a local path)."""

    def __init__(self, url: str, branch: str = "velvet-state", cache_dir: Path | None = None,
                 *, sleep: Callable[[float], None] = time.sleep, create: bool = True) -> None:
        """`create`: make a missing local repository at `url` (the CLI allows it only for
        the default one, so that a typo in VELVET_STATE is refused, not silently created)."""
        self.git = GitBranch(url, branch, cache_dir, sleep=sleep, create=create,
                             at_stake="The jobs, locks and revocation debt that history "
                                      "recorded")
        self.url = self.git.url
        self.branch = branch
        self.problems: list[str] = []  # records skipped by listing reads, each named

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

    def transact(self, plan: Plan) -> None:
        """Run one compare-and-swap write of `plan` (see GitBranch.transact)."""
        self.git.transact(plan)

    # --- reads ---------------------------------------------------------------------------

    def refresh(self) -> str | None:
        """Fetch the branch; return its head commit (None while the branch does not exist)."""
        return self.git.refresh()

    def head(self, *, fetch: bool = True) -> str | None:
        return self.git.head(fetch=fetch)

    def committed_at(self, commit: str) -> datetime:
        """The committer time of a commit of the branch (the `as of` of a report about it)."""
        return datetime.fromtimestamp(self.git.committed_at(commit), tz=UTC)

    def credentials(self, *, fetch: bool = True) -> list[str]:
        return self.git.ls(self.head(fetch=fetch), "jobs")

    def job_ids(self, credential: str, *, fetch: bool = True) -> list[str]:
        """Job ids of a credential, newest first (ids are time-ordered)."""
        _check_credential(credential)
        names = self.git.ls(self.head(fetch=fetch), f"jobs/{credential}")
        return sorted((n.removesuffix(".json") for n in names if n.endswith(".json")),
                      reverse=True)

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

    def get(self, credential: str, job_id: str, *, fetch: bool = True) -> Job:
        _check_credential(credential)
        _check_job_id(job_id)
        blob = self.git.read(self.head(fetch=fetch), [f"jobs/{credential}/{job_id}.json"])
        path, content = next(iter(blob.items()))
        if content is None:
            raise NotFoundError(f"no job {job_id} for credential {credential}")
        return self._job(path, content)

    def find(self, job_id: str, *, fetch: bool = True) -> Job:
        """A job by id alone (the CLI's `velvet stage JOB_ID`)."""
        _check_job_id(job_id)
        head = self.head(fetch=fetch)
        paths = [f"jobs/{credential}/{job_id}.json" for credential in self.git.ls(head, "jobs")]
        for path, content in self.git.read(head, paths).items():  # one cat-file for them all
            if content is not None:
                return self._job(path, content)
        raise NotFoundError(f"no job {job_id} on the state branch")

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
            paths = [lock_path] + ([idem_path] if idem_path else [])
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
            found = read([path, lock_path])
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
            result.append(new)
            return Change(files, f"{credential}: {job_id} {current.status} -> {new.status}")

        self.transact(plan)
        return result[0]


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
