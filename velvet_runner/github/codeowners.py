"""What CODEOWNERS gives a path, read as GitHub reads it (doctor's checks and setup's changes)."""

from __future__ import annotations

import re

from .globs import glob_regex

CODEOWNERS_FILES = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")  # GitHub's order


def codeowners_of(text: str, path: str) -> list[str] | None:
    """The owners CODEOWNERS gives `path` (the last matching line wins, as on GitHub); None
    when no line matches."""
    owners: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        pattern, *names = line.split()
        if _codeowners_match(pattern, path):
            owners = names
    return owners


def _codeowners_match(pattern: str, path: str) -> bool:
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    regex = glob_regex(pattern.strip("/"))
    prefix = "" if anchored else "(?:.*/)?"
    return re.match(f"^{prefix}{regex}(?:/.*)?$", path) is not None
