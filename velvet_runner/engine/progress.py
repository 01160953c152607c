"""What a running stage tells the person who started it, and their Ctrl-C.

Lines go to a writer the CLI injects (stderr): one per phase, and one per notable wait at most
once a second. `stop` is set by the CLI's SIGINT handler; the stage stops at its next safe
point (a committed write, a wait, a consumer not yet started), records why, and the CLI prints
the command that resumes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from velvet_runner.errors import Interrupted


class Progress:
    def __init__(self, write: Callable[[str], None] | None = None, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}  # per kind of note: when one was last said
        self._lock = threading.Lock()
        self.stop = threading.Event()

    def phase(self, line: str) -> None:
        """A phase started or ended: always said."""
        self._say(line, force=True)

    def note(self, line: str) -> None:
        """How a fan-out stands: at most one a second."""
        self._say(line, force=False, kind="status")

    def wait(self, line: str) -> None:
        """A wait a vendor asked for (a rate limit, a retry): at most one a second, on an
        allowance of its own, so the fan-out's status lines never hide it."""
        self._say(line, force=False, kind="wait")

    def _say(self, line: str, *, force: bool, kind: str = "") -> None:
        if self._write is None:
            return
        with self._lock:
            now = self._clock()
            if not force:  # phases always print; notes of one kind share an allowance
                if now - self._last.get(kind, -self._interval) < self._interval:
                    return
                self._last[kind] = now
        self._write(line)

    def sleep(self, seconds: float) -> None:
        """The stage's one way to wait (backoffs, Retry-After, settle polls): interruptible."""
        self.checkpoint()
        self.stop.wait(seconds)
        self.checkpoint()

    def checkpoint(self) -> None:
        if self.stop.is_set():
            raise Interrupted("stopped by the operator")
