"""Bad input that used to escape as a traceback, a hang or a silent loss (issue #16).

Each one is exit 2 naming the file or argument (exit 3 for a state branch that lost history
this machine had seen), with no traceback, and nothing else lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from operator_support import BRANCH, TIMEOUT, git, put_on_branch

CRED = "HK_PLATFORM_FULL"
RunVelvet = Callable[..., "subprocess.CompletedProcess[str]"]
BAD_ID = "01a00000-0000-7000-8000-000000000000"
BAD_BYTES = '{"job_id": "s3cr3t-looking-bytes", oops'


def clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "internal error" not in proc.stderr


def rotate(run_velvet: RunVelvet, credential: str = CRED) -> dict:
    proc = run_velvet("rotate", credential)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- arguments and files ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_a_port_out_of_range_is_a_usage_error(run_velvet: RunVelvet, command: str) -> None:
    proc = run_velvet(command, "--port", "99999")
    assert proc.returncode == 2
    assert "--port" in proc.stderr
    assert "99999" in proc.stderr
    clean(proc)


def test_a_deeply_nested_manifest_is_refused(run_velvet: RunVelvet, tmp_path: Path) -> None:
    path = tmp_path / "deep.yml"
    path.write_text("[" * 100_000, encoding="utf-8")
    proc = run_velvet("manifest", "check", str(path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:1: (document): nested more than 64 levels")
    clean(proc)


def test_nesting_under_an_alias_is_refused_too(run_velvet: RunVelvet, tmp_path: Path) -> None:
    path = tmp_path / "deep.yml"
    path.write_text("a: &x [1]\nb: *x\nc: " + "{k: " * 80 + "1" + "}" * 80 + "\n",
                    encoding="utf-8")
    proc = run_velvet("manifest", "check", str(path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:3: (document): nested more than 64 levels")
    clean(proc)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_not_a_manifest(run_velvet: RunVelvet, device: str) -> None:
    proc = run_velvet("manifest", "check", device)
    assert proc.returncode == 2
    assert proc.stderr == f"{device}:1: (file): not a regular file; refusing to read it\n"
    clean(proc)


def test_a_fifo_is_refused_without_waiting_for_a_writer(run_velvet: RunVelvet,
                                                       tmp_path: Path) -> None:
    fifo = tmp_path / "manifest.fifo"
    os.mkfifo(fifo)
    proc = run_velvet("manifest", "check", str(fifo))
    assert proc.returncode == 2
    assert f"{fifo}:1: (file): not a regular file" in proc.stderr
    clean(proc)


def test_a_manifest_over_the_size_limit_is_refused_unread(run_velvet: RunVelvet,
                                                          tmp_path: Path) -> None:
    from velvet_runner.manifest import MAX_BYTES

    path = tmp_path / "huge.yml"
    with open(path, "wb") as handle:
        handle.truncate(MAX_BYTES + 1)  # sparse: no disk used
    proc = run_velvet("manifest", "check", str(path))
    assert proc.returncode == 2
    assert f"{path}:1: (file): {MAX_BYTES + 1} bytes is over the" in proc.stderr
    clean(proc)


# --- records on the state branch ---------------------------------------------------------------


def test_one_corrupt_job_leaves_every_other_job_readable(run_velvet: RunVelvet, bare_repo: Path,
                                                         tmp_path: Path) -> None:
    good = rotate(run_velvet)
    bad_path = f"jobs/PM_SERVER_MAIL/{BAD_ID}.json"
    put_on_branch(bare_repo, tmp_path / "clone", {bad_path: BAD_BYTES})

    overview = run_velvet("status", "--json")
    assert overview.returncode == 2
    assert json.loads(overview.stdout)[CRED]["job_id"] == good["job_id"]
    listing = run_velvet("status", CRED, "--json")
    assert listing.returncode == 0, listing.stderr  # this credential's records all parse
    assert [j["job_id"] for j in json.loads(listing.stdout)] == [good["job_id"]]
    stuck = run_velvet("stuck", "--json")
    assert stuck.returncode == 2
    assert set(json.loads(stuck.stdout)) >= {"stuck", "overdue"}
    one = run_velvet("status", "--job", BAD_ID)
    assert one.returncode == 2
    assert one.stdout == ""
    for proc in (overview, stuck, one):
        assert bad_path in proc.stderr
        assert "invalid JSON" in proc.stderr
        assert "s3cr3t" not in proc.stderr  # pydantic's dump echoed the bytes
        clean(proc)
    # A stage on the good job is not disturbed by the bad one.
    abort = run_velvet("stage", good["job_id"], "abort")
    assert abort.returncode == 0, abort.stderr
    assert json.loads(abort.stdout)["status"] == "aborted"


def test_a_job_that_is_json_but_not_a_job_is_named_by_field(run_velvet: RunVelvet,
                                                           bare_repo: Path,
                                                           tmp_path: Path) -> None:
    rotate(run_velvet)
    bad_path = f"jobs/{CRED}/{BAD_ID}.json"
    put_on_branch(bare_repo, tmp_path / "clone",
                  {bad_path: json.dumps({"job_id": "s3cr3t", "status": 7})})
    proc = run_velvet("stage", BAD_ID, "verify")
    assert proc.returncode == 2
    assert bad_path in proc.stderr
    assert "credential: Field required" in proc.stderr
    assert "s3cr3t" not in proc.stderr
    clean(proc)


def test_a_lock_file_holding_a_list(run_velvet: RunVelvet, bare_repo: Path,
                                    tmp_path: Path) -> None:
    job = rotate(run_velvet)
    assert run_velvet("stage", job["job_id"], "abort").returncode == 0
    put_on_branch(bare_repo, tmp_path / "clone", {f"locks/{CRED}.json": "[]\n"})
    head = git("--git-dir", str(bare_repo), "rev-parse", BRANCH)

    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 2
    assert f"locks/{CRED}.json" in proc.stderr
    assert "job_id" in proc.stderr
    clean(proc)
    assert git("--git-dir", str(bare_repo), "rev-parse", BRANCH) == head  # nothing written
    due = run_velvet("due", "--json")
    assert due.returncode == 2
    assert CRED not in {row["credential"] for row in json.loads(due.stdout)}  # held: not due
    assert f"locks/{CRED}.json" in due.stderr
    clean(due)


def test_a_force_pushed_orphan_branch_is_refused(run_velvet: RunVelvet, bare_repo: Path,
                                                 tmp_path: Path) -> None:
    first = rotate(run_velvet)
    work = tmp_path / "orphan"
    git("init", "--quiet", str(work))
    (work / "README").write_text("someone else's history\n", encoding="utf-8")
    git("add", "-A", cwd=work)
    git("-c", "user.name=x", "-c", "user.email=x@localhost", "commit", "--quiet", "-m", "x",
        cwd=work)
    git("push", "--quiet", "--force", str(bare_repo), f"HEAD:refs/heads/{BRANCH}", cwd=work)
    replaced = git("--git-dir", str(bare_repo), "rev-parse", BRANCH)

    for args in (["status", "--json"], ["rotate", CRED], ["stage", first["job_id"], "abort"]):
        proc = run_velvet(*args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert f"state branch {BRANCH}" in proc.stderr
        assert "was replaced" in proc.stderr
        clean(proc)
    assert git("--git-dir", str(bare_repo), "rev-parse", BRANCH) == replaced  # no second job


def test_a_deleted_state_branch_is_refused(run_velvet: RunVelvet, bare_repo: Path) -> None:
    rotate(run_velvet)
    git("--git-dir", str(bare_repo), "branch", "--quiet", "-D", BRANCH)
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 3
    assert "is gone" in proc.stderr
    clean(proc)
    assert git("--git-dir", str(bare_repo), "branch", "--list") == ""


def test_the_branch_moving_on_normally_is_accepted(run_velvet: RunVelvet, bare_repo: Path,
                                                   tmp_path: Path) -> None:
    job = rotate(run_velvet)
    put_on_branch(bare_repo, tmp_path / "clone", {"NOTES": "a person's fast-forward\n"})
    proc = run_velvet("status", "--job", job["job_id"], "--json")
    assert proc.returncode == 0, proc.stderr


def test_a_typo_in_velvet_state_creates_nothing(run_velvet: RunVelvet, tmp_path: Path) -> None:
    typo = tmp_path / "stat.git"
    for args in (["rotate", CRED], ["status"], ["stuck"]):
        proc = run_velvet(*args, env={"VELVET_STATE": str(typo)})
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"no state repository at {typo}" in proc.stderr
        clean(proc)
    assert not typo.exists()


def test_the_default_state_repository_is_still_created(run_velvet: RunVelvet,
                                                       tmp_path: Path) -> None:
    proc = run_velvet("rotate", CRED, env={"VELVET_STATE": None})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / ".velvet" / "state.git" / "HEAD").exists()


def test_twenty_rotations_sharing_the_default_cache(tmp_path: Path) -> None:
    """No VELVET_CACHE_DIR and no VELVET_STATE: every process builds the same default cache
    (and the default state repository) at once; exactly one wins and nobody crashes."""
    env = {k: v for k, v in os.environ.items() if k not in ("VELVET_CACHE_DIR", "VELVET_STATE")}
    procs = [subprocess.Popen([sys.executable, "-m", "velvet_runner", "rotate", CRED],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(20)]
    results = [(p.returncode, out, err) for p in procs
               for out, err in [p.communicate(timeout=TIMEOUT)]]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [3] * 19, [err for code, _, err in results if code not in (0, 3)]
    for _, _, err in results:
        assert "Traceback" not in err
        assert "internal error" not in err
    entries = sorted(p.name for p in (tmp_path / ".velvet" / "cache").iterdir())
    repositories = [name for name in entries if not name.startswith(".")]
    assert len(repositories) == 1  # one cache repository
    assert [name for name in entries if name.startswith(".")] == [f".{repositories[0]}.lock"]
