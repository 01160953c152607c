"""The sandbox in its own process, driven by JSON lines on stdin (one answer line on stdout).

The fakes run in a separate process so that their CPU (uvicorn, the fault middleware, the
consumer health checks) does not share the benchmarked runner's GIL. World building needs the
fakes' in-process state (`Sandbox.heroku.add_app`, consumer sources), so it happens here too.

Commands (one JSON object per line):

    {"cmd": "fanout_world", "n": 500, "workdir": "/tmp/x", "check": "http"}
        one Heroku user + authorization (the credential to rotate), N apps holding it in a
        config var, the credential's vault in Infisical, a manifest in workdir/manifest/;
        answers {"env": {...}, "credential": "BENCH_FANOUT_500", "consumers": [...]}
    {"cmd": "budget_world", "workdir": "/tmp/x", "github": 500, "heroku_vars": 2000}
        the budget benchmark's world (budget.py)
    {"cmd": "manifest_world", "workdir": "/tmp/x"}   the plain sandbox env (no world)
    {"cmd": "stop"}
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from velvet_sandbox import Sandbox
from velvet_sandbox.world import APPROVERS, INFISICAL_ENV, INFISICAL_PROJECT, VAULT_PATH

VAR = "HEROKU_API_KEY"


def write_manifest(workdir: Path, name: str, description: str,
                   consumers: list[dict[str, Any]]) -> None:
    """The manifest of one Heroku credential `name`, vaulted in the sandbox's Infisical, held
    by `consumers`, with the rotation flag on."""
    document = {"version": 1, "credentials": [{
        "name": name, "vendor": "heroku", "env": "prod", "schedule": "90d",
        "description": description, "options": {"scope": ["global"]},
        "vault": {"kind": "infisical_secret", "project_id": INFISICAL_PROJECT,
                  "environment": INFISICAL_ENV, "secret_path": VAULT_PATH, "name": name},
        "approvers": APPROVERS, "consumers": consumers,
    }]}
    (workdir / "manifest").mkdir(parents=True, exist_ok=True)
    (workdir / "manifest" / "subscription-manifest.yml").write_text(
        yaml.safe_dump(document, sort_keys=False, width=120), encoding="utf-8")
    (workdir / "manifest" / "flags.yml").write_text("velvet_v2_rotation: true\n",
                                                   encoding="utf-8")


def fanout_world(sbx: Sandbox, workdir: Path, n: int, check: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    name = f"BENCH_FANOUT_{n}_{tag.upper()}"
    email = f"bench-owner-{tag}@raxx.app"
    auth_id, token = sbx.heroku.add_authorization(email, ["global"], name)
    sbx.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH, name, token)
    sbx.infisical.set_secret(INFISICAL_PROJECT, INFISICAL_ENV, VAULT_PATH, f"{name}__AUTH_ID",
                             auth_id)
    consumers = []
    for i in range(n):
        app = f"b{tag}-app-{i:05d}"
        cid = f"b{tag}-{i:05d}"
        sbx.heroku.add_app(app, {VAR: token})
        entry: dict[str, Any] = {"consumer_id": cid, "kind": "heroku_config_var", "env": "prod",
                                 "app": app, "var": VAR}
        if check == "http":
            sbx.consumers.register(cid, "heroku",
                                   lambda app=app: sbx.heroku.config_var(app, VAR),
                                   description=f"bench app {app}")
            entry["healthcheck"] = {"type": "http", "url": sbx.health_url(cid),
                                    "expect_status": 200, "timeout_seconds": 30.0}
        else:
            entry["healthcheck"] = {"type": "none"}
        consumers.append(entry)
    write_manifest(workdir, name, f"benchmark credential with {n} heroku_config_var consumers",
                   consumers)
    return {"env": sbx.env(workdir), "credential": name,
            "consumers": [c["consumer_id"] for c in consumers],
            "heroku_control": sbx.control_url("heroku"), "bot_email": "velvet-bot@raxx.app"}


def main() -> None:
    sbx = Sandbox().start()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    try:
        for line in sys.stdin:
            msg = json.loads(line)
            cmd = msg.get("cmd")
            try:
                if cmd == "fanout_world":
                    answer = fanout_world(sbx, Path(msg["workdir"]), int(msg["n"]),
                                          msg.get("check", "http"))
                elif cmd == "budget_world":
                    from budget import budget_world

                    answer = budget_world(sbx, Path(msg["workdir"]), int(msg["github"]),
                                          int(msg["heroku_vars"]))
                elif cmd == "shared_world":
                    from scale import shared_world

                    answer = shared_world(sbx, Path(msg["workdir"]), int(msg["runs"]),
                                          int(msg["secrets"]))
                elif cmd == "mixed_world":
                    from budget import mixed_world

                    answer = mixed_world(sbx, Path(msg["workdir"]), int(msg["n"]))
                elif cmd == "env":
                    answer = {"env": sbx.env(Path(msg["workdir"]))}
                elif cmd == "stop":
                    break
                else:
                    answer = {"error": f"unknown command {cmd!r}"}
            except Exception as exc:  # noqa: BLE001 - report to the driver, keep serving
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        sbx.stop()


if __name__ == "__main__":
    main()
