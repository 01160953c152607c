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
not to write, or a refusal, is re-checked on a fetched head.

A write does not give up while others make progress: it is bounded by a deadline
(`patience`, 10 minutes), not an attempt count. Losers of a race wait a random part of what an
attempt costs, a part that shrinks with every race they lose, so the writer that has waited
longest tries soonest (a lottery weighted by age: exponential backoff would starve it behind
fresh writers); the winner of a contended race lets its next write wait about as many attempts
as it lost (round-robin, roughly), since the head it just made is one only it knows without a
fetch. A push the remote refuses
for another reason (a hook, a full disk, a corrupt pack, no permission) is StateWriteRefused
quoting git's reason, and so is a "lost race" while the branch does not move: nobody else is
writing, so retrying cannot help.

Child git processes get only the environment git needs (PATH, HOME, locale, proxy, ssh agent,
GIT_* and the state token a credential helper reads), never Velvet's vendor credentials.

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
import signal
import subprocess
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from velvet_runner.errors import (
    BadArgument,
    GitError,
    LocalFileError,
    StateHistoryLost,
    StateWriteLost,
    StateWriteRefused,
)
from velvet_runner.gitobjects import (
    SHA_RE,
    TREE_MODE,
    Entries,
    RefFile,
    build_commit,
    parse_tree,
    write_object,
)

# Parsed trees kept by object id (GitBranch._trees): a credential's folder each, and the few
# big ones above them, for a branch of 5,000 credentials.
TREE_CACHE = 20_000
# Up to this many paths, git's own `head:path` lookup in one process beats walking the trees
# (a process per level): it rescans the trees on the way for each path, about half a
# millisecond a path through a 5,000-entry folder, against a few milliseconds a process.
DIRECT_READS = 16
WRITE_PATIENCE_SECONDS = 600.0  # how long one write keeps trying while others' writes land
STILL_REFUSALS = 3  # "lost races" in a row with the branch not moving: a refusal, not a race
YIELD_CAP_SECONDS = 10.0  # the longest a winner lets its next write wait for the others
# What a child git process may see of Velvet's environment: what git, its credential helper and
# its transports read. Everything else (vendor tokens, Velvet's bootstrap secrets) stays out.
GIT_ENV_KEPT = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
                          "TERM", "XDG_CONFIG_HOME", "SSH_AUTH_SOCK", "SSH_AGENT_PID",
                          "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy",
                          "https_proxy", "no_proxy", "all_proxy", "CURL_CA_BUNDLE",
                          "SSL_CERT_FILE", "SSL_CERT_DIR", "VELVET_STATE_TOKEN"})
GIT_ENV_PREFIXES = ("GIT_", "LC_")

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
TOKEN_VAR = "VELVET_STATE_TOKEN"
# A credential helper that answers git's HTTPS challenge with $VELVET_STATE_TOKEN: the token
# reaches git through its environment, never a command line or a URL (the Actions workflows
# configure the same helper in their env:).
_HELPER = ("!f() { test \"$1\" = get && printf 'username=x-access-token\\npassword=%s\\n' "
           f"\"${TOKEN_VAR}\"; }}; f")


def token_env(token: str) -> dict[str, str]:
    """The environment that makes git authenticate to an HTTPS remote with `token`."""
    return {"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "", "GIT_CONFIG_KEY_1": "credential.helper",
            "GIT_CONFIG_VALUE_1": _HELPER, TOKEN_VAR: token}


class _Rejected(Exception):
    """The push was not a fast-forward: someone else wrote first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# git's words for a push that lost the compare-and-swap (another writer moved the ref first):
# `[rejected] (non-fast-forward|fetch first|stale info)`, or, when two pushes meet at the
# remote's ref lock, `[remote rejected] (failed to lock|cannot lock ref ... but expected ...)`.
_RACE = re.compile(r"non-fast-forward|fetch first|stale info|failed to lock|cannot lock ref"
                   r"|but expected|incorrect old value")


def git_env() -> dict[str, str]:
    """The environment of a child git process: what git needs of ours, and Velvet's identity."""
    kept = {k: v for k, v in os.environ.items()
            if k in GIT_ENV_KEPT or k.startswith(GIT_ENV_PREFIXES)}
    return {**kept, **GIT_ENV}


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
                 at_stake: str = "What that history recorded",
                 env: dict[str, str] | None = None,
                 patience: float = WRITE_PATIENCE_SECONDS) -> None:
        """`create`: make a missing local repository at `url` (the CLI allows it only for
        the default one, so that a typo in VELVET_STATE is refused, not silently created).
        `at_stake`: what StateHistoryLost says would be forgotten with the lost history.
        `env`: more environment for every git process (token_env: how it authenticates)."""
        self.url = url
        self._env = dict(env or {})
        self._at_stake = at_stake
        self.branch = branch
        self._sleep = sleep
        self._create = create
        self.retries = 0  # pushes lost to a race since construction (benchmarks read it)
        self.patience = patience  # seconds one write keeps trying while the branch moves
        self._yield_until = 0.0  # after winning a contended race: when our next write may start
        if _is_local(url):
            self.url = str(Path(url).resolve())
        key = hashlib.sha256(f"{self.url}\0{branch}".encode()).hexdigest()[:16]
        self.cache = (cache_dir or Path(".velvet/cache")).resolve() / key
        self._ref = f"refs/remotes/origin/{branch}"
        self._refs = RefFile(self._ref)
        self._ready = False
        self._pushed: str | None = None  # the commit our last successful push made the head
        self._hash = hashlib.sha1  # the cache's object format (sha256 when its config says so)
        self._tree_cache: OrderedDict[str, Entries | None] = OrderedDict()

    @property
    def _seen_file(self) -> Path:
        return self.cache / "refs" / "velvet" / "seen" / self.branch

    # --- git plumbing ----------------------------------------------------------------------

    def _git(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        full_env = {**git_env(), **self._env, **(env or {})}
        proc = subprocess.run(
            ["git", "--git-dir", str(self.cache), *args],
            input=input, capture_output=True, env=full_env, check=False,
        )
        if check and proc.returncode != 0:
            _raise_if_size_limited(proc, f"git {args[0]}", self.cache)
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
            _raise_if_size_limited(proc, "git fetch", self.cache)
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
        """The content of each of `paths` at commit `head` (None: missing). A few paths are
        one cat-file of `head:path`; many are walked to (`_locate`), then one cat-file."""
        if head is None or not paths:
            return dict.fromkeys(paths)
        if len(paths) <= DIRECT_READS:
            return dict(zip(paths, self._cat([f"{head}:{p}" for p in paths]), strict=True))
        oids = {p: e[1] if e is not None else None for p, e in self._locate(head, paths).items()}
        found = self.objects(sorted({oid for oid in oids.values() if oid is not None}))
        return {p: found[oid] if oid is not None else None for p, oid in oids.items()}

    def objects(self, oids: list[str]) -> dict[str, bytes | None]:
        """Objects by id (from a tree entry), in one cat-file."""
        return dict(zip(oids, self._cat(oids), strict=True))

    def ls_many(self, head: str | None, folders: list[str]) -> dict[str, Entries]:
        """The entries (name -> (mode, object id)) of every folder ({}: missing), read with
        one cat-file per level: a listing of thousands of folders costs a few git processes,
        not one each."""
        if head is None:
            return {f: {} for f in folders}
        oids = {f: e[1] if e is not None and e[0] == TREE_MODE else None
                for f, e in self._locate(head, folders).items()}
        trees = self._trees([oid for oid in oids.values() if oid is not None])
        return {f: (trees.get(oid) or {}) if oid is not None else {} for f, oid in oids.items()}

    def _locate(self, head: str, paths: list[str]) -> dict[str, tuple[bytes, str] | None]:
        """The tree entry (mode, object id) of each of `paths` at commit `head` (None:
        missing; "" is the root tree).

        The trees are walked here, a level at a time: git's own `head:path` lookup re-reads
        and scans every tree on the way for every path, so 5,000 job files under one `jobs`
        folder of 5,000 entries took 2.8 s, against 0.1 s by object id.
        """
        [commit] = self._cat([head])
        if commit is None or not commit.startswith(b"tree "):
            return dict.fromkeys(paths, None)
        root = commit[5:commit.index(b"\n")].decode()
        folders: dict[str, Entries | None] = {"": self._trees([root]).get(root)}
        wanted = {p.strip("/").rpartition("/")[0] for p in paths}
        needed = {"/".join(f.split("/")[:i]) for f in wanted if f
                  for i in range(1, f.count("/") + 2)}
        for depth in range(max((f.count("/") for f in needed), default=-1) + 1):
            oids: dict[str, str | None] = {}
            for folder in (f for f in needed if f.count("/") == depth):
                parent, _, name = folder.rpartition("/")
                entry = (folders.get(parent) or {}).get(name)
                oids[folder] = entry[1] if entry is not None and entry[0] == TREE_MODE else None
            trees = self._trees([o for o in oids.values() if o is not None])
            folders.update({f: trees.get(o) if o is not None else None for f, o in oids.items()})
        located: dict[str, tuple[bytes, str] | None] = {}
        for path in paths:
            folder, _, name = path.strip("/").rpartition("/")
            located[path] = ((folders.get(folder) or {}).get(name) if name
                             else (TREE_MODE, root))
        return located

    def _trees(self, oids: list[str]) -> dict[str, Entries | None]:
        """Parsed trees by object id (None: not there). An object never changes, so each is
        parsed once per process; the most recently used TREE_CACHE of them are kept."""
        cache = self._tree_cache
        missing = sorted({o for o in oids if o not in cache})
        width = self.width
        for oid, raw in self.objects(missing).items():
            cache[oid] = parse_tree(raw, width) if raw is not None else None
        found = {}
        for oid in oids:
            cache.move_to_end(oid)
            found[oid] = cache[oid]
        while len(cache) > TREE_CACHE:
            cache.popitem(last=False)
        return found

    @property
    def width(self) -> int:
        """Bytes in an object id of the cache's format (20, or 32 for sha256)."""
        self._ensure()
        return 32 if self._hash is hashlib.sha256 else 20

    def _cat(self, names: list[str]) -> list[bytes | None]:
        """`git cat-file --batch` of `names`: each object's content (None: missing)."""
        if not names:
            return []
        out = self._git("cat-file", "--batch", input="".join(f"{n}\n" for n in names).encode()
                        ).stdout
        result: list[bytes | None] = []
        pos = 0
        for _ in names:
            nl = out.index(b"\n", pos)
            header = out[pos:nl].split()
            pos = nl + 1
            if header[-1] == b"missing":
                result.append(None)
                continue
            size = int(header[2])
            result.append(out[pos:pos + size])
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
        if _RACE.search(err):
            raise _Rejected(_reason(err))
        raise self._refused(_reason(err))

    def _refused(self, reason: str) -> StateWriteRefused:
        return StateWriteRefused(
            f"the state repository {self.url} refused the push to branch {self.branch}: "
            f"{reason}. Nothing was written; fix the remote (its hooks, permissions, disk) "
            f"and re-run the action to resume")

    # --- the compare-and-swap loop -------------------------------------------------------

    def transact(self, plan: Plan) -> None:
        """Fetch, let `plan` read and decide, commit, push; on a lost race start over.

        `plan(read, ls)` returns the Change to make, or None when nothing needs writing; it is
        called again with fresh data after every lost race, so it must be a pure function of
        what it reads (raising to refuse is fine). Gives up (StateWriteLost) only when the
        branch kept moving for `patience` seconds without this write landing.
        """
        deadline = time.monotonic() + self.patience
        fetched_once = False
        lost = still = 0  # races lost by this write; lost in a row on a branch that stood still
        rejected: tuple[str | None, str] | None = None  # (head we built on, git's reason)
        attempt = 0
        if self._yield_until > time.monotonic():
            # Our last write won a contended race: let the writers that lost it go first.
            self._sleep(self._yield_until - time.monotonic())
        while True:
            started = time.monotonic()
            with self._locked():
                head = self._head()
                fetched = not (attempt == 0 and self._pushed is not None
                               and head == self._pushed)
                if fetched:
                    head = self._fetch()
                    fetched_once = True
                    if rejected is not None:
                        # A race needs a rival: a refusal on a branch that did not move, a few
                        # times over, is the remote refusing us, not a race.
                        still = still + 1 if head == rejected[0] else 0
                        if still >= STILL_REFUSALS:
                            raise self._refused(rejected[1])
                attempt += 1
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
                except _Rejected as race:
                    self.retries += 1
                    self._pushed = None
                    lost += 1
                    rejected = (head, race.reason)
                else:
                    if lost:
                        # Won a contended race after losing `lost`: our next write waits about
                        # as many attempts, so the others (as many of them, roughly) get their
                        # turn, and the fresh head we alone know is not a head start each time.
                        unit = max(0.01, time.monotonic() - started)
                        turn = min(YIELD_CAP_SECONDS, unit * lost * (0.5 + random.random()))  # noqa: S311
                        self._yield_until = time.monotonic() + turn
                    return
            if not fetched_once:
                continue  # the optimistic attempt lost: fetch now, without waiting
            if time.monotonic() >= deadline:
                raise StateWriteLost(
                    f"state branch {self.branch} at {self.url} kept moving: this write lost "
                    f"{lost} races to other writers in {self.patience:.0f} s and was not "
                    f"made; re-run the action to resume")
            # A lottery weighted by age: a random part of one attempt's cost, shrinking with
            # each race lost, so the writer that has waited longest tries soonest.
            unit = max(0.01, time.monotonic() - started)
            self._sleep(unit * random.random() * 2 / (1 + lost))  # noqa: S311 - jitter

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


def _reason(output: str) -> str:
    """git's reason for a refused push: the porcelain `!` line's reason and the remote's own
    lines (a hook's message), without the progress chatter."""
    lines = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("!"):
            lines.append(line.split("\t")[-1])
        elif (line.startswith(("remote:", "error:", "fatal:")) and line != "remote:"
              and not line.startswith("error: failed to push some refs")):
            lines.append(line)
    return "; ".join(lines)[:500] or output.strip()[:500] or "no reason given"


def _run_git(*args: str) -> None:
    proc = subprocess.run(["git", *args], capture_output=True, check=False, env=git_env())
    if proc.returncode != 0:
        _raise_if_size_limited(proc, f"git {args[0]}", args[-1])
        raise GitError(f"git {' '.join(args)} failed: "
                       f"{proc.stderr.decode(errors='replace').strip()[:300]}")


def _raise_if_size_limited(proc: subprocess.CompletedProcess[bytes], what: str,
                           where: object) -> None:
    """A git killed by SIGXFSZ (a file past `ulimit -f`) says nothing: say it, and where."""
    if proc.returncode == -signal.SIGXFSZ:
        raise LocalFileError(f"{what} could not write to {where}: a file grew past this "
                             "process's file-size limit (ulimit -f); raise the limit (or free "
                             "disk space) and run the command again")


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
