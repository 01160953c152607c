"""Commands that look rather than change: who else holds a value (`scan`), and what the state
branch proves about every rotation (`evidence`). Neither needs the feature flag."""

from __future__ import annotations

import json
import sys

import click

from velvet_runner.cli.common import _settings, cli, output_option, wants_json


@cli.command()
@click.argument("credential")
@output_option
def scan(credential: str, as_json: bool | None) -> None:
    """Search every place Velvet's own credentials can read for CREDENTIAL's live value.

    Heroku config vars of every app the bootstrap token may use, every Infisical project and
    environment Velvet's identity can read, SSM parameters under the manifest's prefixes (by
    fingerprint, never printing a value), and the workflows of GitHub repositories the App can
    see that the manifest does not list. Exits 1 when a place the manifest does not register
    holds the value or such a workflow names its secret.
    """
    from velvet_runner import manifest as manifest_mod
    from velvet_runner import redact, timeline
    from velvet_runner import scan as scan_mod
    from velvet_runner.client import RetryPolicy
    from velvet_runner.errors import InputError, NotFoundError
    from velvet_runner.logs import setup
    from velvet_runner.wiring import Wiring

    setup()
    settings = _settings()
    loaded = manifest_mod.load(settings.manifest)
    cred = loaded.credential(credential)
    if cred is None:
        raise NotFoundError(f"credential {credential} is not in the manifest "
                            f"({settings.manifest})")
    timeline.require_serves(settings.env, cred.env, f"credential {credential}")
    wiring = Wiring(settings)
    try:
        vault = wiring.vault(cred)
        value = RetryPolicy(sleep=wiring.sleep).run(vault.current)
        if value is None:
            raise InputError(f"the vault {vault.describe()} holds no current value")
        redact.register(value)
        found = scan_mod.scan(wiring, loaded, cred, value)
    finally:
        wiring.close()
    if wants_json(as_json):
        click.echo(json.dumps(found.to_dict(), indent=2, sort_keys=True))
    else:
        from velvet_runner.human import scan_summary

        click.echo(scan_summary(found), nl=False)
    if found.holders or found.references:
        sys.exit(1)


@cli.command()
@click.option("--since", default=None, metavar="INTERVAL",
              help="Only rotations started within this interval before the report's time "
                   "(e.g. 90d, 12w, 36h); default: every one.")
@click.option("--credential", default=None, metavar="NAME", help="One credential only.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md",
              show_default=True, help="Markdown (an auditor's appendix), CSV or JSON.")
@click.option("--as-of", "as_of", default=None, metavar="ISO8601",
              help="Judge schedules at this time instead of the branch head's commit time.")
def evidence(since: str | None, credential: str | None, fmt: str, as_of: str | None) -> None:
    """Every rotation on the state branch, as evidence: dates, key age against the schedule,
    who started and approved it, the ticket, how the old value was proven dead, revocation
    debt, what was accepted before the revoke; then the credentials out of policy.

    Reads the state branch only (and the manifest for schedules). The same branch head and
    manifest give the same bytes; the document names both.
    """
    from velvet_runner import evidence as evidence_mod
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.cli.common import _store
    from velvet_runner.schedule import parse_now

    settings = _settings()
    loaded = manifest_mod.load(settings.manifest)
    store = _store(settings)
    report = evidence_mod.collect(store, loaded, settings.manifest, since=since,
                                  credential=credential,
                                  as_of=parse_now(as_of) if as_of else None)
    click.echo(evidence_mod.render(report, fmt), nl=False)
    for problem in store.problems:
        click.echo(f"velvet: {problem}", err=True)
    if store.problems:
        sys.exit(2)
