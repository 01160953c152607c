"""The whole Sandbox: every fake answers, on loopback only, with a world Velvet can load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import httpx
import pytest

from velvet_runner.flags import load_flags
from velvet_sandbox.world import SERVICES, Sandbox, World

_LISTEN = "0A"



def _listening_sockets() -> list[tuple[str, int]]:
    """(address hex, port) of every TCP socket this process has in LISTEN state."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and inode in inodes:
                address, port = local.split(":")
                found.append((address, int(port, 16)))
    return found


def _port(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_every_listening_socket_is_loopback(sbx_sandbox: Sandbox, sbx_world: World) -> None:
    sockets = _listening_sockets()
    ours = {_port(url) for url in sbx_sandbox.roots.values()}
    assert ours <= {port for _, port in sockets}
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
    assert [s for s in sockets if s[0] not in loopback] == []


def test_every_url_answers_quickly(sbx_sandbox: Sandbox) -> None:
    assert set(sbx_sandbox.roots) == {*SERVICES, "aws"}
    with httpx.Client(timeout=3.0) as client:
        for name in SERVICES:
            started = time.monotonic()
            response = client.get(sbx_sandbox.control_url(name) + "/state")
            assert response.status_code == 200, name
            assert time.monotonic() - started < 3
        assert client.get(sbx_sandbox.urls["aws"] + "/moto-api/data.json").status_code == 200


def test_env_settings_work_against_the_fakes(sbx_sandbox: Sandbox, sbx_world: World,
                                             sbx_workdir: Path) -> None:
    env = sbx_sandbox.env(sbx_workdir)
    with httpx.Client(timeout=5.0) as http:
        heroku = http.get(env["VELVET_HEROKU_API_URL"] + "/account", headers={
            "Authorization": f"Bearer {env['VELVET_HEROKU_TOKEN']}",
            "Accept": "application/vnd.heroku+json; version=3"})
        assert heroku.json()["email"] == "velvet-bot@raxx.app"
        cloudflare = http.get(env["VELVET_CLOUDFLARE_API_URL"] + "/user/tokens/verify",
                              headers={"Authorization":
                                       f"Bearer {sbx_world.values['CF_ZONE_READ']}"})
        assert cloudflare.json()["success"] is True
        postmark = http.get(env["VELVET_POSTMARK_API_URL"] + "/server", headers={
            "Accept": "application/json",
            "X-Postmark-Server-Token": env["VELVET_POSTMARK_SERVER_TOKEN"]})
        assert postmark.json()["Name"] == "velvet-ops"
        login = http.post(env["VELVET_INFISICAL_API_URL"] + "/api/v1/auth/universal-auth/login",
                          json={"clientId": env["VELVET_INFISICAL_CLIENT_ID"],
                                "clientSecret": env["VELVET_INFISICAL_CLIENT_SECRET"]})
        assert login.status_code == 200
        # the App's installation token, as the workflows hand it to the stages
        github = http.get(env["VELVET_GITHUB_API_URL"] + "/installation/repositories", headers={
            "Authorization": f"Bearer {env['VELVET_GITHUB_TOKEN']}", "User-Agent": "test"})
        assert github.json()["repository_selection"] == "selected"
        slack = http.post(env["VELVET_SLACK_API_URL"] + "auth.test",
                          headers={"Authorization": f"Bearer {env['VELVET_SLACK_TOKEN']}"})
        assert slack.json()["ok"] is True
    ssm = boto3.client("ssm", endpoint_url=env["AWS_ENDPOINT_URL"],
                       region_name=env["AWS_DEFAULT_REGION"],
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    parameter = ssm.get_parameter(Name="/raxx/prod/heroku/HK_PLATFORM_FULL", WithDecryption=True)
    assert parameter["Parameter"]["Value"] == sbx_world.values["HK_PLATFORM_FULL"]
    assert env["VELVET_MANIFEST"] == str(sbx_world.manifest_path)
    assert env["VELVET_STATE"] == str(sbx_workdir / "state.git")
    assert env["VELVET_ENV"] == "prod"
    assert env["VELVET_OPS_EMAIL"] == "ops@raxx.app"
    assert env["VELVET_GITHUB_REPOSITORY"] == "raxx/velvet"


def test_seeded_manifest_loads_with_the_promised_world(sbx_world: World) -> None:
    manifest = sbx_world.manifest()
    assert load_flags(sbx_world.manifest_path) == {"velvet_v2_rotation": True}
    assert set(manifest.by_name) == {"HK_PLATFORM_FULL", "HK_DEPLOY_BOT", "PM_SERVER_MAIL",
                                     "CF_DNS_EDIT_RAXX_APP", "CF_ZONE_READ", "AWS_DEPLOY_KEY"}
    platform = manifest.by_name["HK_PLATFORM_FULL"]
    assert platform.schedule == "90d"
    assert platform.approvers == {"prod": ["alice", "bob"]}
    assert len(platform.consumers) >= 5
    assert {c.kind for c in platform.consumers} == {
        "heroku_config_var", "github_actions_secret", "infisical_secret", "aws_ssm_parameter"}
    assert all(c.healthcheck.type != "none" for c in platform.consumers)
    assert all(c.env == "prod" for c in platform.consumers)
    assert manifest.by_name["CF_DNS_EDIT_RAXX_APP"].active is False
    deploy = manifest.by_name["HK_DEPLOY_BOT"]
    assert [c.healthcheck.type for c in deploy.consumers] == ["http", "http", "none"]
    assert len(manifest.by_name["CF_ZONE_READ"].consumers) == 2


def test_every_consumer_holds_the_live_value(sbx_sandbox: Sandbox, sbx_world: World) -> None:
    with httpx.Client(timeout=5.0) as client:
        for consumer_id in sbx_world.http_consumers:
            response = client.get(sbx_sandbox.health_url(consumer_id))
            assert response.status_code == 200, consumer_id
    for name, value in sbx_world.values.items():
        cred = sbx_world.manifest().by_name[name]
        for consumer in cred.consumers:
            if consumer.kind == "aws_ssm_parameter":
                assert sbx_sandbox.ssm_value(consumer.name) == value, consumer.consumer_id


def test_vault_holds_value_and_auth_id(sbx_sandbox: Sandbox, sbx_world: World,
                                       sbx_workdir: Path) -> None:
    value = sbx_sandbox.infisical.secret_value("raxx-platform", "prod", "/velvet",
                                               "HK_PLATFORM_FULL")
    auth_id = sbx_sandbox.infisical.secret_value("raxx-platform", "prod", "/velvet",
                                                 "HK_PLATFORM_FULL__AUTH_ID")
    assert value == sbx_world.values["HK_PLATFORM_FULL"]
    assert auth_id == sbx_sandbox.heroku.authorization_id(value)
    bot = sbx_sandbox.env(sbx_workdir)["VELVET_HEROKU_TOKEN"]
    assert sbx_sandbox.heroku.authorization_id(bot) != auth_id
    assert sbx_sandbox.ssm_value("/raxx/prod/aws_iam/AWS_DEPLOY_KEY") == (
        sbx_world.values["AWS_DEPLOY_KEY"])
    keys = sbx_sandbox.iam().list_access_keys(UserName="raxx-deploy")["AccessKeyMetadata"]
    assert sbx_world.aws_access_key_ids["AWS_DEPLOY_KEY"] in {k["AccessKeyId"] for k in keys}


def test_token_values_cover_world_and_bootstrap(sbx_sandbox: Sandbox, sbx_world: World,
                                                sbx_workdir: Path) -> None:
    values = set(sbx_sandbox.token_values())
    assert set(sbx_world.values.values()) <= values
    env = sbx_sandbox.env(sbx_workdir)
    for key in ("VELVET_HEROKU_TOKEN", "VELVET_INFISICAL_CLIENT_SECRET", "VELVET_GITHUB_TOKEN",
                "VELVET_SLACK_TOKEN", "VELVET_POSTMARK_SERVER_TOKEN"):
        assert env[key] in values, key


def test_start_on_consecutive_ports_and_stop_cleanly(tmp_path: Path) -> None:
    base = _free_port_range(len(SERVICES) + 1)
    threads_before = threading.active_count()
    sandbox = Sandbox(base_port=base).start()
    try:
        ports = [_port(sandbox.roots[name]) for name in (*SERVICES, "aws")]
        assert ports == list(range(base, base + len(SERVICES) + 1))
        sandbox.seed_world(tmp_path)  # a second world in this process adopts the AWS key
    finally:
        sandbox.stop()
    for port in ports:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(
            ("127.0.0.1", port), timeout=1
        ):
            pass
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before


def _free_port_range(count: int) -> int:
    for base in range(42_000, 60_000, 97):
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_main_prints_env_and_stops_on_ctrl_c(tmp_path: Path, stop: signal.Signals) -> None:
    """Started as a shell starts a background command (SIGINT ignored, which a child
    inherits, as under pytest-xdist's workers too), Ctrl-C still stops it, and so does kill."""
    code = ("from velvet_sandbox.world import main; "
            f"main(None, {str(tmp_path)!r})")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=_ignore_sigint)  # noqa: PLW1509 - no threads yet
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            if line.startswith("#"):
                break
            lines.append(line.rstrip("\n"))
        env = dict(line.split("=", 1) for line in lines)
        assert env["VELVET_MANIFEST"] == str(tmp_path / "manifest" / "subscription-manifest.yml")
        assert httpx.get(env["VELVET_HEROKU_API_URL"] + "/__velvet/state").status_code == 200
        process.send_signal(stop)
        # Stopping every fake and moto takes seconds, more on a loaded machine: the timeout
        # only keeps a hung child from hanging the suite (it is not a timing assertion).
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()
