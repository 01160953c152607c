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

from velvet_runner.errors import VelvetError


class Interrupted(VelvetError):
    """The operator stopped the stage (Ctrl-C); it can be resumed by running it again."""

    exit_code = 130


class Progress:
    def __init__(self, write: Callable[[str], None] | None = None, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._last = -interval
        self._lock = threading.Lock()
        self.stop = threading.Event()

    def phase(self, line: str) -> None:
        """A phase started or ended: always said."""
        self._say(line, force=True)

    def note(self, line: str) -> None:
        """Something worth a line while waiting: at most one a second."""
        self._say(line, force=False)

    def _say(self, line: str, *, force: bool) -> None:
        if self._write is None:
            return
        with self._lock:
            now = self._clock()
            if not force:  # phases always print; waits share the one-a-second allowance
                if now - self._last < self._interval:
                    return
                self._last = now
        self._write(line)

    def sleep(self, seconds: float) -> None:
        """The stage's one way to wait (backoffs, Retry-After, settle polls): interruptible."""
        self.checkpoint()
        self.stop.wait(seconds)
        self.checkpoint()

    def checkpoint(self) -> None:
        if self.stop.is_set():
            raise Interrupted("stopped by the operator")
