"""The OpenAPI 3.1 document, generated from the app's routes: their paths, methods and parameters.

Each route is a `Documented` route carrying a `Doc` (summary, answers, query parameters). A
path's methods are the route's own (HEAD is implied by GET, as HTTP has it), so the document
never lists a method the app does not serve; path parameters come from the route's path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from velvet_runner.records import Job
from velvet_runner.web.api import DEFAULT_LIMIT, MAX_LIMIT

Reply = dict[str, Any]


def _content(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media_type: {"schema": schema}}


def json_reply(schema: str, description: str) -> Reply:
    return {"description": description,
            "content": _content("application/json", {"$ref": f"#/components/schemas/{schema}"})}


def text_reply(media_type: str, description: str) -> Reply:
    return {"description": description, "content": _content(media_type, {"type": "string"})}


ERROR_404 = json_reply("Error", "unknown credential, job or path")
PAGE_404 = text_reply("text/html", "unknown credential or job (HTML page)")
MANIFEST_503 = json_reply("Error", "the manifest or flags.yml does not load")
RECORD_503 = json_reply("Error", "the job record on the state branch does not parse")
LIMIT_400 = json_reply("Error", f"limit is not an integer from 1 to {MAX_LIMIT}")
ERROR_400 = json_reply("Error", "a query parameter is not one the route takes")
PAGE = text_reply("text/html", "HTML page")
DEGRADED_503 = json_reply("Health", "degraded: the state branch cannot be read, or the copy "
                          "is older than VELVET_STATUS_MAX_AGE_SECONDS (`reason` says which)")
STREAMS_503 = json_reply("Error", "a record that does not parse, or too many event streams open")
_REFUSED = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
            "text/html": {"schema": {"type": "string"}}}
UNAUTHORIZED_401 = {"description": "no read token, or one not accepted (a plain HTML page when "
                                   "the client accepts text/html)", "content": _REFUSED}
TOO_MANY_429 = {"description": "too many failed attempts from this client; see Retry-After",
                "content": _REFUSED}

PATH_PARAMETERS = {
    "name": "credential name as in the manifest, e.g. HK_PLATFORM_FULL",
    "job_id": "job id (a UUID)",
}
LIMIT = {"name": "limit", "in": "query", "required": False,
         "description": f"how many jobs, newest first (default {DEFAULT_LIMIT})",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT}}

EVIDENCE_QUERY = (
    {"name": "format", "in": "query", "required": False,
     "description": "md (an auditor's appendix), csv or json",
     "schema": {"enum": ["md", "csv", "json"], "default": "md"}},
    {"name": "since", "in": "query", "required": False,
     "description": "only rotations started this long before the head's time, e.g. 90d",
     "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,4}[hdw]$"}},
    {"name": "credential", "in": "query", "required": False,
     "description": "one credential only", "schema": {"type": "string"}},
)


@dataclass(frozen=True)
class Doc:
    """What the document says of one route: its 200 answer and the others it can give."""

    summary: str
    ok: Reply
    errors: Mapping[int, Reply] = field(default_factory=dict)
    query: tuple[dict[str, Any], ...] = ()
    public: bool = False  # answered without a token (the health probes only)


class Documented(Route):
    """A read-only route (GET, and so HEAD) with its `Doc`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], doc: Doc, *,
                 name: str | None = None) -> None:
        super().__init__(path, endpoint, methods=["GET"], name=name)
        self.doc = doc


def _operation(route: Documented) -> dict[str, Any]:
    doc = route.doc
    params = [{"name": p, "in": "path", "required": True, "description": PATH_PARAMETERS[p],
               "schema": {"type": "string"}} for p in route.param_convertors]
    errors = dict(doc.errors)
    if not doc.public:
        errors.update({401: UNAUTHORIZED_401, 429: TOO_MANY_429})
    op: dict[str, Any] = {"operationId": route.name, "summary": doc.summary,
                          "responses": {"200": doc.ok,
                                        **{str(s): r for s, r in sorted(errors.items())}}}
    if doc.public:
        op["security"] = []
    if params or doc.query:
        op["parameters"] = params + list(doc.query)
    return op


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 description of `routes`; test_web.py checks it against the app."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if isinstance(route, Documented):
            methods = sorted(m.lower() for m in route.methods or () if m != "HEAD")
            paths[route.path] = {m: _operation(route) for m in methods}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Velvet runner status", "version": "1",
                 "description": "Read-only status of credential rotations: every path answers "
                                "GET and HEAD, any other method 405. Every path but the health "
                                "probes needs a read token (Bearer, or HTTP Basic's password). "
                                "Token values never appear in any response; fingerprints are "
                                "shown keyed (hmac:...)."},
        "paths": paths,
        "security": [{"bearer": []}, {"basic": []}],
        "components": {"schemas": _schemas(), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a token from VELVET_STATUS_TOKENS"},
            "basic": {"type": "http", "scheme": "basic",
                      "description": "any user name; a token from VELVET_STATUS_TOKENS as the "
                                     "password (what a browser sends)"}}},
    }


def _schemas() -> dict[str, Any]:
    _, defs = models_json_schema([(Job, "serialization")],
                                 ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs["$defs"])
    env = {"enum": ["prod", "staging"]}
    schemas["Error"] = {
        "type": "object", "additionalProperties": False, "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    }
    schemas["Health"] = {
        "type": "object", "required": ["status", "service"],
        "properties": {"status": {"enum": ["ok", "degraded"]}, "service": {"const": "velvet"},
                       "reason": {"type": "string", "description": "why it is degraded"}},
    }
    schemas["Flags"] = {"type": "object", "additionalProperties": {"type": "boolean"}}
    schemas["Subscriber"] = {
        "type": "object", "additionalProperties": False,
        "required": ["consumer_id", "kind", "env", "active", "healthcheck_type", "target"],
        "properties": {
            "consumer_id": {"type": "string"}, "kind": {"type": "string"}, "env": env,
            "active": {"type": "boolean"},
            "healthcheck_type": {"enum": ["http", "readback", "none"]},
            "target": {"type": "string", "description": "where the value is written"},
        },
    }
    schemas["Subscribers"] = {
        "type": "object", "additionalProperties": False,
        "required": ["credential", "vendor", "env", "active", "schedule", "consumers"],
        "properties": {
            "credential": {"type": "string"}, "vendor": {"type": "string"}, "env": env,
            "active": {"type": "boolean"}, "schedule": {"type": ["string", "null"]},
            "consumers": {"type": "array", "items": {"$ref": "#/components/schemas/Subscriber"}},
        },
    }
    schemas["Rotations"] = {
        "type": "object", "additionalProperties": False,
        "required": ["credential", "limit", "jobs"],
        "properties": {
            "credential": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        },
    }
    schemas["StreamEnd"] = {
        "type": "object", "additionalProperties": False, "required": ["job_id", "status"],
        "properties": {"job_id": {"type": "string"}, "status": {"type": ["string", "null"]},
                       "reason": {"type": "string"}},
    }
    schemas["StreamEvent"] = {
        "description": "One server-sent event (OpenAPI 3.1: the schema describes each event). "
                       "`job` carries the Job JSON and is sent first and on every change of "
                       "status or of a consumer row; `end` is sent once the job is in a "
                       "terminal state, and then the stream closes. Comment lines "
                       "(`: heartbeat`) keep idle connections open.",
        "type": "object", "required": ["event", "data"],
        "properties": {
            "event": {"enum": ["job", "end"]},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"oneOf": [{"$ref": "#/components/schemas/Job"},
                                                 {"$ref": "#/components/schemas/StreamEnd"}]}},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }
    return schemas
