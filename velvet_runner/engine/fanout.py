"""Bounded concurrent work over consumers: one failing row never blocks the others.

Concurrency is bounded per target kind (`Wiring.bounds`); rows are saved at most once a second
so the status app sees progress without a commit per row, and the operator sees a progress line
at most once a second.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from velvet_runner.manifest import Consumer
from velvet_runner.records import RowStatus

from .progress import Interrupted

if TYPE_CHECKING:
    from .context import Run

FLUSH_SECONDS = 1.0
_NOT_STARTED = object()  # a consumer left alone because the operator stopped the stage


def fan_out(run: Run, consumers: list[Consumer], work: Callable[[Consumer], Any],
            done: Callable[[Consumer, Any], None],
            fallback: Callable[[str], Any] | None = None, *, what: str = "consumers",
            settle: float | None = None) -> None:
    """Run `work` for every consumer concurrently and hand each result to `done`.

    An exception from `work` (an adapter bug) becomes `fallback(reason)` for that row alone.
    On Ctrl-C, consumers not yet started are left as they are (a resume runs them), the rows
    are saved, and Interrupted is raised. `settle` (seconds) adds the time left in a settle
    window to the progress line.
    """
    if not consumers:
        return
    run.journal.hold()
    progress = run.e.progress
    progress.phase(f"velvet: {what}: {len(consumers)} consumer(s)")
    started = time.monotonic()
    limits = run.wiring.bounds
    bounds = {kind: threading.BoundedSemaphore(n) for kind, n in limits.items()}
    # Threads for the kinds present only: the others' bounds would add idle threads.
    kinds = Counter(c.kind for c in consumers)
    workers = sum(min(n, limits.get(kind, 1)) for kind, n in kinds.items())

    def bounded(consumer: Consumer) -> Any:
        with bounds[consumer.kind]:
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
        with ThreadPoolExecutor(max_workers=max(1, workers),
                                thread_name_prefix="velvet-fanout") as pool:
            futures: dict[Future[Any], Consumer] = {}
            for c in consumers:
                future = pool.submit(bounded, c)
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
                    progress.note(f"velvet: {what}: {finished_count} of {len(consumers)} "
                                  f"done{left}")
    finally:
        run.journal.checkpoints = True
    if stopped:
        run.journal.flush_rows()
        progress.checkpoint()
