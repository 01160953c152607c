"""Build a big state branch fast: every job file written by one `git fast-import`, one commit.

10,000 Store.create calls would take minutes (one fetch + commit + push each); the status app,
`velvet due` and `velvet stuck` only read the branch, so how the files got there does not
matter to them. `aborted_on_top` puts that many aborted attempts after the last rotation of
every `aborted_every`-th credential (a newest-first read has to look past them), `debt_every`
gives every n-th credential an old job owing revocation debt, and `index` writes the debt index
as this version keeps it (without it the branch is one an older Velvet wrote).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from velvet_runner.machine import Flow, State
from velvet_runner.records import ConsumerRow, Event, Job, Life, RowStatus, Token

BRANCH = "velvet-state"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
PATH_STEPS = [
    ("create", None, "init"), ("verify", "init", "verifying"), ("ok", "verifying", "verified"),
    ("proceed_mint", "verified", "minting"), ("ok", "minting", "minted"),
    ("ok", "minted", "distributing"), ("ok", "distributing", "distributed"),
    ("ok", "distributed", "validating"), ("ok", "validating", "validated"),
    ("proceed_revoke", "validated", "revoking"), ("ok", "revoking", "done"),
]


def job_id_at(ms: int, seq: int) -> str:
    """A UUIDv7 like records.new_job_id, with a chosen millisecond (ids sort by time)."""
    rand = (seq * 0x9E3779B97F4A7C15) & ((1 << 74) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def make_job(credential: str, job_id: str, at: datetime, consumers: int = 10,
             status: State = State.DONE, debt: bool = False) -> Job:
    rows = [ConsumerRow(consumer_id=f"{credential.lower().replace('_', '-')}-{i}",
                        kind="heroku_config_var",
                        target=f"heroku app app-{i} config var API_KEY",
                        distribute_status=RowStatus.SUCCEEDED,
                        validate_status=RowStatus.SUCCEEDED, holds="new", attempts=1,
                        detail="HTTP 200", updated_at=at) for i in range(consumers)]
    steps = PATH_STEPS if status == State.DONE else [*PATH_STEPS[:-2],
                                                     ("abort", "validated", str(status))]
    events = [Event(at=at + timedelta(seconds=k), actor="bench", action=action,
                    from_state=src, to_state=dst, detail=f"{action}: {dst}")
              for k, (action, src, dst) in enumerate(steps)]
    ledger = [Token(token_id="new", role="new", life=Life.DEBT, auth_id=str(uuid.UUID(int=3)),
                    fingerprint="sha256:222222222222", evidence="aborted: never proven dead",
                    debt_since=at)] if debt else []
    return Job(job_id=job_id, credential=credential, vendor="heroku",
               flow_type=Flow.OPERATIONAL, env="prod", status=status, created_at=at,
               ledger=ledger,
               updated_at=at + timedelta(seconds=len(PATH_STEPS)), actor="bench",
               consumers=rows, events=events, old_auth_id=str(uuid.UUID(int=1)),
               new_auth_id=str(uuid.UUID(int=2)), old_fingerprint="sha256:000000000000",
               new_fingerprint="sha256:111111111111", ticket="ROT-1")


def build_branch(remote: Path, credentials: list[str], jobs_per_credential: int, *,
                 aborted_on_top: int = 0, aborted_every: int = 1, debt_every: int = 0,
                 index: bool = False) -> int:
    """Create (or replace) the state branch of the bare repository `remote`; returns job count."""
    if not (remote / "HEAD").exists():
        subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    now_ms = int(time.time() * 1000)
    chunks: list[bytes] = []
    total = 0

    def put(path: str, data: bytes) -> None:
        chunks.append(b"M 100644 inline " + path.encode() + b"\n")
        chunks.append(b"data " + str(len(data)).encode() + b"\n" + data + b"\n")

    for ci, credential in enumerate(credentials):
        templates: dict[tuple[State, bool], tuple[str, str]] = {}
        for j in range(jobs_per_credential):
            ms = now_ms - (jobs_per_credential - j) * 60_000 - ci
            job_id = job_id_at(ms, ci * 1_000_003 + j)
            status = (State.ABORTED if ci % aborted_every == 0
                      and j >= jobs_per_credential - aborted_on_top else State.DONE)
            debt = bool(debt_every) and ci % debt_every == 0 and j == 0
            key = (status, debt)
            if key not in templates:
                at = datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=0)
                templates[key] = (job_id, make_job(credential, job_id, at, status=status,
                                                   debt=debt).to_json())
            template_id, template = templates[key]
            data = template.replace(template_id, job_id)
            put(f"jobs/{credential}/{job_id}.json", data.encode())
            if debt and index:
                put(f"debt/{credential}/{job_id}.json", (json.dumps(
                    {"credential": credential, "job_id": job_id}, indent=2, sort_keys=True)
                    + "\n").encode())
            total += 1
    if index:
        put("debt/index.json", b'{"format": 1}\n')
    message = f"bench: {total} jobs".encode()
    header = (f"commit refs/heads/{BRANCH}\n"
              f"committer bench <bench@localhost> {int(time.time())} +0000\n"
              f"data {len(message)}\n").encode() + message + b"\n"
    stream = header + b"deleteall\n" + b"".join(chunks) + b"\n"
    subprocess.run(["git", "--git-dir", str(remote), "fast-import", "--quiet", "--force"],
                   input=stream, check=True, env={**os.environ, **GIT_ENV})
    return total

