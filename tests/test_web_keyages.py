"""The key-age page, its SVG chart and the evidence export in the status app, against a real
state branch (git in tmp_path): overdue and debt marked, the export the same bytes twice."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient
from test_web import AUTH, CRED, MANIFEST, READ_TOKEN, SECRETS, make_job

from velvet_runner.machine import State
from velvet_runner.records import Event, Job, Life, RowStatus, Token
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.web import create_app

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    (tmp_path / "flags.yml").write_text("velvet_v2_rotation: true\n")
    return Settings(manifest=tmp_path / "manifest.yml", state=str(tmp_path / "state.git"),
                    cache_dir=tmp_path / "cache", env="prod", github_repository="raxx/ops",
                    status_tokens=(SecretStr(READ_TOKEN),))


def _done(store: Store, at: datetime, *, debt: bool = False) -> Job:
    """A rotation of CRED that ended `done` at `at` (with an aborted mint's debt, if asked)."""
    job = make_job(State.VALIDATED, at=at, rows=RowStatus.SUCCEEDED)
    store.create(job)

    def finish(j: Job) -> Job:
        j.status = State.DONE
        j.ticket = "ROT-1"
        j.events.append(Event(at=at, actor="bob", action="ok", from_state="revoking",
                              to_state="done"))
        if debt:
            j.ledger.append(Token(token_id="new-2", role="new", life=Life.DEBT,
                                  auth_id="auth-debt-9", evidence="minted, never held",
                                  debt_since=at))
        return j

    return store.update(CRED, job.job_id, finish)


@pytest.fixture
def client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    store = Store(str(tmp_path / "state.git"), cache_dir=tmp_path / "cache")
    _done(store, NOW - timedelta(days=200))
    _done(store, NOW - timedelta(days=100), debt=True)  # 100 days into a 90d schedule
    app = create_app(settings, store=store, refresh_seconds=0.05, now=lambda: NOW)
    with TestClient(app, headers=AUTH) as c:
        yield c


def test_key_age_page_marks_overdue_and_debt_and_links_the_export(client: TestClient) -> None:
    page = client.get("/key-ages")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<img id="key-age-chart" src="/key-ages.svg"' in html
    for fmt in ("md", "csv", "json"):
        assert f'href="/evidence?format={fmt}"' in html
    assert f'<tr data-credential="{CRED}" data-tone="overdue">' in html
    assert "overdue since" in html
    assert "1 open" in html
    assert '<tr data-credential="PM_SERVER_MAIL" data-tone="unknown">' in html
    assert "never rotated by Velvet" in html
    assert '<a href="/key-ages">Key ages</a>' in client.get("/").text  # in the site's nav


def test_the_chart_is_svg_with_no_script(client: TestClient) -> None:
    response = client.get("/key-ages.svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.text)  # noqa: S314 - our own answer; well-formed
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None
    assert not list(root.iter(f"{SVG}script"))
    assert not list(root.iter(f"{SVG}style"))
    rows = {g.get("data-credential"): g for g in root.iter(f"{SVG}g")}
    assert rows[CRED].get("data-tone") == "overdue"
    bar = next(r for r in rows[CRED].iter(f"{SVG}rect") if r.get("class") == "age")
    tick = next(rows[CRED].iter(f"{SVG}line"))
    assert float(bar.get("width") or 0) + 220 > float(tick.get("x1") or 0)  # past the schedule
    assert [p.get("class") for p in rows[CRED].iter(f"{SVG}path")] == ["debt"]
    assert rows["PM_SERVER_MAIL"].get("data-tone") == "unknown"
    assert not list(rows["PM_SERVER_MAIL"].iter(f"{SVG}path"))


def test_the_export_is_reproducible_and_names_the_head(client: TestClient,
                                                       tmp_path: Path) -> None:
    first = client.get("/evidence", params={"format": "md"})
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/markdown")
    assert client.get("/evidence", params={"format": "md"}).content == first.content
    head = Store(str(tmp_path / "state.git"), cache_dir=tmp_path / "cache2").refresh()
    assert head is not None
    assert f"at commit `{head}`" in first.text
    assert f'filename="velvet-evidence-{head[:12]}.md"' in first.headers["content-disposition"]
    assert "**HK_PLATFORM_FULL**: overdue" in first.text
    assert "open revocation debt: auth id auth-debt-9" in first.text
    assert "100d 0h (schedule 90d, **beyond schedule**)" in first.text
    rows = list(csv.DictReader(io.StringIO(client.get("/evidence?format=csv").text)))
    assert [r["within_schedule"] for r in rows] == ["", "false"]
    assert rows[0]["state_head"] == head
    body = client.get("/evidence", params={"format": "json", "credential": CRED}).json()
    assert [c["credential"] for c in body["credentials"]] == [CRED]
    assert body["head"] == head
    text = first.text + json.dumps(body)
    for secret in SECRETS:
        assert secret not in text


def test_the_export_refuses_what_it_does_not_take(client: TestClient) -> None:
    assert client.get("/evidence", params={"format": "pdf"}).status_code == 400
    bad = client.get("/evidence", params={"since": "<script>"})
    assert bad.status_code == 400
    assert "<script>" not in bad.text
    assert client.get("/evidence", params={"since": "30d"}).status_code == 200
    unknown = client.get("/evidence", params={"credential": "NOPE"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "no credential NOPE"
