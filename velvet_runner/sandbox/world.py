"""`Sandbox`: every fake on 127.0.0.1, plus a realistic world and the env Velvet needs.

    with Sandbox() as sbx:                 # start(): heroku, cloudflare, postmark, infisical,
        world = sbx.seed_world(workdir)    # github, slack, consumers and moto, each on a port
        env = sbx.env(workdir)             # VELVET_* / AWS_* settings pointing at the fakes

Velvet's own bootstrap credentials (Heroku bot token, Infisical machine identity, GitHub and
Slack tokens, the ops Postmark server) exist from `start()`, so `env()` works without a world.
`seed_world()` adds the credentials of the demo manifest, writes the manifest and flags into
`workdir/manifest/`, and makes every consumer hold its credential's live value.

moto keeps its AWS state per process, not per server: two Sandboxes in one process share IAM
and SSM. Seeding is idempotent for AWS (an existing live key is adopted rather than replaced),
so a second Sandbox never invalidates the first one's AWS_DEPLOY_KEY.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from velvet_runner.manifest import Manifest, load
from velvet_runner.sandbox import cloudflare, consumers, github, heroku, infisical, postmark, slack
from velvet_runner.sandbox.server import HOST, MotoThread, ServerThread

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_ssm import SSMClient

# Order fixes the ports when a base port is given: base+0 heroku … base+7 aws.
SERVICES = ("heroku", "cloudflare", "postmark", "infisical", "github", "slack", "consumers")
AWS = "aws"

AWS_REGION = "us-east-1"
AWS_ACCESS_KEY = "testing"
AWS_SECRET_KEY = "testing"

VELVET_BOT_EMAIL = "velvet-bot@raxx.app"
PLATFORM_EMAIL = "platform@raxx.app"
DEPLOY_BOT_EMAIL = "deploy-bot@raxx.app"
INFISICAL_PROJECT = "raxx-platform"
INFISICAL_ENV = "prod"
VAULT_PATH = "/velvet"
GITHUB_REPOSITORY = "raxx/velvet"
GITHUB_PLATFORM_REPO = "raxx/platform"
SLACK_CHANNEL = "C0VELVETOPS"
OPS_EMAIL = "ops@raxx.app"
RAXX_APP_ZONE_ID = "5c1e3f0b9a7d4e2f8b6a0c9d1e2f3a4b"
APPROVERS = {"prod": ["alice", "bob"]}


@dataclass
class World:
    """What `seed_world` made: ids and live values, for tests to assert against."""

    manifest_path: Path
    flags_path: Path
    values: dict[str, str] = field(default_factory=dict)  # credential name -> live value
    heroku_auth_ids: dict[str, str] = field(default_factory=dict)
    cloudflare_token_ids: dict[str, str] = field(default_factory=dict)
    postmark_server_ids: dict[str, int] = field(default_factory=dict)
    aws_access_key_ids: dict[str, str] = field(default_factory=dict)
    http_consumers: list[str] = field(default_factory=list)

    def manifest(self) -> Manifest:
        return load(self.manifest_path)


@dataclass
class _Bootstrap:
    heroku_token: str = ""
    heroku_auth_id: str = ""
    infisical_client_id: str = ""
    infisical_client_secret: str = ""
    github_token: str = ""
    slack_token: str = ""
    postmark_server_token: str = ""


class Sandbox:
    """All fakes and moto on loopback. Use as a context manager, or start()/stop()."""

    def __init__(self, base_port: int | None = None) -> None:
        self.base_port = base_port
        self.heroku = heroku.HerokuState()
        self.cloudflare = cloudflare.CloudflareState()
        self.postmark = postmark.PostmarkState()
        self.infisical = infisical.State()
        self.github = github.State()
        self.slack = slack.State()
        self.consumers = consumers.ConsumersState({
            "heroku": self.heroku.token_is_live,
            "cloudflare": self.cloudflare.token_is_live,
            "postmark": self.postmark.token_is_live,
        })
        self.urls: dict[str, str] = {}
        self.roots: dict[str, str] = {}  # server roots: where `/__velvet/` lives
        self._servers: list[ServerThread] = []
        self._moto: MotoThread | None = None
        self._boot = _Bootstrap()
        self._secrets: list[str] = []  # values the sandbox made outside the vendor fakes
        self._started = False

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
        apps = {
            "heroku": heroku.create_app(self.heroku),
            "cloudflare": cloudflare.create_app(self.cloudflare),
            "postmark": postmark.create_app(self.postmark),
            "infisical": infisical.create_app(self.infisical),
            "github": github.create_app(self.github),
            "slack": slack.create_app(self.slack),
            "consumers": consumers.create_app(self.consumers),
        }
        try:
            for i, name in enumerate(SERVICES):
                port = 0 if self.base_port is None else self.base_port + i
                srv = ServerThread(apps[name], port, name=name)
                srv.start()
                self._servers.append(srv)
                self.roots[name] = srv.url
            self._moto = MotoThread(0 if self.base_port is None else self.base_port + len(SERVICES))
            self._moto.start()
            self.roots[AWS] = self._moto.url
        except BaseException:
            self.stop()
            raise
        self.urls = {
            "heroku": self.roots["heroku"],
            "cloudflare": self.roots["cloudflare"] + cloudflare.BASE_PATH,
            "postmark": self.roots["postmark"],
            "infisical": self.roots["infisical"],
            "github": self.roots["github"],
            "slack": self.roots["slack"] + "/api/",
            "consumers": self.roots["consumers"],
            AWS: self.roots[AWS],
        }
        self._started = True
        self._seed_bootstrap()
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.request_stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        for srv in self._servers:
            srv.stop()
        self._servers.clear()
        self.heroku.deploys.reset()  # the web dynos a rehearsed deploy started
        self._started = False

    def control_url(self, service: str) -> str:
        """Base of a fake's control API, e.g. http://127.0.0.1:P/__velvet."""
        return self.roots[service] + "/__velvet"

    def health_url(self, consumer_id: str) -> str:
        return self.roots["consumers"] + consumers.health_path(consumer_id)

    # --- settings -------------------------------------------------------------------------

    def env(self, workdir: str | Path) -> dict[str, str]:
        """Everything Velvet reads from the environment, pointing at this sandbox."""
        self._require_started()
        work = Path(workdir).resolve()  # a workflow's working directory is elsewhere
        return {
            "VELVET_HEROKU_API_URL": self.urls["heroku"],
            "VELVET_CLOUDFLARE_API_URL": self.urls["cloudflare"],
            "VELVET_POSTMARK_API_URL": self.urls["postmark"],
            "VELVET_INFISICAL_API_URL": self.urls["infisical"],
            "VELVET_GITHUB_API_URL": self.urls["github"],
            "VELVET_SLACK_API_URL": self.urls["slack"],
            "AWS_ENDPOINT_URL": self.urls[AWS],
            "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET_KEY,
            "AWS_DEFAULT_REGION": AWS_REGION,
            "VELVET_MANIFEST": str(work / "manifest" / "subscription-manifest.yml"),
            "VELVET_STATE": str(work / "state.git"),
            "VELVET_ENV": "prod",
            "VELVET_HEROKU_TOKEN": self._boot.heroku_token,
            "VELVET_INFISICAL_CLIENT_ID": self._boot.infisical_client_id,
            "VELVET_INFISICAL_CLIENT_SECRET": self._boot.infisical_client_secret,
            "VELVET_GITHUB_TOKEN": self._boot.github_token,
            "VELVET_GITHUB_REPOSITORY": GITHUB_REPOSITORY,
            "VELVET_SLACK_TOKEN": self._boot.slack_token,
            "VELVET_SLACK_CHANNEL": SLACK_CHANNEL,
            "VELVET_POSTMARK_SERVER_TOKEN": self._boot.postmark_server_token,
            "VELVET_OPS_EMAIL": OPS_EMAIL,
        }

    def token_values(self) -> list[str]:
        """Every secret value the sandbox or its fakes ever issued, for leak scans."""
        values: list[str] = [*self._secrets]
        for fake in (self.heroku, self.cloudflare, self.postmark, self.infisical, self.github,
                     self.slack):
            values += fake.token_values()
        values += self._moto_secret_keys()
        return sorted(set(values))

    # --- AWS clients ----------------------------------------------------------------------

    def ssm(self) -> SSMClient:
        import boto3

        return boto3.client("ssm", **self._aws_kwargs())

    def iam(self) -> IAMClient:
        import boto3

        return boto3.client("iam", **self._aws_kwargs())

    def _aws_kwargs(self) -> dict[str, Any]:
        self._require_started()
        return {"endpoint_url": self.urls[AWS], "region_name": AWS_REGION,
                "aws_access_key_id": AWS_ACCESS_KEY, "aws_secret_access_key": AWS_SECRET_KEY}

    def ssm_value(self, name: str) -> str | None:
        """An SSM parameter's decrypted value, or None when it does not exist."""
        try:
            found = self.ssm().get_parameter(Name=name, WithDecryption=True)
        except Exception as exc:  # noqa: BLE001 - botocore raises a dynamic class
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise
        return found["Parameter"].get("Value")

    # --- the world ------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the sandbox is not started")

    def _secret(self, value: str) -> str:
        self._secrets.append(value)
        return value

    def _seed_bootstrap(self) -> None:
        """Velvet's own credentials (runbook section 8): never rotated by Velvet itself."""
        b = self._boot
        bot = self.heroku.add_user(VELVET_BOT_EMAIL, "Velvet bot")
        # Least privilege: the bot writes and reads config vars; it cannot mint authorizations.
        b.heroku_auth_id, b.heroku_token = self.heroku.add_authorization(
            bot, ["read-protected", "write-protected"], "HK_VELVET_BOOTSTRAP")
        b.infisical_client_id = str(uuid.uuid4())
        b.infisical_client_secret = self._secret(secrets.token_hex(32))
        self.infisical.add_identity(b.infisical_client_id, b.infisical_client_secret,
                                    [INFISICAL_PROJECT])
        b.github_token = self._secret("ghs_" + secrets.token_urlsafe(27)[:36])
        self.github.add_repo(GITHUB_REPOSITORY)
        self.github.add_repo(GITHUB_PLATFORM_REPO)
        self.github.add_environment(GITHUB_REPOSITORY, "prod", APPROVERS["prod"])
        self.github.add_token(b.github_token, login="velvet-bot")
        b.slack_token = self._secret("xoxb-" + secrets.token_hex(24))
        self.slack.add_token(b.slack_token, user="velvet-bot")
        self.slack.add_channel(SLACK_CHANNEL, "velvet-ops")
        b.postmark_server_token = self.postmark.add_server("velvet-ops").tokens[0]

    def seed_world(self, workdir: str | Path) -> World:
        """Create the demo world's credentials and consumers; write manifest/ into workdir."""
        self._require_started()
        work = Path(workdir).resolve()  # a workflow's working directory is elsewhere
        (work / "manifest").mkdir(parents=True, exist_ok=True)
        world = World(manifest_path=work / "manifest" / "subscription-manifest.yml",
                      flags_path=work / "manifest" / "flags.yml")
        credentials = [
            self._hk_platform_full(world),
            self._hk_deploy_bot(world),
            self._pm_server_mail(world),
            self._cf_dns_edit(world),
            self._cf_zone_read(world),
            self._aws_deploy_key(world),
        ]
        document = {"version": 1, "credentials": credentials}
        world.manifest_path.write_text(
            "# Generated by velvet_runner.sandbox.world: the sandbox's demo world.\n"
            + yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, width=100),
            encoding="utf-8")
        world.flags_path.write_text("velvet_v2_rotation: true\n", encoding="utf-8")
        world.manifest()  # refuse to hand out a manifest Velvet would reject
        # The sandbox's own state repository: Velvet creates none but its default implicitly.
        from velvet_runner.store import create_repository

        create_repository(Path(self.env(work)["VELVET_STATE"]))
        return world

    # Each credential below: mint at its vendor, store in its vault, copy to every consumer,
    # register the http consumers, and return its manifest entry.

    def _vault_infisical(self, name: str, value: str, companions: dict[str, str]) -> Any:
        self.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH, name, value)
        for suffix, extra in companions.items():
            self.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH,
                                      f"{name}__{suffix}", extra)
        return {"kind": "infisical_secret", "project_id": INFISICAL_PROJECT,
                "environment": INFISICAL_ENV, "secret_path": VAULT_PATH, "name": name}

    def _http(self, world: World, consumer_id: str, vendor: str,
              source: Callable[[], str | None], description: str, *, cache: bool = False,
              ) -> dict[str, Any]:
        self.consumers.register(consumer_id, vendor, source, cache=cache,
                                description=description)
        world.http_consumers.append(consumer_id)
        return {"type": "http", "url": self.health_url(consumer_id), "expect_status": 200,
                "timeout_seconds": 5.0}

    def _heroku_consumer(self, world: World, consumer_id: str, app: str, var: str,
                         value: str, *, vendor: str = "heroku", check: str = "http",
                         cache: bool = False) -> dict[str, Any]:
        if self.heroku._find_app(app) is None:
            self.heroku.add_app(app, {"APP_ENV": app.rsplit("-", 1)[-1]})
        self.heroku.set_config_vars(app, {var: value})
        entry: dict[str, Any] = {"consumer_id": consumer_id, "kind": "heroku_config_var",
                                 "env": "prod", "app": app, "var": var}
        if check == "http":
            entry["healthcheck"] = self._http(
                world, consumer_id, vendor,
                lambda: self.heroku.config_var(app, var),
                f"heroku app {app} config var {var}", cache=cache)
        else:
            entry["healthcheck"] = {"type": "none"}
        return entry

    def _github_consumer(self, world: World, consumer_id: str, vendor: str, repo: str,
                         secret: str, value: str) -> dict[str, Any]:
        scope = f"repo:{repo}"
        self.github.set_secret(scope, secret, value)
        return {"consumer_id": consumer_id, "kind": "github_actions_secret", "env": "prod",
                "repository": repo, "secret": secret,
                "healthcheck": self._http(world, consumer_id, vendor,
                                          lambda: self.github.secret_plaintext(scope, secret),
                                          f"github {repo} secret {secret}")}

    def _infisical_consumer(self, world: World, consumer_id: str, vendor: str, path: str,
                            name: str, value: str) -> dict[str, Any]:
        self.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, path, name, value)
        return {"consumer_id": consumer_id, "kind": "infisical_secret", "env": "prod",
                "project_id": INFISICAL_PROJECT, "environment": INFISICAL_ENV,
                "secret_path": path, "name": name,
                "healthcheck": self._http(
                    world, consumer_id, vendor,
                    lambda: self.infisical.secret_value(INFISICAL_PROJECT, INFISICAL_ENV, path,
                                                        name),
                    f"infisical {INFISICAL_PROJECT}/{INFISICAL_ENV}{path} {name}")}

    def _ssm_consumer(self, consumer_id: str, name: str, value: str) -> dict[str, Any]:
        self.ssm().put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
        return {"consumer_id": consumer_id, "kind": "aws_ssm_parameter", "env": "prod",
                "name": name, "region": AWS_REGION, "healthcheck": {"type": "readback"}}

    def _credential(self, name: str, vendor: str, vault: Any, consumers_: list[Any],
                    description: str, **extra: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "vendor": vendor, "env": "prod"}
        entry.update(extra)
        entry.update({"schedule": "90d", "description": description, "vault": vault,
                      "approvers": APPROVERS, "consumers": consumers_})
        return entry

    def _hk_platform_full(self, world: World) -> dict[str, Any]:
        name = "HK_PLATFORM_FULL"
        auth_id, token = self.heroku.add_authorization(PLATFORM_EMAIL, ["global"], name)
        world.values[name], world.heroku_auth_ids[name] = token, auth_id
        vault = self._vault_infisical(name, token, {"AUTH_ID": auth_id})
        rows = [
            self._heroku_consumer(world, "heroku-config-console-prod", "raxx-console-prod",
                                  "HEROKU_API_KEY", token),
            self._heroku_consumer(world, "heroku-config-api-prod", "raxx-api-prod",
                                  "HEROKU_API_KEY", token),
            # Registered env: prod on purpose (runbook section 11): one key for both envs.
            self._heroku_consumer(world, "heroku-config-console-staging",
                                  "raxx-console-staging", "HEROKU_API_KEY", token),
            self._heroku_consumer(world, "heroku-config-api-staging", "raxx-api-staging",
                                  "HEROKU_API_KEY", token),
            self._github_consumer(world, "github-actions-heroku-api-key", "heroku",
                                  GITHUB_PLATFORM_REPO, "HEROKU_API_KEY", token),
            self._infisical_consumer(world, "infisical-heroku-prod", "heroku", "/heroku",
                                     "HEROKU_API_KEY", token),
            self._ssm_consumer("ssm-heroku-prod", "/raxx/prod/heroku/HK_PLATFORM_FULL", token),
        ]
        return self._credential(name, "heroku", vault, rows,
                                "Heroku platform API key (global scope, platform@raxx.app)",
                                options={"scope": ["global"]})

    def _hk_deploy_bot(self, world: World) -> dict[str, Any]:
        name = "HK_DEPLOY_BOT"
        auth_id, token = self.heroku.add_authorization(DEPLOY_BOT_EMAIL, ["global"], name)
        world.values[name], world.heroku_auth_ids[name] = token, auth_id
        vault = self._vault_infisical(name, token, {"AUTH_ID": auth_id})
        rows = [
            self._heroku_consumer(world, "heroku-config-deploy-prod", "raxx-deploy-prod",
                                  "HEROKU_DEPLOY_KEY", token),
            # Caches its check until restarted: the runbook's rev_leaked root cause.
            self._heroku_consumer(world, "heroku-config-worker-prod", "raxx-worker-prod",
                                  "HEROKU_DEPLOY_KEY", token, cache=True),
            self._heroku_consumer(world, "heroku-config-legacy-cron-prod",
                                  "raxx-legacy-cron-prod", "HEROKU_DEPLOY_KEY", token,
                                  check="none"),
        ]
        return self._credential(name, "heroku", vault, rows,
                                "Deploy bot key (deploy-bot@raxx.app); one cached consumer, "
                                "one manual", options={"scope": ["global"]})

    def _pm_server_mail(self, world: World) -> dict[str, Any]:
        name = "PM_SERVER_MAIL"
        server = self.postmark.add_server("raxx-transactional")
        token = server.tokens[0]
        world.values[name], world.postmark_server_ids[name] = token, server.id
        vault = self._vault_infisical(name, token, {"SERVER_ID": str(server.id)})
        rows = [self._infisical_consumer(world, "infisical-postmark-prod", "postmark", "/mail",
                                         "POSTMARK_SERVER_TOKEN", token)]
        return self._credential(name, "postmark", vault, rows,
                                "Postmark server token of raxx-transactional (operator-assisted)",
                                options={"token_type": "server"})

    def _cf_policies(self, *groups: str, manage: bool = False) -> list[dict[str, Any]]:
        policies: list[dict[str, Any]] = [{
            "effect": "allow",
            "resources": {f"com.cloudflare.api.account.zone.{RAXX_APP_ZONE_ID}": "*"},
            "permission_groups": [{"id": g} for g in groups],
        }]
        if manage:
            policies.append({
                "effect": "allow",
                "resources": {f"com.cloudflare.api.user.{self.cloudflare.user_id}": "*"},
                "permission_groups": [{"id": cloudflare.API_TOKENS_WRITE}],
            })
        return policies

    def _cf_dns_edit(self, world: World) -> dict[str, Any]:
        name = "CF_DNS_EDIT_RAXX_APP"
        token_id, value = self.cloudflare.add_token(
            cloudflare.USER, self._cf_policies(cloudflare.DNS_WRITE, cloudflare.ZONE_READ), name)
        world.values[name], world.cloudflare_token_ids[name] = value, token_id
        vault = self._vault_infisical(name, value, {"TOKEN_ID": token_id})
        rows = [self._infisical_consumer(world, "infisical-cf-dns-edit-prod", "cloudflare",
                                         "/dns", "CLOUDFLARE_API_TOKEN", value)]
        # Inactive until the Cloudflare adapter question (runbook OQ7) is settled.
        return self._credential(name, "cloudflare", vault, rows,
                                "DNS edit token for raxx.app (no token-management permission)",
                                active=False, options={"token_type": "user"})

    def _cf_zone_read(self, world: World) -> dict[str, Any]:
        name = "CF_ZONE_READ"
        token_id, value = self.cloudflare.add_token(
            cloudflare.USER, self._cf_policies(cloudflare.ZONE_READ, manage=True), name)
        world.values[name], world.cloudflare_token_ids[name] = value, token_id
        vault = self._vault_infisical(name, value, {"TOKEN_ID": token_id})
        rows = [
            self._github_consumer(world, "github-actions-cf-zone-read", "cloudflare",
                                  GITHUB_PLATFORM_REPO, "CLOUDFLARE_ZONE_READ_TOKEN", value),
            self._heroku_consumer(world, "heroku-config-cf-zone-read-console",
                                  "raxx-console-prod", "CLOUDFLARE_API_TOKEN", value,
                                  vendor="cloudflare"),
        ]
        return self._credential(name, "cloudflare", vault, rows,
                                "Zone read token; holds API Tokens Write so it can rotate itself",
                                options={"token_type": "user"})

    def _aws_deploy_key(self, world: World) -> dict[str, Any]:
        name, user = "AWS_DEPLOY_KEY", "raxx-deploy"
        vault_name = f"/raxx/prod/aws_iam/{name}"
        value = self._adopt_or_create_key(user, vault_name)
        world.values[name] = value
        world.aws_access_key_ids[name] = value.split(":", 1)[0]
        self.ssm().put_parameter(Name=vault_name, Value=value, Type="SecureString",
                                 Overwrite=True)
        rows = [
            self._ssm_consumer("ssm-aws-deploy-ci", f"/raxx/prod/aws_iam/ci/{name}", value),
            self._ssm_consumer("ssm-aws-deploy-worker", f"/raxx/prod/aws_iam/worker/{name}",
                               value),
        ]
        vault = {"kind": "aws_ssm_parameter", "name": vault_name, "region": AWS_REGION}
        return self._credential(name, "aws_iam", vault, rows,
                                "Access key of IAM user raxx-deploy, stored as AKID:SECRET",
                                options={"user_name": user, "region": AWS_REGION})

    def _adopt_or_create_key(self, user: str, vault_name: str) -> str:
        """Reuse the key another Sandbox in this process already seeded, if it is live."""
        iam = self.iam()
        try:
            iam.create_user(UserName=user)
        except iam.exceptions.EntityAlreadyExistsException:
            pass
        keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        current = self.ssm_value(vault_name)
        if current and any(k["AccessKeyId"] == current.split(":", 1)[0]
                           and k["Status"] == "Active" for k in keys):
            self._secrets.append(current)
            return current
        if len(keys) >= 2:  # IAM's two-key cap: make room, oldest first
            iam.delete_access_key(UserName=user, AccessKeyId=keys[0]["AccessKeyId"])
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return self._secret(f"{key['AccessKeyId']}:{key['SecretAccessKey']}")

    def _moto_secret_keys(self) -> list[str]:
        """Secret access keys moto holds now (including ones Velvet created in a rotation)."""
        try:
            from moto.iam.models import iam_backends
        except ImportError:  # pragma: no cover - moto is a hard dependency
            return []
        out: list[str] = []
        for account in list(iam_backends.values()):
            backend = account["aws"]
            for user in list(backend.users.values()):
                for key in list(user.access_keys):
                    out += [key.secret_access_key,
                            f"{key.access_key_id}:{key.secret_access_key}"]
        return out


class _PlainDumper(yaml.SafeDumper):
    """No &anchors/*aliases: the manifest is read by people, and the loader caps aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def main(port: int | None = None, workdir: str | Path | None = None,
         echo: Callable[[str], None] = print) -> None:
    """`velvet sandbox`: start everything, seed a world, print the env, wait for Ctrl-C."""
    own_dir = None
    if workdir is None:
        own_dir = tempfile.TemporaryDirectory(prefix="velvet-sandbox-")
        workdir = own_dir.name
    sandbox = Sandbox(base_port=port)
    try:
        sandbox.start()
        sandbox.seed_world(workdir)
        env = sandbox.env(workdir)
        for key, value in sorted(env.items()):
            echo(f"{key}={value}")
        echo(f"# consumers service: {sandbox.urls['consumers']} "
             "(GET /consumers/<consumer_id>/health, GET /__velvet/consumers)")
        echo(f"# fakes on {HOST}; control API under <url>/__velvet/; Ctrl-C to stop")
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        if own_dir is not None:
            own_dir.cleanup()
