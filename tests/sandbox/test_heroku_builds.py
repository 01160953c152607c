"""The Heroku fake's deploys (sources, builds, dynos) and `velvet_runner.deploy` against them:
the status app is built from this repository's files and really served by the fake's dyno."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from velvet_runner.deploy import Deployer, failure, smoke, source_tarball
from velvet_runner.errors import DeployFailed
from velvet_sandbox.heroku import HerokuState

from .support import Fake

V3 = "application/vnd.heroku+json; version=3"
ROOT = Path(__file__).resolve().parents[2]
APP = "raxx-velvet-prod"
READ_TOKEN = "status-read-TOKEN-deploy-0c4d9e7a"


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def deployer(sbx_heroku: Fake, tmp_path: Path) -> Deployer:
    state: HerokuState = sbx_heroku.state
    state_repo = tmp_path / "state.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(state_repo)], check=True)
    state.add_app(APP, {"VELVET_STATE": str(state_repo), "VELVET_STATUS_TOKENS": READ_TOKEN,
                        "VELVET_ENV": "prod", "VELVET_SERVE_HOST": "127.0.0.1"})
    _, token = state.add_authorization("deploy@raxx.app", ["write"], "deploys the status app")
    return Deployer(sbx_heroku.url, SecretStr(token), APP, say=lambda line: None,
                    sleep=lambda s: time.sleep(0.2))


def test_the_status_app_is_built_released_and_served(deployer: Deployer,
                                                     sbx_heroku: Fake) -> None:
    web_url = deployer.deploy(source_tarball(ROOT), "v-test", wait=120)
    assert web_url.startswith("http://127.0.0.1:")
    assert httpx.get(web_url + "/healthz", timeout=10).json() == {"status": "ok",
                                                                  "service": "velvet"}
    results = smoke([web_url], SecretStr(READ_TOKEN), say=lambda line: None, wait=0)
    assert failure(results) is None
    assert [r.probe.path for r in results] == ["/healthz", "/health", "/flags", "/flags"]
    with httpx.Client(base_url=sbx_heroku.url, headers={
            "Authorization": f"Bearer {deployer.token.get_secret_value()}",
            "Accept": V3}) as api:
        [build] = api.get(f"/apps/{APP}/builds").json()
        assert build["status"] == "succeeded"
        assert build["source_blob"]["version"] == "v-test"
        assert build["source_blob"]["checksum"].startswith("SHA256:")
        [dyno] = api.get(f"/apps/{APP}/dynos").json()
        assert (dyno["type"], dyno["state"], dyno["release"]) == ("web", "up", build["release"])
        assert "velvet_runner serve" in dyno["command"]
        output = httpx.get(build["output_stream_url"]).text
        assert "Procfile declares types -> web" in output
    # A smoke check against an app that is closed but given a wrong token names the probe.
    wrong = smoke([web_url], SecretStr("status-read-TOKEN-wrong-00000000"),
                  say=lambda line: None, wait=0)
    problem = failure(wrong)
    assert problem is not None
    assert "/flags (with the read token) at" in str(problem)
    assert "answered 401, expected 200" in str(problem)
    assert "/healthz at" not in str(problem)


def test_a_source_without_python_files_fails_the_build(deployer: Deployer) -> None:
    with pytest.raises(DeployFailed, match="App not compatible with buildpack"):
        deployer.deploy(tarball({"Procfile": "web: true\n"}), "v-bad", wait=60)


def test_the_build_api_is_as_strict_as_herokus(sbx_heroku: Fake, deployer: Deployer) -> None:
    token = deployer.token.get_secret_value()
    api = sbx_heroku.client(Authorization=f"Bearer {token}", Accept=V3)
    blob = api.post("/sources").json()["source_blob"]
    data = tarball({"requirements.txt": "", "Procfile": "web: sleep 60\n"})
    # presigned: a Content-Type the URL was not signed with is refused, as S3 does
    refused = httpx.put(blob["put_url"], content=data,
                        headers={"Content-Type": "application/gzip"})
    assert refused.status_code == 403
    assert "SignatureDoesNotMatch" in refused.text
    assert httpx.put(blob["put_url"], content=data).status_code == 200
    for body in ({}, {"source_blob": {}}, {"source_blob": {"url": "ftp://x"}},
                 {"source_blob": {"url": blob["get_url"], "extra": 1}},
                 {"source_blob": {"url": blob["get_url"], "checksum": "md5:abc"}}):
        response = api.post(f"/apps/{APP}/builds", json=body)
        assert response.status_code == 422, body
        assert response.json()["id"] == "invalid_params"
    wrong_sum = "SHA256:" + "0" * 64
    build = api.post(f"/apps/{APP}/builds", json={"source_blob": {
        "url": blob["get_url"], "checksum": wrong_sum}}).json()
    assert build["status"] == "pending"
    for _ in range(100):
        build = api.get(f"/apps/{APP}/builds/{build['id']}").json()
        if build["status"] != "pending":
            break
        time.sleep(0.1)
    assert build["status"] == "failed"
    assert "Checksum" in httpx.get(build["output_stream_url"]).text
    assert api.get(f"/apps/{APP}/builds/{'1' * 8}").status_code == 404
    assert api.get("/apps/nope/builds").status_code == 404
    # a token without write access may not build
    _, reader = sbx_heroku.state.add_authorization("reader@raxx.app", ["read"])
    readonly = sbx_heroku.client(Authorization=f"Bearer {reader}", Accept=V3)
    assert readonly.post(f"/apps/{APP}/builds", json={"source_blob": {
        "url": blob["get_url"], "checksum": "SHA256:" + hashlib.sha256(data).hexdigest()}}
    ).status_code == 403
