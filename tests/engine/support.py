"""The end-to-end harness for rotation tests: one seeded world per test, driven in process or
through real `velvet` subprocesses, with everything the run printed or committed collected for
the leak scan.

Nothing here patches Velvet: the engine is built exactly as `cli._engine` builds it (settings
from the environment, the manifest, a real git store, `Wiring`, the notifier); only the sleep
used for backoffs is shortened, through the `sleep` seam `Wiring` offers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from velvet_runner import flags as flags_mod
from velvet_runner import manifest as manifest_mod
from velvet_runner.engine import Engine
from velvet_runner.manifest import Consumer, Credential
from velvet_runner.notify import notifier_from_settings
from velvet_runner.records import Job
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.targets.aws_ssm_parameter import AwsSsmParameter
from velvet_runner.targets.github_actions_secret import GithubActionsSecret
from velvet_runner.targets.heroku_config_var import HerokuConfigVar
from velvet_runner.targets.infisical_secret import InfisicalSecret
from velvet_runner.wiring import Wiring
from velvet_sandbox.world import (
    GITHUB_PLATFORM_REPO,
    GITHUB_REPOSITORY,
    INFISICAL_ENV,
    INFISICAL_PROJECT,
    SERVICES,
    VAULT_PATH,
    Sandbox,
    World,
)

SETTLE_SECONDS = "1"
DEPLOY_USER = "raxx-deploy"
DEPLOY_VAULT = "/raxx/prod/aws_iam/AWS_DEPLOY_KEY"
# A safety net so a hung child fails its test instead of the run; not a timing assertion.
CHILD_TIMEOUT = 120
CRASH_EXIT = 99
CRASH_CELLS: set[tuple[str, str]] = set()  # (stage, point) cells the crash matrix passed


def short_sleep(seconds: float) -> None:
    """Backoffs and settle polls, shortened: the fakes answer at once, so waiting adds nothing."""
    time.sleep(min(seconds, 0.1))


class _Capture(logging.Handler):
    """Every velvet log line this process emits, raw (before the formatter's scrubbing)."""

    def __init__(self, sink: list[tuple[str, str]]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append((f"log {record.name}", record.getMessage()))


@dataclass
class EngWorld:
    """One freshly seeded world: the sandbox, its manifest, a state repository, and runners."""

    sandbox: Sandbox
    world: World
    workdir: Path
    env: dict[str, str]
    state_repo: Path
    artifacts: list[tuple[str, str]] = field(default_factory=list)
    _engines: list[Engine] = field(default_factory=list)
    # No keep-alive: the fakes close a connection idle for 5 s, and a control call that reuses
    # one as it closes fails with a reset that says nothing about the test.
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(
        timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)))

    # --- running Velvet --------------------------------------------------------------------

    def settings(self, **extra: str) -> Settings:
        return Settings.from_env({**self.env, **extra})

    def engine(self, transport: httpx.BaseTransport | None = None, **extra: str) -> Engine:
        """An Engine wired like the CLI's; `extra` adds settings (e.g. VELVET_ENV), `transport`
        carries every vendor request (the fault campaign's impatient one)."""
        settings = self.settings(**extra)
        manifest = manifest_mod.load(settings.manifest)
        engine = Engine(settings, manifest,
                        Store(settings.state, settings.state_branch, settings.cache_dir),
                        Wiring(settings, sleep=short_sleep, transport=transport),
                        flags=flags_mod.load_flags(settings.manifest),
                        notifier=notifier_from_settings(settings))
        self._engines.append(engine)
        return engine

    def record(self, label: str, job: Job) -> Job:
        self.artifacts.append((label, job.to_json()))
        return job

    def cli(self, *args: str, crash_at: str | None = None,
            env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        """`python -m velvet_runner ARGS` as a real child process against this world."""
        child = dict(os.environ)
        child.update(self.env)
        child["GITHUB_STEP_SUMMARY"] = str(self.workdir / "step-summary.md")
        child["GITHUB_OUTPUT"] = str(self.workdir / "github-output.txt")
        if crash_at is not None:
            child["VELVET_CRASH_AT"] = crash_at
        for name, value in (env or {}).items():
            if value is None:
                child.pop(name, None)
            else:
                child[name] = value
        proc = subprocess.run([sys.executable, "-m", "velvet_runner", *args], cwd=self.workdir,
                              env=child, capture_output=True, text=True, check=False,
                              timeout=CHILD_TIMEOUT)
        label = "velvet " + " ".join(args)
        self.artifacts += [(f"stdout of {label}", proc.stdout), (f"stderr of {label}",
                                                                  proc.stderr)]
        return proc

    def cli_job(self, *args: str, expect: int = 0, **kwargs: Any) -> Job:
        proc = self.cli(*args, **kwargs)
        assert proc.returncode == expect, (proc.returncode, proc.stderr[-2000:])
        return Job.from_json(proc.stdout)

    def job(self, job_id: str) -> Job:
        """The record as committed on the state branch right now."""
        settings = self.settings()
        store = Store(settings.state, settings.state_branch, settings.cache_dir)
        return store.find(job_id)

    def close(self) -> None:
        for engine in self._engines:
            engine.wiring.close()
        self._http.close()

    # --- the manifest ----------------------------------------------------------------------

    def credential(self, name: str) -> Credential:
        cred = self.world.manifest().credential(name)
        assert cred is not None, name
        return cred

    def edit_manifest(self, edit: Any) -> None:
        """Apply `edit(document)` to the world's manifest YAML (for consumers the seed lacks)."""
        import yaml

        path = self.world.manifest_path
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(document)
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        manifest_mod.load(path)

    # --- faults and request logs -----------------------------------------------------------

    def fault(self, service: str, **spec: Any) -> None:
        response = self._http.post(self.sandbox.control_url(service) + "/faults", json=spec)
        assert response.status_code == 201, response.text

    def clear_faults(self, *services: str) -> None:
        for service in services or tuple(s for s in self.sandbox.roots if s != "aws"):
            self._http.delete(self.sandbox.control_url(service) + "/faults").raise_for_status()

    def requests(self, service: str, method: str | None = None,
                 path: str | None = None) -> list[dict[str, Any]]:
        entries = self._http.get(self.sandbox.control_url(service) + "/requests").json()
        return [e for e in entries["requests"]
                if (method is None or e["method"] == method)
                and (path is None or e["path"] == path)]

    def control(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._http.request(method, self.sandbox.control_url(service) + path, **kwargs)

    # --- reading the world -----------------------------------------------------------------

    def consumer_value(self, consumer: Consumer) -> str | None:
        """What the consumer's own store holds now, read from the fake (not through Velvet)."""
        sbx = self.sandbox
        if isinstance(consumer, HerokuConfigVar):
            return sbx.heroku.config_var(consumer.app, consumer.var)
        if isinstance(consumer, GithubActionsSecret):
            return sbx.github.secret_plaintext(f"repo:{consumer.repository}", consumer.secret)
        if isinstance(consumer, InfisicalSecret):
            return sbx.infisical.secret_value(consumer.project_id, consumer.environment,
                                              consumer.secret_path, consumer.name)
        if isinstance(consumer, AwsSsmParameter):
            return sbx.ssm_value(consumer.name)
        raise AssertionError(consumer.kind)

    def consumer_values(self, name: str) -> dict[str, str | None]:
        cred = self.credential(name)
        return {c.consumer_id: self.consumer_value(c) for c in cred.consumers
                if c.active and c.env == cred.env}

    def vault(self, name: str, suffix: str = "") -> str | None:
        """A vault slot of credential `name` ("" current, "__PENDING", "__AUTH_ID", ...)."""
        loc = self.credential(name).vault
        if isinstance(loc, InfisicalSecret):
            return self.sandbox.infisical.secret_value(loc.project_id, loc.environment,
                                                       loc.secret_path, loc.name + suffix)
        return self.sandbox.ssm_value(loc.name + suffix)

    def put_pending(self, name: str, value: str) -> None:
        """The operator's manual mint: a value put in the vault's pending slot by hand."""
        self.sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                          f"{name}__PENDING", value)

    def heroku_auths(self, email: str | None = None) -> list[dict[str, Any]]:
        snap = self.sandbox.heroku.snapshot()
        users = {u["id"]: u["email"] for u in snap["users"].values()}
        return [a for a in snap["authorizations"].values()
                if email is None or users[a["user_id"]] == email]

    def health(self, consumer_id: str) -> int:
        return self._http.get(self.sandbox.health_url(consumer_id)).status_code

    def notifications(self) -> list[str]:
        texts = [json.dumps(m, sort_keys=True) for m in self.sandbox.slack.messages]
        texts += [json.dumps(i, sort_keys=True)
                  for repo in (GITHUB_REPOSITORY, GITHUB_PLATFORM_REPO)
                  for i in self.sandbox.github.issues(repo)]
        texts += [json.dumps(m, sort_keys=True) for m in self.sandbox.postmark.sent()]
        return texts

    # --- the leak scan ---------------------------------------------------------------------

    def everything_produced(self) -> list[tuple[str, str]]:
        """What the tests' Velvet runs left anywhere a person or a log reader could see it."""
        out = list(self.artifacts)
        if (self.state_repo / "HEAD").exists():
            history = subprocess.run(["git", "--git-dir", str(self.state_repo), "log", "-p",
                                      "--all"], capture_output=True, text=True, check=True)
            out.append(("state branch history (git log -p --all)", history.stdout))
        for name in ("step-summary.md", "github-output.txt"):
            path = self.workdir / name
            if path.exists():
                out.append((name, path.read_text(encoding="utf-8")))
        out += [("notification", text) for text in self.notifications()]
        return out


def fresh_world(sandbox: Sandbox, workdir: Path) -> EngWorld:
    """Every fake reset through its control API, a world seeded into `workdir` (created), and a
    bare state repository of its own; about a tenth of a second against a new Sandbox's 1.5.

    moto keeps AWS state per process, so AWS is not reset wholesale: the leftovers of earlier
    rotations (pending slots, a second access key) are removed and the seed adopts the live
    deploy key. The caller points boto3 (which reads AWS_* from the process) at `env`."""
    with httpx.Client(timeout=10.0) as http:
        for service in SERVICES:
            http.post(sandbox.control_url(service) + "/reset").raise_for_status()
    _reset_aws(sandbox)
    sandbox._seed_bootstrap()  # the reset dropped Velvet's own credentials too
    workdir.mkdir(parents=True)
    world = sandbox.seed_world(workdir)
    state_repo = workdir / "state.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(state_repo)], check=True)
    env = {**sandbox.env(workdir), "VELVET_STATE": str(state_repo),
           "VELVET_CACHE_DIR": str(workdir / "cache"), "VELVET_SETTLE_SECONDS": SETTLE_SECONDS,
           "VELVET_ACTOR": "eng-operator",
           # Log lines on stderr, as in Actions: the leak scan reads them too.
           "VELVET_LOG": "info"}
    return EngWorld(sandbox=sandbox, world=world, workdir=workdir, env=env,
                    state_repo=state_repo)


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


def tag(value: str) -> str:
    """How a failing assertion names a secret: a hash prefix, never the value."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


def leaks(produced: Iterable[tuple[str, str]], values: Iterable[str]) -> list[str]:
    """Where any of `values` appears in `produced`, as "where: tag" lines."""
    secrets = [v for v in set(values) if len(v) >= 8]
    found = []
    for where, text in produced:
        for value in secrets:
            if value in text:
                found.append(f"{where}: {tag(value)}")
    return found


def labelled(auths: Iterable[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [a for a in auths if a["description"] == f"velvet-{job_id}"]


# --- driving a rotation in process ---------------------------------------------------------

HK = "HK_PLATFORM_FULL"
PLATFORM_EMAIL = "platform@raxx.app"


def ticket(name: str) -> str:
    return f"ROT-2026-05-{name}"


def start(eng: EngWorld, name: str = HK, *, force_revoke: bool = False) -> tuple[Engine, Job]:
    """An engine and a verified job for `name`."""
    engine = eng.engine()
    job, created = engine.create(name, force_revoke=force_revoke)
    assert created
    job = engine.run(job.job_id, "verify")
    assert job.status == "verified", last(job)
    return engine, job


def to_validated(eng: EngWorld, name: str = HK) -> tuple[Engine, Job]:
    engine, job = start(eng, name)
    job = engine.run(job.job_id, "proceed_mint")
    assert job.status == "validated", last(job)
    return engine, job


def revoke(engine: Engine, job: Job, name: str | None = None) -> Job:
    name = name or job.credential
    return engine.run(job.job_id, "proceed_revoke", ticket=ticket(name), confirm=name)


def last(job: Job) -> str:
    """The last event, for assertion messages (events never hold values)."""
    event = job.events[-1]
    return f"{job.status}: {event.action} {event.from_state}->{event.to_state}: {event.detail}"


def row(job: Job, consumer_id: str) -> Any:
    found = job.row(consumer_id)
    assert found is not None, consumer_id
    return found


def arrival(job: Job, state: str) -> Any:
    """The (last) event that moved the job into `state`."""
    found = [e for e in job.events if e.to_state == state and e.from_state != state]
    assert found, f"{job.job_id} never reached {state}"
    return found[-1]
