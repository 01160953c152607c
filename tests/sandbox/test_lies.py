"""Faults that lie: `drop` (a write acknowledged and not stored), `truncate` (an answer cut
short), and `latency_ms` that only delays, on every fake, seen through Velvet's own adapters.

A dropped write answers exactly what the vendor answers (its status, its body) and leaves the
fake's state as it was; traffic stays counted (a dropped mint's token is still issued, so the
leak scans and "values issued" counts see it). A fault with a 2xx `status` is refused: `drop`
is the only way to answer a success without doing the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from velvet_runner.errors import VendorUnavailable
from velvet_runner.manifest import Credential
from velvet_runner.notify import email_sender, slack_sender
from velvet_runner.records import Job, utcnow
from velvet_runner.settings import Settings
from velvet_runner.wiring import Wiring
from velvet_sandbox import cloudflare
from velvet_sandbox.world import (
    OPS_EMAIL,
    PLATFORM_EMAIL,
    SERVICES,
    SLACK_CHANNEL,
    Sandbox,
    World,
)

HK = "HK_PLATFORM_FULL"
NEW = SecretStr("a-value-that-must-never-land")



@pytest.fixture
def lies(sbx_sandbox: Sandbox, sbx_world: World, sbx_workdir: Path) -> Iterator[Lies]:
    """Velvet's wiring against the session's sandbox; every fault cleared afterwards."""
    env = sbx_sandbox.env(sbx_workdir)
    wiring = Wiring(Settings.from_env(env))
    try:
        yield Lies(sbx_sandbox, sbx_world, wiring, env)
    finally:
        wiring.close()
        with httpx.Client(timeout=5.0) as http:
            for service in SERVICES:
                http.delete(sbx_sandbox.control_url(service) + "/faults").raise_for_status()


class Lies:
    def __init__(self, sandbox: Sandbox, world: World, wiring: Wiring,
                 env: dict[str, str]) -> None:
        self.sandbox, self.world, self.wiring, self.env = sandbox, world, wiring, env

    def fault(self, service: str, **spec: Any) -> httpx.Response:
        with httpx.Client(timeout=5.0) as http:
            return http.post(self.sandbox.control_url(service) + "/faults", json=spec)

    def credential(self, name: str) -> Credential:
        cred = self.world.manifest().credential(name)
        assert cred is not None
        return cred

    def consumer(self, name: str, kind: str) -> Any:
        return next(c for c in self.credential(name).consumers if c.kind == kind)

    def statuses(self, service: str) -> list[int]:
        with httpx.Client(timeout=5.0) as http:
            log = http.get(self.sandbox.control_url(service) + "/requests").json()["requests"]
        return [entry["status"] for entry in log]


# --- drop: acknowledged, not stored, on every fake ------------------------------------------


def test_a_dropped_heroku_config_var_write_answers_200_and_stores_nothing(lies: Lies) -> None:
    consumer = lies.consumer(HK, "heroku_config_var")
    heroku = lies.sandbox.heroku
    before = heroku.config_var(consumer.app, consumer.var)
    restarts = heroku.app_info(consumer.app)["restarts"]
    assert lies.fault("heroku", method="PATCH", path="/apps/*/config-vars", drop=True,
                      times=1).status_code == 201
    lies.wiring.target(consumer).write(NEW)  # the adapter sees Heroku's success
    assert lies.statuses("heroku")[-1] == 200
    assert heroku.config_var(consumer.app, consumer.var) == before
    assert heroku.app_info(consumer.app)["restarts"] == restarts  # nothing was released
    lies.wiring.target(consumer).write(SecretStr(before or ""))  # the fault was used up
    assert heroku.config_var(consumer.app, consumer.var) == before


def test_a_dropped_github_secret_put_answers_204_and_stores_nothing(lies: Lies) -> None:
    consumer = lies.consumer(HK, "github_actions_secret")
    scope = f"repo:{consumer.repository}"
    before = lies.sandbox.github.secret_plaintext(scope, consumer.secret)
    lies.fault("github", method="PUT", path="/repos/*/actions/secrets/*", drop=True, times=1)
    lies.wiring.target(consumer).write(NEW)
    assert lies.statuses("github")[-1] == 204  # "replaced": GitHub's answer, not the fake's
    assert lies.sandbox.github.secret_plaintext(scope, consumer.secret) == before


def test_a_dropped_infisical_write_answers_200_and_stores_nothing(lies: Lies) -> None:
    consumer = lies.consumer(HK, "infisical_secret")
    infisical = lies.sandbox.infisical
    where = (consumer.project_id, consumer.environment, consumer.secret_path, consumer.name)
    before = infisical.secret_value(*where)
    target = lies.wiring.target(consumer)
    assert target.read() is not None  # logs in first: the login is not the dropped request
    lies.fault("infisical", method="PATCH", path="/api/v4/secrets/*", drop=True, times=1)
    target.write(NEW)
    assert infisical.secret_value(*where) == before


def test_a_dropped_heroku_revoke_answers_200_and_the_token_lives_on(lies: Lies) -> None:
    heroku = lies.sandbox.heroku
    auth_id, token = heroku.add_authorization(PLATFORM_EMAIL, ["global"], "to-revoke")
    vendor = lies.wiring.vendor(lies.credential(HK))
    lies.fault("heroku", method="DELETE", path="/oauth/authorizations/*", drop=True, times=1)
    using = SecretStr(lies.world.values[HK])
    assert vendor.revoke(auth_id, using=using, value=SecretStr(token)) is True
    assert heroku.token_is_live(token)
    assert vendor.revoke(auth_id, using=using, value=SecretStr(token)) is True
    assert not heroku.token_is_live(token)


def test_a_dropped_heroku_mint_issues_a_token_that_does_not_work(lies: Lies) -> None:
    heroku = lies.sandbox.heroku
    issued = len(heroku.token_values())
    vendor = lies.wiring.vendor(lies.credential(HK))
    lies.fault("heroku", method="POST", path="/oauth/authorizations", drop=True, times=1)
    minted = vendor.mint(SecretStr(lies.world.values[HK]), "dropped-mint")
    assert minted.auth_id not in heroku.authorization_ids()
    assert not heroku.token_is_live(minted.value.get_secret_value())
    # Traffic stays counted: the value was handed out, so it counts as issued.
    assert len(heroku.token_values()) == issued + 1


def test_a_dropped_cloudflare_delete_answers_success_and_the_token_lives_on(
        lies: Lies) -> None:
    cf = lies.sandbox.cloudflare
    token_id, value = cf.add_token(cloudflare.USER, [], "to-delete")
    vendor = lies.wiring.vendor(lies.credential("CF_ZONE_READ"))
    using = SecretStr(lies.world.values["CF_ZONE_READ"])
    lies.fault("cloudflare", method="DELETE", path="/client/v4/user/tokens/*", drop=True,
               times=1)
    assert vendor.revoke(token_id, using=using, value=SecretStr(value)) is True
    assert cf.token_is_live(value)
    vendor.revoke(token_id, using=using, value=SecretStr(value))
    assert not cf.token_is_live(value)


def _job() -> Job:
    now = utcnow()
    return Job(job_id="00000000-0000-7000-8000-000000000000", credential=HK, vendor="heroku",
               flow_type="operational", env="prod", status="done", created_at=now,
               updated_at=now, actor="test")


def test_dropped_notifications_answer_success_and_nothing_is_delivered(lies: Lies) -> None:
    env = lies.env
    slack_count = len(lies.sandbox.slack.messages)
    outbox = len(lies.sandbox.postmark.sent())
    slack = httpx.Client(base_url=env["VELVET_SLACK_API_URL"], timeout=5.0, headers={
        "Authorization": f"Bearer {env['VELVET_SLACK_TOKEN']}"})
    postmark = httpx.Client(base_url=env["VELVET_POSTMARK_API_URL"], timeout=5.0, headers={
        "X-Postmark-Server-Token": env["VELVET_POSTMARK_SERVER_TOKEN"],
        "Accept": "application/json"})
    with slack, postmark:
        lies.fault("slack", method="POST", path="/api/chat.postMessage", drop=True, times=1)
        lies.fault("postmark", method="POST", path="/email", drop=True, times=1)
        slack_sender(slack, SLACK_CHANNEL)(_job(), 5.0)  # raises unless Slack said ok
        email_sender(postmark, "velvet@raxx.app", OPS_EMAIL)(_job(), 5.0)
    assert len(lies.sandbox.slack.messages) == slack_count
    assert len(lies.sandbox.postmark.sent()) == outbox


def test_a_dropped_health_check_answers_and_a_caching_consumer_remembers_nothing(
        lies: Lies) -> None:
    consumers = lies.sandbox.consumers
    cid = next(c["consumer_id"] for c in consumers.list() if c["cache"])
    consumers.restart(cid)  # forget what it cached, as a dyno restart does
    lies.fault("consumers", method="GET", path=f"/consumers/{cid}/health", drop=True, times=1)
    answer = httpx.get(lies.sandbox.health_url(cid), timeout=5.0)
    assert answer.status_code == 200
    assert next(c for c in consumers.list() if c["consumer_id"] == cid)["cached"] is None


# --- truncate: the answer does not parse ----------------------------------------------------


def test_a_truncated_answer_is_a_vendor_error_naming_what_was_asked(lies: Lies) -> None:
    consumer = lies.consumer(HK, "heroku_config_var")
    lies.fault("heroku", method="GET", path="/apps/*/config-vars", truncate=True, times=1)
    with pytest.raises(VendorUnavailable) as info:
        lies.wiring.target(consumer).read()
    assert "does not parse" in str(info.value)
    assert consumer.app in str(info.value)
    assert lies.statuses("heroku")[-1] == 200


def test_a_truncated_write_did_happen(lies: Lies) -> None:
    """Only the answer is cut: the write landed (the vendor did the work), which is why the
    engine treats it as an outage whose outcome is unknown."""
    consumer = lies.consumer(HK, "heroku_config_var")
    heroku = lies.sandbox.heroku
    before = heroku.config_var(consumer.app, consumer.var)
    lies.fault("heroku", method="PATCH", path="/apps/*/config-vars", truncate=True, times=1)
    with pytest.raises(VendorUnavailable):
        lies.wiring.target(consumer).write(NEW)
    assert heroku.config_var(consumer.app, consumer.var) == NEW.get_secret_value()
    heroku.set_config_vars(consumer.app, {consumer.var: before})


# --- the fault API's rules ------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_a_2xx_status_is_refused_and_names_drop(lies: Lies, service: str) -> None:
    refused = lies.fault(service, method="PATCH", path="*", status=201)
    assert refused.status_code == 400
    assert '"drop": true' in refused.json()["error"]
    both = lies.fault(service, path="*", status=204, drop=True)
    assert both.status_code == 400
    assert "leave status out" in both.json()["error"]
    ok = lies.fault(service, method="PATCH", path="*", status=200)
    # Slack answers its own method errors with a 200 ({"ok": false}): that fault is an error.
    assert ok.status_code == (201 if service == "slack" else 400), ok.text


def test_latency_alone_delays_the_real_answer(lies: Lies) -> None:
    consumer = lies.consumer(HK, "heroku_config_var")
    added = lies.fault("heroku", method="GET", path="/apps/*/config-vars", latency_ms=200,
                       times=1)
    assert added.json()["fault"]["status"] is None
    assert lies.wiring.target(consumer).read() is not None  # the real answer, not a 503
    assert lies.statuses("heroku")[-1] == 200


def test_a_dropped_health_check_of_every_consumer_answers_for_real(lies: Lies) -> None:
    """Each consumer reads its value from another fake (a bound method of its state, for
    some): taking back a dropped check copies what the consumer remembers, never the fake it
    reads from (found by the fault campaign: a 500 from the copy)."""
    consumers = lies.sandbox.consumers
    for row in consumers.list():
        cid = row["consumer_id"]
        lies.fault("consumers", method="GET", path=f"/consumers/{cid}/health", drop=True,
                   times=1)
        answer = httpx.get(lies.sandbox.health_url(cid), timeout=5.0)
        assert answer.status_code in (200, 401), (cid, answer.status_code, answer.text[:200])
