"""An Infisical secret, through the v4 raw-secrets API (vendor-apis.md section 4).

Velvet logs in with its machine identity (universal auth). An expired or malformed access
token answers 403 TokenError: log in again once, then retry. A write diverted into a
change-approval request is not applied, so it is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, StrictStr

from velvet_runner.client import Api, Login, RetryPolicy, raise_for_vendor, request, send
from velvet_runner.errors import (
    AuthRejected,
    NotFound,
    VendorError,
    VendorRejected,
)
from velvet_runner.manifest_models import TargetConfig, VaultConfig
from velvet_runner.records import fingerprint
from velvet_runner.targets import register
from velvet_runner.targets.base import Found, Target

if TYPE_CHECKING:
    import httpx

    from velvet_runner.client import Supplies
    from velvet_runner.manifest import Manifest
    from velvet_runner.manifest_models import Credential


class InfisicalSecret(VaultConfig):
    kind: Literal["infisical_secret"] = Field(description="A secret in Infisical.")
    project_id: StrictStr = Field(description="The Infisical project (workspace) id.")
    environment: StrictStr = Field(description="The Infisical environment slug, e.g. prod.")
    secret_path: Annotated[StrictStr, Field(pattern=r"^/")] = Field(
        "/", description="The folder the secret is in.")
    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = Field(
        description="The secret's key (a vault's companions are NAME__AUTH_ID, "
        "NAME__PENDING, ...).")

    def describe(self) -> str:
        return f"infisical {self.project_id}/{self.environment}{self.secret_path} {self.name}"

    def place(self) -> tuple[str, ...]:
        folder = self.secret_path.rstrip("/") or "/"  # /velvet/ is the folder /velvet
        return (self.kind, self.project_id, self.environment, folder, self.name)


class InfisicalSession:
    """An access token from universal-auth login, shared by every target of one run."""

    def __init__(self, client: httpx.Client, client_id: str, client_secret: str) -> None:
        self.client = client
        self._client_id = client_id
        self._client_secret = client_secret
        self._token: str | None = None
        self._lock = threading.Lock()

    def _login(self) -> str:
        response = request(self.client, "POST", "/api/v1/auth/universal-auth/login",
                           "infisical universal-auth login",
                           json={"clientId": self._client_id, "clientSecret": self._client_secret})
        return str(response.json()["accessToken"])

    def token(self, *, renew: bool = False, stale: str | None = None) -> str:
        with self._lock:
            if self._token is None or (renew and self._token == stale):
                self._token = self._login()
            return self._token

    def call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        token = self.token()
        for attempt in range(2):
            response = send(self.client, method, path, what,
                            headers={"Authorization": f"Bearer {token}"}, **kwargs)
            if response.status_code == 403 and attempt == 0 and _error(response) == "TokenError":
                token = self.token(renew=True, stale=token)
                continue
            raise_for_vendor(response, what)
            return response
        raise AuthRejected(f"{what}: access token refused after a fresh login")


# Velvet's machine identity logs in (universal auth); every target of a run shares the session.
INFISICAL = Api("infisical", "https://app.infisical.com", auth=Login(
    InfisicalSession, ("VELVET_INFISICAL_CLIENT_ID", "VELVET_INFISICAL_CLIENT_SECRET")))


def _error(response: httpx.Response) -> str | None:
    try:
        return str(response.json().get("error"))
    except ValueError:
        return None


class InfisicalSecretTarget(Target):
    kind: ClassVar[str] = "infisical_secret"
    config_model: ClassVar[type[TargetConfig]] = InfisicalSecret
    CAN_BE_VAULT: ClassVar[bool] = True
    APIS: ClassVar[tuple[Api, ...]] = (INFISICAL,)
    BOUND: ClassVar[int | None] = 64

    @classmethod
    def build(cls, config: Any, supplies: Supplies) -> InfisicalSecretTarget:
        return cls(config, supplies.session(INFISICAL))

    def __init__(self, config: InfisicalSecret, session: InfisicalSession) -> None:
        self.config = config
        self.session = session
        self.what = f"infisical secret {config.describe()}"
        self.scope = {"projectId": config.project_id, "environment": config.environment,
                      "secretPath": config.secret_path}

    def read(self) -> SecretStr | None:
        try:
            body = self.session.call("GET", f"/api/v4/secrets/{self.config.name}",
                                     f"GET {self.what}",
                                     params={**self.scope, "type": "shared",
                                             "viewSecretValue": "true"}).json()
        except NotFound:
            return None
        value = (body.get("secret") or {}).get("secretValue")
        return SecretStr(value) if isinstance(value, str) else None

    def write(self, value: SecretStr) -> None:
        body = {**self.scope, "secretValue": value.get_secret_value(), "type": "shared"}
        path = f"/api/v4/secrets/{self.config.name}"
        try:
            response = self.session.call("PATCH", path, f"PATCH {self.what}", json=body)
        except NotFound:
            response = self.session.call("POST", path, f"POST {self.what}", json=body)
        if "approval" in response.json():
            raise VendorRejected(f"{self.what}: the change awaits approval in Infisical and was "
                                 "not applied")

    def delete(self) -> None:
        self.session.call("DELETE", f"/api/v4/secrets/{self.config.name}", f"DELETE {self.what}",
                          json={**self.scope, "type": "shared"})

    def probe(self) -> str:
        listed = self.session.call("GET", "/api/v4/secrets", f"list {self.what}",
                                   params={**self.scope, "viewSecretValue": "false"}).json()
        names = {s.get("secretKey") for s in listed.get("secrets", [])}
        return f"{self.what}: folder readable; " + (
            "secret present" if self.config.name in names else "secret not set yet")

    @classmethod
    def sweep(cls, supplies: Supplies, manifest: Manifest,
              credential: Credential) -> Iterator[Found]:
        """Every secret in every environment of every project Velvet's identity is a member
        of (`GET /api/v1/projects`, then each environment's secrets from `/`, recursively), as
        fingerprints. Infisical answers both listings whole (no pages)."""
        session: InfisicalSession = supplies.session(INFISICAL)
        call = RetryPolicy(sleep=supplies.sleep).run

        def secrets(project: str, env: str) -> Any:
            return call(lambda: session.call(
                "GET", "/api/v4/secrets", f"list infisical {project}/{env}",
                params={"projectId": project, "environment": env, "secretPath": "/",
                        "recursive": "true", "viewSecretValue": "true",
                        "include_imports": "false"})).json()

        listed = call(lambda: session.call("GET", "/api/v1/projects",
                                           "list infisical projects")).json()
        for project in listed.get("projects") or []:
            pid = str(project.get("id"))
            for env in project.get("environments") or []:
                slug = str(env.get("slug"))
                try:
                    body = secrets(pid, slug)
                except VendorError as exc:
                    yield Found(f"infisical {pid}/{slug}", error=str(exc))
                    continue
                for secret in body.get("secrets") or []:
                    value = secret.get("secretValue")
                    if not isinstance(value, str):
                        continue
                    place = InfisicalSecret.model_construct(
                        kind="infisical_secret", project_id=pid, environment=slug,
                        secret_path=str(secret.get("secretPath") or "/"),
                        name=str(secret.get("secretKey")))
                    yield Found(place.describe(), fingerprint(value))


register(InfisicalSecretTarget)
