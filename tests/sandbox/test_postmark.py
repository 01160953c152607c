"""Contract tests for the Postmark fake, written from vendor-apis.md section 2."""

from __future__ import annotations

import httpx
import pytest

from velvet_runner.records import fingerprint
from velvet_sandbox import postmark as pm
from velvet_sandbox.postmark import PostmarkState, Server

from .support import Fake

JSON = "application/json"


@pytest.fixture
def server(sbx_postmark: Fake) -> Server:
    state: PostmarkState = sbx_postmark.state
    return state.add_server("raxx-transactional")


@pytest.fixture
def account_token(sbx_postmark: Fake) -> str:
    state: PostmarkState = sbx_postmark.state
    return state.add_account_token()


def _server_client(fake: Fake, token: str) -> httpx.Client:
    return fake.client(**{"Accept": JSON, "X-Postmark-Server-Token": token})


def _account_client(fake: Fake, token: str) -> httpx.Client:
    return fake.client(**{"Accept": JSON, "X-Postmark-Account-Token": token})


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.json()["ErrorCode"] == pm.BAD_TOKEN


def test_get_server_lists_api_tokens(sbx_postmark: Fake, server: Server) -> None:
    token = server.tokens[0]
    response = _server_client(sbx_postmark, token).get("/server")
    assert response.status_code == 200
    body = response.json()
    assert body["ID"] == server.id
    assert body["Name"] == "raxx-transactional"
    assert body["ApiTokens"] == [token]


def test_header_names_are_case_insensitive(sbx_postmark: Fake, server: Server) -> None:
    client = sbx_postmark.client(**{"accept": JSON, "x-postmark-server-token": server.tokens[0]})
    assert client.get("/server").status_code == 200


def test_token_errors_are_401_error_code_10(
    sbx_postmark: Fake, server: Server, account_token: str
) -> None:
    _assert_401(sbx_postmark.client(Accept=JSON).get("/server"))
    _assert_401(_server_client(sbx_postmark, "not-a-token").get("/server"))
    # The wrong kind of token is refused the same way.
    _assert_401(_account_client(sbx_postmark, account_token).get("/server"))
    _assert_401(_server_client(sbx_postmark, account_token).get("/server"))
    _assert_401(_server_client(sbx_postmark, server.tokens[0]).get(
        "/servers", params={"count": 1, "offset": 0}))
    # Bearer is not a Postmark scheme.
    bearer = sbx_postmark.client(Accept=JSON, Authorization=f"Bearer {server.tokens[0]}")
    _assert_401(bearer.get("/server"))


def test_accept_json_is_required(sbx_postmark: Fake, server: Server) -> None:
    client = sbx_postmark.client(**{"X-Postmark-Server-Token": server.tokens[0]})
    response = client.get("/server")
    assert response.status_code == 422
    assert response.json()["ErrorCode"] == pm.JSON_REQUIRED


def test_servers_with_account_token(
    sbx_postmark: Fake, server: Server, account_token: str
) -> None:
    state: PostmarkState = sbx_postmark.state
    other = state.add_server("other")
    client = _account_client(sbx_postmark, account_token)
    listed = client.get("/servers", params={"count": 1, "offset": 1}).json()
    assert listed["TotalCount"] == 2
    assert [s["ID"] for s in listed["Servers"]] == [other.id]
    named = client.get("/servers", params={"count": 10, "offset": 0, "name": "raxx"}).json()
    assert [s["Name"] for s in named["Servers"]] == ["raxx-transactional"]
    one = client.get(f"/servers/{server.id}").json()
    assert one["ApiTokens"] == server.tokens
    missing = client.get("/servers/999")
    assert missing.status_code == 422
    assert missing.json()["ErrorCode"] == pm.SERVER_NOT_FOUND
    assert client.get("/servers").status_code == 422  # count and offset are required


def test_operator_adds_and_deletes_tokens_through_control_routes(
    sbx_postmark: Fake, server: Server
) -> None:
    old = server.tokens[0]
    added = sbx_postmark.control.post(f"/servers/{server.id}/tokens")
    assert added.status_code == 201
    new = added.json()["token"]
    client = _server_client(sbx_postmark, new)
    assert client.get("/server").json()["ApiTokens"] == [old, new]
    sbx_postmark.control.post(f"/servers/{server.id}/tokens").raise_for_status()
    assert sbx_postmark.control.post(f"/servers/{server.id}/tokens").status_code == 422  # max 3
    assert sbx_postmark.control.delete(f"/tokens/{old}").status_code == 200
    _assert_401(_server_client(sbx_postmark, old).get("/server"))
    assert old not in client.get("/server").json()["ApiTokens"]
    assert sbx_postmark.control.delete(f"/tokens/{old}").status_code == 404


def test_no_token_management_in_the_vendor_api(sbx_postmark: Fake, server: Server) -> None:
    client = _server_client(sbx_postmark, server.tokens[0])
    assert client.post("/server/tokens").status_code in (404, 405)
    assert client.delete(f"/tokens/{server.tokens[0]}").status_code in (404, 405)


def test_send_email_is_recorded(sbx_postmark: Fake, server: Server) -> None:
    client = _server_client(sbx_postmark, server.tokens[0])
    response = client.post("/email", json={"From": "velvet@raxx.app", "To": "ops@raxx.app",
                                           "Subject": "rotated", "TextBody": "done"})
    assert response.status_code == 200
    body = response.json()
    assert body["ErrorCode"] == 0
    assert body["Message"] == "OK"
    sent = sbx_postmark.state.sent()
    assert len(sent) == 1
    assert sent[0]["To"] == "ops@raxx.app"
    assert sent[0]["Subject"] == "rotated"
    assert sent[0]["TextBody"] == "done"
    assert sbx_postmark.control.get("/outbox").json()["messages"][0]["MessageID"] == (
        body["MessageID"])


@pytest.mark.parametrize("body", [{"From": "a@raxx.app", "TextBody": "x"},
                                  {"To": "b@raxx.app", "TextBody": "x"},
                                  {"From": "a@raxx.app", "To": "b@raxx.app"}])
def test_send_email_validates(sbx_postmark: Fake, server: Server, body: dict[str, str]) -> None:
    response = _server_client(sbx_postmark, server.tokens[0]).post("/email", json=body)
    assert response.status_code == 422
    assert response.json()["ErrorCode"] == pm.INVALID_REQUEST
    assert sbx_postmark.state.sent() == []


def test_api_test_token_sends_nothing(sbx_postmark: Fake) -> None:
    response = _server_client(sbx_postmark, pm.TEST_TOKEN).post(
        "/email", json={"From": "a@raxx.app", "To": "b@raxx.app", "TextBody": "x"})
    assert response.status_code == 200
    assert sbx_postmark.state.sent() == []
    _assert_401(_server_client(sbx_postmark, pm.TEST_TOKEN).get("/server"))


def test_snapshot_hides_tokens(sbx_postmark: Fake, server: Server) -> None:
    snapshot = sbx_postmark.control.get("/state").text
    assert server.tokens[0] not in snapshot
    assert "sha256:" in snapshot


def _busy(fake: Fake, server: Server) -> list[str]:
    """State touched by every kind of write; returns every token the fake handed out."""
    state: PostmarkState = fake.state
    state.add_token(server.id)
    old = state.add_token(server.id)
    state.delete_token(old)
    state.add_account_token()
    state.add_server("other")
    _server_client(fake, server.tokens[0]).post("/email", json={
        "From": "velvet@raxx.app", "To": "ops@raxx.app", "Subject": "s", "HtmlBody": "<p>x</p>"})
    return state.token_values()


def test_state_over_http_shows_no_token(sbx_postmark: Fake, server: Server) -> None:
    tokens = _busy(sbx_postmark, server)
    shown = sbx_postmark.control.get("/state")
    assert shown.status_code == 200
    assert [token for token in tokens if token in shown.text] == []
    assert shown.json()["servers"][str(server.id)]["tokens"][0] == fingerprint(server.tokens[0])


def test_seed_of_the_revealed_snapshot_restores_the_state(
    sbx_postmark: Fake, server: Server
) -> None:
    _busy(sbx_postmark, server)
    clear, shown = sbx_postmark.state.snapshot(reveal=True), sbx_postmark.control.get("/state")
    sbx_postmark.control.post("/reset").raise_for_status()
    assert sbx_postmark.control.post("/seed", json=clear).status_code == 200
    assert sbx_postmark.state.snapshot(reveal=True) == clear
    assert sbx_postmark.control.get("/state").text == shown.text
    # The restored token authenticates, and new servers get ids after the seeded ones.
    assert _server_client(sbx_postmark, server.tokens[0]).get("/server").status_code == 200
    assert sbx_postmark.state.add_server("next").id == max(int(i) for i in clear["servers"]) + 1


_TOKEN = "postmark-seeded-token-never-echoed"


@pytest.mark.parametrize(("seed", "named"), [
    ({"servers": {"7": {"id": 7}}}, "servers.7.name"),
    ({"servers": {"7": {"id": 8, "name": "s", "tokens": [_TOKEN]}}}, "servers.7"),
    ({"servers": {"7": {"id": 7, "name": "s", "tokens": [_TOKEN] * 4}}}, "servers.7.tokens"),
    ({"servers": {"7": {"id": 7, "name": "s", "DeliveryType": "Live"}}},
     "servers.7.DeliveryType"),
    ({"account_tokens": [_TOKEN, "b", "c", "d"]}, "account_tokens"),
    # With the fixture's token, three more are one too many for the account.
    ({"account_tokens": [_TOKEN, "b", "c"]}, "account_tokens"),
    ({"outbox": [{"MessageID": "m", "From": "a@raxx.app"}]}, "outbox.0.ServerID"),
])
def test_bad_seed_is_400_naming_the_field_and_changes_nothing(
    sbx_postmark: Fake, account_token: str, seed: dict[str, object], named: str
) -> None:
    before = sbx_postmark.state.snapshot(reveal=True)
    response = sbx_postmark.control.post("/seed", json=seed)
    assert (response.status_code, named in response.json()["error"]) == (400, True)
    assert _TOKEN not in response.text
    assert sbx_postmark.state.snapshot(reveal=True) == before
    assert not sbx_postmark.state.token_is_live(_TOKEN)
