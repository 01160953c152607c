"""Bounded concurrent work over consumers: one failing row never blocks the others.

Concurrency is bounded per target kind (`Wiring.bounds`); rows are saved at most once a second
so the status app sees progress without a commit per row.
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

if TYPE_CHECKING:
    from .context import Run

FLUSH_SECONDS = 1.0


def fan_out(run: Run, consumers: list[Consumer], work: Callable[[Consumer], Any],
            done: Callable[[Consumer, Any], None],
            fallback: Callable[[str], Any] | None = None) -> None:
    """Run `work` for every consumer concurrently and hand each result to `done`.

    An exception from `work` (an adapter bug) becomes `fallback(reason)` for that row alone.
    """
    if not consumers:
        return
    run.journal.hold()
    limits = run.wiring.bounds
    bounds = {kind: threading.BoundedSemaphore(n) for kind, n in limits.items()}
    # Threads for the kinds present only: the others' bounds would add idle threads.
    kinds = Counter(c.kind for c in consumers)
    workers = sum(min(n, limits.get(kind, 1)) for kind, n in kinds.items())

    def bounded(consumer: Consumer) -> Any:
        with bounds[consumer.kind]:
            return work(consumer)

    last_flush = time.monotonic()
    # Completions arrive on a queue: concurrent.futures.wait(FIRST_COMPLETED) re-arms a
    # waiter on every pending future per call, O(N) per completion and O(N^2) per fan-out.
    finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
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
                except Exception as exc:  # noqa: BLE001 - an adapter bug fails one row only
                    run.log.error("consumer %s: %s", consumer.consumer_id, type(exc).__name__)
                    reason = f"internal error: {type(exc).__name__}"
                    result = (fallback(reason) if fallback is not None
                              else (RowStatus.FAILED, reason))
                done(consumer, result)
            if remaining and time.monotonic() - last_flush >= FLUSH_SECONDS:
                run.journal.flush_rows()
                last_flush = time.monotonic()

