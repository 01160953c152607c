"""The GitHub fake in the sandbox's registry: Velvet's repository and its gates, and Actions
secrets as consumers."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from velvet_runner.sandbox import registry
from velvet_runner.sandbox.github.app import create_app
from velvet_runner.sandbox.github.state import State

if TYPE_CHECKING:
    from velvet_runner.manifest import Manifest


def gates(manifest: Manifest) -> dict[str, list[str]]:
    """Each env the manifest serves -> its approvers (every credential's, in manifest order)."""
    found: dict[str, list[str]] = {}
    for credential in manifest.credentials:
        found.setdefault(credential.env, [])
        for env, logins in credential.approvers.items():
            known = found.setdefault(env, [])
            known += [login for login in logins if login not in known]
    return found


class GitHubFake(registry.Fake):
    """GitHub: Velvet's repository with environments velvet-<env> and velvet-<env>-revoke
    (the manifest's approvers as required reviewers) and velvet-<env>-verify (no rule); every
    repository, organisation and environment a github_actions_secret consumer names."""

    name = "github"
    setting = "VELVET_GITHUB_API_URL"
    targets = ("github_actions_secret",)

    def new_state(self) -> State:
        return State()

    def app(self) -> Any:
        return create_app(self.state)

    def bootstrap(self, identity: registry.Identity) -> dict[str, str]:
        token = "ghs_" + secrets.token_urlsafe(27)[:36]
        self.state.add_repo(identity.repository)
        self.state.add_token(token, login="velvet-bot")
        return {"VELVET_GITHUB_TOKEN": token, "VELVET_GITHUB_REPOSITORY": identity.repository}

    def prepare(self, manifest: Manifest, identity: registry.Identity) -> None:
        for env, approvers in gates(manifest).items():
            for suffix, reviewers in (("", approvers), ("-revoke", approvers),
                                      ("-verify", None)):
                self.state.add_environment(identity.repository, f"velvet-{env}{suffix}",
                                           list(reviewers) if reviewers else None,
                                           branches=["main"])

    def _scope(self, config: Any) -> str:
        with self.state._lock:
            if config.org:
                if config.org not in self.state._orgs:
                    self.state.add_org(config.org)
                return f"org:{config.org}"
            if config.repository not in self.state._repos:
                self.state.add_repo(config.repository)
            if config.environment:
                if config.environment not in self.state._repos[config.repository].environments:
                    self.state.add_environment(config.repository, config.environment)
                return f"env:{config.repository}:{config.environment}"
            return f"repo:{config.repository}"

    def hold(self, config: Any, value: str) -> None:
        self.state.set_secret(self._scope(config), config.secret, value)

    def held(self, config: Any) -> str | None:
        value: str | None = self.state.secret_plaintext(self._scope(config), config.secret)
        return value


registry.register(GitHubFake)
