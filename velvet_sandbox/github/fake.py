"""The GitHub fake in the sandbox's registry: Velvet's repository and its gates, and Actions
secrets as consumers."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from velvet_sandbox import registry
from velvet_sandbox.github.app import create_app
from velvet_sandbox.github.state import State

if TYPE_CHECKING:
    from velvet_runner.manifest import Manifest


def gates(manifest: Manifest) -> dict[str, list[str]]:
    """Each env the manifest serves -> its approvers (Manifest.approvers_by_env)."""
    return manifest.approvers_by_env()


APP_CLIENT_ID = "Iv1.velvet-sandbox"  # the sandbox's GitHub App (VELVET_APP_CLIENT_ID)
# What docs/setup.md section 4 grants the App: secrets (and environments' secrets) to write,
# and the workflow files velvet scan reads.
APP_PERMISSIONS = {"secrets": "write", "environments": "write", "contents": "read",
                   "metadata": "read"}


class GitHubFake(registry.Fake):
    """GitHub: Velvet's repository with environments velvet-<env> and velvet-<env>-revoke
    (the manifest's approvers as required reviewers) and velvet-<env>-verify (no rule), the
    approvers as its collaborators (write), Velvet's GitHub App installed on the repositories
    whose secrets are consumers (with organization_secrets when an organisation's are); every
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
        self._bootstrap_token = token  # the App's installation token once prepare installs it
        # The workflows open issues with the job's GITHUB_TOKEN (the App's token cannot): an
        # integration's token on Velvet's own repository, allowed issues and nothing else.
        issues = "ghs_" + secrets.token_urlsafe(27)[:36]
        self.state.add_token(issues, login="github-actions[bot]", repos=[identity.repository],
                             permissions={"issues": "write", "metadata": "read"})
        return {"VELVET_GITHUB_TOKEN": token, "VELVET_GITHUB_ISSUES_TOKEN": issues,
                "VELVET_GITHUB_REPOSITORY": identity.repository,
                "VELVET_APP_CLIENT_ID": APP_CLIENT_ID}

    def prepare(self, manifest: Manifest, identity: registry.Identity) -> None:
        from velvet_runner.github.expect import ENVIRONMENTS, Expected

        repository = identity.repository
        for env, approvers in gates(manifest).items():
            for suffix, gated in ENVIRONMENTS:
                self.state.add_environment(repository, f"velvet-{env}{suffix}",
                                           list(approvers) if gated and approvers else None,
                                           branches=["main"])
            for login in approvers:
                self.state.add_collaborator(repository, login, "write")
        expected = Expected.of(manifest, envs=list(manifest.environments))
        targets = expected.secret_repositories
        for target in targets:
            if target not in self.state._repos:
                self.state.add_repo(target)
        # What `velvet doctor` asks of the App (an organisation's secrets need
        # organization_secrets), as a careful adopter grants it.
        needed = expected.app_permissions
        if targets or "organization_secrets" in needed:
            self.state.add_installation(repository.partition("/")[0], APP_CLIENT_ID,
                                        app_slug="velvet-sandbox", repositories=targets,
                                        permissions={**APP_PERMISSIONS, **needed})
            # As in the workflows, Velvet reaches Actions secrets with the App's installation
            # token (docs/setup.md section 4), not a person's.
            self.app_token(self._bootstrap_token)

    def add_target_repo(self, repo: str) -> None:
        """A repository Velvet writes secrets to, added after `prepare` (a benchmark's or a
        scale rehearsal's): the sandbox App is installed on it, as an adopter's setup does."""
        if repo not in self.state._repos:
            self.state.add_repo(repo)
        with self.state._lock:
            found = [i.id for i in self.state._installations.values()
                     if i.client_id == APP_CLIENT_ID]
        for installation in found:
            self.state.install_on(installation, repo)

    def app_token(self, token: str) -> None:
        """Accept `token` as the sandbox App's installation token (what the workflows'
        create-github-app-token step hands the stages): its permissions and repositories."""
        with self.state._lock:
            found = [i for i in self.state._installations.values()
                     if i.client_id == APP_CLIENT_ID]
        if found:
            self.state.add_token(token, "velvet-sandbox[bot]", installation=found[-1].id)
        else:  # nothing to install it on: a token that reaches no repository
            self.state.add_token(token, "velvet-sandbox[bot]", repos=[],
                                 permissions={"metadata": "read"})

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
