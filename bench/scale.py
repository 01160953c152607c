"""Scale benchmarks (issue 21): history growth, budgets shared by runs, a cron tick of 50.

    growth          `velvet due --json` and `velvet stuck --json` over branches of 5,000
                    credentials x 10 jobs, 100 x 50 and 100 x 500 (5,000 and 50,000 jobs)
    shared budget   4 `proceed_mint` processes at once, 250 GitHub Actions secrets each, one
                    GitHub account at its real limits on a time scale
    tick            `velvet rehearse schedule` with 50 due credentials: how many it starts

Run from bench.py (`bench/run --only growth,shared,tick`); `python bench/scale.py --child` is
one shared-budget runner, reading its job on stdin and printing one JSON line.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# --- growth ------------------------------------------------------------------------------------

GROWTH = [(5000, 10), (100, 50), (100, 500)]  # credentials x jobs each


def bench_growth(rep: Any, tmp: Path, results: dict[str, Any], runs: int = 3,
                 quick: bool = False) -> None:
    from bench_support import write_manifest
    from statebuild import build_branch

    from bench import PY, VELVET, _clean_env, _s

    configs = [(f"{c:,} credentials x {j} jobs", c, j)
               for c, j in ([(c // 10, j) for c, j in GROWTH] if quick else GROWTH)]
    rep.out("## Growth: `velvet due` and `velvet stuck` as history and credentials grow")
    rep.out("")
    rep.out("Each branch is built the way statebuild.py builds it (jobs of 10 consumer rows and "
            "11 events; every 10th credential has 2 aborted attempts after its last rotation, "
            "every 50th an old job owing revocation debt; the debt index as this version keeps "
            "it); manifests of 10 consumers per credential. Median of "
            f"{runs} CLI runs after one that clones the cache (so one fetch per run). Before "
            "this work (issue 21's table): 30.1 s / 53.7 s at 50,000 jobs, 52.6 s / 84.4 s at "
            "5,000 credentials.")
    rep.out("")
    rows, figures = [], {}
    for label, creds, jobs in configs:
        work = tmp / f"growth-{creds}x{jobs}"
        work.mkdir()
        manifest = work / "manifest" / "subscription-manifest.yml"
        names = write_manifest(manifest, creds, 10)
        total = build_branch(work / "state.git", names, jobs, aborted_on_top=2,
                             aborted_every=10, debt_every=50, index=True)
        env = {**_clean_env(), "VELVET_MANIFEST": str(manifest),
               "VELVET_STATE": str(work / "state.git"), "VELVET_CACHE_DIR": str(work / "cache"),
               "VELVET_ENV": "prod"}
        walls: dict[str, float] = {}
        for command in ("due", "stuck"):
            subprocess.run([VELVET, command, "--json"], env=env, capture_output=True, cwd=ROOT,
                           timeout=900)  # clones the cache
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                proc = subprocess.run([VELVET, command, "--json"], env=env, capture_output=True,
                                      cwd=ROOT, timeout=900)
                times.append(time.perf_counter() - t)
                if proc.returncode not in (0, 1):
                    raise RuntimeError(f"velvet {command}: {proc.stderr.decode()[-1500:]}")
            walls[command] = statistics.median(times)
        t = time.perf_counter()
        subprocess.run([PY, "-c", "import sys; from velvet_runner import manifest; "
                        "manifest.load(sys.argv[1])", str(manifest)], env=env, check=True,
                       cwd=ROOT, capture_output=True)
        walls["manifest"] = time.perf_counter() - t
        figures[label] = {"credentials": creds, "jobs": total, **walls}
        rows.append([label, f"{total:,}", _s(walls["due"]), _s(walls["stuck"]),
                     _s(walls["manifest"])])
    rep.table(["branch", "jobs", "velvet due --json", "velvet stuck --json",
               "of which: loading the manifest (a process of its own)"], rows)
    small, big = figures[configs[1][0]], figures[configs[2][0]]
    growth = {c: big[c] / small[c] for c in ("due", "stuck")}
    results["growth"] = {"figures": figures, "history_ratio": growth}
    rep.out("")
    rep.out(f"{big['jobs']:,} jobs against {small['jobs']:,} ({small['credentials']} "
            f"credentials): due {growth['due']:.2f}x, stuck {growth['stuck']:.2f}x (goal <= "
            "1.3x); goal <= 5 s each.")
    if not quick:
        _first_write(rep, tmp, results)
    rep.out("")


def _first_write(rep: Any, tmp: Path, results: dict[str, Any]) -> None:
    """The one O(history) cost left: the first write on a branch an older Velvet wrote."""
    from statebuild import build_branch

    from velvet_runner.records import Event, utcnow
    from velvet_runner.store import Store

    work = tmp / "growth-older"
    work.mkdir()
    names = [f"BENCH_CRED_{c:04d}" for c in range(100)]
    build_branch(work / "state.git", names, 500, debt_every=50, index=False)
    store = Store(str(work / "state.git"), "velvet-state", work / "cache")
    credential = names[1]
    job_id = store.job_ids(credential)[0]

    def note(job: Any) -> Any:
        job.events.append(Event(at=utcnow(), actor="bench", action="bench-note"))
        return job

    t = time.perf_counter()
    store.update(credential, job_id, note)
    first = time.perf_counter() - t
    t = time.perf_counter()
    store.update(credential, job_id, note)
    second = time.perf_counter() - t
    results["growth"]["first_write"] = {"first": first, "second": second}
    rep.out(f"The first write of this version on a 50,000-job branch an older Velvet wrote "
            f"(no debt index) indexes every job once, in its commit: {first:.2f} s; the next "
            f"write {second * 1000:.0f} ms.")


# --- shared budget -----------------------------------------------------------------------------

RUNS = 4
SECRETS = 250
REPOS = 5
LATENCY_MS = 100


def shared_world(sbx: Any, workdir: Path, runs: int, secrets: int) -> dict[str, Any]:
    """`runs` Heroku credentials, each held by `secrets` GitHub Actions secrets (one account)."""
    from sandbox_proc import write_manifest

    from velvet_sandbox.world import INFISICAL_ENV, INFISICAL_PROJECT, VAULT_PATH

    tag = uuid.uuid4().hex[:6]
    repos = [f"raxx/shared-{tag}-{r}" for r in range(REPOS)]
    for repo in repos:
        sbx.fakes["github"].add_target_repo(repo)
    out = []
    for k in range(runs):
        name = f"BENCH_SHARED_{tag.upper()}_{k}"
        auth_id, token = sbx.heroku.add_authorization(f"shared-{tag}-{k}@raxx.app", ["global"],
                                                      name)
        sbx.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH, name, token)
        sbx.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                 f"{name}__AUTH_ID", auth_id)
        consumers = [{"consumer_id": f"gh-{tag}-{k}-{i:04d}", "kind": "github_actions_secret",
                      "env": "prod", "repository": repos[i % REPOS],
                      "secret": f"KEY_{k}_{i:04d}", "healthcheck": {"type": "none"}}
                     for i in range(secrets)]
        folder = workdir / f"run-{k}"
        folder.mkdir(parents=True)
        write_manifest(folder, name, f"shared budget run {k}", consumers)
        out.append({"credential": name, "workdir": str(folder), "env": sbx.env(folder)})
    return {"runs": out, "github_control": sbx.control_url("github")}


def shared_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One stage-2 run: verify, wait for the shared start time, proceed_mint."""
    import logging

    from velvet_runner import flags as flags_mod
    from velvet_runner import manifest as manifest_mod
    from velvet_runner.budget import Budgets
    from velvet_runner.engine import Engine
    from velvet_runner.machine import Action, Flow
    from velvet_runner.settings import Settings
    from velvet_runner.store import Store
    from velvet_runner.wiring import Wiring

    logging.getLogger("velvet").setLevel(logging.WARNING)
    settings = Settings.from_env({**spec["env"], "VELVET_STATE": spec["state"],
                                  "VELVET_CACHE_DIR": spec["cache"], "VELVET_ACTOR": "bench"})
    manifest = manifest_mod.load(settings.manifest)
    budgets = Budgets(time_scale=float(spec["scale"]))
    wiring = Wiring(settings, budgets=budgets)
    store = Store(settings.state, settings.state_branch, settings.cache_dir)
    engine = Engine(settings, manifest, store, wiring,
                    flags=flags_mod.load_flags(settings.manifest))
    job, _ = engine.create(spec["credential"], Flow.OPERATIONAL)
    job = engine.run(job.job_id, Action.VERIFY)
    assert job.status == "verified", job.status
    while time.time() < spec["start_at"]:
        time.sleep(0.01)
    start = time.perf_counter()
    job = engine.run(job.job_id, Action.PROCEED_MINT)
    wall = time.perf_counter() - start
    written = sum(1 for r in job.consumers if r.distribute_status == "succeeded")
    totals = budgets.totals()
    wiring.close()
    return {"wall": wall, "started": start, "ended": time.perf_counter(),
            "status": str(job.status), "written": written, "waited": totals.waited,
            "reasons": totals.reasons, "peak_rss_kib": peak_rss_kib()}


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM in /proc/self/status): a forked child's wait4()
    figure starts from its parent's high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def shared_floor(runs: int, secrets: int, scale: float, write: float) -> float:
    """What GitHub's windows allow `runs x secrets` writes through one account, plus one
    write's latency: the whole account's budget, however it is split."""
    total = runs * secrets
    windows = [(math.ceil(total / 80) - 1) * 60.0, (math.ceil(total / 500) - 1) * 3600.0,
               (math.ceil((total * 5 + REPOS) / 900) - 1) * 60.0]
    return max(windows) / scale + write


def bench_shared(rep: Any, tmp: Path, results: dict[str, Any], *, scale: float,
                 quick: bool = False) -> None:
    import httpx

    from bench import PY, SandboxProc

    runs, secrets = (RUNS, 50) if quick else (RUNS, SECRETS)
    rep.out(f"## Shared budget: {runs} proceed_mint processes at once, {secrets} GitHub Actions "
            "secrets each, one GitHub account")
    rep.out("")
    rep.out(f"{runs} Heroku credentials, each held by {secrets} GitHub Actions secrets in the "
            "same five repositories, written through one GitHub account (the world's bootstrap "
            "token). The GitHub fake enforces the real limits (80 content-generating requests "
            f"a minute, 500 an hour, 900 points a minute, 100 concurrent) at time scale "
            f"{scale:g}, as do the runners' budgets; every secret PUT is delayed "
            f"{LATENCY_MS} ms. The runs verify, then start proceed_mint together on a shared "
            "clock; each leases a share of the account on the state branch (shares.py). "
            "floor = the windows the account needs for all the writes together plus one "
            "write's latency (the median of 5 single writes).")
    rep.out("")
    sbx = SandboxProc()
    try:
        work = Path(tempfile.mkdtemp(prefix="shared-", dir=tmp))
        world = sbx.call(cmd="shared_world", workdir=str(work), runs=runs, secrets=secrets)
        control = world["github_control"]
        with httpx.Client(timeout=30) as http:
            http.delete(f"{control}/faults").raise_for_status()
            http.post(f"{control}/faults", json={
                "method": "PUT", "path": "/repos/*/actions/secrets/*", "latency_ms": LATENCY_MS,
                "times": None, "status": None}).raise_for_status()
            write = _median_write(world["runs"][0], control, scale)
            http.post(f"{control}/limits", json={"time_scale": scale, "reset": True}
                      ).raise_for_status()
        state = work / "state.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(state)], check=True)
        start_at = time.time() + 25.0  # every child imports and verifies before this
        procs = []
        for k, run in enumerate(world["runs"]):
            spec = {**run, "state": str(state), "cache": str(work / f"cache-{k}"),
                    "scale": scale, "start_at": start_at}
            spec_file = work / f"spec-{k}.json"
            spec_file.write_text(json.dumps(spec), encoding="utf-8")
            with open(spec_file, "rb") as fin, open(work / f"out-{k}.txt", "wb") as fout, \
                    open(work / f"err-{k}.txt", "wb") as ferr:
                procs.append(subprocess.Popen([PY, str(HERE / "scale.py"), "--child"], cwd=ROOT,
                                              stdin=fin, stdout=fout, stderr=ferr))
        outs = []
        for k, proc in enumerate(procs):
            if proc.wait(timeout=3600) != 0:
                err = (work / f"err-{k}.txt").read_text(errors="replace")
                raise RuntimeError(f"shared-budget runner failed: {err[-2000:]}")
            out = (work / f"out-{k}.txt").read_text()
            outs.append(json.loads(out.strip().splitlines()[-1]))
        limits = httpx.get(f"{control}/limits", timeout=30).json()
    finally:
        sbx.close()
    wall = max(o["ended"] for o in outs) - min(o["started"] for o in outs)
    floor = shared_floor(runs, secrets, scale, write)
    written = sum(o["written"] for o in outs)
    res = {"runs": runs, "secrets": secrets, "wall": wall, "floor": floor,
           "ratio": wall / floor, "rejected": limits["rejected"],
           "breaches": limits["breaches"], "peak_in_flight": limits["peak_in_flight"],
           "per_run": [round(o["wall"], 2) for o in outs], "written": written,
           "single_write": write}
    results["shared"] = res
    rep.table(["runs x secrets", "wall (first start to last end)", "floor", "ratio",
               "rejected", "GitHub peak in flight", "written", "each run"],
              [[f"{runs} x {secrets}", f"{wall:.2f} s", f"{floor:.2f} s",
                f"{wall / floor:.2f}", str(limits["rejected"]), str(limits["peak_in_flight"]),
                f"{written}/{runs * secrets}",
                " / ".join(f"{o['wall']:.1f} s" for o in outs)]])
    rep.out("")
    rep.out(f"Goal: 0 rejected, wall <= 1.15x the floor. Breaches: "
            f"{limits['breaches'] or 'none'}.")
    rep.out("")


def _median_write(run: dict[str, Any], control: str, scale: float) -> float:
    """One secret write's latency, alone (the median of 5), limits lifted meanwhile."""
    import httpx

    from velvet_runner import manifest as manifest_mod
    from velvet_runner.budget import Budgets
    from velvet_runner.client import RetryPolicy
    from velvet_runner.settings import Settings
    from velvet_runner.wiring import Wiring

    settings = Settings.from_env({**run["env"]})
    cred = manifest_mod.load(settings.manifest).credential(run["credential"])
    assert cred is not None
    wiring = Wiring(settings, budgets=Budgets(time_scale=scale))
    target = wiring.target(cred.consumers[0])
    value = wiring.vault(cred).current()
    assert value is not None
    times = []
    for _ in range(5):
        t = time.perf_counter()
        RetryPolicy().run(lambda: target.write(value))
        times.append(time.perf_counter() - t)
    wiring.close()
    httpx.post(f"{control}/limits", json={"reset": True}, timeout=30).raise_for_status()
    return statistics.median(times)


# --- a cron tick of 50 -------------------------------------------------------------------------


def bench_tick(rep: Any, tmp: Path, results: dict[str, Any], due: int = 50) -> None:
    import yaml

    from velvet_sandbox.rehearse.runner import Rehearsal

    rep.out(f"## Cron tick: `velvet rehearse schedule` with {due} due credentials")
    rep.out("")
    rep.out(f"The rehearsal (act running this repository's workflows against the sandbox) with "
            f"{due} copies of HK_PLATFORM_FULL in the manifest, never rotated, and every other "
            "credential off the schedule; `scheduler.max_starts` left at its default (50). "
            "act executes the runs one after another on this machine; on GitHub they run in "
            "parallel.")
    rep.out("")
    with Rehearsal(ROOT, tmp / "tick") as rh:
        manifest = rh.world.manifest_path
        doc = yaml.safe_load(manifest.read_text())
        for cred in doc["credentials"]:
            cred.pop("schedule", None)
        manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
        names = [f"HK_TICK_{k:02d}" for k in range(due)]
        rh.sandbox.add_twins(rh.world, "HK_PLATFORM_FULL", names)  # own places and tokens
        doc = yaml.safe_load(manifest.read_text())
        for cred in doc["credentials"]:
            if cred["name"] in names:
                cred["schedule"] = "90d"
        manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
        t = time.perf_counter()
        tick = rh.schedule()
        ran = rh.drain()
        wall = time.perf_counter() - t
    scheduled = next(r for r in ran if r.run_id == tick
                     and ": started velvet-stage-1-verify.yml" in r.log)  # the due job
    stage1 = [r for r in ran if r.workflow == "velvet-stage-1-verify.yml"]
    verified = sum(1 for r in stage1 if r.outputs.get("status") == "verified")
    results["tick"] = {"due": due, "started": len(stage1), "verified": verified,
                       "wall": wall, "tick_conclusion": scheduled.conclusion}
    rep.table(["due", "stage-1 runs started", "verified", "act wall (every run, one by one)"],
              [[str(due), str(len(stage1)), str(verified), f"{wall:.0f} s"]])
    rep.out("")
    rep.out(f"Goal: all {due} started.")
    rep.out("")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        os.environ.setdefault("PYTHONHASHSEED", "0")
        sys.path[:0] = [str(HERE), str(ROOT)]
        sys.stdout.write(json.dumps(shared_child(json.loads(sys.stdin.read()))) + "\n")
        sys.stdout.flush()
    else:
        sys.exit("run it with bench/run --only growth,shared,tick")
