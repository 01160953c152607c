"""The fake Heroku's deploys: sources, builds, releases and a web dyno that really runs.

What it reproduces (Heroku's Build API, as the Dev Center's "Building and Releasing Using the
Platform API" and the platform schema describe it):
- `POST /sources` (201): a `source_blob` with a `put_url` and a `get_url`, presigned: the
  upload is a PUT with no Authorization and no Content-Type (S3 refuses a signed URL used with
  another Content-Type: 403 `SignatureDoesNotMatch`).
- `POST /apps/{app}/builds` (201, `status: pending`): `source_blob.url` required, only
  `checksum` (`SHA256:<64 hex>`), `url`, `version` and `version_description` allowed (422
  `invalid_params` otherwise). The build fetches the tarball, checks the checksum, unpacks it
  (a single top-level folder, as in a GitHub archive, is stepped into), needs what the Python
  buildpack needs to detect an app (requirements.txt, Pipfile.lock, poetry.lock or uv.lock;
  otherwise `failed`, "App not compatible with buildpack"), reads the Procfile, then
  `succeeded` with a new release, and the app's web dyno is restarted on it.
- `GET /apps/{app}/builds[/{id}]`, the build's `output_stream_url`, and `GET /apps/{app}/dynos`
  (`starting` until the process listens on $PORT, `up`, or `crashed` once it exits).
- The web dyno runs the Procfile's `web` command with `bash -c`, in the unpacked source, with
  the app's config vars, `PORT` and `DYNO` as its whole environment (PATH aside), as Heroku runs
  it; a config-var change restarts it, as a release does.

Where it differs, on purpose: the buildpack's `pip install` does not run (the dyno uses the
Python running the sandbox, which has the same locked versions); the app is reached at
`http://127.0.0.1:<port>/` (its `web_url`), not `https://<app>-<hash>.herokuapp.com/`; the
sandbox fetches only tarballs uploaded to its own `/sources`.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from velvet_sandbox.control import Json, json_response, utc_now

if TYPE_CHECKING:
    from velvet_sandbox.heroku import HerokuState

BLOB_PATH = "/__velvet/sources/"  # where the presigned get/put URLs point (S3's stand-in)
BUILD_FILES = ("requirements.txt", "Pipfile.lock", "poetry.lock", "uv.lock")
SOURCE_BLOB_KEYS = frozenset({"checksum", "url", "version", "version_description"})
_CHECKSUM = re.compile(r"SHA256:[0-9a-f]{64}")
_PROCESS = re.compile(r"^([A-Za-z0-9_-]{1,128}):\s*(.+)$")
STOP_SECONDS = 10.0


@dataclass
class Build:
    id: str
    app: str
    app_id: str
    user: Json
    source: Json
    status: str = "pending"
    created_at: str = field(default_factory=utc_now)
    updated_at: str = ""
    release: Json | None = None
    slug: Json | None = None
    output: list[str] = field(default_factory=list)

    def json(self, base: str) -> Json:
        return {
            "app": {"id": self.app_id}, "buildpacks": [{"url": "heroku/python",
                                                       "name": "heroku/python"}],
            "created_at": self.created_at, "id": self.id,
            "output_stream_url": f"{base}/__velvet/builds/{self.id}/output",
            "release": self.release, "slug": self.slug, "source_blob": self.source,
            "stack": "heroku-24", "status": self.status,
            "updated_at": self.updated_at or self.created_at, "user": self.user,
        }


@dataclass
class Dyno:
    id: str
    app: str
    command: str
    release: Json
    port: int
    process: subprocess.Popen[bytes]
    slug: Path
    created_at: str = field(default_factory=utc_now)

    def state(self) -> str:
        if self.process.poll() is not None:
            return "crashed"
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return "up" if sock.connect_ex(("127.0.0.1", self.port)) == 0 else "starting"

    def json(self, app_id: str) -> Json:
        return {"app": {"id": app_id, "name": self.app}, "attach_url": None,
                "command": self.command, "created_at": self.created_at, "id": self.id,
                "name": "web.1", "release": self.release, "size": "Basic",
                "state": self.state(), "type": "web", "updated_at": self.created_at}

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # Heroku: SIGTERM, then SIGKILL
                self.process.wait(timeout=STOP_SECONDS)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                if self.process.poll() is None:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()


_LIVE: weakref.WeakSet[Deploys] = weakref.WeakSet()


@atexit.register
def _stop_every_dyno() -> None:
    """A test run that dies still leaves no dyno behind (they run in sessions of their own)."""
    for deploys in list(_LIVE):
        deploys.reset()


class Deploys:
    """Sources, builds and web dynos of the fake's apps (behind the state's lock)."""

    def __init__(self, state: HerokuState, python_bin: Path | None = None) -> None:
        _LIVE.add(self)
        self.state = state
        self.python_bin = python_bin or Path(sys.executable).parent
        self.root = Path(tempfile.mkdtemp(prefix="velvet-heroku-slugs-"))
        self._sources: dict[str, bytes | None] = {}
        self._builds: dict[str, Build] = {}
        self._dynos: dict[str, Dyno] = {}
        self._ports: dict[str, int] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def reset(self) -> None:
        for dyno in list(self._dynos.values()):
            dyno.stop()
        self._dynos.clear()
        self._sources.clear()
        self._builds.clear()

    def close(self) -> None:
        self.reset()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- what the app info shows ---------------------------------------------------------

    def web_url(self, app: str) -> str:
        port = self._ports.get(app)
        return f"http://127.0.0.1:{port}/" if port else f"https://{app}.herokuapp.com/"

    # --- routes --------------------------------------------------------------------------------

    async def create_source(self, request: Request, base: str) -> Response:
        source_id = str(uuid.uuid4())
        self._sources[source_id] = None
        # an unguessable id stands in for S3's signature
        url = f"{base}{BLOB_PATH}{source_id}"
        return json_response({"source_blob": {"get_url": url, "put_url": url}}, 201)

    async def blob(self, request: Request) -> Response:
        source_id = request.path_params["source_id"]
        if source_id not in self._sources:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if request.method == "PUT":
            if request.headers.get("content-type"):
                return _s3_error(403, "SignatureDoesNotMatch", "The request signature we "
                                 "calculated does not match the signature you provided.")
            self._sources[source_id] = await request.body()
            return Response(status_code=200)
        data = self._sources[source_id]
        if data is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(data, media_type="application/octet-stream")

    def create_build(self, app: str, app_id: str, user: Json, body: Any,
                     base: str) -> Response:
        from velvet_sandbox.heroku import error

        if not isinstance(body, dict) or not isinstance(body.get("source_blob"), dict):
            return error(422, "source_blob is required.")
        blob = body["source_blob"]
        unknown = sorted(set(blob) - SOURCE_BLOB_KEYS)
        if unknown:
            return error(422, f"Invalid source_blob: unknown {', '.join(unknown)}.")
        if not isinstance(blob.get("url"), str) or not re.match(r"https?://", blob["url"]):
            return error(422, "source_blob.url must be an http(s) URL.")
        checksum = blob.get("checksum")
        if checksum is not None and not (isinstance(checksum, str)
                                         and _CHECKSUM.fullmatch(checksum)):
            return error(422, "source_blob.checksum must be SHA256:<64 hex digits>.")
        for key in ("version", "version_description"):
            if blob.get(key) is not None and not isinstance(blob[key], str):
                return error(422, f"source_blob.{key} must be a string.")
        build = Build(id=str(uuid.uuid4()), app=app, app_id=app_id, user=user,
                      source={"checksum": checksum, "url": blob["url"],
                              "version": blob.get("version"),
                              "version_description": blob.get("version_description")})
        self._builds[build.id] = build
        threading.Thread(target=self._build, args=(build, base), daemon=True,
                         name=f"heroku-build-{build.id[:8]}").start()
        return json_response(build.json(base), 201)

    def build_json(self, app: str, build_id: str | None, base: str) -> Response:
        from velvet_sandbox.heroku import error

        if build_id is None:
            return json_response([b.json(base) for b in self._builds.values() if b.app == app])
        build = self._builds.get(build_id)
        if build is None or build.app != app:
            return error(404, "Couldn't find that build.", resource="build")
        return json_response(build.json(base))

    def output(self, request: Request) -> Response:
        build = self._builds.get(request.path_params["build_id"])
        if build is None:
            return PlainTextResponse("not found\n", 404)
        return PlainTextResponse("".join(line + "\n" for line in build.output))

    def dynos_json(self, app: str, app_id: str) -> Response:
        dyno = self._dynos.get(app)
        return json_response([dyno.json(app_id)] if dyno else [])

    # --- building and running ------------------------------------------------------------------

    def _build(self, build: Build, base: str) -> None:
        say = build.output.append
        try:
            slug = self._unpack(build, base)
            say("-----> Building on the Heroku-24 stack (velvet sandbox)")
            found = [f for f in BUILD_FILES if (slug / f).is_file()]
            if not found:
                raise _BuildFailed("App not compatible with buildpack: no Python project "
                                   f"files found (one of {', '.join(BUILD_FILES)})")
            say(f"-----> Python app detected ({found[0]}); the sandbox's own Python stands "
                "in for the installed dependencies")
            processes = _procfile(slug)
            say("-----> Discovering process types")
            say(f"       Procfile declares types -> {', '.join(processes) or '(none)'}")
        except _BuildFailed as exc:
            say(f" !     {exc}")
            with self.state._lock:
                build.status, build.updated_at = "failed", utc_now()
            return
        with self.state._lock:
            app = self.state._find_app(build.app)
            if app is None:
                build.status = "failed"
                return
            app.release_version += 1
            app.updated_at = utc_now()
            build.slug = {"id": str(uuid.uuid4())}
            build.release = {"id": str(uuid.uuid4()), "version": app.release_version}
            build.status, build.updated_at = "succeeded", utc_now()
            say(f"-----> Released v{app.release_version}")
            env = dict(app.config_vars)
        self._run(build.app, slug, processes.get("web"), build.release, env)

    def _unpack(self, build: Build, base: str) -> Path:
        url = str(build.source["url"])
        source_id = url.removeprefix(f"{base}{BLOB_PATH}") if url.startswith(
            f"{base}{BLOB_PATH}") else None
        data = self._sources.get(source_id) if source_id else None
        if data is None:
            raise _BuildFailed("Unable to fetch source from the source_blob URL (the sandbox "
                               "fetches only tarballs uploaded through POST /sources)")
        checksum = build.source.get("checksum")
        if checksum and checksum != "SHA256:" + hashlib.sha256(data).hexdigest():
            raise _BuildFailed("Checksum of the source tarball does not match source_blob."
                               "checksum")
        slug = self.root / build.id
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                archive.extractall(slug, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise _BuildFailed(f"The source is not a gzipped tarball: {exc}") from None
        entries = list(slug.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            return entries[0]  # a GitHub archive's <repo>-<sha>/ folder
        return slug

    def _run(self, app: str, slug: Path, command: str | None, release: Json,
             config: dict[str, str]) -> None:
        old = self._dynos.pop(app, None)
        if old is not None:
            old.stop()
        if command is None:
            return
        port = self._ports.get(app) or _free_port()
        self._ports[app] = port
        env = {**config, "PORT": str(port), "DYNO": "web.1", "HOME": str(slug),
               "PATH": f"{self.python_bin}:/usr/local/bin:/usr/bin:/bin",
               "PYTHONUNBUFFERED": "1"}
        with open(self.root / f"{app}-web.1.log", "ab") as out:  # `heroku logs`, roughly
            process = subprocess.Popen(["bash", "-c", command], cwd=slug, env=env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self._dynos[app] = Dyno(id=str(uuid.uuid4()), app=app, command=command,
                                release=release, port=port, process=process, slug=slug)

    def restart(self, app: str) -> None:
        """A config-var change: the web dyno runs again, on the same slug, with the new vars."""
        dyno = self._dynos.get(app)
        with self.state._lock:
            found = self.state._find_app(app)
            config = dict(found.config_vars) if found else {}
        if dyno is not None:
            self._run(app, dyno.slug, dyno.command, dyno.release, config)


class _BuildFailed(Exception):
    pass


def _procfile(slug: Path) -> dict[str, str]:
    path = slug / "Procfile"
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _PROCESS.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>")
    return Response(body, status_code=status, media_type="application/xml")
