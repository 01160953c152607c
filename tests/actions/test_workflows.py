"""The workflows and action.yml: GitHub's schemas, zizmor, and this project's rules (STYLE 7).

check-jsonschema validates with its bundled SchemaStore schemas and zizmor runs --offline, so
neither needs the network.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from velvet_runner.github.gate import GATED

from .workflows import ACTION, ROOT, WORKFLOW_DIR, WORKFLOWS, dispatch_inputs, load, steps

BIN = Path(sys.executable).parent
TIMEOUT = 300
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+(\.\d+)*\s*$")
EXPECTED_WORKFLOWS = {
    "ci.yml", "velvet-approve.yml", "velvet-doctor.yml", "velvet-manifest-check.yml",
    "velvet-recovery.yml",
    "velvet-revocation.yml", "velvet-schedule.yml", "velvet-stage-1-verify.yml",
    "velvet-stage-2-mint.yml", "velvet-stage-3-revoke.yml", "velvet-deploy-status.yml",
}


def _tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


def test_the_workflows_exist():
    assert {p.name for p in WORKFLOWS} == EXPECTED_WORKFLOWS


def test_workflows_match_githubs_workflow_schema():
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
         *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_action_matches_githubs_action_schema():
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing():
    proc = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", str(WORKFLOW_DIR.relative_to(ROOT)),
         "action.yml"], capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr


def test_zizmor_does_catch_an_injection(tmp_path):
    """The check above can fail: a run: script expanding an input is an error."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on:\n  workflow_dispatch:\n    inputs:\n      credential: {type: string}\n"
        "permissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n    permissions: {}\n"
        "    steps:\n      - run: velvet rotate ${{ inputs.credential }}\n")
    proc = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", str(bad)],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode != 0
    assert "template-injection" in proc.stdout + proc.stderr


# --- project rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_empty_at_the_top_and_granted_per_job(path):
    doc = load(path)
    assert doc.get("permissions") == {}, "start from permissions: {}"
    for name, job in doc["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"job {name} must say what it needs"
        for scope, level in job["permissions"].items():
            assert level in ("read", "write", "none"), (name, scope)


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_every_action_is_pinned_by_full_sha_with_its_version(path):
    for line in path.read_text().splitlines():
        if re.match(r"^\s*(-\s+)?uses:", line) and "uses: ./" not in line:
            assert PINNED.match(line), f"{path.name}: not SHA-pinned with a version: {line}"


def test_each_action_is_pinned_to_one_sha_everywhere():
    pins: dict[str, set[str]] = {}
    for path in [*WORKFLOWS, ACTION]:
        for line in path.read_text().splitlines():
            match = PINNED.match(line)
            if match:
                pins.setdefault(match.group(1), set()).add(match.group(2))
    assert pins, "no pinned actions found"
    assert {name: shas for name, shas in pins.items() if len(shas) > 1} == {}


def test_no_expression_inside_a_run_script():
    for step in steps():
        assert "${{" not in str(step.step.get("run", "")), (
            f"{step.file.name} {step.job}: pass it through env:")


def test_checkouts_never_persist_credentials():
    """The state branch is pushed with a credential helper that reads the token from the
    velvet step's env, so no job needs the token written into .git/config."""
    checkouts = [s for s in steps() if str(s.step.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert (step.step.get("with") or {}).get("persist-credentials") is False, (
            f"{step.file.name} {step.job}")


def test_action_steps_declare_a_shell_and_take_inputs_through_env():
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step.get("shell") == "bash"
            assert "${{" not in step["run"]
    install = next(s for s in action["runs"]["steps"] if "GITHUB_ACTION_PATH" in s.get("run", ""))
    assert "pip install" in install["run"]
    python = next(s for s in action["runs"]["steps"] if "setup-python" in s.get("uses", ""))
    assert python["with"]["update-environment"] is False
    assert action["branding"]["icon"] != "key"  # excluded from Feather icons on GitHub
    wanted = {"command", "credential", "job-id", "action", "flow", "idempotency-key",
              "force-revoke", "consumer", "ticket", "confirm"}
    assert wanted <= set(action["inputs"])


def _jobs():
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            yield path, name, job


def test_secrets_only_in_jobs_bound_to_an_environment():
    for path, name, job in _jobs():
        text = str(job)
        if "secrets." in text:
            assert job.get("environment"), f"{path.name} {name} uses secrets without one"


def test_aws_oidc_only_in_jobs_bound_to_an_environment():
    for path, name, job in _jobs():
        if job["permissions"].get("id-token") == "write":
            assert job.get("environment"), f"{path.name} {name}"
            assert "aws-actions/configure-aws-credentials" in str(job["steps"])
        else:
            assert "configure-aws-credentials" not in str(job["steps"]), f"{path.name} {name}"


def test_state_branch_writes_only_where_velvet_changes_jobs():
    writers = {"rotate", "stage", "approve", "dispatch"}
    for path, name, job in _jobs():
        runs = " ".join(str(s.get("run", "")) for s in job["steps"])
        writes = any(re.search(rf"\bvelvet {w}\b", runs) for w in writers)
        contents = job["permissions"].get("contents")
        if contents == "write":
            assert writes, f"{path.name} {name} may push but runs nothing that writes"
        if writes and "--each-due" not in runs:
            assert contents == "write", f"{path.name} {name} writes the state branch"


def test_app_tokens_name_their_repositories_and_only_the_secrets_permission():
    tokens = [s for s in steps()
              if str(s.step.get("uses", "")).startswith("actions/create-github-app-token@")]
    assert tokens
    for step in tokens:
        given = step.step["with"]
        assert given.get("repositories"), f"{step.file.name} {step.job}"
        permissions = {k: v for k, v in given.items() if k.startswith("permission-")}
        assert set(permissions) == {"permission-secrets"}, f"{step.file.name} {step.job}"
        # Stage 1 (the testing flow's probes) and doctor only read secret keys; the rest write.
        readers = ("velvet-stage-1-verify.yml", "velvet-doctor.yml")
        expected = "read" if step.file.name in readers else "write"
        assert permissions["permission-secrets"] == expected, f"{step.file.name} {step.job}"


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if "credential" in dispatch_inputs(
    load(p)) or "confirm" in dispatch_inputs(load(p))], ids=lambda p: p.name)
def test_one_concurrency_group_per_credential_never_cancelling(path):
    doc = load(path)
    group = doc["concurrency"]
    key = "credential" if "credential" in dispatch_inputs(doc) else "confirm"
    # The emergency revocation has a group of its own: it never queues behind a waiting stage.
    prefix = "velvet-revocation-" if path.name == "velvet-revocation.yml" else "velvet-"
    assert group["group"] == f"{prefix}${{{{ inputs.{key} }}}}"
    assert group["cancel-in-progress"] is False
    if "queue" in group:
        assert group["queue"] in ("single", "max")


@pytest.mark.parametrize(("file", "action", "environment"), [
    ("velvet-stage-2-mint.yml", "proceed_mint", "velvet-${{ inputs.env }}"),
    ("velvet-stage-3-revoke.yml", "proceed_revoke", "velvet-${{ inputs.env }}-revoke"),
    ("velvet-revocation.yml", "revoke", "velvet-${{ inputs.env }}-revoke"),
])
def test_gated_stages_run_in_the_environment_the_runner_checks(file, action, environment):
    doc = load(WORKFLOW_DIR / file)
    [job] = doc["jobs"].values()
    assert job["environment"] == environment
    assert GATED[action] == environment.replace("${{ inputs.env }}", "{env}")
    assert job["permissions"].get("actions") in ("read", "write")  # to read the approvals
    assert "VELVET_GATE_TOKEN" in str(job["steps"])
    assert f" {action}" in str(job["steps"])


def test_stage_1_starts_stage_2_with_return_run_details_and_the_bot_token():
    doc = load(WORKFLOW_DIR / "velvet-stage-1-verify.yml")
    [job] = doc["jobs"].values()
    assert job["permissions"]["actions"] == "write"
    dispatch = next(s for s in job["steps"] if "velvet dispatch" in str(s.get("run", "")))
    assert "velvet-stage-2-mint.yml" in dispatch["run"]
    assert dispatch["env"]["VELVET_GATE_TOKEN"] == "${{ github.token }}"
    assert "steps.verify.outputs.status == 'verified'" in dispatch["if"]


def test_stage_inputs_are_typed():
    stage1 = dispatch_inputs(load(WORKFLOW_DIR / "velvet-stage-1-verify.yml"))
    assert stage1["flow"]["type"] == "choice"
    assert stage1["force_revoke"]["type"] == "boolean"
    assert {"credential", "flow", "idempotency_key", "force_revoke"} <= set(stage1)
    recovery = dispatch_inputs(load(WORKFLOW_DIR / "velvet-recovery.yml"))
    assert recovery["action"]["type"] == "choice"
    from velvet_runner.machine import Action

    assert set(recovery["action"]["options"]) <= {a.value for a in Action}
    approve = dispatch_inputs(load(WORKFLOW_DIR / "velvet-approve.yml"))
    assert set(approve["action"]["options"]) <= set(GATED)


def test_the_manifest_check_runs_on_manifest_pull_requests_only():
    from .workflows import triggers

    on = triggers(load(WORKFLOW_DIR / "velvet-manifest-check.yml"))
    assert set(on) == {"pull_request"}
    assert on["pull_request"]["paths"] == ["manifest/**"]


def test_ci_runs_the_ci_script():
    doc = load(WORKFLOW_DIR / "ci.yml")
    assert any(s.get("run") == "bash .ci/run" for s in doc["jobs"]["test"]["steps"])
