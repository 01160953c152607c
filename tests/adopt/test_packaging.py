"""The package builds as a wheel and an sdist that carry what `velvet init` and `velvet demo`
read (the caller workflows, the example world) and metadata a package index accepts.

`twine check` itself is not in the test lock; these are the checks it makes that matter here
(a version, a Markdown long description declared as Markdown)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from velvet_runner import adopt

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 300  # a safety net, not a timing assertion


def test_wheel_and_sdist(tmp_path: Path):
    # Built from a copy of the tree (what git would commit): setuptools writes beside it.
    source, dist = tmp_path / "src", tmp_path / "dist"
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard",
                             "-z"], capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    for hook in ("build_wheel", "build_sdist"):  # one process each, as a build frontend runs
        code = f"import sys; from setuptools import build_meta as b; b.{hook}(sys.argv[1])"
        built = subprocess.run([sys.executable, "-c", code, str(dist)], cwd=source,
                               capture_output=True, text=True, check=False,
                               timeout=BUILD_TIMEOUT)
        assert built.returncode == 0, built.stderr[-3000:]
    [wheel_name] = [p.name for p in dist.glob("*.whl")]
    [sdist_name] = [p.name for p in dist.glob("*.tar.gz")]
    version = adopt.version()
    assert wheel_name == f"velvet_runner-{version}-py3-none-any.whl"
    with zipfile.ZipFile(dist / wheel_name) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"velvet_runner-{version}.dist-info/METADATA").decode()
    data = f"velvet_runner-{version}.data/data/share/velvet-runner/"
    shipped = {p.name for p in (ROOT / ".github" / "workflows").glob("velvet-*.yml")}
    assert {n.rsplit("/", 1)[-1] for n in names if n.startswith(data + ".github/workflows/")
            } == shipped
    assert data + "examples/raxx/manifest/subscription-manifest.yml" in names
    assert "velvet_sandbox/rehearse/standins/setup-python/action.yml" in names
    assert f"Version: {version}" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
    assert "## Adopt Velvet in your repository" in metadata
    with tarfile.open(dist / sdist_name) as sdist:
        members = set(sdist.getnames())
    for name in ("action.yml", "requirements/stage.txt", "CHANGELOG.md",
                 "examples/raxx/manifest/sandbox.yml", ".github/workflows/velvet-stage-2-mint.yml"):
        assert f"velvet_runner-{version}/{name}" in members, name
