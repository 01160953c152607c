# ruff: noqa: E501 - the operation list keeps GitHub's paths whole, one per line
"""Write github-openapi.json: GitHub's published OpenAPI description, trimmed to the operations
Velvet calls (OPERATIONS), with everything they reference and nothing else.

    python tests/contract/trim_github_openapi.py SOURCE.json

SOURCE is GitHub's description of api.github.com (github/rest-api-description,
descriptions/api.github.com/api.github.com.json). The copy vendored here was taken from the npm
package @octokit/openapi 23.0.2 (published 2026-09-09), which republishes that file with
`x-octokit` keys added: those keys are dropped here, and the result was checked identical to
github/rest-api-description (commit 0000036e42b5e7121c2b1ac244cb7bba1d2f3914) on the operations
compared. The repository itself could not be fetched whole (its snapshot is 543 MB).

Kept verbatim: each operation (summary, description, parameters, request body, responses and
their schemas) and every component it references. Dropped: examples (they only illustrate),
`x-github` metadata and every other operation. Run it again on a newer description and review
the diff to take GitHub's changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET = HERE / "github-openapi.json"
SOURCE_NOTE = {
    "x-velvet-source": "github/rest-api-description descriptions/api.github.com/"
                       "api.github.com.json, as republished by npm @octokit/openapi 23.0.2 "
                       "(2026-09-09; tarball sha256 71a18407dd5e8464f4e0525daf03deabbe65abd9287"
                       "d6adc7b5d98f516cd0d0c) without its x-octokit keys; spot-checked against "
                       "github/rest-api-description commit 0000036e42b5e7121c2b1ac244cb7bba1d2f"
                       "3914",
    "x-velvet-trimmed": "2026-12-06: only the operations Velvet calls (tests/contract/"
                        "trim_github_openapi.py), examples and x-github dropped",
}
# (method, path) of every GitHub operation doctor, setup, the runner and the workflows call.
OPERATIONS: tuple[tuple[str, str], ...] = tuple(
    (line.split()[0].lower(), line.split()[1]) for line in """
GET /rate_limit
GET /user
GET /users/{username}
GET /user/installations
GET /user/installations/{installation_id}/repositories
PUT /user/installations/{installation_id}/repositories/{repository_id}
GET /installation/repositories
GET /orgs/{org}
GET /orgs/{org}/installations
GET /orgs/{org}/actions/secrets
GET /orgs/{org}/actions/secrets/public-key
GET /orgs/{org}/actions/secrets/{secret_name}
PUT /orgs/{org}/actions/secrets/{secret_name}
DELETE /orgs/{org}/actions/secrets/{secret_name}
GET /repos/{owner}/{repo}
GET /repos/{owner}/{repo}/actions/runs
GET /repos/{owner}/{repo}/actions/runs/{run_id}
GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals
GET /repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments
POST /repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments
GET /repos/{owner}/{repo}/actions/secrets
GET /repos/{owner}/{repo}/actions/secrets/public-key
GET /repos/{owner}/{repo}/actions/secrets/{secret_name}
PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}
DELETE /repos/{owner}/{repo}/actions/secrets/{secret_name}
GET /repos/{owner}/{repo}/actions/variables
POST /repos/{owner}/{repo}/actions/variables
GET /repos/{owner}/{repo}/actions/variables/{name}
PATCH /repos/{owner}/{repo}/actions/variables/{name}
DELETE /repos/{owner}/{repo}/actions/variables/{name}
GET /repos/{owner}/{repo}/actions/workflows
GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}
POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches
GET /repos/{owner}/{repo}/branches/{branch}
GET /repos/{owner}/{repo}/branches/{branch}/protection
GET /repos/{owner}/{repo}/collaborators/{username}/permission
GET /repos/{owner}/{repo}/compare/{basehead}
GET /repos/{owner}/{repo}/contents/{path}
PUT /repos/{owner}/{repo}/contents/{path}
GET /repos/{owner}/{repo}/environments
GET /repos/{owner}/{repo}/environments/{environment_name}
PUT /repos/{owner}/{repo}/environments/{environment_name}
DELETE /repos/{owner}/{repo}/environments/{environment_name}
GET /repos/{owner}/{repo}/environments/{environment_name}/deployment-branch-policies
POST /repos/{owner}/{repo}/environments/{environment_name}/deployment-branch-policies
DELETE /repos/{owner}/{repo}/environments/{environment_name}/deployment-branch-policies/{branch_policy_id}
GET /repos/{owner}/{repo}/environments/{environment_name}/secrets
GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key
GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}
PUT /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}
DELETE /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}
GET /repos/{owner}/{repo}/environments/{environment_name}/variables
POST /repos/{owner}/{repo}/environments/{environment_name}/variables
GET /repos/{owner}/{repo}/environments/{environment_name}/variables/{name}
PATCH /repos/{owner}/{repo}/environments/{environment_name}/variables/{name}
DELETE /repos/{owner}/{repo}/environments/{environment_name}/variables/{name}
POST /repos/{owner}/{repo}/git/commits
POST /repos/{owner}/{repo}/git/refs
POST /repos/{owner}/{repo}/git/trees
POST /repos/{owner}/{repo}/issues
GET /repos/{owner}/{repo}/issues/{issue_number}
GET /repos/{owner}/{repo}/rules/branches/{branch}
GET /repos/{owner}/{repo}/rulesets
POST /repos/{owner}/{repo}/rulesets
GET /repos/{owner}/{repo}/rulesets/{ruleset_id}
PUT /repos/{owner}/{repo}/rulesets/{ruleset_id}
DELETE /repos/{owner}/{repo}/rulesets/{ruleset_id}
""".strip().splitlines())


def _strip(node: Any) -> Any:
    """Without `x-octokit*` keys, examples and `x-github` metadata."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items()
                if not k.startswith("x-octokit") and k not in ("examples", "x-github")}
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _refs(item, found)


def trim(source: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        paths.setdefault(path, {})[method] = _strip(source["paths"][path][method])
    components: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    todo: list[Any] = [paths]
    while todo:
        found: set[str] = set()
        _refs(todo.pop(), found)
        for ref in sorted(found - seen):
            seen.add(ref)
            _, _, kind, name = ref.split("/")
            node = _strip(source["components"][kind][name])
            components.setdefault(kind, {})[name] = node
            todo.append(node)
    info = {key: source["info"][key] for key in ("title", "license") if key in source["info"]}
    return {
        "openapi": source["openapi"],
        "info": {**info, "title": "GitHub v3 REST API (the operations Velvet calls)",
                 "version": "trimmed", **SOURCE_NOTE},
        "servers": [{"url": "https://api.github.com"}],
        "paths": paths,
        "components": {kind: dict(sorted(rows.items())) for kind, rows in
                       sorted(components.items())},
    }


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit(__doc__)
    source = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    TARGET.write_text(json.dumps(trim(source), indent=1, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    print(f"wrote {TARGET} ({len(OPERATIONS)} operations)")


if __name__ == "__main__":
    main(sys.argv[1:])
