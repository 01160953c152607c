"""Settings from the environment, read once and checked before anything else happens.

Every variable Velvet reads is one row of `VARIABLES`: its name, the field it fills, and the
rule its value must keep (README's settings table states the same rules); or one an adapter
declares (its API's VELVET_<NAME>_API_URL and the secrets its auth reads: client.Api), kept by
name (`api_url`, `secret`) under the same rules, so a new vendor adds no field here.
`Settings.from_env` checks every row, then the rules that join two variables (the state branch
against the state repository's default branch), and raises one SettingsError naming each
variable that breaks its rule, with its value (never a secret's) and the rule: exit 2, before
any file, branch or vendor is touched. An empty value means unset, except `VELVET_STATE`, where
'' is refused: it used to fall back to the default local repository without a word.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from velvet_runner.errors import SettingsError
from velvet_runner.gitbranch import _is_local
from velvet_runner.manifest_models import ENV_RE

DEFAULT_STATE = ".velvet/state.git"
DEFAULT_MANIFEST = "manifest/subscription-manifest.yml"
LOG_LEVELS = ("debug", "info", "warning", "error")
# Branches that are some repository's code, never a place for job records.
RESERVED_BRANCHES = ("HEAD", "main", "master")
MIN_STATUS_TOKEN = 16  # characters of a status-app read token


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    manifest: Path = Path(DEFAULT_MANIFEST)
    state: str = DEFAULT_STATE
    state_branch: str = "velvet-state"
    cache_dir: Path | None = None
    env: str | None = None
    # The APIs Velvet's own code calls beyond the adapters: the status app's deploy (Heroku),
    # the gate, dispatch and issues (GitHub), the notifier (Slack, Postmark).
    heroku_api_url: str = "https://api.heroku.com"
    postmark_api_url: str = "https://api.postmarkapp.com"
    github_api_url: str = "https://api.github.com"
    slack_api_url: str = "https://slack.com/api"
    aws_endpoint_url: str | None = None
    # Base URLs from VELVET_<NAME>_API_URL for APIs without a field of their own (name lower
    # case): an adapter declares its API's default URL (client.Api), not this file.
    api_urls: dict[str, str] = Field(default_factory=dict)
    # Velvet's own bootstrap secrets (runbook section 8), never in the vault it manages, that
    # only adapters read (client.Api's auth declares them): by variable name.
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # ... and those core code reads too (the gate, dispatch, the notifier).
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
    budget_time_scale: float = 1.0
    log_level: str | None = None  # VELVET_LOG; None: log lines only in GitHub Actions
    # The status app (`velvet serve`): its read tokens (several at once, so one can be rotated
    # while the next is already accepted), the token git reads VELVET_STATE with, how often it
    # fetches the branch and how old its copy may get before /healthz says degraded.
    status_tokens: tuple[SecretStr, ...] = ()
    state_token: SecretStr | None = None
    status_refresh_seconds: float = 10.0
    status_max_age_seconds: float = 300.0
    status_fingerprint_key: SecretStr | None = None
    # Deploying it (velvet status-app): the Heroku token that deploys, the token that probes.
    status_deploy_token: SecretStr | None = None
    status_token: SecretStr | None = None

    def api_url(self, name: str, default: str) -> str:
        """API `name`'s base URL: VELVET_<NAME>_API_URL when set, else `default` (an API core
        code calls too keeps its field, whose default is the vendor's)."""
        var = _BY_NAME.get(api_url_variable(name))
        if var is not None and var.field is not None:
            return str(getattr(self, var.field))
        return self.api_urls.get(name, default)

    def secret(self, name: str) -> SecretStr | None:
        """The secret setting `name` (its environment variable), None when unset."""
        var = _BY_NAME.get(name)
        if var is not None and var.field is not None:
            value = getattr(self, var.field)
            return value if isinstance(value, SecretStr) else None
        return self.secrets.get(name)

    @property
    def may_create_state(self) -> bool:
        """Whether a missing state repository may be created: only the default local one.

        Anything named in VELVET_STATE must exist already, so a typo there is refused instead
        of silently becoming a new, empty state branch with no jobs and no locks.
        """
        return Path(self.state).resolve() == Path(DEFAULT_STATE).resolve()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every variable checked against its rule; SettingsError names all that break one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for var in VARIABLES:
            raw = env.get(var.name)
            if raw is None or (raw == "" and not var.empty_refused):
                continue
            try:
                value = var.parse(raw)
            except ValueError as exc:
                problems.append(var.refusal(raw, str(exc)))
                continue
            if var.field is not None and var.field not in values:  # the first name wins
                values[var.field] = value
        secrets: dict[str, SecretStr] = {}
        for var in declared_variables():
            raw = env.get(var.name)
            if not var.secret or not raw:
                continue  # a declared API's URL is read below, with any other
            try:
                secrets[var.name] = var.parse(raw)
            except ValueError as exc:
                problems.append(var.refusal(raw, str(exc)))
        values["secrets"] = secrets
        api_urls: dict[str, str] = {}
        for name, raw in sorted(env.items()):
            if not (name.startswith("VELVET_") and name.endswith("_API_URL")) or not raw:
                continue
            if name in _BY_NAME:
                continue
            try:
                api_urls[name.removeprefix("VELVET_").removesuffix("_API_URL").lower()] = \
                    _http_url(raw)
            except ValueError as exc:
                problems.append(_URL_RULE.refusal(raw, str(exc), name=name))
        values["api_urls"] = api_urls
        if "actor" not in values:
            values["actor"] = env.get("GITHUB_ACTOR") or env.get("USER") or _whoami()
        problems += _branch_problems(values, env)
        if problems:
            raise SettingsError(problems)
        return cls.model_validate(values)


# --- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Var:
    """One environment variable: the Settings field it fills and the rule its value keeps."""

    name: str
    field: str | None  # None: checked here, read where it is used
    rule: str  # what a good value is, said in the refusal and in README's settings table
    parse: Callable[[str], Any]  # the value, or ValueError saying what is wrong with it
    secret: bool = False
    empty_refused: bool = False

    def refusal(self, raw: str, why: str, *, name: str | None = None) -> str:
        """"NAME='value' is refused: why. Rule: ..." (a secret's value is never shown)."""
        shown = "(a secret: its value is not shown)" if self.secret else f"={_shown(raw)}"
        sep = " " if self.secret else ""
        return f"{name or self.name}{sep}{shown} is refused: {why}. Rule: {self.rule}."


def _shown(raw: str) -> str:
    """The value as a person can read it: quoted, control characters escaped, cut to 200
    characters, and any user or password in a URL replaced by ***."""
    if "@" in raw and "://" in raw:
        try:
            parts = urlsplit(raw)
        except ValueError:
            parts = None
        if parts is not None and "@" in parts.netloc:
            raw = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
    text = repr(raw if len(raw) <= 200 else raw[:200])
    return text if len(raw) <= 200 else text + f" (cut: {len(raw)} characters)"


def _finite(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        if value < low or (low_open and value == low) or value > high:
            raise ValueError("out of range")
        return value
    return parse


def _http_url(raw: str) -> str:
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise ValueError("holds whitespace or a control character")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"the scheme is {parts.scheme!r}, not http or https" if parts.scheme
                         else "not a URL (no http:// or https://)")
    if not parts.hostname:
        raise ValueError("no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("it holds a user or password (they would be sent and shown with "
                         "every request's URL)")
    if parts.query or parts.fragment:
        raise ValueError("it has a query or fragment")
    return raw


def _secret(raw: str) -> SecretStr:
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise ValueError("it holds whitespace or a control character (a pasted newline?)")
    return SecretStr(raw)


def _status_tokens(raw: str) -> tuple[SecretStr, ...]:
    """Read tokens, separated by commas or whitespace; each long enough not to be guessed."""
    tokens = [t for t in re.split(r"[\s,]+", raw) if t]
    if not tokens:
        raise ValueError("no token in it")
    if any(not t.isprintable() for t in tokens):
        raise ValueError("a token holds a control character")
    short = [i for i, t in enumerate(tokens, start=1) if len(t) < MIN_STATUS_TOKEN]
    if short:
        # the position, never the value: this message reaches a terminal or a log
        raise ValueError(f"token {', '.join(map(str, short))} of {len(tokens)} is shorter than "
                         f"{MIN_STATUS_TOKEN} characters; use random tokens (for example "
                         "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return tuple(SecretStr(t) for t in tokens)


def _printable(most: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not raw.isprintable():
            raise ValueError("it holds a control character (a newline or an escape)")
        if len(raw) > most:
            raise ValueError(f"{len(raw)} characters is too long")
        return raw
    return parse


def _pattern(regex: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def parse(raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ValueError(f"not {what}")
        return raw
    return parse


def _one_of(*choices: str, lower: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower() if lower else raw
        if value not in choices:
            raise ValueError(f"not one of {', '.join(choices)}")
        return value
    return parse


def _manifest(raw: str) -> Path:
    path = Path(raw)
    if not path.exists():
        raise ValueError("no such file")
    if not path.is_file():
        raise ValueError(_kind(path) + ", not a regular file")
    if not os.access(path, os.R_OK):
        raise ValueError("not readable by this user")
    return path


def _kind(path: Path) -> str:
    if path.is_file():
        return "a file"
    if path.is_dir():
        return "a directory"
    if path.is_fifo():
        return "a FIFO"
    if path.is_char_device() or path.is_block_device():
        return "a device"
    if path.is_socket():
        return "a socket"
    return "not a regular file"


def cache_dir_problem(path: Path) -> str | None:
    """Why `path` cannot hold the state cache, as far as can be told without creating it."""
    if path.exists():
        if not path.is_dir():
            return f"{_kind(path)}, not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return "a directory this user cannot write"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"it cannot be created: {parent} is {_kind(parent)}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"it cannot be created: {parent} is not writable by this user"
    return None


def _cache_dir(raw: str) -> Path:
    path = Path(raw)
    problem = cache_dir_problem(path)
    if problem is not None:
        raise ValueError(problem)
    return path


def _state(raw: str) -> str:
    if not raw.strip():
        raise ValueError("it is empty (unset it to use the default local repository "
                         f"{DEFAULT_STATE})")
    if not raw.isprintable():
        raise ValueError("it holds a control character")
    match = _URL_SCHEME.match(raw)
    if match is None:
        return raw  # a local path, or git's user@host:path
    scheme, form = match.group(1).lower(), match.group(2)
    if form == "::" or scheme not in ("file", "ssh", "git", "http", "https"):
        raise ValueError(f"git transport {scheme!r} is not one Velvet uses")
    if any(c.isspace() for c in raw):
        raise ValueError("a URL with whitespace")
    parts = urlsplit(raw)
    if parts.password is not None or (scheme in ("http", "https") and parts.username):
        raise ValueError("it holds a user or password (put the token in VELVET_STATE_TOKEN, "
                         "which git reads through a credential helper: the URL appears in "
                         "messages and child processes)")
    return raw


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)(://|::)")


def _ref_name(raw: str) -> str:
    """A branch name git accepts (`git check-ref-format --branch`), and none of the reserved."""
    if raw in RESERVED_BRANCHES:
        what = "a symbolic ref, not a branch" if raw == "HEAD" else "a code branch"
        raise ValueError(f"{raw} is {what}; job records need a branch of their own")
    bad = [c for c in raw if ord(c) < 0x20 or ord(c) == 0x7F or c in " ~^:?*[\\"]
    if bad:
        raise ValueError(f"git refuses {bad[0]!r} in a branch name")
    if (raw.startswith(("-", "/")) or raw.endswith(("/", ".")) or "//" in raw or ".." in raw
            or "@{" in raw or raw == "@"):
        raise ValueError("not a valid git branch name (git check-ref-format)")
    for part in raw.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            raise ValueError(f"not a valid git branch name: component {part!r}")
    if len(raw.encode()) > 200:
        raise ValueError("longer than 200 bytes")
    return raw


def _branch_problems(values: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """The state branch must not be the state repository's default branch, where it is known:
    a local repository's HEAD, or in Actions the event's repository (VELVET_STATE is often the
    project repository itself)."""
    branch = values.get("state_branch", "velvet-state")
    state = values.get("state", DEFAULT_STATE)
    default = _default_branch(str(state), env)
    if default is None or branch != default[0]:
        return []
    return [_BRANCH.refusal(branch, f"it is the default branch of the state repository "
                                    f"({default[1]})")]


def _default_branch(state: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    if _is_local(state):
        root = Path(state)
        for head in (root / "HEAD", root / ".git" / "HEAD"):
            try:
                text = head.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                continue
            if text.startswith("ref: refs/heads/"):
                return text.removeprefix("ref: refs/heads/"), f"HEAD of {root}"
            return None
    if env.get("GITHUB_ACTIONS") != "true" or not env.get("GITHUB_EVENT_PATH"):
        return None
    try:
        with open(env["GITHUB_EVENT_PATH"], encoding="utf-8") as handle:
            repository = json.load(handle).get("repository") or {}
    except (OSError, ValueError, AttributeError):
        return None
    name, branch = repository.get("full_name"), repository.get("default_branch")
    if not (isinstance(name, str) and isinstance(branch, str)):
        return None
    if state.rstrip("/").removesuffix(".git").endswith("/" + name):
        return branch, f"the default branch of {name}"
    return None


_URL_RULE = Var("VELVET_<NAME>_API_URL", "api_urls",
                "an http:// or https:// URL with a host, no user or password, no query or "
                "fragment", _http_url)
_SECRET_RULE = "no whitespace or control characters"
_BRANCH = Var("VELVET_STATE_BRANCH", "state_branch",
              "a valid git branch name, not HEAD, main, master or the state repository's "
              "default branch", _ref_name)


def _url(name: str, field: str | None) -> Var:
    return Var(name, field, _URL_RULE.rule, _http_url)


def _secret_var(name: str, field: str | None) -> Var:
    return Var(name, field, _SECRET_RULE, _secret, secret=True)


VARIABLES: tuple[Var, ...] = (
    Var("VELVET_MANIFEST", "manifest", "a readable regular file (not a directory, device or "
        "FIFO)", _manifest),
    Var("VELVET_STATE", "state", "a local path or a file, ssh, git, http(s) URL (or "
        "user@host:path) without a password; not empty", _state, empty_refused=True),
    _BRANCH,
    Var("VELVET_ENV", "env", "one of the manifest's environments: a lower-case name such as "
        "prod", _pattern(ENV_RE.strip("^$"), "a lower-case environment name")),
    Var("VELVET_CACHE_DIR", "cache_dir", "a writable directory, or a path where one can be "
        "created", _cache_dir),
    Var("VELVET_SETTLE_SECONDS", "settle_seconds", "a number of seconds from 0 to 3600",
        _finite(0, 3600)),
    Var("VELVET_BUDGET_TIME_SCALE", "budget_time_scale", "a number above 0 and at most 3600 "
        "(1: the vendors' real clock)", _finite(0, 3600, low_open=True)),
    Var("VELVET_LOG", "log_level", "debug, info, warning or error", _one_of(*LOG_LEVELS,
                                                                            lower=True)),
    _url("VELVET_HEROKU_API_URL", "heroku_api_url"),
    _url("VELVET_POSTMARK_API_URL", "postmark_api_url"),
    _url("VELVET_GITHUB_API_URL", "github_api_url"),
    _url("VELVET_SLACK_API_URL", "slack_api_url"),
    _url("AWS_ENDPOINT_URL", "aws_endpoint_url"),
    _url("GITHUB_SERVER_URL", "github_server_url"),
    _secret_var("VELVET_GITHUB_TOKEN", "github_token"),
    _secret_var("VELVET_GITHUB_ISSUES_TOKEN", "github_issues_token"),
    _secret_var("VELVET_SLACK_TOKEN", "slack_token"),
    _secret_var("VELVET_POSTMARK_SERVER_TOKEN", "postmark_server_token"),
    _secret_var("VELVET_GATE_TOKEN", None),  # read by github.api.gate_token
    Var("VELVET_SLACK_CHANNEL", "slack_channel", "a Slack channel id or name: 1 to 80 "
        "characters, no whitespace", _pattern(r"[^\s]{1,80}", "1 to 80 non-blank characters")),
    Var("VELVET_OPS_EMAIL", "ops_email", "one e-mail address (name@domain)",
        _pattern(r"[^@\s,;<>]+@[^@\s,;<>]+", "one e-mail address")),
    Var("VELVET_OPS_EMAIL_FROM", "ops_email_from", "one e-mail address (name@domain), a "
        "sender the Postmark server knows", _pattern(r"[^@\s,;<>]+@[^@\s,;<>]+",
                                                     "one e-mail address")),
    Var("VELVET_STATUS_TOKENS", "status_tokens", f"one or more read tokens of at least "
        f"{MIN_STATUS_TOKEN} characters, separated by commas or spaces", _status_tokens,
        secret=True),
    _secret_var("VELVET_STATE_TOKEN", "state_token"),
    Var("VELVET_STATUS_REFRESH_SECONDS", "status_refresh_seconds", "a number of seconds from "
        "0.05 to 3600", _finite(0.05, 3600)),
    Var("VELVET_STATUS_MAX_AGE_SECONDS", "status_max_age_seconds", "a number of seconds from 1 "
        "to 86400", _finite(1, 86400)),
    _secret_var("VELVET_STATUS_FINGERPRINT_KEY", "status_fingerprint_key"),
    _secret_var("VELVET_STATUS_DEPLOY_TOKEN", "status_deploy_token"),
    _secret_var("VELVET_STATUS_TOKEN", "status_token"),
    # Actions sets GITHUB_REPOSITORY; outside Actions (the sandbox) VELVET_GITHUB_REPOSITORY.
    Var("GITHUB_REPOSITORY", "github_repository", "owner/name",
        _pattern(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", "owner/name")),
    Var("VELVET_GITHUB_REPOSITORY", "github_repository", "owner/name",
        _pattern(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", "owner/name")),
    Var("VELVET_ACTOR", "actor", "1 to 100 printable characters", _printable(100)),
    Var("VELVET_CRASH_AT", "crash_at", "a crash point's name (tests only)",
        _pattern(r"[a-z][a-z_]*", "a crash point's name")),
)
_BY_NAME = {var.name: var for var in VARIABLES}


def api_url_variable(name: str) -> str:
    """The environment variable that points API `name` elsewhere (a fake, a proxy)."""
    return f"VELVET_{name.upper()}_API_URL"


def declared_variables() -> tuple[Var, ...]:
    """The variables the registered adapters declare beyond VARIABLES (client.Api: each API's
    base URL, the secrets its auth reads), in registry order: from_env checks them, README's
    settings table and `velvet doctor` list them. The registries are imported here, when
    asked, not by this module: they import what reads the settings."""
    from velvet_runner.targets import load_all as load_targets
    from velvet_runner.vendors import load_all as load_vendors

    found: dict[str, Var] = {}
    apis = [api for vendor in load_vendors().values() for api in vendor.APIS]
    apis += [api for target in load_targets().values() for api in target.APIS]
    for api in apis:
        found.setdefault(api_url_variable(api.name), _url(api_url_variable(api.name), None))
        for name in api.secrets:
            found.setdefault(name, _secret_var(name, None))
    return tuple(var for name, var in found.items() if name not in _BY_NAME)


def require_declared_env(settings: Settings, environments: list[str]) -> None:
    """VELVET_ENV names one of the environments the manifest declares (the manifest is read
    after the settings, so this rule is checked when it is)."""
    if settings.env is not None and settings.env not in environments:
        raise refused("VELVET_ENV", settings.env, "not one of the manifest's environments "
                      f"({', '.join(environments)})")


def refused(name: str, raw: str, why: str) -> SettingsError:
    """A variable found to break its rule after start-up (a cache folder the system will not
    create), said as start-up says it."""
    return SettingsError([_BY_NAME[name].refusal(raw, why)])


def _whoami() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
