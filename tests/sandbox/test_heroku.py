"""Contract tests for the Heroku fake, written from vendor-apis.md section 1."""

from __future__ import annotations

import httpx
import pytest

from velvet_runner.records import fingerprint
from velvet_sandbox.heroku import HerokuState

from .support import Fake

V3 = "application/vnd.heroku+json; version=3"


def _client(fake: Fake, token: str | None, accept: str | None = V3) -> httpx.Client:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if accept is not None:
        headers["Accept"] = accept
    return fake.client(**headers)


@pytest.fixture
def bot(sbx_heroku: Fake) -> tuple[str, str]:
    state: HerokuState = sbx_heroku.state
    state.add_app("raxx-api-prod", {"APP_ENV": "prod", "HEROKU_API_KEY": "old"})
    return state.add_authorization("bot@raxx.app", ["global"], "bot")


def test_account_with_bearer_token(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    response = _client(sbx_heroku, bot[1]).get("/account")
    assert response.status_code == 200
    assert response.json()["email"] == "bot@raxx.app"
    assert int(response.headers["RateLimit-Remaining"]) == 4499


@pytest.mark.parametrize("header", [None, "Basic OmZvbw==", "Bearer nope", "Token abc"])
def test_bad_auth_is_401_unauthorized(sbx_heroku: Fake, header: str | None) -> None:
    headers = {"Accept": V3}
    if header is not None:
        headers["Authorization"] = header
    response = sbx_heroku.client(**headers).get("/account")
    assert response.status_code == 401
    assert response.json() == {"id": "unauthorized", "message": "Invalid credentials provided."}


@pytest.mark.parametrize("accept", [None, "application/json", "application/vnd.heroku+json"])
def test_without_version_3_accept_is_406(
    sbx_heroku: Fake, bot: tuple[str, str], accept: str | None
) -> None:
    response = _client(sbx_heroku, bot[1], accept).get("/account")
    assert response.status_code == 406
    assert response.json()["id"] == "not_acceptable"


def test_rate_limit_429_has_no_retry_after_and_rate_limits_is_free(
    sbx_heroku: Fake, bot: tuple[str, str]
) -> None:
    client = _client(sbx_heroku, bot[1])
    for _ in range(3):
        assert client.get("/account/rate-limits").json() == {"remaining": 4500}
    sbx_heroku.control.post("/rate-limits", json={"remaining": 1, "refill_per_minute": 0})
    assert client.get("/account").status_code == 200
    limited = client.get("/account")
    assert limited.status_code == 429
    assert limited.json()["id"] == "rate_limit"
    assert "retry-after" not in limited.headers
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert client.get("/account/rate-limits").json() == {"remaining": 0}


def test_rate_limit_is_per_account(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    state: HerokuState = sbx_heroku.state
    _, other = state.add_authorization("other@raxx.app")
    state.set_rate_limit(0, email="bot@raxx.app", refill_per_minute=0)
    assert _client(sbx_heroku, bot[1]).get("/account").status_code == 429
    assert _client(sbx_heroku, other).get("/account").status_code == 200


def test_create_authorization_gives_a_live_token_shown_once(
    sbx_heroku: Fake, bot: tuple[str, str]
) -> None:
    client = _client(sbx_heroku, bot[1])
    created = client.post("/oauth/authorizations",
                          json={"scope": ["global"], "description": "job-1"})
    assert created.status_code == 201
    body = created.json()
    token = body["access_token"]["token"]
    assert token.startswith("HRKU-")
    assert body["user"]["email"] == "bot@raxx.app"
    assert body["access_token"]["expires_in"] is None
    assert _client(sbx_heroku, token).get("/account").status_code == 200
    listed = client.get("/oauth/authorizations").json()
    assert {a["id"] for a in listed} == {bot[0], body["id"]}
    assert all(a["access_token"]["token"] is None for a in listed)
    info = client.get(f"/oauth/authorizations/{body['id']}").json()
    assert info["description"] == "job-1"
    assert info["access_token"]["token"] is None


@pytest.mark.parametrize("body", [{}, {"scope": "global"}, {"scope": ["root"]},
                                  {"scope": ["global"], "expires_in": -1}])
def test_create_authorization_validates(
    sbx_heroku: Fake, bot: tuple[str, str], body: dict[str, object]
) -> None:
    response = _client(sbx_heroku, bot[1]).post("/oauth/authorizations", json=body)
    assert response.status_code == 422
    assert response.json()["id"] == "invalid_params"


def test_delete_authorization_kills_its_token_at_once(
    sbx_heroku: Fake, bot: tuple[str, str]
) -> None:
    client = _client(sbx_heroku, bot[1])
    new = client.post("/oauth/authorizations", json={"scope": ["global"]}).json()
    deleted = _client(sbx_heroku, new["access_token"]["token"]).delete(
        f"/oauth/authorizations/{bot[0]}")
    assert deleted.status_code == 200
    assert deleted.json()["id"] == bot[0]
    assert client.get("/account").status_code == 401
    again = _client(sbx_heroku, new["access_token"]["token"]).delete(
        f"/oauth/authorizations/{bot[0]}")
    assert again.status_code == 404
    assert again.json()["id"] == "not_found"


def test_regenerate_kills_the_old_token(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    response = _client(sbx_heroku, bot[1]).post(
        f"/oauth/authorizations/{bot[0]}/actions/regenerate-tokens")
    assert response.status_code == 200
    new = response.json()["access_token"]["token"]
    assert new != bot[1]
    assert not sbx_heroku.state.token_is_live(bot[1])
    assert _client(sbx_heroku, new).get("/account").status_code == 200


def test_authorizations_are_scoped_to_the_users_own(
    sbx_heroku: Fake, bot: tuple[str, str]
) -> None:
    other_id, other = sbx_heroku.state.add_authorization("other@raxx.app")
    client = _client(sbx_heroku, other)
    assert [a["id"] for a in client.get("/oauth/authorizations").json()] == [other_id]
    assert client.get(f"/oauth/authorizations/{bot[0]}").status_code == 404
    assert client.delete(f"/oauth/authorizations/{bot[0]}").status_code == 404
    assert sbx_heroku.state.token_is_live(bot[1])


def test_patch_authorization_description(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    response = _client(sbx_heroku, bot[1]).patch(f"/oauth/authorizations/{bot[0]}",
                                                 json={"description": "renamed"})
    assert response.status_code == 200
    assert response.json()["description"] == "renamed"


def test_scopes_gate_config_vars_and_authorizations(
    sbx_heroku: Fake, bot: tuple[str, str]
) -> None:
    state: HerokuState = sbx_heroku.state
    _, reader = state.add_authorization("bot@raxx.app", ["read-protected"])
    _, writer = state.add_authorization("bot@raxx.app", ["write-protected"])
    _, identity = state.add_authorization("bot@raxx.app", ["identity"])
    assert _client(sbx_heroku, reader).get("/apps/raxx-api-prod/config-vars").status_code == 200
    assert _client(sbx_heroku, identity).get("/apps/raxx-api-prod/config-vars").status_code == (
        403)
    patch = {"X": "1"}
    assert _client(sbx_heroku, reader).patch("/apps/raxx-api-prod/config-vars",
                                             json=patch).status_code == 403
    assert _client(sbx_heroku, writer).patch("/apps/raxx-api-prod/config-vars",
                                             json=patch).status_code == 200
    forbidden = _client(sbx_heroku, writer).post("/oauth/authorizations",
                                                 json={"scope": ["global"]})
    assert forbidden.status_code == 403
    assert forbidden.json()["id"] == "forbidden"


def test_config_vars_patch_merges_deletes_and_answers_full_map(
    sbx_heroku: Fake, bot: tuple[str, str]
) -> None:
    client = _client(sbx_heroku, bot[1])
    before = sbx_heroku.state.app_info("raxx-api-prod")
    response = client.patch("/apps/raxx-api-prod/config-vars",
                            json={"HEROKU_API_KEY": "new", "APP_ENV": None, "EXTRA": "x"})
    assert response.status_code == 200
    assert response.json() == {"HEROKU_API_KEY": "new", "EXTRA": "x"}
    assert client.get("/apps/raxx-api-prod/config-vars").json() == response.json()
    after = sbx_heroku.state.app_info("raxx-api-prod")
    assert after["restarts"] == before["restarts"] + 1  # a config change restarts dynos
    assert after["release_version"] == before["release_version"] + 1


@pytest.mark.parametrize("body", [{"BAD-KEY": "x"}, {"K": 1}, {"K": ["x"]}, ["K"]])
def test_config_vars_patch_validates(
    sbx_heroku: Fake, bot: tuple[str, str], body: object
) -> None:
    client = _client(sbx_heroku, bot[1])
    response = client.patch("/apps/raxx-api-prod/config-vars", json=body)
    assert response.status_code == 422
    assert response.json()["id"] == "invalid_params"
    assert sbx_heroku.state.config_var("raxx-api-prod", "HEROKU_API_KEY") == "old"


def test_unknown_app_is_404_with_resource(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    client = _client(sbx_heroku, bot[1])
    for response in (client.get("/apps/nope"), client.get("/apps/nope/config-vars"),
                     client.patch("/apps/nope/config-vars", json={}),
                     client.delete("/apps/nope/dynos")):
        assert response.status_code == 404
        assert response.json()["id"] == "not_found"
        assert response.json()["resource"] == "app"


def test_app_info_and_dyno_restart(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    client = _client(sbx_heroku, bot[1])
    app = client.get("/apps/raxx-api-prod").json()
    assert app["name"] == "raxx-api-prod"
    assert client.get(f"/apps/{app['id']}").json()["name"] == "raxx-api-prod"
    assert client.delete("/apps/raxx-api-prod/dynos").status_code == 202
    assert sbx_heroku.state.app_info("raxx-api-prod")["restarts"] == 1


def test_reads_do_not_change_the_snapshot_and_it_hides_values(
    sbx_heroku: Fake, bot: tuple[str, str]
) -> None:
    client = _client(sbx_heroku, bot[1])
    before = sbx_heroku.control.get("/state").text
    client.get("/account")
    client.get("/oauth/authorizations")
    client.get("/apps/raxx-api-prod/config-vars")
    after = sbx_heroku.control.get("/state").text
    assert before == after
    assert bot[1] not in after
    assert '"old"' not in after
    client.patch("/apps/raxx-api-prod/config-vars", json={"HEROKU_API_KEY": "new"})
    assert sbx_heroku.control.get("/state").text != after


def test_injected_429_keeps_herokus_error_shape(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    sbx_heroku.fault(method="PATCH", path="/apps/*/config-vars", status=429, times=1)
    client = _client(sbx_heroku, bot[1])
    response = client.patch("/apps/raxx-api-prod/config-vars", json={"K": "v"})
    assert response.status_code == 429
    assert response.json()["id"] == "rate_limit"
    assert "retry-after" not in response.headers
    assert client.patch("/apps/raxx-api-prod/config-vars", json={"K": "v"}).status_code == 200


def test_expiring_authorization(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    created = _client(sbx_heroku, bot[1]).post(
        "/oauth/authorizations", json={"scope": ["global"], "expires_in": 3600}).json()
    assert 3590 <= created["access_token"]["expires_in"] <= 3600


def _busy(fake: Fake, bot: tuple[str, str]) -> list[str]:
    """State touched by every kind of write; returns the secret values it holds."""
    state: HerokuState = fake.state
    client = _client(fake, bot[1])
    client.patch("/apps/raxx-api-prod/config-vars", json={"HEROKU_API_KEY": "hk-new-value"})
    new = client.post("/oauth/authorizations", json={
        "scope": ["read-protected"], "description": "job-7", "expires_in": 3600}).json()
    client.post(f"/oauth/authorizations/{new['id']}/actions/regenerate-tokens")
    client.delete("/apps/raxx-api-prod/dynos")
    state.add_app("raxx-web", {"SESSION_SECRET": "web-session-value"}, ["bot@raxx.app"])
    state.add_user("idle@raxx.app", "Idle")
    return [*state.token_values(), "hk-new-value", "web-session-value"]


def test_state_over_http_shows_no_secret_value(sbx_heroku: Fake, bot: tuple[str, str]) -> None:
    secrets = _busy(sbx_heroku, bot)
    shown = sbx_heroku.control.get("/state")
    assert shown.status_code == 200
    leaked = [value for value in secrets if value in shown.text]
    assert leaked == []
    app = shown.json()["apps"]["raxx-web"]
    assert app["config_vars"] == {"SESSION_SECRET": fingerprint("web-session-value")}
    assert shown.json()["authorizations"][bot[0]]["token"] == fingerprint(bot[1])


def test_seed_of_the_revealed_snapshot_restores_the_state(
    sbx_heroku: Fake, bot: tuple[str, str]
) -> None:
    _busy(sbx_heroku, bot)
    clear, shown = sbx_heroku.state.snapshot(reveal=True), sbx_heroku.control.get("/state")
    sbx_heroku.control.post("/reset").raise_for_status()
    assert sbx_heroku.control.post("/seed", json=clear).status_code == 200
    assert (sbx_heroku.state.snapshot(reveal=True), sbx_heroku.control.get("/state").text) == (
        clear, shown.text)
    # The restored token authenticates and reads the restored values.
    assert _client(sbx_heroku, bot[1]).get("/apps/raxx-web/config-vars").json() == {
        "SESSION_SECRET": "web-session-value"}


_TOKEN = "HRKU-seeded-token-never-echoed"


@pytest.mark.parametrize(("seed", "named"), [
    ({"authorizations": {"a1": {"id": "a1", "user_id": "u1"}}}, "authorizations.a1.token"),
    ({"apps": {"web": {"id": "1", "name": "web", "colour": "red"}}}, "apps.web.colour"),
    ({"apps": {"web": {"id": "1", "name": "web", "config_vars": {"BAD-KEY": "x"}}}},
     "apps.web.config_vars"),
    ({"users": {"u1": {"id": "u2", "email": "a@raxx.app"}}}, "users.u1"),
    ({"authorizations": {"a1": {"id": "a1", "user_id": "nobody", "token": _TOKEN}}},
     "authorizations.a1.user_id"),
    ({"authorizations": {"a1": {"id": "a1", "user_id": "u1", "token": _TOKEN,
                                "scope": ["root"]}}}, "authorizations.a1.scope"),
    ({"authorizations": {"a2": {"id": "a1", "user_id": "u1", "token": _TOKEN}}},
     "authorizations.a2"),
    ({"rate_limits": []}, "rate_limits"),
])
def test_bad_seed_is_400_naming_the_field(
    sbx_heroku: Fake, seed: dict[str, object], named: str
) -> None:
    response = sbx_heroku.control.post("/seed", json=seed)
    assert response.status_code == 400
    assert named in response.json()["error"]
    assert _TOKEN not in response.text
    assert sbx_heroku.state.snapshot() == {"users": {}, "authorizations": {}, "apps": {}}
