"""What every `velvet` command shares: the click group, the output rule, and how a command
builds its settings, store, engine and progress (heavy modules imported inside, so that
`velvet --help` starts fast)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from velvet_runner.engine import Engine
    from velvet_runner.engine.progress import Progress
    from velvet_runner.records import Job
    from velvet_runner.settings import Settings
    from velvet_runner.store import Store

FLOWS = ("operational", "revocation", "testing")
F = TypeVar("F", bound=Callable[..., Any])


def _emit_job(job: Job) -> None:
    click.echo(job.to_json(), nl=False)


# --- the Output rule (DESIGN.md, Amendments): people on a terminal, JSON everywhere else ------


def output_option(command: F) -> F:
    """`--json/--human`; neither means JSON unless stdout is a terminal outside Actions."""
    return click.option(
        "--json/--human", "as_json", default=None,
        help="JSON (the default when stdout is not a terminal, and in GitHub Actions) or a "
             "short summary for people ending with the next command (the default on a "
             "terminal).")(command)


def all_option(command: F) -> F:
    """`--all` (once `--all-events`): every row and event of a job, every detail uncut."""
    return click.option(
        "--all", "--all-events", "show_all", is_flag=True,
        help="For people: every consumer row and event, and no detail cut.")(command)


def wants_json(as_json: bool | None) -> bool:
    if as_json is not None:
        return as_json
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return True
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):  # no stdout, or a closed one
        return True


def _finish(store: Store) -> None:
    """Name every record a listing read had to skip; exit 2 when there was any."""
    for problem in store.problems:
        click.echo(f"velvet: {problem}", err=True)
    if store.problems:
        sys.exit(2)


def _settings() -> Settings:
    from velvet_runner.settings import Settings

    return Settings.from_env()


def _store(settings: Settings) -> Store:
    """The state branch's store, its cache folder made first: a folder the system will not
    create (under /proc, say) is refused as the setting it is, before anything is written."""
    from velvet_runner.settings import refused
    from velvet_runner.store import Store

    store = Store(settings.state, settings.state_branch, settings.cache_dir,
                  create=settings.may_create_state)
    folder = store.cache.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refused("VELVET_CACHE_DIR", str(settings.cache_dir or folder),
                      f"the state cache cannot be created at {folder}: "
                      f"{exc.strerror or type(exc).__name__}") from None
    return store


def _engine(settings: Settings, progress: Progress | None = None) -> Engine:
    from velvet_runner import flags as flags_mod
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.engine import Engine
    from velvet_runner.logs import setup
    from velvet_runner.notify import notifier_from_settings
    from velvet_runner.wiring import Wiring

    setup(_log_level(settings))
    manifest = manifest_mod.load(settings.manifest)
    flags = flags_mod.load_flags(settings.manifest)
    wiring = Wiring(settings) if progress is None else Wiring(settings, sleep=progress.sleep)
    return Engine(settings, manifest, _store(settings), wiring, flags=flags,
                  notifier=notifier_from_settings(settings, budgets=wiring.budgets),
                  gate=_gate(settings, manifest),
                  progress=progress)


def _log_level(settings: Settings) -> int | None:
    """`-v` (info; `-vv` debug), else VELVET_LOG, else info in GitHub Actions; else none."""
    import logging

    ctx = click.get_current_context(silent=True)
    verbose = ctx.find_root().params.get("verbose", 0) if ctx is not None else 0
    if verbose:
        return logging.DEBUG if verbose > 1 else logging.INFO
    if settings.log_level is not None:
        return logging.getLevelNamesMapping()[settings.log_level.upper()]
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return logging.INFO
    return None


def _progress() -> Progress:
    """Progress on stderr, and Ctrl-C as a request to stop at the next safe point (a second
    Ctrl-C stops at once; a resume reconciles either way)."""
    import signal

    from velvet_runner.engine.progress import Progress

    progress = Progress(lambda line: click.echo(line, err=True))

    def on_sigint(signum: int, frame: Any) -> None:
        if progress.stop.is_set():
            raise KeyboardInterrupt
        progress.stop.set()
        click.echo("velvet: stopping at the next safe point (Ctrl-C again to stop now)",
                   err=True)

    signal.signal(signal.SIGINT, on_sigint)
    return progress


def _gate(settings: Settings, manifest: Any) -> Any:
    from velvet_runner.github.gate import gate_from_env

    return gate_from_env(settings, manifest)



def _actions_outputs(job: Job) -> None:
    """The job's step outputs, when running in GitHub Actions."""
    from velvet_runner.github.summary import write_outputs

    write_outputs(job)


# The entry-point group through which another package of the distribution mounts commands on
# `velvet` (pyproject.toml: velvet_sandbox's `sandbox`, `demo` and `rehearse`).
MOUNTED = "velvet.commands"


class Velvet(click.Group):
    """`velvet`: its own commands and the mounted ones. A mounted command's package is imported
    only when that command runs: `velvet --help` reads its one-line help from its source, so
    neither the help nor any stage imports the sandbox (tests/test_imports.py)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_mounted()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command  # the runner's own: no scan of the installed distributions
        entry = _mounted().get(cmd_name)
        if entry is None:
            return None
        try:
            loaded = entry.load()
        except ImportError as exc:
            from velvet_runner.errors import InputError

            raise InputError(
                f"velvet {cmd_name}: {entry.value} cannot be imported ({exc}): pip install "
                "'velvet-runner[sandbox]', or the README's install") from None
        if not isinstance(loaded, click.Command):
            raise TypeError(f"entry point {MOUNTED}:{cmd_name} is {loaded!r}, not a command")
        return loaded

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's listing, but a mounted command's line is read from its source, not imported."""
        mounted = _mounted()
        listed: list[tuple[str, click.Command | EntryPoint]] = []
        for name in self.list_commands(ctx):
            if name in mounted and name not in self.commands:
                listed.append((name, mounted[name]))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                listed.append((name, command))
        if not listed:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        with formatter.section("Commands"):
            formatter.write_dl([
                (name, item.get_short_help_str(limit) if isinstance(item, click.Command)
                 else _short_help(item, limit)) for name, item in listed])


@functools.cache
def _mounted() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=MOUNTED)}


def _short_help(entry: EntryPoint, limit: int) -> str:
    """The first sentence of a mounted command's docstring, read from the source of its module:
    finding a module's file imports none of its packages."""
    import ast
    from importlib.machinery import PathFinder
    from importlib.util import find_spec

    parts = entry.module.split(".")
    spec = find_spec(parts[0])  # a top-level name: found, not imported
    for depth in range(2, len(parts) + 1):
        if spec is None or not spec.submodule_search_locations:
            return ""
        spec = PathFinder.find_spec(".".join(parts[:depth]), list(spec.submodule_search_locations))
    if spec is None or spec.origin is None:
        return ""
    source = Path(spec.origin).read_text(encoding="utf-8")
    for node in ast.parse(source, spec.origin).body:
        if isinstance(node, ast.FunctionDef) and node.name == entry.attr:
            # click's own shortening of the help it would make from the same docstring
            return click.Command(entry.name, help=ast.get_docstring(node)).get_short_help_str(limit)
    return ""


@click.group(cls=Velvet, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="velvet-runner", prog_name="velvet")
@click.option("-v", "--verbose", count=True,
              help="Log lines on stderr (-v info, -vv debug; or VELVET_LOG=LEVEL). In GitHub "
                   "Actions they are on.")
def cli(verbose: int) -> None:
    """Rotate credentials: mint, fan out to every consumer, prove it works, then revoke."""


# --- manifest ----------------------------------------------------------------------------
