"""Who else holds, or still uses, a credential's value: `velvet scan`, and stage 3's checks
before it revokes (`engine/precheck.py`).

Holders. Every target kind the manifest uses sweeps the places Velvet's own credentials can
read (`Target.sweep`): the config vars of every Heroku app the bootstrap token may use, every
environment of every Infisical project Velvet's identity is a member of, the SSM parameters
under the manifest's prefixes. A place holding the value (compared by fingerprint) that the
manifest does not register for the credential, as one of its consumers' targets or one of its
vault's slots, is an *unregistered holder*: revoking the value breaks whoever reads it. GitHub
never shows a secret's value, so there the sweep reports *references*: workflow files, in the
repositories the App can see and the manifest does not list, that name one of the secrets the
manifest writes for the credential. They may use it; nothing can tell.

Last use. Where the vendor says when a credential was last used (`Vendor.last_used`), a use
after every registered consumer switched to the new value, and the settle window after that, is
someone Velvet does not know of.

Nothing here prints or keeps a value: places are named, values are compared as fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from velvet_runner import targets
from velvet_runner.errors import VelvetError, VendorError
from velvet_runner.records import Job, fingerprint, iso
from velvet_runner.vault import SLOTS

if TYPE_CHECKING:
    from velvet_runner.manifest import Manifest
    from velvet_runner.manifest_models import Credential
    from velvet_runner.vendors.base import Vendor
    from velvet_runner.wiring import Wiring

REPORT_KEY = "before_revoke"  # job.report[...]: what stage 3 found before it revoked


@dataclass(frozen=True)
class Holder:
    """A place the manifest does not register for the credential that holds its value."""

    where: str
    registered_as: str | None = None  # another credential's consumer or vault slot, if so


@dataclass
class Scan:
    """What a sweep of every readable place found of one value (never the value)."""

    credential: str
    fingerprint: str
    holders: list[Holder] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)  # the credential's own places holding it
    references: list[dict[str, str]] = field(default_factory=list)  # {"where", "reference"}
    # Places read, per target kind (for GitHub: workflow files).
    searched: dict[str, int] = field(default_factory=dict)
    not_searched: list[str] = field(default_factory=list)  # what could not be read, and why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def registered_places(manifest: Manifest) -> dict[str, tuple[str, str]]:
    """Every place the manifest registers: describe() -> (credential, consumer id or vault
    slot)."""
    out: dict[str, tuple[str, str]] = {}
    for cred in manifest.credentials:
        for consumer in cred.consumers:
            out[consumer.describe()] = (cred.name, f"consumer {consumer.consumer_id}")
        vault = cred.vault
        for suffix in SLOTS:
            slot = vault.model_copy(update={"name": vault.name + suffix})
            out[slot.describe()] = (cred.name, f"vault slot {vault.name}{suffix}")
    return out


def swept_kinds(manifest: Manifest) -> list[str]:
    """The target kinds the manifest uses (a consumer's or a vault's), in registry order:
    the places Velvet has credentials for."""
    used = {c.kind for cred in manifest.credentials for c in (cred.vault, *cred.consumers)}
    return [kind for kind in targets.load_all() if kind in used]


def scan(wiring: Wiring, manifest: Manifest, credential: Credential,
         value: SecretStr) -> Scan:
    """Search every place Velvet's own credentials can read for `value` (by fingerprint)."""
    wanted = fingerprint(value)
    found = Scan(credential=credential.name, fingerprint=wanted)
    places = registered_places(manifest)
    for kind in swept_kinds(manifest):
        read = 0
        try:
            for place in wiring.sweep(kind, manifest, credential):
                if place.error is not None:
                    found.not_searched.append(f"{place.where}: {place.error}")
                    continue
                if place.reference is not None:
                    found.references.append({"where": place.where,
                                             "reference": place.reference})
                    continue
                read += 1
                if place.fingerprint == wanted:
                    owner = places.get(place.where)
                    if owner is not None and owner[0] == credential.name:
                        found.registered.append(place.where)
                    else:
                        found.holders.append(Holder(place.where, None if owner is None
                                                    else f"{owner[0]} {owner[1]}"))
        except VelvetError as exc:
            found.not_searched.append(f"{kind}: {exc}")
        found.searched[kind] = read
    found.holders.sort(key=lambda h: h.where)
    found.registered.sort()
    found.references.sort(key=lambda r: (r["where"], r["reference"]))
    return found


# --- last use --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UseCheck:
    """When the vendor last saw the old value used, against when the consumers switched."""

    vendor: str
    reported: bool  # the vendor reports last use at all
    last_used: datetime | None  # None: never used, or not known
    switched_at: datetime | None  # when the last registered consumer got the new value
    settle_seconds: float
    detail: str  # what the vendor said, or why nothing is known
    still_old: tuple[str, ...] = ()  # registered consumers that never switched

    @property
    def after_switch(self) -> bool:
        """Used after every registered consumer switched and the settle window passed."""
        return (self.last_used is not None and self.switched_at is not None
                and self.last_used > self.switched_at + timedelta(seconds=self.settle_seconds))

    def to_dict(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "reported": self.reported,
                "last_used": iso(self.last_used) if self.last_used else None,
                "switched_at": iso(self.switched_at) if self.switched_at else None,
                "settle_seconds": self.settle_seconds, "detail": self.detail,
                "still_old": list(self.still_old), "after_switch": self.after_switch}


def switched_at(job: Job) -> datetime | None:
    """When the last consumer holding the new value got it (its write, else its last update)."""
    times = [row.written_at or row.updated_at for row in job.consumers if row.holds == "new"]
    return max((t for t in times if t is not None), default=None)


def check_use(vendor: Vendor, auth_id: str | None, *, using: SecretStr, job: Job,
              settle_seconds: float, call: Callable[[Callable[[], Any]], Any]) -> UseCheck:
    """Ask the vendor when credential `auth_id` (the old value) was last used."""
    def checked(reported: bool, last_used: datetime | None, detail: str) -> UseCheck:
        return UseCheck(vendor.kind, reported, last_used, switched_at(job), settle_seconds,
                        detail, tuple(r.consumer_id for r in job.consumers if r.holds != "new"))

    if auth_id is None:
        return checked(False, None, "the old value's vendor id is unknown")
    try:
        use = call(lambda: vendor.last_used(auth_id, using=using))
    except VendorError as exc:
        return checked(False, None, f"could not ask: {exc}")
    if use is None:
        return checked(False, None, f"{vendor.kind} does not report when a credential was "
                       "last used")
    return checked(True, use.at, use.detail)


# --- what stage 3 found, in words ---------------------------------------------------------------


def before_revoke_lines(job: Job) -> list[str]:
    """What stage 3 found before it revoked and what the operator accepted (with the ticket),
    one line each: for the summaries, the notifications and the evidence export."""
    report = job.report.get(REPORT_KEY)
    if not isinstance(report, dict):
        return []
    ticket = report.get("ticket") or job.ticket or "?"
    accepted = report.get("accepted") or {}
    lines = []
    holders = [h.get("where", "?") for h in report.get("holders") or []]
    if holders:
        verb = (f"accepted (ticket {ticket})" if accepted.get("unregistered")
                else "so the revoke was refused")
        lines.append(f"unregistered holders of the old value, {verb}: " + ", ".join(holders))
    use = report.get("last_use") or {}
    if use.get("after_switch"):
        verb = (f"accepted (ticket {ticket})" if accepted.get("still_used")
                else "so the revoke was refused")
        lines.append(f"old value used at {use.get('last_used')}, after every registered "
                     f"consumer switched ({use.get('switched_at')}), {verb}")
    refs = [f"{r.get('where')} {r.get('reference')}" for r in report.get("references") or []]
    if refs:
        lines.append("workflows in unlisted repositories name its secret: " + ", ".join(refs))
    return lines
