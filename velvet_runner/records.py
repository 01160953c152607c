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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, SecretStr

from velvet_runner.machine import Flow, State


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
    """A token that was minted and is not yet proven dead at the vendor."""

    auth_id: str | None
    fingerprint: str
    reason: str
    since: Timestamp
    settled_at: Timestamp | None = None


class Lease(_Record):
    """Who is running a stage of the job right now; renewed by every write of that run."""

    owner: str  # host:pid:nonce
    action: str
    acquired_at: Timestamp
    renewed_at: Timestamp


class Job(_Record):
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
    old_auth_id: str | None = None
    new_auth_id: str | None = None
    old_fingerprint: str | None = None
    new_fingerprint: str | None = None
    ticket: str | None = None
    run_url: str | None = None
    revocation_debt: list[Debt] = Field(default_factory=list)
    report: dict[str, Any] = Field(default_factory=dict)
    lease: Lease | None = None

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
