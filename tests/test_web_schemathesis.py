"""Schemathesis against the served OpenAPI document: no 5xx and no response off the schema.

The app runs under uvicorn on 127.0.0.1 (a real socket, as in production). Generated requests
rarely name a real credential or job, so a second test replays the same checks on requests for
the seeded jobs, whose bodies exercise the Job schema in full. A third runs the schemathesis
command itself, every check and phase, against `velvet serve`, and expects no failure at all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from velvet_runner.machine import Flow, State
from velvet_runner.records import ConsumerRow, Debt, Event, Job, RowStatus, new_job_id
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.web import create_app, openapi_document
from velvet_sandbox.server import ServerThread

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
CRED = "HK_PLATFORM_FULL"
READ_TOKEN = "schemathesis-read-TOKEN-91b3e7"  # VELVET_STATUS_TOKENS: the app is closed
AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}

MANIFEST = """\
version: 1
credentials:
  - name: HK_PLATFORM_FULL
    vendor: heroku
    env: prod
    schedule: 90d
    vault: {kind: infisical_secret, project_id: raxx, environment: prod, name: HK_PLATFORM_FULL}
    consumers:
      - {consumer_id: heroku-config-api-prod, kind: heroku_config_var, app: raxx-api-prod,
         var: HEROKU_API_KEY, env: prod, healthcheck: {type: http, url: "https://x.example/h"}}
  - name: PM_SERVER_MAIL
    vendor: postmark
    env: prod
    vault: {kind: infisical_secret, project_id: raxx, environment: prod, name: PM_SERVER_MAIL}
"""


def _job(status: State) -> Job:
    at = datetime.now(UTC).replace(microsecond=0)
    return Job(
        job_id=new_job_id(), credential=CRED, vendor="heroku", flow_type=Flow.OPERATIONAL,
        env="prod", status=status, created_at=at, updated_at=at,
        consumers=[ConsumerRow(consumer_id="heroku-config-api-prod", kind="heroku_config_var",
                               target="heroku app raxx-api-prod config var HEROKU_API_KEY",
                               distribute_status=RowStatus.SUCCEEDED, updated_at=at,
                               detail="ok")],
        events=[Event(at=at, actor="alice", action="verify", from_state="init",
                      to_state="verifying", data={"run": 1})],
        revocation_debt=[Debt(auth_id="auth-1", fingerprint="sha256:0123456789ab",
                              reason="aborted", since=at)],
        ticket="ROT-2026-05-HK", report={"consumers": 1},
    )


def seed(tmp: Path) -> tuple[Store, list[Job]]:
    """The manifest, flags and two finished jobs (terminal: their streams end at once)."""
    (tmp / "subscription-manifest.yml").write_text(MANIFEST)
    (tmp / "flags.yml").write_text("velvet_v2_rotation: true\n")
    store = Store(str(tmp / "state.git"), cache_dir=tmp / "cache")
    jobs = []
    for status in (State.DONE, State.ABORTED):
        job = _job(State.VALIDATED)
        store.create(job)
        jobs.append(store.update(CRED, job.job_id,
                                 lambda j, s=status: j.model_copy(update={"status": s})))
    return store, jobs


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    store, jobs = seed(tmp)
    app = create_app(Settings(manifest=tmp / "subscription-manifest.yml",
                              state=str(tmp / "state.git"), cache_dir=tmp / "cache",
                              env="staging", status_tokens=(SecretStr(READ_TOKEN),)),
                     store=store, refresh_seconds=0.5)
    with ServerThread(app, name="web", lifespan="on") as server:
        yield {"base": server.url, "jobs": jobs}


@pytest.fixture(scope="module")
def api_schema(served: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_url(served["base"] + "/openapi.json", headers=AUTH)


# One test per documented operation (schemathesis's lazy pytest loader does not support this
# pytest), each a bounded hypothesis run over schemathesis's strategy for that operation.
OPERATIONS = [(path, method.upper()) for path, item in openapi_document()["paths"].items()
              for method in item]
BOUNDED = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_generated_requests_conform(api_schema: Any, path: str, method: str) -> None:
    operation = api_schema[path][method]
    modes = [GenerationMode.POSITIVE]
    if (path, method) == ("/tokens/{name}/rotations", "GET"):
        modes.append(GenerationMode.NEGATIVE)  # limit: not an integer, or out of 1..100
    for mode in modes:

        @BOUNDED
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            case.call_and_validate(checks=CHECKS, timeout=10, headers=AUTH)

        run()


def test_real_records_conform(api_schema: Any, served: dict[str, Any]) -> None:
    job_id = served["jobs"][0].job_id
    requests = [
        ("/tokens/{name}/subscribers", {"name": CRED}, {}),
        ("/tokens/{name}/subscribers", {"name": "PM_SERVER_MAIL"}, {}),
        ("/tokens/{name}/rotations", {"name": CRED}, {"limit": 1}),
        ("/tokens/{name}/rotations", {"name": CRED}, {}),
        ("/tokens/{name}/rotations", {"name": CRED}, {"limit": "x"}),
        ("/tokens/{name}/rotations/{job_id}", {"name": CRED, "job_id": job_id}, {}),
        ("/tokens/{name}/rotations/{job_id}/stream", {"name": CRED, "job_id": job_id}, {}),
        ("/tokens/{name}/rotations/{job_id}/view", {"name": CRED, "job_id": job_id}, {}),
        ("/tokens/{name}/view", {"name": CRED}, {}),
        ("/", {}, {}),
        ("/flags", {}, {}),
    ]
    statuses = []
    for path, params, query in requests:
        case = api_schema[path]["GET"].Case(path_parameters=params or None, query=query or None)
        response = case.call_and_validate(checks=CHECKS, timeout=10, headers=AUTH)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 400, 200, 200, 200, 200, 200, 200]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_schemathesis_run_against_velvet_serve_finds_nothing(tmp_path: Path) -> None:
    seed(tmp_path)
    port = _free_port()
    env = {**os.environ, "VELVET_MANIFEST": str(tmp_path / "subscription-manifest.yml"),
           "VELVET_STATE": str(tmp_path / "state.git"), "VELVET_CACHE_DIR": str(tmp_path / "c"),
           "VELVET_ENV": "prod", "VELVET_STATUS_TOKENS": READ_TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "velvet_runner", "serve", "--port",
                               str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # wait until it listens (a safety net, not a timing assertion)
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            server.kill()
            pytest.fail(f"velvet serve did not start: {server.communicate()[1][-2000:]}")
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", base + "/openapi.json",
             "--checks", "all", "--max-examples", "20", "--seed", "1", "--no-color",
             "--header", f"Authorization: Bearer {READ_TOKEN}"],
            cwd=tmp_path, capture_output=True, text=True, check=False, timeout=600)
    finally:
        server.terminate()
        server.wait(timeout=60)
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert "Failures:" not in run.stdout, summary
    assert " passed" in summary
