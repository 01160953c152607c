"""`velvet manifest plan BASE HEAD`: what a manifest change adds, removes and changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from velvet_runner.errors import ManifestError
from velvet_runner.plan import plan_text


@pytest.fixture
def gh_head() -> Path:
    return Path(os.environ["VELVET_MANIFEST"])


def _edit(src: Path, dst: Path, *pairs: tuple[str, str]) -> Path:
    text = src.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    dst.write_text(text)
    return dst


def test_a_missing_base_means_everything_is_added(gh_head, tmp_path):
    text = plan_text(tmp_path / "nope.yml", gh_head)
    assert text.startswith("credentials: 4 added, 0 removed, 0 changed; consumers: ")
    assert "+ credential HK_PLATFORM_FULL (heroku, prod)" in text
    assert "  + consumer heroku-config-api-prod (heroku_config_var, prod: " in text
    assert "does not exist" in text


def test_no_change_says_so(gh_head):
    text = plan_text(gh_head, gh_head)
    assert "no changes to credentials or consumers" in text
    assert "0 added, 0 removed, 0 changed" in text


def test_field_level_changes_of_credentials_and_consumers(gh_head, tmp_path):
    head = _edit(gh_head, tmp_path / "head.yml",
                 ("schedule: 90d", "schedule: 30d"),
                 ("prod: [kristerpher, ops-oncall]", "prod: [kristerpher]"),
                 ("app: raxx-api-prod\n", "app: raxx-api-prod-eu\n"))
    text = plan_text(gh_head, head)
    assert "~ credential HK_PLATFORM_FULL (heroku, prod)" in text
    assert "    schedule: 90d -> 30d" in text
    assert "    approvers.prod: [kristerpher, ops-oncall] -> [kristerpher] (!)" in text
    assert "  ~ consumer heroku-config-api-prod" in text
    assert "      app: raxx-api-prod -> raxx-api-prod-eu" in text


def test_consumers_added_and_removed(gh_head, tmp_path):
    text = gh_head.read_text()
    start = text.index("      - consumer_id: heroku-config-api-prod")
    end = text.index("      - consumer_id:", start + 10)
    block = text[start:end]
    removed = tmp_path / "removed.yml"
    removed.write_text(text[:start] + text[end:])
    added = tmp_path / "added.yml"
    # another app: two consumers may not write one config var
    copy = block.replace("heroku-config-api-prod", "heroku-config-x").replace(
        "app: raxx-api-prod", "app: raxx-api-x")
    added.write_text(text[:end] + copy + text[end:])

    out = plan_text(gh_head, removed)
    assert "  - consumer heroku-config-api-prod (heroku_config_var, prod: " in out
    assert "0 added, 1 removed, 0 changed" in out
    out = plan_text(gh_head, added)
    assert "  + consumer heroku-config-x (heroku_config_var, prod: " in out


def test_credentials_removed(gh_head, tmp_path):
    text = plan_text(gh_head, _edit(gh_head, tmp_path / "h.yml",
                                    ("name: PM_SERVER_MAIL", "name: PM_SERVER_MAIL_V2")))
    assert "- credential PM_SERVER_MAIL (postmark, prod)" in text
    assert "+ credential PM_SERVER_MAIL_V2 (postmark, prod)" in text


def test_an_invalid_head_is_a_manifest_error(gh_head, tmp_path):
    head = _edit(gh_head, tmp_path / "bad.yml", ("schedule: 90d", "schedule: often"))
    with pytest.raises(ManifestError) as exc:
        plan_text(gh_head, head)
    assert any("schedule" in reason and ":" in reason for reason in exc.value.reasons)


def test_an_invalid_base_is_reported_and_treated_as_empty(gh_head, tmp_path):
    base = tmp_path / "base.yml"
    base.write_text("version: 1\ncredentials: [oops\n")
    text = plan_text(base, gh_head)
    assert "is not a valid manifest" in text
    assert "+ credential HK_PLATFORM_FULL" in text


def test_markdown_for_the_pull_request_summary(gh_head, tmp_path):
    head = _edit(gh_head, tmp_path / "head.yml",
                 ("prod: [kristerpher, ops-oncall]", "prod: [kristerpher, 'a|<b>`']"))
    md = plan_text(gh_head, head, markdown=True)
    assert md.startswith("## Velvet manifest plan\n")
    assert "| credential | change | vendor, env |" in md
    assert "| `HK_PLATFORM_FULL` | ✏️ changed | `heroku, prod` |" in md
    assert "`approvers.prod` (!)" in md
    # Values from the pull request cannot break the table or inject HTML.
    assert "a\\|&lt;b&gt;'" in md
    assert "<b>" not in md


def test_the_cli_prints_the_plan(gh_head, run_velvet, tmp_path):
    proc = run_velvet("manifest", "plan", str(tmp_path / "none.yml"), str(gh_head),
                      "--markdown")
    assert proc.returncode == 0, proc.stderr
    assert "## Velvet manifest plan" in proc.stdout
    bad = _edit(gh_head, tmp_path / "bad.yml", ("env: prod", "env: qa"))
    proc = run_velvet("manifest", "plan", str(gh_head), str(bad))
    assert proc.returncode == 2
    assert "env must be prod or staging" in proc.stderr
