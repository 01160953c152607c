"""One `Check` per fact that `velvet doctor` checks (doctor.py and the sections it runs:
branches, access, reach): `ok`, `fail` with the exact fix, or `skip` with why, as printed and
as `--json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MARKS = {"ok": "✓", "fail": "✗", "skip": "–"}


@dataclass
class Check:
    id: str
    status: str  # ok, fail, skip
    title: str
    detail: str = ""
    fix: str = ""

    def line(self) -> str:
        text = f"{MARKS[self.status]} {self.title}"
        if self.detail:
            text += f": {self.detail}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


def ok(id: str, title: str, detail: str = "") -> Check:
    return Check(id, "ok", title, detail)


def fail(id: str, title: str, detail: str, fix: str) -> Check:
    return Check(id, "fail", title, detail, fix)


def skip(id: str, title: str, why: str) -> Check:
    return Check(id, "skip", title, f"skipped: {why}")


def report(checks: list[Check], repository: str, envs: list[str]) -> dict[str, Any]:
    """The `--json` document."""
    return {"repository": repository, "envs": envs,
            "ok": not any(c.status == "fail" for c in checks),
            "checks": [asdict(c) for c in checks]}
