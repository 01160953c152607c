"""`Sandbox`: every registered fake on 127.0.0.1, provisioned from one manifest.

    with Sandbox(manifest) as sbx:         # start(): each fake of the registry on its own port
        world = sbx.seed_world(workdir)    # provision what the manifest names; write workdir/
        env = sbx.env(workdir)             # VELVET_* / AWS_* settings pointing at the fakes

A sandbox is one world: the manifest it was made for (default: the raxx example under
examples/raxx/) and `sandbox.yml` beside it (who the world is; optional). Velvet's own bootstrap
credentials exist from `start()`, so `env()` works before a world. `seed_world()` asks the
registry's fakes for a live token per credential (with its vault entry and companions), puts
it at every consumer's target, stands a health service in for every consumer, and writes the
sandbox's copy of the manifest, in which a healthcheck URL off this machine points at its
stand-in (`World.standins` lists them), into `workdir/manifest/` with the flag on. No fake is
named here: registry.py lists them.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import shutil
import signal
import sysconfig
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from velvet_runner.errors import InputError
from velvet_runner.manifest import HttpCheck, Manifest, load
from velvet_runner.manifest_models import PENDING, PENDING_META
from velvet_sandbox import registry
from velvet_sandbox.aws import ACCESS_KEY as AWS_ACCESS_KEY
from velvet_sandbox.aws import REGION as AWS_REGION
from velvet_sandbox.aws import SECRET_KEY as AWS_SECRET_KEY
from velvet_sandbox.consumers import ConsumersState, health_path
from velvet_sandbox.github.fake import gates
from velvet_sandbox.server import HOST

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_ssm import SSMClient

    from velvet_sandbox.aws import AwsFake

__all__ = ["AWS", "AWS_ACCESS_KEY", "AWS_REGION", "AWS_SECRET_KEY", "SERVICES", "Sandbox",
           "World", "example", "main"]

AWS = "aws"
# The fakes that serve a control API (/__velvet/), in the order they start.
SERVICES: tuple[str, ...] = tuple(name for name, cls in registry.load_all().items()
                                  if cls.control)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SANDBOX_FILE = "sandbox.yml"


def example(name: str) -> Path:
    """The manifest of example `name`: examples/<name>/ of a checkout, or of an install."""
    installed = Path(sysconfig.get_paths()["data"]) / "share" / "velvet-runner" / "examples"
    for root in (EXAMPLES, installed):
        path = root / name / "manifest" / "subscription-manifest.yml"
        if path.is_file():
            return path
    raise InputError(f"the {name} example is not installed (examples/{name}/ of the source)")


class WorldFile(BaseModel):
    """sandbox.yml beside a manifest: who the sandbox's world is. Every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: StrictStr = Field("velvet-sandbox/velvet", pattern=r"^[\w.-]+/[\w.-]+$")
    bot_email: StrictStr = "velvet-bot@sandbox.invalid"
    ops_email: StrictStr = "ops@sandbox.invalid"
    slack_channel: StrictStr = "C0VELVETSBX"
    owners: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    cached_checks: list[StrictStr] = Field(default_factory=list)

    @classmethod
    def beside(cls, manifest: Path) -> WorldFile:
        path = manifest.parent / SANDBOX_FILE
        if not path.is_file():
            return cls()
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        except (yaml.YAMLError, ValueError) as exc:
            raise InputError(f"{path}: {exc}") from None

    def identity(self) -> registry.Identity:
        return registry.Identity(self.repository, self.bot_email, self.ops_email,
                                 self.slack_channel, dict(self.owners))


@dataclass
class World:
    """What `seed_world` made: ids and live values, for tests and the CLI to report."""

    manifest_path: Path
    flags_path: Path
    values: dict[str, str] = field(default_factory=dict)  # credential name -> live value
    ids: dict[str, str] = field(default_factory=dict)  # credential -> the vendor's id of it
    vendors: dict[str, str] = field(default_factory=dict)  # credential -> vendor kind
    companions: dict[str, dict[str, str]] = field(default_factory=dict)
    http_consumers: list[str] = field(default_factory=list)
    standins: dict[str, str] = field(default_factory=dict)  # consumer -> URL it stands in for

    def manifest(self) -> Manifest:
        return load(self.manifest_path)

    def _ids(self, vendor: str) -> dict[str, str]:
        return {n: i for n, i in self.ids.items() if self.vendors[n] == vendor}

    @property
    def heroku_auth_ids(self) -> dict[str, str]:
        return self._ids("heroku")

    @property
    def cloudflare_token_ids(self) -> dict[str, str]:
        return self._ids("cloudflare")

    @property
    def postmark_server_ids(self) -> dict[str, int]:
        return {n: int(i) for n, i in self._ids("postmark").items()}

    @property
    def aws_access_key_ids(self) -> dict[str, str]:
        return self._ids("aws_iam")


class Sandbox:
    """Every registered fake on loopback, for one world. A context manager, or start()/stop().

    `sandbox.<fake>` (heroku, github, consumers, ...) is that fake's in-memory state.
    """

    def __init__(self, base_port: int | None = None, manifest: str | Path | None = None) -> None:
        self.base_port = base_port
        self.source = Path(manifest) if manifest is not None else example("raxx")
        self.world_file = WorldFile.beside(self.source)
        self.identity = self.world_file.identity()
        self.fakes = {name: cls() for name, cls in registry.load_all().items()}
        consumers: ConsumersState = self.fakes["consumers"].state
        consumers.validators.update({vendor: fake.is_live for fake in self.fakes.values()
                                     for vendor in fake.vendors})
        self.urls: dict[str, str] = {}
        self.roots: dict[str, str] = {}  # server roots: where `/__velvet/` lives
        self._servers: list[registry.Server] = []
        self._boot: dict[str, str] = {}  # the settings of Velvet's own credentials
        self._started = False

    def __getattr__(self, name: str) -> Any:
        fakes = self.__dict__.get("fakes", {})
        if name in fakes:
            return fakes[name].state
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Sandbox:
        if self._started:
            return self
        try:
            for fake in self.fakes.values():
                port = 0 if self.base_port is None else self.base_port + len(self._servers)
                server = fake.serve(port)
                if server is None:
                    continue
                server.start()
                self._servers.append(server)
                fake.root = self.roots[fake.name] = server.url
                self.urls[fake.name] = fake.url
        except BaseException:
            self.stop()
            raise
        self._started = True
        self._seed_bootstrap()
        return self

    def stop(self) -> None:
        for server in self._servers:
            request_stop = getattr(server, "request_stop", None)
            if request_stop is not None:
                request_stop()  # lets the servers stop in parallel
        for server in self._servers:
            server.stop()
        self._servers.clear()
        self.heroku.deploys.reset()  # the web dynos a rehearsed deploy started
        self._started = False

    def control_url(self, service: str) -> str:
        """Base of a fake's control API, e.g. http://127.0.0.1:P/__velvet."""
        return self.roots[service] + "/__velvet"

    def health_url(self, consumer_id: str) -> str:
        return self.roots["consumers"] + health_path(consumer_id)

    # --- settings -------------------------------------------------------------------------

    def env(self, workdir: str | Path) -> dict[str, str]:
        """Everything Velvet reads from the environment, pointing at this sandbox."""
        self._require_started()
        work = Path(workdir).resolve()  # a workflow's working directory is elsewhere
        env = {fake.setting: fake.url for fake in self.fakes.values()
               if fake.setting and fake.root}
        env.update(self._boot)
        env.update({
            "VELVET_MANIFEST": str(work / "manifest" / "subscription-manifest.yml"),
            "VELVET_STATE": str(work / "state.git"),
            "VELVET_ENV": self.default_env(),
            "VELVET_OPS_EMAIL": self.identity.ops_email,
        })
        return env

    def default_env(self) -> str:
        """The env Velvet serves in this sandbox: prod if the manifest serves it."""
        envs = list(gates(load(self.source))) or ["prod"]
        return "prod" if "prod" in envs else envs[0]

    def token_values(self) -> list[str]:
        """Every secret value the sandbox or its fakes ever issued, for leak scans."""
        return sorted({v for fake in self.fakes.values() for v in fake.token_values()})

    # --- AWS clients ----------------------------------------------------------------------

    @property
    def _aws(self) -> AwsFake:
        fake: AwsFake = self.fakes[AWS]  # type: ignore[assignment]
        return fake

    def ssm(self) -> SSMClient:
        return self._aws.ssm()

    def iam(self) -> IAMClient:
        return self._aws.iam()

    def ssm_value(self, name: str) -> str | None:
        """An SSM parameter's decrypted value, or None when it does not exist."""
        return self._aws.parameter(name)

    # --- the world ------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the sandbox is not started")

    def _seed_bootstrap(self) -> None:
        """Velvet's own credentials (runbook section 8), never rotated by Velvet itself, and
        the frame of the world: what they may reach (Infisical projects) and the gates."""
        manifest = load(self.source)
        for fake in self.fakes.values():
            self._boot.update(fake.bootstrap(self.identity))
        for fake in self.fakes.values():
            fake.prepare(manifest, self.identity)

    def _fake(self, role: str, kind: str) -> registry.Fake:
        for fake in self.fakes.values():
            if kind in getattr(fake, role):
                return fake
        raise InputError(f"{self.source}: the sandbox has no fake for {kind} (a module of "
                         "velvet_sandbox/ registers one)")

    def seed_world(self, workdir: str | Path) -> World:
        """Provision the manifest's world; write its sandbox copy and flags into workdir."""
        self._require_started()
        work = Path(workdir).resolve()  # a workflow's working directory is elsewhere
        manifest = load(self.source)
        (work / "manifest").mkdir(parents=True, exist_ok=True)
        world = World(manifest_path=work / "manifest" / "subscription-manifest.yml",
                      flags_path=work / "manifest" / "flags.yml")
        for credential in manifest.credentials:
            self._provision(credential, world)
        document = yaml.safe_load(self.source.read_text(encoding="utf-8"))
        for raw in document["credentials"]:
            for consumer in raw.get("consumers") or []:
                if consumer["consumer_id"] in world.standins:
                    consumer["healthcheck"]["url"] = self.health_url(consumer["consumer_id"])
        world.manifest_path.write_text(
            f"# The sandbox's copy of {self.source}: every healthcheck URL off this machine "
            "points at its consumer's stand-in.\n"
            + yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, width=100),
            encoding="utf-8")
        world.flags_path.write_text("velvet_v2_rotation: true\n", encoding="utf-8")
        world.manifest()  # refuse to hand out a manifest Velvet would reject
        # The sandbox's own state repository: Velvet creates none but its default implicitly.
        from velvet_runner.gitbranch import create_repository

        create_repository(Path(self.env(work)["VELVET_STATE"]))
        return world

    def add_twins(self, world: World, base: str, names: list[str]) -> None:
        """Copies of credential `base` in the world's manifest, each with its own vault slot
        and consumer places (their names suffixed, as one writer per place requires) and its
        own live token, provisioned as seed_world provisions the rest: a scale rehearsal's
        inventory."""
        document = yaml.safe_load(world.manifest_path.read_text(encoding="utf-8"))
        raw = next(c for c in document["credentials"] if c["name"] == base)
        for k, name in enumerate(names):
            twin = copy.deepcopy(raw)
            twin["name"] = name
            for place in (twin["vault"], *twin["consumers"]):
                for key in ("var", "secret", "name"):  # what names a place, per kind
                    if key in place:
                        place[key] = f"{place[key]}_T{k}"
            for consumer in twin["consumers"]:
                consumer["consumer_id"] = f"{consumer['consumer_id']}-t{k}"
            document["credentials"].append(twin)
        world.manifest_path.write_text(
            yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, width=100),
            encoding="utf-8")
        for credential in world.manifest().credentials:
            if credential.name in names:
                self._provision(credential, world)

    def _provision(self, credential: Any, world: World) -> None:
        """A live token at its vendor, in its vault with its companions, at every consumer."""
        name = credential.name
        issued = self._fake("vendors", credential.vendor).issue(credential, self.identity)
        world.values[name], world.vendors[name] = issued.value, credential.vendor
        world.companions[name] = dict(issued.companions)
        if issued.auth_id is not None:
            world.ids[name] = issued.auth_id
        vault = self._fake("targets", credential.vault.kind)
        vault.hold(credential.vault, issued.value)
        # A fresh world holds no job's pending value: the last world's jobs are gone.
        for suffix in (PENDING, PENDING_META):
            vault.forget(credential.vault.slot(suffix))
        for suffix, extra in issued.companions.items():
            vault.hold(credential.vault.slot(f"__{suffix}"), extra)
        consumers: ConsumersState = self.fakes["consumers"].state
        for consumer in credential.consumers:
            holder = self._fake("targets", consumer.kind)
            holder.hold(consumer, issued.value)
            consumers.register(consumer.consumer_id, credential.vendor,
                               functools.partial(holder.held, consumer),
                               cache=consumer.consumer_id in self.world_file.cached_checks,
                               description=consumer.describe())
            check = consumer.healthcheck
            if isinstance(check, HttpCheck):
                world.http_consumers.append(consumer.consumer_id)
                if not _on_this_machine(str(check.url)):
                    world.standins[consumer.consumer_id] = str(check.url)


def _on_this_machine(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _PlainDumper(yaml.SafeDumper):
    """No &anchors/*aliases: the manifest is read by people, and the loader caps aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# The raxx example's names, as the tests imported them before the example moved to
# examples/raxx/: each is read from the example's files, none is spelled out here.
_EXAMPLE_NAMES: dict[str, Callable[[WorldFile, Manifest], Any]] = {
    "GITHUB_REPOSITORY": lambda w, m: w.repository,
    "VELVET_BOT_EMAIL": lambda w, m: w.bot_email,
    "OPS_EMAIL": lambda w, m: w.ops_email,
    "SLACK_CHANNEL": lambda w, m: w.slack_channel,
    "PLATFORM_EMAIL": lambda w, m: w.owners["HK_PLATFORM_FULL"],
    "DEPLOY_BOT_EMAIL": lambda w, m: w.owners["HK_DEPLOY_BOT"],
    "APPROVERS": lambda w, m: gates(m),
    "INFISICAL_PROJECT": lambda w, m: m.credentials[0].vault.project_id,  # type: ignore[attr-defined]
    "INFISICAL_ENV": lambda w, m: m.credentials[0].vault.environment,  # type: ignore[attr-defined]
    "VAULT_PATH": lambda w, m: m.credentials[0].vault.secret_path,  # type: ignore[attr-defined]
    "GITHUB_PLATFORM_REPO": lambda w, m: next(
        c.repository for cred in m.credentials for c in cred.consumers  # type: ignore[attr-defined]
        if c.kind == "github_actions_secret"),
}


def __getattr__(name: str) -> Any:
    if name in _EXAMPLE_NAMES:
        source = example("raxx")
        return _EXAMPLE_NAMES[name](WorldFile.beside(source), load(source))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fresh_state(workdir: Path) -> list[str]:
    """Remove the state repository and cache a previous sandbox left in `workdir`: their jobs
    are about tokens that died with that sandbox's fakes. What was removed, for the output."""
    removed = []
    for name in ("state.git", "cache"):
        path = workdir / name
        if path.exists():
            shutil.rmtree(path)
            removed.append(str(path))
    return removed


def _stop_on_signals() -> None:
    """Ctrl-C and a plain `kill` stop the sandbox cleanly, wherever it was started from: a
    shell runs a background command with SIGINT ignored, and a child inherits that."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (an embedding test's thread)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def main(port: int | None = None, workdir: str | Path | None = None,
         echo: Callable[[str], None] = print, manifest: str | Path | None = None) -> None:
    """`velvet sandbox`: start the fakes, provision the manifest's world, print the env, wait
    for Ctrl-C. The state repository starts and ends with the fakes."""
    own_dir = None
    if workdir is None:
        own_dir = tempfile.TemporaryDirectory(prefix="velvet-sandbox-")
        workdir = own_dir.name
    work = Path(workdir).resolve()
    _stop_on_signals()
    removed = fresh_state(work)
    sandbox = Sandbox(base_port=port, manifest=manifest)
    try:
        sandbox.start()
        world = sandbox.seed_world(work)
        env = {**sandbox.env(work), "VELVET_CACHE_DIR": str(work / "cache")}
        for key, value in sorted(env.items()):
            echo(f"{key}={value}")
        echo(f"# world: {len(world.values)} credentials of {sandbox.source}, each live at its "
             "fake and held by every consumer")
        echo(f"# state: a new state repository {env['VELVET_STATE']}" + (
            f" (the last sandbox's state, about tokens that no longer exist, was removed: "
            f"{', '.join(removed)})" if removed else ""))
        for consumer_id, url in world.standins.items():
            echo(f"# healthcheck {consumer_id}: {url} is off this machine; its stand-in "
                 f"answers at {sandbox.health_url(consumer_id)}")
        echo(f"# consumers service: {sandbox.urls['consumers']} "
             "(GET /consumers/<consumer_id>/health, GET /__velvet/consumers)")
        echo(f"# fakes on {HOST}; control API under <url>/__velvet/; Ctrl-C to stop")
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        fresh_state(work)  # the state ends with the fakes
        if own_dir is not None:
            own_dir.cleanup()
