"""One budget per vendor account across runs: each run leases a share of it on the state branch.

Each run paces itself to the vendor's limits (budget.py), but two stage-2 runs writing through
one GitHub App installation would each believe they own the whole budget. So while a fan-out
spends an account, its run holds a lease on the state branch,

    budgets/<vendor>-<sha256(base URL)[:12]>/<lease id>.json

saying which share of the account it paces to. The shares of the live leases never add up to
more than 1: every change is a compare-and-swap write made on the freshest leases.

    join      share = min(fair, free): fair is 1/N of the N live leases, free is what the
              others do not hold. A run that finds everything held starts at 0 and waits.
    poll      every second (a fetch, no write): a holder over its fair share shrinks to it;
              one under it grows into what is free
    renew     every 30 s (a write): the lease's renewed_at, so that others know it lives
    leave     when the fan-out ends: share 0, released_at

Handing capacity over never lets the account see more than its limits: every write records
what the run has spent in each of its windows (`used`), and a run that grows counts what the
others spent beyond their present share as spent by itself, from when it grows until its
windows forget it (Budget.set_share's `carried`), up to the capacity it takes: runs growing at
once split that excess as they split the capacity freed. A crashed run's share is reclaimed by the
next run that polls after its lease went unrenewed for 2 minutes (at once when it was a
process of the same host that has died, as for the stage lease): that run marks the lease
released, counting as spent at the moment of the reclaim what the crashed run may have spent
since it last said (its share of each window, bounded for a long window by the shorter ones:
a crash costs at most about a minute of GitHub's budget, not its hour). A released lease is
deleted once the longest window of its account has forgotten it.

Only a fan-out that needs at least half of one of the account's windows (or of its bucket)
leases: a smaller one cannot starve the others, and if several small ones at once overdraw the
account, its rate-limit answer is waited out (budget.py), never taken as a refusal.

Which accounts: those a fan-out's target writes draw from (Wiring.budget_for_kind); the
account is the vendor and its API's URL, since a run's token (a GitHub App installation token)
changes from run to run while the account's limits do not.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from velvet_runner.budget import Budget
from velvet_runner.gitbranch import Change, Ls, Read
from velvet_runner.records import Lease, iso, utcnow
from velvet_runner.store import Store

POLL_SECONDS = 1.0
RENEW_SECONDS = 30.0
LEASE_TTL = timedelta(minutes=2)  # unrenewed this long: a crashed run's, reclaimed
EPSILON = 1e-6

Stale = Callable[[Lease, datetime], bool]


def account_folder(vendor: str, base_url: str) -> str:
    """The lease folder of an account: no token, nothing secret."""
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:12]
    return f"budgets/{vendor}-{digest}"


def _stale_by_time(lease: Lease, now: datetime) -> bool:
    return lease.renewed_at + LEASE_TTL < now


@dataclass
class Account:
    """One account this run leases a share of, and the Budget that paces to it."""

    folder: str
    name: str  # "<vendor> <base URL>", for people reading the branch
    budget: Budget
    path: str = ""
    carried: frozenset[tuple[str, str]] = frozenset()  # (lease path, seq) already counted


@dataclass(frozen=True)
class Decision:
    """What one step decided for an account: applied once its write has landed."""

    share: float
    carried: dict[str, float]
    counted: frozenset[tuple[str, str]]


def _seq(lease: dict[str, Any]) -> int:
    """The lease's next write number: what a grower has already counted is told by it."""
    return int(lease.get("seq") or 0) + 1


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class ShareKeeper:
    """Holds this run's leases on `accounts` while the `with` block runs (a fan-out)."""

    def __init__(self, store: Store, accounts: list[Account], *, owner: str, job_id: str,
                 credential: str, stale: Stale = _stale_by_time,
                 now: Callable[[], datetime] = utcnow,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.accounts = accounts
        self.owner, self.job_id, self.credential = owner, job_id, credential
        self._stale = stale
        self._now = now
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = 0.0
        self.errors: list[str] = []  # what the keeper could not do (it never stops a fan-out)

    # --- the with block ------------------------------------------------------------------

    @contextmanager
    def held(self) -> Iterator[ShareKeeper]:
        self.join()
        self._thread = threading.Thread(target=self._loop, name="velvet-budget-shares",
                                        daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.leave()

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                renew = time.monotonic() - self._renewed >= RENEW_SECONDS
                self.step(renew=renew)
            except Exception as exc:  # noqa: BLE001 - a missed poll: the next one retries
                self.errors.append(f"{type(exc).__name__}: {exc}")

    # --- the protocol --------------------------------------------------------------------

    def join(self) -> None:
        for account in self.accounts:
            account.path = f"{account.folder}/{uuid.uuid4().hex[:16]}.json"
        self.step(renew=True, joining=True)

    def leave(self) -> None:
        def plan(read: Read, ls: Ls) -> Change | None:
            now = self._now()
            files: dict[str, bytes | None] = {}
            for account in self.accounts:
                mine = self._leases(read, ls, account).get(account.path)
                if mine is None:
                    continue
                mine.update(share=0.0, released_at=iso(now), used=account.budget.usage(),
                            used_at=iso(now), renewed_at=iso(now), seq=_seq(mine))
                files[account.path] = _dumps(mine)
            return Change(files, f"budget shares: {self.credential} {self.job_id} leaves")

        self.store.transact(plan)
        for account in self.accounts:
            account.budget.set_share(0.0)

    def step(self, *, renew: bool = False, joining: bool = False) -> None:
        """Read the leases (one fetch); write only when this run's share must change, a dead
        lease is reclaimed, an old one swept, or the lease is due for renewal."""
        decided: dict[str, Decision] = {}

        def plan(read: Read, ls: Ls) -> Change | None:
            decided.clear()
            now = self._now()
            files: dict[str, bytes | None] = {}
            for account in self.accounts:
                files.update(self._decide(read, ls, account, now, renew or joining, decided))
            if not files:
                return None
            return Change(files, f"budget shares: {self.credential} {self.job_id}"
                                 + (" joins" if joining else ""))

        self.store.transact(plan)
        if renew:
            self._renewed = time.monotonic()
        for account in self.accounts:
            if account.folder in decided:
                d = decided[account.folder]
                # Carried units count from now: later than the givers measured them (record
                # times are whole seconds), so they are forgotten no sooner than theirs.
                account.budget.set_share(d.share, d.carried)
                account.carried = d.counted

    def _leases(self, read: Read, ls: Ls, account: Account) -> dict[str, dict[str, Any]]:
        paths = [f"{account.folder}/{n}" for n in ls(account.folder) if n.endswith(".json")]
        leases = {}
        for path, blob in read(paths).items():
            if blob is None:
                continue
            try:
                data = json.loads(blob)
            except ValueError:
                continue  # not ours to judge: a lease nobody can read holds nothing
            if isinstance(data, dict):
                leases[path] = data
        return leases

    def _decide(self, read: Read, ls: Ls, account: Account, now: datetime, renew: bool,
                decided: dict[str, Decision]) -> dict[str, bytes | None]:
        budget = account.budget
        leases = self._leases(read, ls, account)
        files: dict[str, bytes | None] = {}
        longest = max(budget.spans().values(), default=0.0)
        limits = {w.name: w.limit for w in budget.policy.windows}
        live: dict[str, dict[str, Any]] = {}
        for path, lease in leases.items():
            released = _time(lease.get("released_at"))
            if released is not None:
                if released + timedelta(seconds=longest) < now:
                    files[path] = None  # every window has forgotten it
                continue
            if path != account.path and self._dead(lease, now):
                # A crashed run: what it may have spent since it last said, counted as spent
                # now, then released.
                lease.update(released_at=iso(now), reclaimed_by=self.owner, used_at=iso(now),
                             used=_may_have_spent(budget, lease, now), share=0.0,
                             seq=_seq(lease))
                leases[path] = lease
                files[path] = _dumps(lease)
                continue
            live[path] = lease
        mine = live.get(account.path)
        if mine is None:
            mine = {"account": account.name, "owner": self.owner, "job_id": self.job_id,
                    "credential": self.credential, "share": 0.0, "joined_at": iso(now),
                    "renewed_at": iso(now), "released_at": None, "used": {},
                    "used_at": iso(now)}
            live[account.path] = mine
        held = float(mine.get("share", 0.0))
        others = {p: lease for p, lease in live.items() if p != account.path}
        fair = 1.0 / len(live)
        free = max(0.0, 1.0 - sum(float(lease.get("share", 0.0)) for lease in others.values()))
        share = held
        if held > fair + EPSILON:
            share = fair
        elif held < fair - EPSILON and free > held + EPSILON:
            share = min(fair, free)
        if share < held - EPSILON:
            # Shrink here before the smaller share is published: nothing more is sent beyond
            # it, and `used` below then counts all this run sent (so a grower counts it too).
            # Conservative if this write loses a race and the plan decides again.
            budget.set_share(share)
        carried: dict[str, float] = {}
        counted = set(account.carried)
        if share > held + EPSILON:
            # Growing into capacity others held: count what they spent beyond their share.
            for path, lease in leases.items():
                if path == account.path:
                    continue
                stamp = (path, str(lease.get("seq")))
                if stamp in counted:
                    continue
                counted.add(stamp)
                their = float(lease.get("share", 0.0))
                for name, limit in limits.items():
                    excess = float((lease.get("used") or {}).get(name, 0.0)) - their * limit
                    if excess > 0:
                        carried[name] = carried.get(name, 0.0) + excess
            # Each grower carries at most the capacity it takes: growers at once split the
            # excess as they split what was freed (the rest of it stays unclaimed), instead of
            # each counting all of it. What a grower carries is in its own `used` from then on,
            # so the excess follows the capacity when it changes hands again.
            carried = {name: min(cost, (share - held) * limits[name])
                       for name, cost in carried.items()}
        changed = abs(share - held) > EPSILON or account.path not in leases
        if changed or renew:
            mine.update(share=share, renewed_at=iso(now), used=budget.usage(),
                        used_at=iso(now), seq=_seq(mine))
            files[account.path] = _dumps(mine)
        decided[account.folder] = Decision(share, carried, frozenset(counted))
        return files

    def _dead(self, lease: dict[str, Any], now: datetime) -> bool:
        renewed = _time(lease.get("renewed_at"))
        if renewed is None:
            return True
        record = Lease(owner=str(lease.get("owner", "")), action="budget share",
                       acquired_at=_time(lease.get("joined_at")) or renewed,
                       renewed_at=renewed)
        return self._stale(record, now)


def _may_have_spent(budget: Budget, lease: dict[str, Any], now: datetime) -> dict[str, float]:
    """What a crashed run may have spent in each window: what it last reported, plus what its
    share allowed since. A window is bounded by itself, and by any shorter window that counts
    the same requests (GitHub's 80 a minute bound what 30 s can add to its 500 an hour)."""
    share = float(lease.get("share", 0.0))
    said = _time(lease.get("used_at")) or _time(lease.get("renewed_at")) or now
    elapsed = max(0.0, (now - said).total_seconds())
    used = lease.get("used") or {}
    spans = budget.spans()
    out = {}
    for window in budget.policy.windows:
        bound = window.limit
        for shorter in budget.policy.windows:
            if shorter.cost is window.cost and spans[shorter.name] < spans[window.name]:
                bursts = math.ceil(elapsed / max(spans[shorter.name], 1e-9)) + 1
                bound = min(bound, shorter.limit * bursts)
        reported = float(used.get(window.name, 0.0))
        out[window.name] = min(max(reported, share * window.limit), reported + share * bound)
    return out


def _dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
