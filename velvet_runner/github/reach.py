"""`velvet doctor`'s checks of Velvet's own credentials (runbook section 8): each one present
here reaches what the manifest names, read-only (the targets' `probe`, IAM's ListAccessKeys,
Slack's auth.test and conversations.info, Postmark's GET /server)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from velvet_runner.errors import VelvetError

from .checklist import Check, fail, ok, skip

if TYPE_CHECKING:
    from velvet_runner.manifest_models import TargetConfig
    from velvet_runner.settings import Settings

    from .expect import Expected


def reached_with(kind: str) -> tuple[str, ...]:
    """The bootstrap settings (runbook section 8) Velvet reaches target kind `kind` with: the
    secrets its APIs declare (none for AWS: the job's role, by OIDC, or ambient credentials)."""
    from velvet_runner.targets import load_all

    return tuple(name for api in load_all()[kind].APIS for name in api.secrets)


def reach_checks(expected: Expected, settings: Settings,
                 wiring_factory: Callable[[], Any]) -> list[Check]:
    out: list[Check] = []
    wiring = wiring_factory()
    try:
        seen: set[str] = set()
        for config in _targets(expected):
            key = config.describe()
            if key not in seen:
                seen.add(key)
                out.append(_probe(wiring, config))
        out += _aws_users(expected, wiring)
        out += _notifications(settings)
    finally:
        wiring.close()
    return out


def _targets(expected: Expected) -> Iterator[TargetConfig]:
    for cred in expected.manifest.credentials:
        if not cred.active or cred.env not in expected.envs:
            continue
        yield cred.vault
        for consumer in cred.consumers:
            if consumer.active and consumer.env == cred.env:
                yield consumer


def _probe(wiring: Any, config: TargetConfig) -> Check:
    needs = reached_with(config.kind)
    title = f"reach {config.describe()}"
    absent = [name for name in needs if not os.environ.get(name)]
    if absent:
        return skip(f"reach:{config.describe()}", title, f"{', '.join(absent)} not set "
                    "here (velvet-doctor.yml runs where the bootstrap secrets are)")
    try:
        target = wiring.target(config)
        detail = target.probe().removeprefix(f"{getattr(target, 'what', '')}: ")
    except VelvetError as exc:
        with_what = ", ".join(needs) or "the AWS role"
        return fail(f"reach:{config.describe()}", title, str(exc),
                    f"check {with_what} (a revoked or wrong value, or one without access "
                    f"there); runbook section 8 replaces a bootstrap credential")
    return ok(f"reach:{config.describe()}", title, detail)


def _aws_users(expected: Expected, wiring: Any) -> list[Check]:
    """The AWS role reaches each rotated IAM user's keys (ListAccessKeys, a read)."""
    from velvet_runner.aws import translate

    out: list[Check] = []
    for cred in expected.manifest.credentials:
        if cred.vendor != "aws_iam" or not cred.active or cred.env not in expected.envs:
            continue
        user, region = cred.options.user_name, cred.options.region
        title = f"reach IAM user {user}'s access keys ({cred.name})"
        try:
            keys = wiring.aws.client("iam", region).list_access_keys(UserName=user)
        except Exception as exc:  # noqa: BLE001 - translated below
            try:
                error: VelvetError = translate(exc, f"iam ListAccessKeys {user}")
            except Exception:  # noqa: BLE001 - not a botocore error: name it
                error = VelvetError(type(exc).__name__)
            out.append(fail(f"reach:iam:{user}", title, str(error), "grant the AWS role "
                            "iam:ListAccessKeys, iam:CreateAccessKey, iam:DeleteAccessKey, "
                            f"iam:UpdateAccessKey on {user} (docs/setup.md §5)"))
            continue
        count = len(keys.get("AccessKeyMetadata", []))
        out.append(ok(f"reach:iam:{user}", title, f"{count} key(s)"))
    return out


def _notifications(s: Settings) -> list[Check]:
    out: list[Check] = []
    title = "Slack (VELVET_SLACK_TOKEN) reaches VELVET_SLACK_CHANNEL"
    if s.slack_token is None or not s.slack_channel:
        out.append(skip("notify:slack", title, "VELVET_SLACK_TOKEN or VELVET_SLACK_CHANNEL "
                        "not set here"))
    else:
        out.append(_slack(s, title))
    title = "Postmark (VELVET_POSTMARK_SERVER_TOKEN)"
    if s.postmark_server_token is None:
        out.append(skip("notify:postmark", title, "not set here"))
    else:
        out.append(_postmark(s, title))
    return out


def _slack(s: Settings, title: str) -> Check:
    from velvet_runner.client import make_client

    assert s.slack_token is not None  # noqa: S101 - checked by the caller
    fix = ("replace VELVET_SLACK_TOKEN in the velvet-* environments (runbook section 8) and "
           "invite the bot to the channel")
    try:
        with make_client(s.slack_api_url, headers={
                "Authorization": f"Bearer {s.slack_token.get_secret_value()}"}) as client:
            auth = client.post("auth.test").json()
            if not auth.get("ok"):
                return fail("notify:slack", title, f"auth.test: {auth.get('error')}", fix)
            info = client.get("conversations.info", params={"channel": s.slack_channel}).json()
    except Exception as exc:  # noqa: BLE001 - any transport failure is the finding
        return fail("notify:slack", title, f"Slack unreachable: {type(exc).__name__}", fix)
    if not info.get("ok"):
        return fail("notify:slack", title, f"conversations.info: {info.get('error')}", fix)
    channel = info.get("channel") or {}
    if not channel.get("is_member") or channel.get("is_archived"):
        return fail("notify:slack", title, f"the bot is not in {s.slack_channel} (or it is "
                    "archived)", fix)
    return ok("notify:slack", title, f"as {auth.get('user')}, in {s.slack_channel}")


def _postmark(s: Settings, title: str) -> Check:
    from velvet_runner.client import make_client

    assert s.postmark_server_token is not None  # noqa: S101 - checked by the caller
    try:
        with make_client(s.postmark_api_url, headers={
                "Accept": "application/json",
                "X-Postmark-Server-Token": s.postmark_server_token.get_secret_value()}) as client:
            response = client.get("/server")
    except Exception as exc:  # noqa: BLE001 - any transport failure is the finding
        return fail("notify:postmark", title, f"Postmark unreachable: {type(exc).__name__}",
                    "check VELVET_POSTMARK_API_URL and the network")
    if response.status_code != 200:
        return fail("notify:postmark", title, f"GET /server: HTTP {response.status_code}",
                    "replace VELVET_POSTMARK_SERVER_TOKEN in the velvet-* environments "
                    "(runbook section 8)")
    return ok("notify:postmark", title, f"server {response.json().get('Name', '?')}")
