"""The GitHub side of a Velvet repository: `velvet doctor` checks it (read-only) and `velvet
setup github` makes it (a plan, then `--apply`), both over velvet_runner.github.

Both read the repository (`--repo`, else GITHUB_REPOSITORY, else the checkout's `origin`), a
GitHub token from GITHUB_TOKEN or GH_TOKEN (`gh auth token`), the API at VELVET_GITHUB_API_URL
(else GITHUB_API_URL, else api.github.com), the manifest (VELVET_MANIFEST) and the workflows
under .github/workflows of the current directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from velvet_runner.cli.common import _settings, cli
from velvet_runner.errors import BadArgument

if TYPE_CHECKING:
    from velvet_runner.github.api import GitHubApi
    from velvet_runner.github.expect import Expected
    from velvet_runner.settings import Settings

WORKFLOWS = Path(".github") / "workflows"
_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")
_repo_option = click.option("--repo", "repository", default=None, metavar="OWNER/REPO",
                            help="The Velvet repository [default: GITHUB_REPOSITORY, else the "
                                 "checkout's origin].")
_env_option = click.option("--env", "envs", multiple=True, metavar="ENV",
                           help="An env of the manifest to check (repeatable) [default: every "
                                "env a credential is rotated in].")


def _repository(given: str | None, settings: Settings) -> str:
    repository = given or settings.github_repository or _origin()
    if not repository:
        raise BadArgument("--repo: which repository? Give OWNER/REPO (or set GITHUB_REPOSITORY, "
                          "or run from a checkout whose origin is on GitHub)")
    if not _REPO.match(repository):
        raise BadArgument(f"--repo must be OWNER/REPO, not {repository!r}")
    return repository


def _origin() -> str | None:
    found = subprocess.run(["git", "remote", "get-url", "origin"], capture_output=True,
                           text=True, check=False)
    match = re.search(r"github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?$", found.stdout.strip())
    return match.group(1) if found.returncode == 0 and match else None


def _api(settings: Settings) -> GitHubApi:
    from velvet_runner.github.api import GitHubApi

    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
    if not token:
        raise BadArgument("no GitHub token: set GITHUB_TOKEN (or GH_TOKEN, e.g. "
                          "GH_TOKEN=$(gh auth token)) to a token that can read the repository")
    url = (os.environ.get("VELVET_GITHUB_API_URL") or os.environ.get("GITHUB_API_URL")
           or settings.github_api_url)
    return GitHubApi(token, url)


def _expected(settings: Settings, envs: tuple[str, ...]) -> Expected:
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.github.expect import Expected

    loaded = manifest_mod.load(settings.manifest)
    unknown = [env for env in envs if env not in loaded.environments]
    if unknown:
        raise BadArgument(f"--env {unknown[0]}: the manifest's environments are "
                          f"{', '.join(loaded.environments)}")
    return Expected.of(loaded, envs=list(envs) or None, workflows=WORKFLOWS)


@cli.command()
@_repo_option
@_env_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document for scripts.")
def doctor(repository: str | None, envs: tuple[str, ...], as_json: bool) -> None:
    """Check the GitHub side of a Velvet repository and Velvet's own credentials, read-only.

    One line per check: ✓ holds, ✗ fails (with the exact fix), – skipped (with why).
    Exit 0 when every check holds, 1 when any fails, 2 on bad input.
    """
    from velvet_runner.github.checklist import report
    from velvet_runner.github.doctor import Doctor
    from velvet_runner.wiring import Wiring

    settings = _settings()
    repo = _repository(repository, settings)
    expected = _expected(settings, envs)
    api = _api(settings)
    checks = Doctor(expected, api, repo, settings=settings,
                    state_branch=settings.state_branch,
                    wiring=lambda: Wiring(settings)).run()
    document = report(checks, repo, list(expected.envs))
    if as_json:
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        click.echo(f"velvet doctor: {repo} (env {', '.join(expected.envs)})")
        for check in checks:
            click.echo(check.line())
        counts = {s: sum(c.status == s for c in checks) for s in ("ok", "fail", "skip")}
        click.echo(f"{counts['ok']} hold, {counts['fail']} fail, {counts['skip']} skipped")
    if not document["ok"]:
        sys.exit(1)


@cli.group()
def setup() -> None:
    """Set up what Velvet needs outside this repository's files."""


@setup.command("github")
@_repo_option
@_env_option
@click.option("--apply", "apply", is_flag=True, help="Make the changes (without it: the plan).")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read secret values as a JSON object {NAME: value} from standard input.")
def setup_github(repository: str | None, envs: tuple[str, ...], apply: bool,
                 from_stdin: bool) -> None:
    """Plan, then with --apply make, the GitHub side `velvet doctor` checks: the gate
    environments, the state branch and its ruleset, the default branch's review rule and
    CODEOWNERS, the repository variables, the secrets (sealed; values from the environment
    or --stdin, never printed) and the App's repositories. Exit 1 while a step is left that
    only a person can do (it is printed with how)."""
    from velvet_runner.github.setup import Planner

    settings = _settings()
    repo = _repository(repository, settings)
    expected = _expected(settings, envs)
    values = _values(expected, from_stdin)
    planner = Planner(expected, _api(settings), repo, settings.state_branch, values)
    changes = planner.plan()
    doable = [c for c in changes if c.run is not None]
    manual = [c for c in changes if c.run is None]
    if not changes:
        click.echo(f"{repo}: nothing to change; the GitHub side is as the manifest needs it")
        return
    click.echo(f"{repo}: {len(doable)} change(s) to make, {len(manual)} for a person")
    for change in changes:
        click.echo(change.line())
    if not apply:
        if doable:
            click.echo("(a plan: run again with --apply to make the changes)")
        sys.exit(1 if manual else 0)
    for change in doable:
        assert change.run is not None  # noqa: S101 - `doable` has a run
        change.run()
        click.echo(f"done: {change.what}")
    if manual:
        click.echo(f"left for a person: {len(manual)} step(s) above marked !")
        sys.exit(1)


def _values(expected: Expected, from_stdin: bool) -> dict[str, Any]:
    """The secret and variable values given: the environment's, then stdin's (a JSON object).
    Only names the workflows read are taken; every value is a SecretStr."""
    from pydantic import SecretStr

    wanted = {read.name for read in expected.reads}
    values = {name: SecretStr(os.environ[name]) for name in wanted if os.environ.get(name)}
    if from_stdin:
        try:
            given = json.loads(sys.stdin.read() or "{}")
        except ValueError:
            raise BadArgument("--stdin takes a JSON object of NAME: value") from None
        if not isinstance(given, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
            raise BadArgument("--stdin takes a JSON object of NAME: value (strings)")
        unknown = sorted(set(given) - wanted)
        if unknown:
            raise BadArgument(f"--stdin: {unknown[0]} is not read by any workflow here; "
                              f"known: {', '.join(sorted(wanted))}")
        values.update({k: SecretStr(v) for k, v in given.items()})
    return values
