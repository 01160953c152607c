"""The manifest's reference: every schema field described, docs/manifest.md current, and the
environments the manifest's to declare."""

from __future__ import annotations

from pathlib import Path

import pytest

from velvet_runner.errors import ManifestError
from velvet_runner.manifest import json_schema, parse
from velvet_runner.manifest_doc import reference

ROOT = Path(__file__).resolve().parents[2]


def _properties(node, where=""):
    if isinstance(node, dict):
        for name, spec in (node.get("properties") or {}).items():
            yield f"{where}.{name}", spec
        for key, value in node.items():
            yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for value in node:
            yield from _properties(value, where)


def test_every_field_of_the_schema_has_a_description():
    fields = list(_properties(json_schema()))
    assert len(fields) > 60
    assert [where for where, spec in fields if not spec.get("description")] == []


def test_docs_manifest_md_is_current():
    assert (ROOT / "docs" / "manifest.md").read_text(encoding="utf-8") == reference(), (
        "docs/manifest.md is out of date: velvet manifest reference > docs/manifest.md")


def _manifest(envs: str, consumer_env: str, approvers: str = "prod") -> str:
    return f"""\
version: 1
{envs}credentials:
  - name: HK_EXAMPLE
    vendor: heroku
    env: prod
    vault: {{kind: infisical_secret, project_id: p, environment: prod, name: HK_EXAMPLE}}
    approvers:
      {approvers}: [dana, erin]
    consumers:
      - consumer_id: heroku-config-example
        kind: heroku_config_var
        app: acme-example
        var: HEROKU_API_KEY
        env: {consumer_env}
"""


def test_environments_default_to_prod_and_staging():
    assert parse(_manifest("", "staging")).environments == ["prod", "staging"]
    with pytest.raises(ManifestError, match="env must be prod or staging"):
        parse(_manifest("", "dev"))


def test_a_manifest_declares_its_own_environments():
    manifest = parse(_manifest("environments: [prod, dev, qa]\n", "dev", approvers="qa"))
    assert manifest.environments == ["prod", "dev", "qa"]
    with pytest.raises(ManifestError) as refused:
        parse(_manifest("environments: [prod, dev, qa]\n", "staging", approvers="stage"))
    reasons = "\n".join(refused.value.reasons)
    assert "<manifest>:15: credentials[HK_EXAMPLE].consumers[heroku-config-example].env: env " \
           "must be one of prod, dev, qa" in reasons
    assert "credentials[HK_EXAMPLE].approvers.stage: env must be one of" in reasons
