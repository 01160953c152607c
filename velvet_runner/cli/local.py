"""Commands that need no job: making a Velvet repository (`init`), the manifest (`check`,
`schema`, `plan`) and the status app (`serve`). The sandbox's commands (`sandbox`, `demo`,
`rehearse`) live in velvet_sandbox.cli, mounted through entry points (common.py)."""

from __future__ import annotations

import click

from velvet_runner.cli.common import (
    _settings,
    _store,
    cli,
)


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--runner", default=None, metavar="OWNER/NAME",
              help="The runner's repository on GitHub [default: velvet-runner/velvet-runner].")
@click.option("--sha", default=None, help="The runner's release commit to pin (full SHA) "
              "[default: the commit of this runner's checkout].")
@click.option("--force", is_flag=True, help="Overwrite files that exist with other content.")
def init(directory: str, runner: str | None, sha: str | None, force: bool) -> None:
    """Make DIRECTORY a Velvet repository: caller workflows pinned to the runner's release,
    Dependabot, a starter manifest, flags (off), .gitignore and a README section."""
    from pathlib import Path

    from velvet_runner import adopt

    target = Path(directory)
    for line in adopt.init(target, runner=runner or adopt.RUNNER, sha=sha, force=force):
        click.echo(line)
    cd = "" if target.resolve() == Path.cwd() else f"cd {directory} && "
    click.echo(f"""
next:
  {cd}$EDITOR manifest/subscription-manifest.yml   # your credentials, consumers, approvers
  velvet manifest check
  velvet rehearse run                  # one rotation through these workflows, against fakes
  git add -A && git commit -m "Velvet" && git push""")


@cli.group()
def manifest() -> None:
    """Validate the subscription manifest or print its JSON Schema."""


@manifest.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def manifest_check(path: str | None) -> None:
    """Validate PATH (default $VELVET_MANIFEST); every problem as file:line: field: message."""
    from velvet_runner import flags as flags_mod
    from velvet_runner import manifest as manifest_mod

    target = path or str(_settings().manifest)
    loaded = manifest_mod.load(target)
    typos = flags_mod.unknown_flag_warnings(target)
    if typos:
        from velvet_runner.errors import ManifestError

        raise ManifestError(typos)
    consumers = sum(len(c.consumers) for c in loaded.credentials)
    click.echo(f"{target}: ok ({len(loaded.credentials)} credentials, {consumers} consumers)")


@manifest.command("schema")
def manifest_schema() -> None:
    """Print the manifest's JSON Schema."""
    from velvet_runner.manifest import json_schema_text

    click.echo(json_schema_text(), nl=False)


@manifest.command("reference")
def manifest_reference() -> None:
    """Print the manifest's reference (docs/manifest.md), written from its JSON Schema."""
    from velvet_runner.manifest_doc import reference

    click.echo(reference(), nl=False)


@manifest.command("plan")
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("head", type=click.Path(dir_okay=False))
@click.option("--markdown", is_flag=True, help="Markdown for a pull-request summary.")
def manifest_plan(base: str, head: str, markdown: bool) -> None:
    """What changing the manifest from BASE to HEAD adds, removes and changes."""
    from velvet_runner.plan import plan_text

    click.echo(plan_text(base, head, markdown=markdown), nl=False)


# --- jobs --------------------------------------------------------------------------------


def _host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An IP address or a host name (RFC 1123), refused by name before anything starts."""
    import ipaddress
    import re

    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    if len(value) <= 253 and re.fullmatch(rf"{label}(?:\.{label})*\.?", value):
        return value
    raise click.BadParameter(f"{value[:80]!r} is not an IP address or a host name", ctx, param)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, callback=_host,
              envvar="VELVET_SERVE_HOST",
              help="The address to listen on (an IP address or a host name; default "
                   "$VELVET_SERVE_HOST or 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), envvar="PORT",
              help="Default $PORT or 8000.")
@click.option("--public", is_flag=True,
              help="Serve without authentication: anyone who can reach the app reads every "
                   "credential's consumers and jobs (every page's banner says so). Without it "
                   "every path but /healthz and /health needs a token from "
                   "VELVET_STATUS_TOKENS.")
def serve(host: str, port: int | None, public: bool) -> None:
    """Serve the read-only status app (closed to requests without a read token)."""
    from urllib.parse import urlsplit

    from velvet_runner.errors import BadArgument
    from velvet_runner.web import serve as serve_app

    settings = _settings()
    if not public and not settings.status_tokens:
        raise BadArgument(
            "VELVET_STATUS_TOKENS is not set: the status app is closed by default. Set it to "
            "one or more read tokens (comma-separated; several so that one can be replaced at a "
            "time), or pass --public to serve without authentication")
    if "://" in settings.state and urlsplit(settings.state).password is not None:
        raise BadArgument("VELVET_STATE holds a password in its URL, where git would show it "
                          "in logs and errors: put the URL without it in VELVET_STATE and the "
                          "token in VELVET_STATE_TOKEN")
    if not settings.may_create_state:
        _store(settings).head(fetch=False)  # a missing VELVET_STATE is refused before serving
    url = f"http://{host}:{port or 8000}"
    if public:
        click.echo(f"velvet serve: {url} is PUBLIC (--public): no token needed; anyone who can "
                   "reach it reads every credential's consumers and jobs", err=True)
    else:
        click.echo(f"velvet serve: {url} is closed: every path but /healthz and /health needs "
                   f"one of the {len(settings.status_tokens)} token(s) in VELVET_STATUS_TOKENS",
                   err=True)
    serve_app(host, port or 8000, settings, public=public)


# --- GitHub Actions: the fallback gate, starting runs (velvet_runner.github) -----------------
