"""The GitHub fake's state is one pydantic model (records.Snapshot): the snapshot is its dump,
a seed its validation. Over real HTTP on 127.0.0.1: a revealed snapshot seeded into the reset
fake reproduces it; the state route never shows a secret in clear; a bad seed is a 400 that
names the field (and never echoes a value)."""

from __future__ import annotations

import pytest

from velvet_runner.records import fingerprint

from . import test_github
from .test_github import ENV_API, ORG, ORG_API, REPO, REPO_API, TOKEN, Sandbox

# test_github.py's fixtures: this module gets a server of its own, reset before every test.
sbx2_github_server = test_github.sbx2_github_server
sbx2_github = test_github.sbx2_github

VALUES = {"repo": "repo-clear-value-1", "env": "env-clear-value-2", "org": "org-clear-value-3"}


def _busy(sbx: Sandbox) -> None:
    """Something of every record, written through the API where the API can write it."""
    http = sbx.http
    assert http.put(f"{REPO_API}/secrets/R", json=sbx.seal(REPO_API, VALUES["repo"])).is_success
    assert http.put(f"{ENV_API}/secrets/E", json=sbx.seal(ENV_API, VALUES["env"])).is_success
    org_body = {**sbx.seal(ORG_API, VALUES["org"]), "visibility": "selected",
                "selected_repository_ids": [7]}
    assert http.put(f"{ORG_API}/secrets/O", json=org_body).is_success
    dispatch = {"ref": "release", "inputs": {"credential": "c"}, "return_run_details": True}
    run_id = http.post(f"{REPO_API}/workflows/rotate.yml/dispatches", json=dispatch).json()[
        "workflow_run_id"]
    sbx.state.approve(REPO, run_id, "production", "bob", "ok")
    assert http.post(f"/repos/{REPO}/issues", json={"title": "t", "labels": ["l"]}).is_success
    sbx.state.add_environment(REPO, "staging", None, wait_timer=3, branches=["main"])
    sbx.state.add_token("ghs_second_token_value_000", "carol", repos=[REPO])


def test_a_revealed_snapshot_seeded_into_the_reset_fake_reproduces_it(sbx2_github: Sandbox) -> None:
    _busy(sbx2_github)
    shown = sbx2_github.http.get("/__velvet/state").json()
    revealed = sbx2_github.state.snapshot(reveal=True)
    old_key = sbx2_github.http.get(f"{REPO_API}/secrets/public-key").json()

    assert sbx2_github.http.post("/__velvet/reset").status_code == 200
    assert sbx2_github.http.get(f"/repos/{REPO}").status_code == 401  # the token went too
    sbx2_github.state.seed(revealed)

    assert sbx2_github.http.get("/__velvet/state").json() == shown
    assert sbx2_github.state.snapshot(reveal=True) == revealed
    assert sbx2_github.state.secret_plaintext(f"org:{ORG}", "O") == VALUES["org"]
    # The key pairs came back too: a value sealed for the old key opens.
    sealed = {"key_id": old_key["key_id"],
              "encrypted_value": test_github.seal_for(old_key["key"], "after")}
    assert sbx2_github.http.put(f"{REPO_API}/secrets/R", json=sealed).status_code == 204
    assert sbx2_github.state.secret_plaintext(f"repo:{REPO}", "R") == "after"


def test_the_state_route_shows_no_secret_in_clear(sbx2_github: Sandbox) -> None:
    _busy(sbx2_github)
    text = sbx2_github.http.get("/__velvet/state").text
    revealed = sbx2_github.state.snapshot(reveal=True)
    keys = [r["key"]["private_key"] for r in revealed["repos"] + revealed["orgs"]]
    keys += [e["key"]["private_key"] for r in revealed["repos"] for e in r["environments"]]
    hidden = [*VALUES.values(), *sbx2_github.state.token_values(), *keys]
    assert len(hidden) == 3 + 2 + 4
    for value in hidden:
        assert value not in text
        assert fingerprint(value) in text
    assert TOKEN in sbx2_github.state.token_values()


@pytest.mark.parametrize(("seed", "field"), [
    ({"repos": [{"full_name": "no-slash"}]}, "repos.0.full_name"),
    ({"repos": [{"full_name": "a/b", "runs": [{"status": "queued"}]}]}, "repos.0.runs.0.actor"),
    ({"repos": [{"full_name": "a/b", "secrets": [{"name": "S", "value": "leaky-value-9",
                                                  "created_at": "soon"}]}]},
     "repos.0.secrets.0.created_at"),
    ({"repos": [{"full_name": "a/b", "key": {"key_id": "1", "private_key": "leaky-value-9"}}]},
     "repos.0.key.private_key"),
    ({"repos": [{"full_name": "a/b", "environments": [
        {"name": "e", "branches": ["main"], "protected_branches": True}]}]},
     "repos.0.environments.0"),
    ({"tokens": [{"login": "x"}]}, "tokens.0.token"),
    ({"orgs": [{"name": "o", "members": []}]}, "orgs.0.members"),
    ({"users": {"alice": "many"}}, "users.alice"),
])
def test_a_bad_seed_is_a_400_naming_the_field(sbx2_github: Sandbox, seed: dict[str, object],
                                              field: str) -> None:
    before = sbx2_github.state.snapshot(reveal=True)
    response = sbx2_github.http.post("/__velvet/seed", json=seed)
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert "leaky-value-9" not in response.text
    after = sbx2_github.state.snapshot(reveal=True)
    assert {**after, "sequence": 0} == {**before, "sequence": 0}  # nothing merged
