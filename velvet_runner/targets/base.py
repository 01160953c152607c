"""What a target adapter must do: write a value somewhere a consumer reads it."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr

from velvet_runner.client import Api
from velvet_runner.manifest_models import TargetConfig
from velvet_runner.records import fingerprint

if TYPE_CHECKING:
    from velvet_runner.client import Supplies
    from velvet_runner.manifest import Manifest
    from velvet_runner.manifest_models import Credential

# Writes in flight at once for a kind that declares no BOUND: concurrent, as a vendor without
# published limits allows (its API's rate policy still paces the requests).
DEFAULT_BOUND = 16


@dataclass(frozen=True)
class Shown:
    """What a target shows of a write: whether it holds the value now, and how that is known
    (a fingerprint read back, or the target's own time of the write; never the value)."""

    held: bool
    evidence: str


@dataclass(frozen=True)
class Found:
    """One place a sweep read (never its value): where it is, as its config's `describe()`
    names it, and the fingerprint of what it holds; or, for a write-only kind, where it names
    one of the credential's secrets (`reference`: file:line); or why it could not be read."""

    where: str
    fingerprint: str | None = None
    reference: str | None = None
    error: str | None = None


class Target(ABC):
    """One place a value is written (a config var, a secret, a parameter).

    `write` is idempotent (writing the same value twice is harmless) and raises the
    VendorError subclasses of `errors.py`. Nothing here logs or raises with a value in it.
    What it needs is declared as data: `build` and `sweep` receive the clients of `APIS`.
    """

    kind: ClassVar[str]
    # The manifest row's model: a TargetConfig whose `kind` is Literal[kind].
    config_model: ClassVar[type[TargetConfig]]
    # The vendor APIs it calls (client.Api: URL, headers, the settings its auth reads).
    APIS: ClassVar[tuple[Api, ...]] = ()
    # Writes of this kind in flight at once in a fan-out (its vendor's fair share); None:
    # DEFAULT_BOUND. `Wiring(bounds=...)` overrides it.
    BOUND: ClassVar[int | None] = None
    # The API (one of APIS, with a Bearer auth) whose account budget its writes draw from: a
    # fan-out's estimate and the share it leases of the account (shares.py). None: not an
    # HTTP budget Velvet can name before writing.
    BUDGET: ClassVar[Api | None] = None
    READABLE: ClassVar[bool] = True
    # May hold a credential's canonical live value (the manifest's `vault`): it reads back.
    CAN_BE_VAULT: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def build(cls, config: Any, supplies: Supplies) -> Target:
        """This adapter for its manifest row, with the clients of the APIs it declared."""

    @abstractmethod
    def write(self, value: SecretStr) -> None:
        """Store `value`, replacing what is there (creating it if missing)."""

    @abstractmethod
    def read(self) -> SecretStr | None:
        """The value stored now, None when nothing is stored. Unreadable targets raise."""

    def fingerprint(self) -> str | None:
        """A fingerprint of the stored value (readback checks compare it with the new one)."""
        value = self.read()
        return fingerprint(value) if value is not None else None

    def shows(self, value: SecretStr, since: datetime | None) -> Shown | None:
        """Show that the target holds `value` now: a write acknowledged is not a write stored.

        Readable targets read the value back and compare fingerprints; a write-only target
        may show the time it last stored a value, no older than `since` (when the write was
        sent). None: the target can show nothing, and a person confirms the row. Reading
        failures raise the VendorError subclasses.
        """
        if not self.READABLE:
            return None
        stored, expected = self.fingerprint(), fingerprint(value)
        if stored == expected:
            return Shown(True, f"reads back {expected}")
        return Shown(False, "reads back no value" if stored is None else
                     f"reads back {stored}, not the value written ({expected})")

    @abstractmethod
    def probe(self) -> str:
        """Check reachable and writable without writing; return a short description.

        Used by the testing flow; must change nothing anywhere.
        """

    def backoff_hint(self) -> float | None:
        """On a rate limit without Retry-After: how many vendor seconds until the vendor admits
        a request again, asked of the vendor (a free endpoint); None when it cannot tell."""
        return None

    def delete(self) -> None:
        """Remove the stored value (the vault's pending slot uses this)."""
        raise NotImplementedError(f"{self.kind} cannot delete")

    @classmethod
    def sweep(cls, supplies: Supplies, manifest: Manifest,
              credential: Credential) -> Iterator[Found]:
        """Every place of this kind Velvet's own credentials can read, beyond the manifest's
        (`velvet scan`, and stage 3 before it revokes: who else holds the old value).

        Readable kinds yield each place with the fingerprint of its value, and nothing of the
        value itself; a write-only kind yields the places that name `credential`'s secrets. A
        place that cannot be read is yielded with its `error`, and the sweep goes on; an error
        that stops the whole sweep (no credentials, the listing refused) raises the
        VendorError subclasses. Every listing is followed to its last page. Default: nothing
        to list.
        """
        return iter(())


# How far a vendor's clock and the runner's may disagree when a write's time is compared.
CLOCK_SKEW = timedelta(seconds=5)
# A vendor keeping its stamps to the second shows no change for a write in the same second as
# the last one. A real wait for the vendor's clock, not a backoff (so not injected).
SAME_SECOND = 1.5
_UNREAD = object()  # no write by this instance yet: its earlier stamp is unknown


class Stamped(Target):
    """A write-only target whose vendor says when it last stored a value (GitHub's and
    Vercel's `updated_at`, ISO 8601): a write is shown by that time changing. A subclass reads
    the stamp (`updated_at`) and calls `before_write()` first in its `write`."""

    READABLE: ClassVar[bool] = False
    VENDOR: ClassVar[str]  # who stores it, in what `shows` says
    NOTHING: ClassVar[str] = "nothing stored here"  # what an absent stamp means

    _before: object = _UNREAD

    @abstractmethod
    def updated_at(self) -> str | None:
        """When the vendor last stored a value here; None when it holds none."""

    def before_write(self) -> None:
        """Remember the stamp before this write (and let a second pass since it)."""
        self._before = before = self.updated_at()
        stored = _stamp_time(before)
        if stored is not None:
            age = (datetime.now(UTC) - stored).total_seconds()
            if age < SAME_SECOND:
                time.sleep(min(SAME_SECOND, SAME_SECOND - age))

    def fingerprint(self) -> str | None:
        return None

    def shows(self, value: SecretStr, since: datetime | None) -> Shown | None:
        """The vendor never returns the value, but it says when it last stored one: a time
        other than before this process's write shows it landed; without that, a time no older
        than `since` (allowing for the two clocks)."""
        updated = self.updated_at()
        if updated is None:
            return Shown(False, f"{self.VENDOR} has {self.NOTHING}: the write was not stored")
        if self._before is not _UNREAD:
            if updated != self._before:
                return Shown(True, f"{self.VENDOR} stored it at {updated}")
            return Shown(False, f"{self.VENDOR} still shows it last stored at {updated}, as "
                         "before this write: acknowledged but not stored")
        if since is None:
            return None
        at = _stamp_time(updated)
        if at is None:
            return Shown(False, f"{self.VENDOR}'s updated_at {updated!r} is not a time")
        if at >= since - CLOCK_SKEW:
            return Shown(True, f"{self.VENDOR} stored it at {updated}")
        return Shown(False, f"{self.VENDOR} last stored it at {updated}, before this write "
                     f"({since:%Y-%m-%dT%H:%M:%SZ}): acknowledged but not stored")


def _stamp_time(stamp: str | None) -> datetime | None:
    if stamp is None:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
