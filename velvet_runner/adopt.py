"""`velvet init [DIR]`: make a repository a Velvet repository of thin callers.

What it writes (never over a different file without `force`; the same content again is left
alone, so a second run changes nothing; the manifest and flags, once there, are the
repository's and are never replaced, so `--force` with a new `--sha` rewrites the callers of an
upgrade and nothing else):

    .github/workflows/velvet-*.yml   the runner's own workflows, their `uses: ./` (the runner's
                                     composite action) pinned to <runner>@<full sha> # v<version>
    .github/dependabot.yml           upgrades arrive as pull requests bumping that one SHA
    manifest/subscription-manifest.yml  a commented starter that passes `velvet manifest check`
    manifest/flags.yml               velvet_v2_rotation off until you turn it on
    .gitignore                       .velvet/ (appended when the file exists)
    README.md                        a short "Velvet" section (appended when the file exists)
"""

from __future__ import annotations

import re
import subprocess
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from velvet_runner.errors import BadArgument

RUNNER = "velvet-runner/velvet-runner"  # where the runner's releases live on GitHub
SOURCE = Path(__file__).resolve().parents[1]  # the checkout this runner runs from, if any
# How the runner's own workflows take its action (zizmor would have GitHub's newer `$/`, which
# act does not know).
LOCAL_ACTION = ("        uses: ./ # zizmor: ignore[self-repository] (act and older runners "
                "know ./)\n")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# Workflows of the runner's own repository that are no caller: the status app's deploy uploads
# the checkout it runs in, which in an adopter's repository holds no runner (docs/setup.md 11).
RUNNER_ONLY = frozenset({"velvet-deploy-status.yml"})
README_MARK = "## Velvet"


def version() -> str:
    return metadata.version("velvet-runner")


def shipped(relative: str) -> Path:
    """A file the runner ships beside its package: in its checkout, or under an install's
    share/velvet-runner/ (pyproject.toml's data-files)."""
    for root in (SOURCE, Path(sysconfig.get_paths()["data"]) / "share" / "velvet-runner"):
        if (root / relative).exists():
            return root / relative
    raise BadArgument(f"{relative} is not installed with the runner (reinstall velvet-runner)")


def release_sha() -> str:
    """The commit of the runner's checkout (what `velvet init` pins by default)."""
    found = subprocess.run(["git", "-C", str(SOURCE), "rev-parse", "HEAD"], capture_output=True,
                           text=True, check=False)
    sha = found.stdout.strip()
    if found.returncode != 0 or not SHA_RE.match(sha):
        raise BadArgument("this runner is not a git checkout: name the runner's release commit "
                          "with --sha (its full 40-character SHA)")
    return sha


@dataclass(frozen=True)
class Planned:
    path: Path
    content: str
    append: bool = False  # add `content` to an existing file instead of writing it whole
    starter: bool = False  # a starting point: an existing file is the repository's own


def workflows(runner: str, sha: str, release: str) -> dict[str, str]:
    """The caller workflows: the runner's own, taking its action at the pinned release."""
    pin = f"        uses: {runner}@{sha} # v{release}\n"
    folder = shipped(".github/workflows")
    out = {}
    for path in sorted(folder.glob("velvet-*.yml")):
        if path.name in RUNNER_ONLY:
            continue
        text = path.read_text(encoding="utf-8")
        if LOCAL_ACTION not in text:
            raise BadArgument(f"{path}: takes the runner's action otherwise than adopt.py "
                              "expects (LOCAL_ACTION); not a caller template")
        out[f".github/workflows/{path.name}"] = text.replace(LOCAL_ACTION, pin)
    return out


DEPENDABOT = """\
# Upgrades of the Velvet runner (and every other pinned action) arrive as pull requests that
# bump the pinned commit SHA and its version comment.
version: 2
updates:
  - package-ecosystem: github-actions
    directory: /
    schedule:
      interval: weekly
"""

FLAGS = """\
# velvet_v2_rotation: every command that changes something refuses (exit 4) while it is off.
# Turn it on once `velvet rehearse run` ends done and the GitHub side is set up.
velvet_v2_rotation: false
"""


def starter_manifest(runner: str, sha: str) -> str:
    return f"""\
# yaml-language-server: $schema=https://raw.githubusercontent.com/{runner}/{sha}/manifest/subscription-manifest.schema.json
# Which credential goes to which consumers. Every field is described in the runner's
# docs/manifest.md; `velvet manifest check` names every problem as file:line: field: message.
# Replace the example below with your own credentials; `velvet rehearse run` then rotates the
# first one through these workflows against fakes of every vendor.
version: 1
credentials:
  - name: EXAMPLE_CLOUDFLARE_TOKEN  # UPPER_SNAKE_CASE, unique in the manifest
    description: Cloudflare API token the deploy pipeline uses
    vendor: cloudflare              # heroku, cloudflare, postmark, aws_iam, operator_manual
    env: prod
    schedule: 90d                   # rotate every 90 days (h, d or w)
    vault:                          # the canonical store of the live value
      kind: infisical_secret
      project_id: my-infisical-project
      environment: prod
      secret_path: /velvet
      name: EXAMPLE_CLOUDFLARE_TOKEN
    approvers:                      # GitHub logins; two, so one starts and another approves
      prod: [first-approver, second-approver]
    consumers:                      # everything that holds the value
      - consumer_id: gh-my-app-cloudflare
        kind: github_actions_secret
        repository: my-org/my-app
        secret: CLOUDFLARE_API_TOKEN
        env: prod
        healthcheck: {{type: http, url: "https://my-app.example.com/healthz"}}
"""


README = f"""
{README_MARK}

This repository rotates its credentials with [Velvet](https://github.com/{{runner}}): the
manifest is `manifest/subscription-manifest.yml`, the workflows under `.github/workflows/`
take the runner at the commit they pin (Dependabot proposes upgrades).

```sh
velvet manifest check          # every problem as file:line: field: message
velvet rehearse run            # one rotation through these workflows, against fakes
```
"""


def plan(target: Path, runner: str, sha: str, release: str) -> list[Planned]:
    files = [Planned(target / name, text)
             for name, text in workflows(runner, sha, release).items()]
    files += [
        Planned(target / ".github" / "dependabot.yml", DEPENDABOT),
        Planned(target / "manifest" / "subscription-manifest.yml", starter_manifest(runner, sha),
                starter=True),
        Planned(target / "manifest" / "flags.yml", FLAGS, starter=True),
        Planned(target / ".gitignore", ".velvet/\n", append=True),
        Planned(target / "README.md", README.replace("{runner}", runner), append=True),
    ]
    return files


def _present(item: Planned) -> bool:
    """Whether the file already says what `item` would write."""
    if not item.path.exists():
        return False
    text = item.path.read_text(encoding="utf-8")
    if not item.append:
        return text == item.content
    first = item.content.strip().splitlines()[0]
    return any(line.strip() == first for line in text.splitlines())


def init(target: Path, *, runner: str = RUNNER, sha: str | None = None, force: bool = False,
         ) -> list[str]:
    """Write the plan into `target`; returns one line per file (wrote, appended, unchanged).
    Refuses, writing nothing, when a file exists with other content and `force` is not set."""
    if not re.match(r"^[\w.-]+/[\w.-]+$", runner):
        raise BadArgument(f"--runner must be OWNER/NAME, not {runner!r}")
    pinned = sha or release_sha()
    if not SHA_RE.match(pinned):
        raise BadArgument(f"--sha must be a full 40-character commit SHA, not {pinned!r}")
    items = plan(target, runner, pinned, version())
    conflicts = [item.path for item in items if not (item.append or item.starter)
                 and item.path.exists() and not _present(item)]
    if conflicts and not force:
        raise BadArgument("these files exist with other content (--force overwrites them): "
                          + ", ".join(str(p) for p in conflicts))
    report = []
    for item in items:
        shown = item.path.relative_to(target) if item.path.is_relative_to(target) else item.path
        if _present(item):
            report.append(f"unchanged {shown}")
            continue
        if item.starter and item.path.exists():
            report.append(f"kept {shown} (yours)")
            continue
        item.path.parent.mkdir(parents=True, exist_ok=True)
        if item.append and item.path.exists():
            text = item.path.read_text(encoding="utf-8")
            joiner = "" if not text or text.endswith("\n") else "\n"
            item.path.write_text(text + joiner + item.content, encoding="utf-8")
            report.append(f"appended to {shown}")
        else:
            item.path.write_text(item.content.lstrip("\n"), encoding="utf-8")
            report.append(f"wrote {shown}")
    return report
