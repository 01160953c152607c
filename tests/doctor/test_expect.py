"""What doctor and setup read off the workflows and CODEOWNERS, without GitHub."""

from __future__ import annotations

from pathlib import Path

import pytest

from velvet_runner.github.codeowners import codeowners_of
from velvet_runner.github.expect import Expected, declared_secrets, job_environments, need
from velvet_runner.manifest import load
from velvet_sandbox.world import example

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("expression", "names"), [
    ("velvet-${{ inputs.env }}", ["velvet-{env}"]),
    ("velvet-${{ inputs.env || 'prod' }}-verify", ["velvet-{env}-verify"]),
    ("${{ contains(fromJSON('[\"retry_revoke\"]'), inputs.action) && format('velvet-{0}-revoke',"
     " inputs.env) || format('velvet-{0}', inputs.env) }}", ["velvet-{env}-revoke",
                                                            "velvet-{env}"]),
    ({"name": "production"}, ["production"]),
    (None, []),
])
def test_the_environments_a_job_can_name(expression: object, names: list[str]) -> None:
    assert job_environments(expression) == names


def test_what_the_workflows_read_and_where() -> None:
    expected = Expected.of(load(example("raxx")), workflows=ROOT / ".github" / "workflows")
    reads = {(r.kind, r.name): r for r in expected.reads}
    heroku = reads[("secret", "VELVET_HEROKU_TOKEN")]
    assert heroku.environments == ("velvet-prod", "velvet-prod-revoke", "velvet-prod-verify")
    assert (heroku.needed, heroku.repository) == (True, False)
    assert reads[("variable", "VELVET_FALLBACK_APPROVAL")].needed is False
    assert reads[("secret", "VELVET_DOCTOR_TOKEN")].needed is False
    assert "velvet-doctor.yml" in reads[("secret", "VELVET_SLACK_TOKEN")].workflows
    assert expected.approvers == ["alice", "bob"]
    assert expected.secret_repositories == ["raxx/platform"]
    assert expected.codeowners == ["/manifest/ @alice @bob", "/.github/workflows/ @alice @bob"]


def test_an_adapters_secret_is_needed_by_the_kinds_that_declare_it(tmp_path: Path) -> None:
    """A secret an adapter declares gets its rule from the declaration (no line in NEEDS), and
    a secret the manifest's kinds need that no workflow reads is named."""
    assert declared_secrets()["VELVET_INFISICAL_CLIENT_SECRET"] == ("infisical_secret",)
    assert "VELVET_GITHUB_TOKEN" not in declared_secrets()  # every command reads it
    shipped = Expected.of(load(example("raxx")), workflows=ROOT / ".github" / "workflows")
    assert shipped.unpassed == {}
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        text = path.read_text(encoding="utf-8")
        (tmp_path / path.name).write_text(text.replace("VELVET_INFISICAL_CLIENT_ID", "X_ID"),
                                          encoding="utf-8")
    cut = Expected.of(load(example("raxx")), workflows=tmp_path)
    assert cut.unpassed == {"VELVET_INFISICAL_CLIENT_ID": ("infisical_secret",)}
    rule = need("VELVET_INFISICAL_CLIENT_ID")
    assert rule is not None
    assert rule[0](load(example("raxx"))) is True
    assert need("NOT_DECLARED_ANYWHERE") is None


def test_the_app_permissions_follow_the_consumers() -> None:
    """An environment's secrets need environments: write and an organisation's need the
    Organization permission organization_secrets (else GitHub answers 403 "Resource not
    accessible by integration"); doctor checks these and setup asks for them."""
    assert Expected.of(load(example("raxx"))).app_permissions == {"secrets": "write"}
    every = load(ROOT / "tests" / "manifests" / "good-every-kind.yml")
    assert Expected.of(every, envs=list(every.environments)).app_permissions == {
        "secrets": "write", "environments": "write", "organization_secrets": "write"}


def test_codeowners_last_match_wins_as_on_github() -> None:
    text = "* @everyone\n/manifest/ @alice @bob  # the approvers\ndocs/ @writers\n"
    assert codeowners_of(text, "manifest/subscription-manifest.yml") == ["@alice", "@bob"]
    assert codeowners_of(text, ".github/workflows/x.yml") == ["@everyone"]
    assert codeowners_of(text, "docs/setup.md") == ["@writers"]
    assert codeowners_of("/manifest/ @alice\n", "other/manifest/x.yml") is None
    assert codeowners_of("*.yml @yaml\n", "deep/down/file.yml") == ["@yaml"]
