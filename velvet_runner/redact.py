"""Secret hygiene: the values this process has seen, masked in Actions and scrubbed from logs.

Every value read from a vault or minted is registered here the moment it is in memory. In
GitHub Actions that emits `::add-mask::` before anything could print it; everywhere, the log
formatter scrubs registered values as a last line of defence (the first is never logging them).
"""

from __future__ import annotations

import os
import sys
import threading

from pydantic import SecretStr

_lock = threading.Lock()
_values: set[str] = set()


def in_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def register(value: SecretStr | str | None) -> None:
    if value is None:
        return
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if len(raw) < 4:
        return  # too short to be a credential; masking it would garble every log line
    with _lock:
        if raw in _values:
            return
        _values.add(raw)
    if in_actions():
        # Workflow commands are read from stdout; masking must precede any other use.
        sys.stdout.write(f"::add-mask::{raw}\n")
        sys.stdout.flush()


def scrub(text: str) -> str:
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for raw in values:
        if raw in text:
            text = text.replace(raw, "***")
    return text
