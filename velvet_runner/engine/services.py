"""What a stage run is handed: the services the engine assembles once and every `Run` and
`Journal` uses, so neither reaches back into the `Engine`.

    store        the state branch          wiring     the adapters, budgets, sleep
    manifest     the loaded manifest       now        the clock (tests inject one)
    actor        who runs the stage        progress   lines for the operator, Ctrl-C
    gate         the Actions approval check (None outside Actions)
    notifier     pages people on terminal states (None: nobody)
    on_transition  a test's hook on every committed transition
    crash_at     VELVET_CRASH_AT: the side-effect boundary a crash test exits at
    settle_seconds how long stage 3 watches for use of the old value
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from velvet_runner.machine import Action
from velvet_runner.records import Event, Job

from .journal import Journal, Notifier
from .progress import Progress

if TYPE_CHECKING:
    from velvet_runner.manifest import Credential, Manifest
    from velvet_runner.store import Store
    from velvet_runner.wiring import Wiring


class Gate(Protocol):
    """Checks an operator approval before a gated stage (the Actions layer implements it)."""

    def check(self, job: Job, action: Action, credential: Credential) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Services:
    store: Store
    wiring: Wiring
    manifest: Manifest
    now: Callable[[], datetime]
    actor: str
    progress: Progress = field(default_factory=Progress)
    gate: Gate | None = None
    notifier: Notifier | None = None
    on_transition: Callable[[Job, Event], None] | None = None
    crash_at: str | None = None
    settle_seconds: float = 0.0

    def journal(self, job: Job) -> Journal:
        """The writer of `job`'s record for this run (the only one: see journal.py)."""
        return Journal(job, self.store, now=self.now, actor=self.actor, notifier=self.notifier,
                       on_transition=self.on_transition, progress=self.progress)
