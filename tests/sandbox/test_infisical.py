"""Contract tests for the Infisical fake, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from velvet_runner.budget import POLICIES, Budget, Budgets, Policy
from velvet_runner.client import RetryPolicy, make_client
from velvet_runner.errors import VendorError
from velvet_runner.records import fingerprint
from velvet_runner.targets.infisical_secret import (
    InfisicalSecret,
    InfisicalSecretTarget,
    InfisicalSession,
)
from velvet_sandbox import infisical
from velvet_sandbox.server import ServerThread

from .support import FakeClock, reset_client, serve_on_fake_clock

PROJECT = "proj-velvet"
CLIENT_ID = "ci-rotator"
CLIENT_SECRET = "cs-rotator-0001"


@dataclass
class Sandbox:
    state: infisical.State
    clock: FakeClock
    http: httpx.Client

    def login(self, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> httpx.Response:
        return self.http.post(
            "/api/v1/auth/universal-auth/login",
            json={"clientId": client_id, "clientSecret": secret},
        )

    def token(self) -> str:
        response = self.login()
        assert response.status_code == 200, response.text
        return str(response.json()["accessToken"])

    def authed(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}


@pytest.fixture(scope="module")
def sbx2_infisical_server() -> Iterator[tuple[infisical.State, FakeClock, str]]:
    yield from serve_on_fake_clock(infisical.State, infisical.create_app, "sbx2-infisical")


@pytest.fixture
def sbx2_infisical(
    sbx2_infisical_server: tuple[infisical.State, FakeClock, str],
) -> Iterator[Sandbox]:
    state, clock, url = sbx2_infisical_server
    with reset_client(url, clock) as http:
        state.add_identity(CLIENT_ID, CLIENT_SECRET, [PROJECT])
        yield Sandbox(state, clock, http)


def assert_error(response: httpx.Response, status: int, name: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert {"reqId", "statusCode", "message", "error"} <= set(body)
    assert body["statusCode"] == status
    assert body["error"] == name
    return dict(body)


# -- login -----------------------------------------------------------------------------------


def test_login_issues_jwt_looking_token(sbx2_infisical: Sandbox) -> None:
    response = sbx2_infisical.login()
    assert response.status_code == 200
    body = response.json()
    assert body["expiresIn"] == 2_592_000
    assert body["accessTokenMaxTTL"] == 2_592_000
    assert body["tokenType"] == "Bearer"
    segments = body["accessToken"].split(".")
    assert len(segments) == 3
    header = json.loads(base64.urlsafe_b64decode(segments[0] + "=="))
    assert header["alg"] == "HS256"
    assert sbx2_infisical.state.login_count(CLIENT_ID) == 1
    assert sbx2_infisical.state.issued_tokens() == [body["accessToken"]]


def test_login_with_wrong_secret_is_401(sbx2_infisical: Sandbox) -> None:
    body = assert_error(sbx2_infisical.login(secret="nope"), 401, "UnauthorizedError")
    assert body["message"] == "Invalid credentials"
    assert_error(sbx2_infisical.login(client_id="ghost"), 401, "UnauthorizedError")


def test_login_missing_fields_is_422_with_array_message(sbx2_infisical: Sandbox) -> None:
    response = sbx2_infisical.http.post(
        "/api/v1/auth/universal-auth/login", json={"clientId": CLIENT_ID}
    )
    body = assert_error(response, 422, "ValidationFailure")
    assert isinstance(body["message"], list)
    assert body["message"][0]["path"] == ["clientSecret"]


def test_three_failed_logins_lock_the_client_id_for_300_seconds(sbx2_infisical: Sandbox) -> None:
    for _ in range(3):
        body = assert_error(sbx2_infisical.login(secret="wrong"), 401, "UnauthorizedError")
        assert body["message"] == "Invalid credentials"
    locked = assert_error(sbx2_infisical.login(), 401, "UnauthorizedError")
    assert locked["message"] == infisical.MSG_LOCKED
    sbx2_infisical.clock.advance(299)
    assert sbx2_infisical.login().status_code == 401
    sbx2_infisical.clock.advance(2)
    assert sbx2_infisical.login().status_code == 200


def test_failures_spread_beyond_30_seconds_do_not_lock(sbx2_infisical: Sandbox) -> None:
    for _ in range(4):
        assert sbx2_infisical.login(secret="wrong").status_code == 401
        sbx2_infisical.clock.advance(31)
    assert sbx2_infisical.login().status_code == 200


# -- access tokens ---------------------------------------------------------------------------


def list_v4(sandbox: Sandbox, headers: dict[str, str]) -> httpx.Response:
    return sandbox.http.get(
        "/api/v4/secrets",
        params={"projectId": PROJECT, "environment": "prod", "secretPath": "/"},
        headers=headers,
    )


def test_missing_token_is_401(sbx2_infisical: Sandbox) -> None:
    assert_error(list_v4(sbx2_infisical, {}), 401, "UnauthorizedError")


@pytest.mark.parametrize("token", ["garbage", "a.b", "x.y.z", "Zm9v.YmFy.YmF6"])
def test_malformed_or_forged_token_is_403_token_error(sbx2_infisical: Sandbox, token: str) -> None:
    response = list_v4(sbx2_infisical, {"Authorization": f"Bearer {token}"})
    assert_error(response, 403, "TokenError")


def test_token_with_tampered_signature_is_403(sbx2_infisical: Sandbox) -> None:
    head, payload, _ = sbx2_infisical.token().split(".")
    forged = f"{head}.{payload}.{base64.urlsafe_b64encode(b'x' * 32).decode().rstrip('=')}"
    assert_error(list_v4(sbx2_infisical, {"Authorization": f"Bearer {forged}"}), 403, "TokenError")


def test_expired_token_is_403_token_error(sbx2_infisical: Sandbox) -> None:
    headers = sbx2_infisical.authed()
    assert list_v4(sbx2_infisical, headers).status_code == 200
    sbx2_infisical.clock.advance(2_592_000)
    body = assert_error(list_v4(sbx2_infisical, headers), 403, "TokenError")
    assert body["message"] == "Your token has expired. Please re-authenticate."


def test_tokens_do_not_survive_a_reset(sbx2_infisical: Sandbox) -> None:
    headers = sbx2_infisical.authed()
    sbx2_infisical.http.post("/__velvet/reset")
    assert_error(list_v4(sbx2_infisical, headers), 403, "TokenError")


def test_identity_without_the_project_is_403_permission_denied(sbx2_infisical: Sandbox) -> None:
    sbx2_infisical.state.add_identity("ci-other", "cs-other", ["proj-elsewhere"])
    response = sbx2_infisical.login("ci-other", "cs-other")
    headers = {"Authorization": f"Bearer {response.json()['accessToken']}"}
    assert_error(list_v4(sbx2_infisical, headers), 403, "PermissionDenied")
    sbx2_infisical.state.grant("ci-other", PROJECT)
    assert list_v4(sbx2_infisical, headers).status_code == 200


# -- secrets ---------------------------------------------------------------------------------


def v3_body(**extra: object) -> dict[str, object]:
    return {"workspaceId": PROJECT, "environment": "prod", "secretPath": "/", **extra}


def v4_body(**extra: object) -> dict[str, object]:
    return {"projectId": PROJECT, "environment": "prod", "secretPath": "/", **extra}


def test_create_is_200_and_duplicate_is_400(sbx2_infisical: Sandbox) -> None:
    headers = sbx2_infisical.authed()
    url = "/api/v3/secrets/raw/API_KEY"
    created = sbx2_infisical.http.post(url, json=v3_body(secretValue="v1"), headers=headers)
    assert created.status_code == 200
    secret = created.json()["secret"]
    for key in (
        "id", "_id", "workspace", "environment", "version", "type", "secretKey", "secretValue",
        "secretComment", "secretPath", "tags", "createdAt", "updatedAt",
    ):  # fmt: skip
        assert key in secret
    assert secret["id"] == secret["_id"]
    assert (secret["workspace"], secret["secretKey"], secret["version"]) == (PROJECT, "API_KEY", 1)
    assert secret["secretValue"] == "v1"
    duplicate = sbx2_infisical.http.post(url, json=v3_body(secretValue="v2"), headers=headers)
    body = assert_error(duplicate, 400, "BadRequest")
    assert body["message"] == "Secret already exist"
    # v4 with projectId is the same store
    again = sbx2_infisical.http.post(
        "/api/v4/secrets/API_KEY", json=v4_body(secretValue="v3"), headers=headers
    )
    assert again.status_code == 400
    assert sbx2_infisical.state.secret_value(PROJECT, "prod", "/", "API_KEY") == "v1"


def test_v3_and_v4_read_one_store(sbx2_infisical: Sandbox) -> None:
    sbx2_infisical.state.set_secret(PROJECT, "prod", "/app", "DB_URL", "postgres://x")
    headers = sbx2_infisical.authed()
    v3 = sbx2_infisical.http.get(
        "/api/v3/secrets/raw/DB_URL",
        params={"workspaceId": PROJECT, "environment": "prod", "secretPath": "/app"},
        headers=headers,
    )
    v4 = sbx2_infisical.http.get(
        "/api/v4/secrets/DB_URL",
        params={"projectId": PROJECT, "environment": "prod", "secretPath": "/app/"},
        headers=headers,
    )
    assert v3.status_code == v4.status_code == 200
    assert v3.json() == v4.json()
    assert v3.json()["secret"]["secretValue"] == "postgres://x"
    listed = sbx2_infisical.http.get(
        "/api/v3/secrets/raw",
        params={"workspaceId": PROJECT, "environment": "prod", "secretPath": "/app"},
        headers=headers,
    )
    assert [s["secretKey"] for s in listed.json()["secrets"]] == ["DB_URL"]
    assert listed.json()["imports"] == []
    assert list_v4(sbx2_infisical, headers).json()["secrets"] == []
    recursive = sbx2_infisical.http.get(
        "/api/v4/secrets",
        params={"projectId": PROJECT, "environment": "prod", "recursive": "true"},
        headers=headers,
    )
    assert [s["secretKey"] for s in recursive.json()["secrets"]] == ["DB_URL"]


def test_get_missing_secret_is_404(sbx2_infisical: Sandbox) -> None:
    response = sbx2_infisical.http.get(
        "/api/v4/secrets/NOPE",
        params={"projectId": PROJECT, "environment": "prod"},
        headers=sbx2_infisical.authed(),
    )
    assert_error(response, 404, "NotFound")


def test_v3_list_without_workspace_is_400(sbx2_infisical: Sandbox) -> None:
    response = sbx2_infisical.http.get(
        "/api/v3/secrets/raw", params={"environment": "prod"}, headers=sbx2_infisical.authed()
    )
    assert_error(response, 400, "BadRequest")


def test_patch_increments_version_and_404s_when_missing(sbx2_infisical: Sandbox) -> None:
    headers = sbx2_infisical.authed()
    url = "/api/v4/secrets/TOKEN"
    sbx2_infisical.http.post(url, json=v4_body(secretValue="one"), headers=headers)
    updated = sbx2_infisical.http.patch(url, json=v4_body(secretValue="two"), headers=headers)
    assert updated.status_code == 200
    assert updated.json()["secret"]["version"] == 2
    assert updated.json()["secret"]["secretValue"] == "two"
    again = sbx2_infisical.http.patch(url, json=v4_body(secretValue="three"), headers=headers)
    assert again.json()["secret"]["version"] == 3
    missing = sbx2_infisical.http.patch(
        "/api/v4/secrets/GHOST", json=v4_body(secretValue="x"), headers=headers
    )
    assert_error(missing, 404, "NotFound")


def test_delete_takes_a_json_body(sbx2_infisical: Sandbox) -> None:
    headers = sbx2_infisical.authed()
    sbx2_infisical.state.set_secret(PROJECT, "prod", "/", "OLD", "gone-soon")
    response = sbx2_infisical.http.request(
        "DELETE", "/api/v3/secrets/raw/OLD", json=v3_body(type="shared"), headers=headers
    )
    assert response.status_code == 200
    assert response.json()["secret"]["secretKey"] == "OLD"
    assert sbx2_infisical.state.secret_value(PROJECT, "prod", "/", "OLD") is None
    again = sbx2_infisical.http.request(
        "DELETE", "/api/v3/secrets/raw/OLD", json=v3_body(), headers=headers
    )
    assert_error(again, 404, "NotFound")


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({"projectId": PROJECT, "secretValue": "x"}, "environment"),
        ({"projectId": PROJECT, "environment": "prod"}, "secretValue"),
        ({"environment": "prod", "secretValue": "x"}, "projectId"),
    ],
)
def test_schema_problems_are_422(
    sbx2_infisical: Sandbox, body: dict[str, str], missing: str
) -> None:
    response = sbx2_infisical.http.post(
        "/api/v4/secrets/X", json=body, headers=sbx2_infisical.authed()
    )
    result = assert_error(response, 422, "ValidationFailure")
    assert isinstance(result["message"], list)
    assert [issue["path"] for issue in result["message"]] == [[missing]]


def test_values_are_trimmed_keeping_one_trailing_newline(sbx2_infisical: Sandbox) -> None:
    headers = sbx2_infisical.authed()
    sbx2_infisical.http.post(
        "/api/v4/secrets/PEM", json=v4_body(secretValue="  -----KEY-----\n\n"), headers=headers
    )
    sbx2_infisical.http.post(
        "/api/v4/secrets/PLAIN", json=v4_body(secretValue=" token "), headers=headers
    )
    assert sbx2_infisical.state.secret_value(PROJECT, "prod", "/", "PEM") == "-----KEY-----\n"
    assert sbx2_infisical.state.secret_value(PROJECT, "prod", "/", "PLAIN") == "token"


def test_injected_429_is_rate_limit_exceeded_with_retry_after(sbx2_infisical: Sandbox) -> None:
    fault = {"path": "/api/v4/secrets*", "status": 429, "times": 1, "retry_after": 7}
    assert sbx2_infisical.http.post("/__velvet/faults", json=fault).status_code == 201
    headers = sbx2_infisical.authed()
    limited = list_v4(sbx2_infisical, headers)
    assert_error(limited, 429, "RateLimitExceeded")
    assert limited.headers["retry-after"] == "7"
    assert list_v4(sbx2_infisical, headers).status_code == 200


def test_every_answer_carries_its_routes_window(sbx2_infisical: Sandbox) -> None:
    """@fastify/rate-limit's headers on allowed answers too; each route counts on its own, and
    the reset is seconds until the window frees a request, not an epoch."""
    login = sbx2_infisical.login()
    assert (login.headers["x-ratelimit-limit"], login.headers["x-ratelimit-remaining"]) == (
        "200", "199")
    headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    first, second = list_v4(sbx2_infisical, headers), list_v4(sbx2_infisical, headers)
    assert first.headers["x-ratelimit-limit"] == "60"
    assert [first.headers["x-ratelimit-remaining"], second.headers["x-ratelimit-remaining"]] == [
        "59", "58"]
    assert second.headers["x-ratelimit-reset"] == "60"
    other = sbx2_infisical.http.get(
        "/api/v4/secrets/NOPE", params={"projectId": PROJECT, "environment": "prod"},
        headers=headers)
    assert other.status_code == 404
    assert other.headers["x-ratelimit-remaining"] == "59"


def test_over_a_routes_limit_is_429_with_retry_after_and_a_breach(
    sbx2_infisical: Sandbox,
) -> None:
    headers = sbx2_infisical.authed()
    sbx2_infisical.clock.advance(20.0)
    assert all(list_v4(sbx2_infisical, headers).status_code == 200 for _ in range(60))
    sbx2_infisical.clock.advance(15.0)
    limited = list_v4(sbx2_infisical, headers)
    body = assert_error(limited, 429, "RateLimitExceeded")
    assert body["message"] == "Rate limit exceeded. Please try again in 45 seconds"
    assert {k: limited.headers[k] for k in (
        "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")} == {
        "retry-after": "45", "x-ratelimit-limit": "60", "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "45"}
    limits = sbx2_infisical.http.get("/__velvet/limits").json()
    assert limits["breaches"] == [{"rule": "secrets_per_minute", "count": 1}]
    assert limits["rules"]["secrets_per_minute"] == {"limit": 60, "window": 60}
    # The refused request spent nothing; the window frees it when the first minute is over.
    sbx2_infisical.clock.advance(45.0)
    assert list_v4(sbx2_infisical, headers).status_code == 200


def test_a_time_scale_drains_the_window_faster(sbx2_infisical: Sandbox) -> None:
    control = sbx2_infisical.http
    assert control.post("/__velvet/limits", json={
        "time_scale": 60, "rules": {"secrets_per_minute": {"limit": 2}}}).status_code == 200
    headers = sbx2_infisical.authed()
    assert [list_v4(sbx2_infisical, headers).status_code for _ in range(3)] == [200, 200, 429]
    sbx2_infisical.clock.advance(1.0)  # a vendor minute
    assert list_v4(sbx2_infisical, headers).status_code == 200
    control.post("/__velvet/reset")
    assert control.get("/__velvet/limits").json()["time_scale"] == 1.0


# -- the runner's budget against the fake's limits --------------------------------------------

SCALE = 60.0  # a real second is a vendor minute
BURST = 90  # more writes than one route takes in a minute


@pytest.fixture(scope="module")
def sbx2_infisical_live() -> Iterator[tuple[infisical.State, str]]:
    """A second fake on the real clock: the budget's waits are real waits."""
    state = infisical.State()
    with ServerThread(infisical.create_app(state), name="sbx2-infisical-live") as server:
        yield state, server.url


def _write_burst(state: infisical.State, url: str, budgets: Budgets) -> list[str]:
    """BURST secret writes (a PATCH, then a POST when missing) through the runner's target."""
    httpx.post(url + "/__velvet/reset").raise_for_status()
    state.add_identity(CLIENT_ID, CLIENT_SECRET, [PROJECT])
    httpx.post(url + "/__velvet/limits", json={"time_scale": SCALE}).raise_for_status()
    retry = RetryPolicy()
    with make_client(url, budgets=budgets, vendor="infisical") as client:
        session = InfisicalSession(client, CLIENT_ID, CLIENT_SECRET)

        def write(i: int) -> str:
            target = InfisicalSecretTarget(InfisicalSecret(
                kind="infisical_secret", project_id=PROJECT,
                environment="prod", secret_path="/burst", name=f"K_{i:03d}"), session)
            try:
                retry.run(lambda: target.write(SecretStr(f"v{i}")))
            except VendorError as exc:
                return type(exc).__name__
            return "ok"

        with ThreadPoolExecutor(32) as pool:
            return list(pool.map(write, range(BURST)))


def test_a_budget_paced_burst_of_writes_is_never_refused(
    sbx2_infisical_live: tuple[infisical.State, str],
) -> None:
    state, url = sbx2_infisical_live
    budgets = Budgets(time_scale=SCALE)
    assert _write_burst(state, url, budgets) == ["ok"] * BURST
    limits = httpx.get(url + "/__velvet/limits").json()
    assert limits["rejected"] == 0, limits["breaches"]
    assert budgets.totals().rejected == 0
    assert "writes per minute" in budgets.totals().reasons  # the limit did bind
    assert state.secret_value(PROJECT, "prod", "/burst", f"K_{BURST - 1:03d}") == f"v{BURST - 1}"


def test_an_unpaced_burst_is_refused_and_retried_after_retry_after(
    sbx2_infisical_live: tuple[infisical.State, str],
) -> None:
    state, url = sbx2_infisical_live
    old = POLICIES["infisical"]
    unpaced = Policy("infisical", concurrency=32, default_pause=old.default_pause)
    budgets = Budgets(time_scale=SCALE, policies={"infisical": unpaced})
    assert _write_burst(state, url, budgets) == ["ok"] * BURST
    limits = httpx.get(url + "/__velvet/limits").json()
    assert limits["rejected"] > 0
    assert {b["rule"] for b in limits["breaches"]} == {"secrets_per_minute"}
    assert budgets.totals().rejected == limits["rejected"]
    assert state.secret_value(PROJECT, "prod", "/burst", f"K_{BURST - 1:03d}") == f"v{BURST - 1}"


def test_the_budget_reads_infisicals_reset_as_seconds() -> None:
    """`x-ratelimit-reset: 30` is half a real second at scale 60, not an epoch long past; a
    429 pauses for its retry-after, scaled the same way."""
    budget = Budget(POLICIES["infisical"], time_scale=SCALE)
    request = httpx.Request("GET", "http://127.0.0.1/api/v4/secrets")
    ok = httpx.Response(200, request=request, headers={
        "x-ratelimit-remaining": "5", "x-ratelimit-reset": "30"})
    assert budget._read_headers(ok) == (5.0, 0.5)
    refused = httpx.Response(429, request=request, headers={
        "retry-after": "45", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "45"})
    assert budget.pause_for(refused) == 0.75


# -- client secrets --------------------------------------------------------------------------


def test_client_secret_create_list_revoke(sbx2_infisical: Sandbox) -> None:
    headers = sbx2_infisical.authed()
    identity = sbx2_infisical.state.identity_id(CLIENT_ID)
    base = f"/api/v1/auth/universal-auth/identities/{identity}/client-secrets"
    created = sbx2_infisical.http.post(base, json={"description": "job-42"}, headers=headers)
    assert created.status_code == 200
    new_secret = created.json()["clientSecret"]
    data = created.json()["clientSecretData"]
    assert data["description"] == "job-42"
    assert data["isClientSecretRevoked"] is False
    assert data["clientSecretPrefix"] == new_secret[:4]
    assert sbx2_infisical.login(secret=new_secret).status_code == 200

    listed = sbx2_infisical.http.get(base, headers=headers).json()["clientSecretData"]
    assert len(listed) == 2
    assert all("clientSecret" not in row for row in listed)

    old_id = next(row["id"] for row in listed if row["id"] != data["id"])
    revoked = sbx2_infisical.http.post(f"{base}/{old_id}/revoke", headers=headers)
    assert revoked.status_code == 200
    assert revoked.json()["clientSecretData"]["isClientSecretRevoked"] is True
    assert sbx2_infisical.login().status_code == 401  # the old secret no longer works
    assert sbx2_infisical.login(secret=new_secret).status_code == 200
    # access tokens issued before the revoke keep working (vendor-apis.md 4.7)
    assert list_v4(sbx2_infisical, headers).status_code == 200

    assert sbx2_infisical.http.post(f"{base}/nope/revoke", headers=headers).status_code == 404
    unknown = sbx2_infisical.http.get(
        "/api/v1/auth/universal-auth/identities/nobody/client-secrets", headers=headers
    )
    assert_error(unknown, 404, "NotFound")


def test_client_secret_ttl_and_use_limit(sbx2_infisical: Sandbox) -> None:
    headers = sbx2_infisical.authed()
    identity = sbx2_infisical.state.identity_id(CLIENT_ID)
    base = f"/api/v1/auth/universal-auth/identities/{identity}/client-secrets"
    limited = sbx2_infisical.http.post(base, json={"numUsesLimit": 1}, headers=headers).json()
    assert sbx2_infisical.login(secret=limited["clientSecret"]).status_code == 200
    assert sbx2_infisical.login(secret=limited["clientSecret"]).status_code == 401
    short = sbx2_infisical.http.post(base, json={"ttl": 60}, headers=headers).json()
    sbx2_infisical.clock.advance(61)
    body = assert_error(
        sbx2_infisical.login(secret=short["clientSecret"]), 401, "UnauthorizedError"
    )
    assert "expired" in str(body["message"])


# -- control ---------------------------------------------------------------------------------


def test_snapshot_ignores_reads_and_logins_and_round_trips(sbx2_infisical: Sandbox) -> None:
    sbx2_infisical.state.set_secret(PROJECT, "prod", "/", "A", "1")
    before = sbx2_infisical.http.get("/__velvet/state").json()
    headers = sbx2_infisical.authed()
    list_v4(sbx2_infisical, headers)
    sbx2_infisical.login(secret="wrong")
    assert sbx2_infisical.http.get("/__velvet/state").json() == before
    assert before == sbx2_infisical.state.snapshot()

    sbx2_infisical.http.post("/api/v4/secrets/B", json=v4_body(secretValue="2"), headers=headers)
    changed = sbx2_infisical.state.snapshot(reveal=True)
    assert sbx2_infisical.state.snapshot() != before

    fresh = infisical.State(clock=sbx2_infisical.clock)
    fresh.seed(changed)
    assert fresh.snapshot(reveal=True) == changed


def test_the_state_route_shows_client_secrets_and_values_as_fingerprints(
    sbx2_infisical: Sandbox,
) -> None:
    sbx2_infisical.state.set_secret(PROJECT, "prod", "/", "A", "clear-value-1")
    text = sbx2_infisical.http.get("/__velvet/state").text
    assert "clear-value-1" not in text
    assert CLIENT_SECRET not in text
    assert fingerprint("clear-value-1") in text
    assert fingerprint(CLIENT_SECRET) in text
    assert sbx2_infisical.state.secret_value(PROJECT, "prod", "/", "A") == "clear-value-1"
    assert CLIENT_SECRET in sbx2_infisical.state.token_values()


def test_seed_over_http(sbx2_infisical: Sandbox) -> None:
    seed = {
        "identities": [{"client_id": "ci-seeded", "client_secret": "s3", "projects": [PROJECT]}],
        "secrets": [{"project": PROJECT, "environment": "dev", "name": "K", "value": "v"}],
    }
    assert sbx2_infisical.http.post("/__velvet/seed", json=seed).status_code == 200
    assert sbx2_infisical.login("ci-seeded", "s3").status_code == 200
    assert sbx2_infisical.state.secret_value(PROJECT, "dev", "/", "K") == "v"
    bad = sbx2_infisical.http.post("/__velvet/seed", json={"nope": []})
    assert bad.status_code == 400


def test_seed_and_snapshot_are_the_snapshot_model(sbx2_infisical: Sandbox) -> None:
    state, clock = sbx2_infisical.state, sbx2_infisical.clock
    state.set_secret(PROJECT, "prod", "/app/", "DB_URL", "postgres://clear")
    state.add_identity("ci-second", "cs-second-0001", ["proj-b", "proj-a"])
    clear = state.snapshot(reveal=True)
    restored = infisical.Snapshot.model_validate(clear)
    assert restored.model_dump(mode="json", context={"reveal": True}) == clear
    shown = sbx2_infisical.http.get("/__velvet/state")
    assert shown.json() == restored.model_dump(mode="json")
    for value in ("postgres://clear", "cs-second-0001", CLIENT_SECRET):
        assert value not in shown.text
    second = next(i for i in shown.json()["identities"] if i["client_id"] == "ci-second")
    assert second["projects"] == ["proj-a", "proj-b"]
    assert "num_uses" not in second["client_secrets"][0]

    clock.advance(5.0)
    seeded = {"secrets": [{"project": PROJECT, "environment": "dev", "path": "/x/",
                           "name": "K", "value": "v"}]}
    assert sbx2_infisical.http.post("/__velvet/seed", json=seeded).status_code == 200
    row = next(s for s in state.snapshot()["secrets"] if s["name"] == "K")
    assert (row["path"], row["created_at"], row["version"]) == ("/x", clock.now, 1)
    assert row["id"]  # the fake assigns one


@pytest.mark.parametrize(("seed", "field"), [
    ({"identities": [{"projects": [PROJECT]}]}, "identities.0.client_id"),
    ({"secrets": [{"project": PROJECT, "environment": "prod", "name": "K"}]}, "secrets.0.value"),
    ({"secrets": [{"project": PROJECT, "environment": "prod", "name": "K", "value": "v",
                   "colour": "red"}]}, "secrets.0.colour"),
    ({"identities": [{"client_id": "c", "client_secrets": [{"id": "x"}]}]},
     "identities.0.client_secrets.0.client_secret"),
])
def test_a_bad_seed_is_400_naming_the_field(
    sbx2_infisical: Sandbox, seed: dict[str, object], field: str,
) -> None:
    before = sbx2_infisical.state.snapshot()
    bad = sbx2_infisical.http.post("/__velvet/seed", json=seed)
    assert bad.status_code == 400
    assert field in bad.json()["error"]
    assert sbx2_infisical.state.snapshot() == before
