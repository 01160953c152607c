"""Fake GitHub REST API (enough for PyGithub 2.x): `state` is its memory and request gate,
`records` the data it holds (pydantic models; `Snapshot` is the state document), `secrets` the
sealed-box Actions secrets, `runs` workflows, dispatch, runs and approvals, `issues` issues,
`views` the JSON, `app` the routes."""

from velvet_sandbox.github import fake  # noqa: E402, I001 - registers the fake
from velvet_sandbox.github.app import create_app
from velvet_sandbox.github.common import (
    DOCS,
    MAX_DISPATCH_INPUTS,
    MAX_SECRET_BYTES,
    MSG_NO_USER_AGENT,
    PRIMARY_LIMIT_DOCS,
    RATE_LIMIT,
    RATE_WINDOW_SECONDS,
    GitHubError,
    error,
)
from velvet_sandbox.github.records import (
    Approval,
    Environment,
    Issue,
    KeyPair,
    Org,
    Repo,
    Run,
    Secret,
    SecretScope,
    Snapshot,
    Workflow,
)
from velvet_sandbox.github.state import State

__all__ = [
    "DOCS",
    "MAX_DISPATCH_INPUTS",
    "MAX_SECRET_BYTES",
    "MSG_NO_USER_AGENT",
    "PRIMARY_LIMIT_DOCS",
    "RATE_LIMIT",
    "RATE_WINDOW_SECONDS",
    "Approval",
    "Environment",
    "GitHubError",
    "Issue",
    "KeyPair",
    "Org",
    "Repo",
    "Run",
    "Secret",
    "SecretScope",
    "Snapshot",
    "State",
    "Workflow",
    "create_app",
    "error",
    "fake",
]
