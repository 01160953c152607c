"""The `velvet` command as operators and workflows run it: real processes, a real git remote.

Exit codes (DESIGN.md): 0 ok · 1 stage ended failed/partial · 2 bad input · 3 conflict ·
4 disabled by feature flag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

CRED = "HK_PLATFORM_FULL"
BRANCH = "velvet-state"
RunVelvet = Callable[..., "subprocess.CompletedProcess[str]"]
TIMEOUT = 120  # safety net for hung children; not a timing assertion


def branch_head(bare: Path) -> str | None:
    proc = subprocess.run(["git", "--git-dir", str(bare), "rev-parse", "--verify", "--quiet",
                           f"refs/heads/{BRANCH}"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None


def branch_files(bare: Path) -> list[str]:
    proc = subprocess.run(["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only",
                           BRANCH], capture_output=True, text=True, check=True)
    return sorted(proc.stdout.splitlines())


def branch_blob(bare: Path, path: str) -> str:
    proc = subprocess.run(["git", "--git-dir", str(bare), "cat-file", "blob",
                           f"{BRANCH}:{path}"], capture_output=True, text=True, check=True)
    return proc.stdout


def commit_count(bare: Path) -> int:
    proc = subprocess.run(["git", "--git-dir", str(bare), "rev-list", "--count", BRANCH],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout


def set_flag(manifest_dir: Path, on: bool) -> None:
    (manifest_dir / "flags.yml").write_text(
        f"velvet_v2_rotation: {'true' if on else 'false'}\n", encoding="utf-8")


@pytest.fixture
def job_id(run_velvet: RunVelvet) -> str:
    """A fresh operational job for HK_PLATFORM_FULL, in init."""
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    assert job["status"] == "init"
    return str(job["job_id"])


# --- one job per credential, under a real race ---------------------------------------------


def test_twenty_rotations_at_once_one_wins(bare_repo: Path, tmp_path: Path) -> None:
    procs = []
    for i in range(20):
        env = {**os.environ, "VELVET_CACHE_DIR": str(tmp_path / f"cache-{i}")}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "velvet_runner", "rotate", CRED], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        results.append((proc.returncode, out, err))

    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [3] * 19, [(c, e) for c, _, e in results if c not in (0, 3)]
    (winner_out,) = [out for code, out, _ in results if code == 0]
    winner = json.loads(winner_out)
    job_id = winner["job_id"]
    for code, out, err in results:
        assert "Traceback" not in err
        if code == 3:
            assert out == ""
            assert f"active rotation already in progress for {CRED}: job {job_id}" in err
    assert branch_files(bare_repo) == ["debt/index.json", f"jobs/{CRED}/{job_id}.json",
                                       f"locks/{CRED}.json"]
    assert commit_count(bare_repo) == 1
    assert branch_blob(bare_repo, f"jobs/{CRED}/{job_id}.json") == winner_out
    assert json.loads(branch_blob(bare_repo, f"locks/{CRED}.json"))["job_id"] == job_id


def test_rotate_prints_the_job_in_the_polling_shape(run_velvet: RunVelvet, bare_repo: Path) -> None:
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    for key in ("job_id", "status", "consumers", "created_at", "updated_at", "credential",
                "flow_type", "env", "events"):
        assert key in job
    assert (job["credential"], job["flow_type"], job["env"]) == (CRED, "operational", "prod")
    assert [c["consumer_id"] for c in job["consumers"]] == [
        "heroku-config-console-prod", "heroku-config-api-prod", "heroku-config-console-staging",
        "heroku-config-api-staging", "github-actions-heroku-api-key"]
    assert {c["distribute_status"] for c in job["consumers"]} == {"pending"}
    assert job["created_at"].endswith("Z")
    assert branch_files(bare_repo) == ["debt/index.json", f"jobs/{CRED}/{job['job_id']}.json",
                                       f"locks/{CRED}.json"]


def test_second_rotate_is_a_conflict_naming_the_job(run_velvet: RunVelvet, job_id: str,
                                                    bare_repo: Path) -> None:
    head = branch_head(bare_repo)
    proc = run_velvet("rotate", CRED, "--flow", "revocation")
    assert proc.returncode == 3
    assert job_id in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) == head


def test_same_idempotency_key_twice_returns_the_same_job(run_velvet: RunVelvet,
                                                         bare_repo: Path) -> None:
    first = run_velvet("rotate", CRED, "--idempotency-key",
                       "3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert first.returncode == 0, first.stderr
    head = branch_head(bare_repo)
    files = branch_files(bare_repo)
    second = run_velvet("rotate", CRED, "--idempotency-key",
                        "3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["job_id"] == json.loads(first.stdout)["job_id"]
    assert branch_head(bare_repo) == head
    assert branch_files(bare_repo) == files


# --- the feature flag ------------------------------------------------------------------------


def test_rotate_with_the_flag_off_exits_4_and_writes_nothing(run_velvet: RunVelvet,
                                                             manifest_dir: Path,
                                                             bare_repo: Path) -> None:
    set_flag(manifest_dir, on=False)
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 4
    assert "velvet_v2_rotation" in proc.stderr
    assert proc.stdout == ""
    no_traceback(proc)
    assert branch_head(bare_repo) is None


def test_rotate_without_a_flags_file_is_off(run_velvet: RunVelvet, manifest_dir: Path,
                                            bare_repo: Path) -> None:
    (manifest_dir / "flags.yml").unlink()
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 4
    assert branch_head(bare_repo) is None


def test_stage_with_the_flag_off_exits_4_and_writes_nothing(run_velvet: RunVelvet, job_id: str,
                                                            manifest_dir: Path,
                                                            bare_repo: Path) -> None:
    head = branch_head(bare_repo)
    set_flag(manifest_dir, on=False)
    proc = run_velvet("stage", job_id, "verify")
    assert proc.returncode == 4
    assert "velvet_v2_rotation" in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) == head


# --- bad input: exit 2, nothing written ----------------------------------------------------


def test_unknown_credential(run_velvet: RunVelvet, bare_repo: Path) -> None:
    proc = run_velvet("rotate", "NO_SUCH_CREDENTIAL")
    assert proc.returncode == 2
    assert "NO_SUCH_CREDENTIAL" in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) is None


def test_inactive_credential(run_velvet: RunVelvet, bare_repo: Path) -> None:
    proc = run_velvet("rotate", "CF_DNS_EDIT_RAXX_APP")
    assert proc.returncode == 2
    assert "active: false" in proc.stderr
    assert "CF_DNS_EDIT_RAXX_APP" in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) is None


def test_prod_credential_on_a_staging_runner(run_velvet: RunVelvet, bare_repo: Path) -> None:
    proc = run_velvet("rotate", CRED, env={"VELVET_ENV": "staging"})
    assert proc.returncode == 2
    assert "staging" in proc.stderr
    assert "prod" in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) is None


def test_runner_without_velvet_env(run_velvet: RunVelvet, bare_repo: Path) -> None:
    proc = run_velvet("rotate", CRED, env={"VELVET_ENV": None})
    assert proc.returncode == 2
    assert "VELVET_ENV" in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) is None


def test_invalid_velvet_env(run_velvet: RunVelvet, bare_repo: Path) -> None:
    proc = run_velvet("rotate", CRED, env={"VELVET_ENV": "production"})
    assert proc.returncode == 2
    assert "VELVET_ENV" in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) is None


def test_stage_on_a_job_of_the_other_environment(run_velvet: RunVelvet, job_id: str,
                                                 bare_repo: Path) -> None:
    head = branch_head(bare_repo)
    proc = run_velvet("stage", job_id, "verify", env={"VELVET_ENV": "staging"})
    assert proc.returncode == 2
    assert "staging" in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) == head


def test_action_not_allowed_now(run_velvet: RunVelvet, job_id: str, bare_repo: Path) -> None:
    head = branch_head(bare_repo)
    proc = run_velvet("stage", job_id, "proceed_revoke", "--ticket", "ROT-2026-05-X",
                      "--confirm", CRED)
    assert proc.returncode == 2
    assert "can't proceed_revoke when in init; allowed: verify, abort" in proc.stderr
    assert proc.stdout == ""
    no_traceback(proc)
    assert branch_head(bare_repo) == head


def test_unknown_action(run_velvet: RunVelvet, job_id: str, bare_repo: Path) -> None:
    head = branch_head(bare_repo)
    proc = run_velvet("stage", job_id, "self_destruct")
    assert proc.returncode == 2
    assert "self_destruct" in proc.stderr
    no_traceback(proc)
    assert branch_head(bare_repo) == head


def test_bad_or_unknown_job_id(run_velvet: RunVelvet, job_id: str, bare_repo: Path) -> None:
    head = branch_head(bare_repo)
    for bad_id in ("../../etc", "../../etc/passwd", "00000000-0000-7000-8000-000000000000"):
        proc = run_velvet("stage", bad_id, "verify")
        assert proc.returncode == 2, (bad_id, proc.stderr)
        no_traceback(proc)
        assert "internal error" not in proc.stderr
        assert bad_id in proc.stderr
    status = run_velvet("status", "--job", "../../etc", "--json")
    assert status.returncode == 2
    no_traceback(status)
    assert branch_head(bare_repo) == head


def test_unknown_flow_is_a_usage_error(run_velvet: RunVelvet, bare_repo: Path) -> None:
    proc = run_velvet("rotate", CRED, "--flow", "yolo")
    assert proc.returncode == 2
    no_traceback(proc)
    assert branch_head(bare_repo) is None


def test_invalid_manifest_refuses_rotate(run_velvet: RunVelvet, manifest_dir: Path,
                                         bare_repo: Path) -> None:
    manifest = manifest_dir / "subscription-manifest.yml"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(
        "schedule: 90d", "schedule: soon", 1), encoding="utf-8")
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{manifest}:9: credentials[{CRED}].schedule: ")
    no_traceback(proc)
    assert branch_head(bare_repo) is None


# --- imports stay light ----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["rotate", "--help"]])
def test_cli_does_not_import_heavy_clients(tmp_path: Path, argv: list[str]) -> None:
    code = textwrap.dedent(f"""
        import sys
        sys.argv = ["velvet", *{argv!r}]
        from velvet_runner.cli import main
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        else:
            code = 0
        heavy = [m for m in ("boto3", "botocore", "github") if m in sys.modules]
        print("EXIT", code)
        print("HEAVY", ",".join(heavy) or "-")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, check=False, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2] == "EXIT 0"
    assert lines[-1] == "HEAVY -"
    assert "Usage: velvet" in proc.stdout
    if argv == ["--help"]:
        for command in ("manifest", "rotate", "stage", "status", "due", "stuck", "serve",
                        "sandbox", "demo"):
            assert command in proc.stdout


@pytest.mark.parametrize(("argv", "extra"), [
    (["sandbox"], "sandbox"), (["demo"], "sandbox"), (["rehearse", "run"], "rehearse")])
def test_a_sandbox_command_without_its_extra_names_what_to_install(
        tmp_path: Path, argv: list[str], extra: str) -> None:
    """An install without the sandbox's dependencies (a stage's): the mounted command exits 2
    naming itself, the module and the extra. The child Python is that install: starlette and
    moto cannot be imported in it."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["starlette"] = sys.modules["moto"] = None  # not installed here
        sys.argv = ["velvet", *{argv!r}]
        from velvet_runner.cli import main
        main()
    """)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)  # where rehearse must start
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, check=False, timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (f"velvet: velvet {argv[0]} needs starlette, which is not installed: "
                           f"pip install 'velvet-runner[{extra}]', or the README's install\n")
    no_traceback(proc)


# --- read-only commands ----------------------------------------------------------------------


def test_status_json_parses(run_velvet: RunVelvet) -> None:
    empty = run_velvet("status", "--json")
    assert empty.returncode == 0, empty.stderr
    names = {"HK_PLATFORM_FULL", "PM_SERVER_MAIL", "CF_DNS_EDIT_RAXX_APP", "AWS_DEPLOY_KEY"}
    assert json.loads(empty.stdout) == dict.fromkeys(names)

    job_id = json.loads(run_velvet("rotate", CRED).stdout)["job_id"]
    proc = run_velvet("status", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == names
    assert data[CRED]["job_id"] == job_id
    assert data[CRED]["status"] == "init"
    assert data["PM_SERVER_MAIL"] is None

    listing = run_velvet("status", CRED, "--json")
    assert listing.returncode == 0, listing.stderr
    assert [j["job_id"] for j in json.loads(listing.stdout)] == [job_id]
    one = run_velvet("status", "--job", job_id, "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == data[CRED]


def test_status_of_an_unknown_credential(run_velvet: RunVelvet) -> None:
    proc = run_velvet("status", "NO_SUCH_CREDENTIAL", "--json")
    assert proc.returncode == 2
    no_traceback(proc)


def test_due_json_parses(run_velvet: RunVelvet) -> None:
    proc = run_velvet("due", "--now", "2026-01-01T00:00:00Z", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    assert all("credential" in row for row in rows)
    assert "CF_DNS_EDIT_RAXX_APP" not in {row["credential"] for row in rows}  # active: false


def test_due_with_a_bad_time(run_velvet: RunVelvet) -> None:
    proc = run_velvet("due", "--now", "yesterday-ish", "--json")
    assert proc.returncode == 2
    no_traceback(proc)
