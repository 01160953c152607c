"""Fixtures for the GitHub Actions layer; all prefixed `gh_`.

The GitHub fake (velvet_sandbox.github) runs once per session on 127.0.0.1 and is reset
before each test. Jobs are real records in the test's own state repository (tests/conftest.py
gives every test a fresh bare repository as VELVET_STATE).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from velvet_runner import manifest as manifest_mod
from velvet_runner.github.api import GitHubApi
from velvet_runner.github.gate import ActionsGate
from velvet_runner.machine import Flow, State
from velvet_runner.records import ConsumerRow, Event, Job, new_job_id
from velvet_runner.store import Store
from velvet_sandbox import github as gh
from velvet_sandbox.server import ServerThread

REPO = "raxx/velvet"
TOKEN = "ghs_gate_token_for_tests_0123456789"
BOT = "github-actions[bot]"
APPROVERS = ["alice", "bob"]


@dataclass
class GitHubFake:
    state: gh.State
    url: str

    def api(self, token: str = TOKEN) -> GitHubApi:
        return GitHubApi(token, self.url)

    def protected(self, name: str, reviewers: list[str] | None = None) -> int:
        return self.state.add_environment(REPO, name, reviewers or APPROVERS)

    def unprotected(self, name: str) -> int:
        return self.state.add_environment(REPO, name, None)

    def stage_run(self, *, actor: str = BOT, triggering_actor: str | None = None,
                  workflow: str = "velvet-stage-2-mint.yml") -> int:
        return self.state.add_run(REPO, actor, workflow=workflow,
                                  triggering_actor=triggering_actor)

    def approve_run(self, actor: str, *, triggering_actor: str | None = None,
                    workflow: str = "velvet-approve.yml") -> int:
        return self.state.add_run(REPO, actor, workflow=workflow,
                                  triggering_actor=triggering_actor, status="in_progress")


@pytest.fixture(scope="session")
def _gh_server() -> Iterator[GitHubFake]:
    state = gh.State()
    server = ServerThread(gh.create_app(state), name="gh-actions-github")
    server.start()
    try:
        yield GitHubFake(state, server.url)
    finally:
        server.stop()


@pytest.fixture
def gh_github(_gh_server: GitHubFake) -> GitHubFake:
    """The GitHub fake, empty but for the repository, its workflows and a gate token."""
    response = httpx.post(_gh_server.url + "/__velvet/reset", timeout=5)
    response.raise_for_status()
    state = _gh_server.state
    state.add_repo(REPO)
    state.add_token(TOKEN, BOT)
    for file, inputs in (("velvet-stage-1-verify.yml",
                          ["credential", "flow", "env", "idempotency_key", "force_revoke"]),
                         ("velvet-stage-2-mint.yml", ["job_id", "credential", "env"]),
                         ("velvet-stage-3-revoke.yml", ["job_id", "ticket", "confirm", "env"]),
                         ("velvet-approve.yml", ["job_id", "action", "env"])):
        state.add_workflow(REPO, file, inputs, required=inputs[:1])
    return _gh_server


@pytest.fixture
def gh_manifest() -> manifest_mod.Manifest:
    """The shipped manifest, as tests/conftest.py copied it for this test."""
    return manifest_mod.load(os.environ["VELVET_MANIFEST"])


@pytest.fixture
def gh_credential(gh_manifest: manifest_mod.Manifest) -> manifest_mod.Credential:
    """HK_PLATFORM_FULL with approvers alice and bob for prod."""
    cred = gh_manifest.credential("HK_PLATFORM_FULL")
    assert cred is not None
    return cred.model_copy(update={"approvers": {"prod": list(APPROVERS)}})


@pytest.fixture
def gh_store(bare_repo: Path, tmp_path: Path) -> Store:
    return Store(str(bare_repo), "velvet-state", tmp_path / "gh-cache")


MakeJob = Callable[..., Job]


@pytest.fixture
def gh_job(gh_store: Store) -> MakeJob:
    """A job of HK_PLATFORM_FULL saved on the state branch, resting in `status`.

    Its events say it reached `status` `reached_ago` before now, so approvals recorded after
    that count, and earlier ones do not.
    """

    def make(status: State = State.VERIFIED, *, actor: str = "alice",
             reached_ago: timedelta = timedelta(minutes=1), save: bool = True) -> Job:
        now = datetime.now(UTC).replace(microsecond=0)
        reached = now - reached_ago
        created = reached - timedelta(minutes=1)
        job = Job(job_id=new_job_id(), credential="HK_PLATFORM_FULL", vendor="heroku",
                  flow_type=Flow.OPERATIONAL, env="prod", status=status, created_at=created,
                  updated_at=reached, actor=actor,
                  consumers=[ConsumerRow(consumer_id="heroku-config-api-prod",
                                         kind="heroku_config_var",
                                         target="heroku app raxx-api-prod config var X")],
                  events=[Event(at=created, actor=actor, action="create", to_state="init"),
                          Event(at=reached, actor=actor, action="verify", from_state="init",
                                to_state=str(status))])
        if save:
            job, _ = gh_store.create(job)
        return job

    return make


@pytest.fixture
def gh_gate(gh_github: GitHubFake,
            gh_manifest: manifest_mod.Manifest) -> Callable[..., ActionsGate]:
    def make(run_id: int, *, expect_credential: str | None = None) -> ActionsGate:
        return ActionsGate(gh_manifest, api=gh_github.api(), repository=REPO,
                           run_id=str(run_id), run_attempt="1",
                           expect_credential=expect_credential)

    return make


@pytest.fixture
def gh_actions_env(gh_github: GitHubFake, tmp_path: Path) -> Callable[..., dict[str, str]]:
    """The environment GitHub gives a step, pointing at the fake; files under tmp_path."""

    def make(run_id: int, *, actor: str = BOT, **extra: str) -> dict[str, str]:
        env = {
            "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": REPO, "GITHUB_RUN_ID": str(run_id),
            "GITHUB_RUN_ATTEMPT": "1", "GITHUB_API_URL": gh_github.url,
            "GITHUB_SERVER_URL": "https://github.example", "GITHUB_ACTOR": actor,
            "GITHUB_TRIGGERING_ACTOR": actor, "GITHUB_REF_NAME": "main",
            "GITHUB_OUTPUT": str(tmp_path / "github_output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md"),
            "VELVET_GATE_TOKEN": TOKEN,
        }
        env.update(extra)
        return env

    return make
