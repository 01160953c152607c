"""Build a big state branch fast: every job file written by one `git fast-import`, one commit.

10,000 Store.create calls would take minutes (one fetch + commit + push each); the status app
only reads the branch, so how the files got there does not matter to it.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from velvet_runner.machine import Flow, State
from velvet_runner.records import ConsumerRow, Event, Job, RowStatus

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


def make_job(credential: str, job_id: str, at: datetime, consumers: int = 10) -> Job:
    rows = [ConsumerRow(consumer_id=f"{credential.lower().replace('_', '-')}-{i}",
                        kind="heroku_config_var",
                        target=f"heroku app app-{i} config var API_KEY",
                        distribute_status=RowStatus.SUCCEEDED,
                        validate_status=RowStatus.SUCCEEDED, holds="new", attempts=1,
                        detail="HTTP 200", updated_at=at) for i in range(consumers)]
    events = [Event(at=at + timedelta(seconds=k), actor="bench", action=action,
                    from_state=src, to_state=dst, detail=f"{action}: {dst}")
              for k, (action, src, dst) in enumerate(PATH_STEPS)]
    return Job(job_id=job_id, credential=credential, vendor="heroku",
               flow_type=Flow.OPERATIONAL, env="prod", status=State.DONE, created_at=at,
               updated_at=at + timedelta(seconds=len(PATH_STEPS)), actor="bench",
               consumers=rows, events=events, old_auth_id=str(uuid.UUID(int=1)),
               new_auth_id=str(uuid.UUID(int=2)), old_fingerprint="sha256:000000000000",
               new_fingerprint="sha256:111111111111", ticket="ROT-1")


def build_branch(remote: Path, credentials: list[str], jobs_per_credential: int) -> int:
    """Create (or replace) the state branch of the bare repository `remote`; returns job count."""
    if not (remote / "HEAD").exists():
        subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    now_ms = int(time.time() * 1000)
    chunks: list[bytes] = []
    total = 0
    for ci, credential in enumerate(credentials):
        template: str | None = None
        for j in range(jobs_per_credential):
            ms = now_ms - (jobs_per_credential - j) * 60_000 - ci
            job_id = job_id_at(ms, ci * 1_000_003 + j)
            if template is None:
                at = datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=0)
                template_id = job_id
                template = make_job(credential, job_id, at).to_json()
            data = template.replace(template_id, job_id).encode()
            path = f"jobs/{credential}/{job_id}.json"
            chunks.append(b"M 100644 inline " + path.encode() + b"\n")
            chunks.append(b"data " + str(len(data)).encode() + b"\n" + data + b"\n")
            total += 1
    message = f"bench: {total} jobs".encode()
    header = (f"commit refs/heads/{BRANCH}\n"
              f"committer bench <bench@localhost> {int(time.time())} +0000\n"
              f"data {len(message)}\n").encode() + message + b"\n"
    stream = header + b"deleteall\n" + b"".join(chunks) + b"\n"
    subprocess.run(["git", "--git-dir", str(remote), "fast-import", "--quiet", "--force"],
                   input=stream, check=True, env={**os.environ, **GIT_ENV})
    return total
