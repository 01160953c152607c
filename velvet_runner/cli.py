"""The `velvet` command: a thin click layer over the engine; the only module that prints.

Exit codes (DESIGN.md): 0 ok · 1 the stage ended failed/partial · 2 bad input · 3 conflict ·
4 disabled by feature flag. Heavy modules are imported inside commands so `velvet --help`
starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from velvet_runner.errors import VelvetError
from velvet_runner.github.gate import GATED
from velvet_runner.rehearse.cli import rehearse

if TYPE_CHECKING:
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
    from velvet_runner.store import Store

    return Store(settings.state, settings.state_branch, settings.cache_dir,
                 create=settings.may_create_state)


def _engine(settings: Settings, progress: Progress | None = None) -> Engine:
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.engine import Engine
    from velvet_runner.logs import setup
    from velvet_runner.notify import notifier_from_settings
    from velvet_runner.wiring import Wiring

    setup()
    manifest = manifest_mod.load(settings.manifest)
    flags = manifest_mod.load_flags(settings.manifest)
    wiring = Wiring(settings) if progress is None else Wiring(settings, sleep=progress.sleep)
    return Engine(settings, manifest, _store(settings), wiring, flags=flags,
                  notifier=notifier_from_settings(settings, budgets=wiring.budgets),
                  gate=_gate(settings, manifest),
                  progress=progress)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="velvet-runner", prog_name="velvet")
def cli() -> None:
    """Rotate credentials: mint, fan out to every consumer, prove it works, then revoke."""


# --- manifest ----------------------------------------------------------------------------


@cli.group()
def manifest() -> None:
    """Validate the subscription manifest or print its JSON Schema."""


@manifest.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def manifest_check(path: str | None) -> None:
    """Validate PATH (default $VELVET_MANIFEST); every problem as file:line: field: message."""
    from velvet_runner import manifest as manifest_mod

    target = path or str(_settings().manifest)
    loaded = manifest_mod.load(target)
    typos = manifest_mod.unknown_flag_warnings(target)
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


@cli.command()
@click.argument("credential")
@click.option("--flow", type=click.Choice(FLOWS), default="operational", show_default=True)
@click.option("--idempotency-key", default=None, help="Same key again returns the same job.")
@click.option("--force-revoke", is_flag=True,
              help="Allow proceed_revoke from validate_partial (recorded on the job).")
@click.option("--preempt", is_flag=True,
              help="With --flow revocation: abort the credential's in-flight job and start.")
@output_option
def rotate(credential: str, flow: str, idempotency_key: str | None, force_revoke: bool,
           preempt: bool, as_json: bool | None) -> None:
    """Create a rotation job for CREDENTIAL (status init) and take its lock."""
    from velvet_runner.machine import Flow

    engine = _engine(_settings())
    job, created = engine.create(credential, Flow(flow), idempotency_key=idempotency_key,
                                 force_revoke=force_revoke, preempt=preempt)
    if wants_json(as_json):
        _emit_job(job)
    else:
        from velvet_runner.human import job_summary

        click.echo(job_summary(job, note=None if created else
                               "(an existing job: this idempotency key made it before)"),
                   nl=False)
    _actions_outputs(job)
    _finish(engine.store)


@cli.command()
@click.argument("job_id")
@click.argument("action")
@click.option("--consumer", "consumers", multiple=True,
              help="Consumer id, repeatable (manual_confirm, skip_consumer).")
@click.option("--ticket", default=None,
              help="Ticket id (proceed_revoke, mark_manually_revoked; revoke's incident).")
@click.option("--confirm", default=None, help="The credential's name, typed back (proceed_revoke).")
@click.option("--accept-debt", is_flag=True,
              help="mark_manually_revoked: record a value the vendor still accepts as debt.")
@output_option
def stage(job_id: str, action: str, consumers: Sequence[str], ticket: str | None,
          confirm: str | None, accept_debt: bool, as_json: bool | None) -> None:
    """Run ACTION on job JOB_ID (verify, proceed_mint, proceed_revoke, retry_*, abort, ...)."""
    from velvet_runner.engine import LeakStillOpen, stage_failed
    from velvet_runner.machine import Option

    _refuse_options(action, {Option.CONSUMER: bool(consumers), Option.TICKET: ticket is not None,
                             Option.CONFIRM: confirm is not None,
                             Option.ACCEPT_DEBT: accept_debt})
    engine = _engine(_settings(), _progress())
    as_json = wants_json(as_json)
    try:
        job = engine.run(job_id, action, consumers=consumers, ticket=ticket, confirm=confirm,
                         accept_debt=accept_debt)
    except LeakStillOpen as exc:
        _show_job(exc.job, as_json)
        raise
    _show_job(job, as_json)
    if "residual" in job.report and job.status == "aborted":
        _print_residual(job.report["residual"])
    if stage_failed(job):
        if as_json:  # the summary for people already ends with these commands
            click.echo(f"velvet: job {job.job_id} is {job.status}; allowed next: "
                       f"{', '.join(_allowed(job)) or 'none'}", err=True)
        for problem in engine.store.problems:
            click.echo(f"velvet: {problem}", err=True)
        sys.exit(1)
    _finish(engine.store)


def _show_job(job: Job, as_json: bool) -> None:
    if as_json:
        _emit_job(job)
    else:
        from velvet_runner.human import job_summary

        click.echo(job_summary(job), nl=False)
    _actions_outputs(job)


def _refuse_options(action: str, given: dict[Any, bool]) -> None:
    """An option the action does not take is an error, not something silently ignored."""
    from velvet_runner.errors import BadArgument
    from velvet_runner.machine import OPTIONS, Action, options_refused

    try:
        act = Action(action)
    except ValueError:
        return  # the engine names the unknown action and lists the known ones
    refused = options_refused(act, [option for option, present in given.items() if present])
    if refused:
        takes = ", ".join(f"--{o}" for o in OPTIONS[act]) or "no options"
        raise BadArgument(f"{', '.join(f'--{o}' for o in refused)} does not apply to {act} "
                          f"({act} takes {takes})")


def _allowed(job: Job) -> list[str]:
    return [str(a) for a in job.next_actions()]


def _print_residual(residual: dict[str, Any]) -> None:
    click.echo("residual state after abort:", err=True)
    for consumer, holds in sorted(residual.get("consumers", {}).items()):
        click.echo(f"  {consumer}: " + ("may hold either value (a write whose outcome is "
                                         "unknown)" if holds == "unknown" else
                                         f"holds the {holds} value"), err=True)
    for token in residual.get("orphaned_tokens", []):
        click.echo(f"  orphaned token: auth id {token.get('auth_id')} "
                   f"({token.get('fingerprint')}): {token.get('why')}", err=True)
    click.echo(f"  next step: {residual.get('next_step')}", err=True)


def _actions_outputs(job: Job) -> None:
    from velvet_runner.github.summary import write_outputs

    write_outputs(job)


@cli.command()
@click.argument("credential", required=False)
@click.option("--job", "job_id", default=None, help="One job by id.")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--all-events", is_flag=True,
              help="With --job: every event, not only the last 10.")
@output_option
def status(credential: str | None, job_id: str | None, limit: int, all_events: bool,
           as_json: bool | None) -> None:
    """Jobs of CREDENTIAL (newest first), one job, or every credential's latest job."""
    from velvet_runner import human
    from velvet_runner import manifest as manifest_mod

    settings = _settings()
    store = _store(settings)
    as_json = wants_json(as_json)
    if job_id is not None:
        job = store.get(credential, job_id) if credential else store.find(job_id)
        if as_json:
            _emit_job(job)
        else:
            click.echo(human.job_detail(job, events=None if all_events else human.EVENTS_SHOWN),
                       nl=False)
        _finish(store)
        return
    if credential is not None:
        jobs = store.list_jobs(credential, limit)
        if not jobs and manifest_mod.load(settings.manifest).credential(credential) is None:
            from velvet_runner.errors import NotFoundError

            raise NotFoundError(f"credential {credential} is not in the manifest")
        if as_json:
            click.echo(json.dumps([j.summary() for j in jobs], indent=2, sort_keys=True))
        else:
            click.echo(human.credential_jobs(credential, jobs), nl=False)
        _finish(store)
        return
    loaded = manifest_mod.load(settings.manifest)
    store.refresh()
    latest = {c.name: store.list_jobs(c.name, 1, fetch=False) for c in loaded.credentials}
    if as_json:
        click.echo(json.dumps({name: (jobs[0].summary() if jobs else None)
                               for name, jobs in latest.items()}, indent=2, sort_keys=True))
    else:
        click.echo(human.overview({name: jobs[0] if jobs else None
                                   for name, jobs in latest.items()}), nl=False)
    _finish(store)


@cli.command()
@click.option("--now", "now_text", default=None, help="ISO 8601 time to evaluate at.")
@output_option
def due(now_text: str | None, as_json: bool | None) -> None:
    """Credentials whose schedule says rotate now."""
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.schedule import due_credentials, parse_now

    settings = _settings()
    loaded = manifest_mod.load(settings.manifest)
    store = _store(settings)
    rows = due_credentials(loaded, store, parse_now(now_text), env=settings.env)
    if wants_json(as_json):
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
    else:
        from velvet_runner.human import due_summary

        click.echo(due_summary(rows), nl=False)
    _finish(store)


@cli.command()
@output_option
@click.option("--now", "now_text", default=None, help="ISO 8601 time to evaluate at.")
@click.option("--settle-debt", is_flag=True,
              help="First ask each vendor whether revocation-debt tokens still exist.")
def stuck(as_json: bool | None, now_text: str | None, settle_debt: bool) -> None:
    """Jobs stuck > 5 min or waiting on an operator, overdue credentials, revocation debt.

    Exits 1 whenever it lists anything (so a scheduled run fails visibly), 0 when nothing.
    """
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.schedule import parse_now
    from velvet_runner.watchdog import find_stuck

    settings = _settings()
    if settle_debt:
        for row in _engine(settings).settle_debt():
            click.echo(f"debt {row['credential']} auth id {row['auth_id']}: {row['result']}",
                       err=True)
    loaded = manifest_mod.load(settings.manifest)
    store = _store(settings)
    findings = find_stuck(loaded, store, parse_now(now_text), env=settings.env)
    if wants_json(as_json):
        click.echo(json.dumps(findings, indent=2, sort_keys=True))
    else:
        from velvet_runner.human import stuck_summary

        click.echo(stuck_summary(findings), nl=False)
    _finish(store)
    if any(findings.values()):
        sys.exit(1)


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


@cli.command()
@click.argument("job_id")
@click.argument("action", type=click.Choice(sorted(GATED)))
def approve(job_id: str, action: str) -> None:
    """Approve ACTION on JOB_ID where the environment has no required reviewers.

    Runs only in the velvet-approve.yml workflow: the approver is the person GitHub says
    dispatched that run, checked against the manifest's approvers; they may not be the person
    who started the job.
    """
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.engine import require_enabled
    from velvet_runner.github.gate import record_fallback_approval

    settings = _settings()
    loaded = manifest_mod.load(settings.manifest)
    require_enabled(manifest_mod.load_flags(settings.manifest))
    job = record_fallback_approval(settings, loaded, _store(settings), job_id, action)
    click.echo(f"job {job.job_id}: {job.events[-1].detail}")
    _actions_outputs(job)


@cli.command()
@click.argument("workflow")
@click.option("--input", "-f", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A workflow input (repeatable).")
@click.option("--ref", default=None, help="Branch to run the workflow from (default: this "
              "run's branch, GITHUB_REF_NAME).")
@click.option("--job", "job_id", default=None, help="Record the started run on this job.")
@click.option("--each-due", "due_file", default=None, type=click.Path(dir_okay=False),
              help="`velvet due --json` output: dispatch WORKFLOW once per due credential.")
@click.option("--stagger", default=120.0, show_default=True, type=click.FloatRange(0, 3600),
              help="Seconds between two --each-due dispatches.")
def dispatch(workflow: str, pairs: Sequence[str], ref: str | None, job_id: str | None,
             due_file: str | None, stagger: float) -> None:
    """Start WORKFLOW (workflow_dispatch) in this repository and print the new run's URL.

    Uses VELVET_GATE_TOKEN (the workflow's GITHUB_TOKEN, `actions: write`): a run started with
    GITHUB_TOKEN may dispatch workflows.
    """
    from velvet_runner.github import dispatch as gh
    from velvet_runner.github.api import api_from_env
    from velvet_runner.timeline import require_env

    settings = _settings()
    repository = os.environ.get("GITHUB_REPOSITORY") or settings.github_repository
    ref = ref or os.environ.get("GITHUB_REF_NAME")
    if not repository or not ref:
        from velvet_runner.errors import BadArgument

        raise BadArgument("dispatch needs GITHUB_REPOSITORY and --ref (or GITHUB_REF_NAME)")
    api = api_from_env(settings, os.environ)
    inputs = gh.parse_inputs(pairs)
    if due_file is not None:
        rows = gh.read_due(due_file)
        for result in gh.dispatch_due(api, repository, workflow, ref, rows,
                                      env=require_env(settings.env), stagger_seconds=stagger):
            click.echo(f"{result['credential']}: started {workflow} "
                       f"{result.get('html_url') or '(run id not returned)'}")
        if not rows:
            click.echo("nothing is due")
        return
    result = gh.dispatch_workflow(api, repository, workflow, ref, inputs)
    if job_id is not None:
        gh.record_dispatch(_store(settings), job_id, result, inputs,
                           actor=settings.actor or "github-actions")
    click.echo(f"started {workflow}: {result.get('html_url') or '(run id not returned)'}")


cli.add_command(rehearse)


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
    except Exception as exc:  # noqa: BLE001 - never a traceback to the user
        _fail(f"internal error ({type(exc).__name__}): {exc}", 1)


def _report(exc: VelvetError) -> NoReturn:
    from velvet_runner.errors import FeatureDisabled, ManifestError

    if isinstance(exc, ManifestError):
        for reason in exc.reasons:
            click.echo(reason, err=True)
        sys.exit(exc.exit_code)
    if isinstance(exc, FeatureDisabled):
        _fail(f"{exc}\nvelvet: {_flag_explanation()}", exc.exit_code)
    _fail(str(exc), exc.exit_code)


def _flag_explanation() -> str:
    """Why the flag reads as off: a missing file, a missing or misspelled key, or false."""
    from velvet_runner import manifest as manifest_mod

    try:
        path = _settings().manifest
    except VelvetError as exc:
        return str(exc)
    return manifest_mod.explain_flag(path)


if __name__ == "__main__":  # pragma: no cover
    main()
