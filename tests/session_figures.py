"""Figures a test session reports at its end (act's workflow runs, the crash matrix's cells, the
fault campaign's counts), gathered across pytest-xdist's workers.

A worker's conftests record their figures here at the session's end; the worker hands them to
the controller (xdist's `workeroutput`), which merges them (numbers added, lists joined) and
prints the lines in its summary (tests/conftest.py). Without xdist the same path runs in one
process.
"""

from __future__ import annotations

from typing import Any

FIGURES: dict[str, Any] = {}


def record(name: str, value: int | list[Any]) -> None:
    merge({name: value})


def merge(figures: dict[str, Any]) -> None:
    for name, value in figures.items():
        if isinstance(value, list):
            known = FIGURES.setdefault(name, [])
            known.extend(v for v in value if v not in known)
        else:
            FIGURES[name] = FIGURES.get(name, 0) + value


def lines() -> list[str]:
    out = list(FIGURES.get("campaign", []))
    cells = [tuple(c) for c in FIGURES.get("crash_cells", [])]
    if cells:
        stages = len({stage for stage, _ in cells})
        out.append(f"crash matrix: {len(cells)} (stage, point) cells covered across "
                   f"{stages} stages")
    if FIGURES.get("act_runs"):
        out.append(f"velvet rehearse: {FIGURES['act_runs']} workflow runs executed by act")
    return out
