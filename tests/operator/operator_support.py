"""Helpers for the operator tests: a real pseudo-terminal, and edits to the real state branch."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BRANCH = "velvet-state"
TIMEOUT = 120  # a safety net for a hung child; not a timing assertion


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run_in_pty(*args: str, cwd: Path, env: Mapping[str, str | None] | None = None) -> Ran:
    """`velvet ARGS` with stdout on a real pseudo-terminal (stderr on a pipe)."""
    child_env = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "velvet_runner", *args], cwd=cwd,
                            env=child_env, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=TIMEOUT)
    return Ran(code, b"".join(chunks).decode().replace("\r\n", "\n"), err)


def git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def put_on_branch(bare: Path, work: Path, files: dict[str, str]) -> None:
    """Commit `files` onto the state branch as a person with a clone would, and push."""
    if not work.exists():
        git("clone", "--quiet", "--branch", BRANCH, str(bare), str(work))
    else:
        git("pull", "--quiet", "origin", BRANCH, cwd=work)
    for path, text in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git("add", "-A", cwd=work)
    git("-c", "user.name=ops", "-c", "user.email=ops@localhost", "commit", "--quiet", "-m",
        "by hand", cwd=work)
    git("push", "--quiet", "origin", f"HEAD:{BRANCH}", cwd=work)
