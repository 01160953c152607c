"""The status app against a real state branch (git in tmp_path) and a manifest file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi
from pydantic import SecretStr
from starlette.routing import Route
from starlette.testclient import TestClient

from velvet_runner.gitbranch import Change
from velvet_runner.machine import Flow, State
from velvet_runner.records import ConsumerRow, Event, Job, RowStatus, fingerprint, new_job_id
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.web import create_app, openapi_document
from velvet_runner.workflows import next_workflow
from velvet_sandbox.server import ServerThread

SECRET_OLD = "hk-old-SECRET-4f1d2c9a7b61e0"
SECRET_NEW = "hk-new-SECRET-8e7d6c5b4a3921"
BOOTSTRAP = "hk-bootstrap-SECRET-0a9b8c7d"
READ_TOKEN = "status-read-TOKEN-7c1e55a0b9d2"  # VELVET_STATUS_TOKENS: two valid at once
NEXT_READ_TOKEN = "status-read-TOKEN-next-44f1e0c3"
SECRETS = (SECRET_OLD, SECRET_NEW, BOOTSTRAP, READ_TOKEN, NEXT_READ_TOKEN)
AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}
CRED = "HK_PLATFORM_FULL"
DONE_AT = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 2, 1, tzinfo=UTC)

MANIFEST = """\
version: 1
credentials:
  - name: HK_PLATFORM_FULL
    description: Heroku platform key <b>bold?</b>
    vendor: heroku
    env: prod
    schedule: 90d
    vault: {kind: infisical_secret, project_id: raxx, environment: prod, name: HK_PLATFORM_FULL}
    consumers:
      - consumer_id: heroku-config-api-prod
        kind: heroku_config_var
        app: raxx-api-prod
        var: HEROKU_API_KEY
        env: prod
        healthcheck: {type: http, url: "https://raxx-api-prod.example/healthz?probe=1"}
      - consumer_id: github-actions-heroku-api-key
        kind: github_actions_secret
        repository: raxx/platform
        secret: HEROKU_API_KEY
        env: prod
  - name: PM_SERVER_MAIL
    vendor: postmark
    env: prod
    schedule: 180d
    vault: {kind: infisical_secret, project_id: raxx, environment: prod, name: PM_SERVER_MAIL}
    consumers:
      - consumer_id: infisical-postmark-prod
        kind: infisical_secret
        project_id: raxx-api
        environment: prod
        name: POSTMARK_SERVER_TOKEN
        env: prod
        active: false
        healthcheck: {type: readback}
"""

OPERATIONAL_PATH = ["init", "verifying", "verified", "minting", "minted", "distributing",
                    "distributed", "validating", "validated", "revoking", "done"]


def make_job(status: State, *, credential: str = CRED, flow: Flow = Flow.OPERATIONAL,
             at: datetime | None = None, path: list[str] | None = None,
             rows: RowStatus = RowStatus.PENDING) -> Job:
    at = at or datetime.now(UTC).replace(microsecond=0)
    path = path or OPERATIONAL_PATH[: OPERATIONAL_PATH.index(status) + 1]
    events = [Event(at=at, actor="alice", action="create", to_state=path[0])]
    events += [Event(at=at, actor="alice", action="step", from_state=a, to_state=b)
               for a, b in zip(path, path[1:], strict=False)]
    return Job(
        job_id=new_job_id(), credential=credential, vendor="heroku", flow_type=flow, env="prod",
        status=status, created_at=at, updated_at=at, actor="alice",
        consumers=[
            ConsumerRow(consumer_id="heroku-config-api-prod", kind="heroku_config_var",
                        target="heroku app raxx-api-prod config var HEROKU_API_KEY",
                        distribute_status=rows),
            ConsumerRow(consumer_id="github-actions-heroku-api-key",
                        kind="github_actions_secret",
                        target="github raxx/platform secret HEROKU_API_KEY",
                        distribute_status=rows),
        ],
        events=events, old_auth_id="auth-old-1", new_auth_id="auth-new-2",
        old_fingerprint=fingerprint(SECRET_OLD), new_fingerprint=fingerprint(SECRET_NEW),
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "state.git"), cache_dir=tmp_path / "cache")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    (tmp_path / "flags.yml").write_text("velvet_v2_rotation: true\nother_flag: false\n")
    return Settings(manifest=tmp_path / "manifest.yml", state=str(tmp_path / "state.git"),
                    cache_dir=tmp_path / "cache", env="prod", github_repository="raxx/ops",
                    heroku_token=SecretStr(BOOTSTRAP),
                    status_tokens=(SecretStr(READ_TOKEN), SecretStr(NEXT_READ_TOKEN)))


@pytest.fixture
def seeded(store: Store) -> dict[str, Job]:
    """A finished rotation (done on DONE_AT) and one in flight (distributing, holds the lock)."""
    done = make_job(State.VALIDATED, at=DONE_AT, rows=RowStatus.SUCCEEDED)
    store.create(done)

    def finish(job: Job) -> Job:
        job.status = State.DONE
        job.events.append(Event(at=DONE_AT, actor="bob", action="proceed_revoke",
                                from_state="revoking", to_state="done"))
        return job

    done = store.update(CRED, done.job_id, finish)
    active = make_job(State.DISTRIBUTING)
    store.create(active)
    return {"done": done, "active": active}


@pytest.fixture
def client(settings: Settings, store: Store, seeded: dict[str, Job]) -> Iterator[TestClient]:
    app = create_app(settings, store=store, refresh_seconds=0.05, now=lambda: NOW)
    with TestClient(app, headers=AUTH) as c:
        yield c


def set_row(store: Store, job: Job, consumer_id: str, **changes: Any) -> Job:
    def apply(j: Job) -> Job:
        row = j.row(consumer_id)
        assert row is not None
        for k, v in changes.items():
            setattr(row, k, v)
        return j

    return store.update(job.credential, job.job_id, apply)


def set_status(store: Store, job: Job, status: State) -> Job:
    def apply(j: Job) -> Job:
        j.events.append(Event(at=datetime.now(UTC), actor="engine", action="step",
                              from_state=str(j.status), to_state=str(status)))
        j.status = status
        return j

    return store.update(job.credential, job.job_id, apply)


# --- JSON endpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/health"])
def test_health(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "velvet"}


def test_flags_from_flags_yml_beside_the_manifest(client: TestClient) -> None:
    response = client.get("/flags")
    assert response.json() == {"velvet_v2_rotation": True, "other_flag": False}


def test_flags_invalid_file_is_503_json(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "flags.yml").write_text("velvet_v2_rotation: maybe\n")
    response = client.get("/flags")
    assert response.status_code == 503
    assert response.json()["status"] == 503


def test_subscribers_lists_consumers_without_values_or_urls(client: TestClient) -> None:
    response = client.get(f"/tokens/{CRED}/subscribers")
    assert response.status_code == 200
    body = response.json()
    assert body["credential"] == CRED
    assert body["consumers"] == [
        {"consumer_id": "heroku-config-api-prod", "kind": "heroku_config_var", "env": "prod",
         "active": True, "healthcheck_type": "http",
         "target": "heroku app raxx-api-prod config var HEROKU_API_KEY"},
        {"consumer_id": "github-actions-heroku-api-key", "kind": "github_actions_secret",
         "env": "prod", "active": True, "healthcheck_type": "none",
         "target": "github raxx/platform secret HEROKU_API_KEY"},
    ]
    assert "probe=1" not in response.text  # health-check URLs are not shown
    inactive = client.get("/tokens/PM_SERVER_MAIL/subscribers").json()["consumers"]
    assert inactive[0]["active"] is False


def test_unknown_credential_is_404_json(client: TestClient) -> None:
    for path in ("/tokens/NOPE/subscribers", "/tokens/NOPE/rotations",
                 f"/tokens/NOPE/rotations/{new_job_id()}",
                 f"/tokens/NOPE/rotations/{new_job_id()}/stream"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert body["status"] == 404
        assert body["error"].startswith("no credential NOPE")


def test_rotations_newest_first_with_limit(client: TestClient, seeded: dict[str, Job]) -> None:
    body = client.get(f"/tokens/{CRED}/rotations").json()
    assert body["limit"] == 20
    assert [j["job_id"] for j in body["jobs"]] == [seeded["active"].job_id,
                                                   seeded["done"].job_id]
    one = client.get(f"/tokens/{CRED}/rotations", params={"limit": 1}).json()
    assert [j["status"] for j in one["jobs"]] == ["distributing"]
    assert client.get("/tokens/PM_SERVER_MAIL/rotations").json()["jobs"] == []


def test_rotations_default_limit_is_20(settings: Settings, store: Store) -> None:
    jobs = [make_job(State.DONE) for _ in range(25)]
    store.transact(lambda read, ls: Change(
        {f"jobs/{CRED}/{j.job_id}.json": j.to_json().encode() for j in jobs}, "seed"))
    with TestClient(create_app(settings, store=store, refresh_seconds=0.05), headers=AUTH) as c:
        body = c.get(f"/tokens/{CRED}/rotations").json()
        assert len(body["jobs"]) == 20
        newest = sorted((j.job_id for j in jobs), reverse=True)
        assert [j["job_id"] for j in body["jobs"]] == newest[:20]
        assert len(c.get(f"/tokens/{CRED}/rotations?limit=100").json()["jobs"]) == 25


BAD_LIMITS = ["abc", "0", "101", "-1", "1.5", "", "+5", " 5", "1e2", "99999999999999999999"]


def test_bad_limit_is_400_json(client: TestClient) -> None:
    for limit in BAD_LIMITS:
        response = client.get(f"/tokens/{CRED}/rotations", params={"limit": limit})
        assert response.status_code == 400, limit
        assert response.json() == {"error": "limit must be an integer from 1 to 100",
                                   "status": 400}


def test_job_in_the_runbook_polling_shape(client: TestClient, seeded: dict[str, Job]) -> None:
    job = seeded["active"]
    body = client.get(f"/tokens/{CRED}/rotations/{job.job_id}").json()
    for key in ("job_id", "status", "consumers", "created_at", "updated_at", "credential",
                "flow_type", "env", "events"):
        assert key in body
    assert body["status"] == "distributing"
    assert body["consumers"][0]["consumer_id"] == "heroku-config-api-prod"
    assert {"distribute_status", "validate_status"} <= set(body["consumers"][0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["updated_at"])
    assert body == unkeyed(json.loads(job.to_json()), body)


def unkeyed(stored: Any, served: Any) -> Any:
    """The stored record as the app serves it: each fingerprint keyed (hmac:), wherever it is
    (the job's views and its ledger entries), nothing else."""
    if isinstance(stored, dict) and isinstance(served, dict):
        out = {}
        for key, value in stored.items():
            if (key == "fingerprint" or key.endswith("_fingerprint")) and value is not None:
                assert re.fullmatch(r"hmac:[0-9a-f]{12}", served[key]), served[key]
                assert served[key] != value
                out[key] = served[key]
            else:
                out[key] = unkeyed(value, served.get(key))
        return out
    if isinstance(stored, list) and isinstance(served, list) and len(stored) == len(served):
        return [unkeyed(a, b) for a, b in zip(stored, served, strict=True)]
    return stored


def test_unknown_job_is_404(client: TestClient, seeded: dict[str, Job]) -> None:
    missing = new_job_id()
    response = client.get(f"/tokens/{CRED}/rotations/{missing}")
    assert response.status_code == 404
    assert response.json()["error"] == f"no job {missing} for credential {CRED}"
    # a job of another credential is not found under this one
    other = client.get(f"/tokens/PM_SERVER_MAIL/rotations/{seeded['done'].job_id}")
    assert other.status_code == 404


def test_every_mutating_method_is_405(client: TestClient, seeded: dict[str, Job]) -> None:
    job = seeded["active"].job_id
    for path in ("/", "/healthz", "/flags", f"/tokens/{CRED}/rotations", f"/tokens/{CRED}/rotate",
                 f"/tokens/{CRED}/rotations/{job}/stage", f"/tokens/{CRED}/rotations/{job}",
                 "/no/such/path", "/openapi.json"):
        for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"):
            response = client.request(method, path, json={"action": "verify"})
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == "GET, HEAD"
            assert response.json()["status"] == 405
    assert client.get(f"/tokens/{CRED}/rotations/{job}").json()["status"] == "distributing"


def test_unknown_path_is_404_json(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "no such path", "status": 404}


ODD_NAMES = [
    "..%2F..%2Fetc%2Fpasswd", "..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "..", "%2E%2E",
    "%00", "HK_PLATFORM_FULL%00", "HK_PLATFORM_FULL%0A", "%0AHK_PLATFORM_FULL",
    "A" * 5000, "%C3%84BC", "HK_PLATFORM_FULL%E2%80%8B", "hk_platform_full", "HK-PLATFORM",
    "%2Fetc%2Fpasswd", "HK_PLATFORM_FULL%2F..%2F..", "%5C..%5C..%5Cwindows", "%F0%9F%94%91",
]


def test_odd_credential_names_are_404(client: TestClient, seeded: dict[str, Job]) -> None:
    job_id = seeded["done"].job_id
    for name, path in ((n, p) for n in ODD_NAMES for p in (
            f"/tokens/{n}/subscribers", f"/tokens/{n}/rotations",
            f"/tokens/{n}/rotations/{job_id}", f"/tokens/{n}/rotations/{job_id}/stream",
            f"/tokens/{n}/view", f"/tokens/{n}/rotations/{job_id}/view")):
        response = client.get(path)
        assert response.status_code == 404, (name, path)
        assert "root:" not in response.text
        assert "velvet_v2_rotation" not in response.text
        assert seeded["done"].job_id not in response.text


# (a bare ".." job id is left out: the client resolves /rotations/../view to /tokens/X/view)
ODD_JOB_IDS = [n for n in ODD_NAMES if n != ".."] + [
    "..%2F..%2Fmanifest", "..%2F" + "x" * 40, "00000000-0000-0000-0000-00000000000",
    "%s%0A.json", "%s%00", "HEAD", "HEAD:jobs", "%s.json",
]


def test_odd_job_ids_are_404(client: TestClient, seeded: dict[str, Job]) -> None:
    for job_id, suffix in ((i.replace("%s", seeded["done"].job_id), s) for i in ODD_JOB_IDS
                           for s in ("", "/stream", "/view")):
        response = client.get(f"/tokens/{CRED}/rotations/{job_id}{suffix}")
        assert response.status_code == 404, (job_id, suffix)
        assert "root:" not in response.text
        assert '"events"' not in response.text


def test_reads_are_cached_per_head(settings: Settings, store: Store,
                                   seeded: dict[str, Job]) -> None:
    class Counting(Store):
        calls: list[tuple[str, Any]] = []

        def list_jobs(self, credential: str, limit: int | None = None, *,
                      fetch: bool = True) -> list[Job]:
            self.calls.append(("list_jobs", limit))
            assert not fetch
            return super().list_jobs(credential, limit, fetch=fetch)

        def get(self, credential: str, job_id: str, *, fetch: bool = True) -> Job:
            self.calls.append(("get", job_id))
            assert not fetch
            return super().get(credential, job_id, fetch=fetch)

    counting = Counting(store.url, store.branch, settings.cache_dir)
    with TestClient(create_app(settings, store=counting, refresh_seconds=0.05), headers=AUTH) as c:
        assert len(c.get(f"/tokens/{CRED}/rotations?limit=1").json()["jobs"]) == 1
        assert counting.calls == [("list_jobs", 1)]
        c.get(f"/tokens/{CRED}/rotations?limit=1")
        c.get(f"/tokens/{CRED}/rotations/{seeded['active'].job_id}")
        assert counting.calls == [("list_jobs", 1)]  # served from the cache
        set_status(store, seeded["active"], State.DISTRIBUTED)  # moves the head
        counting.calls.clear()
        assert c.get(f"/tokens/{CRED}/rotations/{seeded['active'].job_id}").json()[
            "status"] == "distributed"
        assert counting.calls == [("get", seeded["active"].job_id)]


def test_state_branch_that_does_not_exist_yet(settings: Settings, store: Store) -> None:
    with TestClient(create_app(settings, store=store, refresh_seconds=0.05), headers=AUTH) as c:
        assert c.get(f"/tokens/{CRED}/rotations").json()["jobs"] == []
        page = c.get("/")
        assert page.status_code == 200
        assert "due now (never rotated by Velvet)" in page.text


# --- no token values, anywhere -----------------------------------------------------------


def test_no_token_value_in_any_response(client: TestClient, seeded: dict[str, Job]) -> None:
    done, active = seeded["done"].job_id, seeded["active"].job_id
    paths = ["/", "/healthz", "/health", "/flags", "/openapi.json",
             f"/tokens/{CRED}/subscribers", f"/tokens/{CRED}/rotations",
             f"/tokens/{CRED}/rotations?limit=100", f"/tokens/{CRED}/view",
             f"/tokens/{CRED}/rotations/{done}", f"/tokens/{CRED}/rotations/{active}",
             f"/tokens/{CRED}/rotations/{done}/view", f"/tokens/{CRED}/rotations/{active}/view",
             f"/tokens/{CRED}/rotations/{done}/stream", "/nope",
             f"/tokens/{SECRET_OLD}/rotations", f"/tokens/{CRED}/rotations/{SECRET_NEW}"]
    seen = []
    for path in paths:
        response = client.get(path)
        seen.append(response.text + json.dumps(dict(response.headers)))
    text = "\n".join(seen)
    # the records' fingerprints are shown keyed, never as stored (test_web_closed.py)
    assert fingerprint(SECRET_OLD) not in text
    assert re.search(r"hmac:[0-9a-f]{12}", text)
    for secret in SECRETS:
        assert secret not in text


# --- SSE ---------------------------------------------------------------------------------


def sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Events as {"event", "data"} and comments as {"comment"}."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line == "":
            if "event" in event:
                yield {"event": event["event"], "data": json.loads(event.get("data", "null"))}
            event = {}
        else:
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


def next_event(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if "event" in e)


def test_sse_emits_changes_heartbeats_and_ends_at_terminal(
        settings: Settings, store: Store, seeded: dict[str, Job]) -> None:
    job = seeded["active"]
    app = create_app(settings, store=store, refresh_seconds=0.05, heartbeat_seconds=0.3)
    with (ServerThread(app, name="web", lifespan="on") as server,
          httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as http):
        url = f"/tokens/{CRED}/rotations/{job.job_id}/stream"
        with http.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse(response)
            first = next_event(events)
            assert first["event"] == "job"
            assert first["data"]["status"] == "distributing"

            # a change that is neither the status nor a consumer row emits nothing
            store.update(CRED, job.job_id, lambda j: j.model_copy(update={"ticket": "ROT-1"}))
            beats = 0
            for item in events:
                assert "event" not in item, item
                beats += 1
                if beats == 3:
                    break

            set_row(store, job, "heroku-config-api-prod",
                    distribute_status=RowStatus.SUCCEEDED, holds="new")
            row = next_event(events)
            assert row["event"] == "job"
            assert row["data"]["consumers"][0]["distribute_status"] == "succeeded"
            assert row["data"]["status"] == "distributing"

            set_status(store, job, State.DISTRIBUTED)
            moved = next_event(events)
            assert moved["data"]["status"] == "distributed"

            set_status(store, job, State.ABORTED)
            final = next_event(events)
            assert (final["event"], final["data"]["status"]) == ("job", "aborted")
            end = next_event(events)
            assert end == {"event": "end", "data": {"job_id": job.job_id, "status": "aborted"}}
            assert list(events) == []  # the server closed the stream


def test_sse_of_a_finished_job_sends_it_and_ends(client: TestClient,
                                                seeded: dict[str, Job]) -> None:
    job = seeded["done"]
    response = client.get(f"/tokens/{CRED}/rotations/{job.job_id}/stream")
    assert response.status_code == 200
    assert response.text.startswith("retry: 3000\n\n")
    blocks = [b for b in response.text.split("\n\n") if b.startswith("event:")]
    assert [b.splitlines()[0] for b in blocks] == ["event: job", "event: end"]
    served = json.loads(blocks[0].splitlines()[1].removeprefix("data: "))
    assert served == unkeyed(json.loads(job.to_json()), served)


# --- HTML --------------------------------------------------------------------------------


def test_index_lists_every_credential(client: TestClient, seeded: dict[str, Job]) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'class="banner banner-prod"' in page
    assert "PRODUCTION" in page
    assert "<main" in page
    assert "<header" in page
    assert "<nav" in page
    assert '<th scope="col">Next due</th>' in page
    row = re.search(rf"<tr><th scope=\"row\"><a href=\"/tokens/{CRED}/view\">.*?</tr>", page,
                    re.S)
    assert row is not None
    cells = row.group(0)
    assert seeded["active"].job_id in cells  # the current job (lock holder) and last rotation
    assert "2026-01-01 00:00 UTC" in cells
    assert "(31d 0h ago)" in cells
    assert "2026-04-01 00:00 UTC" in cells
    assert "(in 59d 0h)" in cells
    assert "PM_SERVER_MAIL" in page
    # its only consumer is inactive: `velvet due` never lists it, and the page agrees
    pm = re.search(r'<tr><th scope="row"><a href="/tokens/PM_SERVER_MAIL/view">.*?</tr>', page,
                   re.S)
    assert pm is not None
    assert "no active prod consumers" in pm.group(0)
    assert "due now" not in pm.group(0)


def test_staging_banner(settings: Settings, store: Store, seeded: dict[str, Job]) -> None:
    staging = settings.model_copy(update={"env": "staging"})
    with TestClient(create_app(staging, store=store), headers=AUTH) as c:
        page = c.get("/").text
    assert 'class="banner banner-staging"' in page
    assert "STAGING" in page
    assert "PRODUCTION" not in page


def test_invalid_manifest_still_serves_the_page(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "manifest.yml").write_text("credentials: [\n")
    page = client.get("/")
    assert page.status_code == 200
    assert "the manifest does not load" in page.text
    assert CRED in page.text  # still listed from the state branch
    assert client.get(f"/tokens/{CRED}/subscribers").status_code == 503
    assert client.get(f"/tokens/{CRED}/rotations").status_code == 200


def test_credential_page(client: TestClient, seeded: dict[str, Job]) -> None:
    page = client.get(f"/tokens/{CRED}/view").text
    assert "heroku-config-api-prod" in page
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page
    assert "<b>bold?" not in page
    assert page.index(seeded["active"].job_id) < page.index(seeded["done"].job_id)
    missing = client.get("/tokens/NOPE/view")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")


def test_job_page(client: TestClient, store: Store, seeded: dict[str, Job]) -> None:
    job = set_row(store, seeded["active"], "heroku-config-api-prod",
                  distribute_status=RowStatus.FAILED,
                  detail='<script>alert("x")</script> & "quotes"')
    set_row(store, job, "github-actions-heroku-api-key", distribute_status=RowStatus.SUCCEEDED)
    page = client.get(f"/tokens/{CRED}/rotations/{job.job_id}/view").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;quotes&#34;" in page
    assert 'aria-live="polite"' in page
    assert 'class="row-status tone-bad" data-status="failed"' in page
    assert 'class="row-status tone-ok" data-status="succeeded"' in page
    assert "✗</span> failed" in page
    assert "✓</span> succeeded" in page
    assert 'class="row-status tone-wait" data-status="pending"' in page
    # the path as an ordered list (works without JS) and the mermaid source
    path = re.search(r'<ol class="path">(.*?)</ol>', page)
    assert path is not None
    assert re.findall(r"<code>(\w+)</code>", path.group(1)) == OPERATIONAL_PATH[:6]
    assert 'aria-current="step"><code>distributing</code>' in path.group(1)
    assert '<pre class="mermaid">stateDiagram-v2' in page
    assert "distributing --&gt; distributed" in page
    # the stream the script listens to, and the workflow that runs next
    assert f'data-stream="/tokens/{CRED}/rotations/{job.job_id}/stream"' in page
    assert ('href="https://github.com/raxx/ops/actions/workflows/velvet-stage-2-mint.yml"'
            in page)
    missing = client.get(f"/tokens/{CRED}/rotations/{new_job_id()}/view")
    assert missing.status_code == 404
    assert "<h1>Not found</h1>" in missing.text


@pytest.mark.parametrize(("flow", "status", "force", "workflow"), [
    (Flow.OPERATIONAL, State.INIT, False, "velvet-stage-1-verify.yml"),
    (Flow.OPERATIONAL, State.VERIFYING, False, "velvet-stage-1-verify.yml"),
    (Flow.OPERATIONAL, State.VERIFY_FAILED, False, "velvet-recovery.yml"),
    (Flow.OPERATIONAL, State.VERIFIED, False, "velvet-stage-2-mint.yml"),
    (Flow.OPERATIONAL, State.DISTRIBUTING, False, "velvet-stage-2-mint.yml"),
    (Flow.OPERATIONAL, State.DISTRIBUTE_PARTIAL, False, "velvet-recovery.yml"),
    (Flow.OPERATIONAL, State.VALIDATE_PARTIAL, True, "velvet-recovery.yml"),
    (Flow.OPERATIONAL, State.VALIDATED, False, "velvet-stage-3-revoke.yml"),
    (Flow.OPERATIONAL, State.REVOKING, False, "velvet-stage-3-revoke.yml"),
    (Flow.OPERATIONAL, State.REVOKE_FAILED, False, "velvet-recovery.yml"),
    (Flow.OPERATIONAL, State.DONE, False, None),
    (Flow.OPERATIONAL, State.ABORTED, False, None),
    (Flow.REVOCATION, State.REV_INIT, False, "velvet-revocation.yml"),
    (Flow.REVOCATION, State.REV_VALIDATING, False, "velvet-revocation.yml"),
    (Flow.REVOCATION, State.REV_LEAKED, False, "velvet-recovery.yml"),
    (Flow.REVOCATION, State.REV_DONE, False, None),
    (Flow.TESTING, State.INIT, False, "velvet-stage-1-verify.yml"),
    (Flow.TESTING, State.VALIDATE_FAILED, False, None),
])
def test_next_workflow_by_status(flow: Flow, status: State, force: bool,
                                 workflow: str | None) -> None:
    job = make_job(State.INIT).model_copy(update={"flow_type": flow, "status": status,
                                                  "force_revoke": force})
    found = next_workflow(job)
    assert (found[0].file if found else None) == workflow


def test_no_workflow_link_without_a_repository(settings: Settings, store: Store,
                                               seeded: dict[str, Job]) -> None:
    bare = settings.model_copy(update={"github_repository": None})
    with TestClient(create_app(bare, store=store), headers=AUTH) as c:
        page = c.get(f"/tokens/{CRED}/rotations/{seeded['active'].job_id}/view").text
    assert "actions/workflows" not in page
    assert "velvet-stage-2-mint.yml" in page
    assert "set GITHUB_REPOSITORY" in page


def test_static_assets_and_security_headers(client: TestClient) -> None:
    css = client.get("/static/velvet.css")
    js = client.get("/static/velvet.js")
    assert css.headers["content-type"].startswith("text/css")
    assert ".banner-prod" in css.text
    assert js.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in js.text
    assert "innerHTML" not in js.text
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"


# --- OpenAPI -----------------------------------------------------------------------------


def test_openapi_is_served_valid_and_matches_the_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc == json.loads(json.dumps(openapi_document()))
    validate_openapi(doc)
    app = client.app
    routes = {r.path: r.methods for r in app.routes if isinstance(r, Route)}  # type: ignore[attr-defined]
    assert set(routes) == set(doc["paths"])
    for path, item in doc["paths"].items():
        # only the methods that exist (HEAD is implied by GET); the rest answer 405
        assert set(item) == {m.lower() for m in routes[path] if m != "HEAD"} == {"get"}, path
        params = {p["name"] for p in item["get"].get("parameters", []) if p["in"] == "path"}
        assert params == set(re.findall(r"{(\w+)}", path)), path
        if params:
            assert "404" in item["get"]["responses"], path
        concrete = path.replace("{name}", CRED).replace("{job_id}", new_job_id())
        refused = client.request("DELETE", concrete)
        assert refused.status_code == 405, path
        assert refused.headers["allow"] == ", ".join(sorted(routes[path])), path
    assert len({op["operationId"] for item in doc["paths"].values() for op in item.values()}) \
        == len(doc["paths"])
    assert "400" in doc["paths"]["/tokens/{name}/rotations"]["get"]["responses"]
    limit = doc["paths"]["/tokens/{name}/rotations"]["get"]["parameters"][1]
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}


def test_openapi_job_schema_accepts_real_jobs(client: TestClient, seeded: dict[str, Job]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = client.get("/openapi.json").json()
    body = client.get(f"/tokens/{CRED}/rotations").json()
    schema = {"$ref": "#/components/schemas/Rotations", "components": doc["components"]}
    jsonschema.validate(body, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "jobs": [{"job_id": 1}]}, schema)


def test_finished_job_page(client: TestClient) -> None:
    # the done job's page: terminal, nothing runs next, path ends at done
    body = client.get(f"/tokens/{CRED}/rotations").json()
    done = next(j for j in body["jobs"] if j["status"] == "done")
    page = client.get(f"/tokens/{CRED}/rotations/{done['job_id']}/view").text
    assert "This job is finished; nothing runs next." in page
    assert 'data-terminal="true"' in page
    assert 'aria-current="step"><code>done</code>' in page


def test_head_of_a_live_stream_returns_at_once(client: TestClient,
                                              seeded: dict[str, Job]) -> None:
    response = client.head(f"/tokens/{CRED}/rotations/{seeded['active'].job_id}/stream")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b""


def test_unreadable_record_and_stray_folder(client: TestClient, store: Store,
                                           seeded: dict[str, Job]) -> None:
    broken = new_job_id()
    store.transact(lambda read, ls: Change({
        f"jobs/{CRED}/{broken}.json": b'{"job_id": "not a job"}\n',
        "jobs/not-a-credential/x.json": b"{}\n",
    }, "corrupt"))
    listed = client.get(f"/tokens/{CRED}/rotations").json()["jobs"]
    assert [j["job_id"] for j in listed] == [seeded["active"].job_id, seeded["done"].job_id]
    one = client.get(f"/tokens/{CRED}/rotations/{broken}")
    assert one.status_code == 503
    assert one.json()["error"] == f"job record {broken} does not parse; see the server log"
    assert client.get("/").status_code == 200
    assert "not-a-credential" not in client.get("/").text
    stream = client.get(f"/tokens/{CRED}/rotations/{broken}/stream")
    assert stream.status_code == 503


# --- what the page says agrees with `velvet due` (timeline's answers) --------------------


def index_row(page: str, name: str = CRED) -> str:
    row = re.search(rf'<tr><th scope="row"><a href="/tokens/{name}/view">.*?</tr>', page, re.S)
    assert row is not None
    return row.group(0)


def test_a_dry_run_is_not_the_last_rotation(settings: Settings, store: Store) -> None:
    done = make_job(State.DONE, at=DONE_AT)
    dry = make_job(State.DONE, flow=Flow.TESTING, path=["init", "verifying", "done"])
    store.transact(lambda read, ls: Change(
        {f"jobs/{CRED}/{j.job_id}.json": j.to_json().encode() for j in (done, dry)}, "seed"))
    with TestClient(create_app(settings, store=store, now=lambda: NOW), headers=AUTH) as c:
        row = index_row(c.get("/").text)
    assert done.job_id in row
    assert dry.job_id not in row
    assert "2026-01-01 00:00 UTC" in row  # last completed: the operational one


def test_the_page_reads_every_job_as_schedule_does(settings: Settings, store: Store) -> None:
    from velvet_runner.manifest import load
    from velvet_runner.schedule import due_credentials

    done = make_job(State.DONE, at=DONE_AT)
    later = [make_job(State.DONE, flow=Flow.TESTING, path=["init", "verifying", "done"])
             for _ in range(250)]  # more than any recent window
    store.transact(lambda read, ls: Change(
        {f"jobs/{CRED}/{j.job_id}.json": j.to_json().encode() for j in [done, *later]}, "seed"))
    with TestClient(create_app(settings, store=store, now=lambda: NOW), headers=AUTH) as c:
        row = index_row(c.get("/").text)
    assert "2026-04-01 00:00 UTC" in row  # due: 90 days after the one real rotation
    assert "never" not in row
    at_due = datetime(2026, 4, 2, tzinfo=UTC)
    [due] = [r for r in due_credentials(load(settings.manifest), store, at_due, env="prod")
             if r["credential"] == CRED]
    assert due["due_at"] == "2026-04-01T00:00:00Z"


def test_no_open_stage_button_while_the_stage_runs(client: TestClient, store: Store,
                                                    seeded: dict[str, Job]) -> None:
    job = seeded["active"]  # distributing: stage 2 is at work
    page = client.get(f"/tokens/{CRED}/rotations/{job.job_id}/view").text
    section = page.split('id="next-stage"', 1)[1].split("</section>", 1)[0]
    assert "Open Stage 2" not in section
    assert 'class="button"' not in section
    assert "Stage 2 — mint + distribute is running now" in section
    set_status(store, job, State.DISTRIBUTED)  # still inside stage 2
    page = client.get(f"/tokens/{CRED}/rotations/{job.job_id}/view").text
    assert "Open Stage 2" not in page
    set_status(store, job, State.VALIDATING)
    set_status(store, job, State.VALIDATED)  # stage 2 ended: stage 3 is next, to open
    page = client.get(f"/tokens/{CRED}/rotations/{job.job_id}/view").text
    assert ('<a class="button" href="https://github.com/raxx/ops/actions/workflows/'
            'velvet-stage-3-revoke.yml">Open Stage 3') in page
