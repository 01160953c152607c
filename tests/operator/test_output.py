"""The Output rule: a summary for people on a terminal, JSON with --json, off a terminal and in
Actions. The terminal cases run `velvet` on a real pseudo-terminal; the rest through click's
runner (whose stdout is not a terminal) and real processes with pipes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from operator_support import put_on_branch, run_in_pty

from velvet_runner.cli import cli

CRED = "HK_PLATFORM_FULL"
RunVelvet = Callable[..., "subprocess.CompletedProcess[str]"]


def _job(run_velvet: RunVelvet) -> dict:
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_click_runner_gets_json_as_before() -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["rotate", CRED])
    assert created.exit_code == 0, created.output
    job = json.loads(created.stdout)
    assert job["status"] == "init"
    for args in (["status"], ["status", CRED], ["status", "--job", job["job_id"]], ["due"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        json.loads(result.stdout)
    shown = runner.invoke(cli, ["status", "--job", job["job_id"]])
    assert shown.stdout == created.stdout  # the job JSON, byte for byte
    stuck = runner.invoke(cli, ["stuck"])
    assert stuck.exit_code == 1  # lists the overdue credentials
    assert set(json.loads(stuck.stdout)) >= {"stuck", "overdue", "revocation_debt"}


def test_human_on_request_through_the_runner() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["rotate", CRED, "--human"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{CRED}: job ")
    assert "Status: init" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].endswith(" abort")


def test_a_terminal_gets_a_summary_ending_with_the_next_commands(tmp_path: Path) -> None:
    ran = run_in_pty("rotate", CRED, cwd=tmp_path)
    assert ran.code == 0, ran.err
    lines = ran.out.rstrip("\n").splitlines()
    job_id = lines[0].split()[2]
    assert lines[0] == f"{CRED}: job {job_id} (operational, env prod)"
    assert lines[1] == "Status: init — operational job created"
    assert lines[-4:] == ["Next:", f"  velvet stage {job_id} verify",
                          "Or, to stop:", f"  velvet stage {job_id} abort"]
    assert len(lines) < 15  # not 100 lines of JSON
    assert "{" not in ran.out

    json_on_a_terminal = run_in_pty("status", "--job", job_id, "--json", cwd=tmp_path)
    assert json.loads(json_on_a_terminal.out)["job_id"] == job_id


def test_actions_get_json_even_on_a_terminal(tmp_path: Path) -> None:
    created = run_in_pty("rotate", CRED, cwd=tmp_path)
    assert created.code == 0, created.err
    job_id = created.out.split()[2]
    actions = {"GITHUB_ACTIONS": "true"}
    for args in (["status", "--job", job_id], ["status", CRED], ["status"], ["due"]):
        ran = run_in_pty(*args, cwd=tmp_path, env=actions)
        assert ran.code == 0, (args, ran.err)
        json.loads(ran.out)
    forced = run_in_pty("status", CRED, "--human", cwd=tmp_path, env=actions)
    assert forced.out.startswith(f"{CRED}: the newest 1 job(s)")


def test_a_pipe_gets_json(run_velvet: RunVelvet) -> None:
    job = _job(run_velvet)
    listing = run_velvet("status", CRED)
    assert [j["job_id"] for j in json.loads(listing.stdout)] == [job["job_id"]]


def test_status_job_says_how_many_events_it_shows(run_velvet: RunVelvet, bare_repo: Path,
                                                  tmp_path: Path) -> None:
    job = _job(run_velvet)
    events = [{"at": "2026-12-01T00:00:00Z", "actor": "ops", "action": "note",
               "from_state": "init", "to_state": "init", "detail": f"note {i}", "data": {}}
              for i in range(14)]
    put_on_branch(bare_repo, tmp_path / "clone", {
        f"jobs/{CRED}/{job['job_id']}.json":
            json.dumps({**job, "events": job["events"] + events}, indent=2, sort_keys=True)})

    ran = run_in_pty("status", "--job", job["job_id"], cwd=tmp_path)
    assert ran.code == 0, ran.err
    assert (f"Events (the last 10 of 15; all of them: velvet status --job {job['job_id']} "
            "--all):") in ran.out
    assert "note 13" in ran.out
    assert "note 3" not in ran.out
    every = run_in_pty("status", "--job", job["job_id"], "--all-events", cwd=tmp_path)
    assert "Events (all 15):" in every.out  # --all-events: the old name of --all
    assert "note 0" in every.out
    assert every.out.rstrip().endswith(f"velvet stage {job['job_id']} abort")


def test_no_detail_is_cut_without_all_showing_it_whole(run_velvet: RunVelvet, bare_repo: Path,
                                                       tmp_path: Path) -> None:
    job = _job(run_velvet)
    long = "the vendor said: " + " ".join(f"word{i}" for i in range(60)) + " THE END"
    event = {"at": "2026-12-01T00:00:00Z", "actor": "ops", "action": "note",
             "from_state": "init", "to_state": "init", "detail": long, "data": {}}
    rows = [{**job["consumers"][0], "distribute_status": "failed", "detail": long}]
    put_on_branch(bare_repo, tmp_path / "clone", {
        f"jobs/{CRED}/{job['job_id']}.json": json.dumps(
            {**job, "events": job["events"] + [event], "consumers": rows}, indent=2,
            sort_keys=True)})
    hint = (f"(Some details above are cut; velvet status --job {job['job_id']} --all shows "
            "them whole.)")
    for args in (["status", "--job", job["job_id"]], ["status", "--job", job["job_id"],
                                                      "--human"]):
        cut = run_in_pty(*args, cwd=tmp_path)
        assert cut.code == 0, cut.err
        assert "THE END" not in cut.out
        assert "…" in cut.out
        assert cut.out.rstrip().endswith(hint)
    whole = run_in_pty("status", "--job", job["job_id"], "--all", cwd=tmp_path)
    assert whole.out.count(long) == 3  # the status line, the row and the event
    assert hint not in whole.out


def test_status_due_and_stuck_end_with_commands_on_a_terminal(run_velvet: RunVelvet,
                                                              tmp_path: Path) -> None:
    job = _job(run_velvet)
    overview = run_in_pty("status", cwd=tmp_path)
    assert overview.code == 0, overview.err
    assert overview.out.rstrip().splitlines()[-1] == (
        f"  velvet stage {job['job_id']} verify    # {CRED} is init")
    due = run_in_pty("due", cwd=tmp_path)
    assert due.out.rstrip().splitlines()[-2:] == ["  velvet rotate PM_SERVER_MAIL",
                                                  "  velvet rotate AWS_DEPLOY_KEY"]
    stuck = run_in_pty("stuck", "--now", "2099-01-01T00:00:00Z", cwd=tmp_path)
    assert stuck.code == 1
    assert f"  velvet stage {job['job_id']} verify    # {CRED} is init" in stuck.out
    assert stuck.out.rstrip().endswith("velvet rotate AWS_DEPLOY_KEY")


def test_proceed_revoke_is_shown_with_its_ticket_and_typed_back_name() -> None:
    from velvet_runner.human import command
    from velvet_runner.machine import Action

    assert command("J", Action.PROCEED_REVOKE, credential=CRED) == (
        f"velvet stage J proceed_revoke --ticket <TICKET> --confirm {CRED}")
    assert command("J", Action.SKIP_CONSUMER, consumers=["a", "b"]) == (
        "velvet stage J skip_consumer --consumer a --consumer b")


def test_a_stage_on_a_terminal_ends_with_what_to_run_next(run_velvet: RunVelvet,
                                                          tmp_path: Path) -> None:
    job = _job(run_velvet)
    ran = run_in_pty("stage", job["job_id"], "abort", cwd=tmp_path)
    assert ran.code == 0, ran.err
    lines = ran.out.rstrip("\n").splitlines()
    assert lines[0] == f"{CRED}: job {job['job_id']} (operational, env prod)"
    assert lines[1].startswith("Status: aborted")
    assert lines[-3:] == ["Nothing left to run on this job.", "Next:",
                          f"  velvet status --job {job['job_id']}"]
    again = run_velvet("stage", job["job_id"], "abort")
    assert again.returncode == 2
    assert "can't abort when in aborted" in again.stderr


@pytest.mark.parametrize(("flags", "env", "logged"), [
    ([], {}, False),
    (["-v"], {}, True),
    ([], {"VELVET_LOG": "info"}, True),
    ([], {"VELVET_LOG": "warning"}, False),
    ([], {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "raxx/velvet", "GITHUB_RUN_ID": "7"},
     True),
], ids=["terminal", "-v", "VELVET_LOG=info", "VELVET_LOG=warning", "actions"])
def test_log_lines_only_when_asked_for_or_in_actions(tmp_path: Path, flags: list[str],
                                                     env: dict[str, str],
                                                     logged: bool) -> None:
    ran = run_in_pty(*flags, "rotate", CRED, cwd=tmp_path, env=env)
    assert ran.code == 0, ran.err
    line = "INFO velvet.engine job_id="
    assert (line in ran.err) == logged, ran.err
    if not logged:
        assert ran.err == ""  # the terminal shows the summary alone
