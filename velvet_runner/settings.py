"""Settings from the environment, read once (DESIGN.md's contract; defaults: the real vendors)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from velvet_runner.errors import BadArgument
from velvet_runner.manifest_models import ENV_RE

DEFAULT_STATE = ".velvet/state.git"
MIN_STATUS_TOKEN = 16  # characters of a status-app read token


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    manifest: Path = Path("manifest/subscription-manifest.yml")
    state: str = DEFAULT_STATE
    state_branch: str = "velvet-state"
    cache_dir: Path | None = None
    env: str | None = None
    heroku_api_url: str = "https://api.heroku.com"
    postmark_api_url: str = "https://api.postmarkapp.com"
    cloudflare_api_url: str = "https://api.cloudflare.com/client/v4"
    infisical_api_url: str = "https://app.infisical.com"
    github_api_url: str = "https://api.github.com"
    slack_api_url: str = "https://slack.com/api"
    aws_endpoint_url: str | None = None
    # Base URLs from VELVET_<NAME>_API_URL for APIs without a field of their own (name lower
    # case): a vendor module names its API's default URL (Wiring.api_client), not this file.
    api_urls: dict[str, str] = Field(default_factory=dict)
    # Velvet's own bootstrap secrets (runbook section 8): never in the vault it manages.
    heroku_token: SecretStr | None = None
    infisical_client_id: SecretStr | None = None
    infisical_client_secret: SecretStr | None = None
    github_token: SecretStr | None = None
    # The App token that writes secrets cannot open issues; Actions passes GITHUB_TOKEN here.
    github_issues_token: SecretStr | None = None
    slack_token: SecretStr | None = None
    slack_channel: str | None = None
    postmark_server_token: SecretStr | None = None
    ops_email: str | None = None
    ops_email_from: str = "velvet@localhost"  # VELVET_OPS_EMAIL_FROM: a sender Postmark knows
    github_repository: str | None = None
    github_server_url: str = "https://github.com"
    actor: str | None = None
    crash_at: str | None = None
    settle_seconds: float = 30.0
    # The status app (`velvet serve`): its read tokens (several at once, so one can be rotated
    # while the next is already accepted), the token git reads VELVET_STATE with, how often it
    # fetches the branch and how old its copy may get before /healthz says degraded.
    status_tokens: tuple[SecretStr, ...] = ()
    state_token: SecretStr | None = None
    status_refresh_seconds: float = Field(default=10.0, ge=0.05, le=3600)
    status_max_age_seconds: float = Field(default=300.0, ge=1, le=86400)
    status_fingerprint_key: SecretStr | None = None
    # Deploying it (velvet status-app): the Heroku token that deploys, the token that probes.
    status_deploy_token: SecretStr | None = None
    status_token: SecretStr | None = None

    @field_validator("status_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        tokens = [t for t in re.split(r"[\s,]+", value) if t]
        short = [i for i, t in enumerate(tokens, start=1) if len(t) < MIN_STATUS_TOKEN]
        if short:
            # the position, never the value: this message reaches a terminal or a log
            raise BadArgument(
                f"VELVET_STATUS_TOKENS: token {', '.join(map(str, short))} of {len(tokens)} is "
                f"shorter than {MIN_STATUS_TOKEN} characters; use random tokens (for example "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        return tuple(tokens)

    def api_url(self, name: str, default: str) -> str:
        """API `name`'s base URL: VELVET_<NAME>_API_URL when set, else `default`."""
        return self.api_urls.get(name, default)

    @property
    def may_create_state(self) -> bool:
        """Whether a missing state repository may be created: only the default local one.

        Anything named in VELVET_STATE must exist already, so a typo there is refused instead
        of silently becoming a new, empty state branch with no jobs and no locks.
        """
        return Path(self.state).resolve() == Path(DEFAULT_STATE).resolve()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value else None

        values: dict[str, object] = {}
        mapping = {
            "manifest": "VELVET_MANIFEST",
            "state": "VELVET_STATE",
            "state_branch": "VELVET_STATE_BRANCH",
            "cache_dir": "VELVET_CACHE_DIR",
            "env": "VELVET_ENV",
            "heroku_api_url": "VELVET_HEROKU_API_URL",
            "postmark_api_url": "VELVET_POSTMARK_API_URL",
            "cloudflare_api_url": "VELVET_CLOUDFLARE_API_URL",
            "infisical_api_url": "VELVET_INFISICAL_API_URL",
            "github_api_url": "VELVET_GITHUB_API_URL",
            "slack_api_url": "VELVET_SLACK_API_URL",
            "aws_endpoint_url": "AWS_ENDPOINT_URL",
            "heroku_token": "VELVET_HEROKU_TOKEN",
            "infisical_client_id": "VELVET_INFISICAL_CLIENT_ID",
            "infisical_client_secret": "VELVET_INFISICAL_CLIENT_SECRET",
            "github_token": "VELVET_GITHUB_TOKEN",
            "github_issues_token": "VELVET_GITHUB_ISSUES_TOKEN",
            "slack_token": "VELVET_SLACK_TOKEN",
            "slack_channel": "VELVET_SLACK_CHANNEL",
            "postmark_server_token": "VELVET_POSTMARK_SERVER_TOKEN",
            "ops_email": "VELVET_OPS_EMAIL",
            "ops_email_from": "VELVET_OPS_EMAIL_FROM",
            "github_repository": "GITHUB_REPOSITORY",
            "github_server_url": "GITHUB_SERVER_URL",
            "crash_at": "VELVET_CRASH_AT",
            "settle_seconds": "VELVET_SETTLE_SECONDS",
            "status_tokens": "VELVET_STATUS_TOKENS",
            "state_token": "VELVET_STATE_TOKEN",
            "status_refresh_seconds": "VELVET_STATUS_REFRESH_SECONDS",
            "status_max_age_seconds": "VELVET_STATUS_MAX_AGE_SECONDS",
            "status_fingerprint_key": "VELVET_STATUS_FINGERPRINT_KEY",
            "status_deploy_token": "VELVET_STATUS_DEPLOY_TOKEN",
            "status_token": "VELVET_STATUS_TOKEN",
        }
        for field, var in mapping.items():
            value = get(var)
            if value is not None:
                values[field] = value
        values["api_urls"] = {
            var.removeprefix("VELVET_").removesuffix("_API_URL").lower(): value
            for var, value in env.items()
            if var.startswith("VELVET_") and var.endswith("_API_URL") and value
            and var not in mapping.values()}
        # Actions sets GITHUB_REPOSITORY; outside Actions (the sandbox) VELVET_GITHUB_REPOSITORY.
        repository = get("GITHUB_REPOSITORY") or get("VELVET_GITHUB_REPOSITORY")
        if repository:
            values["github_repository"] = repository
        values["actor"] = get("VELVET_ACTOR") or get("GITHUB_ACTOR") or get("USER") or _whoami()
        if values.get("env") is not None and not re.match(ENV_RE, str(values["env"])):
            raise BadArgument("VELVET_ENV must be one of the manifest's environments (a "
                              f"lower-case name such as prod), not {values['env']!r}")
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise BadArgument(f"bad setting in the environment: {exc}") from None


def _whoami() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
