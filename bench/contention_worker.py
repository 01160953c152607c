"""One runner of the state-branch contention benchmark (bench.py starts 16 of them).

    contention_worker.py REMOTE CACHE_DIR CREDENTIAL JOB_ID COUNT START_AT DEADLINE

Waits until START_AT (a time.time() value) so every runner starts together, then makes COUNT
transitions on its own job, each a Store.update appending one event `bench-<i>`; stops early
at DEADLINE. Prints {"done", "retries", "elapsed", "errors", "failed", "landed"} as JSON, where
`landed` lists the transitions Store.update reported as written.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from velvet_runner.errors import VelvetError
from velvet_runner.records import Event, Job, utcnow
from velvet_runner.store import Store


def main() -> None:
    remote, cache, credential, job_id = sys.argv[1:5]
    count, start_at, deadline = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
    store = Store(remote, "velvet-state", Path(cache))
    store.head()  # clone the branch into this runner's cache before the clock starts
    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))
    started = time.perf_counter()
    done, errors, landed = 0, [], []
    for i in range(count):
        if time.time() > deadline:
            errors.append("deadline")
            break

        def append(job: Job, i: int = i) -> Job:
            job.events.append(Event(at=utcnow(), actor="bench", action=f"bench-{i}",
                                    from_state=str(job.status), to_state=str(job.status)))
            return job

        try:
            store.update(credential, job_id, append)
            done += 1
            landed.append(i)
        except VelvetError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    print(json.dumps({"done": done, "retries": store.retries, "elapsed": elapsed,
                      "errors": errors[:5], "failed": len(errors), "landed": landed}))


if __name__ == "__main__":
    main()
