"""Commands on jobs: start one (`rotate`), run its stages (`stage`), and read them back
(`status`, `due`, `stuck`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from velvet_runner.cli.common import (
    FLOWS,
    _actions_outputs,
    _emit_job,
    _engine,
    _finish,
    _progress,
    _settings,
    _store,
    all_option,
    cli,
    output_option,
    wants_json,
)

if TYPE_CHECKING:
    from velvet_runner.errors import VendorError
    from velvet_runner.records import Job


IDEMPOTENCY_KEY_MAX = 200


def _idempotency_key(ctx: click.Context, param: click.Parameter,
                     value: str | None) -> str | None:
    """1 to 200 printable characters: the key is stored on the state branch and shown to
    people, so no newline or terminal escape, and no 100 KB key."""
    if value is None:
        return None
    if not value:
        raise click.BadParameter("is empty; give 1 to 200 printable characters, or leave the "
                                 "option out")
    if len(value) > IDEMPOTENCY_KEY_MAX:
        raise click.BadParameter(f"is {len(value)} characters long; at most "
                                 f"{IDEMPOTENCY_KEY_MAX} printable characters")
    if not value.isprintable():
        raise click.BadParameter("holds a control character (a newline or a terminal escape); "
                                 "give 1 to 200 printable characters")
    return value


@cli.command()
@click.argument("credential")
@click.option("--flow", type=click.Choice(FLOWS), default="operational", show_default=True)
@click.option("--idempotency-key", default=None, callback=_idempotency_key,
              help="Same key again returns the same job (1 to 200 printable characters).")
@click.option("--force-revoke", is_flag=True,
              help="Allow proceed_revoke from validate_partial (recorded on the job).")
@click.option("--preempt", is_flag=True,
              help="With --flow revocation: abort the credential's in-flight job and start.")
@output_option
@all_option
def rotate(credential: str, flow: str, idempotency_key: str | None, force_revoke: bool,
           preempt: bool, as_json: bool | None, show_all: bool) -> None:
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
                               "(an existing job: this idempotency key made it before)",
                               full=show_all), nl=False)
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
@click.option("--accept-unregistered", is_flag=True,
              help="proceed_revoke: revoke although places the manifest does not register "
                   "hold the old value (recorded with the ticket).")
@click.option("--accept-still-used", is_flag=True,
              help="proceed_revoke: revoke although the vendor saw the old value used after "
                   "every consumer switched (recorded with the ticket).")
@output_option
@all_option
def stage(job_id: str, action: str, consumers: Sequence[str], ticket: str | None,
          confirm: str | None, accept_debt: bool, accept_unregistered: bool,
          accept_still_used: bool, as_json: bool | None, show_all: bool) -> None:
    """Run ACTION on job JOB_ID (verify, proceed_mint, proceed_revoke, retry_*, abort, ...)."""
    from velvet_runner.engine import stage_failed
    from velvet_runner.errors import LeakStillOpen, VendorError
    from velvet_runner.machine import Option

    _refuse_options(action, {Option.CONSUMER: bool(consumers), Option.TICKET: ticket is not None,
                             Option.CONFIRM: confirm is not None,
                             Option.ACCEPT_DEBT: accept_debt,
                             Option.ACCEPT_UNREGISTERED: accept_unregistered,
                             Option.ACCEPT_STILL_USED: accept_still_used})
    engine = _engine(_settings(), _progress())
    as_json = wants_json(as_json)
    try:
        job = engine.run(job_id, action, consumers=consumers, ticket=ticket, confirm=confirm,
                         accept_debt=accept_debt, accept_unregistered=accept_unregistered,
                         accept_still_used=accept_still_used)
    except LeakStillOpen as exc:
        _show_job(exc.job, as_json, show_all)
        raise
    except VendorError as exc:
        raise _unrecorded(exc, engine, job_id, action) from None
    _show_job(job, as_json, show_all)
    if as_json and "residual" in job.report and job.status == "aborted":
        # The summary for people holds it; with JSON on stdout, people read the log.
        from velvet_runner.human import residual_lines

        click.echo("\n".join(residual_lines(job.report["residual"])), err=True)
    if stage_failed(job):
        if as_json:  # the summary for people already ends with these commands
            click.echo(f"velvet: job {job.job_id} is {job.status}; allowed next: "
                       f"{', '.join(_allowed(job)) or 'none'}", err=True)
        for problem in engine.store.problems:
            click.echo(f"velvet: {problem}", err=True)
        sys.exit(1)
    _finish(engine.store)


@cli.command()
@click.argument("job_id")
@click.option("--consumer", "consumers", multiple=True, required=True,
              help="Consumer id, repeatable.")
@output_option
def push(job_id: str, consumers: Sequence[str], as_json: bool | None) -> None:
    """Push a done job's new value to consumers that failed their check after the revoke."""
    from velvet_runner.engine import stage_failed

    engine = _engine(_settings(), _progress())
    job = engine.push(job_id, consumers)
    _show_job(job, wants_json(as_json))
    if stage_failed(job):
        sys.exit(1)
    _finish(engine.store)


def _unrecorded(exc: VendorError, engine: Any, job_id: str, action: str) -> VendorError:
    """A vendor failure the stage did not record on the job (it came before the stage's first
    move): the same error, with where the job stands and the command that tries again."""
    from velvet_runner.errors import VelvetError
    from velvet_runner.machine import stage_command

    try:
        where = f"job {job_id} is still {engine.store.find(job_id).status}"
    except VelvetError:
        where = f"job {job_id} is unchanged"
    return type(exc)(f"{exc}; {where}: once the vendor answers, run the same action again: "
                     f"{stage_command(job_id, action)} (with the same options)")


def _show_job(job: Job, as_json: bool, show_all: bool = False) -> None:
    if as_json:
        _emit_job(job)
    else:
        from velvet_runner.human import job_summary

        click.echo(job_summary(job, full=show_all), nl=False)
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


@cli.command()
@click.argument("credential", required=False)
@click.option("--job", "job_id", default=None, help="One job by id.")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(1, 1000))
@output_option
@all_option
def status(credential: str | None, job_id: str | None, limit: int, show_all: bool,
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
            click.echo(human.job_detail(job, full=show_all), nl=False)
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
    _listing(rows, as_json, "due_summary")
    _finish(store)


@cli.command()
@output_option
@click.option("--now", "now_text", default=None, help="ISO 8601 time to evaluate at.")
@click.option("--settle-debt", is_flag=True,
              help="First ask each vendor whether revocation-debt tokens still exist.")
@click.option("--token", "token", default=None, metavar="ID",
              help="With --settle-debt: only the debt token with this auth id or fingerprint.")
@click.option("--ticket", default=None, metavar="T",
              help="With --settle-debt --token: the ticket recording that it was revoked, for "
                   "a token no vendor API can prove dead (Postmark, operator-managed).")
def stuck(as_json: bool | None, now_text: str | None, settle_debt: bool, token: str | None,
          ticket: str | None) -> None:
    """Jobs stuck > 5 min or waiting on an operator, overdue credentials, revocation debt.

    Exits 1 whenever it lists anything (so a scheduled run fails visibly), 0 when nothing.
    """
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.errors import BadArgument
    from velvet_runner.schedule import parse_now
    from velvet_runner.watchdog import find_stuck

    settings = _settings()
    if (token is not None or ticket is not None) and not settle_debt:
        raise BadArgument("--token and --ticket apply to --settle-debt only")
    if settle_debt:
        for row in _engine(settings).settle_debt(token=token, ticket=ticket):
            click.echo(f"debt {row['credential']} auth id {row['auth_id']}: {row['result']}",
                       err=True)
    loaded = manifest_mod.load(settings.manifest)
    store = _store(settings)
    findings = find_stuck(loaded, store, parse_now(now_text), env=settings.env)
    _listing(findings, as_json, "stuck_summary")
    _finish(store)
    if any(findings.values()):
        sys.exit(1)


def _listing(data: Any, as_json: bool | None, summary: str) -> None:
    """A listing as JSON, or as `human.<summary>` for people (imported only for them)."""
    if wants_json(as_json):
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from velvet_runner import human

    click.echo(getattr(human, summary)(data), nl=False)
