"""The engine: runs one stage of one job, and keeps every token it makes in the job's ledger.

    __init__     Engine: create (preempting for emergencies), run, settle_debt; preconditions
    services     Services: what a run is handed (store, wiring, clock, gate, progress, ...)
    context      Run: one stage's journal, credential, adapters, values and proofs of death
    journal      the only writer of the record and the ledger: intents, outcomes, the lease
    handlers     HANDLERS[(flow, action)] beside machine.TABLES
    operational  verify, then mint -> distribute -> validate
    mint         minting under the ledger: at most one value issued per intent
    revoke       stage 3: re-check, revoke the old value, prove it dead, promote the vault
    precheck     stage 3's checks first: who else holds the old value, who still uses it
    recovery     rows marked by hand, mark_manually_revoked, abort (residual, debt), rollback
    revocation   emergency revoke, lockout checks, leak resolution
    dry_run      the testing flow
    fanout       bounded concurrent work over consumers
    progress     lines for the operator, and Ctrl-C as a request to stop at a safe point

Stages are idempotent: an interrupted stage is resumed by running its action again, and it
reconciles what the ledger says it was about to do with the vault and the vendor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from velvet_runner import ledger, timeline
from velvet_runner.errors import (
    BadArgument,
    ConflictError,
    FeatureDisabled,
    InputError,
    Interrupted,
    LeakStillOpen,
    NotFoundError,
    RotationInFlight,
    VendorError,
)
from velvet_runner.flags import explain_flag
from velvet_runner.logs import job_logger
from velvet_runner.machine import (
    INITIAL,
    Action,
    Flow,
    Option,
    allowed,
    is_failed,
    options_refused,
    stage_command,
    step,
)
from velvet_runner.manifest import BOOTSTRAP_CREDENTIALS, Consumer, Credential, Manifest
from velvet_runner.records import ConsumerRow, Event, Job, Life, RowStatus, new_job_id, utcnow
from velvet_runner.settings import Settings, require_declared_env
from velvet_runner.store import Store
from velvet_runner.wiring import Wiring

from . import revoke
from .context import CRASH_EXIT, Args, Run
from .handlers import HANDLERS
from .journal import LEASE_TTL, Notifier
from .progress import Progress
from .proof import confirm
from .services import Gate, Services

__all__ = ["CRASH_EXIT", "FLAG", "LEASE_TTL", "Engine", "Gate", "Interrupted", "LeakStillOpen",
           "Notifier", "Progress", "Services", "require_enabled", "stage_failed"]

FLAG = "velvet_v2_rotation"


def require_enabled(flags: dict[str, bool], manifest_path: str | Path) -> None:
    """The feature flag's refusal, for the engine and for commands that change a job without it
    (`velvet approve`), saying why the flag beside `manifest_path` reads as off."""
    if not flags.get(FLAG, False):
        raise FeatureDisabled(f"feature flag {FLAG} is off: Velvet refuses to change "
                              "anything; use the vendor's manual SOP (runbook section 1)",
                              explain_flag(manifest_path))


class Engine:
    def __init__(self, settings: Settings, manifest: Manifest, store: Store, wiring: Wiring,
                 *, flags: dict[str, bool] | None = None, notifier: Notifier | None = None,
                 gate: Gate | None = None, now: Callable[[], Any] = utcnow,
                 on_transition: Callable[[Job, Event], None] | None = None,
                 progress: Progress | None = None) -> None:
        require_declared_env(settings, manifest.environments)
        self.settings = settings
        self.manifest = manifest
        self.store = store
        self.wiring = wiring
        self.flags = flags if flags is not None else {}
        self.now = now
        self.actor = settings.actor or "unknown"
        # What each run is handed; a run never reaches back into the engine.
        self.services = Services(
            store=store, wiring=wiring, manifest=manifest, now=now, actor=self.actor,
            progress=progress if progress is not None else Progress(), gate=gate,
            notifier=notifier, on_transition=on_transition, crash_at=settings.crash_at,
            settle_seconds=settings.settle_seconds)

    # --- preconditions -------------------------------------------------------------------

    def require_enabled(self) -> None:
        require_enabled(self.flags, self.settings.manifest)

    def _credential(self, name: str) -> Credential:
        cred = self.manifest.credential(name)
        if cred is None:
            raise NotFoundError(f"credential {name} is not in the manifest "
                                f"({self.settings.manifest}); add it there, or rotate it by "
                                "hand per your procedure for it")
        return cred

    def _require_env(self, env: str, what: str) -> None:
        timeline.require_serves(self.settings.env, env, what)

    def _rotatable(self, cred: Credential) -> list[Consumer]:
        if cred.name in BOOTSTRAP_CREDENTIALS:
            raise InputError(f"{cred.name} is one of Velvet's own bootstrap credentials; rotate "
                             f"it by hand: {BOOTSTRAP_CREDENTIALS[cred.name]}")
        if not cred.active:
            raise InputError(f"{cred.name} has active: false in the manifest; fix the manifest "
                             "first or rotate it manually per the vendor SOP (runbook section 1)")
        live = timeline.live_consumers(cred)
        if not live:
            raise InputError(f"{cred.name} has no active {cred.env} consumers registered; add "
                             "them to the manifest, or rotate it by hand per your procedure")
        return live

    # --- creating a job ------------------------------------------------------------------

    def create(self, name: str, flow: Flow = Flow.OPERATIONAL, *,
               idempotency_key: str | None = None, force_revoke: bool = False,
               preempt: bool = False) -> tuple[Job, bool]:
        """Create a job in its initial state and take the credential's lock.

        An emergency revocation never waits behind routine work: with `preempt` it aborts the
        credential's in-flight job through its normal abort (residual recorded, its minted
        token listed as debt) and starts in the same call.
        """
        self.require_enabled()
        if preempt and flow != Flow.REVOCATION:
            raise BadArgument("--preempt applies to --flow revocation only")
        cred = self._credential(name)
        self._require_env(cred.env, f"credential {name}")
        self._rotatable(cred)
        job = self._new_job(cred, flow, idempotency_key, force_revoke)
        try:
            stored, created = self.services.journal(job).create()
        except RotationInFlight as exc:
            if flow != Flow.REVOCATION:
                raise
            if not preempt:
                raise RotationInFlight(name, exc.job_id, hint=(
                    f"; an emergency revocation takes over with: velvet rotate {name} --flow "
                    f"revocation --preempt (aborts job {exc.job_id}, residual recorded)")) from None
            self._preempt(exc.job_id, name, job.job_id)
            self._adopt(job, self.store.find(exc.job_id))
            stored, created = self.services.journal(job).create()
        if created:
            job_logger("engine", stored.job_id).info(
                "created %s job for %s by %s", flow, name, self.actor)
        return stored, created

    def _new_job(self, cred: Credential, flow: Flow, idempotency_key: str | None,
                 force_revoke: bool) -> Job:
        now = self.now()
        rows = []
        for consumer in cred.consumers:
            if consumer.env != cred.env:
                continue  # another environment's Velvet serves it
            row = ConsumerRow(consumer_id=consumer.consumer_id, kind=consumer.kind,
                              target=consumer.describe(), updated_at=now)
            if not consumer.active:
                row.distribute_status = row.validate_status = RowStatus.SKIPPED
                row.detail = "active: false in the manifest"
            rows.append(row)
        return Job(job_id=new_job_id(), credential=cred.name, vendor=cred.vendor, flow_type=flow,
                   env=cred.env, status=INITIAL[flow], created_at=now, updated_at=now,
                   actor=self.actor, idempotency_key=idempotency_key, force_revoke=force_revoke,
                   consumers=rows, run_url=_run_url(),
                   events=[Event(at=now, actor=self.actor, action="create",
                                 to_state=str(INITIAL[flow]), detail=f"{flow} job created",
                                 data={"force_revoke": force_revoke} if force_revoke else {})])

    def _adopt(self, job: Job, preempted: Job) -> None:
        """The preempted job's live tokens become the emergency's to kill: it revokes them with
        the value it was declared about, and rev_done needs each refused."""
        now = self.now()
        for token in ledger.debt(preempted):
            entry = ledger.add(job, "preempted", Life.DEBT, now, auth_id=token.auth_id,
                               fingerprint=token.fingerprint, label=token.label)
            entry.from_job = preempted.job_id
            entry.evidence = (f"minted by job {preempted.job_id}, which this emergency "
                              "preempted; live when it was declared")
            entry.debt_since = now

    def _preempt(self, holder_id: str, name: str, by: str) -> None:
        holder = self.store.find(holder_id)
        if holder.flow_type == Flow.REVOCATION:
            raise ConflictError(f"job {holder_id} is already an emergency revocation of {name} "
                                f"({holder.status}); continue it: velvet status --job "
                                f"{holder_id}")
        if Action.ABORT not in allowed(holder.flow_type, holder.status,
                                       force_revoke=holder.force_revoke):
            raise ConflictError(
                f"job {holder_id} is in {holder.status}, which cannot be aborted: the old "
                f"value's revoke is under way. Finish it "
                f"({stage_command(holder_id, Action.RETRY_REVOKE)}, "
                "or mark_manually_revoked --ticket T); that revokes the value the emergency is "
                "about")
        job_logger("engine", holder_id).warning(
            "preempted by an emergency revocation of %s: aborting", name)
        self.run(holder_id, Action.ABORT, preempted_by=by)

    # --- running a stage -----------------------------------------------------------------

    def run(self, job_id: str, action: str, *, consumers: Sequence[str] = (),
            ticket: str | None = None, confirm: str | None = None,
            accept_debt: bool = False, preempted_by: str | None = None,
            accept_unregistered: bool = False, accept_still_used: bool = False) -> Job:
        try:
            act = Action(action)
        except ValueError:
            raise BadArgument(f"unknown action {action!r}; actions: "
                              f"{', '.join(a.value for a in Action)}") from None
        self.require_enabled()
        accepts = {Option.ACCEPT_DEBT: accept_debt,
                   Option.ACCEPT_UNREGISTERED: accept_unregistered,
                   Option.ACCEPT_STILL_USED: accept_still_used}
        given = [o for o, on in accepts.items() if on]
        refused = options_refused(act, given)
        if refused:
            raise BadArgument(f"{', '.join(f'--{o}' for o in refused)} does not apply to {act}")
        job = self.store.find(job_id)
        cred = self._credential(job.credential)
        self._require_env(job.env, f"job {job_id}")
        rolling_back = job.rollback is not None
        if rolling_back and act != Action.ROLLBACK:
            raise BadArgument(f"job {job_id} is in the middle of a rollback (consumers are split "
                              "between the old and new values); only finishing it is allowed: "
                              f"{stage_command(job_id, Action.ROLLBACK)}")
        step(job.flow_type, job.status, act, force_revoke=job.force_revoke,
             rolling_back=rolling_back)  # refuse early
        run = Run(self.services, job, cred)
        run.journal.acquire(act)
        if preempted_by:
            run.journal.note("preempted", f"emergency revocation {preempted_by} of this "
                             "credential takes over: aborting; it kills this job's tokens",
                             {"preempted_by": preempted_by})
        try:
            HANDLERS[(job.flow_type, act)](run, act, Args(
                list(consumers), ticket, confirm, accept_debt, preempted_by,
                accept_unregistered, accept_still_used))
        except LeakStillOpen as exc:
            exc.job = run.job
            raise
        except Interrupted:
            resume = stage_command(job_id, act, consumers=consumers, ticket=ticket,
                                   confirm=confirm, flags=given)
            run.journal.stopping = True
            run.journal.note("interrupted", "stopped by the operator (Ctrl-C) at a safe point; "
                             f"resume with: {resume}")
            raise Interrupted(f"stopped at a safe point: job {job_id} is {run.job.status}; "
                              f"resume with: {resume}") from None
        finally:
            run.journal.release()
        return run.job

    def push(self, job_id: str, consumers: Sequence[str]) -> Job:
        """After a `done` that is not clean: push the job's new value to `consumers` again."""
        self.require_enabled()
        if not consumers:
            raise BadArgument("velvet push needs --consumer ID (one or more)")
        job = self.store.find(job_id)
        cred = self._credential(job.credential)
        self._require_env(job.env, f"job {job_id}")
        run = Run(self.services, job, cred)
        run.journal.acquire(Action.PROCEED_REVOKE)
        try:
            return revoke.push(run, list(consumers))
        finally:
            run.journal.release()

    # --- revocation debt -----------------------------------------------------------------

    def settle_debt(self, *, token: str | None = None,
                    ticket: str | None = None) -> list[dict[str, Any]]:
        """Ask each vendor whether the tokens listed as revocation debt are dead.

        A token the vendor refuses (or whose id it no longer has, its value held by nobody) is
        proven dead on its job's ledger, with an event. One nothing can prove either way (its
        value is gone and the vendor cannot say whether its id exists: Postmark,
        operator-managed tokens) is settled only on the operator's evidence: `token` (its auth
        id or fingerprint, as `velvet stuck` lists it) with a `ticket`. A token the vendor
        still accepts is never settled.
        """
        self.require_enabled()
        if ticket is not None and not ticket.strip():
            raise BadArgument("--ticket needs the ticket id that records the evidence")
        if ticket is not None and token is None:
            raise BadArgument("--ticket settles one token: give --token with its auth id or "
                              "fingerprint, as velvet stuck lists it")
        report: list[dict[str, Any]] = []
        runner_env = timeline.require_env(self.settings.env)
        for cred in self.manifest.credentials:
            if not timeline.serves(runner_env, cred.env):
                continue
            jobs = [j for j in self.store.list_jobs(cred.name) if ledger.debt(j)]
            for job in jobs:
                report += self._settle_job(job, cred, token, ticket)
        if token is not None and not report:
            raise NotFoundError(f"no unsettled revocation debt has auth id or fingerprint "
                                f"{token}; velvet stuck lists the debt")
        return report

    def _settle_job(self, job: Job, cred: Credential, only: str | None,
                    ticket: str | None) -> list[dict[str, Any]]:
        run = Run(self.services, job, cred)
        using = run.read_current()
        rows: list[dict[str, Any]] = []
        for token in ledger.debt(job):
            if only is not None and only not in (token.auth_id, token.fingerprint):
                continue
            row = {"credential": cred.name, "job_id": job.job_id, "token_id": token.token_id,
                   "auth_id": token.auth_id, "fingerprint": token.fingerprint}
            try:
                proof = confirm(run, token, using=using)
            except VendorError as exc:
                rows.append({**row, "result": f"unknown: {exc}"})
                continue
            if proof.dead:
                self.services.journal(job).settle_debt(token.token_id, proof.evidence)
                rows.append({**row, "result": f"settled: {proof.evidence}"})
            elif proof.verdict == "unknown" and ticket is not None:
                evidence = (f"{proof.evidence}; settled on the operator's evidence (ticket "
                            f"{ticket.strip()})")
                self.services.journal(job).settle_debt(token.token_id, evidence,
                                                       ticket=ticket.strip())
                rows.append({**row, "result": f"settled: {evidence}"})
            else:
                rows.append({**row, "result": (
                    "still live: " if proof.verdict == "live" else
                    "unknown: settle it on your evidence with --token "
                    f"{token.auth_id or token.fingerprint} --ticket T once it is revoked: ")
                    + proof.evidence})
        return rows


def _run_url() -> str | None:
    server = os.environ.get("GITHUB_SERVER_URL")
    repo = os.environ.get("GITHUB_REPOSITORY")
    run = os.environ.get("GITHUB_RUN_ID")
    if server and repo and run:
        return f"{server}/{repo}/actions/runs/{run}"
    return None


def stage_failed(job: Job) -> bool:
    """Whether the CLI should exit 1: the stage ended in a failed or partial state, or in a
    `done` that is not clean (a consumer failed its check after the revoke)."""
    return (is_failed(job.status)
            or bool((job.report.get("after_revoke") or {}).get("failing")))

