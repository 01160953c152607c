"""Deploying the status app to Heroku, and the runbook's smoke check after it.

`deploy` is Heroku's Build API (Dev Center: "Building and Releasing Using the Platform API"):
the source tree (`git archive` of the checked-out commit) is uploaded through `POST /sources`
to its presigned `put_url`, `POST /apps/{app}/builds` builds it from the `get_url` with the
tarball's SHA-256, the build is followed until it `succeeded` (or `failed`: its output is
shown), and then the app's web dyno on that build's release until it is `up`. What it returns
is the app's `web_url` as Heroku reports it: the hostname that really serves the app (runbook
section 14: a smoke check against a hostname typed into a workflow probed the wrong one).

`smoke` probes each base URL the runbook's way: `/healthz` and `/health` answer 200 with
`{"status": "ok", "service": "velvet"}`, `/flags` with the read token answers 200 with the
flags, and `/flags` without a token answers 401 (the app is not open to strangers). Each probe
is retried until it passes or `wait` seconds have gone; every failure is named.

Neither needs the status app's dependencies: a stage install (httpx, click) runs them.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from velvet_runner.client import make_client, raise_for_vendor
from velvet_runner.errors import BadArgument, DeployFailed, SmokeFailed

HEROKU_ACCEPT = "application/vnd.heroku+json; version=3"
POLL_SECONDS = 2.0
HEALTH_BODY = {"status": "ok", "service": "velvet"}


def source_tarball(root: Path) -> bytes:
    """The checkout's files as a gzipped tarball: what git tracks, and new files it does not
    ignore (in Actions, the checked-out commit; never a .venv, a cache or other ignored file).
    """
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard",
                             "-z"], capture_output=True, check=False)
    if listed.returncode != 0:
        raise BadArgument(f"{root} is not a git checkout: "
                          f"{listed.stderr.decode(errors='replace').strip()[:300]}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in sorted(filter(None, listed.stdout.decode().split("\0"))):
            path = root / name
            if path.is_file() and not path.is_symlink():
                info = archive.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as handle:
                    archive.addfile(info, handle)
    return buffer.getvalue()


@dataclass
class Deployer:
    """One Heroku app's deploys through the Build API."""

    api_url: str
    token: SecretStr
    app: str
    say: Callable[[str], None]
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def _client(self) -> httpx.Client:
        return make_client(self.api_url, headers={
            "Accept": HEROKU_ACCEPT, "Authorization": f"Bearer {self.token.get_secret_value()}"})

    def deploy(self, tarball: bytes, version: str, *, wait: float = 600.0) -> str:
        """Build `tarball` as `version`, wait for its release's web dyno; the app's web_url."""
        deadline = self.clock() + wait
        with self._client() as api:
            source = self._json(api, "POST", "/sources", "creating a source upload URL")
            blob = source["source_blob"]
            # presigned: no Authorization, and no Content-Type (S3 signed it without one)
            with httpx.Client(timeout=120, follow_redirects=False) as upload:
                uploaded = upload.put(blob["put_url"], content=tarball)
            if uploaded.status_code // 100 != 2:
                raise DeployFailed(f"uploading the source to Heroku failed: HTTP "
                                   f"{uploaded.status_code}")
            checksum = "SHA256:" + hashlib.sha256(tarball).hexdigest()
            build = self._json(api, "POST", f"/apps/{self.app}/builds", "starting a build",
                               json={"source_blob": {"url": blob["get_url"],
                                                     "checksum": checksum,
                                                     "version": version}})
            self.say(f"build {build['id']} of {version} started ({len(tarball)} bytes)")
            while build["status"] == "pending":
                self._wait(deadline, "the build to finish")
                build = self._json(api, "GET", f"/apps/{self.app}/builds/{build['id']}",
                                   "reading the build")
            if build["status"] != "succeeded":
                raise DeployFailed(f"the build of {version} {build['status']}:\n"
                                   + self._output(build))
            release = build["release"]["id"]
            self.say(f"build succeeded: release {release}; waiting for its web dyno")
            while (state := self._dyno_state(api, release)) != "up":
                if state == "crashed":
                    raise DeployFailed(f"the web dyno of release {release} crashed at start "
                                       f"(see `heroku logs --app {self.app}`)")
                self._wait(deadline, f"the web dyno of release {release} to be up")
            info = self._json(api, "GET", f"/apps/{self.app}", "reading the app")
        web_url = str(info["web_url"]).rstrip("/")
        self.say(f"deployed {version} to {self.app}: {web_url}")
        return web_url

    def _json(self, api: httpx.Client, method: str, path: str, what: str,
              **kwargs: Any) -> Any:
        response = api.request(method, path, **kwargs)
        raise_for_vendor(response, f"Heroku: {what} for app {self.app}")
        return response.json()

    def _dyno_state(self, api: httpx.Client, release: str) -> str | None:
        dynos = self._json(api, "GET", f"/apps/{self.app}/dynos", "listing the dynos")
        states = [d["state"] for d in dynos
                  if d.get("type") == "web" and (d.get("release") or {}).get("id") == release]
        if "up" in states:
            return "up"
        return "crashed" if states and all(s == "crashed" for s in states) else None

    def _output(self, build: dict[str, Any]) -> str:
        url = build.get("output_stream_url")
        if not url:
            return "(no build output)"
        try:
            with httpx.Client(timeout=30) as plain:
                text = plain.get(url).text
        except httpx.HTTPError as exc:
            return f"(the build output could not be read: {type(exc).__name__})"
        return "\n".join(text.splitlines()[-40:])

    def _wait(self, deadline: float, what: str) -> None:
        if self.clock() >= deadline:
            raise DeployFailed(f"gave up waiting for {what}")
        self.sleep(POLL_SECONDS)


# --- the smoke check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    name: str  # what a failure is called
    path: str
    with_token: bool | None  # True: the read token; False: none (expects 401); None: public
    status: int

    def check(self, response: httpx.Response) -> str | None:
        """Why `response` fails the probe, or None."""
        if response.status_code != self.status:
            return f"answered {response.status_code}, expected {self.status}"
        if self.status != 200:
            return None
        try:
            body = response.json()
        except ValueError:
            return "answered 200 with a body that is not JSON"
        if self.path in ("/healthz", "/health") and body != HEALTH_BODY:
            return f"answered {str(body)[:120]}, expected {HEALTH_BODY}"
        if self.path == "/flags" and not (isinstance(body, dict) and all(
                isinstance(v, bool) for v in body.values())):
            return "answered 200 with something that is not the flags"
        return None


PROBES = (
    Probe("/healthz", "/healthz", None, 200),
    Probe("/health", "/health", None, 200),
    Probe("/flags (with the read token)", "/flags", True, 200),
    Probe("/flags without a token is refused (the app is closed)", "/flags", False, 401),
)


@dataclass
class Result:
    base: str
    probe: Probe
    problem: str | None  # None: passed


def smoke(bases: list[str], token: SecretStr | None, *, say: Callable[[str], None],
          wait: float = 120.0, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> list[Result]:
    """Every probe against every base URL, each retried until it passes or `wait` runs out
    (`failure` says what failed)."""
    if token is None:
        raise BadArgument("VELVET_STATUS_TOKEN is not set: the smoke check reads /flags "
                          "with one of the app's read tokens")
    for base in bases:
        if not re.match(r"^https?://[^/\s@]+(/\S*)?$", base):
            raise BadArgument(f"not an http(s) base URL without credentials: {base[:80]!r}")
    deadline = clock() + wait
    results = []
    with httpx.Client(timeout=15, follow_redirects=False) as http:
        for base in (b.rstrip("/") for b in bases):
            for probe in PROBES:
                problem = _probe(http, base, probe, token)
                while problem is not None and clock() < deadline:
                    sleep(POLL_SECONDS)
                    problem = _probe(http, base, probe, token)
                results.append(Result(base, probe, problem))
                say(f"{'ok  ' if problem is None else 'FAIL'} {probe.name} at {base}"
                    + (f": GET {base}{probe.path} {problem}" if problem else ""))
    return results


def failure(results: list[Result]) -> SmokeFailed | None:
    """The error naming each failed probe, or None when every one passed."""
    failed = [r for r in results if r.problem is not None]
    if not failed:
        return None
    return SmokeFailed("smoke check failed: " + "; ".join(
        f"{r.probe.name} at {r.base} (GET {r.base}{r.probe.path} {r.problem})"
        for r in failed))


def _probe(http: httpx.Client, base: str, probe: Probe, token: SecretStr) -> str | None:
    headers = {"Accept": "application/json"}
    if probe.with_token:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    try:
        response = http.get(base + probe.path, headers=headers)
    except httpx.HTTPError as exc:
        return f"failed: {type(exc).__name__} ({str(exc)[:120]})"
    return probe.check(response)


def summary_markdown(results: list[Result]) -> str:
    """The smoke check as a step-summary table."""
    rows = "".join(f"| {r.base} | {r.probe.name} | {'ok' if r.problem is None else r.problem} |\n"
                   for r in results)
    return "### Smoke check\n\n| app | probe | result |\n|---|---|---|\n" + rows + "\n"
