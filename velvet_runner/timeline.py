"""One answer to each question about when: every module that asks calls this one, none keeps a copy.

    entered(job, state)       when the job last moved into `state` (a later note does not count)
    since(job)                when the job entered its current status
    rotated(job)              whether the job is a finished rotation (a dry run is not one)
    last_done(jobs)           when the newest operational rotation finished
    last_rotation(jobs)       the newest job that is a rotation, not a dry run
    live_consumers(cred)      the consumers a rotation writes: active, in the credential's env
    unscheduled(cred)         why the schedule never starts a rotation of `cred`, or None
    next_due(cred, done)      when the schedule says `cred` rotates next
    serves(runner_env, env)   whether a runner with VELVET_ENV=runner_env acts on (or reports) env

`serves` has one meaning, the design's: a runner serves the environment VELVET_ENV names and no
other, so with VELVET_ENV unset it serves nothing, and whatever needs an environment (a stage,
`velvet due`, `velvet stuck`, an approval) is refused by `require_env` with the reason.
Pure: no I/O. Callers read the jobs (every job, never a recent window) and pass them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from velvet_runner.errors import BadArgument
from velvet_runner.machine import Flow, State

if TYPE_CHECKING:  # annotations only: this module stays light (github.gate uses it)
    from velvet_runner.manifest import Consumer, Credential
    from velvet_runner.records import Job


def entered(job: Job, state: str) -> datetime | None:
    """When the job last moved into `state`: its transition event, not a later note in it."""
    for event in reversed(job.events):
        if event.to_state == state and event.from_state != state:
            return event.at
    return None


def since(job: Job) -> datetime:
    """When the job entered its current status; a record with no such event, from its last write."""
    return entered(job, job.status) or job.updated_at


# What `rotated` asks of a record, as its top-level fields (Store.newest's `hint`).
ROTATED_FIELDS = {"flow_type": "operational", "status": "done"}


def rotated(job: Job) -> bool:
    """Whether `job` is a finished operational rotation. Only the operational flow rotates on a
    schedule: a dry run (testing flow) that ends `done` does not restart it."""
    return job.flow_type == Flow.OPERATIONAL and job.status == State.DONE


def last_done(jobs: Iterable[Job]) -> datetime | None:
    """When the newest finished operational rotation among `jobs` reached `done`.

    A credential's rotations never overlap (each holds its lock until it ends), so the newest
    such job by id is also the last to finish: `Store.newest(..., rotated)` finds it without
    reading older ones.
    """
    return max((since(j) for j in jobs if rotated(j)), default=None)


def last_rotation(jobs: Iterable[Job]) -> Job | None:
    """The newest job (jobs come newest first) that is a rotation: a dry run is not one."""
    return next((j for j in jobs if j.flow_type != Flow.TESTING), None)


def live_consumers(cred: Credential) -> list[Consumer]:
    """The consumers a rotation of `cred` writes: active, and in the credential's env."""
    return [c for c in cred.consumers if c.active and c.env == cred.env]


def unscheduled(cred: Credential) -> str | None:
    """Why the schedule never starts a rotation of `cred`; None when it does."""
    if not cred.active:
        return "inactive — rotate manually"
    if cred.schedule_hours is None:
        return "no schedule"
    if not live_consumers(cred):
        return f"no active {cred.env} consumers"
    return None


def next_due(cred: Credential, done: datetime | None) -> datetime | None:
    """When the schedule says `cred` rotates next: `done` (see last_done) plus its interval.

    None when `done` is None (never rotated by Velvet: due now) or nothing is scheduled; ask
    `unscheduled` first to tell the two apart.
    """
    if done is None or cred.schedule_hours is None:
        return None
    return done + timedelta(hours=cred.schedule_hours)


def serves(runner_env: str | None, env: str) -> bool:
    """Whether a runner with VELVET_ENV=`runner_env` acts on `env`: only its own; unset, none."""
    return runner_env is not None and runner_env == env


def require_env(runner_env: str | None) -> str:
    """The environment this runner serves; refused when VELVET_ENV is not set."""
    if runner_env is None:
        raise BadArgument("VELVET_ENV is not set; set it to the environment this runner "
                          "serves (one of the manifest's environments, e.g. prod)")
    return runner_env


def require_serves(runner_env: str | None, env: str, what: str) -> None:
    """Refuse `what` (a credential, a job) of `env` unless this runner serves `env`."""
    if not serves(require_env(runner_env), env):
        raise BadArgument(f"{what} is env {env} but this runner is VELVET_ENV={runner_env}; "
                          f"run it against the {env} Velvet")
