"""The `velvet` command: a thin click layer over the engine; the only package that prints.

`common` holds the group and the output rule; `jobs`, `local` and `actions` the commands
(`sandbox`, `demo` and `rehearse` are velvet_sandbox's, mounted through entry points). Exit
codes (DESIGN.md): 0 ok · 1 the stage ended failed/partial · 2 bad input · 3 conflict ·
4 disabled by feature flag.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from velvet_runner.cli.actions import approve, dispatch
from velvet_runner.cli.common import cli
from velvet_runner.cli.evidence import evidence, scan
from velvet_runner.cli.github import doctor, setup
from velvet_runner.cli.jobs import due, push, rotate, stage, status, stuck
from velvet_runner.cli.local import init, manifest, serve
from velvet_runner.cli.statusapp import status_app
from velvet_runner.errors import VelvetError

__all__ = ["approve", "cli", "dispatch", "doctor", "due", "evidence", "init", "main", "manifest",
           "push", "rotate", "scan", "serve", "setup", "stage", "status", "status_app", "stuck"]


def _fail(message: str, code: int) -> NoReturn:
    from velvet_runner.redact import scrub

    click.echo(f"velvet: {scrub(message)}", err=True)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="velvet",
                 standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        _fail("aborted", 1)
    except click.ClickException as exc:
        # Usage errors: click's own message, exit 2.
        exc.show()
        sys.exit(2)
    except VelvetError as exc:
        _report(exc)
    except KeyboardInterrupt:
        _fail("interrupted; the job can be resumed by running the same action again", 130)
    except OSError as exc:  # a file no narrower boundary named: still its path and the remedy
        from velvet_runner.errors import LocalFileError

        _report(LocalFileError.from_os(exc, "use", "a file on this machine (unnamed)"))
    except Exception as exc:  # noqa: BLE001 - never a traceback to the user
        _fail(f"internal error ({type(exc).__name__}): {exc}", 1)


def _report(exc: VelvetError) -> NoReturn:
    """The error's own lines and exit code (errors.py): no error is a special case here."""
    from velvet_runner.redact import scrub

    for line in exc.lines():
        click.echo(f"{exc.prefix}{scrub(line)}", err=True)
    sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
