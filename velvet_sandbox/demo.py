"""`velvet demo`: one full rotation against the built-in sandbox, from init to done.

Everything runs in this process: the fake vendors on 127.0.0.1, a fresh state branch in a
temporary directory, and the same Engine, Store and adapters the CLI uses. At the end the demo
proves the outcome at the fake vendor: the old value is refused and every consumer's health
check passes with the new one.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import SecretStr

from velvet_runner import flags as flags_mod
from velvet_runner import manifest as manifest_mod
from velvet_runner import timeline
from velvet_runner.engine import Engine
from velvet_runner.machine import Action, Flow, State
from velvet_runner.manifest import HttpCheck
from velvet_runner.records import Event, Job
from velvet_runner.report import consumer_table
from velvet_runner.settings import Settings
from velvet_runner.store import Store
from velvet_runner.wiring import Wiring

Echo = Callable[[str], None]


def run_demo(credential: str | None = None, *, echo: Echo = print,
             workdir: str | Path | None = None) -> int:
    from velvet_sandbox import Sandbox

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="velvet-demo-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        echo("velvet demo: starting the sandbox (fake vendors on 127.0.0.1) ...")
        with Sandbox() as sandbox:
            echo(f"velvet demo: the example world of {sandbox.source}")
            world = sandbox.seed_world(root)
            credential = credential or next(
                c.name for c in world.manifest().credentials if c.active and c.consumers)
            env = {**sandbox.env(root), "VELVET_ACTOR": "demo-operator",
                   "VELVET_SETTLE_SECONDS": "5", "VELVET_CACHE_DIR": str(root / "cache")}
            # boto3 reads its credentials from the process environment.
            os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
            settings = Settings.from_env(env)
            manifest = manifest_mod.load(settings.manifest)
            cred = manifest.credential(credential)
            if cred is None:
                echo(f"velvet demo: no credential {credential} in the sandbox manifest")
                return 2
            wiring = Wiring(settings)
            vault = wiring.vault(cred)
            old = vault.current()

            def show(job: Job, event: Event) -> None:
                echo(f"  {event.from_state or '':>18} -> {event.to_state:<18} "
                     f"{event.action:<16} {event.detail or ''}".rstrip())

            engine = Engine(settings, manifest, Store(settings.state, settings.state_branch,
                                                      settings.cache_dir),
                            wiring, flags=flags_mod.load_flags(settings.manifest),
                            on_transition=show)
            echo(f"rotating {credential} ({cred.vendor}) to {len(cred.consumers)} consumers "
                 f"across {len({c.kind for c in cred.consumers})} target kinds")
            job, _ = engine.create(credential, Flow.OPERATIONAL,
                                   idempotency_key=f"demo-{time.time_ns()}")
            echo(f"job {job.job_id} created ({job.status})")
            job = engine.run(job.job_id, Action.VERIFY)
            if job.status == State.VERIFIED:
                job = engine.run(job.job_id, Action.PROCEED_MINT)
            if job.status == State.VALIDATED:
                job = engine.run(job.job_id, Action.PROCEED_REVOKE,
                                 ticket=f"ROT-DEMO-{credential}", confirm=credential)
            echo("")
            echo(consumer_table(job).rstrip())
            echo("")
            ok = job.status == State.DONE and _prove(cred, wiring, old, echo)
            wiring.close()
        elapsed = time.monotonic() - started
        echo(f"\nvelvet demo: job {job.job_id} ended {job.status} in {elapsed:.1f}s — "
             + ("rotation proven" if ok else "rotation NOT proven"))
        return 0 if ok else 1


def _prove(cred: manifest_mod.Credential, wiring: Wiring, old: SecretStr | None,
           echo: Echo) -> bool:
    """The old value is refused at the vendor; every consumer's health check passes."""
    proven = True
    vendor = wiring.vendor(cred)
    if old is not None and vendor.is_live(old):
        echo("proof: FAILED — the old value still works at the vendor")
        proven = False
    else:
        echo("proof: the old value is refused by the vendor")
    new = wiring.vault(cred).current()
    if new is not None and vendor.is_live(new):
        echo("proof: the vault's current value is the new one and the vendor accepts it")
    else:
        echo("proof: FAILED — the vault's current value is not accepted")
        proven = False
    with httpx.Client(timeout=10) as http:
        for consumer in timeline.live_consumers(cred):
            if isinstance(consumer.healthcheck, HttpCheck):
                status = http.get(str(consumer.healthcheck.url)).status_code
                good = status == consumer.healthcheck.expect_status
                echo(f"proof: {consumer.consumer_id} health check HTTP {status}"
                     + ("" if good else " — FAILED"))
                proven = proven and good
    return proven
