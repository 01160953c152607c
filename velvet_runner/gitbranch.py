"""The compare-and-swap branch writer: an optimisation, kept apart from what the branch holds.

It exists for speed: building each commit with git processes was a third of a write's cost, so
blobs, trees and commits are written in process as loose objects and the head is read from the
ref files (gitobjects.py); a write is a fetch (often skipped), one cat-file and one push. It
speaks paths and bytes and knows nothing of what the files mean (store.py does).

A write builds a commit on the head last fetched and pushes it without force: git refuses a
push that is not a fast-forward, which makes `git push` the compare-and-swap. On refusal we
fetch, call the same plan on the fresh files, and try again; the plan may refuse (raise). When
our last push is still the head we know, the next write skips the fetch: a push that others
overtook is refused and retried as above. Only a write is decided on unfetched data; a decision
not to write, or a refusal, is re-checked on a fetched head. Losers of a race back off for a
random time growing with the attempts, in units of an attempt's cost, so writers spread out.

A local cache repository holds fetched objects. Processes sharing a cache take a file lock around
each fetch-modify-push; others race through the push. A cache (and the default local state
repository) is built aside under a creation lock and renamed into place, so processes starting
together never see a half-made repository.

The cache remembers the newest head it has seen (`refs/velvet/seen/<branch>`). A fetch whose
head does not contain it (the branch was force-pushed or deleted) is refused with
StateHistoryLost, so what that history recorded is not silently forgotten. Deleting the cache
accepts the new history.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from velvet_runner.errors import BadArgument, StateHistoryLost, StateWriteLost, VelvetError
from velvet_runner.gitobjects import SHA_RE, RefFile, build_commit, write_object

MAX_ATTEMPTS = 60
BACKOFF_CAP_SECONDS = 2.0

Read = Callable[[list[str]], dict[str, bytes | None]]  # paths -> content at one head (None: absent)
Ls = Callable[[str], list[str]]  # folder -> the names in it at that head

GIT_ENV = {
    "GIT_AUTHOR_NAME": "velvet",
    "GIT_AUTHOR_EMAIL": "velvet@localhost",
    "GIT_COMMITTER_NAME": "velvet",
    "GIT_COMMITTER_EMAIL": "velvet@localhost",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
}
# What lock_holder answers for a lock file that does not parse: held, by a job nobody can name.


class GitError(VelvetError):
    """A git command failed for a reason other than a lost race."""


class _Rejected(Exception):
    """The push was not a fast-forward: someone else wrote first."""


@dataclass
class Change:
    """What one compare-and-swap write puts on the branch."""

    files: dict[str, bytes | None] = field(default_factory=dict)  # None deletes
    message: str = "velvet: update"


Plan = Callable[[Read, Ls], Change | None]  # what to write, given the files; None: nothing


def _is_local(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)




class GitBranch:
    """One branch of `url` (a git URL or a local path), read and written through a cache."""

    def __init__(self, url: str, branch: str = "velvet-state", cache_dir: Path | None = None,
                 *, sleep: Callable[[float], None] = time.sleep, create: bool = True,
                 at_stake: str = "What that history recorded") -> None:
        """`create`: make a missing local repository at `url` (the CLI allows it only for
        the default one, so that a typo in VELVET_STATE is refused, not silently created).
        `at_stake`: what StateHistoryLost says would be forgotten with the lost history."""
        self.url = url
        self._at_stake = at_stake
        self.branch = branch
        self._sleep = sleep
        self._create = create
        self.retries = 0  # pushes lost to a race since construction (benchmarks read it)
        if _is_local(url):
            self.url = str(Path(url).resolve())
        key = hashlib.sha256(f"{self.url}\0{branch}".encode()).hexdigest()[:16]
        self.cache = (cache_dir or Path(".velvet/cache")).resolve() / key
        self._ref = f"refs/remotes/origin/{branch}"
        self._refs = RefFile(self._ref)
        self._ready = False
        self._pushed: str | None = None  # the commit our last successful push made the head
        self._hash = hashlib.sha1  # the cache's object format (sha256 when its config says so)

    @property
    def _seen_file(self) -> Path:
        return self.cache / "refs" / "velvet" / "seen" / self.branch

    # --- git plumbing ----------------------------------------------------------------------

    def _git(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        full_env = {**os.environ, **GIT_ENV, **(env or {})}
        proc = subprocess.run(
            ["git", "--git-dir", str(self.cache), *args],
            input=input, capture_output=True, env=full_env, check=False,
        )
        if check and proc.returncode != 0:
            raise GitError(f"git {args[0]} failed for state {self.url}: "
                           f"{proc.stderr.decode(errors='replace').strip()[:500]}")
        return proc

    def _ensure(self) -> None:
        if self._ready:
            return
        if _is_local(self.url) and not Path(self.url).exists():
            if not self._create:
                raise BadArgument(
                    f"no state repository at {self.url} (VELVET_STATE); Velvet creates only "
                    f"its default one: fix the path, or create it with "
                    f"`git init --bare {self.url}`")
            create_repository(Path(self.url))
        if not (self.cache / "HEAD").exists():
            def setup(tmp: Path) -> None:
                for args in (("remote", "add", "origin", self.url), ("config", "gc.auto", "0")):
                    _run_git("--git-dir", str(tmp), *args)

            create_repository(self.cache, setup)
        config = (self.cache / "config").read_text(encoding="utf-8", errors="replace")
        if re.search(r"(?im)^\s*objectformat\s*=\s*sha256\s*$", config):
            self._hash = hashlib.sha256
        self._ready = True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure()
        with open(self.cache / "velvet.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _fetch(self) -> str | None:
        seen = self._seen()
        proc = self._git("fetch", "--quiet", "--no-tags", "origin",
                         f"+refs/heads/{self.branch}:{self._ref}", check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            if "couldn't find remote ref" in err or "could not find remote ref" in err.lower():
                if seen is not None:
                    raise self._lost(seen, None)
                self._git("update-ref", "-d", self._ref, check=False)
                return None
            raise GitError(f"cannot fetch state branch {self.branch} from {self.url}: "
                           f"{err.strip()[:300]}")
        head = self._head()
        if head is None:
            if seen is not None:
                raise self._lost(seen, None)
            return None
        if seen is None:
            self._set_seen(head)
        elif head != seen:
            if self._git("merge-base", "--is-ancestor", seen, head, check=False).returncode:
                raise self._lost(seen, head)
            self._set_seen(head)
        return head

    # --- the history this cache has seen ---------------------------------------------------

    def _seen(self) -> str | None:
        try:
            value = self._seen_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        return value if SHA_RE.fullmatch(value) else None

    def _set_seen(self, commit: str) -> None:
        if self._seen() == commit:
            return
        self._seen_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._seen_file.parent, prefix=".seen-")
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(commit + "\n")
        os.replace(tmp, self._seen_file)

    def _lost(self, seen: str, head: str | None) -> StateHistoryLost:
        """Refuse the fetched head, and keep reading the history we know meanwhile."""
        self._git("update-ref", self._ref, seen, check=False)
        what = ("is gone" if head is None else
                f"was replaced: its head {head[:12]} does not contain {seen[:12]}")
        return StateHistoryLost(
            f"state branch {self.branch} at {self.url} {what}, though this machine saw it at "
            f"commit {seen[:12]} (force-pushed or deleted). {self._at_stake} "
            f"would be forgotten, so Velvet refuses to go on. "
            f"Restore the branch (for example push {seen[:12]} back from another clone), or, "
            f"if the new history is intended, "
            f"delete the cache {self.cache} to accept it")

    def _head(self) -> str | None:
        """The remote-tracking ref, read from the cache's files (no git process per read)."""
        value = self._refs.read(self.cache)
        if value is None or SHA_RE.fullmatch(value):
            return value
        proc = self._git("rev-parse", "--verify", "--quiet", self._ref, check=False)
        return proc.stdout.decode().strip() or None

    def ls(self, head: str | None, folder: str) -> list[str]:
        if head is None:
            return []
        proc = self._git("ls-tree", "--name-only", f"{head}:{folder}", check=False)
        if proc.returncode != 0:
            return []
        return [line for line in proc.stdout.decode().splitlines() if line]

    def read(self, head: str | None, paths: list[str]) -> dict[str, bytes | None]:
        if head is None or not paths:
            return dict.fromkeys(paths)
        query = "".join(f"{head}:{p}\n" for p in paths).encode()
        out = self._git("cat-file", "--batch", input=query).stdout
        result: dict[str, bytes | None] = {}
        pos = 0
        for path in paths:
            nl = out.index(b"\n", pos)
            header = out[pos:nl].split()
            pos = nl + 1
            if header[-1] == b"missing":
                result[path] = None
                continue
            size = int(header[2])
            result[path] = out[pos:pos + size]
            pos += size + 1
        return result

    def _commit(self, head: str | None, change: Change) -> str:
        """Write the change as loose objects (gitobjects.py): five git processes per write
        (read-tree ... commit-tree) were a third of a write's cost."""
        return build_commit(head, change.files, change.message,
                            read=functools.partial(self.read, head),
                            write=self._write_object, width=self._hash().digest_size)

    def _write_object(self, kind: bytes, data: bytes) -> str:
        return write_object(self.cache / "objects", self._hash, kind, data)

    def _push(self, commit: str) -> None:
        proc = self._git("push", "--quiet", "--porcelain", "origin",
                         f"{commit}:refs/heads/{self.branch}", check=False)
        if proc.returncode == 0:
            # git push moves the remote-tracking ref itself (origin's fetch refspec maps it);
            # set it by hand only when it did not.
            if self._head() != commit:
                self._git("update-ref", self._ref, commit)
            self._set_seen(commit)
            self._pushed = commit
            return
        err = (proc.stderr + proc.stdout).decode(errors="replace")
        if any(s in err for s in ("non-fast-forward", "fetch first", "rejected", "failed to lock",
                                  "cannot lock ref", "stale info")):
            raise _Rejected()
        raise GitError(f"cannot push state branch {self.branch} to {self.url}: {err.strip()[:300]}")

    # --- the compare-and-swap loop -------------------------------------------------------

    def transact(self, plan: Plan) -> None:
        """Fetch, let `plan` read and decide, commit, push; on a lost race start over.

        `plan(read, ls)` returns the Change to make, or None when nothing needs writing; it is
        called again with fresh data after every lost race, so it must be a pure function of
        what it reads (raising to refuse is fine).
        """
        fetched_once = False
        for attempt in range(MAX_ATTEMPTS):
            started = time.monotonic()
            with self._locked():
                head = self._head()
                fetched = not (attempt == 0 and self._pushed is not None
                               and head == self._pushed)
                if fetched:
                    head = self._fetch()
                    fetched_once = True
                try:
                    change = plan(functools.partial(self.read, head),
                                  functools.partial(self.ls, head))
                except Exception:
                    if fetched:
                        raise
                    change, fetched = None, False  # refused on unfetched data: ask the remote
                if change is None or not change.files:
                    if fetched:
                        return
                    self._pushed = None  # nothing to write, or a refusal: confirm it fetched
                    continue
                commit = self._commit(head, change)
                try:
                    self._push(commit)
                    return
                except _Rejected:
                    self.retries += 1
                    self._pushed = None
            if not fetched_once:
                continue  # the optimistic attempt lost: fetch now, without waiting
            # Jittered exponential backoff outside the lock, in units of what an attempt costs
            # here, so that N writers spread over about N attempts' time instead of colliding.
            unit = max(0.01, time.monotonic() - started)
            ceiling = min(BACKOFF_CAP_SECONDS, unit * 2 ** min(attempt, 8))
            self._sleep(ceiling * random.random())  # noqa: S311 - jitter, not crypto
        raise StateWriteLost(f"state branch {self.branch} at {self.url} kept moving; "
                             f"gave up after {MAX_ATTEMPTS} attempts")

    # --- reads ---------------------------------------------------------------------------

    def refresh(self) -> str | None:
        """Fetch the branch; return its head commit (None while the branch does not exist)."""
        with self._locked():
            return self._fetch()

    def head(self, *, fetch: bool = True) -> str | None:
        """The branch's head commit; without `fetch`, as the cache last saw it."""
        if fetch:
            return self.refresh()
        self._ensure()
        return self._head()

    def committed_at(self, commit: str) -> int:
        """When `commit` was made (its committer time, Unix seconds): part of the commit, so
        the same for everyone who reads it."""
        self._ensure()
        return int(self._git("show", "-s", "--format=%ct", commit).stdout.decode().strip())


def _run_git(*args: str) -> None:
    proc = subprocess.run(["git", *args], capture_output=True, check=False,
                          env={**os.environ, **GIT_ENV})
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: "
                       f"{proc.stderr.decode(errors='replace').strip()[:300]}")


def create_repository(target: Path, setup: Callable[[Path], None] | None = None) -> None:
    """`git init --bare target`, safe against other processes doing the same at once.

    The repository is built beside the target and renamed into place under a lock, so a
    concurrent reader sees either no repository or a complete one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if (target / "HEAD").exists():
                return
            if target.exists():  # half-made (a crash, or a Velvet without this lock): set aside
                os.rename(target, target.with_name(
                    f".{target.name}.broken-{os.getpid()}-{time.time_ns()}"))
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
            try:
                _run_git("init", "--quiet", "--bare", str(tmp))
                if setup is not None:
                    setup(tmp)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
