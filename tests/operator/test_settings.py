"""Settings refused at start-up (issue #22): every bad value of a variable is exit 2 naming the
variable, its value (never a secret's) and the rule, with no traceback, before any job or
branch is touched. Also: arguments with rules of their own (`--idempotency-key`, `--host`),
and a disk that refuses to grow (`ulimit -f`), which names the path and what to do.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from operator_support import BRANCH, TIMEOUT, git

from velvet_runner.settings import VARIABLES, declared_variables

CRED = "HK_PLATFORM_FULL"
REPO_ROOT = Path(__file__).resolve().parents[2]
RunVelvet = Callable[..., "subprocess.CompletedProcess[str]"]


def refs(bare: Path) -> str:
    """Every ref of the state repository and where it points: what "nothing changed" means."""
    return git("--git-dir", str(bare), "for-each-ref", "--format=%(refname) %(objectname)")


def clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "internal error" not in proc.stderr


@pytest.fixture
def started(run_velvet: RunVelvet, bare_repo: Path) -> tuple[str, str]:
    """A job in init on the state branch, and the refs as they are then."""
    proc = run_velvet("rotate", CRED)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["job_id"], refs(bare_repo)


def refused_everywhere(run_velvet: RunVelvet, bare_repo: Path, started: tuple[str, str],
                       env: dict[str, str], *expected: str, reads: bool = False) -> None:
    """A new job and a stage (and with `reads`, the read commands) refuse the environment
    with exit 2 and these words, and change nothing."""
    job_id, before = started
    commands = [["rotate", "PM_SERVER_MAIL"], ["stage", job_id, "verify"]]
    for args in commands + ([["status"], ["stuck"], ["due"]] if reads else []):
        proc = run_velvet(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == ""
        for words in expected:
            assert words in proc.stderr, (args, words, proc.stderr)
        assert "Rule: " in proc.stderr
        clean(proc)
    assert refs(bare_repo) == before
    shown = run_velvet("status", "--job", job_id, "--json")
    assert json.loads(shown.stdout)["status"] == "init"


@pytest.mark.parametrize(("value", "why"), [
    ("main", "main is a code branch"),
    ("master", "master is a code branch"),
    ("HEAD", "HEAD is a symbolic ref, not a branch"),
    ("a..b", "not a valid git branch name"),
    ("velvet state", "git refuses ' ' in a branch name"),
    ("-velvet", "not a valid git branch name"),
    ("velvet.lock", "not a valid git branch name"),
])
def test_a_state_branch_that_is_not_one(run_velvet: RunVelvet, bare_repo: Path,
                                        started: tuple[str, str], value: str, why: str) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_STATE_BRANCH": value},
                       f"VELVET_STATE_BRANCH={value!r} is refused: {why}", reads=value == "HEAD")
    assert "refs/heads/HEAD" not in refs(bare_repo)


def test_the_state_repositorys_default_branch_is_refused(run_velvet: RunVelvet,
                                                         bare_repo: Path,
                                                         started: tuple[str, str]) -> None:
    git("--git-dir", str(bare_repo), "symbolic-ref", "HEAD", "refs/heads/trunk")
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_STATE_BRANCH": "trunk"},
                       "VELVET_STATE_BRANCH='trunk' is refused: it is the default branch of "
                       f"the state repository (HEAD of {bare_repo})")


def test_in_actions_the_events_default_branch_is_refused(run_velvet: RunVelvet,
                                                         tmp_path: Path) -> None:
    """In Actions VELVET_STATE is the project repository: its default branch is its code."""
    project = tmp_path / "raxx" / "velvet.git"
    git("init", "--quiet", "--bare", "--template=", str(project))
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"repository": {"full_name": "raxx/velvet",
                                                "default_branch": "develop"}}),
                     encoding="utf-8")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(event),
           "VELVET_STATE": project.as_uri(), "VELVET_STATE_BRANCH": "develop"}
    proc = run_velvet("rotate", CRED, env=env)
    assert proc.returncode == 2
    assert ("VELVET_STATE_BRANCH='develop' is refused: it is the default branch of the state "
            "repository (the default branch of raxx/velvet)") in proc.stderr
    clean(proc)
    assert refs(project) == ""
    ok = run_velvet("status", env={**env, "VELVET_STATE_BRANCH": BRANCH})
    assert ok.returncode == 0, ok.stderr


def test_an_empty_velvet_state_is_not_the_default(run_velvet: RunVelvet, bare_repo: Path,
                                                  started: tuple[str, str],
                                                  tmp_path: Path) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_STATE": ""},
                       "VELVET_STATE='' is refused: it is empty (unset it to use the default "
                       "local repository .velvet/state.git)", reads=True)
    assert not (tmp_path / ".velvet" / "state.git").exists()


@pytest.mark.parametrize("value", ["https://x-access-token:ghs_s3cr3t@github.com/raxx/velvet.git",
                                   "https://ghp_s3cr3t@github.com/raxx/velvet.git"])
def test_a_state_url_holding_a_token(run_velvet: RunVelvet, bare_repo: Path,
                                     started: tuple[str, str], value: str) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_STATE": value},
                       "VELVET_STATE='https://***@github.com/raxx/velvet.git' is refused: it "
                       "holds a user or password")
    assert "s3cr3t" not in run_velvet("status", env={"VELVET_STATE": value}).stderr


def test_a_git_transport_that_runs_commands(run_velvet: RunVelvet, bare_repo: Path,
                                            started: tuple[str, str]) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_STATE": "ext::sh -c id"},
                       "VELVET_STATE='ext::sh -c id' is refused: git transport 'ext'")


@pytest.mark.parametrize(("name", "value", "why"), [
    ("VELVET_SETTLE_SECONDS", "-5", "out of range"),
    ("VELVET_SETTLE_SECONDS", "1e309", "not a finite number"),
    ("VELVET_SETTLE_SECONDS", "nan", "not a finite number"),
    ("VELVET_SETTLE_SECONDS", "soon", "not a number"),
    ("VELVET_SETTLE_SECONDS", "86400", "out of range"),
    ("VELVET_BUDGET_TIME_SCALE", "0", "out of range"),
    ("VELVET_BUDGET_TIME_SCALE", "-1", "out of range"),
    ("VELVET_BUDGET_TIME_SCALE", "abc", "not a number"),
    ("VELVET_BUDGET_TIME_SCALE", "inf", "not a finite number"),
])
def test_numbers_are_finite_and_bounded(run_velvet: RunVelvet, bare_repo: Path,
                                        started: tuple[str, str], name: str, value: str,
                                        why: str) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {name: value},
                       f"{name}={value!r} is refused: {why}")


@pytest.mark.parametrize(("value", "shown", "why"), [
    ("ftp://x", "'ftp://x'", "the scheme is 'ftp', not http or https"),
    ("not a url", "'not a url'", "holds whitespace or a control character"),
    ("api.heroku.com", "'api.heroku.com'", "not a URL (no http:// or https://)"),
    ("https://", "'https://'", "no host"),
    ("https://user:hunter22@api.heroku.com", "'https://***@api.heroku.com'",
     "it holds a user or password"),
    ("https://api.heroku.com/?x=1", "'https://api.heroku.com/?x=1'", "it has a query"),
])
def test_vendor_urls_are_http_without_userinfo(run_velvet: RunVelvet, bare_repo: Path,
                                               started: tuple[str, str], value: str,
                                               shown: str, why: str) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_HEROKU_API_URL": value},
                       f"VELVET_HEROKU_API_URL={shown} is refused: {why}")
    proc = run_velvet("status", env={"VELVET_HEROKU_API_URL": value})
    assert "hunter22" not in proc.stderr


def test_a_vendor_module_api_url_obeys_the_same_rule(run_velvet: RunVelvet, bare_repo: Path,
                                                     started: tuple[str, str]) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_THROWAWAY_API_URL": "ftp://x"},
                       "VELVET_THROWAWAY_API_URL='ftp://x' is refused")


def test_a_verify_with_a_bad_url_records_nothing(run_velvet: RunVelvet, bare_repo: Path,
                                                 started: tuple[str, str]) -> None:
    """It used to end the job verify_failed, as if the vendor had refused the credential."""
    job_id, before = started
    proc = run_velvet("stage", job_id, "verify", env={"VELVET_HEROKU_API_URL": "ftp://x"})
    assert proc.returncode == 2
    assert refs(bare_repo) == before


def test_a_secret_is_named_never_shown(run_velvet: RunVelvet, bare_repo: Path,
                                       started: tuple[str, str]) -> None:
    value = "HRKU-s3cr3t-value\n"
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_HEROKU_TOKEN": value},
                       "VELVET_HEROKU_TOKEN (a secret: its value is not shown) is refused: it "
                       "holds whitespace or a control character")
    assert "s3cr3t" not in run_velvet("status", env={"VELVET_HEROKU_TOKEN": value}).stderr


@pytest.mark.parametrize(("value", "why"), [
    ("/dev/null", "a device, not a directory"),
    ("/proc/velvet", "the state cache cannot be created at /proc/velvet"),
])
def test_a_cache_dir_that_cannot_be_one(run_velvet: RunVelvet, bare_repo: Path,
                                        started: tuple[str, str], value: str,
                                        why: str) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_CACHE_DIR": value},
                       f"VELVET_CACHE_DIR={value!r} is refused: {why}", reads=True)


def test_a_cache_dir_under_a_file(run_velvet: RunVelvet, bare_repo: Path,
                                  started: tuple[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    refused_everywhere(run_velvet, bare_repo, started,
                       {"VELVET_CACHE_DIR": str(blocker / "cache")},
                       f"VELVET_CACHE_DIR='{blocker / 'cache'}' is refused: it cannot be "
                       f"created: {blocker} is a file")


@pytest.mark.parametrize("kind", ["directory", "missing", "device"])
def test_a_manifest_that_is_not_a_regular_file(run_velvet: RunVelvet, bare_repo: Path,
                                               started: tuple[str, str], tmp_path: Path,
                                               kind: str) -> None:
    path = {"directory": str(tmp_path), "missing": str(tmp_path / "nope.yml"),
            "device": "/dev/zero"}[kind]
    why = {"directory": "a directory, not a regular file", "missing": "no such file",
           "device": "a device, not a regular file"}[kind]
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_MANIFEST": path},
                       f"VELVET_MANIFEST={path!r} is refused: {why}")


def test_env_and_log_level_have_their_rules(run_velvet: RunVelvet, bare_repo: Path,
                                            started: tuple[str, str]) -> None:
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_ENV": "production"},
                       "VELVET_ENV='production' is refused: not one of the manifest's "
                       "environments (prod, staging)")
    refused_everywhere(run_velvet, bare_repo, started, {"VELVET_LOG": "loud"},
                       "VELVET_LOG='loud' is refused: not one of debug, info, warning, error")


def test_every_problem_is_named_at_once(run_velvet: RunVelvet, bare_repo: Path,
                                        started: tuple[str, str]) -> None:
    env = {"VELVET_STATE_BRANCH": "HEAD", "VELVET_SETTLE_SECONDS": "nan",
           "VELVET_SLACK_API_URL": "slack.com", "VELVET_ACTOR": "eve\x1b[2J"}
    proc = run_velvet("rotate", "PM_SERVER_MAIL", env=env)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "velvet: VELVET_STATE_BRANCH", "velvet: VELVET_SETTLE_SECONDS",
        "velvet: VELVET_SLACK_API_URL", "velvet: VELVET_ACTOR"]
    assert "\x1b" not in proc.stderr  # the escape is shown escaped, not sent to the terminal
    assert "'eve\\x1b[2J'" in proc.stderr


def test_good_values_pass(run_velvet: RunVelvet, tmp_path: Path) -> None:
    env = {"VELVET_SETTLE_SECONDS": "0", "VELVET_BUDGET_TIME_SCALE": "60",
           "VELVET_HEROKU_API_URL": "http://127.0.0.1:9/", "VELVET_STATE_BRANCH": "ops/velvet",
           "VELVET_LOG": "WARNING", "VELVET_CACHE_DIR": str(tmp_path / "new" / "cache"),
           "VELVET_SLACK_API_URL": ""}  # empty: unset, as a workflow's missing secret is
    proc = run_velvet("rotate", CRED, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "new" / "cache").is_dir()


def test_readme_states_every_variables_rule() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    for var in (*VARIABLES, *declared_variables()):  # the adapters' too
        # An API an adapter declares is pointed elsewhere by the row for every such API.
        declared_url = var.field is None and not var.secret and var.name.endswith("_API_URL")
        name = "VELVET_<NAME>_API_URL" if declared_url else var.name
        row = next((line for line in table.splitlines() if f"`{name}`" in line), None)
        assert row is not None, f"{var.name} is not in README's settings table"


# --- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "why"), [
    ("", "is empty"),
    ("k" * 100_000, "is 100000 characters long; at most 200 printable characters"),
    ("line one\nline two", "holds a control character"),
    ("red\x1b[31mkey", "holds a control character"),
])
def test_idempotency_keys_are_1_to_200_printable_characters(
        run_velvet: RunVelvet, bare_repo: Path, started: tuple[str, str], key: str,
        why: str) -> None:
    _, before = started
    proc = run_velvet("rotate", "PM_SERVER_MAIL", "--idempotency-key", key)
    assert proc.returncode == 2
    assert f"Invalid value for '--idempotency-key': {why}" in proc.stderr
    assert len(proc.stderr) < 1000  # the key is not echoed back
    clean(proc)
    assert refs(bare_repo) == before


def test_a_200_character_key_is_fine(run_velvet: RunVelvet) -> None:
    proc = run_velvet("rotate", CRED, "--idempotency-key", "é" * 200)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["idempotency_key"] == "é" * 200


@pytest.mark.parametrize("host", ["bad host", "-x", "a..b", "x" * 300])
def test_serve_refuses_a_host_that_is_not_one(run_velvet: RunVelvet, host: str) -> None:
    proc = run_velvet("serve", "--host", host, "--port", "1")
    assert proc.returncode == 2  # was 3 ("conflict"), from uvicorn's failed start
    assert "Invalid value for '--host'" in proc.stderr
    assert "is not an IP address or a host name" in proc.stderr
    clean(proc)


# --- the disk ------------------------------------------------------------------------------------


def run_size_limited(limit: int, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`velvet ARGS` with files limited to `limit` bytes (`ulimit -f`): the disk says no."""
    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "velvet_runner", *args], cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=TIMEOUT,
                          preexec_fn=limit_files)  # noqa: PLW1509 - no threads in the child


def test_a_full_disk_names_the_cache_and_what_to_do(run_velvet: RunVelvet, bare_repo: Path,
                                                    started: tuple[str, str],
                                                    tmp_path: Path) -> None:
    job_id, before = started
    cache = tmp_path / "cache"
    for args in (["rotate", "PM_SERVER_MAIL"], ["stage", job_id, "abort"]):
        proc = run_size_limited(200, *args, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert str(cache) in proc.stderr
        assert "file-size limit (ulimit -f)" in proc.stderr
        assert "run the command again" in proc.stderr
        clean(proc)
        assert refs(bare_repo) == before
    again = run_velvet("stage", job_id, "abort")  # with room again, the same command works
    assert again.returncode == 0, again.stderr


def test_a_full_disk_while_the_cache_is_made(tmp_path: Path, bare_repo: Path) -> None:
    proc = run_size_limited(512, "rotate", CRED, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"could not write to {tmp_path / 'cache'}" in proc.stderr
    assert "file-size limit (ulimit -f)" in proc.stderr
    clean(proc)
    assert refs(bare_repo) == ""


def test_a_file_in_the_way_of_the_default_state_repository(run_velvet: RunVelvet,
                                                           tmp_path: Path) -> None:
    (tmp_path / ".velvet").write_text("not a folder\n", encoding="utf-8")
    proc = run_velvet("rotate", CRED, env={"VELVET_STATE": None})
    assert proc.returncode == 1
    assert (f"cannot use the local state repository at {tmp_path / '.velvet'}: File exists; a "
            "file is in the way of a directory: move it") in proc.stderr
    clean(proc)
