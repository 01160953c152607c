"""Commands that need no job: the manifest (`check`, `schema`, `plan`), the status app
(`serve`), and the built-in sandbox (`sandbox`, `demo`)."""

from __future__ import annotations

import sys

import click

from velvet_runner.cli.common import (
    _settings,
    _store,
    cli,
)


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
    """An IP address or a host name (RFC 1123), refused here rather than by the server."""
    import ipaddress
    import re

    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    label = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
    if len(value) > 253 or not re.fullmatch(rf"{label}(\.{label})*\.?", value):
        raise click.BadParameter(f"{value!r} is neither an IP address nor a host name")
    return value


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, callback=_host,
              help="The address to listen on: an IP address or a host name.")
@click.option("--port", default=None, type=click.IntRange(1, 65535), envvar="PORT",
              help="Default $PORT or 8000.")
def serve(host: str, port: int | None) -> None:
    """Serve the read-only status app."""
    from velvet_runner.web import serve as serve_app

    settings = _settings()
    if not settings.may_create_state:
        _store(settings).head(fetch=False)  # a missing VELVET_STATE is refused before serving
    serve_app(host, port or 8000, settings)


@cli.command()
@click.option("--port", default=None, type=click.IntRange(1, 65000),
              help="First port (default: any free ports).")
@click.option("--dir", "workdir", default=".velvet/sandbox", show_default=True,
              type=click.Path(file_okay=False), help="Where the sandbox manifest is written.")
def sandbox(port: int | None, workdir: str) -> None:
    """Start every fake vendor on 127.0.0.1 and print the environment that points at them."""
    from velvet_runner.sandbox import main as sandbox_main

    sandbox_main(port, workdir)


@cli.command()
@click.option("--credential", default="HK_PLATFORM_FULL", show_default=True)
def demo(credential: str) -> None:
    """One full rotation against the built-in sandbox, from init to done."""
    from velvet_runner.demo import run_demo

    sys.exit(run_demo(credential, echo=click.echo))


# --- GitHub Actions: the fallback gate, starting runs (velvet_runner.github) -----------------
