"""The key-age page in a real headless Chromium: the SVG chart renders under the app's content
security policy, overdue and debt are marked, and the evidence export opens from its link.

Uses Debian's /usr/bin/chromium, as test_web_browser.py does. Saves test-artifacts/key-ages.png.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from test_web import CRED, MANIFEST, READ_TOKEN
from test_web_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from test_web_keyages import NOW, _done

from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.web import create_app
from velvet_sandbox.server import ServerThread

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at "
                                "/usr/bin/chromium (apt-get install chromium)")


def test_key_age_page_draws_the_chart_and_links_the_evidence(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    (tmp_path / "flags.yml").write_text("velvet_v2_rotation: true\n")
    store = Store(str(tmp_path / "state.git"), cache_dir=tmp_path / "cache")
    _done(store, NOW - timedelta(days=200))
    _done(store, NOW - timedelta(days=100), debt=True)
    settings = Settings(manifest=tmp_path / "manifest.yml", state=str(tmp_path / "state.git"),
                        cache_dir=tmp_path / "cache", env="prod", github_repository="raxx/ops",
                        status_tokens=(SecretStr(READ_TOKEN),))
    app = create_app(settings, store=store, refresh_seconds=0.2, now=lambda: NOW)
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with ServerThread(app, name="web", lifespan="on") as server, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900},
                                    http_credentials={"username": "ops",
                                                      "password": READ_TOKEN})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server.url + "/")
            page.click('nav a[href="/key-ages"]')
            page.wait_for_selector("#key-ages")
            chart = page.locator("#key-age-chart")
            chart.wait_for()
            # A property read by Playwright's own script: the app's CSP forbids evaluating a
            # string (wait_for_function's polling), which failed whenever the image was slow.
            sync_api.expect(chart).to_have_js_property("complete", True)
            size = chart.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert size[0] == 1000  # the SVG loaded and rendered as an image
            assert size[1] > 0
            row = page.locator(f'#key-ages tr[data-credential="{CRED}"]')
            assert row.get_attribute("data-tone") == "overdue"
            assert "overdue since" in row.inner_text()
            assert "1 open" in row.inner_text()
            overdue = row.locator("td.tone-bad").first
            assert overdue.evaluate("e => getComputedStyle(e).color") != "rgb(0, 0, 0)"
            page.screenshot(path=str(ARTIFACTS / "key-ages.png"), full_page=True)
            assert problems == []  # the page and its chart, under the app's CSP
            # The export opens as a plain document (Chromium then asks for /favicon.ico).
            with page.expect_response(lambda r: "/evidence" in r.url) as answer:
                page.click('a[data-format="md"]')
            response = answer.value
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/markdown")
            assert "# Appendix: credential rotation evidence" in response.text()
        finally:
            browser.close()
