"""Operator mistakes that used to be met with a bare "flag is off" or silently ignored."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from velvet_runner.machine import OPTIONS, Action, Option

CRED = "HK_PLATFORM_FULL"
RunVelvet = Callable[..., "subprocess.CompletedProcess[str]"]


def _flags(manifest_dir: Path, text: str) -> Path:
    path = manifest_dir / "flags.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_misspelled_flag_names_file_key_and_known_keys(run_velvet: RunVelvet,
                                                         manifest_dir: Path) -> None:
    path = _flags(manifest_dir, "# flags\nvelvet_v2_rotaton: true\n")
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 4
    assert f"{path} has no key velvet_v2_rotation" in proc.stderr
    assert "'velvet_v2_rotaton' looks like a misspelling of it" in proc.stderr
    assert "known flags: velvet_v2_rotation" in proc.stderr
    check = run_velvet("manifest", "check")
    assert check.returncode == 2
    assert check.stderr.startswith(f"{path}:2: velvet_v2_rotaton: not a flag Velvet reads; "
                                   "did you mean velvet_v2_rotation?")


def test_a_missing_flag_or_file_says_so(run_velvet: RunVelvet, manifest_dir: Path) -> None:
    path = _flags(manifest_dir, "other_flag: true\n")
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 4
    assert f"{path} has no key velvet_v2_rotation, so it is off (keys in the file: " \
           "other_flag; known flags: velvet_v2_rotation)" in proc.stderr
    path.unlink()
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 4
    assert f"{path} does not exist" in proc.stderr
    _flags(manifest_dir, "velvet_v2_rotation: false\n")
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 4
    assert f"{path}:1: velvet_v2_rotation is set to false" in proc.stderr


@pytest.mark.parametrize(("args", "refused"), [
    (["verify", "--ticket", "T-1"], "--ticket does not apply to verify (verify takes no options)"),
    (["proceed_mint", "--consumer", "x"], "--consumer does not apply to proceed_mint"),
    (["abort", "--confirm", CRED, "--ticket", "T"], "--ticket, --confirm does not apply to abort"),
    (["manual_confirm", "--consumer", "x", "--confirm", "X"],
     "--confirm does not apply to manual_confirm (manual_confirm takes --consumer, --ticket)"),
    (["proceed_mint", "--accept-debt"],
     "--accept-debt does not apply to proceed_mint (proceed_mint takes no options)"),
])
def test_options_an_action_does_not_take_are_refused(run_velvet: RunVelvet, args: list[str],
                                                     refused: str) -> None:
    job = json.loads(run_velvet("rotate", CRED).stdout)
    proc = run_velvet("stage", job["job_id"], *args)
    assert proc.returncode == 2
    assert refused in proc.stderr
    assert proc.stdout == ""
    shown = json.loads(run_velvet("status", "--job", job["job_id"], "--json").stdout)
    assert shown["status"] == "init"  # refused before anything ran


def test_every_action_has_an_options_row() -> None:
    assert set(OPTIONS) == set(Action)
    assert all(set(row) <= set(Option) for row in OPTIONS.values())
