"""`velvet status-app`: deploy the status app to Heroku, and smoke-check it where it runs
(velvet-deploy-status.yml runs both; an operator can run `smoke` by hand after any deploy)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from velvet_runner.cli.common import _settings, cli


@cli.group("status-app")
def status_app() -> None:
    """Deploy the status app (Heroku's Build API) and run the runbook's smoke check."""


@status_app.command("deploy")
@click.argument("app")
@click.option("--source", "source", default=".", show_default=True,
              type=click.Path(file_okay=False, exists=True),
              help="The git checkout to deploy (its files that git tracks or does not ignore).")
@click.option("--version", "version", default=None,
              help="What the build is called (default: $GITHUB_SHA, the commit deployed).")
@click.option("--wait", default=600.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds to wait for the build and its web dyno.")
def deploy(app: str, source: str, version: str | None, wait: float) -> None:
    """Deploy the committed source to Heroku app APP; print its web URL (and, in Actions, set
    the step output web_url). The token comes from VELVET_STATUS_DEPLOY_TOKEN."""
    import re

    from velvet_runner.deploy import Deployer, source_tarball
    from velvet_runner.errors import BadArgument

    if not re.fullmatch(r"[a-z][a-z0-9-]{1,29}", app):
        raise BadArgument(f"APP: {app[:40]!r} is not a Heroku app name")
    settings = _settings()
    if settings.status_deploy_token is None:
        raise BadArgument("VELVET_STATUS_DEPLOY_TOKEN is not set: a Heroku API token allowed "
                          "to deploy the app (docs/setup.md, section 11)")
    version = version or os.environ.get("GITHUB_SHA") or "local"
    tarball = source_tarball(Path(source))
    deployer = Deployer(settings.heroku_api_url, settings.status_deploy_token, app,
                        say=lambda line: click.echo(line, err=True))
    web_url = deployer.deploy(tarball, version, wait=wait)
    click.echo(web_url)
    _output("web_url", web_url)


@status_app.command("smoke")
@click.argument("urls", nargs=-1, required=True)
@click.option("--wait", default=120.0, show_default=True, type=click.FloatRange(0, 3600),
              envvar="VELVET_SMOKE_WAIT_SECONDS",
              help="Seconds each failing probe is retried before the check fails (default "
                   "$VELVET_SMOKE_WAIT_SECONDS or 120).")
def smoke(urls: tuple[str, ...], wait: float) -> None:
    """The runbook's smoke check against each base URL: /healthz and /health 200, /flags 200
    with the read token in VELVET_STATUS_TOKEN, /flags 401 without it. Exit 1 naming every
    probe that failed."""
    from velvet_runner import deploy as deploy_mod

    settings = _settings()
    results = deploy_mod.smoke(list(urls), settings.status_token, wait=wait,
                               say=lambda line: click.echo(line, err=True))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(deploy_mod.summary_markdown(results))
    failed = deploy_mod.failure(results)
    if failed is not None:
        if os.environ.get("GITHUB_ACTIONS") == "true":
            click.echo(f"::error title=Smoke check failed::{failed}")
        raise failed
    click.echo(f"smoke check passed: {len(results)} probes")


def _output(name: str, value: str) -> None:
    path = os.environ.get("GITHUB_OUTPUT")
    if path and "\n" not in value:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{name}={value}\n")

