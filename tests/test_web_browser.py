"""The status page in a real headless Chromium: a job moves and the page follows, no reload.

Uses Debian's /usr/bin/chromium through the playwright package's bundled driver (playwright's
own browser download is not used). Saves test-artifacts/status-page.png.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from velvet_runner.machine import Flow, State
from velvet_runner.records import ConsumerRow, Event, Job, RowStatus, new_job_id
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.web import create_app
from velvet_sandbox.server import ServerThread

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CRED = "HK_PLATFORM_FULL"
READ_TOKEN = "browser-read-TOKEN-5d8a17c2e4"  # VELVET_STATUS_TOKENS; the browser signs in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at "
                                "/usr/bin/chromium (apt-get install chromium)")

MANIFEST = """\
version: 1
credentials:
  - name: HK_PLATFORM_FULL
    description: Heroku platform API key of the raxx bot user
    vendor: heroku
    env: prod
    schedule: 90d
    vault: {kind: infisical_secret, project_id: raxx, environment: prod, name: HK_PLATFORM_FULL}
    consumers:
      - {consumer_id: heroku-config-console-prod, kind: heroku_config_var, app: raxx-console-prod,
         var: HEROKU_API_KEY, env: prod}
      - {consumer_id: heroku-config-api-prod, kind: heroku_config_var, app: raxx-api-prod,
         var: HEROKU_API_KEY, env: prod}
      - {consumer_id: github-actions-heroku-api-key, kind: github_actions_secret,
         repository: raxx/platform, secret: HEROKU_API_KEY, env: prod}
  - name: PM_SERVER_MAIL
    vendor: postmark
    env: prod
    schedule: 180d
    vault: {kind: infisical_secret, project_id: raxx, environment: prod, name: PM_SERVER_MAIL}
    consumers:
      - {consumer_id: infisical-postmark-prod, kind: infisical_secret, project_id: raxx-api,
         environment: prod, name: POSTMARK_SERVER_TOKEN, env: prod}
"""

PATH = ["init", "verifying", "verified", "minting", "minted", "distributing"]


def distributing_job() -> Job:
    at = datetime.now(UTC).replace(microsecond=0)
    rows = [
        ("heroku-config-console-prod", "heroku_config_var",
         "heroku app raxx-console-prod config var HEROKU_API_KEY", RowStatus.SUCCEEDED),
        ("heroku-config-api-prod", "heroku_config_var",
         "heroku app raxx-api-prod config var HEROKU_API_KEY", RowStatus.IN_PROGRESS),
        ("github-actions-heroku-api-key", "github_actions_secret",
         "github raxx/platform secret HEROKU_API_KEY", RowStatus.PENDING),
    ]
    return Job(
        job_id=new_job_id(), credential=CRED, vendor="heroku", flow_type=Flow.OPERATIONAL,
        env="prod", status=State.DISTRIBUTING, created_at=at, updated_at=at, actor="alice",
        consumers=[ConsumerRow(consumer_id=c, kind=k, target=t, distribute_status=s,
                               holds="new" if s == RowStatus.SUCCEEDED else "old")
                   for c, k, t, s in rows],
        events=[Event(at=at, actor="alice", action="step", from_state=a, to_state=b)
                for a, b in zip(PATH, PATH[1:], strict=False)],
        old_auth_id="auth-old-1", new_auth_id="auth-new-2",
    )


def test_job_page_follows_the_job_without_reloading(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    store = Store(str(tmp_path / "state.git"), cache_dir=tmp_path / "cache")
    job = distributing_job()
    store.create(job)
    settings = Settings(manifest=tmp_path / "manifest.yml", state=str(tmp_path / "state.git"),
                        cache_dir=tmp_path / "cache", env="prod", github_repository="raxx/ops",
                        status_tokens=(SecretStr(READ_TOKEN),))
    app = create_app(settings, store=store, refresh_seconds=0.2)
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []

    def set_row(consumer_id: str, status: RowStatus) -> None:
        def apply(j: Job) -> Job:
            row = j.row(consumer_id)
            assert row is not None
            row.distribute_status = status
            row.holds = "new" if status == RowStatus.SUCCEEDED else row.holds
            row.attempts += 1
            return j

        store.update(CRED, job.job_id, apply)

    def set_status(status: State) -> None:
        def apply(j: Job) -> Job:
            j.events.append(Event(at=datetime.now(UTC), actor="engine", action="proceed_mint",
                                  from_state=str(j.status), to_state=str(status)))
            j.status = status
            return j

        store.update(CRED, job.job_id, apply)

    with ServerThread(app, name="web", lifespan="on") as server, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # Signed in with HTTP Basic, as a person answers the browser's prompt on the 401
            # (test_web_closed.py reads that page): the page, its own fetches and its event
            # stream all carry the token.
            signed_in = browser.new_context(viewport={"width": 1280, "height": 900},
                                            http_credentials={"username": "ops",
                                                              "password": READ_TOKEN})
            page = signed_in.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{server.url}/tokens/{CRED}/rotations/{job.job_id}/view")
            page.wait_for_selector('#live-state[data-state="live"]', timeout=10_000)
            page.evaluate("window.__velvetNoReload = 42")
            status = page.locator("#job-status")
            assert status.inner_text().strip().endswith("distributing")
            row = 'tr[data-consumer="{}"] td.row-status >> nth=0'
            assert "in progress" in page.locator(row.format("heroku-config-api-prod")).inner_text()

            set_row("heroku-config-api-prod", RowStatus.SUCCEEDED)
            page.wait_for_selector('tr[data-consumer="heroku-config-api-prod"] '
                                   'td.row-status[data-status="succeeded"]', timeout=10_000)
            set_row("github-actions-heroku-api-key", RowStatus.SUCCEEDED)
            set_status(State.DISTRIBUTED)
            page.wait_for_selector('#job-status [data-status="distributed"]', timeout=10_000)
            page.wait_for_selector('tr[data-consumer="github-actions-heroku-api-key"] '
                                   'td.row-status[data-status="succeeded"]', timeout=10_000)

            assert page.evaluate("window.__velvetNoReload") == 42  # same document: no reload
            for consumer in ("heroku-config-console-prod", "heroku-config-api-prod",
                             "github-actions-heroku-api-key"):
                cell = page.locator(row.format(consumer))
                assert "succeeded" in cell.inner_text()
                assert "tone-ok" in (cell.get_attribute("class") or "")
            assert "distributed" in page.locator("ol.path li.current").inner_text()
            # stage 2 is still at work: nothing offers to open it again
            assert "is running now" in page.locator("#next-stage").inner_text()
            assert page.locator("#next-stage a.button").count() == 0
            set_status(State.VALIDATING)
            set_status(State.VALIDATED)
            link = page.locator("#next-stage a.button")
            link.wait_for(timeout=10_000)
            assert link.get_attribute("href") == (
                "https://github.com/raxx/ops/actions/workflows/velvet-stage-3-revoke.yml")
            assert page.evaluate("window.__velvetNoReload") == 42
            # the banner is red for prod and says so in words
            banner = page.locator("header.banner")
            assert "PRODUCTION" in banner.inner_text()
            assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == (
                "rgb(185, 28, 28)")
            page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)

            page.goto(server.url + "/")
            page.wait_for_selector("table.grid")
            assert job.job_id[:8] in page.locator("table.grid").inner_text()
            page.screenshot(path=str(ARTIFACTS / "status-index.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
