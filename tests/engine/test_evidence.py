"""`velvet evidence` over a state branch with rotations approved at their gates, an emergency
revocation, revocation debt opened and settled, and a manual revoke: the same bytes twice in
every format, naming the branch head; nothing it prints is a value.

The world is a neutral manifest of its own (no example's names), provisioned by the sandbox
from the manifest like any adopter's; docs/evidence-example.md is this test's Markdown, kept
as an auditor would read it (WRITE_EVIDENCE_EXAMPLE=1 rewrites it).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from velvet_runner import flags as flags_mod
from velvet_runner import manifest as manifest_mod
from velvet_runner.engine import Engine
from velvet_runner.github.api import GitHubApi
from velvet_runner.github.gate import ActionsGate
from velvet_runner.notify import notifier_from_settings
from velvet_runner.records import Job
from velvet_runner.store import Store
from velvet_runner.wiring import Wiring
from velvet_sandbox.world import Sandbox

from .support import SETTLE_SECONDS, EngWorld, _Capture, leaks, short_sleep

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "docs" / "evidence-example.md"
STARTER, FIRST, SECOND = "release-manager", "first-approver", "second-approver"
API, DNS, DEPLOY = "PLATFORM_API_KEY", "DNS_EDIT_TOKEN", "DEPLOY_ACCESS_KEY"

MANIFEST = f"""\
version: 1
environments: [prod]
credentials:
- name: {API}
  vendor: heroku
  env: prod
  schedule: 90d
  description: Platform API key of the deploy user
  vault: {{kind: infisical_secret, project_id: platform, environment: prod, secret_path: /velvet,
    name: {API}}}
  approvers: {{prod: [{FIRST}, {SECOND}]}}
  consumers:
  - consumer_id: web-prod
    kind: heroku_config_var
    env: prod
    app: web-prod
    var: PLATFORM_API_KEY
    healthcheck: {{type: http, url: 'https://web-prod.example.invalid/healthz'}}
- name: {DNS}
  vendor: cloudflare
  env: prod
  schedule: 30d
  options: {{token_type: user}}
  vault: {{kind: infisical_secret, project_id: platform, environment: prod, secret_path: /velvet,
    name: {DNS}}}
  approvers: {{prod: [{FIRST}, {SECOND}]}}
  consumers:
  - consumer_id: dns-sync
    kind: infisical_secret
    env: prod
    project_id: platform
    environment: prod
    secret_path: /dns
    name: CLOUDFLARE_API_TOKEN
    healthcheck: {{type: http, url: 'https://dns-sync.example.invalid/healthz'}}
- name: {DEPLOY}
  vendor: aws_iam
  env: prod
  schedule: 90d
  options: {{user_name: evidence-deploy, region: us-east-1}}
  vault: {{kind: aws_ssm_parameter, name: /platform/prod/{DEPLOY}, region: us-east-1}}
  approvers: {{prod: [{FIRST}, {SECOND}]}}
  consumers:
  - consumer_id: ci-deploy
    kind: aws_ssm_parameter
    env: prod
    name: /platform/prod/ci/{DEPLOY}
    region: us-east-1
    healthcheck: {{type: readback}}
"""


class Neutral(EngWorld):
    """The harness, for a world whose repositories are its own (not the example's)."""

    def notifications(self) -> list[str]:
        texts = [json.dumps(m, sort_keys=True) for m in self.sandbox.slack.messages]
        texts += [json.dumps(i, sort_keys=True)
                  for repo in self.sandbox.github.snapshot()["repos"] for i in repo["issues"]]
        texts += [json.dumps(m, sort_keys=True) for m in self.sandbox.postmark.sent()]
        return texts


@pytest.fixture(scope="module")
def _neutral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path]]:
    source = tmp_path_factory.mktemp("neutral-manifest") / "subscription-manifest.yml"
    source.write_text(MANIFEST, encoding="utf-8")
    with Sandbox(manifest=source) as sandbox:
        yield sandbox, source


@pytest.fixture
def world(_neutral: tuple[Sandbox, Path], tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[EngWorld]:
    sandbox, _ = _neutral
    workdir = tmp_path / "neutral"
    workdir.mkdir()
    seeded = sandbox.seed_world(workdir)
    state = workdir / "state.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(state)], check=True)
    env = {**sandbox.env(workdir), "VELVET_STATE": str(state),
           "VELVET_CACHE_DIR": str(workdir / "cache"), "VELVET_SETTLE_SECONDS": SETTLE_SECONDS,
           "VELVET_ACTOR": STARTER}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(workdir)
    eng = Neutral(sandbox=sandbox, world=seeded, workdir=workdir, env=env, state_repo=state)
    log = logging.getLogger("velvet")
    capture = _Capture(eng.artifacts)
    log.addHandler(capture)
    try:
        yield eng
        assert leaks(eng.everything_produced(), sandbox.token_values()) == []
    finally:
        log.removeHandler(capture)
        eng.clear_faults()
        eng.close()


def _engine(eng: EngWorld, approver: str | None = None, environment: str = "") -> Engine:
    """An engine wired like the CLI's; with `approver`, its stage runs in an Actions run that
    `approver` reviewed for `environment`, and the runner's own gate checks it."""
    settings = eng.settings()
    manifest = manifest_mod.load(settings.manifest)
    gate = None
    if approver is not None:
        repo = eng.env["VELVET_GITHUB_REPOSITORY"]
        github = eng.sandbox.github
        run_id = github.add_run(repo, STARTER, workflow="velvet-stage-2-mint.yml")
        github.approve(repo, run_id, environment, approver)
        api = GitHubApi(eng.env["VELVET_GITHUB_TOKEN"], eng.env["VELVET_GITHUB_API_URL"])
        gate = ActionsGate(manifest, api=api, repository=repo, run_id=str(run_id))
    store = Store(settings.state, settings.state_branch, settings.cache_dir)
    engine = Engine(settings, manifest, store, Wiring(settings, sleep=short_sleep),
                    flags=flags_mod.load_flags(settings.manifest),
                    notifier=notifier_from_settings(settings), gate=gate)
    eng._engines.append(engine)
    return engine


def _rotate(eng: EngWorld, name: str) -> Job:
    """Stage 1, then stage 2 approved by FIRST; validated."""
    job, _ = _engine(eng).create(name)
    assert _engine(eng).run(job.job_id, "verify").status == "verified"
    job = _engine(eng, FIRST, "velvet-prod").run(job.job_id, "proceed_mint")
    assert job.status == "validated", job.events[-1].detail
    return job


def _revoke(eng: EngWorld, job: Job) -> Job:
    return _engine(eng, SECOND, "velvet-prod-revoke").run(
        job.job_id, "proceed_revoke", ticket=f"CHG-{job.credential}", confirm=job.credential)


def build_history(eng: EngWorld) -> dict[str, str]:
    """Rotations, an emergency revocation, debt opened and settled, and a manual revoke."""
    ids: dict[str, str] = {}
    # A rotation approved at both gates, then an emergency revocation of its new value.
    done = _revoke(eng, _rotate(eng, API))
    assert done.status == "done", done.events[-1].detail
    ids["rotation"] = done.job_id
    emergency = eng.cli_job("rotate", API, "--flow", "revocation", "--json")
    rev = eng.cli_job("stage", emergency.job_id, "revoke", "--ticket", "INC-7", "--json")
    assert rev.status == "rev_done", rev.events[-1].detail
    ids["revocation"] = rev.job_id
    # A rotation whose revoke the vendor fails: revoked by hand, then marked on a ticket.
    dns = _rotate(eng, DNS)
    eng.fault("cloudflare", method="DELETE", path="/client/v4/user/tokens/*", status=500)
    failed = _revoke(eng, dns)
    assert failed.status == "revoke_failed", failed.events[-1].detail
    eng.clear_faults("cloudflare")
    old_id = failed.newest("old").auth_id  # type: ignore[union-attr]
    assert eng.sandbox.cloudflare.delete_token(old_id)
    manual = eng.cli_job("stage", dns.job_id, "mark_manually_revoked", "--ticket", "CHG-DNS-2",
                         "--json")
    assert manual.status == "done", manual.events[-1].detail
    ids["manual"] = manual.job_id
    # A rotation aborted once validated: the superseded old key is debt until it is deleted.
    deploy = _rotate(eng, DEPLOY)
    aborted = eng.cli_job("stage", deploy.job_id, "abort", "--json")
    assert aborted.status == "aborted"
    debt = [d for d in aborted.revocation_debt if d.settled_at is None]
    assert len(debt) == 1, aborted.revocation_debt
    eng.sandbox.iam().delete_access_key(UserName="evidence-deploy",
                                        AccessKeyId=str(debt[0].auth_id))
    settled = eng.cli("stuck", "--settle-debt", "--json")
    assert "settled" in settled.stderr, settled.stderr
    ids["debt"] = aborted.job_id
    return ids


def test_evidence_reproduces_the_same_bytes_and_reads_as_an_appendix(
        world: EngWorld) -> None:
    ids = build_history(world)
    outputs = {}
    for fmt in ("md", "csv", "json"):
        first = world.cli("evidence", "--format", fmt)
        second = world.cli("evidence", "--format", fmt)
        assert first.returncode == 0, first.stderr
        assert first.stdout == second.stdout, fmt
        outputs[fmt] = first.stdout
    head = Store(str(world.state_repo), cache_dir=world.workdir / "head-cache").refresh()
    assert head is not None
    md = outputs["md"]
    assert f"at commit `{head}`" in md
    for job_id in ids.values():
        assert f"`{job_id}`" in md
    rotation = json.loads(outputs["json"])
    assert rotation["head"] == head
    by_id = {r["job_id"]: r for c in rotation["credentials"] for r in c["rotations"]}
    done = by_id[ids["rotation"]]
    assert done["started_by"] == STARTER
    assert [(a["gate"], a["approver"]) for a in done["approvals"]] == [
        ("proceed_mint", FIRST), ("proceed_revoke", SECOND)]
    assert done["ticket"] == f"CHG-{API}"
    assert done["proven_dead_at"] is not None
    assert "refused by the vendor" in done["proven_dead_how"]
    assert by_id[ids["revocation"]]["flow"] == "revocation"
    assert by_id[ids["revocation"]]["status"] == "rev_done"
    assert by_id[ids["revocation"]]["ticket"] == "INC-7"
    manual = by_id[ids["manual"]]["revoked_by_hand"]
    assert manual["ticket"] == "CHG-DNS-2"
    deploy = next(c for c in rotation["credentials"] if c["credential"] == DEPLOY)
    assert [(d["job_id"], d["settled_at"] is not None) for d in deploy["debt"]] == [
        (ids["debt"], True)]
    assert "revocation debt" not in {p["problem"] for p in rotation["out_of_policy"]}
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert {r["job_id"] for r in rows} == set(ids.values())
    assert {r["state_head"] for r in rows} == {head}
    # One credential, a window: still named by the head, still reproducible.
    one = world.cli("evidence", "--credential", DNS, "--since", "1d")
    assert one.stdout == world.cli("evidence", "--credential", DNS, "--since", "1d").stdout
    assert f"## {DNS}" in one.stdout
    assert f"## {API}" not in one.stdout
    if os.environ.get("WRITE_EVIDENCE_EXAMPLE"):
        EXAMPLE.write_text(md, encoding="utf-8")


def test_bad_arguments_are_refused_by_name(world: EngWorld) -> None:
    bad = world.cli("evidence", "--since", "ninety days")
    assert bad.returncode == 2
    assert "--since 'ninety days' is not an interval such as 90d" in bad.stderr
    unknown = world.cli("evidence", "--credential", "NOPE")
    assert unknown.returncode == 2
    assert "credential NOPE is neither in the manifest nor on the state branch" in unknown.stderr
    assert world.cli("evidence", "--format", "pdf").returncode == 2
