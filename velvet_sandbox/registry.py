"""The registry of fakes, beside the vendor and target registries.

Each fake module declares one `Fake` subclass and registers it: how its API is served (`serve`,
the setting that points Velvet at it, where the API sits under the server root), Velvet's own
credentials at it (`bootstrap`), and what of a manifest it provisions:

    issue(credential)        a live token for a credential of one of its `vendors`
    is_live(value)           whether the vendor would accept a value now (the stand-ins ask)
    hold(config, value)      put a value where a target of one of its `targets` kinds keeps it
    held(config)             the value that target holds now (a consumer stand-in's source)
    forget(config)           remove it (a vault's pending slots, when a world is provisioned)

A fake that serves an app (`app()`) and keeps `control` (the default) builds it with
`control.build_app(name, routes, error=..., state=...)`: its vendor routes, the vendor's own
error body, and its state (a `control.FakeState`), which give it the `/__velvet/` control API
the sandbox resets, seeds and scans through (tests/sandbox/test_fake_control.py names a fake
that does not serve it). `control = False` is for what serves no such API (moto, the manual).

`world.py` builds any manifest's world from this registry alone; a new fake joins the sandbox,
its env, its leak scan and provisioning by registering here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from velvet_runner.registry import Registry

if TYPE_CHECKING:
    from velvet_runner.manifest import Manifest
    from velvet_runner.manifest_models import Credential, TargetConfig

# The order fakes start in (and, given a base port, their ports): the built-ins first, as the
# sandbox always started them; a fake module added later is found and started after them.
ORDER: tuple[str, ...] = ("heroku", "cloudflare", "postmark", "infisical", "github", "slack",
                          "consumers", "aws", "operator_manual")
# Modules of this package that hold no fake: the machinery, the commands, the rehearsals.
_NOT_FAKES = frozenset({"actions_plane", "cli", "control", "demo", "ratelimit", "registry",
                        "rehearse", "server", "world"})


class Server(Protocol):
    """What serving a fake gives: ServerThread, MotoThread."""

    @property
    def url(self) -> str: ...

    def start(self) -> int: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Issued:
    """A live token a fake issued for a credential."""

    value: str
    auth_id: str | None = None  # the vendor's id of the value, if it has one
    companions: dict[str, str] = field(default_factory=dict)  # vault slots NAME__<key>


@dataclass(frozen=True)
class Identity:
    """Who the sandbox's world is (sandbox.yml beside the manifest, or the defaults)."""

    repository: str
    bot_email: str
    ops_email: str
    slack_channel: str
    owners: dict[str, str]  # credential name -> who owns its token at the vendor


class Fake:
    """One fake vendor (or the consumers' stand-ins, or moto). Subclasses set the ClassVars."""

    name: ClassVar[str]
    setting: ClassVar[str | None] = None  # VELVET_<NAME>_API_URL (or AWS_ENDPOINT_URL)
    api_path: ClassVar[str] = ""  # the API's base under the server root
    control: ClassVar[bool] = True  # serves the control API under /__velvet/
    vendors: ClassVar[tuple[str, ...]] = ()  # manifest `vendor` kinds it issues tokens for
    targets: ClassVar[tuple[str, ...]] = ()  # consumer and vault `kind`s it holds values for

    def __init__(self) -> None:
        self.state: Any = self.new_state()
        self.root = ""  # the server root once served: where /__velvet/ lives

    def new_state(self) -> Any:
        return None

    def app(self) -> Any:  # an ASGI app
        raise NotImplementedError(f"fake {self.name} serves no app")

    def serve(self, port: int) -> Server | None:
        """The server to start (None: nothing to serve)."""
        from velvet_sandbox.server import ServerThread

        return ServerThread(self.app(), port, name=self.name)

    @property
    def url(self) -> str:
        return self.root + self.api_path

    def bootstrap(self, identity: Identity) -> dict[str, str]:
        """Velvet's own credentials at this fake (runbook section 8): settings to export."""
        return {}

    def prepare(self, manifest: Manifest, identity: Identity) -> None:
        """The world's frame, at start: what Velvet's own credentials may reach (Infisical
        projects) and what the manifest names beyond tokens and targets (the gates)."""

    def token_values(self) -> list[str]:
        """Every secret this fake ever issued, for leak scans."""
        values = getattr(self.state, "token_values", None)
        return list(values()) if values else []

    def issue(self, credential: Credential, identity: Identity) -> Issued:
        raise NotImplementedError(f"fake {self.name} issues no {credential.vendor} token")

    def is_live(self, value: str) -> bool:
        raise NotImplementedError(f"fake {self.name} has no vendor to ask")

    def hold(self, config: TargetConfig, value: str) -> None:
        raise NotImplementedError(f"fake {self.name} holds no {config.kind}")

    def held(self, config: TargetConfig) -> str | None:
        raise NotImplementedError(f"fake {self.name} holds no {config.kind}")

    def forget(self, config: TargetConfig) -> None:
        """Remove what a target holds, if anything (a fresh world's vault has no pending slot
        left by the last world's jobs). Needed of the fakes whose targets can be a vault."""
        raise NotImplementedError(f"fake {self.name} cannot forget a {config.kind}")


def owner_email(credential: str) -> str:
    """Who owns a credential's token when sandbox.yml does not say."""
    return credential.lower().replace("_", "-") + "@sandbox.invalid"


REGISTRY: Registry[Fake] = Registry("fake", "velvet_sandbox", ORDER, key=lambda cls: cls.name,
                                   not_plugins=_NOT_FAKES)
FAKES = REGISTRY.entries  # name -> class


def register(cls: type[Fake]) -> type[Fake]:
    return REGISTRY.add(cls)


def load_all() -> dict[str, type[Fake]]:
    """Every fake module of the sandbox package, imported: ORDER first, then the rest."""
    return REGISTRY.load_all()
