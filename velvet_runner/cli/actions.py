"""Commands a workflow runs against GitHub: the fallback approval gate (`approve`) and
starting runs (`dispatch`), both over velvet_runner.github."""

from __future__ import annotations

import os
from collections.abc import Sequence

import click

from velvet_runner.cli.common import _actions_outputs, _settings, _store, cli
from velvet_runner.github.gate import GATED


@cli.command()
@click.argument("job_id")
@click.argument("action", type=click.Choice(sorted(GATED)))
def approve(job_id: str, action: str) -> None:
    """Approve ACTION on JOB_ID where the environment has no required reviewers.

    Runs only in the velvet-approve.yml workflow: the approver is the person GitHub says
    dispatched that run, checked against the manifest's approvers; they may not be the person
    who started the job.
    """
    from velvet_runner import flags as flags_mod
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.engine import require_enabled
    from velvet_runner.github.gate import record_fallback_approval

    settings = _settings()
    loaded = manifest_mod.load(settings.manifest)
    require_enabled(flags_mod.load_flags(settings.manifest), settings.manifest)
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
@click.option("--stagger", default=0.0, show_default=True, type=click.FloatRange(0, 3600),
              help="Seconds between two --each-due dispatches (the vendors' shared rate "
                   "budgets pace the runs themselves).")
@click.option("--max-starts", default=None, type=click.IntRange(1, 1000),
              help="--each-due: start at most this many, the most overdue first (default: "
                   "the manifest's scheduler.max_starts).")
def dispatch(workflow: str, pairs: Sequence[str], ref: str | None, job_id: str | None,
             due_file: str | None, stagger: float, max_starts: int | None) -> None:
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
        from velvet_runner import manifest as manifest_mod
        from velvet_runner.schedule import tick

        if max_starts is None:
            max_starts = manifest_mod.load(settings.manifest).scheduler.max_starts
        rows, later = tick(gh.read_due(due_file), max_starts)
        for result in gh.dispatch_due(api, repository, workflow, ref, rows,
                                      env=require_env(settings.env), stagger_seconds=stagger):
            click.echo(f"{result['credential']}: started {workflow} "
                       f"{result.get('html_url') or '(run id not returned)'}")
        if later:
            click.echo(f"{len(later)} more due, left for the next tick (scheduler.max_starts "
                       f"{max_starts}): {', '.join(str(r['credential']) for r in later)}")
        if not rows:
            click.echo("nothing is due")
        return
    result = gh.dispatch_workflow(api, repository, workflow, ref, inputs)
    if job_id is not None:
        gh.record_dispatch(_store(settings), job_id, result, inputs,
                           actor=settings.actor or "github-actions")
    click.echo(f"started {workflow}: {result.get('html_url') or '(run id not returned)'}")
