"""GitHub's published OpenAPI description (the trimmed copy beside this file) as a checker:
which operation a request is, and whether a request or a response fits it.

    api = GitHubDescription.load()
    problems = api.request_problems("PUT", "/repos/o/r/environments/prod", {}, body)
    problems = api.response_problems("GET", "/repos/o/r/environments/prod", 200, data)

Schemas are OpenAPI 3.0 (`nullable`), checked with openapi-schema-validator; `$ref`s resolve
inside the description.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator

HERE = Path(__file__).resolve().parent
DESCRIPTION = HERE / "github-openapi.json"
# Sent by Velvet, accepted by github.com, absent from the published description. Each is
# named with the evidence that GitHub takes it.
UNDOCUMENTED_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    # "Allow administrators to bypass configured protection rules" (Settings → Environments):
    # github.com takes it in the PUT since 2023 (google/go-github#2725: "not yet documented
    # in the api documentation. However it is functional"; terraform-provider-github sends
    # it); older GHES answers 422 "can_admins_bypass is not a permitted key".
    ("put", "/repos/{owner}/{repo}/environments/{environment_name}"):
        frozenset({"can_admins_bypass"}),
}


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    spec: dict[str, Any]


class GitHubDescription:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._routes = [(re.compile(_pattern(t, capture=False)), t) for t in document["paths"]]

    @classmethod
    @cache
    def load(cls) -> GitHubDescription:
        return cls(json.loads(DESCRIPTION.read_text(encoding="utf-8")))

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation a request's method and path are (path without the query)."""
        # A literal segment beats a parameter: /secrets/public-key before /secrets/{name}.
        matches = [t for pattern, t in self._routes if pattern.match(path)]
        for template in sorted(matches, key=lambda t: t.count("{")):
            spec = self.document["paths"][template].get(method.lower())
            if spec is not None:
                return Operation(method.lower(), template, spec)
        return None

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            found: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                found = found[part]
            node = found
        return node

    def _problems(self, schema: dict[str, Any], value: Any) -> list[str]:
        # The schema beside the description's components, so "#/components/..." resolves.
        rooted = {"allOf": [schema], "components": self.document["components"]}
        validator = OAS30Validator(rooted)
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(body)'}: {e.message}"
                for e in validator.iter_errors(value)]

    def request_problems(self, method: str, path: str, query: dict[str, str],
                         body: Any) -> list[str]:
        """Why a request does not fit GitHub's description ([] when it does)."""
        op = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: no such operation in GitHub's description"]
        where = f"{method} {op.template}"
        problems: list[str] = []
        params = [self._resolve(p) for p in op.spec.get("parameters", [])]
        known_query = {p["name"]: p for p in params if p["in"] == "query"}
        for name, raw in query.items():
            param = known_query.get(name)
            if param is None:
                problems.append(f"{where}: query parameter {name} is not in the description")
                continue
            value: Any = raw
            if param.get("schema", {}).get("type") == "integer" and raw.isdigit():
                value = int(raw)
            problems += [f"{where} ?{name}: {p}" for p in self._problems(param["schema"], value)]
        values = dict(zip(re.findall(r"\{([^}]+)\}", op.template),
                          _segments(op.template, path), strict=True))
        for param in params:
            if param["in"] == "path" and param["name"] in values:
                raw = values[param["name"]]
                value = int(raw) if param["schema"].get("type") == "integer" and \
                    raw.isdigit() else raw
                problems += [f"{where} {{{param['name']}}}: {p}"
                             for p in self._problems(param["schema"], value)]
        request_body = op.spec.get("requestBody")
        if request_body is None:
            if body not in (None, {}, b""):
                problems.append(f"{where}: sends a body the operation does not take")
            return problems
        request_body = self._resolve(request_body)
        if body is None:
            if request_body.get("required"):
                problems.append(f"{where}: the body is required")
            return problems
        schema = request_body["content"]["application/json"]["schema"]
        allowed = UNDOCUMENTED_FIELDS.get((op.method, op.template), frozenset())
        if allowed and isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in allowed}
        problems += [f"{where} body {p}" for p in self._problems(schema, body)]
        return problems

    def response_problems(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Why a response does not fit the operation's documented response for `status`."""
        op = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: no such operation in GitHub's description"]
        response = op.spec["responses"].get(str(status))
        if response is None:
            return [f"{method} {op.template}: {status} is not a documented answer"]
        response = self._resolve(response)
        content = response.get("content", {}).get("application/json")
        if content is None:
            return [] if body in (None, b"", "") else [
                f"{method} {op.template} {status}: a body where GitHub documents none"]
        return [f"{method} {op.template} {status} {p}"
                for p in self._problems(content["schema"], body)]


# Parameters whose value may hold slashes (a file path, a branch name, base...head).
SLASHED = ("path", "branch", "basehead", "ref")


def _pattern(template: str, *, capture: bool) -> str:
    def one(match: re.Match[str]) -> str:
        body = ".+" if match.group(1) in SLASHED else "[^/]+"
        return f"({body})" if capture else body

    return "^" + re.sub(r"\{([^}]+)\}", one, template) + "$"


def _segments(template: str, path: str) -> list[str]:
    """The values of a template's `{params}` in `path`."""
    match = re.match(_pattern(template, capture=True), path)
    return list(match.groups()) if match else []
