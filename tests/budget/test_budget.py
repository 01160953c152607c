"""The fan-out stays within each vendor's limits; rate-limit answers mean "wait"; listings of
more than one page are followed to their end.

The fakes enforce the real limits on a faster clock (`time_scale`, set through their control
API) and count concurrency, rate and every refusal; the runner's budgets run on the same scale.
Nothing here asserts on time: only on what the fakes counted and stored.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from velvet_runner.budget import Budgets
from velvet_runner.client import make_client, raise_for_vendor
from velvet_runner.errors import AuthRejected, RateLimited
from velvet_runner.manifest import parse
from velvet_runner.manifest_models import Credential
from velvet_runner.targets.github_actions_secret import (
    GithubActionsSecret,
    GithubActionsSecretTarget,
)
from velvet_runner.targets.heroku_config_var import HerokuConfigVar, HerokuConfigVarTarget
from velvet_runner.vendors.cloudflare import CloudflareVendor
from velvet_runner.vendors.heroku import HerokuVendor

from .conftest import Fake

SCALE = 60.0  # one real second is a minute of budget
GH_TOKEN = "ghs_budgettest000000000000000000000000"
REPO = "raxx/bulk"
FAN_OUT = 128  # the engine's old per-kind bound: as many threads as it ever ran
HEROKU_ACCEPT = {"Accept": "application/vnd.heroku+json; version=3"}


def _github_client(gh: Fake, budgets: Budgets | None) -> httpx.Client:
    return make_client(gh.url, headers={
        "Accept": "application/vnd.github+json", "Authorization": f"Bearer {GH_TOKEN}"},
        budgets=budgets, vendor="github", max_connections=FAN_OUT)


def _github_world(gh: Fake) -> None:
    gh.state.add_token(GH_TOKEN, "velvet-bot")
    gh.state.add_repo(REPO)
    gh.limits(time_scale=SCALE)


def _write_secrets(client: httpx.Client, n: int) -> list[str]:
    targets = [GithubActionsSecretTarget(GithubActionsSecret(
        kind="github_actions_secret", secret=f"BULK_{i:04d}", repository=REPO), client)
        for i in range(n)]

    def write(target: GithubActionsSecretTarget) -> str:
        try:
            target.write(SecretStr("v-new"))
        except (RateLimited, AuthRejected) as exc:
            return type(exc).__name__
        return "ok"

    with ThreadPoolExecutor(FAN_OUT) as pool:
        return list(pool.map(write, targets))


def test_github_fan_out_stays_within_secondary_limits(gh: Fake) -> None:
    """300 secret writes from 128 threads: more than 80 content-generating requests in a
    minute would be refused; the budget paces them so that none is."""
    _github_world(gh)
    budgets = Budgets(time_scale=SCALE)
    with _github_client(gh, budgets) as client:
        results = _write_secrets(client, 300)
    assert results == ["ok"] * 300
    limits = gh.limits()
    assert limits["rejected"] == 0, limits["breaches"]
    assert limits["peak_in_flight"] <= 100
    assert sorted(gh.state.secret_names(f"repo:{REPO}")) == [f"BULK_{i:04d}" for i in range(300)]
    stats = budgets.totals()
    assert stats.rejected == 0
    assert "content-generating requests per minute" in stats.reasons  # the limit did bind


def test_old_fan_out_trips_the_fake_limits(gh: Fake) -> None:
    """The same fan-out without a budget: the fake refuses it the way GitHub does (403, a
    retry-after, the secondary-rate-limit message) and counts the breaches."""
    _github_world(gh)
    with httpx.Client(base_url=gh.url, headers={"Authorization": f"Bearer {GH_TOKEN}",
                                                 "User-Agent": "old-fan-out"},
                      limits=httpx.Limits(max_connections=FAN_OUT)) as client:
        key = client.get(f"/repos/{REPO}/actions/secrets/public-key").json()

        def put(i: int) -> httpx.Response:
            return client.put(f"/repos/{REPO}/actions/secrets/OLD_{i:04d}",
                              json={"encrypted_value": "AAAA", "key_id": key["key_id"]})

        with ThreadPoolExecutor(FAN_OUT) as pool:
            refused = [r for r in pool.map(put, range(200)) if r.status_code == 403]
    assert refused
    body = refused[0].json()
    assert body["message"].startswith("You have exceeded a secondary rate limit.")
    assert int(refused[0].headers["retry-after"]) >= 1
    limits = gh.limits()
    assert limits["rejected"] == len(refused)
    assert {b["rule"] for b in limits["breaches"]} >= {"content_per_minute"}
    with pytest.raises(RateLimited):
        raise_for_vendor(refused[0], "PUT secret")


def test_rate_limit_answers_are_waits_not_refusals() -> None:
    """GitHub's rate-limit 403s are RateLimited; a plain 403 is still a refused credential."""
    request = httpx.Request("PUT", "http://127.0.0.1/x")
    secondary = httpx.Response(403, request=request, headers={"retry-after": "30"},
                               json={"message": "You have exceeded a secondary rate limit."})
    primary = httpx.Response(403, request=request, headers={"x-ratelimit-remaining": "0"},
                             json={"message": "API rate limit exceeded for user ID 1."})
    refused = httpx.Response(403, request=request, headers={"x-ratelimit-remaining": "4999"},
                             json={"message": "Resource not accessible by integration"})
    for response in (secondary, primary):
        with pytest.raises(RateLimited):
            raise_for_vendor(response, "secret")
    with pytest.raises(AuthRejected):
        raise_for_vendor(refused, "secret")


def test_heroku_fan_out_stays_within_the_bucket(hk: Fake) -> None:
    """An almost empty bucket (40 left, refilled 75 a minute): 150 config-var writes from 128
    threads wait for the refill instead of being answered 429."""
    auth_id, token = hk.state.add_authorization("bot@raxx.app", ["global"], "bootstrap")
    for i in range(150):
        hk.state.add_app(f"bulk-{i:03d}", {"KEY": "old"})
    hk.state.set_rate_limit(40, refill_per_minute=75)
    hk.limits(time_scale=SCALE)
    budgets = Budgets(time_scale=SCALE)
    with make_client(hk.url, headers={**HEROKU_ACCEPT, "Authorization": f"Bearer {token}"},
                     budgets=budgets, vendor="heroku", max_connections=FAN_OUT) as client:
        targets = [HerokuConfigVarTarget(HerokuConfigVar(
            kind="heroku_config_var", app=f"bulk-{i:03d}", var="KEY"), client)
            for i in range(150)]
        with ThreadPoolExecutor(FAN_OUT) as pool:
            list(pool.map(lambda t: t.write(SecretStr("new")), targets))
    assert all(hk.state.config_var(f"bulk-{i:03d}", "KEY") == "new" for i in range(150))
    limits = hk.limits()
    assert limits["rejected"] == 0, limits["breaches"]
    assert budgets.totals().rejected == 0
    assert "bucket" in budgets.totals().reasons


# --- paging ------------------------------------------------------------------------------


def test_heroku_list_pages_with_range_and_206(hk: Fake) -> None:
    _, token = hk.state.add_authorization("bot@raxx.app", ["global"], "bootstrap")
    for i in range(450):
        hk.state.add_authorization("bot@raxx.app", ["global"], f"extra-{i}")
    seen: list[str] = []
    headers = {**HEROKU_ACCEPT, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=hk.url, headers=headers) as client:
        first = client.get("/oauth/authorizations")
        assert first.status_code == 206
        assert len(first.json()) == 200
        response, range_ = first, first.headers["Next-Range"]
        seen += [a["id"] for a in first.json()]
        while response.status_code == 206:
            response = client.get("/oauth/authorizations", headers={"Range": range_})
            seen += [a["id"] for a in response.json()]
            range_ = response.headers.get("Next-Range", "")
        assert response.status_code == 200
        assert "Next-Range" not in response.headers
        assert client.get("/oauth/authorizations",
                          headers={"Range": "id ..; max=5000"}).status_code == 416
    assert len(seen) == len(set(seen)) == 451


def test_heroku_find_minted_follows_next_range(hk: Fake) -> None:
    """More than 1,000 authorizations (the most one page holds): both pages are read."""
    _, token = hk.state.add_authorization("bot@raxx.app", ["global"], "bootstrap")
    for i in range(1050):
        hk.state.add_authorization("bot@raxx.app", ["global"], f"other-{i}")
    wanted, _ = hk.state.add_authorization("bot@raxx.app", ["global"], "velvet job-42")
    with make_client(hk.url, headers=HEROKU_ACCEPT, budgets=Budgets(), vendor="heroku") as c:
        vendor = HerokuVendor(_credential(_heroku_cred()), c)
        assert vendor.find_minted(SecretStr(token), "velvet job-42") == wanted
        assert vendor.find_minted(SecretStr(token), "velvet job-43") is None
    listed = [r for r in hk.control.get("/requests").json()["requests"]
              if r["path"] == "/oauth/authorizations"]
    assert [r["status"] for r in listed][-2:] == [206, 200]  # the search that found nothing


def test_cloudflare_find_minted_reads_pages_until_a_short_one(cf: Fake) -> None:
    policies = [{"effect": "allow",
                 "resources": {f"com.cloudflare.api.user.{cf.state.user_id}": "*"},
                 "permission_groups": [{"id": cloudflare_write_group()}]}]
    _, value = cf.state.add_token("user", policies, "rotator")
    for i in range(120):
        cf.state.add_token("user", policies, f"other-{i}")
    wanted, _ = cf.state.add_token("user", policies, "velvet job-7")
    with make_client(cf.url, budgets=Budgets(), vendor="cloudflare") as client:
        vendor = CloudflareVendor(_credential(_cloudflare_cred()), client)
        assert vendor.find_minted(SecretStr(value), "velvet job-7") == wanted
        assert vendor.find_minted(SecretStr(value), "velvet job-8") is None
    pages = [r["path"] for r in cf.control.get("/requests").json()["requests"]
             if r["path"].endswith("/user/tokens")]
    assert len(pages) >= 1 + 3  # the search that found nothing read all three pages


def cloudflare_write_group() -> str:
    from velvet_sandbox import cloudflare

    return cloudflare.API_TOKENS_WRITE


def _credential(row: dict[str, Any]) -> Credential:
    """One manifest row, validated as the manifest validates it (JSON is YAML)."""
    return parse(json.dumps({"credentials": [row]})).credentials[0]


def _heroku_cred() -> dict[str, Any]:
    return _cred("heroku", "HK_BULK")


def _cloudflare_cred() -> dict[str, Any]:
    return {**_cred("cloudflare", "CF_BULK"), "options": {"token_type": "user"}}


def _cred(vendor: str, name: str) -> dict[str, Any]:
    return {"name": name, "vendor": vendor, "env": "prod", "schedule": "90d",
            "vault": {"kind": "infisical_secret", "project_id": "p", "environment": "prod",
                      "secret_path": "/velvet", "name": name},
            "consumers": [{"consumer_id": "c1", "kind": "heroku_config_var", "env": "prod",
                           "app": "some-app", "var": "KEY", "healthcheck": {"type": "none"}}]}


def test_github_listings_follow_link_to_the_last_page() -> None:
    """GitHub pages with `Link: <...>; rel="next"` (client.py's own unit test: MockTransport)."""
    from velvet_runner.client import follow_links

    def pages(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        headers = ({"Link": f'<{request.url.copy_set_param("page", page + 1)}>; rel="next"'}
                   if page < 3 else {})
        return httpx.Response(200, headers=headers, json={
            "total_count": 7, "secrets": [{"name": f"S{page}{i}"} for i in range(3 if page < 3
                                                                                  else 1)]})

    with httpx.Client(base_url="http://github.test", transport=httpx.MockTransport(pages)) as c:
        items = follow_links(c, "/repos/o/r/actions/secrets?per_page=3", "secrets")
    assert [i["name"] for i in items] == ["S10", "S11", "S12", "S20", "S21", "S22", "S30"]


def test_budget_estimates_what_binds_before_a_fan_out() -> None:
    """What the engine prints before a long fan-out: 500 secret writes need six more windows
    of GitHub's 80 content-generating requests a minute; 2,000 Heroku writes fit the bucket."""
    from velvet_runner.budget import POLICIES, Budget

    seconds, why = Budget(POLICIES["github"]).estimate(500)
    assert seconds == 6 * 60
    assert why.startswith("content-generating requests per minute")
    assert Budget(POLICIES["heroku"]).estimate(2000) == (0.0, "")
    assert Budget(POLICIES["heroku"]).estimate(4600)[1] == "request bucket refill"
    assert Budget(POLICIES["github"], time_scale=60).estimate(500)[0] == 6


def test_waits_are_named_while_they_last(gh: Fake) -> None:
    """The fan-out's progress line names who waits for which budget."""
    import threading

    _github_world(gh)
    budgets = Budgets(time_scale=SCALE)
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if text := budgets.waiting_now():
                seen.append(text)
            stop.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with _github_client(gh, budgets) as client:
            assert _write_secrets(client, 200) == ["ok"] * 200
    finally:
        stop.set()
        watcher.join()
    assert any("waiting for github's content-generating requests per minute" in s for s in seen)
    assert budgets.waiting_now() == ""
