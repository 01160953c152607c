"""One fan-out measurement, run as a child process that reports its own peak RSS.

Reads a JSON job description on stdin, prints one JSON result line on stdout:

  proceed_mint     wall time of Engine.run(job, "proceed_mint") (mint, distribute to every
                   consumer, validate every consumer), with the time of each transition
  floor            mint alone + vault write alone (median of 3 each) + the median single
                   consumer (write + check) seen in the sequential loop (the slowest is kept
                   beside it: one slow sample is not the latency every write pays)
  peak_rss_kib     this process's own peak RSS (VmHWM in /proc/self/status): wait4()'s
                   figure for a forked child starts from its parent's high-water mark
  sequential       the same write + check per consumer, one after another (all consumers
                   up to `seq_sample`; above that an evenly spaced sample, extrapolated)
  cpu              CPU seconds spent during proceed_mint by this runner (all threads, plus its
                   git children) and by the sandbox process (the fakes): on 2 cores, the fakes'
                   CPU time is a lower bound on the wall time no runner can beat
  sequential.cpu_per_consumer
                   CPU seconds per consumer (write + check) of the runner and of the fakes, one
                   consumer after another over up to 300 of them, latency lifted and idle burn
                   taken off: no contention, so N times it is the least CPU a rotation of N
                   consumers needs from each process on this machine
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    spec = json.loads(sys.stdin.read())
    result = run(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from velvet_runner import flags as flags_mod
    from velvet_runner import manifest as manifest_mod
    from velvet_runner import manifest_yaml
    from velvet_runner.engine import Engine
    from velvet_runner.machine import Action, Flow
    from velvet_runner.records import Event, Job
    from velvet_runner.settings import Settings
    from velvet_runner.store import Store
    from velvet_runner.vault import Vault
    from velvet_runner.wiring import Wiring

    logging.getLogger("velvet").setLevel(logging.WARNING)
    work = Path(spec["workdir"])
    env = {**spec["env"], "VELVET_STATE": str(work / "state.git"),
           "VELVET_CACHE_DIR": str(work / "cache"), "VELVET_ACTOR": "bench",
           "VELVET_SETTLE_SECONDS": "20"}
    settings = Settings.from_env(env)
    from velvet_runner.errors import ManifestError

    refused = None
    t0 = time.perf_counter()
    try:
        manifest = manifest_mod.load(settings.manifest)
    except ManifestError as exc:
        # The loader's node cap (MAX_NODES) refuses big manifests that use no aliases at all;
        # say so, then lift the cap in this process only so the fan-out itself can be measured.
        refused = exc.reasons[0].split(": ", 1)[-1]
        manifest_yaml.MAX_NODES = 10**9  # type: ignore[misc]
        t0 = time.perf_counter()
        manifest = manifest_mod.load(settings.manifest)
    manifest_load = time.perf_counter() - t0
    cred = manifest.credential(spec["credential"])
    assert cred is not None
    store = Store(settings.state, settings.state_branch, settings.cache_dir)
    wiring = Wiring(settings, **({"bounds": spec["bounds"]} if spec.get("bounds") else {}))
    marks: list[tuple[float, str]] = []

    def on_transition(job: Job, event: Event) -> None:
        marks.append((time.perf_counter(), f"{event.from_state}->{event.to_state}"))

    engine = Engine(settings, manifest, store, wiring,
                    flags=flags_mod.load_flags(settings.manifest), on_transition=on_transition)
    job, _ = engine.create(cred.name, Flow.OPERATIONAL)
    job = engine.run(job.job_id, Action.VERIFY)
    assert job.status == "verified", job.status
    commits_before = _commits(work / "state.git", settings.state_branch)
    retries_before = store.retries
    marks.clear()
    sandbox_pid = int(spec["sandbox_pid"])
    cpu0, sbx0 = _own_cpu(), _proc_cpu(sandbox_pid)
    start = time.perf_counter()
    job = engine.run(job.job_id, Action.PROCEED_MINT)
    wall = time.perf_counter() - start
    cpu = {"runner": _own_cpu() - cpu0, "sandbox": _proc_cpu(sandbox_pid) - sbx0}
    commits = _commits(work / "state.git", settings.state_branch) - commits_before
    rows = job.consumers
    distributed = sum(1 for r in rows if r.distribute_status == "succeeded")
    validated = sum(1 for r in rows if r.validate_status == "succeeded")
    manual = sum(1 for r in rows if r.validate_status == "manual_required")
    transitions = [{"at": round(t - start, 4), "move": m} for t, m in marks]

    # --- the floor and the sequential loop, with the value proceed_mint put in the vault ------
    vault = wiring.vault(cred)
    pending = vault.pending()
    assert pending is not None
    assert pending.job_id == job.job_id
    new_value = pending.value
    vendor = wiring.vendor(cred)
    current = vault.current()
    assert current is not None
    mint_times = []
    for i in range(3):
        t = time.perf_counter()
        vendor.mint(current, f"bench-floor-{job.job_id}-{i}")
        mint_times.append(time.perf_counter() - t)
    scratch = Vault(cred.vault.model_copy(update={"name": cred.vault.name + "_FLOOR"}),
                    wiring.target)
    vault_times = []
    for _ in range(3):
        t = time.perf_counter()
        scratch.set_pending(new_value, job_id=job.job_id, auth_id=job.new_auth_id)
        vault_times.append(time.perf_counter() - t)

    consumers = [c for c in cred.consumers]
    n = len(consumers)
    sample_size = min(n, int(spec.get("seq_sample", 100)))
    step = n / sample_size
    sample = [consumers[int(i * step)] for i in range(sample_size)]
    checker = wiring.checker()
    per_consumer = []
    for consumer in sample:
        target = wiring.target(consumer)
        t = time.perf_counter()
        target.write(new_value)
        checked = checker.check(consumer, target, new_value, "live")
        per_consumer.append(time.perf_counter() - t)
        assert checked.status in ("succeeded", "manual_required"), checked
    cpu_sample = [consumers[int(i * n / min(n, 300))] for i in range(min(n, 300))]
    seq_cpu = _cpu_per_consumer(spec, cpu_sample, wiring, checker, new_value)
    seq_measured = sum(per_consumer)
    seq_total = seq_measured * n / sample_size

    wiring.close()

    mint_s = statistics.median(mint_times)
    vault_s = statistics.median(vault_times)
    slowest = max(per_consumer)
    floor = mint_s + vault_s + statistics.median(per_consumer)
    return {
        "n": n, "bound": wiring.bounds["heroku_config_var"], "status": str(job.status),
        "wall": wall, "commits": commits,
        "retries": store.retries - retries_before, "distributed": distributed,
        "validated": validated, "manual_required": manual, "transitions": transitions,
        "manifest_load": manifest_load, "manifest_refused": refused,
        "floor": {"mint": mint_s, "vault_write": vault_s, "slowest_consumer": slowest,
                  "median_consumer": statistics.median(per_consumer), "total": floor},
        "sequential": {"sampled": sample_size, "measured": seq_measured, "total": seq_total,
                       "extrapolated": sample_size < n, "cpu_per_consumer": seq_cpu},
        "cpu": cpu, "peak_rss_kib": _peak_rss_kib(),
    }


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _cpu_per_consumer(spec: dict[str, Any], sample: list[Any], wiring: Any, checker: Any,
                      value: Any) -> dict[str, float]:
    """CPU seconds one consumer's write + check costs the runner and the fakes, uncontended.

    Measured with the injected latency lifted (so the loop is short) and with what both
    processes burn while idle over the same wall time taken off: what remains is the work.
    """
    import httpx

    pid = int(spec["sandbox_pid"])
    control = spec["heroku_control"]
    with httpx.Client(timeout=30) as http:  # the driver arms the faults again for each N
        http.delete(f"{control}/faults").raise_for_status()
    idle_wall = 1.0
    cpu0, sbx0 = _own_cpu(), _proc_cpu(pid)
    time.sleep(idle_wall)
    idle = ((_own_cpu() - cpu0) / idle_wall, (_proc_cpu(pid) - sbx0) / idle_wall)
    start, cpu0, sbx0 = time.perf_counter(), _own_cpu(), _proc_cpu(pid)
    for consumer in sample:
        target = wiring.target(consumer)
        target.write(value)
        checker.check(consumer, target, value, "live")
    wall = time.perf_counter() - start
    runner = _own_cpu() - cpu0 - idle[0] * wall
    sandbox = _proc_cpu(pid) - sbx0 - idle[1] * wall
    return {"runner": max(0.0, runner) / len(sample), "sandbox": max(0.0, sandbox) / len(sample)}


def _own_cpu() -> float:
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _proc_cpu(pid: int) -> float:
    """utime + stime of another process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _commits(repo: Path, branch: str) -> int:
    proc = subprocess.run(["git", "--git-dir", str(repo), "rev-list", "--count", branch],
                          capture_output=True, text=True, check=False)
    return int(proc.stdout.strip() or 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
