"""The vault: the canonical store of a credential's live value, with its companions.

    NAME                  the current (live) value
    NAME__AUTH_ID         the vendor's id for the current value (runbook section 8)
    NAME__PENDING         the new value, written before any consumer gets it
    NAME__PENDING_META    {"job_id", "auth_id", "fingerprint"} of the pending value

A crashed or retried stage resumes from the pending slot and never mints twice. An operator
(or Postmark's manual mint) puts a value in NAME__PENDING by hand; it has no META until a job
claims it. A META whose fingerprint is not the pending value's describes a value that has since
been replaced by hand (an aborted job's META left behind), so it is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from velvet_runner.errors import NotFound
from velvet_runner.manifest_models import AUTH_ID, PENDING, PENDING_META, TargetConfig, VaultConfig
from velvet_runner.records import fingerprint
from velvet_runner.targets.base import Target

# The vault's slots, by the suffix each adds to the vault's name (the table above).
SLOTS: tuple[str, ...] = ("", "__AUTH_ID", "__PENDING", "__PENDING_META")


@dataclass(frozen=True)
class Pending:
    value: SecretStr
    job_id: str | None
    auth_id: str | None


class Vault:
    def __init__(self, location: VaultConfig,
                 make_target: Callable[[TargetConfig], Target]) -> None:
        self.location = location
        self._make = make_target

    def _slot(self, suffix: str) -> Target:
        return self._make(self.location.slot(suffix))

    def describe(self) -> str:
        return self.location.describe()

    def current(self) -> SecretStr | None:
        return self._slot("").read()

    def auth_id(self) -> str | None:
        value = self._slot(AUTH_ID).read()
        return value.get_secret_value().strip() if value else None

    def pending(self) -> Pending | None:
        value = self._slot(PENDING).read()
        if value is None or not value.get_secret_value():
            return None
        meta_raw = self._slot(PENDING_META).read()
        meta: dict[str, str | None] = {}
        if meta_raw is not None:
            try:
                meta = json.loads(meta_raw.get_secret_value())
            except ValueError:
                meta = {}
            if not isinstance(meta, dict):
                meta = {}
        claimed = meta.get("fingerprint")
        if claimed is not None and claimed != fingerprint(value):
            meta = {}  # stale: the value was replaced after that job claimed the slot
        return Pending(value, meta.get("job_id"), meta.get("auth_id"))

    def set_pending(self, value: SecretStr, *, job_id: str, auth_id: str | None) -> None:
        self._slot(PENDING).write(value)
        self._slot(PENDING_META).write(SecretStr(json.dumps(
            {"job_id": job_id, "auth_id": auth_id, "fingerprint": fingerprint(value)},
            sort_keys=True)))

    def clear_pending(self) -> None:
        for suffix in (PENDING, PENDING_META):
            try:
                self._slot(suffix).delete()
            except NotFound:
                pass

    def set_current(self, value: SecretStr, auth_id: str | None) -> None:
        self._slot("").write(value)
        if auth_id is not None:
            self._slot(AUTH_ID).write(SecretStr(auth_id))

    def promote(self, value: SecretStr, auth_id: str | None) -> None:
        """Make the pending value current; idempotent, so a crashed revoke can re-run it."""
        self.set_current(value, auth_id)
        self.clear_pending()
