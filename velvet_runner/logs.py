"""Logging: one key=value line per record, `job_id=<id>` bound, registered secrets scrubbed.

Log lines reach stderr only when asked for (`velvet -v`, `VELVET_LOG=LEVEL`) and in GitHub
Actions, where the run's log is the record; on a terminal they would interleave with the
summary for people (the CLI decides the level: `cli.common._log_level`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

from velvet_runner.redact import scrub


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return scrub(line)


def setup(level: int | None = logging.INFO) -> None:
    """Log to stderr at `level`; None: no log lines at all (not even Python's last-resort
    handler's warnings)."""
    root = logging.getLogger("velvet")
    if any(getattr(h, "_velvet", False) for h in root.handlers):
        return
    handler: logging.Handler = (logging.StreamHandler(sys.stderr) if level is not None
                                else logging.NullHandler())
    handler._velvet = True  # type: ignore[attr-defined]
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                    "%Y-%m-%dT%H:%M:%SZ"))
    root.addHandler(handler)
    root.setLevel(level if level is not None else logging.CRITICAL + 1)
    root.propagate = False


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with job_id=..., so `grep job_id=<id>` finds a job's lines."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[
            str, Any]]:
        extra = self.extra or {}
        return f"job_id={extra.get('job_id')} {msg}", kwargs


def job_logger(name: str, job_id: str) -> JobLogger:
    return JobLogger(logging.getLogger(f"velvet.{name}"), {"job_id": job_id})
