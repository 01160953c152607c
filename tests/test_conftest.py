"""The suite's own scheduling: the files conftest deals out first still exist."""

from __future__ import annotations

from pathlib import Path

from conftest import HEAVY_FIRST

TESTS = Path(__file__).resolve().parent


def test_every_file_dealt_out_first_exists() -> None:
    missing = [name for name in HEAVY_FIRST if not (TESTS / name).is_file()]
    assert missing == [], f"tests/conftest.py HEAVY_FIRST names files that are gone: {missing}"
    assert len(set(HEAVY_FIRST)) == len(HEAVY_FIRST)
