"""Adapters declare what they need as data (client.Api, BOUND, BUDGET) and Wiring builds it.

A target kind registered later names its API, the secret its auth reads and the account budget
its writes draw from, and nothing else changes: settings checks its secret by name, wiring
builds its client with the secret as a header, fans it out concurrently, and estimates its
writes against its account's budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import pytest
from pydantic import SecretStr, StrictStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from velvet_runner.client import Api, Bearer
from velvet_runner.errors import BadArgument, SettingsError
from velvet_runner.manifest import parse
from velvet_runner.manifest_models import TargetConfig
from velvet_runner.ratepolicy import Policy, Window
from velvet_runner.settings import Settings, declared_variables
from velvet_runner.targets import TARGETS, register
from velvet_runner.targets.base import DEFAULT_BOUND, Target
from velvet_runner.targets.heroku_config_var import HEROKU_BOOTSTRAP
from velvet_runner.vendors.heroku import HEROKU
from velvet_runner.wiring import Wiring
from velvet_sandbox.server import ServerThread

TOKEN = "drop-token-123"
DROPBOX = Api("dropbox", "https://api.dropbox.invalid",
              headers=(("Accept", "application/json"),), auth=Bearer("VELVET_DROPBOX_TOKEN"),
              policy=Policy("dropbox", concurrency=6, windows=(Window("minute", 600, 60),)))


class DropboxFile(TargetConfig):
    kind: Literal["dropbox_file"]
    path: StrictStr

    def describe(self) -> str:
        return f"dropbox file {self.path}"

    def place(self) -> tuple[str, ...]:
        return (self.kind, self.path)


class DropboxFileTarget(Target):
    kind: ClassVar[str] = "dropbox_file"
    config_model: ClassVar[type[TargetConfig]] = DropboxFile
    APIS: ClassVar[tuple[Api, ...]] = (DROPBOX,)
    BUDGET: ClassVar[Api | None] = DROPBOX  # no BOUND: the default, concurrent

    @classmethod
    def build(cls, config: Any, supplies: Any) -> DropboxFileTarget:
        return cls(config, supplies.client(DROPBOX))

    def __init__(self, config: DropboxFile, client: Any) -> None:
        self.config, self.client = config, client

    def write(self, value: SecretStr) -> None:
        self.client.put(f"/files{self.config.path}", content=value.get_secret_value())

    def read(self) -> SecretStr | None:
        answer = self.client.get(f"/files{self.config.path}")
        return SecretStr(answer.json()["who"])

    def probe(self) -> str:
        return "dropbox"


@pytest.fixture
def dropbox() -> Iterator[type[Target]]:
    register(DropboxFileTarget)
    try:
        yield DropboxFileTarget
    finally:
        TARGETS.pop("dropbox_file", None)


async def _file(request: Request) -> JSONResponse:
    known = request.headers.get("authorization") == f"Bearer {TOKEN}"
    return JSONResponse({"who": f"{request.headers.get('accept')} {request.url.path}"},
                        status_code=200 if known else 401)


@pytest.fixture
def dropbox_api() -> Iterator[str]:
    with ServerThread(Starlette(routes=[Route("/files/{path:path}", _file)])) as server:
        yield server.url


def test_a_target_registered_later_gets_its_declared_client_and_secret(
        dropbox: type[Target], dropbox_api: str) -> None:
    settings = Settings.from_env({"VELVET_DROPBOX_API_URL": dropbox_api,
                                  "VELVET_DROPBOX_TOKEN": TOKEN})
    assert settings.secret("VELVET_DROPBOX_TOKEN") == SecretStr(TOKEN)
    wiring = Wiring(settings)
    try:
        one = wiring.target(DropboxFile(kind="dropbox_file", path="/a"))
        two = wiring.target(DropboxFile(kind="dropbox_file", path="/b"))
        assert isinstance(one, DropboxFileTarget)
        assert isinstance(two, DropboxFileTarget)
        assert one.client is two.client  # one client per API for the run
        read = one.read()
        assert read is not None
        assert read.get_secret_value() == "application/json /files/a"
    finally:
        wiring.close()


def test_a_declared_secret_is_checked_by_name_and_required_when_used(
        dropbox: type[Target]) -> None:
    names = [var.name for var in declared_variables()]
    assert {"VELVET_DROPBOX_TOKEN", "VELVET_DROPBOX_API_URL", "VELVET_HEROKU_TOKEN",
            "VELVET_INFISICAL_CLIENT_ID", "VELVET_INFISICAL_CLIENT_SECRET",
            "VELVET_CLOUDFLARE_API_URL", "VELVET_INFISICAL_API_URL"} <= set(names)
    assert "VELVET_GITHUB_TOKEN" not in names  # a core setting: VARIABLES has its row
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"VELVET_DROPBOX_TOKEN": "drop token\n"})
    assert caught.value.reasons == [
        "VELVET_DROPBOX_TOKEN (a secret: its value is not shown) is refused: it holds "
        "whitespace or a control character (a pasted newline?). Rule: no whitespace or "
        "control characters."]
    wiring = Wiring(Settings.from_env({}))
    try:
        with pytest.raises(BadArgument, match="^VELVET_DROPBOX_TOKEN is not set; Velvet needs "
                           "it to reach that vendor$"):
            wiring.target(DropboxFile(kind="dropbox_file", path="/a"))
        assert wiring.budget_for_kind("dropbox_file") is None  # no credential: no account
    finally:
        wiring.close()


def test_a_kind_without_a_declared_bound_fans_out_concurrently(dropbox: type[Target]) -> None:
    wiring = Wiring(Settings())
    assert wiring.bound("dropbox_file") == DEFAULT_BOUND > 1
    assert wiring.bound("a_kind_nobody_registered") == DEFAULT_BOUND
    assert wiring.bound("heroku_config_var") == 128  # declared
    assert Wiring(Settings(), bounds={"dropbox_file": 3}).bound("dropbox_file") == 3


def test_a_kinds_writes_draw_from_its_declared_budget(dropbox: type[Target]) -> None:
    wiring = Wiring(Settings.from_env({"VELVET_DROPBOX_TOKEN": TOKEN}))
    wiring.budgets.policies["dropbox"] = Policy("dropbox", concurrency=4, windows=(
        Window("hour", 100, 3600),))
    budget = wiring.budget_for_kind("dropbox_file")
    assert budget is not None
    assert budget.policy.vendor == "dropbox"
    seconds, why = wiring.budget_estimate({"dropbox_file": 250})
    assert seconds > 3600
    assert why.startswith("dropbox ")
    assert [a.name for a in wiring.share_accounts({"dropbox_file": 250})] == [
        "dropbox https://api.dropbox.invalid"]


def test_a_new_apis_declared_policy_paces_it(dropbox: type[Target], dropbox_api: str) -> None:
    """A vendor ratepolicy.POLICIES does not know is paced by the policy its Api declares,
    for an estimate before any client exists as for the client's requests."""
    settings = Settings.from_env({"VELVET_DROPBOX_API_URL": dropbox_api,
                                  "VELVET_DROPBOX_TOKEN": TOKEN})
    wiring = Wiring(settings)
    try:
        budget = wiring.budget_for_kind("dropbox_file")  # before any client
        assert budget is not None
        assert budget.policy == DROPBOX.policy
        assert wiring.budget_estimate({"dropbox_file": 1200})[1].startswith("dropbox ")
        target = wiring.target(DropboxFile(kind="dropbox_file", path="/a"))
        assert target.read() is not None
        assert wiring.budgets.policies["dropbox"] == DROPBOX.policy
    finally:
        wiring.close()


def test_a_budget_must_be_a_declared_api_with_a_bearer_auth() -> None:
    class Elsewhere(DropboxFileTarget):
        BUDGET: ClassVar[Api | None] = HEROKU

    with pytest.raises(ValueError, match="BUDGET must be one of its APIS, with a Bearer auth"):
        register(Elsewhere)
    assert TARGETS.get("dropbox_file") is None


def test_the_heroku_vendor_and_config_var_target_keep_their_own_clients() -> None:
    """The vendor authenticates each call with the token it rotates; the target carries
    Velvet's bootstrap token. Same API name, two clients."""
    manifest = parse("""
credentials:
  - name: HK
    vendor: heroku
    env: prod
    vault: {kind: aws_ssm_parameter, name: /velvet/hk}
    consumers:
      - {kind: heroku_config_var, app: raxx-api, var: HEROKU_API_KEY, consumer_id: api,
         env: prod}
""")
    credential = manifest.credentials[0]
    wiring = Wiring(Settings.from_env({"VELVET_HEROKU_TOKEN": "hk-bootstrap"}))
    try:
        vendor = wiring.vendor(credential)
        target = wiring.target(credential.consumers[0])
        vendor_client, target_client = vendor.client, target.client  # type: ignore[attr-defined]
        assert "authorization" not in vendor_client.headers
        assert target_client.headers["authorization"] == "Bearer hk-bootstrap"
        assert vendor_client.headers["accept"] == target_client.headers["accept"] == \
            "application/vnd.heroku+json; version=3"
        assert wiring.connect(HEROKU) is vendor_client
        assert wiring.connect(HEROKU_BOOTSTRAP) is target_client
    finally:
        wiring.close()


def test_an_adapter_gets_only_the_apis_it_declared(dropbox: type[Target]) -> None:
    wiring = Wiring(Settings.from_env({"VELVET_DROPBOX_TOKEN": TOKEN}))
    try:
        supplies = wiring.supplies(dropbox)
        with pytest.raises(ValueError, match=r"dropbox_file \(DropboxFileTarget\) did not "
                           "declare the heroku API it asks for"):
            supplies.client(HEROKU)
        with pytest.raises(ValueError, match="the dropbox API has no login session"):
            supplies.session(DROPBOX)
    finally:
        wiring.close()
