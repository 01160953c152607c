"""The status app is closed by default: every path but the health probes needs a read token.

Also here, what the app may not give away to anyone, token or not: a fingerprint a guesser can
match (they are keyed), an unbounded number of event streams, and a revocation's page that
reads like a rotation's.
"""
# ruff: noqa: F811 - the fixtures imported from test_web are parameters here

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient
from test_web import (  # noqa: F401 - the same fixtures
    AUTH,
    CRED,
    NEXT_READ_TOKEN,
    READ_TOKEN,
    SECRETS,
    client,
    make_job,
    seeded,
    set_status,
    settings,
    store,
)

from velvet_runner.gitbranch import Change
from velvet_runner.machine import Flow, State
from velvet_runner.records import ConsumerRow, Event, Job, RowStatus, fingerprint, new_job_id
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.web import create_app, openapi_document
from velvet_runner.web.auth import FAILURES_PER_WINDOW
from velvet_sandbox.server import ServerThread

HEALTH = {"/healthz", "/health"}


def concrete_paths(seeded: dict[str, Job]) -> list[str]:
    """Every path the OpenAPI document lists, with a real credential and job filled in."""
    job = seeded["done"].job_id  # terminal: its stream ends at once
    return [p.replace("{name}", CRED).replace("{job_id}", job)
            for p in openapi_document()["paths"]]


@pytest.fixture
def closed(settings: Settings, store: Store, seeded: dict[str, Job]) -> Iterator[TestClient]:
    """The app with no token on the client: each test says what it presents."""
    with TestClient(create_app(settings, store=store, refresh_seconds=0.05)) as c:
        yield c


def test_every_path_but_health_needs_a_token(closed: TestClient,
                                             seeded: dict[str, Job]) -> None:
    paths = concrete_paths(seeded)
    assert HEALTH < set(paths)
    assert len(paths) > 10
    wrong = {"Authorization": "Bearer status-read-TOKEN-wrong-000000"}
    for i, path in enumerate(paths):
        # one wrong attempt per client address, so the limiter stays out of this test
        guesser = TestClient(closed.app, client=(f"192.0.2.{i + 1}", 4000))
        if path in HEALTH:
            assert closed.get(path).status_code == 200, path
            continue
        missing = closed.get(path)
        assert missing.status_code == 401, path
        assert missing.json() == {"error": missing.json()["error"], "status": 401}
        challenges = missing.headers.get_list("www-authenticate")
        assert [c.split()[0] for c in challenges] == ["Bearer", "Basic"], path
        assert guesser.get(path, headers=wrong).status_code == 401, path
        for token in (READ_TOKEN, NEXT_READ_TOKEN):  # two tokens valid at once
            right = closed.get(path, headers={"Authorization": f"Bearer {token}"})
            assert right.status_code == 200, (path, right.text[:200])


def test_a_browser_gets_a_plain_page_and_may_sign_in_with_basic(
        closed: TestClient, seeded: dict[str, Job]) -> None:
    html = {"Accept": "text/html,application/xhtml+xml"}
    page = closed.get("/", headers=html)
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert "Authorization: Bearer" in page.text
    assert "enter any user name and the read token" in page.text
    assert "Traceback" not in page.text
    assert "PRODUCTION" not in page.text
    assert settings_free(page.text)
    basic = base64.b64encode(f"anyone:{NEXT_READ_TOKEN}".encode()).decode()
    signed_in = closed.get("/", headers={**html, "Authorization": f"Basic {basic}"})
    assert signed_in.status_code == 200
    assert "Credentials" in signed_in.text
    no_password = base64.b64encode(b"anyone:").decode()
    assert closed.get("/", headers={"Authorization": f"Basic {no_password}"}).status_code == 401


def settings_free(text: str) -> bool:
    """Nothing of the app's own state on a page shown to strangers."""
    return "velvet-state" not in text and "VELVET_ENV=" not in text


def test_failed_attempts_are_limited_and_logged_without_the_token(
        settings: Settings, store: Store, seeded: dict[str, Job],
        caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings, store=store, refresh_seconds=0.05)
    guesses = [f"guess-{i}-{'x' * 20}" for i in range(FAILURES_PER_WINDOW)]
    with (caplog.at_level(logging.WARNING, logger="velvet.web.auth"),
          TestClient(app, client=("203.0.113.9", 4000)) as attacker,
          TestClient(app, client=("198.51.100.7", 4000)) as other):
        for guess in guesses:
            assert attacker.get("/flags", headers={"Authorization": f"Bearer {guess}"}
                                ).status_code == 401
        # over the limit: refused before the token is even looked at, the right one too
        limited = attacker.get("/flags", headers=AUTH)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["status"] == 429
        assert attacker.get("/healthz").status_code == 200  # the probes stay open
        assert other.get("/flags", headers=AUTH).status_code == 200  # another client is not
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == FAILURES_PER_WINDOW
    assert all("203.0.113.9" in line and "/flags" in line for line in lines)
    assert "failed attempt 10 of 10" in lines[-1]
    for guess in guesses:
        assert guess not in caplog.text


def test_the_leak_scan_covers_the_refusals(closed: TestClient, seeded: dict[str, Job],
                                          caplog: pytest.LogCaptureFixture) -> None:
    """401 and 429 pages, JSON and HTML, echo no presented token and no accepted one."""
    seen = []
    presented = [*SECRETS, READ_TOKEN[:-1], READ_TOKEN + "x", "<script>x</script>" * 3]
    with caplog.at_level(logging.DEBUG):
        for token, accept, path in itertools.product(
                presented, ("text/html", "application/json"),
                ["/", "/flags", f"/tokens/{CRED}/view", "/openapi.json"]):
            if token in (READ_TOKEN, NEXT_READ_TOKEN):
                continue
            for header in (f"Bearer {token}",
                           "Basic " + base64.b64encode(f"u:{token}".encode()).decode()):
                response = closed.get(path, headers={"Authorization": header, "Accept": accept})
                assert response.status_code in (401, 429)
                seen.append(response.text + json.dumps(dict(response.headers)))
    text = "\n".join(seen) + caplog.text
    assert "401" in text  # both kinds of refusal were scanned
    assert "429" in text
    for secret in (*presented, READ_TOKEN, NEXT_READ_TOKEN):
        assert secret not in text, secret
    assert "<script>" not in text


def test_public_mode_is_open_and_says_so_on_the_banner(
        settings: Settings, store: Store, seeded: dict[str, Job]) -> None:
    with TestClient(create_app(settings, store=store, public=True)) as c:
        page = c.get("/")
        assert page.status_code == 200
        assert c.get("/flags").status_code == 200
    assert 'id="public-mode"' in page.text
    assert "PUBLIC — no token needed" in page.text
    with TestClient(create_app(settings, store=store), headers=AUTH) as c:
        assert "public-mode" not in c.get("/").text


# --- velvet serve ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[str, subprocess.Popen[str]]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "velvet_runner", "serve", "--port",
                             str(port), *args], cwd=tmp_path, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):  # until it listens (a safety net, not a timing assertion)
        try:
            httpx.get(base + "/healthz", timeout=5)
            return base, proc
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"velvet serve did not start: {proc.communicate()[1][-2000:]}")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    return proc.communicate(timeout=60)[1]


def test_velvet_serve_public_announces_itself(tmp_path: Path, settings: Settings,
                                              seeded: dict[str, Job]) -> None:
    env = {"VELVET_MANIFEST": str(settings.manifest), "VELVET_STATE": settings.state,
           "VELVET_CACHE_DIR": str(tmp_path / "serve-cache")}
    base, proc = _serve(tmp_path, "--public", env=env)
    try:
        page = httpx.get(base + "/", timeout=30)
    finally:
        stderr = _stop(proc)
    assert page.status_code == 200
    assert "PUBLIC — no token needed" in page.text
    assert f"velvet serve: {base} is PUBLIC (--public): no token needed" in stderr


def test_velvet_serve_is_closed_with_tokens_and_refuses_to_start_without(
        tmp_path: Path, settings: Settings, seeded: dict[str, Job], run_velvet) -> None:
    env = {"VELVET_MANIFEST": str(settings.manifest), "VELVET_STATE": settings.state,
           "VELVET_CACHE_DIR": str(tmp_path / "serve-cache"),
           "VELVET_STATUS_TOKENS": f"{READ_TOKEN}, {NEXT_READ_TOKEN}"}
    base, proc = _serve(tmp_path, env=env)
    try:
        assert httpx.get(base + "/flags", timeout=30).status_code == 401
        for token in (READ_TOKEN, NEXT_READ_TOKEN):
            assert httpx.get(base + "/flags", headers={"Authorization": f"Bearer {token}"},
                             timeout=30).status_code == 200
    finally:
        stderr = _stop(proc)
    assert "is closed: every path but /healthz and /health needs one of the 2 token(s)" in stderr
    for token in (READ_TOKEN, NEXT_READ_TOKEN):
        assert token not in stderr

    refused = run_velvet("serve", env={**env, "VELVET_STATUS_TOKENS": None})
    assert refused.returncode == 2
    assert "VELVET_STATUS_TOKENS is not set" in refused.stderr
    assert "Traceback" not in refused.stderr
    short = run_velvet("serve", env={**env, "VELVET_STATUS_TOKENS": f"{READ_TOKEN},short"})
    assert short.returncode == 2
    assert "VELVET_STATUS_TOKENS" in short.stderr
    assert "token 2 of 2 is shorter than 16" in short.stderr
    assert "short" not in short.stderr.split("shorter")[0]  # the position, never the value
    leaky = run_velvet("serve", env={**env, "VELVET_STATE": "https://x:t0ken@git.example/r.git"})
    assert leaky.returncode == 2
    assert "VELVET_STATE_TOKEN" in leaky.stderr
    assert "t0ken" not in leaky.stderr


@pytest.mark.parametrize("host", ["bad host", "", "-x", "a..b", "ex_ample.com", "x" * 300])
def test_velvet_serve_refuses_a_bad_host_by_name(host: str, run_velvet) -> None:
    result = run_velvet("serve", "--host", host, env={"VELVET_STATUS_TOKENS": READ_TOKEN})
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--host'" in result.stderr
    assert "Traceback" not in result.stderr


# --- fingerprints: keyed, so a guess cannot be matched ------------------------------------


def test_a_six_character_value_cannot_be_brute_forced_from_what_the_app_serves(
        settings: Settings, store: Store) -> None:
    secret, other = "402917", "835551"  # six characters, from a space walked in seconds
    job = make_job(State.DISTRIBUTING)
    for token_id, value in (("old", secret), ("new", other)):
        token = job.token(token_id)
        assert token is not None
        token.fingerprint = fingerprint(value)  # the ledger is where a token's facts live
    store.create(job)
    with TestClient(create_app(settings, store=store), headers=AUTH) as c:
        served = "\n".join(c.get(p).text for p in (
            f"/tokens/{CRED}/rotations", f"/tokens/{CRED}/rotations/{job.job_id}",
            f"/tokens/{CRED}/rotations/{job.job_id}/view", f"/tokens/{CRED}/view", "/",
            "/openapi.json", f"/tokens/{CRED}/subscribers", "/flags", "/healthz"))
        with c.stream("GET", f"/tokens/{CRED}/rotations/{job.job_id}/stream") as stream:
            served += "\n".join(itertools.islice(stream.iter_lines(), 3))
    assert len(set(re.findall(r"hmac:[0-9a-f]{12}", served))) == 2  # old and new, keyed
    assert "sha256:" not in served

    def windows(text: str) -> set[str]:
        """Every 12-hex-digit string in `text`: the length of a stored fingerprint."""
        return {run[i:i + 12] for run in re.findall(r"[0-9a-f]{12,}", text)
                for i in range(len(run) - 11)}

    stored, shown = windows(job.to_json()), windows(served)
    cracked = []
    for guess in map("{:06d}".format, range(10**6)):  # every 6-digit value
        digest = hashlib.sha256(guess.encode()).hexdigest()[:12]
        if digest in stored:
            cracked.append(guess)
        assert digest not in shown, guess
    assert cracked == [secret, other]  # the same search does crack the branch's fingerprints


# --- event streams are bounded ------------------------------------------------------------


def test_event_streams_are_bounded(settings: Settings, store: Store,
                                   seeded: dict[str, Job]) -> None:
    live = seeded["active"]  # in flight: its stream stays open
    app = create_app(settings, store=store, refresh_seconds=0.05, heartbeat_seconds=0.2,
                     max_streams=2)
    url = f"/tokens/{CRED}/rotations/{live.job_id}/stream"
    with (ServerThread(app, name="web", lifespan="on") as server,
          httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as http):
        with http.stream("GET", url) as first, http.stream("GET", url) as second:
            # each stream's line iterator is kept: dropping one closes its connection
            reading = [first.iter_lines(), second.iter_lines()]
            for response, lines in zip((first, second), reading, strict=True):
                assert response.status_code == 200
                assert next(lines) == "retry: 3000"
            third = http.get(url)
            assert third.status_code == 503
            assert third.json()["error"].startswith("too many open event streams (at most 2)")
            assert third.headers["retry-after"] == "3"
        for _ in range(100):  # the server sees the closed streams go (not a timing assertion)
            with http.stream("GET", url) as fourth:
                if fourth.status_code == 200:
                    break
            time.sleep(0.1)
        assert fourth.status_code == 200


# --- a revocation's page ------------------------------------------------------------------


def revocation_job(status: State, leaking: str | None) -> Job:
    at = make_job(State.INIT).created_at
    rows = [ConsumerRow(consumer_id=c, kind="heroku_config_var", target=f"heroku app {c}",
                        distribute_status=RowStatus.SKIPPED,
                        validate_status=RowStatus.FAILED if c == leaking else RowStatus.SUCCEEDED)
            for c in ("heroku-config-api-prod", "heroku-config-worker-prod")]
    path = ["rev_init", "rev_revoking", "rev_revoked", "rev_validating", str(status)]
    return Job(job_id=new_job_id(), credential=CRED, vendor="heroku", flow_type=Flow.REVOCATION,
               env="prod", status=status, created_at=at, updated_at=at, actor="alice",
               consumers=rows, events=[Event(at=at, actor="alice", action="revoke",
                                             from_state=a, to_state=b)
                                       for a, b in itertools.pairwise(path)])


def put(store: Store, job: Job) -> None:
    store.transact(lambda read, ls: Change(
        {f"jobs/{job.credential}/{job.job_id}.json": job.to_json().encode()}, "test"))


def test_a_leaked_revocation_says_sev1_and_shows_the_lockout_checks(
        client: TestClient, store: Store) -> None:
    job = revocation_job(State.REV_LEAKED, "heroku-config-worker-prod")
    put(store, job)  # beside the seeded rotation in flight, which holds the lock
    page = client.get(f"/tokens/{CRED}/rotations/{job.job_id}/view").text
    alert = re.search(r'<div class="alert sev1" role="alert">(.*?)</div>', page, re.S)
    assert alert is not None
    assert "SEV1" in alert.group(1)
    assert "<code>heroku-config-worker-prod</code>" in alert.group(1)
    assert "heroku-config-api-prod" not in alert.group(1)
    assert "confirm_leak_resolved" in alert.group(1)
    assert '<th scope="col">Lockout check</th>' in page
    assert "Distribute" not in page
    assert "LEAKING: still accepts the revoked value" in page
    assert "locked out (refuses the revoked value)" in page
    assert "Locked out</dt><dd>1 of 2 consumers" in page
    put(store, job.model_copy(update={"status": State.REV_DONE}))
    done = client.get(f"/tokens/{CRED}/rotations/{job.job_id}/view").text
    assert "SEV1" not in done
    assert '<th scope="col">Lockout check</th>' in done


def test_a_rotation_page_keeps_its_distribute_column(client: TestClient,
                                                     seeded: dict[str, Job]) -> None:
    page = client.get(f"/tokens/{CRED}/rotations/{seeded['active'].job_id}/view").text
    assert '<th scope="col">Distribute</th>' in page
    assert "Lockout check" not in page
    assert "SEV1" not in page


def test_settings_read_several_status_tokens() -> None:
    settings = Settings.from_env({"VELVET_STATUS_TOKENS": f" {READ_TOKEN},\n{NEXT_READ_TOKEN} "})
    assert [t.get_secret_value() for t in settings.status_tokens] == [READ_TOKEN,
                                                                      NEXT_READ_TOKEN]
    assert READ_TOKEN not in repr(settings)
    assert Settings.from_env({}).status_tokens == ()
    assert isinstance(settings.status_tokens[0], SecretStr)
