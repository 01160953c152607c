"""Bounded concurrent work over consumers: one failing row never blocks the others.

Concurrency is bounded per target kind (its declared BOUND: `Wiring.bound`); rows are saved at
most once a second so the status app sees progress without a commit per row, and the operator
sees a progress line at most once a second. A fan-out that spends vendor accounts holds a lease
on a share of each (shares.py) while it runs, so concurrent runs on one account stay within its
limits together.
"""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import Interrupted
from velvet_runner.manifest import Consumer
from velvet_runner.records import RowStatus

if TYPE_CHECKING:
    from .context import Run

FLUSH_SECONDS = 1.0
_NOT_STARTED = object()  # a consumer left alone because the operator stopped the stage


def fan_out(run: Run, consumers: list[Consumer], work: Callable[[Consumer], Any],
            done: Callable[[Consumer, Any], None],
            fallback: Callable[[str], Any] | None = None, *, what: str = "consumers",
            settle: float | None = None, spends: bool = False) -> None:
    """Run `work` for every consumer concurrently and hand each result to `done`.

    An exception from `work` (an adapter bug) becomes `fallback(reason)` for that row alone.
    On Ctrl-C, consumers not yet started are left as they are (a resume runs them), the rows
    are saved, and Interrupted is raised. `settle` (seconds) adds the time left in a settle
    window to the progress line. `spends`: the work writes to vendors, so the rate budgets
    (budget.py) are asked up front how long it will take, and the waits are recorded after.
    """
    if not consumers:
        return
    wiring, progress = run.wiring, run.progress
    kinds: Counter[str] = Counter(c.kind for c in consumers)
    waited0 = wiring.budgets.totals().waited
    if spends:
        # The kinds a rate budget stretches longest start first: their chain of windows starts
        # with their first answer, so every second they wait behind another kind's burst is
        # added to the whole stage.
        stretch = {kind: wiring.budget_estimate({kind: n}) for kind, n in kinds.items()}
        consumers = sorted(consumers, key=lambda c: -stretch[c.kind][0])
        expected, why = max(stretch.values(), key=lambda estimate: estimate[0])
        if expected > 60:
            progress.phase(f"velvet: {what} will take about {expected:.0f} s ({why})")
            run.journal.note("budget_wait", f"expected about {expected:.0f} s: {why}")
    if spends:
        run.journal.hold()  # the lease is on the branch before any vendor is written to
    progress.phase(f"velvet: {what}: {len(consumers)} consumer(s)")
    started = time.monotonic()

    def guarded(consumer: Consumer) -> Any:
        if progress.stop.is_set():
            return _NOT_STARTED
        try:
            return work(consumer)
        except Interrupted:
            return _NOT_STARTED

    last_flush = time.monotonic()
    finished_count = stopped = 0
    # Completions arrive on a queue: concurrent.futures.wait(FIRST_COMPLETED) re-arms a
    # waiter on every pending future per call, O(N) per completion and O(N^2) per fan-out.
    finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
    run.journal.checkpoints = False  # the loop's saves are not stopping points; its end is
    try:
        # One pool per target kind, as many threads as its bound: a kind waiting on its
        # vendor's rate budget never holds threads another kind could use.
        with ExitStack() as stack:
            if spends:
                _share_budgets(run, kinds, stack)
            pools = {kind: stack.enter_context(ThreadPoolExecutor(
                max_workers=max(1, min(n, wiring.bound(kind))),
                thread_name_prefix=f"velvet-fanout-{kind}")) for kind, n in kinds.items()}
            futures: dict[Future[Any], Consumer] = {}
            for c in consumers:
                future = pools[c.kind].submit(guarded, c)
                futures[future] = c
                future.add_done_callback(finished.put)
            remaining = len(futures)
            while remaining:
                wait_for = max(0.0, FLUSH_SECONDS - (time.monotonic() - last_flush))
                try:
                    got: Future[Any] | None = finished.get(timeout=wait_for)
                except queue.Empty:
                    got = None
                if got is not None:
                    remaining -= 1
                    consumer = futures[got]
                    try:
                        result = got.result()
                    except Exception as exc:  # noqa: BLE001 - an adapter bug fails one row
                        run.log.error("consumer %s: %s", consumer.consumer_id,
                                      type(exc).__name__)
                        reason = f"internal error: {type(exc).__name__}"
                        result = (fallback(reason) if fallback is not None
                                  else (RowStatus.FAILED, reason))
                    if result is _NOT_STARTED:
                        stopped += 1
                    else:
                        finished_count += 1
                        done(consumer, result)
                if remaining and time.monotonic() - last_flush >= FLUSH_SECONDS:
                    run.journal.flush_rows()
                    last_flush = time.monotonic()
                    left = ("" if settle is None else
                            f"; settle window {max(0.0, settle - (last_flush - started)):.0f} s"
                            " left")
                    waiting = wiring.budgets.waiting_now()
                    progress.note(f"velvet: {what}: {finished_count} of {len(consumers)} "
                                  f"done{left}" + (f"; {waiting}" if waiting else ""))
    finally:
        run.journal.checkpoints = True
    _note_waits(run, kinds, waited0)
    if stopped:
        run.journal.flush_rows()
        progress.checkpoint()


def _share_budgets(run: Run, kinds: Mapping[str, int], stack: ExitStack) -> None:
    """Lease this run's share of every account the fan-out spends until it ends (shares.py).
    The keeper has a Store of its own (its thread must not share the journal's)."""
    from velvet_runner.shares import ShareKeeper
    from velvet_runner.store import Store

    from .journal import stale

    accounts = run.wiring.share_accounts(kinds)  # only those the fan-out spends heavily
    if not accounts:
        return
    store = run.services.store
    keeper = ShareKeeper(Store(store.url, store.branch, store.cache.parent, create=False),
                         accounts, owner=run.journal.owner, job_id=run.job.job_id,
                         credential=run.job.credential, stale=stale)
    stack.enter_context(keeper.held())


def _note_waits(run: Run, kinds: Mapping[str, int], waited0: float) -> None:
    """Record the rate-budget waits of a fan-out that waited a second per thread or more (the
    job's events and the step summary show them)."""
    totals = run.wiring.budgets.totals()
    workers = sum(min(n, run.wiring.bound(kind)) for kind, n in kinds.items())
    if (totals.waited - waited0) / max(1, workers) < 1.0:
        return
    reasons = ", ".join(f"{k or 'other'} {v:.0f} s" for k, v in sorted(
        totals.reasons.items(), key=lambda kv: -kv[1]))
    # Written with the stage's next move: a report, and the fan-out's end is not a safe point.
    run.journal.note("budget_wait", f"writes waited {totals.waited - waited0:.0f} s for the "
                     f"vendors' rate budgets, summed over threads (longest wait "
                     f"{totals.longest:.1f} s; {reasons})", defer=True)
