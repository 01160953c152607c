"""Reading a lot at once: a big manifest, thousands of job records.

CPython's cyclic collector runs every few hundred allocations and, at each full pass, walks
every object alive. Parsing a 5,000-credential manifest (a million containers) or 5,000 job
records allocates only acyclic data that reference counting frees, so those passes find
nothing, yet they cost a third of `velvet due` at that size (2 s of 6). They are held off
while such data is built; anything cyclic made meanwhile is collected at the next pass after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection inside; reentrant, and restores what the caller had."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
