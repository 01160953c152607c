"""Synthetic manifests for the benchmarks (valid, no anchors, all four target kinds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KINDS = ("heroku_config_var", "github_actions_secret", "infisical_secret", "aws_ssm_parameter")


def _consumer(cred: int, i: int) -> dict[str, Any]:
    cid = f"c{cred:04d}-{i:02d}"
    kind = KINDS[i % len(KINDS)]
    entry: dict[str, Any] = {"consumer_id": cid, "kind": kind, "env": "prod"}
    if kind == "heroku_config_var":
        entry.update(app=f"app-{cred:04d}-{i:02d}", var="API_KEY",
                     healthcheck={"type": "http",
                                  "url": f"https://app-{cred:04d}-{i:02d}.example.com/health",
                                  "expect_status": 200, "timeout_seconds": 5.0})
    elif kind == "github_actions_secret":
        entry.update(repository=f"raxx/repo-{cred:04d}", secret=f"API_KEY_{i:02d}",
                     healthcheck={"type": "readback"})
    elif kind == "infisical_secret":
        entry.update(project_id="raxx-platform", environment="prod",
                     secret_path=f"/svc-{cred:04d}", name=f"API_KEY_{i:02d}",
                     healthcheck={"type": "none"})
    else:
        entry.update(name=f"/raxx/prod/c{cred:04d}/API_KEY_{i:02d}", region="us-east-1",
                     healthcheck={"type": "readback"})
    return entry


def write_manifest(path: Path, credentials: int, consumers: int) -> list[str]:
    """Write a manifest (and flags.yml) of `credentials` x `consumers`; returns the names."""
    names = [f"BENCH_CRED_{c:04d}" for c in range(credentials)]
    document = {"version": 1, "credentials": [{
        "name": name, "vendor": "heroku", "env": "prod", "schedule": "90d",
        "description": f"synthetic credential {c}",
        "options": {"scope": ["global"]},
        "vault": {"kind": "infisical_secret", "project_id": "raxx-platform",
                  "environment": "prod", "secret_path": "/velvet", "name": name},
        "approvers": {"prod": ["alice", "bob"]},
        "consumers": [_consumer(c, i) for i in range(consumers)],
    } for c, name in enumerate(names)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    # libyaml's emitter when there is one: 5,000 x 10 takes seconds instead of a minute.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(document, Dumper=dumper, sort_keys=False, width=120),
                    encoding="utf-8")
    (path.parent / "flags.yml").write_text("velvet_v2_rotation: true\n", encoding="utf-8")
    return names
