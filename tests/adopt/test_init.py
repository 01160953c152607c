"""`velvet init`: a repository of thin callers pinned by SHA, a starter manifest, and no
overwriting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from velvet_runner import adopt

SHA = "0123456789abcdef0123456789abcdef01234567"
PINNED = re.compile(r"^\s+uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # v(\d+\.\d+\.\d+)$")
BIN = Path(sys.executable).parent
CHILD_TIMEOUT = 300  # a safety net, not a timing assertion


def velvet(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VELVET_", "GITHUB_"))}
    return subprocess.run([sys.executable, "-m", "velvet_runner", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "acme-velvet"
    path.mkdir()
    subprocess.run(["git", "init", "--quiet", str(path)], check=True)
    return path


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts[:1]}


def test_init_writes_a_velvet_repository_and_says_what_next(repo: Path):
    done = velvet(repo, "init", "--sha", SHA, "--runner", "acme/velvet-runner")
    assert done.returncode == 0, done.stderr
    files = _files(repo)
    workflows = {name for name in files if name.startswith(".github/workflows/")}
    shipped = {f".github/workflows/{p.name}"
               for p in (adopt.SOURCE / ".github" / "workflows").glob("velvet-*.yml")
               if p.name not in adopt.RUNNER_ONLY}
    assert workflows == shipped
    for name in (".github/dependabot.yml", "manifest/subscription-manifest.yml",
                 "manifest/flags.yml", ".gitignore", "README.md"):
        assert f"wrote {name}" in done.stdout
    assert done.stdout.rstrip().endswith('git add -A && git commit -m "Velvet" && git push')
    assert "velvet manifest check" in done.stdout
    assert "velvet rehearse run" in done.stdout
    assert files[".gitignore"] == ".velvet/\n"
    assert "velvet_v2_rotation: false" in files["manifest/flags.yml"]
    assert "package-ecosystem: github-actions" in files[".github/dependabot.yml"]

    # Every caller takes the runner at one commit, by full SHA, with the version beside it.
    pins = set()
    for name in workflows:
        for line in files[name].splitlines():
            match = PINNED.match(line)
            if match and match.group(1) == "acme/velvet-runner":
                pins.add((match.group(2), match.group(3)))
        assert "uses: ./" not in files[name], name
    assert pins == {(SHA, adopt.version())}

    check = velvet(repo, "manifest", "check")
    assert check.returncode == 0, check.stderr
    assert "ok (1 credentials, 1 consumers)" in check.stdout


def test_the_callers_are_the_runners_own_workflows_pinned(repo: Path):
    """The same shape: this repository's workflows take the action as `./`, an adopter's
    take it by SHA, and nothing else differs."""
    assert velvet(repo, "init", "--sha", SHA).returncode == 0
    for own in (adopt.SOURCE / ".github" / "workflows").glob("velvet-*.yml"):
        if own.name in adopt.RUNNER_ONLY:
            assert not (repo / ".github" / "workflows" / own.name).exists()
            continue
        caller = (repo / ".github" / "workflows" / own.name).read_text()
        assert adopt.LOCAL_ACTION in own.read_text()
        assert caller == own.read_text().replace(
            adopt.LOCAL_ACTION, f"        uses: {adopt.RUNNER}@{SHA} # v{adopt.version()}\n")


def test_the_callers_pass_githubs_schema_and_zizmor(repo: Path):
    assert velvet(repo, "init", "--sha", SHA).returncode == 0
    workflows = sorted(str(p) for p in (repo / ".github" / "workflows").glob("*.yml"))
    schema = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", *workflows], capture_output=True,
                            text=True, check=False, timeout=CHILD_TIMEOUT)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    zizmor = subprocess.run([str(BIN / "zizmor"), "--offline", "--no-progress",
                             ".github/workflows"], cwd=repo, capture_output=True, text=True,
                            check=False, timeout=CHILD_TIMEOUT)
    assert zizmor.returncode == 0, zizmor.stdout + zizmor.stderr


def test_init_twice_changes_nothing(repo: Path):
    assert velvet(repo, "init", "--sha", SHA).returncode == 0
    before = _files(repo)
    again = velvet(repo, "init", "--sha", SHA)
    assert again.returncode == 0, again.stderr
    assert "wrote" not in again.stdout
    assert "appended" not in again.stdout
    assert again.stdout.count("unchanged ") == len(before)
    assert _files(repo) == before


def test_an_existing_file_is_refused_by_name_and_nothing_is_written(repo: Path):
    mint = repo / ".github" / "workflows" / "velvet-stage-2-mint.yml"
    mint.parent.mkdir(parents=True)
    mint.write_text("name: our own stage 2\n")
    refused = velvet(repo, "init", "--sha", SHA)
    assert refused.returncode == 2
    assert ".github/workflows/velvet-stage-2-mint.yml" in refused.stderr
    assert "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _files(repo) == {".github/workflows/velvet-stage-2-mint.yml": "name: our own stage 2\n"}

    forced = velvet(repo, "init", "--sha", SHA, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"@{SHA} # v" in mint.read_text()


def test_an_upgrade_rewrites_the_callers_and_keeps_the_manifest_and_flags(repo: Path):
    assert velvet(repo, "init", "--sha", SHA).returncode == 0
    (repo / "manifest" / "flags.yml").write_text("velvet_v2_rotation: true\n")
    manifest = (repo / "manifest" / "subscription-manifest.yml").read_text()
    newer = "89abcdef" * 5
    upgraded = velvet(repo, "init", "--sha", newer, "--force")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "kept manifest/flags.yml (yours)" in upgraded.stdout
    assert "kept manifest/subscription-manifest.yml (yours)" in upgraded.stdout
    assert (repo / "manifest" / "flags.yml").read_text() == "velvet_v2_rotation: true\n"
    assert (repo / "manifest" / "subscription-manifest.yml").read_text() == manifest
    for caller in (repo / ".github" / "workflows").glob("velvet-*.yml"):
        assert f"@{newer} # v" in caller.read_text()
        assert SHA not in caller.read_text()


def test_an_existing_gitignore_and_readme_are_added_to(repo: Path):
    (repo / ".gitignore").write_text("node_modules/")
    (repo / "README.md").write_text("# acme\n")
    assert velvet(repo, "init", "--sha", SHA).returncode == 0
    assert (repo / ".gitignore").read_text() == "node_modules/\n.velvet/\n"
    readme = (repo / "README.md").read_text()
    assert readme.startswith("# acme\n")
    assert "## Velvet" in readme


def test_bad_arguments_are_named(repo: Path):
    short = velvet(repo, "init", "--sha", "abc123")
    assert short.returncode == 2
    assert "--sha must be a full 40-character" in short.stderr
    runner = velvet(repo, "init", "--sha", SHA, "--runner", "nope")
    assert runner.returncode == 2
    assert "--runner must be OWNER/NAME" in runner.stderr


def test_init_pins_this_checkouts_commit_by_default(repo: Path):
    if shutil.which("git") is None or not (adopt.SOURCE / ".git").exists():
        pytest.skip("the runner is not a git checkout here")
    head = subprocess.run(["git", "-C", str(adopt.SOURCE), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert velvet(repo, "init").returncode == 0
    assert f"@{head} # v" in (repo / ".github" / "workflows" / "velvet-stage-2-mint.yml"
                              ).read_text()


def test_version():
    shown = subprocess.run([sys.executable, "-m", "velvet_runner", "--version"],
                           capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT)
    assert shown.returncode == 0
    assert shown.stdout.strip() == f"velvet, version {adopt.version()}"
