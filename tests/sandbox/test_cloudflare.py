"""Contract tests for the Cloudflare fake, written from vendor-apis.md section 3."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from velvet_runner.records import fingerprint
from velvet_sandbox import cloudflare as cf
from velvet_sandbox.cloudflare import CloudflareState

from .support import Fake

ZONE = "com.cloudflare.api.account.zone.5c1e3f0b9a7d4e2f8b6a0c9d1e2f3a4b"


def _policies(*groups: str) -> list[dict[str, Any]]:
    return [{"effect": "allow", "resources": {ZONE: "*"},
             "permission_groups": [{"id": g} for g in groups]}]


def _client(fake: Fake, token: str) -> httpx.Client:
    return fake.client(Authorization=f"Bearer {token}")


def _assert_envelope(body: dict[str, Any], success: bool) -> None:
    assert {"success", "errors", "messages", "result"} <= set(body)
    assert body["success"] is success
    if not success:
        assert body["result"] is None
        assert body["errors"]
        assert all(isinstance(e["code"], int) and e["code"] >= 971 for e in body["errors"])


def _codes(response: httpx.Response) -> list[int]:
    return [e["code"] for e in response.json()["errors"]]


@pytest.fixture
def admin(sbx_cloudflare: Fake) -> tuple[str, str]:
    """A user token that may manage tokens."""
    state: CloudflareState = sbx_cloudflare.state
    return state.add_token(cf.USER, _policies(cf.API_TOKENS_WRITE, cf.ZONE_READ), "admin")


def test_user_verify(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    response = _client(sbx_cloudflare, admin[1]).get("/user/tokens/verify")
    assert response.status_code == 200
    body = response.json()
    _assert_envelope(body, True)
    assert body["result"] == {"id": admin[0], "status": "active"}
    assert body["messages"][0]["code"] == 10000
    assert response.headers["Ratelimit"].startswith('"default";r=')
    assert "Ratelimit-Policy" in response.headers


@pytest.mark.parametrize("header", ["Bearer cfut_unknown", "Bearer "])
def test_unknown_token_is_401_code_1000(sbx_cloudflare: Fake, header: str) -> None:
    response = sbx_cloudflare.client(Authorization=header + "x").get("/user/tokens/verify")
    assert response.status_code == 401
    _assert_envelope(response.json(), False)
    assert _codes(response) == [cf.INVALID_TOKEN]


def test_missing_auth_header_is_6003(sbx_cloudflare: Fake) -> None:
    response = sbx_cloudflare.client().get("/user/tokens/verify")
    assert response.status_code == 400
    assert _codes(response) == [cf.BAD_HEADERS]


def test_account_token_fails_user_verify_but_passes_its_own(sbx_cloudflare: Fake) -> None:
    state: CloudflareState = sbx_cloudflare.state
    account = cf.DEFAULT_ACCOUNT_ID
    token_id, value = state.add_token(account, _policies(cf.ZONE_READ), "acct")
    assert value.startswith("cfat_")
    user_verify = _client(sbx_cloudflare, value).get("/user/tokens/verify")
    assert user_verify.status_code == 401
    assert _codes(user_verify) == [cf.INVALID_TOKEN]
    own = _client(sbx_cloudflare, value).get(f"/accounts/{account}/tokens/verify")
    assert own.status_code == 200
    assert own.json()["result"]["id"] == token_id


def test_user_token_fails_account_verify(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    response = _client(sbx_cloudflare, admin[1]).get(
        f"/accounts/{cf.DEFAULT_ACCOUNT_ID}/tokens/verify")
    assert response.status_code == 401


def test_create_returns_value_once_and_it_works(
    sbx_cloudflare: Fake, admin: tuple[str, str]
) -> None:
    client = _client(sbx_cloudflare, admin[1])
    created = client.post("/user/tokens", json={"name": "job-1", "policies": _policies(
        cf.ZONE_READ)})
    assert created.status_code == 200
    result = created.json()["result"]
    value = result["value"]
    assert value.startswith("cfut_")
    assert len(value) == 45
    assert result["policies"][0]["permission_groups"][0]["name"] == "Zone Read"
    assert "id" in result["policies"][0]
    assert _client(sbx_cloudflare, value).get("/user/tokens/verify").status_code == 200
    listed = client.get("/user/tokens").json()
    assert listed["result_info"]["total_count"] == 2
    assert all("value" not in t for t in listed["result"])
    got = client.get(f"/user/tokens/{result['id']}").json()["result"]
    assert got["name"] == "job-1"
    assert "value" not in got


@pytest.mark.parametrize("body", [{"name": "x"}, {"policies": []}, {"name": "x", "policies": []},
                                  {"name": "x", "policies": _policies("f" * 32)}])
def test_create_validates(
    sbx_cloudflare: Fake, admin: tuple[str, str], body: dict[str, Any]
) -> None:
    response = _client(sbx_cloudflare, admin[1]).post("/user/tokens", json=body)
    assert response.status_code == 400
    _assert_envelope(response.json(), False)
    assert _codes(response) == [cf.VALIDATION_ERROR]


def test_managing_tokens_needs_api_tokens_write(sbx_cloudflare: Fake) -> None:
    state: CloudflareState = sbx_cloudflare.state
    _, reader = state.add_token(cf.USER, _policies(cf.ZONE_READ), "reader")
    client = _client(sbx_cloudflare, reader)
    for response in (
        client.post("/user/tokens", json={"name": "x", "policies": _policies(cf.ZONE_READ)}),
        client.get("/user/tokens"),
    ):
        assert response.status_code == 403
        assert _codes(response) == [cf.AUTHENTICATION_ERROR]
    # It can still verify itself.
    assert client.get("/user/tokens/verify").status_code == 200


def test_roll_kills_the_old_value_in_the_same_instant(
    sbx_cloudflare: Fake, admin: tuple[str, str]
) -> None:
    response = _client(sbx_cloudflare, admin[1]).put(f"/user/tokens/{admin[0]}/value", json={})
    assert response.status_code == 200
    new = response.json()["result"]
    assert isinstance(new, str)
    assert new.startswith("cfut_")
    assert _client(sbx_cloudflare, admin[1]).get("/user/tokens/verify").status_code == 401
    verified = _client(sbx_cloudflare, new).get("/user/tokens/verify").json()["result"]
    assert verified["id"] == admin[0]  # same token id, new secret


def test_put_is_full_replacement_and_disabled_tokens_do_nothing(
    sbx_cloudflare: Fake, admin: tuple[str, str]
) -> None:
    state: CloudflareState = sbx_cloudflare.state
    token_id, value = state.add_token(cf.USER, _policies(cf.ZONE_READ, cf.API_TOKENS_READ),
                                      "target")
    client = _client(sbx_cloudflare, admin[1])
    replaced = client.put(f"/user/tokens/{token_id}", json={
        "name": "target", "policies": _policies(cf.ZONE_READ), "status": "disabled"})
    assert replaced.status_code == 200
    groups = replaced.json()["result"]["policies"][0]["permission_groups"]
    assert [g["id"] for g in groups] == [cf.ZONE_READ]
    verify = _client(sbx_cloudflare, value).get("/user/tokens/verify")
    assert verify.status_code == 200
    assert verify.json()["result"]["status"] == "disabled"
    assert not state.token_is_live(value)
    missing_status = client.put(f"/user/tokens/{token_id}", json={
        "name": "target", "policies": _policies(cf.ZONE_READ)})
    assert missing_status.status_code == 400


def test_disabled_token_cannot_manage(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    sbx_cloudflare.state.set_status(admin[0], "disabled")
    response = _client(sbx_cloudflare, admin[1]).get("/user/tokens")
    assert response.status_code == 401
    assert _codes(response) == [cf.INVALID_TOKEN]


def test_delete(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    state: CloudflareState = sbx_cloudflare.state
    token_id, value = state.add_token(cf.USER, _policies(cf.ZONE_READ), "doomed")
    client = _client(sbx_cloudflare, admin[1])
    response = client.delete(f"/user/tokens/{token_id}")
    assert response.status_code == 200
    assert response.json()["result"] == {"id": token_id}
    assert not state.token_is_live(value)
    again = client.delete(f"/user/tokens/{token_id}")
    assert again.status_code == 404
    _assert_envelope(again.json(), False)
    assert client.delete("/user/tokens/not-an-id").status_code == 400


def test_user_quota_is_50(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    state: CloudflareState = sbx_cloudflare.state
    for i in range(cf.USER_TOKEN_QUOTA - 1):
        state.add_token(cf.USER, _policies(cf.ZONE_READ), f"filler-{i}")
    response = _client(sbx_cloudflare, admin[1]).post(
        "/user/tokens", json={"name": "one-too-many", "policies": _policies(cf.ZONE_READ)})
    assert response.status_code == 400
    assert _codes(response) == [cf.QUOTA_EXCEEDED]


def test_account_tokens_are_managed_under_the_account(sbx_cloudflare: Fake) -> None:
    state: CloudflareState = sbx_cloudflare.state
    account = cf.DEFAULT_ACCOUNT_ID
    _, manager = state.add_token(account, _policies(cf.ACCOUNT_API_TOKENS_WRITE), "mgr")
    client = _client(sbx_cloudflare, manager)
    created = client.post(f"/accounts/{account}/tokens",
                          json={"name": "a", "policies": _policies(cf.ZONE_READ)})
    assert created.status_code == 200
    assert created.json()["result"]["value"].startswith("cfat_")
    assert client.get("/user/tokens").status_code == 401  # wrong family
    unknown = client.get("/accounts/" + "0" * 32 + "/tokens")
    assert unknown.status_code == 404


def test_rate_limit_429_with_retry_after(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    sbx_cloudflare.state.set_rate_limit_remaining(1, admin[0])
    client = _client(sbx_cloudflare, admin[1])
    assert client.get("/user/tokens/verify").status_code == 200
    limited = client.get("/user/tokens/verify")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    _assert_envelope(limited.json(), False)


def test_injected_fault_keeps_the_envelope(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    # Fault paths may be written relative to /client/v4.
    sbx_cloudflare.fault(path="/user/tokens/verify", status=429, retry_after=7, times=1)
    response = _client(sbx_cloudflare, admin[1]).get("/user/tokens/verify")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    _assert_envelope(response.json(), False)


def test_unknown_route_is_400_code_7000(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    response = _client(sbx_cloudflare, admin[1]).get("/zones/nothing/here")
    assert response.status_code == 400
    assert _codes(response) == [cf.NO_ROUTE]


def test_snapshot_unchanged_by_reads_and_hides_values(
    sbx_cloudflare: Fake, admin: tuple[str, str]
) -> None:
    before = sbx_cloudflare.control.get("/state").text
    client = _client(sbx_cloudflare, admin[1])
    client.get("/user/tokens/verify")
    client.get("/user/tokens")
    after = sbx_cloudflare.control.get("/state").text
    assert before == after
    assert admin[1] not in after


def test_permission_groups(sbx_cloudflare: Fake, admin: tuple[str, str]) -> None:
    groups = _client(sbx_cloudflare, admin[1]).get("/user/tokens/permission_groups").json()
    names = {g["id"]: g["name"] for g in groups["result"]}
    assert names[cf.API_TOKENS_WRITE] == "API Tokens Write"


def _busy(fake: Fake, admin: tuple[str, str]) -> list[str]:
    """State touched by every kind of write; returns every value the fake handed out."""
    state: CloudflareState = fake.state
    client = _client(fake, admin[1])
    created = client.post("/user/tokens", json={
        "name": "job-7", "policies": _policies(cf.DNS_READ), "expires_on": "2099-01-01T00:00:00Z",
        "not_before": "2020-01-01T00:00:00Z", "condition": {"request_ip": {"in": ["10.0.0.0/8"]}},
    }).json()["result"]
    client.put(f"/user/tokens/{created['id']}/value")
    client.put(f"/user/tokens/{admin[0]}", json={"name": "admin", "status": "active",
                                                  "policies": _policies(cf.API_TOKENS_WRITE)})
    account = "0123456789abcdef0123456789abcdef"
    state.add_token(account, _policies(cf.ACCOUNT_API_TOKENS_READ), "ci", status="disabled")
    gone, _ = state.add_token(cf.USER, _policies(cf.ZONE_READ), "gone")
    client.delete(f"/user/tokens/{gone}")
    return state.token_values()


def test_state_over_http_shows_no_token_value(
    sbx_cloudflare: Fake, admin: tuple[str, str]
) -> None:
    values = _busy(sbx_cloudflare, admin)
    shown = sbx_cloudflare.control.get("/state")
    assert shown.status_code == 200
    assert [value for value in values if value in shown.text] == []
    assert shown.json()["tokens"][admin[0]]["value"] == fingerprint(admin[1])


def test_seed_of_the_revealed_snapshot_restores_the_state(
    sbx_cloudflare: Fake, admin: tuple[str, str]
) -> None:
    _busy(sbx_cloudflare, admin)
    clear = sbx_cloudflare.state.snapshot(reveal=True)
    # A fake with another user id and no tokens takes the seed's.
    fresh = CloudflareState()
    fresh.seed(clear)
    assert fresh.snapshot(reveal=True) == clear
    assert fresh.snapshot() == sbx_cloudflare.control.get("/state").json()
    assert {t["status"] for t in clear["tokens"].values()} == {"active", "disabled"}
    assert fresh.token_is_live(admin[1])


_ID = "0" * 32
_VALUE = "cfut_seeded_value_never_echoed"


def _row(key: str = _ID, **fields: object) -> dict[str, object]:
    """A seed of one token, valid unless `fields` say otherwise."""
    return {"tokens": {key: {"id": _ID, "name": "t", "owner": "user", "value": _VALUE,
                             **fields}}}


@pytest.mark.parametrize(("seed", "named"), [
    ({"tokens": {_ID: {"id": _ID, "name": "t", "owner": "user"}}}, f"tokens.{_ID}.value"),
    (_row("t1", id="t1"), "tokens.t1.id"),
    (_row(status="asleep"), f"tokens.{_ID}.status"),
    (_row(policies=[{"effect": "maybe", "resources": {}, "permission_groups": []}]),
     f"tokens.{_ID}.policies.0.effect"),
    (_row(expires_on="soon"), f"tokens.{_ID}.expires_on"),
    (_row("1" * 32), "tokens." + "1" * 32),
    ({"accounts": ["a"], "zones": []}, "zones"),
])
def test_bad_seed_is_400_naming_the_field(
    sbx_cloudflare: Fake, seed: dict[str, object], named: str
) -> None:
    before = sbx_cloudflare.state.snapshot()
    response = sbx_cloudflare.control.post("/seed", json=seed)
    assert response.status_code == 400
    assert named in response.json()["error"]
    assert _VALUE not in response.text
    assert sbx_cloudflare.state.snapshot() == before
