"""The sandbox provisions itself from any manifest: an adopter's, not the example."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from velvet_sandbox.world import Sandbox

from .adopter import APPROVERS, CREDENTIAL, HEALTH_URL, MANIFEST

# A safety net for a hung child, not a timing assertion.
CHILD_TIMEOUT = 120


@pytest.fixture
def adopter_manifest(tmp_path: Path) -> Path:
    """The adopter's repository: its manifest, its flag off, and what velvet init adds."""
    path = tmp_path / "repo" / "manifest" / "subscription-manifest.yml"
    path.parent.mkdir(parents=True)
    path.write_text(MANIFEST, encoding="utf-8")
    (path.parent / "flags.yml").write_text("velvet_v2_rotation: false\n", encoding="utf-8")
    made = subprocess.run([sys.executable, "-m", "velvet_runner", "init", "--sha", "0" * 40],
                          cwd=path.parents[1], capture_output=True, text=True, check=False,
                          timeout=CHILD_TIMEOUT)
    assert made.returncode == 0, made.stderr
    assert "kept manifest/subscription-manifest.yml (yours)" in made.stdout
    return path


def test_every_name_of_the_manifest_is_provisioned(adopter_manifest: Path, tmp_path: Path):
    with Sandbox(manifest=adopter_manifest) as sbx:
        world = sbx.seed_world(tmp_path / "world")
        value = world.values[CREDENTIAL]
        assert sbx.cloudflare.token_is_live(value)
        token_id = world.cloudflare_token_ids[CREDENTIAL]
        assert sbx.infisical.secret_value("acme-ops", "prod", "/velvet", CREDENTIAL) == value
        assert sbx.infisical.secret_value("acme-ops", "prod", "/velvet",
                                          f"{CREDENTIAL}__TOKEN_ID") == token_id
        assert sbx.github.secret_plaintext("repo:acme/site", "CLOUDFLARE_API_TOKEN") == value
        assert sbx.infisical.secret_value("acme-ops", "prod", "/deploy",
                                          "CLOUDFLARE_API_TOKEN") == value
        repo = sbx.github._repos[sbx.identity.repository]
        assert repo.environments["velvet-prod"].reviewers == APPROVERS
        assert repo.environments["velvet-prod-revoke"].reviewers == APPROVERS
        assert not repo.environments["velvet-prod-verify"].reviewers

        # The healthcheck URL is off this machine: the sandbox's copy points at its stand-in.
        assert world.standins == {"gh-acme-site-cloudflare": HEALTH_URL}
        copy = yaml.safe_load(world.manifest_path.read_text())
        [consumer] = [c for c in copy["credentials"][0]["consumers"]
                      if c["consumer_id"] == "gh-acme-site-cloudflare"]
        assert consumer["healthcheck"]["url"] == sbx.health_url("gh-acme-site-cloudflare")
        assert httpx.get(consumer["healthcheck"]["url"], timeout=10).status_code == 200
        sbx.cloudflare.delete_token(token_id)
        assert httpx.get(consumer["healthcheck"]["url"], timeout=10).status_code == 401
        # The adopter's flag stays theirs; the sandbox's copy has it on.
        assert "false" in (adopter_manifest.parent / "flags.yml").read_text()
        assert world.flags_path.read_text() == "velvet_v2_rotation: true\n"
        env = sbx.env(tmp_path / "world")
        assert env["VELVET_GITHUB_REPOSITORY"] == sbx.identity.repository
        assert "raxx" not in yaml.safe_dump(env)


def test_a_vendor_no_fake_issues_is_named(tmp_path: Path):
    path = tmp_path / "m.yml"
    path.write_text(MANIFEST, encoding="utf-8")
    sbx = Sandbox(manifest=path)
    del sbx.fakes["cloudflare"]
    with sbx, pytest.raises(Exception, match="no fake for cloudflare"):
        sbx.seed_world(tmp_path / "world")


@pytest.fixture
def sandbox_process(adopter_manifest: Path, tmp_path: Path) -> Iterator[
        tuple[subprocess.Popen[str], dict[str, str], list[str]]]:
    yield from _sandbox(adopter_manifest.parents[1], tmp_path / "sbx")


def _sandbox(repo: Path, workdir: Path) -> Iterator[
        tuple[subprocess.Popen[str], dict[str, str], list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VELVET_", "AWS_"))}
    process = subprocess.Popen([sys.executable, "-m", "velvet_runner", "sandbox", "--dir",
                                str(workdir)], cwd=repo, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        settings, comments = {}, []
        for line in process.stdout:
            if line.startswith("# fakes on"):
                break
            if line.startswith("#"):
                comments.append(line.rstrip("\n"))
            else:
                key, _, value = line.rstrip("\n").partition("=")
                settings[key] = value
        assert settings, process.stderr.read() if process.stderr else ""
        yield process, settings, comments
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _velvet(settings: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VELVET_", "AWS_"))}
    env.update(settings)
    env.update({"VELVET_ACTOR": "dana", "VELVET_SETTLE_SECONDS": "2"})
    return subprocess.run([sys.executable, "-m", "velvet_runner", *args, "--json"]
                          if args[0] in ("rotate", "stage") else
                          [sys.executable, "-m", "velvet_runner", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=CHILD_TIMEOUT)


def test_velvet_sandbox_verifies_and_rotates_the_adopters_credential(sandbox_process, tmp_path):
    process, settings, comments = sandbox_process
    repo = tmp_path / "repo"
    assert any(HEALTH_URL in line and "stand-in" in line for line in comments), comments
    created = _velvet(settings, repo, "rotate", CREDENTIAL)
    assert created.returncode == 0, created.stderr
    job = yaml.safe_load(created.stdout)["job_id"]
    for args in (("verify",), ("proceed_mint",),
                 ("proceed_revoke", "--ticket", "T-1", "--confirm", CREDENTIAL)):
        stage = _velvet(settings, repo, "stage", job, *args)
        assert stage.returncode == 0, stage.stdout[-2000:] + stage.stderr[-2000:]
    assert yaml.safe_load(stage.stdout)["status"] == "done"


def test_a_restarted_sandbox_inherits_no_job(adopter_manifest, tmp_path):
    repo, workdir = adopter_manifest.parents[1], tmp_path / "sbx"
    first = _sandbox(repo, workdir)
    process, settings, comments = next(first)
    assert not any("was removed" in line for line in comments)
    created = _velvet(settings, repo, "rotate", CREDENTIAL)
    assert created.returncode == 0, created.stderr
    process.kill()  # no Ctrl-C: the state repository is left behind with a job in flight
    process.wait()
    next(first, None)
    assert (workdir / "state.git").exists()

    second = _sandbox(repo, workdir)
    _process, settings, comments = next(second)
    try:
        assert any("was removed" in line for line in comments), comments
        again = _velvet(settings, repo, "rotate", CREDENTIAL)
        assert again.returncode == 0, again.stderr  # not "active rotation already in progress"
    finally:
        next(second, None)
