"""The subscription manifest: which credential goes to which consumers.

Loading validates everything first and raises one ManifestError listing every problem as
"file:line: field: message". The YAML loader is safe (no object-constructing tags), refuses
duplicate keys and alias bombs, and remembers the line of every node so pydantic's errors can
be pointed back at the file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from velvet_runner.errors import ManifestError
from velvet_runner.manifest_yaml import (
    MAX_DEPTH,
    MAX_NODES,
    Path_,
    _BadTag,
    _check_depth,
    _compose,
    _field,
    _Located,
    _NotPlain,
    _plain_data,
    _TooDeep,
    _TooLarge,
)

Env = Literal["prod", "staging"]
ENVS: tuple[str, ...] = ("prod", "staging")

# Velvet's own credentials: rotating them through Velvet is circular (runbook section 8).
BOOTSTRAP_CREDENTIALS: dict[str, str] = {
    "INFISICAL_CLIENT_SECRET": "runbook section 8, 'Rotating INFISICAL_CLIENT_SECRET'",
    "INFISICAL_CLIENT_ID": "runbook section 8, 'Rotating INFISICAL_CLIENT_SECRET'",
    "HK_VELVET_BOOTSTRAP": "runbook section 8, 'Rotating HK_VELVET_BOOTSTRAP'",
}

# A manifest (or flags.yml) bigger than this is refused before it is read; a generated manifest
# of 10,000 consumers is about 3 MB.
MAX_BYTES = 32 * 1024 * 1024
# The flags Velvet itself reads from flags.yml (others may sit beside them and are served at
# /flags); a key close to one of these is almost certainly a typo of it.
ROTATION_FLAG = "velvet_v2_rotation"
KNOWN_FLAGS: dict[str, str] = {
    ROTATION_FLAG: "off: every mutating command refuses (exit 4)",
}
NAME_RE = r"^[A-Z][A-Z0-9_]{0,127}$"
CONSUMER_ID_RE = r"^[a-z0-9][a-z0-9-]{0,99}$"
SCHEDULE_RE = re.compile(r"^([1-9][0-9]{0,4})([hdw])$")
SCHEDULE_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- health checks -------------------------------------------------------------------------


class HttpCheck(_Model):
    """GET the consumer's health URL; it must answer `expect_status` with the value it holds."""

    type: Literal["http"]
    url: AnyHttpUrl
    expect_status: StrictInt = Field(default=200, ge=100, le=599)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url", mode="before")
    @classmethod
    def _http_only(cls, value: object) -> object:
        if isinstance(value, str) and not re.match(r"^https?://", value):
            raise ValueError("healthcheck url must be http:// or https://")
        return value


class ReadbackCheck(_Model):
    """Read the target back and compare its fingerprint with the new value's."""

    type: Literal["readback"]


class ManualCheck(_Model):
    """No automatic check: an operator confirms the consumer works (manual_confirm)."""

    type: Literal["none"]


HealthCheck = Annotated[HttpCheck | ReadbackCheck | ManualCheck, Field(discriminator="type")]


# --- targets (consumers and vaults) --------------------------------------------------------


class _TargetFields(_Model):
    kind: str

    def describe(self) -> str:  # pragma: no cover - overridden by every kind
        raise NotImplementedError


class HerokuConfigVar(_TargetFields):
    kind: Literal["heroku_config_var"]
    app: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]{1,99}$")]
    var: Annotated[StrictStr, Field(pattern=r"^\w+$")]

    def describe(self) -> str:
        return f"heroku app {self.app} config var {self.var}"


class GithubActionsSecret(_TargetFields):
    kind: Literal["github_actions_secret"]
    secret: Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    repository: Annotated[StrictStr, Field(pattern=r"^[\w.-]+/[\w.-]+$")] | None = None
    environment: StrictStr | None = None
    org: StrictStr | None = None
    visibility: Literal["all", "private", "selected"] = "private"

    @model_validator(mode="after")
    def _one_scope(self) -> GithubActionsSecret:
        if (self.repository is None) == (self.org is None):
            raise ValueError("give exactly one of repository or org")
        if self.environment is not None and self.repository is None:
            raise ValueError("an environment secret needs repository")
        return self

    def describe(self) -> str:
        if self.org:
            return f"github org {self.org} secret {self.secret}"
        env = f" environment {self.environment}" if self.environment else ""
        return f"github {self.repository}{env} secret {self.secret}"


class InfisicalSecret(_TargetFields):
    kind: Literal["infisical_secret"]
    project_id: StrictStr
    environment: StrictStr
    secret_path: Annotated[StrictStr, Field(pattern=r"^/")] = "/"
    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]

    def describe(self) -> str:
        return f"infisical {self.project_id}/{self.environment}{self.secret_path} {self.name}"


class AwsSsmParameter(_TargetFields):
    kind: Literal["aws_ssm_parameter"]
    name: Annotated[StrictStr, Field(pattern=r"^/[A-Za-z0-9_.\-/]+$")]
    region: StrictStr = "us-east-1"

    def describe(self) -> str:
        return f"aws ssm parameter {self.name}"


TargetConfig = HerokuConfigVar | GithubActionsSecret | InfisicalSecret | AwsSsmParameter
TARGET_KINDS: tuple[str, ...] = (
    "heroku_config_var", "github_actions_secret", "infisical_secret", "aws_ssm_parameter",
)


class _ConsumerFields(_Model):
    consumer_id: Annotated[StrictStr, Field(pattern=CONSUMER_ID_RE)]
    env: Env
    active: StrictBool = True
    healthcheck: HealthCheck = Field(default_factory=lambda: ManualCheck(type="none"))


class HerokuConfigVarConsumer(HerokuConfigVar, _ConsumerFields):
    pass


class GithubActionsSecretConsumer(GithubActionsSecret, _ConsumerFields):
    pass


class InfisicalSecretConsumer(InfisicalSecret, _ConsumerFields):
    pass


class AwsSsmParameterConsumer(AwsSsmParameter, _ConsumerFields):
    pass


Consumer = Annotated[
    HerokuConfigVarConsumer
    | GithubActionsSecretConsumer
    | InfisicalSecretConsumer
    | AwsSsmParameterConsumer,
    Field(discriminator="kind"),
]

# The vault is the canonical store of the live value: a target Velvet can read back.
Vault = Annotated[InfisicalSecret | AwsSsmParameter, Field(discriminator="kind")]


# --- credentials ---------------------------------------------------------------------------


class HerokuOptions(_Model):
    scope: list[StrictStr] = Field(default_factory=lambda: ["global"], min_length=1)
    expires_in: StrictInt | None = Field(default=None, gt=0)


class CloudflareOptions(_Model):
    token_type: Literal["user", "account"] = "user"
    account_id: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{32}$")] | None = None

    @model_validator(mode="after")
    def _account_needs_id(self) -> CloudflareOptions:
        if self.token_type == "account" and self.account_id is None:
            raise ValueError("an account-owned token needs account_id")
        return self


class PostmarkOptions(_Model):
    token_type: Literal["server"] = "server"


class AwsIamOptions(_Model):
    user_name: StrictStr
    region: StrictStr = "us-east-1"


class OperatorManualOptions(_Model):
    procedure: StrictStr | None = None


class _CredentialFields(_Model):
    name: Annotated[StrictStr, Field(pattern=NAME_RE)]
    env: Env
    active: StrictBool = True
    schedule: StrictStr | None = None
    vault: Vault
    approvers: dict[Env, list[StrictStr]] = Field(default_factory=dict)
    consumers: list[Consumer] = Field(default_factory=list)
    description: StrictStr | None = None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None and not SCHEDULE_RE.match(value):
            raise ValueError("schedule must be an interval such as 90d, 12w or 36h")
        return value

    @property
    def schedule_hours(self) -> int | None:
        if self.schedule is None:
            return None
        match = SCHEDULE_RE.match(self.schedule)
        assert match is not None  # noqa: S101 - validated above
        return int(match.group(1)) * SCHEDULE_UNIT_HOURS[match.group(2)]

    def consumer(self, consumer_id: str) -> Consumer | None:
        return next((c for c in self.consumers if c.consumer_id == consumer_id), None)


class HerokuCredential(_CredentialFields):
    vendor: Literal["heroku"]
    options: HerokuOptions = Field(default_factory=HerokuOptions)


class CloudflareCredential(_CredentialFields):
    vendor: Literal["cloudflare"]
    options: CloudflareOptions = Field(default_factory=CloudflareOptions)


class PostmarkCredential(_CredentialFields):
    vendor: Literal["postmark"]
    options: PostmarkOptions = Field(default_factory=PostmarkOptions)


class AwsIamCredential(_CredentialFields):
    vendor: Literal["aws_iam"]
    options: AwsIamOptions


class OperatorManualCredential(_CredentialFields):
    vendor: Literal["operator_manual"]
    options: OperatorManualOptions = Field(default_factory=OperatorManualOptions)


Credential = Annotated[
    HerokuCredential
    | CloudflareCredential
    | PostmarkCredential
    | AwsIamCredential
    | OperatorManualCredential,
    Field(discriminator="vendor"),
]
VENDOR_KINDS: tuple[str, ...] = ("heroku", "cloudflare", "postmark", "aws_iam", "operator_manual")


class Manifest(_Model):
    """The whole subscription manifest."""

    version: Literal[1] = 1
    credentials: list[Credential] = Field(default_factory=list)

    schema_id: ClassVar[str] = "https://velvet.invalid/schemas/subscription-manifest.json"

    @cached_property
    def by_name(self) -> dict[str, Credential]:
        return {c.name: c for c in self.credentials}

    def credential(self, name: str) -> Credential | None:
        return self.by_name.get(name)


_MANIFEST = TypeAdapter(Manifest)


def json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = Manifest.schema_id
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


# --- loading with locations ----------------------------------------------------------------



def _locate(doc: _Located, data: Any, loc: tuple[str | int, ...]) -> tuple[Path_, int]:
    """Map a pydantic loc (which may include union tags) to a data path and its line."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node and (
            _is_tag(part)
        ):
            continue  # discriminated-union tag, not a key in the document
        else:
            path.append(part)
            break
    probe: Path_ = tuple(path)
    while probe and probe not in doc.lines:
        probe = probe[:-1]
    return tuple(path), doc.lines.get(probe, 1)


def _is_tag(part: str) -> bool:
    return part in VENDOR_KINDS or part in TARGET_KINDS or part in ("http", "readback", "none")


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field (check the spelling)"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"unknown value {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing {err.get('ctx', {}).get('discriminator', 'type')}"
    if kind == "literal_error" and err["loc"] and err["loc"][-1] == "env":
        return "env must be prod or staging"
    if kind == "bool_type":
        return "must be true or false"
    msg: str = err["msg"]
    return msg.removeprefix("Value error, ")



def _parse_plain(text: str, source: str) -> Manifest | None:
    """The manifest, when the fast path can read it and it has no problem at all."""
    try:
        data = _plain_data(text)
    except _NotPlain:
        return None
    except _TooDeep as exc:
        raise _too_deep(source, exc.line) from None
    if not isinstance(data, dict):
        return None
    try:
        manifest = _MANIFEST.validate_python(data)
    except ValidationError:
        return None
    probe = _Located(source)
    _semantic_checks(probe, data)
    return None if probe.problems else manifest


def parse(text: str, source: str = "<manifest>") -> Manifest:
    """Validate manifest text; raise ManifestError listing every problem."""
    fast = _parse_plain(text, source)
    if fast is not None:
        return fast
    # Every problem is reported by the located loader, with its line.
    doc = _Located(source)
    try:
        _check_depth(text)
    except _TooDeep as exc:
        raise _too_deep(source, exc.line) from None
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ManifestError(
            [f"{source}:{line}: (document): YAML does not parse: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([f"{source}:1: (document): YAML does not parse: {exc}"]) from None
    if node is None:
        raise ManifestError([f"{source}:1: (document): the manifest is empty"])
    try:
        data = doc.build(node)
    except _TooLarge as exc:
        raise ManifestError([
            f"{source}:{exc.line}: (document): document expands to more than {MAX_NODES} nodes "
            "(alias expansion); refusing to load it"
        ]) from None
    except _BadTag as exc:
        raise ManifestError([
            f"{source}:{exc.line}: (document): YAML tag {exc.tag} is not allowed; "
            "the manifest holds plain data only"
        ]) from None
    if not isinstance(data, dict):
        raise ManifestError([f"{source}:1: (document): the manifest must be a mapping"])

    for line, path in doc.duplicates:
        doc.problem(line, _field(path, data), "duplicate key")
    manifest: Manifest | None = None
    try:
        manifest = _MANIFEST.validate_python(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            tag_error = err["type"] in ("union_tag_invalid", "union_tag_not_found")
            if tag_error:
                loc += (str(err.get("ctx", {}).get("discriminator", "")).strip("'"),)
            path, line = _locate(doc, data, loc)
            doc.problem(line, _field(path, data), _message(err))
    _semantic_checks(doc, data)
    if doc.problems:
        raise ManifestError(sorted(set(doc.problems), key=_by_line))
    assert manifest is not None  # noqa: S101 - no problems means validation passed
    return manifest


def _too_deep(source: str, line: int) -> ManifestError:
    return ManifestError([f"{source}:{line}: (document): nested more than {MAX_DEPTH} levels "
                          "deep; refusing to load it"])


def _by_line(reason: str) -> tuple[int, str]:
    parts = reason.split(":", 2)
    try:
        return int(parts[1]), reason
    except (IndexError, ValueError):
        return 0, reason


def _semantic_checks(doc: _Located, data: dict[str, Any]) -> None:
    """Rules that span entries: unique names and ids, bootstrap credentials."""
    credentials = data.get("credentials")
    if not isinstance(credentials, list):
        return
    seen_names: dict[str, int] = {}
    seen_consumers: dict[str, int] = {}
    for i, cred in enumerate(credentials):
        if not isinstance(cred, dict):
            continue
        name = cred.get("name")
        line = doc.lines.get(("credentials", i, "name"), doc.lines.get(("credentials", i), 1))
        if isinstance(name, str):
            if name in seen_names:
                doc.problem(line, f"credentials[{name}].name",
                            f"duplicate credential {name} (first at line {seen_names[name]})")
            else:
                seen_names[name] = line
            if name in BOOTSTRAP_CREDENTIALS:
                doc.problem(line, f"credentials[{name}].name",
                            f"{name} is one of Velvet's own bootstrap credentials and cannot be "
                            f"rotated by Velvet; follow {BOOTSTRAP_CREDENTIALS[name]}")
        for j, consumer in enumerate(_as_list(cred.get("consumers"))):
            if not isinstance(consumer, dict):
                continue
            cid = consumer.get("consumer_id")
            cline = doc.lines.get(("credentials", i, "consumers", j, "consumer_id"), line)
            if isinstance(cid, str):
                if cid in seen_consumers:
                    doc.problem(cline, f"credentials[{name}].consumers[{cid}].consumer_id",
                                f"duplicate consumer_id {cid} (first at line "
                                f"{seen_consumers[cid]})")
                else:
                    seen_consumers[cid] = cline


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def read_limited(path: str | Path, what: str = "file") -> str | None:
    """The UTF-8 text of the regular file at `path` (None when it does not exist).

    Anything else (a directory, a device such as /dev/zero, a FIFO) and anything over
    MAX_BYTES is refused with a ManifestError naming the file, before it is read: reading
    /dev/zero would never return. The FIFO is opened non-blocking so the open cannot hang.
    """
    file = Path(path)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ManifestError([f"{file}:1: ({what}): cannot read: {exc.strerror}"]) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ManifestError([f"{file}:1: ({what}): not a regular file; refusing to read it"])
        if info.st_size > MAX_BYTES:
            raise ManifestError([f"{file}:1: ({what}): {info.st_size} bytes is over the "
                                 f"{MAX_BYTES}-byte limit; refusing to read it"])
        try:
            raw = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise ManifestError([f"{file}:1: ({what}): cannot read: {exc.strerror}"]) from None
    if len(raw) > MAX_BYTES:  # it grew while we looked
        raise ManifestError([f"{file}:1: ({what}): over the {MAX_BYTES}-byte limit; "
                             "refusing to read it"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ManifestError([f"{file}:{line}: ({what}): not UTF-8 text"]) from None


def load(path: str | Path) -> Manifest:
    """Load and validate the manifest file at `path`."""
    file = Path(path)
    text = read_limited(file)
    if text is None:
        raise ManifestError([f"{file}:1: (file): no such file"])
    return parse(text, str(file))


def flags_path(manifest_path: str | Path) -> Path:
    return Path(manifest_path).parent / "flags.yml"


def load_flags(manifest_path: str | Path) -> dict[str, bool]:
    """Feature flags from flags.yml beside the manifest; a missing file means every flag off."""
    file = flags_path(manifest_path)
    text = read_limited(file)
    if text is None:
        return {}
    try:
        _check_depth(text)
        data = yaml.safe_load(text)
    except _TooDeep as exc:
        raise _too_deep(str(file), exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ManifestError([f"{file}:{line}: (document): YAML does not parse"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, bool) for k, v in data.items()
    ):
        raise ManifestError([f"{file}:1: (document): flags must map names to true/false"])
    return dict(data)


def explain_flag(manifest_path: str | Path, name: str = ROTATION_FLAG) -> str:
    """Why flag `name` reads as off: the file, the key, and the keys Velvet knows.

    The engine only sees "off"; this turns a missing file, a missing key or a misspelled one
    into something an operator can fix.
    """
    file = flags_path(manifest_path)
    known = ", ".join(sorted(KNOWN_FLAGS))
    try:
        flags = load_flags(manifest_path)
    except ManifestError as exc:
        return "; ".join(exc.reasons)
    if not file.exists():
        return (f"{file} does not exist, so every flag is off; create it with "
                f"`{name}: true` to enable Velvet (known flags: {known})")
    if name in flags:
        line = _key_line(file, name)
        return f"{file}:{line}: {name} is set to {str(flags[name]).lower()}"
    others = sorted(flags)
    near = difflib.get_close_matches(name, others, n=1, cutoff=0.75)
    hint = f"; {near[0]!r} looks like a misspelling of it" if near else ""
    listed = ", ".join(others) if others else "none"
    return (f"{file} has no key {name}, so it is off{hint} (keys in the file: {listed}; "
            f"known flags: {known})")


def unknown_flag_warnings(manifest_path: str | Path) -> list[str]:
    """'file:line: key: ...' for keys that look like misspellings of a flag Velvet reads."""
    file = flags_path(manifest_path)
    flags = load_flags(manifest_path)
    out = []
    for key in sorted(flags):
        if key in KNOWN_FLAGS:
            continue
        near = difflib.get_close_matches(key, list(KNOWN_FLAGS), n=1, cutoff=0.75)
        if near and near[0] not in flags:
            out.append(f"{file}:{_key_line(file, key)}: {key}: not a flag Velvet reads; did you "
                       f"mean {near[0]}? (known flags: {', '.join(sorted(KNOWN_FLAGS))})")
    return out


def _key_line(file: Path, key: str) -> int:
    text = read_limited(file) or ""
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*['\"]?{re.escape(key)}['\"]?\s*:", line):
            return number
    return 1
