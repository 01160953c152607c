"""Starting workflows: the next stage of a job, or one stage-1 run per due credential."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import BadArgument, ConflictError

from .api import GitHubApi, now_utc

if TYPE_CHECKING:
    from velvet_runner.records import Job
    from velvet_runner.store import Store

DISPATCH_EVENT = "dispatched"


def dispatch_workflow(api: GitHubApi, repository: str, workflow: str, ref: str,
                      inputs: dict[str, str]) -> dict[str, Any]:
    """POST .../dispatches with return_run_details; the run's id and URLs when GitHub says.

    GHES (and older GitHub) answer 400/422 to `return_run_details`: then dispatch again without
    it and return no run details (204).
    """
    if not re.fullmatch(r"[\w.-]+\.ya?ml", workflow):
        raise BadArgument(f"workflow must be a file name such as velvet-stage-2-mint.yml, "
                          f"not {workflow!r}")
    path = f"/repos/{repository}/actions/workflows/{workflow}/dispatches"
    body: dict[str, Any] = {"ref": ref, "inputs": inputs, "return_run_details": True}
    status, data = api.call("POST", path, body)
    if status in (400, 422):  # as github/gh-aw does: any 400/422, once, without the flag
        body.pop("return_run_details")
        status, data = api.call("POST", path, body)
    if status >= 400:
        message = (data or {}).get("message") if isinstance(data, dict) else None
        raise ConflictError(f"dispatching {workflow} on {ref} failed: HTTP {status}"
                            + (f": {message}" if message else ""))
    details = data if isinstance(data, dict) else {}
    return {"workflow": workflow, "ref": ref, "run_id": details.get("workflow_run_id"),
            "html_url": details.get("html_url"), "run_url": details.get("run_url")}


def record_dispatch(store: Store, job_id: str, result: dict[str, Any],
                    inputs: dict[str, str], *, actor: str,
                    now: Callable[[], datetime] = now_utc) -> Job:
    """Note on the job which run was started for it, so the chain of runs is traceable."""
    from velvet_runner.engine.journal import Journal

    journal = Journal(store.find(job_id), store, now=now, actor=actor)
    return journal.note(DISPATCH_EVENT, f"started {result['workflow']}" + (
        f" run {result['run_id']}" if result.get("run_id") else ""),
        {**result, "inputs": sorted(inputs)})


def dispatch_due(api: GitHubApi, repository: str, workflow: str, ref: str,
                 rows: Sequence[dict[str, Any]], *, env: str, stagger_seconds: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """One stage-1 run per due credential, in the order given (schedule.tick's).

    Started at once by default: GitHub runs them in parallel, and what paces them is the
    GitHub API's budget for the dispatches themselves and, in the runs, the vendors' rate
    budgets shared through the state branch. `stagger_seconds` still spaces them if asked.
    The idempotency key is the credential and its due time, so a late or repeated cron tick
    dispatches runs that find the job already created and create nothing.
    """
    results = []
    for i, row in enumerate(rows):
        credential = str(row["credential"])
        if i and stagger_seconds > 0:
            sleep(stagger_seconds)
        inputs = {"credential": credential, "flow": "operational", "env": env,
                  "idempotency_key": f"due-{credential}-{row.get('due_at', '')}",
                  "force_revoke": "false"}
        results.append({"credential": credential,
                        **dispatch_workflow(api, repository, workflow, ref, inputs)})
    return results



def parse_inputs(pairs: Sequence[str]) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w-]*", key):
            raise BadArgument(f"--input takes NAME=VALUE, not {pair!r}")
        inputs[key] = value
    return inputs



def read_due(due_file: str) -> list[dict[str, Any]]:
    """The rows `velvet due --json` printed into `due_file` (an empty file: nothing due)."""
    rows = json.loads(Path(due_file).read_text(encoding="utf-8") or "[]")
    if not isinstance(rows, list):
        raise BadArgument(f"{due_file} is not the list `velvet due --json` prints")
    return rows
