"""The subscription manifest: every refusal with its file, line and field; the good examples.

`tests/manifests/bad-*.yml` holds one file per refusal (octodns style). Each file states what
it must produce in `# expect: LINE: FIELD: MESSAGE` comments; the loader must report exactly
those problems, each starting with the exact "file:line: field: " prefix.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from velvet_runner import manifest as manifest_mod
from velvet_runner import targets
from velvet_runner.errors import InputError, ManifestError
from velvet_runner.flags import load_flags
from velvet_runner.manifest import (
    MAX_NODES,
    Consumer,
    HttpCheck,
    Manifest,
    TargetConfig,
    load,
    parse,
    target_kinds,
    vendor_kinds,
)
from velvet_runner.targets.heroku_config_var import HerokuConfigVar

HERE = Path(__file__).resolve().parent
DATA = HERE / "manifests"
REPO_ROOT = HERE.parent
SHIPPED_MANIFEST = REPO_ROOT / "manifest" / "subscription-manifest.yml"
SHIPPED_SCHEMA = REPO_ROOT / "manifest" / "subscription-manifest.schema.json"
RunVelvet = Callable[..., "subprocess.CompletedProcess[str]"]
EXPECT_RE = re.compile(r"^# expect: (\d+): (\S+): (.+)$")

BAD_FILES = sorted(DATA.glob("bad-*.yml"))
GOOD_FILES = sorted(DATA.glob("good-*.yml"))

# One file per refusal the issue asks for; deleting one of them must fail the suite.
REQUIRED_BAD = {
    "bad-yaml-syntax.yml", "bad-unknown-vendor.yml", "bad-unknown-kind.yml",
    "bad-duplicate-credential.yml", "bad-duplicate-consumer.yml", "bad-env.yml",
    "bad-schedule.yml", "bad-missing-target-field.yml", "bad-unknown-key.yml",
    "bad-healthcheck-ftp.yml", "bad-healthcheck-javascript.yml", "bad-active-string.yml",
    "bad-active-int.yml", "bad-bootstrap-infisical.yml", "bad-bootstrap-heroku.yml",
    "bad-python-tag.yml", "bad-python-tag-mapping.yml", "bad-python-name.yml",
    "bad-alias-bomb.yml", "bad-duplicate-key.yml", "bad-several.yml",
    "bad-consumer-writes-vault.yml", "bad-shared-vault.yml", "bad-same-target.yml",
}

# BUG: these files fail against velvet_runner/manifest.py as it stands (see each file's own
# "# BUG:" comment). They are left failing on purpose, not xfailed.
KNOWN_BUGS = {
    "bad-unknown-vendor.yml": "union-tag errors (unknown vendor) are reported at the line where "
                              "the credential starts, not at the `vendor:` line (_locate)",
    "bad-unknown-kind.yml": "union-tag errors (unknown kind) are reported at the line where the "
                            "consumer starts, not at the `kind:` line (_locate)",
    "bad-duplicate-key.yml": "the duplicate-key refusal names the field with list indexes "
                             "(credentials[0].consumers[0].app) instead of names (_Located.build)",
    "bad-python-tag.yml": "tags are only checked on scalar nodes (_Located._scalar); a python "
                          "tag on a sequence is ignored and the list is loaded as data",
    "bad-python-tag-mapping.yml": "tags are only checked on scalar nodes; a python tag on a "
                                  "mapping is ignored and the manifest loads as valid",
    "good-merge-override.yml": "a key next to a `<<` merge key is reported as a duplicate key "
                               "and the merged value wins (_Located.build after flatten_mapping)",
}


@dataclass(frozen=True)
class Expect:
    line: int
    field: str
    message: str

    def prefix(self, source: str | Path) -> str:
        return f"{source}:{self.line}: {self.field}: "


def expectations(path: Path) -> list[Expect]:
    found = []
    for text in path.read_text(encoding="utf-8").splitlines():
        match = EXPECT_RE.match(text)
        if match:
            found.append(Expect(int(match.group(1)), match.group(2), match.group(3)))
    return sorted(found, key=lambda e: e.line)


def reasons_of(path: Path | str) -> list[str]:
    try:
        load(path)
    except ManifestError as exc:
        return exc.reasons
    pytest.fail(f"{path} was accepted{bug_note(Path(path).name)}")


def bug_note(name: str) -> str:
    return f" [known BUG: {KNOWN_BUGS[name]}]" if name in KNOWN_BUGS else ""


def check_reasons(path: Path, source: str | Path, reasons: list[str]) -> None:
    expected = expectations(path)
    assert len(reasons) == len(expected), (
        f"{path.name}: expected {len(expected)} problem(s), got {reasons}{bug_note(path.name)}")
    for want, got in zip(expected, reasons, strict=True):
        prefix = want.prefix(source)
        assert got.startswith(prefix), (
            f"{path.name}: wanted prefix {prefix!r}, got {got!r}{bug_note(path.name)}")
        assert want.message in got[len(prefix):], (
            f"{path.name}: wanted {want.message!r} in {got!r}{bug_note(path.name)}")


# --- the folder of bad manifests -------------------------------------------------------------


def test_the_bad_folder_has_one_file_per_refusal() -> None:
    names = {p.name for p in BAD_FILES}
    assert REQUIRED_BAD - names == set()
    for path in BAD_FILES:
        assert expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.name)
def test_bad_manifest_is_refused_with_file_line_and_field(path: Path) -> None:
    reasons = reasons_of(path)
    check_reasons(path, path, reasons)


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.name)
def test_refusal_is_an_input_error_with_every_reason_in_its_message(path: Path) -> None:
    reasons_of(path)  # fails with the known-bug note when the file is accepted
    with pytest.raises(ManifestError) as info:
        load(path)
    err = info.value
    assert isinstance(err, InputError)
    assert err.exit_code == 2
    assert str(err) == "\n".join(err.reasons)
    assert err.reasons == sorted(err.reasons, key=lambda r: int(r.split(":")[1]))


def test_every_problem_in_one_file_is_reported() -> None:
    path = DATA / "bad-several.yml"
    reasons = reasons_of(path)
    check_reasons(path, path, reasons)
    # Collect-then-report: problems from different credentials and different checks
    # (pydantic validation and the cross-entry checks) all arrive in one refusal.
    assert len(reasons) >= 5
    assert len({r.split(":")[1] for r in reasons}) == len(reasons)
    assert any("bootstrap" in r for r in reasons)
    assert any("required field is missing" in r for r in reasons)


def test_the_source_name_is_what_the_caller_gave() -> None:
    text = (DATA / "bad-schedule.yml").read_text(encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        parse(text, "manifest/subscription-manifest.yml")
    assert info.value.reasons[0].startswith(
        "manifest/subscription-manifest.yml:8: credentials[HK_EXAMPLE].schedule: ")


def test_bootstrap_refusals_name_the_runbook_section_8_procedure() -> None:
    for name, heading in (("INFISICAL_CLIENT_SECRET", "Rotating INFISICAL_CLIENT_SECRET"),
                          ("HK_VELVET_BOOTSTRAP", "Rotating HK_VELVET_BOOTSTRAP")):
        slug = "infisical" if name.startswith("INFISICAL") else "heroku"
        (reason,) = reasons_of(DATA / f"bad-bootstrap-{slug}.yml")
        assert name in reason
        assert "runbook section 8" in reason
        assert heading in reason


def test_active_yes_as_a_quoted_string_and_one_are_not_booleans() -> None:
    assert reasons_of(DATA / "bad-active-string.yml")[0].endswith("active: must be true or false")
    assert reasons_of(DATA / "bad-active-int.yml")[0].endswith("active: must be true or false")


# --- one writer per place: vault slots and targets ------------------------------------------


def test_every_target_kind_declares_its_place() -> None:
    """`place()` is what "the same target" means, declared by each kind's config model."""
    for kind, adapter in targets.load_all().items():
        assert adapter.config_model.place is not TargetConfig.place, kind


def test_a_clash_is_found_beside_rows_that_do_not_validate() -> None:
    """Collect-then-report: a row pydantic refuses does not hide two writers of one target."""
    text = (DATA / "good-minimal.yml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    [cred] = document["credentials"]
    first = cred["consumers"][0]
    cred["consumers"] += [
        {**first, "consumer_id": "broken-row", "env": "qa"},
        {**first, "consumer_id": "same-place"},
    ]
    with pytest.raises(ManifestError) as info:
        parse(yaml.safe_dump(document, sort_keys=False), "clash.yml")
    reasons = info.value.reasons
    assert any("broken-row].env: env must be prod or staging" in r for r in reasons), reasons
    [clash] = [r for r in reasons if "same-place" in r]
    assert f"which consumer {first['consumer_id']} of credential {cred['name']} writes too" in clash


def test_the_fast_path_refuses_a_clash_too() -> None:
    """A plain document with no other problem is read by the fast path: it must refuse too."""
    text = (DATA / "good-minimal.yml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    [cred] = document["credentials"]
    cred["consumers"].append({**cred["consumers"][0], "consumer_id": "same-place"})
    with pytest.raises(ManifestError) as info:
        parse(yaml.safe_dump(document, sort_keys=False), "clash.yml")
    [reason] = info.value.reasons
    assert reason.startswith("clash.yml:"), reason
    assert "two consumers must not write one target" in reason


# --- tags that construct objects: refused, and nothing runs ----------------------------------


@pytest.mark.parametrize("tagged", [
    'description: !!python/object/apply:os.system ["touch {marker}"]',
    'description: !!python/object/apply:os.system {{args: ["touch {marker}"]}}',
    "description: !!python/object/new:os.system [\"touch {marker}\"]",
    'description: !!python/object/apply:subprocess.check_call [["touch", "{marker}"]]',
    "description: !!python/name:os.system",
    "description: !!python/object:os.system {{}}",
])
def test_object_constructing_tags_run_nothing(tmp_path: Path, tagged: str) -> None:
    marker = tmp_path / "tag-ran"
    text = (DATA / "good-minimal.yml").read_text(encoding="utf-8").replace(
        "    vendor: heroku\n", f"    {tagged.format(marker=marker)}\n    vendor: heroku\n", 1)
    with pytest.raises(ManifestError):
        parse(text, "tagged.yml")
    assert not marker.exists(), "a YAML tag in the manifest ran a command"


def test_the_marker_would_catch_a_tag_that_runs(tmp_path: Path) -> None:
    """Control for the test above: an unsafe loader does run the tag and leaves the marker."""
    import yaml

    marker = tmp_path / "tag-ran"
    yaml.unsafe_load(f'x: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert marker.exists()


def test_manifest_check_on_the_python_tag_file_runs_nothing(run_velvet: RunVelvet) -> None:
    proc = run_velvet("manifest", "check", str(DATA / "bad-python-tag.yml"))
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    # With an unsafe loader os.system("echo hi") would print "hi" on its own line.
    assert "hi" not in output.splitlines()
    assert "Traceback" not in output
    assert proc.stdout == ""


# --- the alias bomb --------------------------------------------------------------------------


def test_alias_bomb_is_refused_without_expanding_it() -> None:
    (reason,) = reasons_of(DATA / "bad-alias-bomb.yml")
    assert f"more than {MAX_NODES} nodes" in reason
    assert "alias" in reason


def test_alias_bomb_through_the_cli(run_velvet: RunVelvet) -> None:
    # The subprocess timeout in run_velvet is only a safety net: a loader that expanded the
    # 10^9 strings would never return; this one refuses after MAX_NODES nodes.
    proc = run_velvet("manifest", "check", str(DATA / "bad-alias-bomb.yml"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{DATA / 'bad-alias-bomb.yml'}:5: (document): ")


# --- good manifests --------------------------------------------------------------------------


def test_the_shipped_manifest_is_valid() -> None:
    loaded = load(SHIPPED_MANIFEST)
    assert isinstance(loaded, Manifest)
    names = [c.name for c in loaded.credentials]
    assert names == ["HK_PLATFORM_FULL", "PM_SERVER_MAIL", "CF_DNS_EDIT_RAXX_APP",
                     "AWS_DEPLOY_KEY"]
    hk = loaded.credential("HK_PLATFORM_FULL")
    assert hk is not None
    assert [c.consumer_id for c in hk.consumers] == [
        "heroku-config-console-prod", "heroku-config-api-prod", "heroku-config-console-staging",
        "heroku-config-api-staging", "github-actions-heroku-api-key"]
    # Runbook section 11: the staging apps' rows are registered with env prod on purpose.
    assert {c.env for c in hk.consumers} == {"prod"}
    assert hk.schedule_hours == 90 * 24
    cf = loaded.credential("CF_DNS_EDIT_RAXX_APP")
    assert cf is not None
    assert cf.active is False
    assert load_flags(SHIPPED_MANIFEST) == {"velvet_v2_rotation": True}


@pytest.mark.parametrize("path", GOOD_FILES, ids=lambda p: p.name)
def test_good_examples_load(path: Path) -> None:
    try:
        loaded = load(path)
    except ManifestError as exc:
        pytest.fail(f"{path.name} was refused: {exc.reasons}{bug_note(path.name)}")
    assert loaded.credentials


def test_every_vendor_and_kind_has_a_good_example() -> None:
    """The schema test, the loader's and the adapter contract suite (tests/contract/) take
    their example of each registered kind from good-every-kind.yml."""
    loaded = load(DATA / "good-every-kind.yml")
    vendors = sorted(set(vendor_kinds()) - {c.vendor for c in loaded.credentials})
    assert not vendors, (
        f"tests/manifests/good-every-kind.yml has no credential of vendor {', '.join(vendors)}: "
        "add one, with every option it has")
    kinds = {c.kind for c in loaded.credentials[0].consumers}
    missing = sorted(set(target_kinds()) - kinds)
    assert not missing, (
        f"tests/manifests/good-every-kind.yml has no consumer of kind {', '.join(missing)}: "
        "add one to its first credential (HK_EVERYTHING), with every field the kind has")
    checks = {c.healthcheck.type for c in loaded.credentials[0].consumers}
    assert checks == {"http", "readback", "none"}
    inactive = [c.consumer_id for c in loaded.credentials[0].consumers if not c.active]
    assert inactive == ["ssm-everything-staging"]


def test_anchors_and_merge_keys_are_plain_data() -> None:
    loaded = load(DATA / "good-anchors.yml")
    cred = loaded.credentials[0]
    assert cred.approvers == {"prod": ["kristerpher", "ops-oncall"],
                              "staging": ["kristerpher", "ops-oncall"]}
    two = cred.consumer("heroku-config-two")
    assert two is not None
    assert isinstance(two.healthcheck, HttpCheck)
    assert str(two.healthcheck.url) == "https://raxx-one.herokuapp.com/healthz"
    assert two.healthcheck.expect_status == 204


def test_a_key_beside_a_merge_key_overrides_it() -> None:
    # BUG: velvet_runner/manifest.py _Located.build (after flatten_mapping) reports the
    # overriding keys as "duplicate key" and keeps the merged value; YAML's merge-key rule
    # says the explicit key wins.
    path = DATA / "good-merge-override.yml"
    try:
        loaded = load(path)
    except ManifestError as exc:
        pytest.fail(f"refused: {exc.reasons}{bug_note(path.name)}")
    two = loaded.credentials[0].consumer("heroku-config-two")
    assert isinstance(two, HerokuConfigVar)
    assert isinstance(two, Consumer)
    assert two.app == "raxx-two"
    assert two.var == "HEROKU_API_KEY"


# --- odd documents ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("", "empty.yml:1: (document): the manifest is empty"),
    ("# only a comment\n", "empty.yml:1: (document): the manifest is empty"),
    ("- a\n- b\n", "empty.yml:1: (document): the manifest must be a mapping"),
    ("version: 2\ncredentials: []\n", "empty.yml:1: version: "),
    ("version: 1\ncredentials: {}\n", "empty.yml:2: credentials: "),
])
def test_odd_documents_are_refused(text: str, expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse(text, "empty.yml")
    assert info.value.reasons[0].startswith(expected)


def test_a_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    assert reasons_of(missing) == [f"{missing}:1: (file): no such file"]


def test_flags_must_be_booleans(tmp_path: Path) -> None:
    (tmp_path / "flags.yml").write_text('velvet_v2_rotation: "yes"\n', encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_flags(tmp_path / "subscription-manifest.yml")
    assert info.value.reasons[0].startswith(f"{tmp_path / 'flags.yml'}:1: (document): ")


def test_no_flags_file_means_every_flag_off(tmp_path: Path) -> None:
    assert load_flags(tmp_path / "subscription-manifest.yml") == {}


# --- the CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad-several.yml", "bad-yaml-syntax.yml",
                                  "bad-bootstrap-heroku.yml", "bad-consumer-writes-vault.yml",
                                  "bad-shared-vault.yml", "bad-same-target.yml"])
def test_manifest_check_prints_every_problem_on_stderr(run_velvet: RunVelvet, name: str) -> None:
    path = DATA / name
    proc = run_velvet("manifest", "check", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    check_reasons(path, path, lines)


def test_manifest_check_defaults_to_velvet_manifest(run_velvet: RunVelvet,
                                                    manifest_dir: Path) -> None:
    proc = run_velvet("manifest", "check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"{manifest_dir / 'subscription-manifest.yml'}: ok (4 credentials, 9 consumers)")


def test_manifest_check_on_a_missing_file(run_velvet: RunVelvet, tmp_path: Path) -> None:
    proc = run_velvet("manifest", "check", str(tmp_path / "missing.yml"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{tmp_path / 'missing.yml'}:1: (file): no such file"
    assert "Traceback" not in proc.stderr


def test_shipped_schema_is_current(run_velvet: RunVelvet) -> None:
    proc = run_velvet("manifest", "schema")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    shipped = json.loads(SHIPPED_SCHEMA.read_text(encoding="utf-8"))
    assert printed == shipped, (
        "manifest/subscription-manifest.schema.json is out of date; regenerate it with "
        "`velvet manifest schema > manifest/subscription-manifest.schema.json`")
    assert proc.stdout == manifest_mod.json_schema_text()


def test_schema_accepts_the_good_manifests() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads(SHIPPED_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in [SHIPPED_MANIFEST, DATA / "good-minimal.yml", DATA / "good-every-kind.yml"]:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        errors = [e.message for e in validator.iter_errors(data)]
        assert errors == [], f"{path.name}: {errors}"
