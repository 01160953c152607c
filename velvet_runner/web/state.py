"""The status app's reads: the state branch and the manifest through caches, and what they say.

Nothing here writes. Every read goes to the local cache repository (`fetch=False`); one daemon
thread fetches the branch every `refresh_seconds`, so no request ever waits on the remote.
Parsed jobs are cached against the commit they were read at, so a page reads each job file once
per change of the branch, however often it is hit. What a credential's jobs *mean* (last done,
next due, live consumers) is `timeline`'s answer, over every job, as `velvet due` reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from starlette.responses import Response

from velvet_runner import timeline
from velvet_runner.errors import (
    ManifestError,
    NotFoundError,
    VelvetError,
    WebNotFound,
    WebUnavailable,
)
from velvet_runner.flags import load_flags
from velvet_runner.manifest import Credential, Manifest, load
from velvet_runner.records import Job
from velvet_runner.settings import Settings
from velvet_runner.store import CREDENTIAL_RE, JOB_ID_RE, Store

log = logging.getLogger("velvet.web")

T = TypeVar("T")
PAGE_CACHE_SIZE = 4096  # rendered JSON bodies kept per head (credential x limit, jobs)
FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{12,64}")


def credential_label(name: str) -> str:
    # Echo a name only when it has a credential's shape: never reflect arbitrary input.
    return f"no credential {name}" if CREDENTIAL_RE.fullmatch(name) else "no such credential"


def job_label(job_id: str) -> str:
    return f"no job {job_id}" if JOB_ID_RE.fullmatch(job_id) else "no such job (job ids are UUIDs)"


class StateView:
    """Cached reads of the state branch; a daemon thread fetches it every `refresh_seconds`.

    Reads never fetch. Each cached value remembers the commit it was read at and is used only
    while the local branch still points there; a read during which the branch moved is
    returned but not cached.
    """

    def __init__(self, store: Store, refresh_seconds: float) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.generation = 0  # bumped whenever a fetch finds a new head
        self.fetched_at: datetime | None = None
        self.last_error: str | None = None
        self._fetched_head: str | None = None
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: dict[tuple[str, str], tuple[str | None, Job]] = {}
        self._ids: dict[str, tuple[str | None, list[str]]] = {}
        self._locks: dict[str, tuple[str | None, str | None]] = {}
        self._creds: dict[str, tuple[str | None, list[str]]] = {}
        # Rendered JSON responses: (head, manifest key, response) per page; see page().
        self._pages: dict[tuple[str, ...], tuple[str | None, object, Response]] = {}

    # lifecycle

    def refresh(self) -> None:
        try:
            head = self.store.refresh()
        except (VelvetError, OSError) as exc:
            self.last_error = str(exc)
            log.warning("state branch fetch failed: %s", exc)
            return
        with self._lock:
            if head != self._fetched_head or self.fetched_at is None:
                self._fetched_head = head
                self.generation += 1
            self.fetched_at = datetime.now(UTC)
            self.last_error = None

    def trouble(self, max_age_seconds: float) -> str | None:
        """Why the copy of the branch cannot be trusted now (for /healthz), or None.

        Public: says what is wrong, never the remote's URL or git's message (the log has them).
        """
        if self.last_error is not None:
            return "cannot read the state branch: the last fetch failed (see the server log)"
        fetched = self.fetched_at
        if fetched is None:
            return "the state branch has not been read yet"
        age = (datetime.now(UTC) - fetched).total_seconds()
        if age > max_age_seconds:
            return (f"the copy of the state branch is {int(age)} s old (the bound is "
                    f"{int(max_age_seconds)} s)")
        return None

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self.refresh()
            self._thread = threading.Thread(target=self._run, name="velvet-web-refresh",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.refresh_seconds * 2))

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    @property
    def started(self) -> bool:
        return self._thread is not None

    # reads

    def head(self) -> str | None:
        return self.store.head(fetch=False)

    def page(self, key: tuple[str, ...], manifest_key: object) -> Response | None:
        """The response rendered for `key` at the current head and manifest, if any.

        A cached Response is sent as is to every request that hits it: nothing on the way
        out (uvicorn, Starlette, the read-only middleware) changes a response in place.
        """
        head = self.head()
        with self._lock:
            hit = self._pages.get(key)
        if hit is not None and hit[0] == head and hit[1] == manifest_key:
            return hit[2]
        return None

    def remember(self, key: tuple[str, ...], head: str | None, manifest_key: object,
                 response: Response) -> None:
        if not self._stable(head):
            return
        with self._lock:
            if len(self._pages) >= PAGE_CACHE_SIZE:
                self._pages.clear()
            self._pages[key] = (head, manifest_key, response)

    def _stable(self, before: str | None) -> bool:
        return self.head() == before

    def _cached(self, cache: dict[str, tuple[str | None, T]], key: str,
                read: Callable[[], T]) -> T:
        head = self.head()
        with self._lock:
            hit = cache.get(key)
            if hit is not None and hit[0] == head:
                return hit[1]
        value = read()
        if self._stable(head):
            with self._lock:
                cache[key] = (head, value)
        return value

    def credentials(self) -> list[str]:
        # a folder that is not a credential's name is not ours to show (or to pass to git)
        names: list[str] = self._cached(self._creds, "", lambda: [
            n for n in self.store.credentials(fetch=False) if CREDENTIAL_RE.fullmatch(n)])
        return list(names)

    def job_ids(self, credential: str) -> list[str]:
        ids: list[str] = self._cached(self._ids, credential,
                                      lambda: self.store.job_ids(credential, fetch=False))
        return list(ids)

    def lock_holder(self, credential: str) -> str | None:
        return self._cached(self._locks, credential,
                            lambda: self.store.lock_holder(credential, fetch=False))

    def jobs(self, credential: str, limit: int | None = None) -> list[Job]:
        """The newest `limit` jobs of a credential (every job when None), newest first."""
        head = self.head()
        ids = self.job_ids(credential)[:limit]
        with self._lock:
            cached = [self._jobs.get((credential, i)) for i in ids]
            if all(c is not None and c[0] == head for c in cached):
                return [c[1] for c in cached if c is not None]
        try:
            jobs = self.store.list_jobs(credential, limit, fetch=False)
        except ValueError:
            # one record does not parse: list the others, each read on its own
            found = (self._read_one(credential, i) for i in ids)
            return [j for j in found if j is not None]
        if self._stable(head):
            with self._lock:
                for job in jobs:
                    self._jobs[(credential, job.job_id)] = (head, job)
        return jobs

    def _read_one(self, credential: str, job_id: str) -> Job | None:
        try:
            return self.job(credential, job_id)
        except WebUnavailable:
            return None

    def job(self, credential: str, job_id: str) -> Job | None:
        head = self.head()
        with self._lock:
            hit = self._jobs.get((credential, job_id))
            if hit is not None and hit[0] == head:
                return hit[1]
        try:
            job = self.store.get(credential, job_id, fetch=False)
        except NotFoundError:
            return None
        except ValueError as exc:  # pydantic's ValidationError, or JSON that does not parse
            log.error("job record %s/%s does not parse: %s", credential, job_id,
                      str(exc).splitlines()[0])
            raise WebUnavailable(f"job record {job_id} does not parse; see the server log") \
                from None
        if self._stable(head):
            with self._lock:
                self._jobs[(credential, job_id)] = (head, job)
        return job


class ManifestView:
    """The manifest, reloaded when the file changes; an invalid one makes pages 503."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._manifest: Manifest | None = None
        self._error: str | None = None

    def get(self) -> Manifest:
        key = self.stat_key()
        with self._lock:
            if key is None or key != self._key:
                self._key = key
                try:
                    self._manifest, self._error = load(self.path), None
                except ManifestError as exc:
                    self._manifest = None
                    self._error = "the manifest does not load; run `velvet manifest check`"
                    log.error("manifest %s invalid: %s", self.path, "; ".join(exc.reasons))
            if self._manifest is None:
                raise WebUnavailable(self._error or "the manifest does not load")
            return self._manifest

    def stat_key(self) -> tuple[int, int] | None:
        """What get() keys its cache on: a page rendered under another key may be stale."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def flags(self) -> dict[str, bool]:
        try:
            return load_flags(self.path)
        except ManifestError as exc:
            log.error("flags beside %s invalid: %s", self.path, "; ".join(exc.reasons))
            raise WebUnavailable("flags.yml does not load; it must map names to true/false") \
                from None


@dataclass
class Summary:
    """One credential as the index shows it, from every one of its jobs."""

    name: str
    credential: Credential | None
    last_rotation: Job | None  # the newest job that is a rotation (a dry run is not one)
    last_done_at: datetime | None
    next_due: datetime | None
    unscheduled: str | None  # why the schedule never rotates it, if it does not
    current: Job | None
    current_id: str | None
    open_debt: int


class FingerprintKey:
    """What the app shows in place of a record's fingerprint: an HMAC of it, never the stored
    one. A stored fingerprint is an unsalted SHA-256 of the value cut to 48 bits, which a
    guesser can match for a short or patterned value; without this key (from
    VELVET_STATUS_FINGERPRINT_KEY, or drawn at start-up, and never served) what the app shows
    cannot be matched to any guess. Equal fingerprints still show equal, so a page can tell
    that the debt it lists is the token a ledger entry names.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _one(self, match: re.Match[str]) -> str:
        return "hmac:" + hmac.new(self._key, match.group().encode(), hashlib.sha256
                                  ).hexdigest()[:12]

    def __call__(self, text: str) -> str:
        """`text` with every fingerprint in it keyed."""
        return FINGERPRINT_RE.sub(self._one, text)


class StreamSlots:
    """At most `limit` event streams open at once: each holds the connection and a poller."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


@dataclass
class Context:
    settings: Settings
    state: StateView
    manifest: ManifestView
    heartbeat_seconds: float
    poll_seconds: float
    now: Callable[[], datetime]
    keyed: FingerprintKey
    streams: StreamSlots
    public: bool  # `velvet serve --public`: no token needed, and every banner says so

    def known(self, name: str) -> bool:
        """A credential is known if the manifest names it or the state branch has its jobs."""
        if not CREDENTIAL_RE.fullmatch(name):
            return False
        with contextlib.suppress(WebUnavailable):
            if self.manifest.get().credential(name) is not None:
                return True
        return name in self.state.credentials()

    def require_credential(self, name: str) -> None:
        if not self.known(name):
            raise WebNotFound(credential_label(name))

    def require_job(self, name: str, job_id: str) -> Job:
        self.require_credential(name)
        if not JOB_ID_RE.fullmatch(job_id):
            raise WebNotFound(job_label(job_id))
        job = self.state.job(name, job_id)
        if job is None:
            raise WebNotFound(f"{job_label(job_id)} for credential {name}")
        return job

    def summarise(self, name: str, cred: Credential | None) -> Summary:
        jobs = self.state.jobs(name)  # every job, as `velvet due` reads them
        done = timeline.last_done(jobs)
        holder = self.state.lock_holder(name)
        current = self.state.job(name, holder) if holder and JOB_ID_RE.fullmatch(holder) else None
        return Summary(
            name=name, credential=cred, last_rotation=timeline.last_rotation(jobs),
            last_done_at=done, next_due=timeline.next_due(cred, done) if cred else None,
            unscheduled=timeline.unscheduled(cred) if cred else None, current=current,
            current_id=holder,
            open_debt=sum(1 for j in jobs for d in j.revocation_debt if d.settled_at is None),
        )
