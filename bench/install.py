"""The stage install, fresh, side by side with the full one: packages, size on disk, time.

    python bench/install.py [--keep DIR]

Each install goes into a new virtualenv with pip's cache off (fresh: every file downloaded or
read from the index again). "stage" is what every stage job runs (requirements/stage.txt with
hashes, then the runner with --no-deps --no-build-isolation); "full" is every runtime extra
(`pip install '.[serve,sandbox,rehearse]'`), the superset a stage used to install. Needs the
package index; not part of CI. Goal (issue 14): stage <= 35 packages and <= 120 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIP = [ "-m", "pip", "install", "--quiet", "--no-cache-dir", "--disable-pip-version-check"]
INSTALLS = {
    "stage": [[*PIP, "--require-hashes", "-r", str(ROOT / "requirements" / "stage.txt")],
              [*PIP, "--no-deps", "--no-build-isolation", str(ROOT)]],
    "full": [[*PIP, f"{ROOT}[serve,sandbox,rehearse]"]],
}
GOAL_PACKAGES, GOAL_MB = 35, 120


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()
               ) / 1e6


def measure(name: str, where: Path) -> dict[str, float | int | str]:
    venv = where / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    started = time.monotonic()
    for command in INSTALLS[name]:
        proc = subprocess.run([python, *command], cwd=where, capture_output=True, text=True,
                              check=False)
        if proc.returncode:
            raise SystemExit(f"bench/install.py: the {name} install failed:\n{proc.stderr}")
    seconds = time.monotonic() - started
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "json"], check=True,
                            capture_output=True, text=True).stdout
    packages = [p["name"] for p in json.loads(listed) if p["name"] != "pip"]
    return {"install": name, "packages": len(packages), "mb": round(_size_mb(venv), 1),
            "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", default=None, help="build the virtualenvs here and keep them")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="velvet-install-") as tmp:
        where = Path(args.keep or tmp)
        where.mkdir(parents=True, exist_ok=True)
        rows = [measure(name, where) for name in INSTALLS]
    print("| install | packages (without pip) | size of the virtualenv | time, fresh |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['install']} | {row['packages']} | {row['mb']} MB | {row['seconds']} s |")
    stage = rows[0]
    met = int(stage["packages"]) <= GOAL_PACKAGES and float(stage["mb"]) <= GOAL_MB
    print(f"\nstage goal (<= {GOAL_PACKAGES} packages, <= {GOAL_MB} MB): "
          f"{'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
