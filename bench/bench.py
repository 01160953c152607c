"""Velvet runner benchmarks (issue 8). Run with `bench/run`; never part of CI or the tests.

Everything runs on 127.0.0.1 on this machine, in one run, so every figure in a table was
measured under the same conditions as the figures it is compared with. Each load loop is
bounded in count and in time.

    bench/run                      all five benchmarks, table on stdout, bench/results.md
    bench/run --only fanout,web    a subset (fanout, budget, contention, startup, web, manifest,
                                   growth, shared, tick: scale.py)
    bench/run --quick              smaller sizes, for checking the harness itself
    bench/run --sizes 500,2000     chosen fan-out sizes

Files: sandbox_proc.py (the fakes in their own process, world building), fanout_child.py (one
fan-out measurement), contention_worker.py (one of the 16 runners), apps.py (status app and
bare hello world for uvicorn), loadgen.py (the load generator), statebuild.py (a 10,000-job
branch in one fast-import), bench_support.py (synthetic manifests).

To profile the fan-out child by hand: VELVET_BENCH_PYSPY=/path/to/py-spy (a py-spy binary,
not a dependency) and VELVET_BENCH_PYSPY_OUT=out.txt; its peak RSS is then py-spy's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
# Every child (runner, sandbox, uvicorn, the velvet CLI) imports velvet_runner from ROOT, so a
# copy of the tree with bench/ inside it measures that copy's code.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
PY = sys.executable
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
VELVET = str(Path(PY).parent / "velvet")
SECTIONS = ("fanout", "budget", "contention", "startup", "web", "manifest", "growth", "shared",
            "tick")


# --- output ------------------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def out(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
        self.out("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
                 + " |")
        self.out("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in rows:
            self.out("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths,
                                                                        strict=True)) + " |")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


# --- the sandbox in its own process ------------------------------------------------------


class SandboxProc:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, str(HERE / "sandbox_proc.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        ready = self._read(timeout=60)
        if not ready.get("ready"):
            raise RuntimeError(f"sandbox did not start: {ready}")

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox process exited")
        return json.loads(line)

    def call(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        answer = self._read(timeout=300)
        if "error" in answer:
            raise RuntimeError(f"sandbox: {answer['error']}")
        return answer

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def run_child_rss(args: list[str], stdin: str, timeout: float) -> tuple[str, float, int]:
    """Run a Python child; (stdout, wall seconds, peak RSS in KiB from os.wait4).

    wait4()'s figure for a forked child starts from the parent's high-water mark, so the
    children that matter report their own (VmHWM) and this one is not shown."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as fin, tempfile.TemporaryFile("w+") as fout, \
            tempfile.TemporaryFile("w+") as ferr:
        fin.write(stdin)
        fin.seek(0)
        cmd = [PY, *args]
        if os.environ.get("VELVET_BENCH_PYSPY"):  # profiling the harness's subject, by hand
            cmd = [os.environ["VELVET_BENCH_PYSPY"], "record", "-r", "250", "-f", "raw", "-o",
                   os.environ.get("VELVET_BENCH_PYSPY_OUT", "pyspy.txt"), "--", *cmd]
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RuntimeError(f"{args[0]} exceeded {timeout:.0f} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {err.strip()[-3000:]}")
    return out, wall, usage.ru_maxrss


# --- 1. fan-out ---------------------------------------------------------------------------


def bench_fanout(rep: Report, sizes: list[int], check: str, tmp: Path,
                 results: dict[str, Any], bound: int | None = None) -> None:
    rep.out("## 1. Fan-out: proceed_mint to N heroku_config_var consumers")
    rep.out("")
    rep.out(f"One Heroku credential, N apps each holding it in a config var, vault in Infisical; "
            f"every `PATCH /apps/*/config-vars` delayed 100 ms by the sandbox's fault API. "
            f"Consumers use `healthcheck: {{type: {check}}}`"
            + (" on the sandbox's consumers app (each check authenticates to the Heroku fake "
               "with the value the app now holds), so proceed_mint runs mint, distribution "
               "*and* validation and ends `validated`, the way a real rotation does."
               if check == "http" else
               ": validation costs nothing and the stage ends `validate_partial` "
               "(manual_required)."))
    rep.out("The fakes run in their own process (sandbox_proc.py); the runner runs in a child "
            "process (fanout_child.py) that reports its own peak RSS (VmHWM in /proc/self/status;"
            " wait4()'s figure starts from the parent's high-water mark).")
    rep.out("floor = mint alone + vault write alone (median of 3 each) + the median single "
            "consumer (write + check) of the sequential loop. CPU columns: seconds of CPU "
            "burnt during proceed_mint by the runner (all threads + its git children) and by "
            "the sandbox process; the fakes serve from one process (one GIL), so their CPU "
            "time is a wall-time bound that no runner on this machine can beat.")
    rep.out("")
    sbx = SandboxProc()
    rows = []
    try:
        for n in sizes:
            work = Path(tempfile.mkdtemp(prefix=f"fanout-{n}-", dir=tmp))
            world = sbx.call(cmd="fanout_world", n=n, workdir=str(work), check=check)
            control = world["heroku_control"]
            with httpx.Client(timeout=30) as http:
                http.delete(f"{control}/faults").raise_for_status()
                http.post(f"{control}/rate-limits", json={"remaining": 4500}).raise_for_status()
                http.post(f"{control}/faults", json={
                    "method": "PATCH", "path": "/apps/*/config-vars", "latency_ms": 100,
                    "times": None, "status": None}).raise_for_status()
            spec = {"workdir": str(work), "env": world["env"], "credential": world["credential"],
                    "seq_sample": 100, "sandbox_pid": sbx.proc.pid, "heroku_control": control,
                    **({"bounds": {"heroku_config_var": bound}} if bound else {})}
            out, _, _ = run_child_rss([str(HERE / "fanout_child.py")], json.dumps(spec),
                                      timeout=900)
            res = json.loads(out.strip().splitlines()[-1])
            rss = res["peak_rss_kib"]
            results.setdefault("fanout", {})[str(n)] = res
            floor = res["floor"]["total"]
            ratio = res["wall"] / floor
            seq = res["sequential"]
            rep.out(f"N={n} (heroku_config_var bound {res['bound']}): proceed_mint "
                    f"{_s(res['wall'])} ({res['status']}, "
                    f"{res['distributed']}/{n} written, {res['validated']}/{n} validated, "
                    f"{res['commits']} state commits); floor {_ms(floor)} "
                    f"(mint {_ms(res['floor']['mint'])} + vault {_ms(res['floor']['vault_write'])}"
                    f" + median consumer {_ms(res['floor']['median_consumer'])}; slowest "
                    f"{_ms(res['floor']['slowest_consumer'])}); "
                    f"ratio to floor: {ratio:.2f}")
            rep.out(f"  sequential loop: {_s(seq['total'])}"
                    + (f" (extrapolated from {seq['sampled']} of {n} consumers, "
                       f"{_s(seq['measured'])} measured)" if seq["extrapolated"] else
                       " (every consumer)")
                    + f"; speed-up over sequential {seq['total'] / res['wall']:.1f}x; "
                    f"CPU during proceed_mint: runner {_s(res['cpu']['runner'])}, sandbox "
                    f"{_s(res['cpu']['sandbox'])}; peak RSS {rss / 1024:.0f} MiB")
            per = seq["cpu_per_consumer"]
            need = n * (per["runner"] + per["sandbox"])
            # The fakes serve from one process (one GIL): their CPU alone bounds any runner.
            fakes_only = max(floor, n * per["sandbox"])
            # Past the bound, writes go in waves: each wave waits out the injected latency.
            waves = -(-n // res["bound"])
            bound_floor = (res["floor"]["mint"] + res["floor"]["vault_write"]
                           + waves * res["floor"]["median_consumer"])
            least = max(floor, need / CORES, bound_floor)
            res["least_ratio"] = least / floor
            res["fakes_only_ratio"] = fakes_only / floor
            rep.out(f"  CPU one consumer needs (write + check, uncontended, latency lifted, idle "
                    f"burn taken off): runner "
                    f"{per['runner'] * 1000:.2f} ms + fakes {per['sandbox'] * 1000:.2f} ms; "
                    f"x {n} = {_s(need)} of CPU on {CORES} cores; {waves} wave(s) of writes "
                    f"under the bound of {res['bound']} take {_s(bound_floor)}; so no run here "
                    f"can beat {_s(least)}: least possible ratio to floor on this machine "
                    f"{least / floor:.2f}; the machine's bound: with any runner at all, the "
                    f"fakes alone (one process) allow no less than {fakes_only / floor:.2f}")
            if res.get("manifest_refused"):
                rep.out(f"  NOTE: velvet refuses this manifest as it stands "
                        f"({res['manifest_refused']}); the cap was lifted inside the benchmark "
                        "child to measure the fan-out")
            rep.out("  transitions: " + ", ".join(f"{t['move']}@{t['at']:.2f}s"
                                                  for t in res["transitions"]))
            rows.append([str(n), _s(res["wall"]), _ms(floor), f"{ratio:.2f}",
                         _s(seq["total"]) + ("*" if seq["extrapolated"] else ""),
                         f"{seq['total'] / res['wall']:.1f}x", _s(res["cpu"]["runner"]),
                         _s(res["cpu"]["sandbox"]), f"{res['least_ratio']:.2f}",
                         f"{res['fakes_only_ratio']:.2f}", str(res["commits"]),
                         f"{rss / 1024:.0f} MiB"])
            shutil.rmtree(work, ignore_errors=True)
    finally:
        sbx.close()
    rep.out("")
    rep.table(["N", "proceed_mint", "floor", "ratio to floor", "sequential", "speed-up",
               "runner CPU", "sandbox CPU", "least ratio here", "machine's bound (fakes alone)",
               "state commits", "peak RSS"], rows)
    rep.out("")
    rep.out("\\* sequential loop measured on an evenly spaced sample of 100 consumers and "
            "extrapolated to N.")
    rep.out("")


# --- 2. state-branch contention -------------------------------------------------------------


def bench_contention(rep: Report, tmp: Path, results: dict[str, Any], runners: int = 16,
                     transitions: int = 50, latency_ms: int = 100) -> None:
    from velvet_runner.machine import INITIAL, Flow
    from velvet_runner.records import Event, Job, new_job_id, utcnow
    from velvet_runner.store import Store

    rep.out("## 2. State-branch contention")
    rep.out("")
    rep.out(f"{runners} runner processes, each making {transitions} transitions on its own job "
            "(Store.update appending one event), all against one bare repository, each with "
            "its own cache directory; they start together on a shared clock. Every push takes "
            f"at least {latency_ms} ms (a pre-receive hook sleeps), as a real remote's round "
            "trip would.")
    rep.out("")
    remote = tmp / "contention.git"
    setup = Store(str(remote), "velvet-state", tmp / "contention-setup-cache")
    jobs = []
    for r in range(runners):
        now = utcnow()
        job = Job(job_id=new_job_id(), credential=f"BENCH_RUNNER_{r:02d}", vendor="heroku",
                  flow_type=Flow.OPERATIONAL, env="prod", status=INITIAL[Flow.OPERATIONAL],
                  created_at=now, updated_at=now, actor="bench",
                  events=[Event(at=now, actor="bench", action="create", to_state="init")])
        setup.create(job)
        jobs.append(job)
    commits_before = _rev_count(remote)
    hook = remote / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\nsleep {latency_ms / 1000:.3f}\n", encoding="utf-8")
    hook.chmod(0o755)
    start_at = time.time() + 3.0  # every runner imports and clones before this
    deadline = start_at + 900
    procs = [subprocess.Popen(
        [PY, str(HERE / "contention_worker.py"), str(remote), str(tmp / f"cache-{r:02d}"),
         job.credential, job.job_id, str(transitions), str(start_at), str(deadline)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for r, job in enumerate(jobs)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=1200)
        if proc.returncode != 0:
            raise RuntimeError(f"contention worker failed: {err[-2000:]}")
        outs.append(json.loads(out))
    wall = max(o["elapsed"] for o in outs)
    commits = _rev_count(remote) - commits_before
    retries = sum(o["retries"] for o in outs)
    done = sum(o["done"] for o in outs)
    errors = [e for o in outs for e in o["errors"]]
    lost = 0  # reported written by Store.update, missing from the branch
    failed = sum(o["failed"] for o in outs)  # Store.update raised (StateWriteLost): not written
    for job, o in zip(jobs, outs, strict=True):
        final = setup.get(job.credential, job.job_id)
        actions = [e.action for e in final.events if e.action.startswith("bench-")]
        expected = [f"bench-{i}" for i in o["landed"]]
        lost += len(set(expected) - set(actions))
        if actions != expected:
            errors.append(f"{job.credential}: the branch holds {len(actions)} events, "
                          f"{len(expected)} were reported written (or out of order)")
    times = sorted(o["elapsed"] for o in outs)
    median = statistics.median(times)
    fair = all(median / 2 <= t <= 2 * median for t in times)
    res = {"runners": runners, "transitions": transitions, "done": done, "commits": commits,
           "wall": wall, "commits_per_second": commits / wall, "retries": retries,
           "retries_per_commit": retries / max(1, commits), "lost": lost, "failed": failed,
           "errors": errors, "latency_ms": latency_ms, "median_runner": median,
           "fastest_to_median": times[0] / median, "slowest_to_median": times[-1] / median,
           "fair": fair, "per_runner_seconds": [round(t, 2) for t in times]}
    results["contention"] = res
    rep.table(["runners x transitions", "push latency", "commits landed", "lost updates",
               "gave up (StateWriteLost)", "wall", "commits/s", "retries", "retries/commit",
               "fastest / median / slowest runner"],
              [[f"{runners} x {transitions}", f"{latency_ms} ms", str(commits), str(lost),
                str(failed), _s(wall), f"{commits / wall:.1f}", str(retries),
                f"{retries / max(1, commits):.2f}",
                f"{times[0]:.1f} / {median:.1f} / {times[-1]:.1f} s"]])
    rep.out("")
    rep.out(f"zero lost updates: {'yes' if lost == 0 and not errors else 'NO'} "
            f"(every event a runner was told was written is on the branch, in order); "
            f"all {runners * transitions} transitions written: "
            f"{'yes' if failed == 0 else f'NO, {failed} gave up'}; every runner within 2x "
            f"of the median runner: {'yes' if fair else 'NO'} (fastest "
            f"{times[0] / median:.2f}x, slowest {times[-1] / median:.2f}x of the median)"
            + (f"; errors: {errors[:3]}" if errors else ""))
    rep.out("")


def _rev_count(repo: Path) -> int:
    proc = subprocess.run(["git", "--git-dir", str(repo), "rev-list", "--count", "velvet-state"],
                          capture_output=True, text=True)
    return int(proc.stdout.strip() or 0)


# --- 3. start-up ---------------------------------------------------------------------------


def _median_wall(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, cwd=ROOT, timeout=120)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {proc.stderr.decode()[-1500:]}")
    return statistics.median(times), times


def bench_startup(rep: Report, tmp: Path, results: dict[str, Any], runs: int = 9) -> None:
    from bench_support import write_manifest
    from statebuild import build_branch

    rep.out("## 3. Start-up")
    rep.out("")
    work = tmp / "startup"
    work.mkdir()
    creds = write_manifest(work / "manifest" / "subscription-manifest.yml", 10, 10)
    build_branch(work / "state.git", creds, 10)
    env = {**_clean_env(), "VELVET_MANIFEST": str(work / "manifest" / "subscription-manifest.yml"),
           "VELVET_STATE": str(work / "state.git"), "VELVET_CACHE_DIR": str(work / "cache"),
           "VELVET_ENV": "prod"}
    subprocess.run([VELVET, "status", "--json"], env=env, capture_output=True, check=True,
                   cwd=ROOT)  # first run clones the branch into the cache
    base, _ = _median_wall([PY, "-c", "pass"], env, runs)
    helps, _ = _median_wall([VELVET, "--help"], env, runs)
    status, _ = _median_wall([VELVET, "status", "--json"], env, runs)
    results["startup"] = {"python": base, "help": helps, "status": status, "runs": runs}
    rep.out(f"Median of {runs} runs each; `velvet status --json` over a state branch of "
            "10 credentials x 10 jobs (cache already cloned, so one fetch per run).")
    rep.out("")
    rep.table(["command", "median wall", "x python -c pass"], [
        ["python -c pass", _ms(base), "1.00"],
        ["velvet --help", _ms(helps), f"{helps / base:.2f}"],
        ["velvet status --json", _ms(status), f"{status / base:.2f}"],
    ])
    fan = results.get("fanout", {})
    big = fan.get("2000") or (fan[max(fan, key=int)] if fan else None)
    if big:
        rep.out("")
        rep.out(f"Peak RSS of a {big['n']}-consumer rotation (fan-out child process, proceed_mint "
                f"+ floor + sequential sample, its own VmHWM): {big['peak_rss_kib'] / 1024:.0f} "
                "MiB")
    rep.out("")


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("VELVET_", "GITHUB_"))}


# --- 4. status app -------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn serving one of bench/apps.py in its own process on 127.0.0.1."""

    def __init__(self, factory: str, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [PY, "-m", "uvicorn", "--factory", f"apps:{factory}", "--app-dir", str(HERE),
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
             "--no-access-log"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"uvicorn {factory} did not start: {err[-1500:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench_web(rep: Report, tmp: Path, results: dict[str, Any], *, total: int, seconds: float,
              concurrency: int = 8, rounds: int = 3) -> None:
    from bench_support import write_manifest
    from loadgen import load
    from statebuild import build_branch

    rep.out("## 4. Status app")
    rep.out("")
    work = tmp / "web"
    work.mkdir()
    creds = write_manifest(work / "manifest" / "subscription-manifest.yml", 10, 10)
    t = time.perf_counter()
    jobs = build_branch(work / "state.git", creds, 1000)
    built = time.perf_counter() - t
    name = creds[0]
    token = secrets.token_urlsafe(32)  # the status app is closed: every request presents it
    env = {**_clean_env(), "VELVET_MANIFEST": str(work / "manifest" / "subscription-manifest.yml"),
           "VELVET_STATE": str(work / "state.git"), "VELVET_CACHE_DIR": str(work / "cache"),
           "VELVET_ENV": "prod", "VELVET_STATUS_TOKENS": token}
    auth = {"Authorization": f"Bearer {token}"}
    rep.out(f"{jobs} jobs on the branch ({len(creds)} credentials x 1,000 jobs, 10 consumer rows "
            f"and 11 events each; written by one git fast-import in {built:.1f} s). Each app is "
            f"served by uvicorn (one process, defaults) on 127.0.0.1; the load generator "
            f"(loadgen.py, in the benchmark process) keeps {concurrency} keep-alive HTTP/1.1 "
            f"connections busy over asyncio streams, bounded to {total} requests or "
            f"{seconds:.0f} s per measurement after 200 warm-up requests, in {rounds} rounds "
            f"that interleave the endpoints (figures: the median round). Not httpx: its "
            f"AsyncClient tops out near 400 req/s on this machine, below the bare app.")
    rep.out("")
    rows = []
    figures: dict[str, Any] = {}
    endpoints = [
        ("bare Starlette hello world", "hello", "/healthz"),
        ("velvet /healthz", "velvet", "/healthz"),
        (f"velvet /tokens/{name}/rotations?limit=5", "velvet", f"/tokens/{name}/rotations?limit=5"),
    ]
    servers = {factory: Server(factory, env) for factory in ("hello", "velvet")}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in endpoints}
    try:
        for _label, factory, path in endpoints:  # warm every cache once
            load(servers[factory].url + path, concurrency=concurrency, total=500, seconds=2,
                 headers=auth)
        # Rounds interleave the endpoints so that drift in the machine's speed hits all alike;
        # each figure below is the median round.
        for _ in range(rounds):
            for label, factory, path in endpoints:
                pid = servers[factory].proc.pid
                cpu0, me0 = _proc_cpu(pid), _self_cpu()
                got = load(servers[factory].url + path, concurrency=concurrency, total=total,
                           seconds=seconds, headers=auth)
                cpu, me = _proc_cpu(pid) - cpu0, _self_cpu() - me0
                runs[label].append({**got.__dict__, "server_cpu_us": cpu / got.requests * 1e6,
                                    "server_busy": cpu / got.seconds,
                                    "loadgen_busy": me / got.seconds})
    finally:
        for server in servers.values():
            server.stop()
    for label, _, _ in endpoints:
        fig = sorted(runs[label], key=lambda r: r["rps"])[len(runs[label]) // 2]
        fig["rounds_rps"] = [round(r["rps"]) for r in runs[label]]
        figures[label] = fig
        rows.append([label, str(fig["requests"]), str(fig["errors"]), f"{fig['rps']:.0f}",
                     f"{fig['p50_ms']:.1f} ms", f"{fig['p99_ms']:.1f} ms",
                     f"{fig['server_cpu_us']:.0f} us", f"{fig['server_busy']:.0%}",
                     f"{fig['loadgen_busy']:.0%}",
                     " / ".join(str(x) for x in fig["rounds_rps"])])
    bare = figures["bare Starlette hello world"]["rps"]
    for row, fig in zip(rows, figures.values(), strict=True):
        row.append(f"{fig['rps'] / bare:.2f}")
    results["web"] = figures
    rep.table(["endpoint", "requests", "errors", "req/s", "p50", "p99", "server CPU/req",
               "server busy", "load generator busy", "req/s per round", "x bare req/s"], rows)
    rep.out("")
    rep.out("server CPU/req and busy: the uvicorn process's CPU time (from /proc) per request "
            "and as a share of one core; the load generator's share likewise (2 cores in all).")
    rep.out("")


# --- 5. manifest -----------------------------------------------------------------------------


def bench_manifest(rep: Report, tmp: Path, results: dict[str, Any], runs: int = 3) -> None:
    from bench_support import write_manifest

    from velvet_runner import manifest as manifest_mod

    rep.out("## 5. Manifest check")
    rep.out("")
    path = tmp / "big-manifest" / "subscription-manifest.yml"
    write_manifest(path, 1000, 10)
    size = path.stat().st_size
    env = _clean_env()
    times = []
    outcome = ""
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run([VELVET, "manifest", "check", str(path)], env=env,
                              capture_output=True, text=True, cwd=ROOT, timeout=300)
        times.append(time.perf_counter() - t)
        outcome = (proc.stdout.strip() or proc.stderr.strip()).splitlines()[0][:200]
        outcome = outcome.replace(str(path), "<manifest>")
        ok = proc.returncode == 0
    t = time.perf_counter()
    try:
        manifest_mod.load(path)
        parsed = "ok"
    except Exception as exc:  # noqa: BLE001 - reported in the table
        parsed = type(exc).__name__
    in_process = time.perf_counter() - t
    wall = statistics.median(times)
    results["manifest"] = {"wall": wall, "runs": times, "ok": ok, "in_process": in_process,
                           "bytes": size, "outcome": outcome}
    rep.out(f"1,000 credentials x 10 consumers (all four target kinds, http/readback/none "
            f"checks), {size / 1024:.0f} KiB of YAML; median of {runs} CLI runs.")
    rep.out("")
    rep.table(["what", "time", "result"], [
        ["velvet manifest check (CLI, wall)", _s(wall), ("exit 0" if ok else "REFUSED") +
         f": {outcome}"],
        ["manifest.load in process", _s(in_process), parsed],
    ])
    rep.out("")


# --- goals -----------------------------------------------------------------------------------


def goals(rep: Report, results: dict[str, Any]) -> None:
    rows: list[list[str]] = []

    def row(goal: str, figure: str, met: bool) -> None:
        rows.append([goal, figure, "met" if met else "NOT met"])

    fan = results.get("fanout", {})
    for n, limit in (("500", 1.2), ("2000", 1.5)):
        if n in fan:
            ratio = fan[n]["wall"] / fan[n]["floor"]["total"]
            row(f"fan-out N={n}: proceed_mint <= {limit}x floor", f"{ratio:.2f}x",
                ratio <= limit)
    paced = results.get("budget", {}).get("paced")
    if paced:
        rejected = sum(f["rejected"] for f in paced["fakes"].values())
        row("budget: paced proceed_mint <= 1.1x budget floor, 0 rejected",
            f"{paced['ratio']:.2f}x, {rejected} rejected", paced["ratio"] <= 1.1 and not rejected)
    for n in ("500", "2000"):
        mixed = results.get("budget", {}).get(f"mixed_{n}")
        if mixed:
            rejected = sum(f["rejected"] for f in mixed["fakes"].values())
            row(f"budget: mixed fan-out N={n} <= 1.1x budget floor, 0 rejected",
                f"{mixed['ratio']:.2f}x, {rejected} rejected",
                mixed["ratio"] <= 1.1 and not rejected)
    if "contention" in results:
        c = results["contention"]
        row(f"contention ({c['latency_ms']} ms a push): zero lost updates, every transition "
            "written, every writer within 2x of the median",
            f"{c['lost']} lost, {c['failed']} gave up, {c['fastest_to_median']:.2f}x-"
            f"{c['slowest_to_median']:.2f}x", c["lost"] == 0 and c["failed"] == 0 and c["fair"])
    growth = results.get("growth")
    if growth:
        for label, fig in growth["figures"].items():
            row(f"growth {label}: due and stuck <= 5 s each",
                f"{fig['due']:.2f} s, {fig['stuck']:.2f} s",
                fig["due"] <= 5 and fig["stuck"] <= 5)
        h = growth["history_ratio"]
        row("growth: 10x the history <= 1.3x the time (due, stuck)",
            f"{h['due']:.2f}x, {h['stuck']:.2f}x", h["due"] <= 1.3 and h["stuck"] <= 1.3)
    shared = results.get("shared")
    if shared:
        row(f"shared budget {shared['runs']} x {shared['secrets']}: 0 rejected, wall <= 1.15x "
            "floor", f"{shared['ratio']:.2f}x, {shared['rejected']} rejected",
            shared["ratio"] <= 1.15 and not shared["rejected"])
    tick = results.get("tick")
    if tick:
        row(f"cron tick with {tick['due']} due: all started",
            f"{tick['started']} started ({tick['verified']} verified)",
            tick["started"] == tick["due"])
    if "startup" in results:
        s = results["startup"]
        row("velvet --help <= 4x python -c pass", f"{s['help'] / s['python']:.2f}x",
            s["help"] <= 4 * s["python"])
    if "web" in results:
        w = list(results["web"].values())
        bare, health, rot = w[0], w[1], w[2]
        for label, fig in (("/healthz", health), ("rotations?limit=5", rot)):
            row(f"status app {label}: >= 0.6x bare req/s, p99 <= 20 ms",
                f"{fig['rps'] / bare['rps']:.2f}x, p99 {fig['p99_ms']:.1f} ms",
                fig["rps"] >= 0.6 * bare["rps"] and fig["p99_ms"] <= 20)
    if "manifest" in results:
        m = results["manifest"]
        row("manifest check 1,000 x 10 <= 1 s (and accepted)",
            f"{m['wall']:.2f} s, {'exit 0' if m['ok'] else 'refused'}",
            m["wall"] <= 1.0 and m["ok"])
    if rows:
        rep.out("## Goals")
        rep.out("")
        rep.table(["goal", "this run", ""], rows)
        rep.out("")


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default=None, help="fan-out sizes, e.g. 10,100,500,2000")
    parser.add_argument("--check", choices=("http", "none"), default="http")
    parser.add_argument("--bound", type=int, default=None,
                        help="fan-out: override the heroku_config_var concurrency bound")
    parser.add_argument("--scale", type=float, default=10.0,
                        help="budget: how much faster the vendors' clocks run (fakes and runner)")
    parser.add_argument("--out", default=str(HERE / "results.md"))
    parser.add_argument("--json", default=None, help="also write raw figures as JSON here")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")

    rep = Report()
    results: dict[str, Any] = {}
    started = time.perf_counter()
    rep.out("# Velvet runner benchmarks")
    rep.out("")
    rep.out(f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()}: "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{_git_version()}; {_describe_tree()}.")
    rep.out("")
    with tempfile.TemporaryDirectory(prefix="velvet-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if "fanout" in only:
            sizes = ([int(x) for x in args.sizes.split(",")] if args.sizes
                     else [10, 100] if args.quick else [10, 100, 500, 2000])
            bench_fanout(rep, sizes, args.check, tmp, results, args.bound)
        if "budget" in only:
            from budget import bench_budget

            bench_budget(rep, tmp, results, scale=args.scale,
                         **({"github": 100, "heroku_vars": 400, "mixed": (500,)}
                            if args.quick else {}))
        if "contention" in only:
            bench_contention(rep, tmp, results, transitions=10 if args.quick else 50)
        if "startup" in only:
            bench_startup(rep, tmp, results, runs=3 if args.quick else 9)
        if "web" in only:
            bench_web(rep, tmp, results, total=3000 if args.quick else 30000,
                      seconds=3 if args.quick else 6, rounds=1 if args.quick else 3)
        if "manifest" in only:
            bench_manifest(rep, tmp, results)
        if "growth" in only:
            from scale import bench_growth

            bench_growth(rep, tmp, results, runs=1 if args.quick else 3, quick=args.quick)
        if "shared" in only:
            from scale import bench_shared

            bench_shared(rep, tmp, results, scale=args.scale, quick=args.quick)
        if "tick" in only:
            from scale import bench_tick

            bench_tick(rep, tmp, results, due=10 if args.quick else 50)
    goals(rep, results)
    rep.out(f"Total benchmark time {time.perf_counter() - started:.0f} s.")
    Path(args.out).write_text("\n".join(rep.lines) + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")
    return 0


def _git_version() -> str:
    return subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()


def _describe_tree() -> str:
    head = _head()
    if not head:
        return f"code from {ROOT} (not a git checkout)"
    return f"commit {head}{' + uncommitted changes' if _dirty() else ''}"


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=ROOT).stdout.strip()


def _dirty() -> bool:
    return subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "velvet_runner"],
                          cwd=ROOT).returncode != 0


if __name__ == "__main__":
    sys.exit(main())
