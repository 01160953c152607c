"""Fixtures for the end-to-end rotation tests; all prefixed `eng_`.

One Sandbox (every fake vendor, the consumer apps and moto, on 127.0.0.1) serves this whole
directory. Before each test every fake is reset through its control API (state, faults and request
log) and a fresh world is seeded into the test's own directory, with its own bare state
repository; that costs about a tenth of a second, against more than a second and a half for a
new Sandbox. After each test everything the test's Velvet runs produced is scanned for every
secret value the fakes issued.

moto keeps AWS state per process (world.py), so AWS is not reset wholesale: this test's
leftovers (pending slots, a second access key) are removed instead, and the seed adopts the
live deploy key.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from velvet_runner.sandbox.world import SERVICES, Sandbox

from .support import SETTLE_SECONDS, EngWorld, _Capture, leaks

DEPLOY_USER = "raxx-deploy"
DEPLOY_VAULT = "/raxx/prod/aws_iam/AWS_DEPLOY_KEY"


@pytest.fixture(scope="package")
def eng_sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


def _reset_aws(sandbox: Sandbox) -> None:
    ssm, iam = sandbox.ssm(), sandbox.iam()
    names: list[str] = []
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path="/raxx",
                                                                       Recursive=True):
        names += [p["Name"] for p in page["Parameters"]]
    for name in names:
        if "__" in name:  # vault companions a rotation wrote (pending slot, auth id)
            ssm.delete_parameter(Name=name)
    try:
        keys = iam.list_access_keys(UserName=DEPLOY_USER)["AccessKeyMetadata"]
    except iam.exceptions.NoSuchEntityException:
        return
    current = sandbox.ssm_value(DEPLOY_VAULT)
    live = current.split(":", 1)[0] if current else None
    if live is None:
        return
    for key in keys:
        if key["AccessKeyId"] != live:
            iam.delete_access_key(UserName=DEPLOY_USER, AccessKeyId=key["AccessKeyId"])


@pytest.fixture
def eng_world(eng_sandbox: Sandbox, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[EngWorld]:
    """A freshly seeded world, this process's environment pointed at it, and a leak scan after."""
    with httpx.Client(timeout=10.0) as http:
        for service in SERVICES:
            http.post(eng_sandbox.control_url(service) + "/reset").raise_for_status()
    _reset_aws(eng_sandbox)
    eng_sandbox._seed_bootstrap()  # the reset dropped Velvet's own credentials too
    workdir = tmp_path / "eng"
    workdir.mkdir()
    world = eng_sandbox.seed_world(workdir)
    state_repo = workdir / "state.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(state_repo)], check=True)
    env = {**eng_sandbox.env(workdir), "VELVET_STATE": str(state_repo),
           "VELVET_CACHE_DIR": str(workdir / "cache"), "VELVET_SETTLE_SECONDS": SETTLE_SECONDS,
           "VELVET_ACTOR": "eng-operator",
           # Log lines on stderr, as in Actions: the leak scan reads them too.
           "VELVET_LOG": "info"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # boto3 in this process reads AWS_* from here
    monkeypatch.chdir(workdir)
    eng = EngWorld(sandbox=eng_sandbox, world=world, workdir=workdir, env=env,
                   state_repo=state_repo)
    velvet_log = logging.getLogger("velvet")
    capture = _Capture(eng.artifacts)
    velvet_log.addHandler(capture)
    old_level = velvet_log.level
    velvet_log.setLevel(logging.DEBUG)
    try:
        yield eng
        found = leaks(eng.everything_produced(), eng_sandbox.token_values())
        assert found == [], "secret values leaked:\n" + "\n".join(found)
    finally:
        velvet_log.removeHandler(capture)
        velvet_log.setLevel(old_level)
        eng.clear_faults()
        eng.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from .support import CRASH_CELLS

    if CRASH_CELLS:
        stages = len({stage for stage, _ in CRASH_CELLS})
        terminalreporter.write_line(f"crash matrix: {len(CRASH_CELLS)} (stage, point) cells "
                                    f"covered across {stages} stages")
