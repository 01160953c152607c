"""Commands that need no job: making a Velvet repository (`init`), the manifest (`check`,
`schema`, `plan`), the status app (`serve`), and the sandbox (`sandbox`, `demo`)."""

from __future__ import annotations

import sys

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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
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
              type=click.Path(file_okay=False),
              help="Where the sandbox's manifest copy and state repository are written.")
@click.option("--manifest", "source", default=None, type=click.Path(dir_okay=False),
              help="The manifest to provision [default: $VELVET_MANIFEST, else "
                   "manifest/subscription-manifest.yml].")
def sandbox(port: int | None, workdir: str, source: str | None) -> None:
    """Start every fake vendor on 127.0.0.1, provision your manifest's world at them, and print
    the environment that points at it. The state repository starts and ends with the fakes."""
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.sandbox import main as sandbox_main

    path = source or str(_settings().manifest)
    manifest_mod.load(path)  # a manifest Velvet refuses is named before anything starts
    sandbox_main(port, workdir, echo=click.echo, manifest=path)


@cli.command()
@click.option("--credential", default=None,
              help="[default: the example's first active credential]")
def demo(credential: str | None) -> None:
    """One full rotation of the example world (examples/raxx/) in the sandbox, init to done."""
    from velvet_runner.demo import run_demo

    sys.exit(run_demo(credential, echo=click.echo))


# --- GitHub Actions: the fallback gate, starting runs (velvet_runner.github) -----------------
