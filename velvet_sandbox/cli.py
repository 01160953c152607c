"""The commands that start fakes, mounted on `velvet` through the `velvet.commands` entry
points (pyproject.toml): the runner lists them without importing this package.

    velvet sandbox                       every fake vendor on 127.0.0.1, provisioned from your
                                         manifest, and the environment that points at it
    velvet demo                          one full rotation of the example world, init to done
    velvet rehearse run                  one rotation by buttons and reviews, start to done
    velvet rehearse schedule             one cron tick and the runs it starts
    velvet rehearse pull-request BASE HEAD   the manifest check of a pull request
    velvet rehearse up                   keep a rehearsal running; runs start as they are ready
    velvet rehearse dispatch WORKFLOW --as LOGIN -f NAME=VALUE ...
    velvet rehearse approve RUN --as LOGIN [--reject]
    velvet rehearse status               the runs, their statuses and reviews

`velvet rehearse` runs this repository's workflows on nektos/act against the sandbox.
`dispatch`, `approve` and `status` talk to a rehearsal that `up` keeps running, through the
GitHub fake's REST API (the calls GitHub's buttons make), with the login's token that `up` wrote
to DIR/rehearsal.json. Module-level imports stay light: the fakes, moto and act are imported
by the commands that use them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from velvet_runner.cli.common import _settings
from velvet_runner.errors import BadArgument, InputError
from velvet_runner.workflows import STAGE1, STAGE3

if TYPE_CHECKING:
    import httpx

    from velvet_sandbox.rehearse.runner import Rehearsal, RunResult


@contextmanager
def _needs(extra: str, ctx: click.Context) -> Iterator[None]:
    """A module of the extra the command needs is missing (a stage install has none of them):
    the command, the module and what to install, exit 2."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = (exc.name or str(exc)).split(".")[0]
        raise InputError(f"{ctx.command_path} needs {missing}, which is not installed: "
                         f"pip install 'velvet-runner[{extra}]', or the README's install"
                         ) from None


class _SandboxCommand(click.Command):
    def invoke(self, ctx: click.Context) -> Any:
        with _needs("sandbox", ctx):
            return super().invoke(ctx)


class _RehearseGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        with _needs("rehearse", ctx):
            return super().invoke(ctx)


DEFAULT_DIR = ".velvet/rehearse"
CONNECTION = "rehearsal.json"
_dir = click.option("--dir", "folder", default=DEFAULT_DIR, show_default=True,
                    type=click.Path(file_okay=False),
                    help="Where runs' logs, summaries and outputs are kept.")
_manifest = click.option("--manifest", "manifest", default=None, type=click.Path(dir_okay=False),
                         help="The manifest the sandbox is provisioned from "
                              "[default: manifest/subscription-manifest.yml of the repository].")


def _root() -> Path:
    root = Path.cwd()
    if not (root / ".github" / "workflows").is_dir():
        raise BadArgument(f"{root}/.github/workflows does not exist: run velvet rehearse from "
                          "the root of the repository whose workflows you rehearse")
    return root


def _rehearsal(folder: str, manifest: str | None) -> Rehearsal:
    from velvet_sandbox.rehearse.runner import Rehearsal

    return Rehearsal(_root(), Path(folder), manifest=Path(manifest) if manifest else None)


@click.group(cls=_RehearseGroup)
def rehearse() -> None:
    """Run this repository's workflows locally (nektos/act) against the sandbox."""


@rehearse.command("run")
@_dir
@_manifest
@click.option("--credential", default=None,
              help="[default: the manifest's first active credential with consumers]")
def run_command(folder: str, manifest: str | None, credential: str | None) -> None:
    """One rotation of your manifest's credential through the real workflows: stage 1 by one
    approver, stages 2 and 3 approved by another, ending `done`. Proves the workflows, the
    gates and the stage chain work together."""
    with _rehearsal(folder, manifest) as rh:
        name = credential or _first_credential(rh)
        env = rh.sandbox.default_env()
        click.echo(f"rehearsal in {rh.folder}; act runs {rh.root}/.github/workflows")
        click.echo(f"sandbox provisioned from {rh.sandbox.source}: {name} rotated in {env}, "
                   f"started by {rh.starter}, approved by {rh.reviewer}")
        for consumer_id, url in rh.world.standins.items():
            click.echo(f"  healthcheck {consumer_id}: {url} is off this machine; its stand-in "
                       "answers in the rehearsal")
        rh.dispatch(STAGE1.file, {"credential": name, "flow": "operational", "env": env},
                    as_login=rh.starter)
        results = rh.drain()
        job_id = results[-1].outputs.get("job_id") if results else None
        for run_id in rh.waiting():
            rh.approve(run_id, rh.reviewer, comment="velvet rehearse run")
        results += rh.drain()
        if job_id and results and results[-1].outputs.get("status") == "validated":
            stage3 = rh.dispatch(STAGE3.file, {"job_id": job_id, "ticket": "REHEARSAL-1",
                                          "confirm": name, "env": env},
                                 as_login=rh.starter)
            rh.approve(stage3, rh.reviewer, comment="velvet rehearse run")
            results += rh.drain()
        click.echo(rh.table(), nl=False)
        final = results[-1].outputs.get("status") if results else None
        _explain(results)
        what = f"job {job_id}: {final or 'no status'}" if job_id else "no job was created"
        click.echo(f"{what}; logs, summaries and outputs under {rh.folder / 'runs'}")
        if final != "done":
            raise SystemExit(1)


@rehearse.command("schedule")
@_dir
@_manifest
def schedule_command(folder: str, manifest: str | None) -> None:
    """One cron tick of velvet-schedule.yml and every run it starts (a due rotation's stage 1;
    its stage 2 then waits for a review, as on GitHub). Exit 1 if a run failed."""
    with _rehearsal(folder, manifest) as rh:
        rh.schedule()
        results = rh.drain()
        click.echo(rh.table(), nl=False)
        _explain(results)
        click.echo(f"logs, summaries and outputs under {rh.folder / 'runs'}")
        if any(r.conclusion != "success" for r in results):
            raise SystemExit(1)


@rehearse.command("pull-request")
@click.argument("base")
@click.argument("head")
@_dir
@_manifest
def pull_request_command(base: str, head: str, folder: str, manifest: str | None) -> None:
    """The manifest check of a pull request from HEAD onto BASE (commits or branches of this
    repository); prints its step summary: what the change adds, removes and changes."""
    root = _root()
    shas = [_commit(root, ref) for ref in (base, head)]
    with _rehearsal(folder, manifest) as rh:
        rh.pull_request(root, shas[0], shas[1])
        results = rh.drain()
        click.echo(rh.table(), nl=False)
        for result in results:
            click.echo(result.summary, nl=False)
        _explain(results)
        if not results or any(r.conclusion != "success" for r in results):
            raise SystemExit(1)


def _explain(results: Sequence[RunResult]) -> None:
    """Each failed run: its workflow, the failing job and step, and the tail of its log."""
    for result in results:
        if result.conclusion != "success":
            click.echo(result.explain(), err=True, nl=False)


def _first_credential(rh: Rehearsal) -> str:
    for cred in rh.world.manifest().credentials:
        if cred.active and cred.consumers:
            return cred.name
    raise BadArgument(f"{rh.sandbox.source}: no active credential with consumers to rehearse")


def _commit(root: Path, ref: str) -> str:
    import subprocess

    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet",
                           f"{ref}^{{commit}}"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BadArgument(f"{ref}: not a commit of the repository at {root}")
    return proc.stdout.strip()


@rehearse.command("up")
@_dir
@_manifest
def up_command(folder: str, manifest: str | None) -> None:
    """Keep a rehearsal running: every run that is ready is executed by act. Ctrl-C stops."""
    with _rehearsal(folder, manifest) as rh:
        connection = rh.folder / CONNECTION
        connection.touch(mode=0o600)
        connection.write_text(json.dumps({"github": rh.server_url, "tokens": rh.tokens,
                                          "repository": rh.repository,
                                          "folder": str(rh.folder)}), encoding="utf-8")
        click.echo(f"rehearsal up: GitHub fake {rh.server_url}, runs under {rh.folder / 'runs'}")
        click.echo(f"  velvet rehearse dispatch {STAGE1.file} --as {rh.starter} "
                   f"-f credential={_first_credential(rh)}")
        click.echo(f"  velvet rehearse approve RUN --as {rh.reviewer};  velvet rehearse status")
        shown = ""
        try:
            while True:
                rh.drain()
                table = rh.table()
                if table != shown:
                    click.echo(table, nl=False)
                    shown = table
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            connection.unlink(missing_ok=True)


def _client(folder: str, login: str | None) -> tuple[httpx.Client, str]:
    import httpx

    path = Path(folder) / CONNECTION
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BadArgument(f"{path}: no rehearsal is up; start one with velvet rehearse up "
                          f"--dir {folder}") from None
    tokens: dict[str, str] = data["tokens"]
    login = login or next(iter(tokens))
    if login not in tokens:
        raise BadArgument(f"--as must be one of {', '.join(tokens)}, not {login!r}")
    client = httpx.Client(base_url=data["github"], timeout=30, headers={
        "Authorization": f"Bearer {tokens[login]}", "User-Agent": "velvet-rehearse"})
    return client, "/repos/" + str(data["repository"])


def _answer(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise BadArgument(f"{what}: HTTP {response.status_code}: "
                          f"{response.json().get('message', response.text)}")
    return response.json() if response.content else None


@rehearse.command("dispatch")
@click.argument("workflow")
@click.option("--as", "login", required=True, help="Who presses the button.")
@click.option("--input", "-f", "pairs", multiple=True, metavar="NAME=VALUE")
@_dir
def dispatch_command(workflow: str, login: str, pairs: Sequence[str], folder: str) -> None:
    """Start WORKFLOW as LOGIN ("Run workflow")."""
    from velvet_runner.github.dispatch import parse_inputs

    client, repo = _client(folder, login)
    with client:
        data = _answer(client.post(f"{repo}/actions/workflows/{workflow}/dispatches", json={
            "ref": "main", "inputs": parse_inputs(pairs), "return_run_details": True}),
            f"dispatching {workflow}")
    click.echo(f"run {data['workflow_run_id']}: {data['html_url']}")


@rehearse.command("approve")
@click.argument("run_id", type=int)
@click.option("--as", "login", required=True, help="The reviewer.")
@click.option("--reject", is_flag=True, help="Reject instead of approving.")
@click.option("--comment", default="", help="The review's comment.")
@_dir
def approve_command(run_id: int, login: str, reject: bool, comment: str, folder: str) -> None:
    """Review the deployment RUN_ID waits for, as LOGIN (GitHub's "Review deployments")."""
    client, repo = _client(folder, login)
    path = f"{repo}/actions/runs/{run_id}/pending_deployments"
    with client:
        pending = _answer(client.get(path), f"run {run_id}")
        if not pending:
            raise BadArgument(f"run {run_id} is not waiting for a review")
        ids = [p["environment"]["id"] for p in pending]
        _answer(client.post(path, json={"environment_ids": ids, "comment": comment,
                                        "state": "rejected" if reject else "approved"}),
                f"reviewing run {run_id}")
    names = ", ".join(p["environment"]["name"] for p in pending)
    click.echo(f"run {run_id}: {'rejected' if reject else 'approved'} {names} as {login}")


@rehearse.command("status")
@_dir
def status_command(folder: str) -> None:
    """The rehearsal's runs: workflow, event, actor, status and reviews."""
    from velvet_runner.client import follow_links

    client, repo = _client(folder, None)
    with client:
        # Every page: GitHub (and its fake) answer 30 runs a page unless asked for more.
        runs: list[Any] = follow_links(client, f"{repo}/actions/runs?per_page=100",
                                       "listing runs")
        for run in reversed(runs):
            reviews: list[Any] = follow_links(
                client, f"{repo}/actions/runs/{run['id']}/approvals?per_page=100",
                f"run {run['id']}")
            who = ", ".join(f"{r['user']['login']} {r['state']}" for r in reviews) or "-"
            click.echo(f"{run['id']}  {run['path'].rsplit('/', 1)[-1]}  {run['event']}  "
                       f"{run['actor']['login']}  {run['conclusion'] or run['status']}  {who}")


@click.command(cls=_SandboxCommand)
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
    from velvet_sandbox import main as sandbox_main

    path = source or str(_settings().manifest)
    manifest_mod.load(path)  # a manifest Velvet refuses is named before anything starts
    sandbox_main(port, workdir, echo=click.echo, manifest=path)


@click.command(cls=_SandboxCommand)
@click.option("--credential", default=None,
              help="[default: the example's first active credential]")
def demo(credential: str | None) -> None:
    """One full rotation of the example world (examples/raxx/) in the sandbox, init to done."""
    from velvet_sandbox.demo import run_demo

    sys.exit(run_demo(credential, echo=click.echo))
