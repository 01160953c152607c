"""The status app reading the state branch as it does in production: fetched on an interval
from a remote that wants a read token, and `/healthz` saying 503 (with why) while it cannot
read the branch or its copy is too old, and 200 again once it can.

The remote is a real git host on loopback (velvet_sandbox/githttp.py: `git http-backend` behind a
token, as GitHub serves a repository to a `contents: read` token).
"""
# ruff: noqa: F811 - the fixtures imported from test_web are parameters here

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient
from test_web import AUTH, CRED, seeded, settings, store  # noqa: F401 - fixtures

from velvet_runner.records import Job
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.web import create_app
from velvet_sandbox.githttp import GitHost
from velvet_sandbox.server import ServerThread

STATE_TOKEN = "github_pat_11READONLY_0123456789abcdefSECRET"


def until(check: Callable[[], bool], what: str) -> None:
    """Wait for the refresher to get there (a safety net of 30 s, not a timing assertion)."""
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"never saw {what}")
        time.sleep(0.05)


def health(c: TestClient) -> tuple[int, dict[str, str]]:
    response = c.get("/healthz")
    return response.status_code, response.json()


def test_healthz_turns_503_when_the_branch_cannot_be_read_and_back(
        settings: Settings, store: Store, seeded: dict[str, Job], tmp_path: Path) -> None:
    remote = Path(settings.state)
    with TestClient(create_app(settings, store=store, refresh_seconds=0.05)) as c:
        assert health(c) == (200, {"status": "ok", "service": "velvet"})
        remote.rename(tmp_path / "moved.git")  # the remote is gone: every fetch fails
        until(lambda: health(c)[0] == 503, "/healthz degraded")
        status, body = health(c)
        assert body == {"status": "degraded", "service": "velvet", "reason":
                        "cannot read the state branch: the last fetch failed (see the server "
                        "log)"}
        assert str(tmp_path) not in body["reason"]  # the probe is public: no paths, no URLs
        assert c.get("/health").status_code == 503
        # what it last read is still served, and the page says it may be stale
        assert c.get(f"/tokens/{CRED}/rotations", headers=AUTH).status_code == 200
        assert "the last fetch failed" in c.get("/", headers=AUTH).text
        (tmp_path / "moved.git").rename(remote)
        until(lambda: health(c)[0] == 200, "/healthz ok again")
        assert health(c)[1] == {"status": "ok", "service": "velvet"}


def test_healthz_turns_503_when_the_copy_is_older_than_the_bound(
        settings: Settings, store: Store, seeded: dict[str, Job]) -> None:
    bounded = settings.model_copy(update={"status_max_age_seconds": 1.0})
    # the refresher waits an hour, so nothing renews the copy after the first fetch
    with TestClient(create_app(bounded, store=store, refresh_seconds=3600)) as c:
        until(lambda: health(c)[0] == 503, "a copy older than 1 s")
        reason = health(c)[1]["reason"]
        assert reason.startswith("the copy of the state branch is ")
        assert reason.endswith(" s old (the bound is 1 s)")
        c.app.state.velvet.state.refresh()  # type: ignore[attr-defined]
        assert health(c)[0] == 200


@pytest.fixture
def git_host(settings: Settings, seeded: dict[str, Job]) -> GitHost:
    """The test's state repository served read-only over HTTP behind STATE_TOKEN."""
    return GitHost(Path(settings.state).parent, tokens={STATE_TOKEN})


def test_the_app_fetches_with_a_read_token_that_no_command_line_or_log_shows(
        settings: Settings, seeded: dict[str, Job], git_host: GitHost, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    trace = tmp_path / "git-trace.txt"
    monkeypatch.setenv("GIT_TRACE", str(trace))  # git logs every command it runs, with argv
    with ServerThread(git_host.app(), name="githost") as host:
        remote = f"{host.url}/{Path(settings.state).name}"
        production = settings.model_copy(update={
            "state": remote, "state_token": SecretStr(STATE_TOKEN),
            "cache_dir": tmp_path / "prod-cache"})
        with caplog.at_level(logging.DEBUG), TestClient(create_app(production)) as c:
            assert health(c)[0] == 200
            jobs = c.get(f"/tokens/{CRED}/rotations", headers=AUTH).json()["jobs"]
            assert {j["job_id"] for j in jobs} == {j.job_id for j in seeded.values()}
        assert git_host.refused >= 1  # git was challenged first, then answered with the token
        assert git_host.served >= 2

        for token, label in ((SecretStr("github_pat_11WRONG_000000000000000000"), "wrong"),
                             (None, "none")):
            wrong = production.model_copy(update={"state_token": token,
                                                  "cache_dir": tmp_path / f"cache-{label}"})
            with TestClient(create_app(wrong)) as c:
                status, body = health(c)
                assert status == 503, label
                assert body["reason"].startswith("cannot read the state branch"), label

    traced = trace.read_text(encoding="utf-8", errors="replace")
    assert "run_command" in traced  # the trace did record the commands git ran
    assert "$VELVET_STATE_TOKEN" in traced  # the helper names the variable, not the value
    assert STATE_TOKEN not in traced
    assert STATE_TOKEN not in caplog.text
    for config in tmp_path.glob("*cache*/*/config"):
        assert STATE_TOKEN not in config.read_text(encoding="utf-8")
