"""Job records as committed to the state branch: ids, statuses, events; never a secret value.

Serialisation is byte-deterministic (sorted keys, fixed indent, UTC "Z" timestamps, trailing
newline) so that the state branch's diffs show only real changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    computed_field,
    model_validator,
)

from velvet_runner.machine import Action, Flow, State, allowed


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(value: datetime) -> str:
    """The one timestamp format Velvet writes: UTC, seconds, a trailing Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[datetime, PlainSerializer(iso, return_type=str)]


_id_lock = threading.Lock()
_last_id = [0, 0]  # (milliseconds, 12-bit counter) of the last id made in this process


def new_job_id() -> str:
    """A UUIDv7: random, but sorting by id sorts by creation time (the per-credential index).

    Within one millisecond a counter in the 12 `rand_a` bits keeps ids from one process in order.
    """
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_id[0]:
            ms, seq = _last_id[0], _last_id[1] + 1
            if seq > 0xFFF:
                ms, seq = ms + 1, 0
        else:
            seq = int.from_bytes(os.urandom(2), "big") & 0x3FF  # room left to count up
        _last_id[0], _last_id[1] = ms, seq
    rand = int.from_bytes(os.urandom(8), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= seq << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def fingerprint(value: SecretStr | str) -> str:
    """A short, non-reversible tag that tells two values apart without revealing either."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return "sha256:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:12]


class RowStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    MANUAL_REQUIRED = "manual_required"
    MANUALLY_CONFIRMED = "manually_confirmed"


DONE_ROW = frozenset({RowStatus.SUCCEEDED, RowStatus.SKIPPED, RowStatus.MANUALLY_CONFIRMED})


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConsumerRow(_Record):
    consumer_id: str
    kind: str
    target: str
    distribute_status: RowStatus = RowStatus.PENDING
    validate_status: RowStatus = RowStatus.PENDING
    holds: Literal["old", "new", "unknown"] = "old"
    # How the row's hold of the new value was shown: a readback of its fingerprint, or the
    # target's own timestamp of the write. A write the target cannot show is not succeeded.
    shown: str | None = None
    written_at: Timestamp | None = None  # when Velvet's last write to it was sent
    attempts: int = 0
    detail: str | None = None
    updated_at: Timestamp | None = None


class Event(_Record):
    at: Timestamp
    actor: str
    action: str
    from_state: str | None = None
    to_state: str | None = None
    detail: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Debt(_Record):
    """A token Velvet made that is live (or not proven dead) and is not the vault's current
    value. A view of the ledger (`Job.ledger`): the job's JSON keeps it for readers."""

    auth_id: str | None
    fingerprint: str | None
    reason: str
    since: Timestamp
    settled_at: Timestamp | None = None


# old: the value a job starts from; new: one it minted; rolled: one an emergency rolled;
# preempted: one a preempted job left live, which the emergency that preempted it kills.
Role = Literal["old", "new", "rolled", "preempted"]


class Life(StrEnum):
    """Where a token is in its life; `ledger.py` says which moves are allowed."""

    INTENDED = "intended"  # the intent to create it is committed; the vendor may or may not have
    MINTED = "minted"  # the vendor issued it; nobody holds it yet
    HELD = "held"  # in the vault's pending slot (and maybe on consumers)
    CURRENT = "current"  # the vault's current value
    REVOKING = "revoking"  # the intent to kill it is committed
    PROVEN_DEAD = "proven_dead"  # the vendor refuses it (or no longer has it and nobody holds it)
    DEBT = "debt"  # live or not proven dead, and not the vault's current value


class Token(_Record):
    """One token the job knows: the old one, or one it minted, rolled or regenerated.

    Holds ids and a fingerprint, never the value. `intent` names the side effect committed
    before it ran (mint, roll, regenerate, revoke); a resumed stage reconciles it with the
    vendor instead of guessing.
    """

    token_id: str  # "old", "new", "new-2", "rolled", ... unique within the job
    role: Role
    from_job: str | None = None  # the job whose ledger also lists it (preempted)
    life: Life
    auth_id: str | None = None
    fingerprint: str | None = None
    label: str | None = None  # what the vendor was asked to call it (find by label)
    # "vault:current", "vault:pending", consumer ids ("id?" where it may hold it)
    held_by: list[str] = Field(default_factory=list)
    intent: str | None = None
    evidence: str | None = None  # why it is known dead (or why it is debt)
    debt_since: Timestamp | None = None
    dead_at: Timestamp | None = None
    # What was seen of it earlier that is not a proof (a 401 at verify, a refusal before a
    # retry): evidence for a person, never a settlement. Death is proven when it is claimed.
    observed: str | None = None
    observed_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class Lease(_Record):
    """Who is running a stage of the job right now; renewed by every write of that run."""

    owner: str  # host:pid:nonce
    action: str
    acquired_at: Timestamp
    renewed_at: Timestamp


# Job fields that are views of the ledger: written to the branch for readers (the status app,
# old tooling), never read back as facts. Each is (ledger role, token attribute).
TOKEN_VIEWS: dict[str, tuple[Role, str]] = {
    "old_auth_id": ("old", "auth_id"), "old_fingerprint": ("old", "fingerprint"),
    "new_auth_id": ("new", "auth_id"), "new_fingerprint": ("new", "fingerprint")}


def _derived_in_schema(schema: dict[str, Any]) -> None:
    """The views written to the branch (derived from the ledger): document them."""
    schema["properties"]["revocation_debt"] = {
        "title": "Revocation Debt", "type": "array", "readOnly": True,
        "description": "Derived from `ledger`: every token recorded as debt, settled or not.",
        "items": Debt.model_json_schema()}
    for name, (role, attr) in TOKEN_VIEWS.items():
        schema["properties"][name] = {
            "title": name.replace("_", " ").title(), "anyOf": [{"type": "string"},
                                                               {"type": "null"}],
            "readOnly": True,
            "description": f"Derived from `ledger`: the {attr} of the newest `{role}` entry."}


class Job(_Record):
    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              json_schema_extra=_derived_in_schema)

    job_id: str
    credential: str
    vendor: str
    flow_type: Flow
    env: str
    status: State
    created_at: Timestamp
    updated_at: Timestamp
    actor: str = "unknown"
    idempotency_key: str | None = None
    force_revoke: bool = False
    consumers: list[ConsumerRow] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    ticket: str | None = None
    run_url: str | None = None
    ledger: list[Token] = Field(default_factory=list)
    rollback: dict[str, Any] | None = None  # a rollback under way: only rollback may run
    report: dict[str, Any] = Field(default_factory=dict)
    lease: Lease | None = None

    @model_validator(mode="before")
    @classmethod
    def _views_from_ledger(cls, data: Any) -> Any:
        """`revocation_debt` and the old/new ids and fingerprints are derived from the ledger;
        what a record says of them is read only where its ledger lacks the entry (a record
        written before the ledger existed), and then becomes ledger entries."""
        if not isinstance(data, dict) or not ({"revocation_debt", *TOKEN_VIEWS} & set(data)):
            return data
        data = dict(data)
        listed = data.pop("revocation_debt", None) or []
        views = {name: data.pop(name, None) for name in TOKEN_VIEWS}
        entries = list(data.get("ledger") or [])
        if not entries:
            entries = [_debt_entry(i, d) for i, d in enumerate(listed)]
        roles = {_field(e, "role") for e in entries}
        for role in ("old", "new"):
            auth_id, fp = views[f"{role}_auth_id"], views[f"{role}_fingerprint"]
            if role not in roles and (auth_id or fp):
                entries.insert(0 if role == "old" else len(entries),
                               _migrated_entry(role, auth_id, fp, data.get("status")))
        data["ledger"] = entries
        return data

    def _debt_view(self) -> list[Debt]:
        return [Debt(auth_id=t.auth_id, fingerprint=t.fingerprint, reason=t.evidence or "",
                     since=t.debt_since, settled_at=t.dead_at)
                for t in self.ledger if t.debt_since is not None]

    # Serialised for readers of the branch (status app, stuck, old tooling); never stored twice.
    revocation_debt: ClassVar[property] = computed_field(return_type=list[Debt])(
        property(_debt_view))

    def newest(self, role: Role) -> Token | None:
        """The newest ledger entry of a role ("old", "new", "rolled")."""
        return next((t for t in reversed(self.ledger) if t.role == role), None)

    # The old/new ids and fingerprints, read from the ledger (TOKEN_VIEWS).
    @computed_field  # type: ignore[prop-decorator]
    @property
    def old_auth_id(self) -> str | None:
        token = self.newest("old")
        return token.auth_id if token else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def old_fingerprint(self) -> str | None:
        token = self.newest("old")
        return token.fingerprint if token else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def new_auth_id(self) -> str | None:
        token = self.newest("new")
        return token.auth_id if token else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def new_fingerprint(self) -> str | None:
        token = self.newest("new")
        return token.fingerprint if token else None

    def next_actions(self) -> list[Action]:
        """The operator actions this job allows now (a rollback under way allows only itself)."""
        return allowed(self.flow_type, self.status, force_revoke=self.force_revoke,
                       rolling_back=self.rollback is not None)

    def unproven_rows(self) -> dict[str, list[str]]:
        """Rows a person vouched for, and rows left out: they keep (or may keep) the old value
        that proceed_revoke is about to revoke, so its confirmation and summary name them."""
        def having(status: RowStatus) -> list[str]:
            return [r.consumer_id for r in self.consumers
                    if status in (r.distribute_status, r.validate_status)]

        return {"skipped_consumers": having(RowStatus.SKIPPED),
                "manually_confirmed_consumers": having(RowStatus.MANUALLY_CONFIRMED)}

    def token(self, token_id: str) -> Token | None:
        return next((t for t in self.ledger if t.token_id == token_id), None)

    def row(self, consumer_id: str) -> ConsumerRow | None:
        return next((r for r in self.consumers if r.consumer_id == consumer_id), None)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        return cls.model_validate_json(text)

    def summary(self) -> dict[str, Any]:
        """The runbook's polling shape plus the job's identity, for stdout and the status app."""
        return self.model_dump(mode="json")


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)


# Where a record from before the ledger left its tokens, judged by the status it reached.
_OLD_DEAD = frozenset({"done", "rev_revoked", "rev_validating", "rev_leaked", "rev_done"})


def _migrated_entry(role: Role, auth_id: str | None, fp: str | None,
                    status: Any) -> dict[str, Any]:
    status = str(status)
    if role == "old":
        life = Life.PROVEN_DEAD if status in _OLD_DEAD else Life.CURRENT
    else:
        life = Life.CURRENT if status == "done" else Life.HELD
    return {"token_id": role, "role": role, "life": life, "auth_id": auth_id,
            "fingerprint": fp,
            "evidence": "recorded before the ledger" if life == Life.PROVEN_DEAD else None}


def _debt_entry(index: int, debt: Any) -> dict[str, Any]:
    raw = debt.model_dump() if isinstance(debt, Debt) else dict(debt)
    settled = raw.get("settled_at")
    return {"token_id": f"debt-{index + 1}", "role": "new",
            "life": Life.PROVEN_DEAD if settled else Life.DEBT,
            "auth_id": raw.get("auth_id"), "fingerprint": raw.get("fingerprint"),
            "evidence": raw.get("reason"), "debt_since": raw.get("since"), "dead_at": settled}
