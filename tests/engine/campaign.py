"""The generated fault campaign (issue #20): a Hypothesis state machine over the sandbox.

Each example is a fresh world (every fake reset, the demo world seeded, a new state branch).
The machine then draws what an operator and the world can do to one credential
(HK_PLATFORM_FULL: Heroku mints, revokes and regenerates; its value lives in Infisical and on
Heroku config vars, a GitHub secret, an Infisical secret and an SSM parameter):

  - any allowed operator action on the newest job, in process or as a real `velvet` child
    process, and now and then one the job does not allow (refused, exit 2);
  - `velvet rotate` of every flow, `--flow revocation --preempt`, `--force-revoke`;
  - `velvet stuck --settle-debt`;
  - a crash of a stage at any crash point (`VELVET_CRASH_AT`, a real child process);
  - vendor faults armed for the next step: 401/403/5xx blips and outages, 404 on revoke,
    vault outages, hangs (the client times out; released afterwards, so a write may land
    late), truncated answers, and writes acknowledged but not stored (`drop`);
  - what the runbook has an operator do by hand: revoke the old token at the vendor after a
    failed revoke; replace a roll's value lost in a crash.

After every step it checks the promises against the fakes' own state (their in-process objects:
the vendor's live authorizations, the vault's slots, what each consumer holds), never against
what Velvet says:

  I1  every live token Velvet made is the vault's current value, the pending value of an
      in-flight job, or debt listed by a job and by `velvet stuck` (a stage a crash cut short
      may still hold the token it was making: its job rests mid-stage until resumed);
  I2  a job in done/rev_done has its old value refused by the vendor now: the vault's value
      when the job was created (for an emergency: when it was declared, and the preempted
      job's pending value unless the emergency made it the vault's value), unless the operator
      accepted it as debt;
  I3  after done, no consumer holds a value the vendor refuses unless the job names it;
  I4  values issued by the vendor <= intents recorded in the ledgers;
  I5  only documented states and exit codes: no traceback, no internal error, and no job left
      resting in an in-progress state unless a crash left it there.

Run it longer than CI does with a random seed (it prints the seed, and on a failure the shrunk
steps as a program):

    .venv/bin/python tests/engine/campaign.py --examples 200 --steps 30 [--seed N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as use_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    invariant,
    precondition,
    rule,
)

from velvet_runner.budget import TIME_SCALE_ENV
from velvet_runner.engine import Engine, stage_failed
from velvet_runner.errors import VelvetError
from velvet_runner.machine import (
    IN_PROGRESS,
    STOP_ACTIONS,
    TERMINAL,
    Action,
    Flow,
    State,
    states,
)
from velvet_runner.records import DONE_ROW, Job, fingerprint, utcnow
from velvet_runner.watchdog import find_stuck
from velvet_sandbox.world import (
    INFISICAL_ENV,
    INFISICAL_PROJECT,
    PLATFORM_EMAIL,
    VAULT_PATH,
    Sandbox,
)

if __package__ in (None, ""):  # run as a script: the tests' own modules by their package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.engine.support import CRASH_EXIT, EngWorld, _Capture, fresh_world, leaks
else:
    from .support import CRASH_EXIT, EngWorld, _Capture, fresh_world, leaks

HK = "HK_PLATFORM_FULL"
TICKET = f"ROT-CAMPAIGN-{HK}"
# A hung vendor costs the in-process engine this long (the real clients wait 15 s).
IMPATIENT_SECONDS = 1.0
# Every side-effect boundary the engine offers (engine/*: run.crash and crash_point=), by the
# actions whose stage can reach it (any point may be drawn for any action: most are not reached).
_MINT = ("after_mint", "after_vault_write", "after_regenerate", "after_discard",
         "distribute_start", "mid_distribute", "after_distribute", "recheck")
_REVOKE = ("recheck", "before_revoke", "after_revoke", "after_proof", "after_promote")
_UNDO = ("rollback_start", "mid_rollback", "before_revoke_new", "after_revoke_new")
CRASH_POINTS_OF: dict[str, tuple[str, ...]] = {
    Action.VERIFY: ("verify",), Action.RETRY_VERIFY: ("verify",),
    Action.PROCEED_MINT: _MINT, Action.RETRY_DISTRIBUTE: _MINT, Action.RETRY_VALIDATION: _MINT,
    Action.PROCEED_REVOKE: _REVOKE, Action.RETRY_REVOKE: (*_REVOKE, "after_roll"),
    Action.ROLLBACK: _UNDO, Action.ABORT: _UNDO,
    Action.REVOKE: ("after_roll", "after_vault_write"),
}
CRASH_POINTS = tuple(sorted({p for points in CRASH_POINTS_OF.values() for p in points}))
# The documented exit codes of the commands the campaign runs (README "Exit codes"); 4 (the
# feature flag) cannot happen here: the world's flag is on.
EXIT_CODES = frozenset({0, 1, 2, 3})
INVARIANTS = ("I1", "I2", "I3", "I4", "I5")


# --- what the campaign can break -------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A vendor route a fault can hit, and what it is to Velvet."""

    service: str
    method: str
    path: str
    what: str


TARGETS = (
    Target("heroku", "GET", "/account", "verify and every proof of death (is_live)"),
    Target("heroku", "POST", "/oauth/authorizations", "mint"),
    Target("heroku", "GET", "/oauth/authorizations", "find a minted token by label"),
    Target("heroku", "GET", "/oauth/authorizations/*", "does the id still exist"),
    Target("heroku", "DELETE", "/oauth/authorizations/*", "revoke"),
    Target("heroku", "POST", "/oauth/authorizations/*/actions/regenerate-tokens", "roll"),
    Target("heroku", "PATCH", "/apps/*/config-vars", "every Heroku consumer write"),
    Target("heroku", "PATCH", "/apps/raxx-api-prod/config-vars", "one Heroku consumer write"),
    Target("heroku", "GET", "/apps/*/config-vars", "Heroku readback"),
    Target("infisical", "GET", f"/api/v4/secrets/{HK}*", "vault reads"),
    Target("infisical", "*", f"/api/v4/secrets/{HK}__PENDING*", "vault pending slot writes"),
    Target("infisical", "PATCH", f"/api/v4/secrets/{HK}", "vault current value write"),
    Target("infisical", "*", f"/api/v4/secrets/{HK}__AUTH_ID", "vault auth id companion"),
    Target("infisical", "PATCH", "/api/v4/secrets/HEROKU_API_KEY", "Infisical consumer write"),
    Target("github", "PUT", "/repos/raxx/platform/actions/secrets/HEROKU_API_KEY",
           "GitHub consumer write"),
    Target("consumers", "GET", "/consumers/*/health", "consumer health checks"),
)


@dataclass(frozen=True)
class Fault:
    target: Target
    kind: str  # "status", "drop", "truncate", "hang"
    status: int | None = None
    times: int | None = 1

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"method": self.target.method, "path": self.target.path,
                                "times": self.times}
        if self.kind == "status":
            spec["status"] = self.status
        elif self.kind == "hang":
            # Released when the step ends: the request then goes on, so a write may land late.
            spec.update(hang=True, status=None)
        else:
            spec[self.kind] = True
        return spec

    def __repr__(self) -> str:  # a failure's steps print it: valid Python, read as is
        t = self.target
        target = f"Target({t.service!r}, {t.method!r}, {t.path!r}, {t.what!r})"
        status = f", status={self.status}" if self.kind == "status" else ""
        return f"Fault({target}, {self.kind!r}{status}, times={self.times})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # Hypothesis prints steps with IPython's pretty printer


FAULTS = st.builds(
    Fault,
    target=st.sampled_from(TARGETS),
    kind=st.sampled_from(["status", "status", "status", "drop", "truncate", "hang"]),
    status=st.sampled_from([401, 401, 403, 404, 429, 500, 503, 503]),
    times=st.sampled_from([1, 1, 2, 4, None]),
)
# The faults a step runs under (most steps: none).
FAULT_LISTS = st.lists(FAULTS, max_size=2) | st.just([])
HOW = st.sampled_from(["in_process", "in_process", "cli"])


def _hangs(faults: list[Fault]) -> bool:
    """A hang costs a child process 15 s a try: such steps run in process."""
    return any(f.kind == "hang" for f in faults)


class Impatient(httpx.BaseTransport):
    """Vendor requests that give up after IMPATIENT_SECONDS: a hang costs the in-process
    engine a second, as a timeout, instead of the 15 s a real client waits."""

    def __init__(self) -> None:
        # No keep-alive either: a connection the fake closed while idle would fail the next
        # request at random, and a campaign step must replay the same way when shrunk.
        self.inner = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions["timeout"] = dict.fromkeys(("connect", "read", "write", "pool"),
                                                      IMPATIENT_SECONDS)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


# Known ways the promises break today (issue #20), each a switch that stops the campaign from
# generating it, so a long run can look past it for new ones (`--avoid NAME`; CI avoids none).
KNOWN: dict[str, str] = {
    "auth-blip-at-verify": "#20 case 1: a 401/403 on GET /account at verify settles the old "
                           "value dead; the job later ends done without revoking it (I2)",
    "vault-outage-after-roll": "#20 case 2: the vault refuses the rolled value after an "
                               "emergency roll; the rolled token is live and held by no one (I1)",
    "preempt-validated": "#20 case 3: --preempt of a validated job promotes its value and the "
                         "emergency rolls that one; the pre-emergency value stays live (I2)",
    "dropped-consumer-write": "#20 case 5: a consumer write acknowledged and not stored reaches "
                              "done with that consumer broken (I3)",
    "roll-outcome-unknown": "found: an emergency roll whose answer is lost (cut short, or a "
                            "timeout after the vendor rolled) is recorded as never issued; "
                            "the rolled value is live and held by no one (I1)",
    "dropped-roll": "found: an emergency roll acknowledged and not performed: the vault gets a "
                    "value that never worked, the compromised value stays live and the ledger "
                    "calls it the vault's current value (I1)",
    "promote-outage": "found: the vault fails while proceed_revoke promotes the new value (after "
                      "the proof): the error escapes the stage and the job rests in revoking "
                      "with no failure recorded (I5)",
    "resumed-roll-outage": "found: an emergency roll whose value a crash lost is retried on "
                           "resume; a vendor error on that retry settles the lost roll as never "
                           "issued (I1)",
    "regenerate-outcome-unknown": "found: a mint's value lost in a crash is replaced by "
                                  "regenerating its token; when that answer is lost the stage "
                                  "withdraws the intent as never sent (I4, I1)",
}
AVOID: set[str] = set()
CONSUMER_WRITES = frozenset(t for t in TARGETS if t.what.endswith("consumer write"))


def _avoided(fault: Fault, action: str, flow: Flow | None, status: str | None) -> bool:
    """Whether AVOID keeps this fault away from this action on a job in `status`."""
    target = fault.target
    if ("resumed-roll-outage" in AVOID and target.what == "roll"
            and status == State.REV_REVOKING):
        return True
    if ("auth-blip-at-verify" in AVOID and target.path == "/account"
            and fault.kind == "status" and fault.status in (401, 403)
            and action in (Action.VERIFY, Action.RETRY_VERIFY)):
        return True
    if ("vault-outage-after-roll" in AVOID and flow == Flow.REVOCATION
            and target.service == "infisical" and target.what.startswith("vault")
            and target.method != "GET"):
        return True
    if ("promote-outage" in AVOID and flow == Flow.OPERATIONAL
            and target.what.startswith("vault") and target.method != "GET"
            and fault.kind != "drop"
            and action in (Action.PROCEED_REVOKE, Action.RETRY_REVOKE,
                           Action.MARK_MANUALLY_REVOKED)):
        return True
    if ("regenerate-outcome-unknown" in AVOID and target.what == "roll"
            and flow == Flow.OPERATIONAL and fault.kind in ("truncate", "hang")):
        return True
    if (target.what == "roll" and flow == Flow.REVOCATION
            and (("roll-outcome-unknown" in AVOID and fault.kind in ("truncate", "hang"))
                 or ("dropped-roll" in AVOID and fault.kind == "drop"))):
        return True
    return ("dropped-consumer-write" in AVOID and fault.kind == "drop"
            and target in CONSUMER_WRITES)


# --- what a run of the campaign reports ------------------------------------------------------


@dataclass
class Stats:
    examples: int = 0
    steps: int = 0
    crashes: int = 0
    faults: int = 0
    checks: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    reached: Counter[str] = field(default_factory=Counter)  # "flow:status" after a step
    slowest: list[tuple[float, str]] = field(default_factory=list)
    seed: int | None = None

    def line(self) -> str:
        checked = ", ".join(f"{name} {self.checks[name]}" for name in INVARIANTS)
        return (f"fault campaign: {self.examples} examples, {self.steps} steps "
                f"({self.faults} faults armed, {self.crashes} stages crashed); invariants "
                f"checked after every step: {checked}"
                + (f"; seed {self.seed}" if self.seed is not None else ""))


STATS = Stats()


@dataclass
class Declared:
    """What the campaign saw (in the fakes) when a job was created."""

    flow: Flow
    must_die: list[str]  # values the job's end must leave refused (I2)
    accepted_debt: bool = False  # the operator recorded the old value as debt on their word


class Broken(AssertionError):
    """A promise the fakes' state contradicts (never carries a value: fingerprints only)."""


# --- the machine -----------------------------------------------------------------------------


class Campaign(RuleBasedStateMachine):
    """One example: a fresh world, then operator actions, faults and crashes."""

    sandbox: ClassVar[Sandbox]
    root: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        STATS.examples += 1
        self.eng: EngWorld = fresh_world(self.sandbox,
                                         self.root / f"example-{STATS.examples}")
        self.transport = Impatient()
        self.engine: Engine = self.eng.engine(transport=self.transport)
        self.heroku = self.sandbox.heroku
        self.issued_before = len(self.heroku.token_values())
        self.by_hand = 0  # tokens the campaign made by hand (the runbook's manual steps)
        self.declared: dict[str, Declared] = {}
        self.crashed: set[str] = set()  # jobs a crash left mid-stage, until resumed
        self.latest: Job | None = None
        self.capture = _Capture(self.eng.artifacts)
        logging.getLogger("velvet").addHandler(self.capture)

    def teardown(self) -> None:
        try:
            self.eng.clear_faults()
            found = leaks(self.eng.everything_produced(), self.sandbox.token_values())
            if found:
                raise Broken("secret values leaked:\n" + "\n".join(found))
        finally:
            logging.getLogger("velvet").removeHandler(self.capture)
            self.eng.close()
            self.transport.close()

    # --- reading the world ---------------------------------------------------------------

    def jobs(self) -> list[Job]:
        store = self.engine.store
        store.refresh()
        return store.list_jobs(HK, None, fetch=False)

    def vault(self, suffix: str = "") -> str | None:
        return self.sandbox.infisical.secret_value(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                                   HK + suffix)

    def platform_auths(self) -> list[dict[str, Any]]:
        """The vendor's live authorizations of the credential's user (fingerprints only)."""
        return [a for a in self.eng.heroku_auths(PLATFORM_EMAIL)
                if a.get("expires_at") is None or a["expires_at"] > time.time()]

    def _refresh(self) -> None:
        jobs = self.jobs()
        self.latest = jobs[0] if jobs else None
        if self.latest is not None:
            STATS.reached[f"{self.latest.flow_type}:{self.latest.status}"] += 1

    # --- running things ------------------------------------------------------------------

    @contextmanager
    def step(self, name: str, faults: list[Fault], action: str = "") -> Iterator[None]:
        """One step under `faults`; they are cleared (hangs released) after it."""
        STATS.steps += 1
        STATS.rules[name] += 1
        flow = self.latest.flow_type if self.latest is not None else None
        status = self.latest.status if self.latest is not None else None
        faults = [f for f in faults if not _avoided(f, action, flow, status)]
        STATS.faults += len(faults)
        for fault in faults:
            self.eng.fault(fault.target.service, **fault.spec())
        hung = _hangs(faults)
        started = time.monotonic()
        try:
            yield
        finally:
            STATS.slowest = sorted([*STATS.slowest, (time.monotonic() - started, name)],
                                   reverse=True)[:5]
            self.eng.clear_faults()
            if hung:
                time.sleep(0.3)  # a released request finishes (and may write) before the checks
            self._refresh()

    def run_in_process(self, call: Callable[[], Any]) -> tuple[int, Any]:
        """What the CLI would exit with (cli.main's mapping), without a child process."""
        try:
            result = call()
        except VelvetError as exc:
            self.eng.artifacts.append(("in-process error", str(exc)))
            return exc.exit_code, None
        except Exception as exc:  # noqa: BLE001 - the CLI's "internal error": I5
            raise Broken(f"I5: internal error ({type(exc).__name__}): {exc}") from exc
        return 0, result

    def exits(self, code: int, stderr: str = "", *, crash_at: str | None = None) -> None:
        STATS.checks["I5"] += 1
        allowed = EXIT_CODES | ({CRASH_EXIT} if crash_at else set())
        if code not in allowed:
            raise Broken(f"I5: exit code {code} is not documented: {stderr[-600:]}")
        for sign in ("Traceback", "internal error"):
            if sign in stderr:
                raise Broken(f"I5: {sign} on stderr: {stderr[-1500:]}")

    # --- rules: operator actions ---------------------------------------------------------

    @precondition(lambda self: not self._in_flight())
    @rule(flow=st.sampled_from([Flow.OPERATIONAL, Flow.OPERATIONAL, Flow.REVOCATION,
                                Flow.TESTING]),
          force_revoke=st.sampled_from([False, False, False, True]),
          key=st.sampled_from([None, None, "same-key"]), how=HOW, faults=FAULT_LISTS)
    def rotate(self, flow: Flow, force_revoke: bool, key: str | None, how: str,
               faults: list[Fault]) -> None:
        self._rotate(flow, preempt=False, force_revoke=force_revoke and flow == Flow.OPERATIONAL,
                     key=key, how=how, faults=faults)

    @precondition(lambda self: self._in_flight())
    @rule(flow=st.sampled_from([Flow.REVOCATION, Flow.REVOCATION, Flow.OPERATIONAL]),
          preempt=st.sampled_from([True, True, False]), how=HOW, faults=FAULT_LISTS)
    def rotate_in_flight(self, flow: Flow, preempt: bool, how: str,
                         faults: list[Fault]) -> None:
        """An emergency taking over (--preempt), or a second start (refused, exit 3)."""
        self._rotate(flow, preempt=preempt and flow == Flow.REVOCATION, force_revoke=False,
                     key=None, how=how, faults=faults)

    def _rotate(self, flow: Flow, *, preempt: bool, force_revoke: bool, key: str | None,
                how: str, faults: list[Fault]) -> None:
        # What must die when the job ends (I2), read from the fakes before it is created: the
        # vault's value, and for an emergency preempting a job, that job's pending value.
        holder = self.latest if self._in_flight() else None
        if "preempt-validated" in AVOID and holder is not None and (
                holder.status == State.VALIDATED):
            preempt = False
        must_die = [v for v in (self.vault(),) if v]
        pending = self.vault("__PENDING")
        if (preempt and holder is not None and pending
                and _json(self.vault("__PENDING_META")).get("job_id") == holder.job_id):
            must_die.append(pending)
        with self.step("rotate" + (" --preempt" if preempt else ""), faults):
            if how == "cli" and not _hangs(faults):
                args = ["rotate", HK, "--flow", str(flow), "--json"]
                args += ["--preempt"] if preempt else []
                args += ["--force-revoke"] if force_revoke else []
                args += ["--idempotency-key", key] if key else []
                proc = self.eng.cli(*args)
                self.exits(proc.returncode, proc.stderr)
                job = Job.from_json(proc.stdout) if proc.returncode == 0 else None
            else:
                code, made = self.run_in_process(lambda: self.engine.create(
                    HK, flow, idempotency_key=key, force_revoke=force_revoke, preempt=preempt))
                self.exits(code)
                job = made[0] if made else None
        if job is not None and job.job_id not in self.declared:
            self.declared[job.job_id] = Declared(job.flow_type, must_die)

    @precondition(lambda self: self.latest is not None)
    @rule(data=st.data(), how=HOW, faults=FAULT_LISTS)
    def act(self, data: st.DataObject, how: str, faults: list[Fault]) -> None:
        """`velvet stage JOB ACTION` on the newest job. (Rules are tried in the order of their
        names, and Hypothesis's simplest choice is the first: `act` comes first.)"""
        job, action, options = self._draw_action(data)
        with self.step(f"stage {action}", faults, action):
            if how == "cli" and not _hangs(faults):
                proc = self.eng.cli("stage", job.job_id, action, *self._argv(options), "--json")
                self.exits(proc.returncode, proc.stderr)
            else:
                code, ran = self.run_in_process(lambda: self.engine.run(
                    job.job_id, action, **options))
                self.exits(1 if ran is not None and stage_failed(ran) else code)
        self._resumed(job.job_id, action, options)

    @precondition(lambda self: self.latest is not None)
    @rule(data=st.data(), how=HOW, faults=FAULT_LISTS)
    def act_again(self, data: st.DataObject, how: str, faults: list[Fault]) -> None:
        """The operator's stages are the campaign's main line: a second rule doubles their
        share of the steps (Hypothesis picks among the rules allowed now alike)."""
        self.act(data, how, faults)

    # A job a crash cut short is resumed (or left) by the other rules before it crashes again:
    # otherwise the campaign can spend its steps crashing one stage at the same point.
    @precondition(lambda self: self.latest is not None and self.latest.job_id not in self.crashed)
    @rule(data=st.data(), faults=FAULT_LISTS)
    def crash(self, data: st.DataObject, faults: list[Fault]) -> None:
        job, action, options = self._draw_action(data, allowed_only=True)
        point = data.draw(st.sampled_from(CRASH_POINTS_OF.get(action, CRASH_POINTS)) | (
            st.sampled_from(CRASH_POINTS)), label="crash point")
        faults = [f for f in faults if f.kind != "hang"]  # a child would wait 15 s a try
        with self.step(f"crash {action}@{point}", faults, action):
            proc = self.eng.cli("stage", job.job_id, action, *self._argv(options), "--json",
                                crash_at=point)
            self.exits(proc.returncode, proc.stderr, crash_at=point)
        if proc.returncode == CRASH_EXIT:
            STATS.crashes += 1
            self.crashed.add(job.job_id)
        else:
            self._resumed(job.job_id, action, options)

    @precondition(lambda self: self.latest is not None)
    @rule(how=HOW, faults=FAULT_LISTS)
    def settle_debt(self, how: str, faults: list[Fault]) -> None:
        with self.step("stuck --settle-debt", faults):
            if how == "cli" and not _hangs(faults):
                proc = self.eng.cli("stuck", "--settle-debt", "--json")
                self.exits(proc.returncode, proc.stderr)
            else:
                code, _ = self.run_in_process(self.engine.settle_debt)
                self.exits(code)

    # --- rules: what the runbook has a person do by hand ---------------------------------

    @precondition(lambda self: self.latest is not None
                  and self.latest.status in (State.REVOKE_FAILED, State.REV_REVOKE_FAILED))
    @rule()
    def revoke_old_by_hand(self) -> None:
        """Runbook 9: the revoke failed; the operator revokes the old token in the dashboard
        (then mark_manually_revoked, which the campaign may or may not draw)."""
        with self.step("by hand: revoke the old token", []):
            current = self.vault()
            auth_id = self.heroku.authorization_id(current) if current else None
            if auth_id is not None:
                self.heroku.revoke_authorization(auth_id)

    @precondition(lambda self: self.latest is not None
                  and self.latest.status == State.REV_REVOKE_FAILED
                  and any(d.settled_at is None for d in self.latest.revocation_debt)
                  and not self._vault_works())
    @rule()
    def replace_lost_roll(self) -> None:
        """What the failure of a lost roll tells the operator: delete the live authorization,
        make a fresh one, put it in the vault."""
        assert self.latest is not None
        debts = [d.auth_id for d in self.latest.revocation_debt
                 if d.settled_at is None and d.auth_id is not None]
        with self.step("by hand: replace a lost roll", []):
            for auth_id in debts:
                self.heroku.revoke_authorization(auth_id)
            fresh_id, fresh = self.heroku.add_authorization(PLATFORM_EMAIL,
                                                            description="by hand")
            self.by_hand += 1
            for suffix, value in (("", fresh), ("__AUTH_ID", fresh_id)):
                self.sandbox.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                                  HK + suffix, value)

    # --- drawing an action ---------------------------------------------------------------

    def _draw_action(self, data: st.DataObject, *, allowed_only: bool = False
                     ) -> tuple[Job, str, dict[str, Any]]:
        assert self.latest is not None
        job = self.latest
        allowed = [str(a) for a in job.next_actions()]
        moving = [a for a in allowed if a not in STOP_ACTIONS] or allowed
        refused = [str(a) for a in Action if str(a) not in allowed]
        # Mostly what moves the job on (the simplest draw); now and then a way out (abort,
        # rollback), or an action the job does not allow (refused, exit 2).
        pick = data.draw(st.integers(0, 9), label="what kind of action")
        if allowed and (allowed_only or pick < 9):
            action = data.draw(st.sampled_from(moving if pick < 7 else allowed), label="action")
        else:
            action = data.draw(st.sampled_from(refused), label="refused action")
        options: dict[str, Any] = {}
        if action == Action.PROCEED_REVOKE:
            options.update(ticket=TICKET, confirm=HK)
        elif action in (Action.MARK_MANUALLY_REVOKED, Action.REVOKE):
            options["ticket"] = TICKET
            if action == Action.MARK_MANUALLY_REVOKED:
                options["accept_debt"] = data.draw(st.booleans(), label="accept_debt")
        elif action in (Action.MANUAL_CONFIRM, Action.SKIP_CONSUMER):
            field_ = ("distribute_status" if job.status in (State.DISTRIBUTE_PARTIAL,
                                                            State.DISTRIBUTE_FAILED)
                      else "validate_status")
            open_rows = [r.consumer_id for r in job.consumers
                         if getattr(r, field_) not in DONE_ROW] or [
                r.consumer_id for r in job.consumers]
            options["consumers"] = [data.draw(st.sampled_from(open_rows), label="consumer")]
            if action == Action.MANUAL_CONFIRM and data.draw(st.booleans(), label="evidence"):
                options["ticket"] = TICKET
        return job, action, options

    @staticmethod
    def _argv(options: dict[str, Any]) -> list[str]:
        argv: list[str] = []
        for consumer in options.get("consumers", []):
            argv += ["--consumer", consumer]
        if options.get("ticket"):
            argv += ["--ticket", options["ticket"]]
        if options.get("confirm"):
            argv += ["--confirm", options["confirm"]]
        if options.get("accept_debt"):
            argv.append("--accept-debt")
        return argv

    def _vault_works(self) -> bool:
        current = self.vault()
        return current is not None and self.heroku.token_is_live(current)

    def _in_flight(self) -> bool:
        return self.latest is not None and (
            self.latest.status not in TERMINAL[self.latest.flow_type])

    def _resumed(self, job_id: str, action: str, options: dict[str, Any]) -> None:
        job = self.latest if self.latest and self.latest.job_id == job_id else None
        if job is None or job.status not in IN_PROGRESS:
            self.crashed.discard(job_id)
        if options.get("accept_debt") and job_id in self.declared:
            self.declared[job_id].accepted_debt = True

    # --- the promises --------------------------------------------------------------------

    @invariant()
    def promises(self) -> None:
        jobs = self.jobs()
        self.i5_states(jobs)
        self.i4_issued(jobs)
        self.i1_nothing_live_unaccounted(jobs)
        self.i2_done_means_dead(jobs)
        self.i3_no_broken_consumer(jobs)

    def i5_states(self, jobs: list[Job]) -> None:
        STATS.checks["I5"] += 1
        for job in jobs:
            if job.status not in states(job.flow_type):
                raise Broken(f"I5: job {job.job_id} rests in {job.status}, which the "
                             f"{job.flow_type} flow does not have")
            if job.status in IN_PROGRESS and job.job_id not in self.crashed:
                raise Broken(f"I5: job {job.job_id} rests in {job.status} although no crash "
                             f"cut its stage short; last event: {_last(job)}")

    def i4_issued(self, jobs: list[Job]) -> None:
        STATS.checks["I4"] += 1
        issued = len(self.heroku.token_values()) - self.issued_before - self.by_hand
        intents = sum(1 for job in jobs for t in job.ledger if t.role in ("new", "rolled"))
        if issued > intents:
            raise Broken(f"I4: the vendor issued {issued} values, the ledgers record "
                         f"{intents} intents: {_ledgers(jobs)}")

    def i1_nothing_live_unaccounted(self, jobs: list[Job]) -> None:
        STATS.checks["I1"] += 1
        current, pending = self.vault(), self.vault("__PENDING")
        meta = _json(self.vault("__PENDING_META"))
        in_flight = {j.job_id for j in jobs if j.status not in TERMINAL[j.flow_type]}
        # Debt names a token by its vendor id, or by its fingerprint where the id is unknown.
        listed = {name for d in find_stuck(self.engine.manifest, self.engine.store, utcnow(),
                                           env=self.engine.settings.env)["revocation_debt"]
                  for name in (d["auth_id"], d["fingerprint"]) if name}
        debt = {name for j in jobs for d in j.revocation_debt if d.settled_at is None
                for name in (d.auth_id, d.fingerprint) if name}
        for auth in self.platform_auths():
            held = auth["token"]  # the fake shows a token as its fingerprint
            if current is not None and held == fingerprint(current):
                continue
            if (pending is not None and held == fingerprint(pending)
                    and meta.get("job_id") in in_flight):
                continue
            names = {auth["id"], held}
            if names & debt and names & listed:
                continue
            if any(j.job_id in self.crashed and j.status in IN_PROGRESS
                   and (auth["description"] == f"velvet-{j.job_id}"
                        or any(t.auth_id == auth["id"] for t in j.ledger)) for j in jobs):
                continue  # the token a crashed stage was making: resumed by its action
            why = ("listed as debt by a job but not by velvet stuck" if names & debt
                   else "not listed as debt")
            raise Broken(f"I1: live authorization {auth['id']} ({held}, "
                         f"{auth['description']!r}) is not the vault's current value, not the "
                         f"pending value of an in-flight job, and {why}; {_ledgers(jobs)}")

    def i2_done_means_dead(self, jobs: list[Job]) -> None:
        STATS.checks["I2"] += 1
        current = self.vault()
        for job in jobs:
            ended = (job.status == State.REV_DONE or (job.status == State.DONE
                                                      and job.flow_type == Flow.OPERATIONAL))
            declared = self.declared.get(job.job_id)
            if not ended or declared is None:
                continue
            debt = {name for d in job.revocation_debt if d.settled_at is None
                    for name in (d.auth_id, d.fingerprint) if name}
            for value in declared.must_die:
                if not self.heroku.token_is_live(value):
                    continue
                if job.flow_type == Flow.REVOCATION and value == current and (
                        value != declared.must_die[0]):
                    continue  # the preempted job's value, made the vault's by the emergency
                if declared.accepted_debt and {self.heroku.authorization_id(value),
                                               fingerprint(value)} & debt:
                    continue  # on the operator's word (mark_manually_revoked --accept-debt)
                which = ("value the vault held when the job was created"
                         if value == declared.must_die[0]
                         else "preempted job's pending value")
                raise Broken(f"I2: job {job.job_id} is {job.status} but the {which} "
                             f"({fingerprint(value)}, authorization "
                             f"{self.heroku.authorization_id(value)}) is still accepted by the "
                             f"vendor; last event: {_last(job)}")

    def i3_no_broken_consumer(self, jobs: list[Job]) -> None:
        STATS.checks["I3"] += 1
        job = jobs[0] if jobs else None
        if job is None or job.status != State.DONE or job.flow_type != Flow.OPERATIONAL:
            return
        said = " ".join(f"{e.detail or ''} {json.dumps(e.data, sort_keys=True)}"
                        for e in job.events if e.to_state == State.DONE)
        for consumer_id, value in self.eng.consumer_values(HK).items():
            if value is not None and self.heroku.token_is_live(value):
                continue
            row = job.row(consumer_id)
            named = (row is None or row.validate_status != "succeeded"
                     or row.distribute_status != "succeeded" or consumer_id in said)
            if not named:
                shown = fingerprint(value) if value is not None else "nothing"
                raise Broken(f"I3: job {job.job_id} is done but consumer {consumer_id} holds "
                             f"{shown}, which the vendor refuses, and the job does not name "
                             f"it; last event: {_last(job)}")


def _json(text: str | None) -> dict[str, Any]:
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _last(job: Job) -> str:
    event = job.events[-1]
    return f"{event.action} {event.from_state}->{event.to_state}: {event.detail}"


def _ledgers(jobs: list[Job]) -> str:
    return "; ".join(f"job {j.job_id} {j.flow_type} {j.status}: " + ", ".join(
        f"{t.token_id}={t.life}({t.auth_id})" for t in j.ledger) for j in jobs)


# --- running it ------------------------------------------------------------------------------


def campaign_settings(examples: int, steps: int, *, shrink: bool) -> settings:
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    database=None, phases=phases, derandomize=False, print_blob=False,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False)


def run(sandbox: Sandbox, root: Path, *, examples: int, steps: int, seed: int,
        shrink: bool, avoid: frozenset[str] = frozenset()) -> None:
    """The campaign against `sandbox`, its worlds under `root`, from `seed`, generating none
    of the known failures named in `avoid`."""
    unknown = avoid - KNOWN.keys()
    if unknown:
        raise ValueError(f"unknown known failures {sorted(unknown)}; known: {sorted(KNOWN)}")
    AVOID.clear()
    AVOID.update(avoid)
    machine = type("Campaign", (Campaign,), {"sandbox": sandbox, "root": root})
    STATS.seed = seed
    test = get_state_machine_test(machine, settings=campaign_settings(examples, steps,
                                                                      shrink=shrink))
    # A rate-limit answer pauses a vendor's budget for the vendor's documented wait (a minute
    # for GitHub): sixty times faster here, in process and in every child.
    scale = os.environ.get(TIME_SCALE_ENV)
    os.environ[TIME_SCALE_ENV] = "60"
    try:
        use_seed(seed)(test)()
    finally:
        if scale is None:
            os.environ.pop(TIME_SCALE_ENV, None)
        else:
            os.environ[TIME_SCALE_ENV] = scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--no-shrink", action="store_true")
    parser.add_argument("--avoid", action="append", default=[], choices=sorted(KNOWN),
                        help="do not generate this known failure (repeatable)")
    parser.add_argument("--avoid-known", action="store_true", help="avoid every known one")
    args = parser.parse_args(argv)
    avoid = frozenset(KNOWN if args.avoid_known else args.avoid)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fault campaign: seed {seed}, {args.examples} examples of up to {args.steps} steps"
          + (f", avoiding {', '.join(sorted(avoid))}" if avoid else ""), flush=True)
    started = time.monotonic()
    failed: BaseException | None = None
    with Sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="velvet-campaign-") as tmp:
        for name, value in sandbox.env(Path(tmp)).items():
            if name.startswith("AWS_"):
                os.environ[name] = value  # boto3 in this process (moto)
        try:
            run(sandbox, Path(tmp), examples=args.examples, steps=args.steps, seed=seed,
                shrink=not args.no_shrink, avoid=avoid)
        except Exception as exc:  # noqa: BLE001 - report, with the seed, and fail
            failed = exc
    if failed is not None:
        # The steps (shrunk unless --no-shrink) ride on the exception as notes; a flaky
        # failure carries the first run's failure inside it.
        print("".join(traceback.format_exception(failed)), flush=True)
    print(STATS.line())
    print("rules run: " + ", ".join(f"{k} {v}" for k, v in STATS.rules.most_common()))
    print("slowest steps: " + ", ".join(f"{name} {took:.1f} s" for took, name in STATS.slowest))
    print("where the newest job rested: " + ", ".join(
        f"{k} {v}" for k, v in sorted(STATS.reached.items())))
    took = f"{time.monotonic() - started:.0f} s"
    if failed is not None:
        print(f"FAILED with seed {seed} after {took}: {type(failed).__name__}: {failed}")
        print(f"reproduce: {sys.argv[0]} --seed {seed} --examples {args.examples} "
              f"--steps {args.steps}", flush=True)
        return 1
    print(f"passed with seed {seed} in {took}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
