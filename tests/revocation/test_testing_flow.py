"""The testing flow (`--flow testing`): a dry run that proves every consumer and changes nothing.

"Nothing" is checked the strict way: every fake's whole state (`GET /__velvet/state`) and moto's
SSM parameters and IAM keys are snapshotted before and after, and must be equal.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from velvet_sandbox.world import SERVICES, Sandbox, World

from .conftest import Cli
from .support import fault

GITHUB_CONSUMER = "github-actions-heroku-api-key"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _aws_state(sandbox: Sandbox) -> dict[str, Any]:
    ssm, iam = sandbox.ssm(), sandbox.iam()
    parameters: dict[str, Any] = {}
    for page in ssm.get_paginator("describe_parameters").paginate():
        for meta in page["Parameters"]:
            name = meta["Name"]
            found = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
            parameters[name] = {"version": found["Version"],
                                "modified": str(found["LastModifiedDate"]),
                                "value": _digest(found["Value"])}
    users: dict[str, Any] = {}
    for listing in iam.get_paginator("list_users").paginate():
        for user in listing["Users"]:
            keys = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
            users[user["UserName"]] = sorted((k["AccessKeyId"], k["Status"]) for k in keys)
    return {"ssm": parameters, "iam": users}


def _world_state(sandbox: Sandbox) -> dict[str, Any]:
    with httpx.Client(timeout=10.0) as http:
        state = {name: http.get(sandbox.control_url(name) + "/state").json()
                 for name in SERVICES}
    state["aws"] = _aws_state(sandbox)
    return state


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Which parts changed, by name only: the snapshots hold fake token values."""
    changed = []
    for service in sorted(set(before) | set(after)):
        b, a = before.get(service, {}), after.get(service, {})
        for key in sorted(set(b) | set(a)):
            if json.dumps(b.get(key), sort_keys=True) != json.dumps(a.get(key), sort_keys=True):
                changed.append(f"{service}.{key}")
    return changed


@pytest.mark.parametrize("credential", ["HK_PLATFORM_FULL", "AWS_DEPLOY_KEY", "CF_ZONE_READ"])
def test_dry_run_proves_every_consumer_and_changes_nothing(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World, credential: str) -> None:
    cred = rev_world.manifest().credential(credential)
    assert cred is not None
    consumers = [c.consumer_id for c in cred.consumers]
    before = _world_state(rev_sandbox)

    job_id = rev_cli("rotate", credential, "--flow", "testing").job["job_id"]
    ran = rev_cli("stage", job_id, "verify")

    assert ran.code == 0, ran.err
    job = ran.job
    assert job["status"] == "done"
    assert job["flow_type"] == "testing"
    report = job["report"]["dry_run"]
    assert report["vendor"].startswith("current value accepted")
    assert sorted(report["consumers"]) == sorted(consumers)
    for consumer_id, row in report["consumers"].items():
        assert row["check"] == "succeeded", (consumer_id, row)
        assert row["target"], consumer_id  # where it was probed: reachable and writable
    assert {r["consumer_id"]: r["distribute_status"] for r in job["consumers"]} == dict.fromkeys(
        consumers, "pending")  # nothing was distributed
    assert job["new_auth_id"] is None
    assert job["new_fingerprint"] is None
    assert _differences(before, _world_state(rev_sandbox)) == []
    # The lock is released: a real rotation may start right after a dry run.
    assert rev_cli("rotate", credential).code == 0


def test_dry_run_names_an_unreachable_consumer(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World) -> None:
    # The repository's Actions public key is gone: the secret could not be written.
    fault(rev_sandbox, "github", method="GET",
          path="/repos/raxx/platform/actions/secrets/public-key", status=404)
    before = _world_state(rev_sandbox)

    job_id = rev_cli("rotate", "HK_PLATFORM_FULL", "--flow", "testing").job["job_id"]
    ran = rev_cli("stage", job_id, "verify")

    assert ran.code == 1
    job = ran.job
    assert job["status"] == "validate_failed"
    assert "validate_failed" in ran.err
    report = job["report"]["dry_run"]["consumers"]
    failed = sorted(c for c, r in report.items() if r["check"] == "failed")
    assert failed == [GITHUB_CONSUMER]
    assert "404" in report[GITHUB_CONSUMER]["detail"]
    final = [e for e in job["events"] if e["to_state"] == "validate_failed"]
    assert GITHUB_CONSUMER in final[0]["detail"]
    row = next(r for r in job["consumers"] if r["consumer_id"] == GITHUB_CONSUMER)
    assert row["validate_status"] == "failed"
    assert _differences(before, _world_state(rev_sandbox)) == []


def test_dry_run_with_a_refused_token_is_verify_failed(
        rev_cli: Cli, rev_sandbox: Sandbox, rev_world: World) -> None:
    fault(rev_sandbox, "heroku", method="GET", path="/account", status=401,
          message="Invalid credentials provided.")
    before = _world_state(rev_sandbox)

    job_id = rev_cli("rotate", "HK_PLATFORM_FULL", "--flow", "testing").job["job_id"]
    ran = rev_cli("stage", job_id, "verify")

    assert ran.code == 1
    job = ran.job
    assert job["status"] == "verify_failed"
    final = [e for e in job["events"] if e["to_state"] == "verify_failed"]
    assert "401" in final[0]["detail"]
    assert "dry_run" not in job["report"]  # no consumer was touched with a refused token
    assert _differences(before, _world_state(rev_sandbox)) == []
    # A failed dry run is finished, not stuck: the credential is free again.
    assert rev_cli("rotate", "HK_PLATFORM_FULL").code == 0
