"""GITHUB_OUTPUT, GITHUB_STEP_SUMMARY and ::add-mask::, written to temporary files and pipes."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from velvet_runner.errors import GateRefused
from velvet_runner.github import summary as gh_summary
from velvet_runner.github.gate import gate_from_env
from velvet_runner.machine import TABLES, Action, Flow, State
from velvet_runner.records import Event
from velvet_runner.settings import Settings


def _files(tmp_path):
    return {"GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(tmp_path / "sum")}


def test_outputs_hold_the_job_id_and_status_and_nothing_else(gh_job, tmp_path):
    job = gh_job(State.VERIFIED, save=False)
    env = _files(tmp_path)

    gh_summary.write_outputs(job, env)

    lines = (tmp_path / "out").read_text().splitlines()
    assert dict(line.split("=", 1) for line in lines) == {
        "job_id": job.job_id, "status": "verified", "credential": "HK_PLATFORM_FULL",
        "env": "prod", "flow": "operational"}


def test_outputs_append_so_two_steps_can_share_the_file(gh_job, tmp_path):
    env = _files(tmp_path)
    gh_summary.write_outputs(gh_job(State.VERIFIED, save=False), env)
    gh_summary.write_outputs(gh_job(State.VALIDATED, save=False), env)
    statuses = [line for line in (tmp_path / "out").read_text().splitlines()
                if line.startswith("status=")]
    assert statuses == ["status=verified", "status=validated"]


def test_nothing_is_written_outside_actions(gh_job, tmp_path):
    gh_summary.write_outputs(gh_job(save=False), {})
    assert list(tmp_path.glob("out")) == []


def test_summary_has_the_consumer_table_the_path_and_the_approvals(gh_job, tmp_path):
    job = gh_job(State.VERIFIED, save=False)
    now = datetime.now(UTC).replace(microsecond=0)
    job.events.append(Event(at=now, actor="github-actions[bot]", action="approval",
                            from_state="verified", to_state="verified",
                            data={"approver": "bob", "environment": "velvet-prod",
                                  "kind": "environment_approval",
                                  "run_url": "https://github.example/raxx/velvet/actions/runs/7"}))
    job.events.append(Event(at=now, actor="github-actions[bot]", action="dispatched",
                            from_state="verified", to_state="verified",
                            data={"workflow": "velvet-stage-2-mint.yml",
                                  "html_url": "https://github.example/r/actions/runs/8"}))
    env = {**_files(tmp_path), "GITHUB_REPOSITORY": "raxx/velvet", "GITHUB_RUN_ID": "42",
           "GITHUB_SERVER_URL": "https://github.example", "GITHUB_ACTOR": "alice"}

    gh_summary.write_outputs(job, env)

    summary = (tmp_path / "sum").read_text()
    assert "| `heroku-config-api-prod` |" in summary  # the consumer table
    assert "```mermaid\nstateDiagram-v2" in summary
    assert "class verified current" in summary
    assert "class init visited" in summary
    assert "| `bob` | `velvet-prod` | environment_approval |" in summary
    assert "velvet-stage-2-mint.yml` → https://github.example/r/actions/runs/8" in summary
    assert "This run: https://github.example/raxx/velvet/actions/runs/42 (actor `alice`)" in (
        summary)
    # the workflow that runs a verified job next, from the one table the status page reads
    assert "Run next: Stage 2 — mint + distribute (`velvet-stage-2-mint.yml`)" in summary
    assert "`proceed_mint` (environment `velvet-prod`)" in summary


def test_the_summary_diagram_is_drawn_from_the_machine_table(gh_job):
    summary = gh_summary.summary_markdown(gh_job(save=False), {})
    for (src, trigger), dst in TABLES[Flow.OPERATIONAL].items():
        if src == dst:
            continue
        assert f"    {src} --> {dst} :" in summary, (src, trigger, dst)


def test_summary_never_shows_a_registered_secret(gh_job):
    from velvet_runner import redact

    job = gh_job(save=False)
    value = "hk-secret-value-that-slipped-into-a-detail"
    redact.register(value)
    job.consumers[0].detail = f"write failed for {value}"
    assert value not in gh_summary.summary_markdown(job, {})


def test_summary_is_cut_to_what_github_accepts(gh_job):
    job = gh_job(save=False)
    job.consumers = [job.consumers[0].model_copy(update={"consumer_id": f"c-{i}"})
                     for i in range(40_000)]
    text = gh_summary.summary_markdown(job, {})
    assert len(text.encode()) <= gh_summary.SUMMARY_LIMIT + 200
    assert "summary truncated" in text


@pytest.mark.parametrize("in_actions", [True, False])
def test_register_masks_a_value_before_anything_else_is_printed(tmp_path, in_actions):
    """redact.register emits ::add-mask:: on stdout (where the runner reads workflow
    commands) the moment a value is registered, and only under Actions."""
    script = ("from velvet_runner import redact\n"
              "from pydantic import SecretStr\n"
              "redact.register(SecretStr('tok-live-0123456789'))\n"
              "redact.register('tok-live-0123456789')\n"  # once is enough
              "print('job json follows')\n")
    env = {"PATH": "/usr/bin:/bin", "GITHUB_ACTIONS": "true" if in_actions else "false"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, check=True, cwd=tmp_path, timeout=60)
    if in_actions:
        assert proc.stdout.splitlines() == ["::add-mask::tok-live-0123456789",
                                            "job json follows"]
    else:
        assert proc.stdout.splitlines() == ["job json follows"]


def test_gate_from_env_only_inside_actions(gh_manifest):
    settings = Settings.from_env({"VELVET_ENV": "prod"})
    assert gate_from_env(settings, gh_manifest, {}) is None
    gate = gate_from_env(settings, gh_manifest, {
        "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "raxx/velvet", "GITHUB_RUN_ID": "9",
        "VELVET_EXPECT_CREDENTIAL": "HK_PLATFORM_FULL"})
    assert gate is not None
    assert gate.run_id == "9"
    assert gate.expect_credential == "HK_PLATFORM_FULL"
    with pytest.raises(GateRefused, match="GITHUB_RUN_ID"):
        gate_from_env(settings, gh_manifest, {"GITHUB_ACTIONS": "true"})


def test_the_unsafe_fallback_env_var_is_gone(gh_github, gh_gate, gh_job, gh_credential,
                                             monkeypatch):
    """The old draft took a fallback approver's name from VELVET_FALLBACK_APPROVER: anyone
    could type a name. It is ignored now."""
    monkeypatch.setenv("VELVET_FALLBACK_APPROVER", "bob")
    gh_github.unprotected("velvet-prod")
    run = gh_github.stage_run()
    with pytest.raises(GateRefused, match="no fallback approval"):
        gh_gate(run).check(gh_job(save=False), Action.PROCEED_MINT, gh_credential)


def test_run_context_names_the_run_and_never_a_token():
    context = gh_summary.run_context({
        "GITHUB_REPOSITORY": "raxx/velvet", "GITHUB_RUN_ID": "5", "GITHUB_ACTOR": "alice",
        "GITHUB_SERVER_URL": "https://github.example", "VELVET_GATE_TOKEN": "ghs_x",
        "GITHUB_TOKEN": "ghs_y"})
    assert context["run_url"] == "https://github.example/raxx/velvet/actions/runs/5"
    assert "ghs_x" not in repr(context)
    assert "ghs_y" not in repr(context)
