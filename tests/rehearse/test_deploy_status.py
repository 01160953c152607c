"""velvet-deploy-status.yml, run by act against the sandbox: the status app built by the Heroku
fake from this repository's files, served by the fake's dyno, then the runbook's smoke check
against the hostname Heroku reports. Green as shipped; red, naming the probe, when the deployed
source has no /health (runbook section 13a: a stale slug without it).

The deployed app reads the rehearsal's state branch over HTTP with a read token (a git host on
loopback standing in for GitHub), as it does in production.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from velvet_sandbox.githttp import GitHost
from velvet_sandbox.rehearse.runner import Rehearsal
from velvet_sandbox.server import ServerThread

DEPLOY = "velvet-deploy-status.yml"
APP = "raxx-velvet-prod"
SCANNED: list[str] = []  # more values no log or summary may show


@pytest.fixture(scope="module")
def deploying(rehearsal: Rehearsal) -> Iterator[Rehearsal]:
    """The status app on the Heroku fake, its deploy token and read token as the workflow's
    environment secrets, and the state branch served read-only behind a token."""
    rh = rehearsal
    state_token = f"github_pat_rehearse_{secrets.token_hex(16)}"
    read_token = secrets.token_urlsafe(24)
    host = GitHost(rh.folder, tokens={state_token})
    with ServerThread(host.app(), name="githost") as git:
        heroku = rh.sandbox.heroku
        heroku.add_app(APP, {
            "VELVET_STATE": f"{git.url}/state.git", "VELVET_STATE_TOKEN": state_token,
            "VELVET_STATUS_TOKENS": read_token, "VELVET_ENV": "prod",
            "VELVET_SERVE_HOST": "127.0.0.1"})  # loopback only, here
        _, deploy_token = heroku.add_authorization("deploy@raxx.app", ["write"], "deploys")
        rh.extra_secrets.update({"VELVET_STATUS_DEPLOY_TOKEN": deploy_token,
                                 "VELVET_STATUS_TOKEN": read_token})
        SCANNED.append(state_token)  # a config var of the app, never the workflow's
        rh.extra_vars.update({"VELVET_STATUS_APP": APP, "VELVET_SMOKE_WAIT_SECONDS": "5"})
        try:
            yield rh
        finally:
            heroku.deploys.reset()


def _no_values(rh: Rehearsal, *texts: str) -> None:
    values = [*rh.extra_secrets.values(), *rh.sandbox.token_values(), *SCANNED]
    for text in texts:
        for value in values:
            assert value not in text


def test_the_deploy_is_smoke_checked_green(deploying: Rehearsal) -> None:
    rh = deploying
    run_id = rh.dispatch(DEPLOY, {"env": "prod"}, as_login="alice")
    [result] = rh.drain()
    assert result.run_id == run_id
    assert result.conclusion == "success", result.log
    web_url = result.outputs["web_url"]
    assert web_url.startswith("http://127.0.0.1:")
    for probe in ("ok   /healthz at", "ok   /health at", "ok   /flags (with the read token)",
                  "ok   /flags without a token is refused"):
        assert probe in result.log, probe
    assert "smoke check passed: 4 probes" in result.log
    assert "| /health | ok |" in result.summary.replace(f"| {web_url} ", "")
    _no_values(rh, result.log, result.summary, json.dumps(result.outputs))


def test_a_deploy_without_health_fails_naming_the_probe(deploying: Rehearsal,
                                                        tmp_path: Path) -> None:
    """The same workflow from a checkout whose app lost its /health alias."""
    rh = deploying
    work = tmp_path / "checkout"
    shutil.copytree(rh.project, work)
    app_py = work / "velvet_runner" / "web" / "app.py"
    source = app_py.read_text(encoding="utf-8")
    start = source.index('    Documented("/health", api.health')
    end = source.index('name="health_alias"),', start) + len('name="health_alias"),')
    app_py.write_text(source[:start] + source[end + 1:], encoding="utf-8")
    for args in (["init", "--quiet", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "--quiet", "-m",
                  "a release without /health"]):
        subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
    run_id = rh.caller(work, DEPLOY, {"env": "prod"}, as_login="alice")
    [result] = rh.drain()
    assert result.run_id == run_id
    assert result.conclusion == "failure", result.log
    assert "FAIL /health at" in result.log
    assert "smoke check failed: /health at http://127.0.0.1:" in result.log
    assert "answered 404, expected 200" in result.log
    assert "FAIL /healthz" not in result.log  # only the missing probe is named
    assert "ok   /healthz at" in result.log
    _no_values(rh, result.log, result.summary)
