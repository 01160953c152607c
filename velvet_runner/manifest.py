"""The subscription manifest: which credential goes to which consumers.

Loading validates everything first and raises one ManifestError listing every problem as
"file:line: field: message". The YAML loader is safe (no object-constructing tags), refuses
duplicate keys and alias bombs, and remembers the line of every node so pydantic's errors can
be pointed back at the file.

The models are built from the adapter registries: each vendor module declares its `options`
model and each target module its config model (manifest_models.py holds the shared bases), and
the credential, consumer and vault unions here are made of whatever is registered. They are
rebuilt when a registry changes, so an adapter registered later is validated like the others.
"""

from __future__ import annotations

import functools
import json
import threading
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from velvet_runner import targets, vendors
from velvet_runner.bulk import paused_gc
from velvet_runner.errors import ManifestError
from velvet_runner.manifest_models import DEFAULT_ENVS, HEALTHCHECK_TYPES, Env, Model, VaultConfig
from velvet_runner.manifest_models import Consumer as Consumer
from velvet_runner.manifest_models import Credential as Credential
from velvet_runner.manifest_models import HttpCheck as HttpCheck
from velvet_runner.manifest_models import ReadbackCheck as ReadbackCheck
from velvet_runner.manifest_models import Scheduler as Scheduler
from velvet_runner.manifest_models import TargetConfig as TargetConfig
from velvet_runner.manifest_yaml import MAX_BYTES as MAX_BYTES
from velvet_runner.manifest_yaml import (
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
    read_limited,
    too_deep,
)
from velvet_runner.targets.base import Target
from velvet_runner.vendors.base import Vendor

# Velvet's own credentials: rotating them through Velvet is circular (runbook section 8).
BOOTSTRAP_CREDENTIALS: dict[str, str] = {
    "INFISICAL_CLIENT_SECRET": "runbook section 8, 'Rotating INFISICAL_CLIENT_SECRET'",
    "INFISICAL_CLIENT_ID": "runbook section 8, 'Rotating INFISICAL_CLIENT_SECRET'",
    "HK_VELVET_BOOTSTRAP": "runbook section 8, 'Rotating HK_VELVET_BOOTSTRAP'",
}


class Manifest(Model):
    """The whole subscription manifest."""

    version: Literal[1] = Field(1, description="The manifest format: 1.")
    environments: list[Env] = Field(
        default_factory=lambda: list(DEFAULT_ENVS), min_length=1,
        description="The environments a Velvet of this manifest serves (VELVET_ENV, the "
        "workflows' env input, velvet-<env> gates); every env below is one of them.")
    scheduler: Scheduler = Field(
        default_factory=Scheduler,
        description="How the scheduled workflow starts due rotations (velvet dispatch "
        "--each-due).")
    credentials: list[Credential] = Field(default_factory=list)

    schema_id: ClassVar[str] = "https://velvet.invalid/schemas/subscription-manifest.json"

    @cached_property
    def by_name(self) -> dict[str, Credential]:
        return {c.name: c for c in self.credentials}

    def credential(self, name: str) -> Credential | None:
        return self.by_name.get(name)

    def approvers_by_env(self) -> dict[str, list[str]]:
        """Each env a credential is rotated in -> the logins allowed to approve its gated
        stages (every credential's approvers for that env, in manifest order): the required
        reviewers of its velvet-<env> gates."""
        found: dict[str, list[str]] = {}
        for credential in self.credentials:
            found.setdefault(credential.env, [])
            for env, logins in credential.approvers.items():
                known = found.setdefault(env, [])
                known += [login for login in logins if login not in known]
        return found


# --- the models, built from the registries ---------------------------------------------------


@dataclass(frozen=True)
class _Built:
    manifest: type[Manifest]
    vendor_kinds: tuple[str, ...]
    target_kinds: tuple[str, ...]
    vault_kinds: tuple[str, ...]

    @cached_property
    def tags(self) -> frozenset[str]:
        return frozenset((*self.vendor_kinds, *self.target_kinds, *HEALTHCHECK_TYPES))


def _built() -> _Built:
    """The models for what is registered now, built once per content of the registries."""
    key = (tuple(vendors.load_all().items()), tuple(targets.load_all().items()))
    with _BUILDING:  # one set of classes per key, even when threads load it at once
        return _build(*key)


_BUILDING = threading.Lock()


@functools.cache
def _build(vendor_items: tuple[tuple[str, type[Vendor]], ...],
           target_items: tuple[tuple[str, type[Target]], ...]) -> _Built:
    # Union members in registry order (built-ins first, as SCHEMA_ORDER lists them): the order of
    # the schema's oneOf lists and of "expected one of" in error messages.
    consumers = [_consumer_model(cls.config_model) for _, cls in target_items]
    vaults = [(kind, cls.config_model) for kind, cls in target_items if cls.CAN_BE_VAULT]
    vault = _union([model for _, model in vaults], "kind")
    consumer = _union(consumers, "kind")
    credentials = [_credential_model(kind, cls.options_model, vault, consumer)
                   for kind, cls in vendor_items]
    manifest = create_model("Manifest", __base__=Manifest, __doc__=Manifest.__doc__,
                            __module__=__name__,
                            credentials=(_list(_union(credentials, "vendor")),
                                         Field(default_factory=list,
                                               description="The credentials Velvet rotates.")))
    return _Built(manifest=manifest, vendor_kinds=tuple(kind for kind, _ in vendor_items),
                  target_kinds=tuple(kind for kind, _ in target_items),
                  vault_kinds=tuple(kind for kind, _ in vaults))


# Typing forms applied to what is known only at run time (the registered kinds and models);
# a type checker cannot follow those, so they are reached through Any.
_forms: Any = typing


def _list(item: Any) -> Any:
    return list.__class_getitem__(item)


def _union(models: Sequence[type[BaseModel]], tag: str) -> Any:
    if len(models) == 1:  # a discriminator needs two or more members
        return models[0]
    return _forms.Annotated[_forms.Union[tuple(models)], Field(discriminator=tag)]


@functools.cache
def _consumer_model(config: type[TargetConfig]) -> type[Consumer]:
    bases: tuple[type[BaseModel], ...] = (config, Consumer)  # in this order: see Consumer
    return typing.cast("type[Consumer]", create_model(
        f"{config.__name__}Consumer", __base__=bases, __module__=config.__module__))


def _credential_model(kind: str, options: type[Model], vault: Any,
                      consumer: Any) -> type[Credential]:
    """`<Kind>Credential`: vendor narrowed to `kind`, its options, the vault and consumers.

    `options` may be left out when every option has a default.
    """
    required = any(field.is_required() for field in options.model_fields.values())
    return create_model(
        "".join(part.capitalize() for part in kind.split("_")) + "Credential",
        __base__=Credential, __module__=__name__,
        vendor=(_forms.Literal[kind], Field(description=f"The vendor that issues the token: "
                                            f"{kind}.")),
        options=(options, Field(description=f"Options of the {kind} vendor.")) if required
        else (options, Field(default_factory=options,
                             description=f"Options of the {kind} vendor.")),
        vault=(vault, Field(description="The canonical store of the live value: the pending "
                            "slot and companions sit beside it (NAME__PENDING, ...).")),
        consumers=(_list(consumer), Field(default_factory=list,
                                          description="Everything that holds the value.")),
    )


def vendor_kinds() -> tuple[str, ...]:
    """The manifest's `vendor` values: every registered vendor."""
    return _built().vendor_kinds


def target_kinds() -> tuple[str, ...]:
    """The consumers' `kind` values: every registered target."""
    return _built().target_kinds


def vault_kinds() -> tuple[str, ...]:
    """The vault's `kind` values: the registered targets that can be vaults."""
    return _built().vault_kinds


def json_schema() -> dict[str, Any]:
    schema = _built().manifest.model_json_schema()
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
    return part in _built().tags


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
    if kind == "string_pattern_mismatch" and err["loc"] and err["loc"][-1] == "env":
        return "env must be a lower-case name such as prod (letters, digits, dashes)"
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
        raise too_deep(source, exc.line) from None
    if not isinstance(data, dict):
        return None
    try:
        manifest = _built().manifest.model_validate(data)
    except ValidationError:
        return None
    probe = _Located(source)
    _semantic_checks(probe, data, manifest)
    return None if probe.problems else manifest


def parse(text: str, source: str = "<manifest>") -> Manifest:
    """Validate manifest text; raise ManifestError listing every problem."""
    with paused_gc():
        return _parse(text, source)


def _parse(text: str, source: str) -> Manifest:
    fast = _parse_plain(text, source)
    if fast is not None:
        return fast
    # Every problem is reported by the located loader, with its line.
    doc = _Located(source)
    try:
        _check_depth(text)
    except _TooDeep as exc:
        raise too_deep(source, exc.line) from None
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
        manifest = _built().manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            tag_error = err["type"] in ("union_tag_invalid", "union_tag_not_found")
            if tag_error:
                loc += (str(err.get("ctx", {}).get("discriminator", "")).strip("'"),)
            path, line = _locate(doc, data, loc)
            doc.problem(line, _field(path, data), _message(err))
    _semantic_checks(doc, data, manifest)
    if doc.problems:
        raise ManifestError(sorted(set(doc.problems), key=_by_line))
    assert manifest is not None  # noqa: S101 - no problems means validation passed
    return manifest


def _by_line(reason: str) -> tuple[int, str]:
    parts = reason.split(":", 2)
    try:
        return int(parts[1]), reason
    except (IndexError, ValueError):
        return 0, reason


def _semantic_checks(doc: _Located, data: dict[str, Any], manifest: Manifest | None) -> None:
    """Rules that span entries: unique names and ids, bootstrap credentials, one writer per
    place, environments (`manifest`: the validated models, None when validation failed)."""
    credentials = data.get("credentials")
    if not isinstance(credentials, list):
        return
    _env_checks(doc, data, credentials)
    if manifest is not None:
        _check_places(doc, lambda: _writers(manifest))
    else:
        rows = _writers_of_data(credentials)
        _check_places(doc, lambda: rows)
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


def _env_checks(doc: _Located, data: dict[str, Any], credentials: list[Any]) -> None:
    """Every env a credential, its approvers or its consumers name is one of the manifest's
    `environments` (default prod and staging)."""
    declared = data.get("environments", list(DEFAULT_ENVS))
    if not isinstance(declared, list) or not all(isinstance(e, str) for e in declared):
        return  # the model reports a malformed list
    allowed = " or ".join(declared) if len(declared) <= 2 else "one of " + ", ".join(declared)

    def check(path: Path_, value: object) -> None:
        if isinstance(value, str) and value not in declared:
            probe = path
            while probe and probe not in doc.lines:
                probe = probe[:-1]
            doc.problem(doc.lines.get(probe, 1), _field(path, data),
                        f"env must be {allowed} (the manifest's environments)")

    for i, cred in enumerate(credentials):
        if not isinstance(cred, dict):
            continue
        check(("credentials", i, "env"), cred.get("env"))
        approvers = cred.get("approvers")
        for env in approvers if isinstance(approvers, dict) else {}:
            check(("credentials", i, "approvers", env), env)
        for j, consumer in enumerate(_as_list(cred.get("consumers"))):
            if isinstance(consumer, dict):
                check(("credentials", i, "consumers", j, "env"), consumer.get("env"))


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# --- one writer per place ----------------------------------------------------------------

# A credential's writers, by position in the document: (index, name, its vault, and each
# consumer's (index, consumer_id, target config)); None where that row did not validate.
Writers = tuple[int, str, VaultConfig | None, Iterable[tuple[int, str, TargetConfig | None]]]


def _writers(manifest: Manifest) -> Iterable[Writers]:
    for i, cred in enumerate(manifest.credentials):
        yield i, cred.name, cred.vault, ((j, c.consumer_id, c)
                                         for j, c in enumerate(cred.consumers))


def _writers_of_data(credentials: list[Any]) -> list[Writers]:
    """The same from rows that may not all validate (each row is read on its own, once)."""
    found: list[Writers] = []
    for i, cred in enumerate(credentials):
        if not isinstance(cred, dict) or not isinstance(cred.get("name"), str):
            continue
        vault = _config(cred.get("vault"), vault=True)
        rows = [(j, str(row.get("consumer_id")), _config(row))
                for j, row in enumerate(_as_list(cred.get("consumers"))) if isinstance(row, dict)]
        found.append((i, cred["name"], vault if isinstance(vault, VaultConfig) else None, rows))
    return found


def _config(row: object, *, vault: bool = False) -> TargetConfig | None:
    if not isinstance(row, dict):
        return None
    adapter = targets.load_all().get(str(row.get("kind")))
    if adapter is None or (vault and not adapter.CAN_BE_VAULT):
        return None
    model = adapter.config_model
    try:
        return model.model_validate({k: v for k, v in row.items() if k in model.model_fields})
    except ValidationError:
        return None  # reported by the validation of the whole document


def _check_places(doc: _Located, writers: Callable[[], Iterable[Writers]]) -> None:
    """No place written twice: two credentials never share a vault slot, no consumer writes a
    vault slot (any credential's current value or its __PENDING, __PENDING_META, __AUTH_ID
    companions), and two consumers never write one target.

    A vault's companion slots are found by name (`VaultConfig.companion_of`), and the maps hold
    objects the manifest already has: this runs on every load of a 10,000-consumer manifest.
    Where the first writer of a clash sits is looked up again (`writers()`) only to report it.
    """
    vaults: dict[tuple[str, ...], str] = {}  # a vault's place -> its credential
    for i, name, vault, _ in writers():
        if vault is None:
            continue
        holder = vaults.setdefault(vault.place(), name)
        if holder != name:
            _shared_vault(doc, writers, i, name, vault, holder)
    for i, name, vault, _ in writers():
        companion = vault.companion_of() if vault is not None else None
        whose = vaults.get(companion.place()) if companion is not None else None
        if vault is not None and whose is not None and whose != name:
            _shared_vault(doc, writers, i, name, vault, whose)
    written: dict[tuple[str, ...], TargetConfig] = {}
    for i, name, _, rows in writers():
        for j, consumer_id, config in rows:
            if config is None:
                continue
            place = config.place()
            owner = vaults.get(place)
            if owner is None and isinstance(config, VaultConfig):
                companion = config.companion_of()
                owner = vaults.get(companion.place()) if companion is not None else None
            first = written.setdefault(place, config) if owner is None else None
            if first is config:
                continue
            line = _line(doc, ("credentials", i, "consumers", j, "consumer_id"))
            field = f"credentials[{name}].consumers[{consumer_id}]"
            if owner is not None:
                whose = "its own credential" if owner == name else "credential"
                doc.problem(line, field, f"writes {config.describe()}, a vault slot of {whose} "
                            f"{owner} (line {_vault_line(doc, writers, owner)}); a consumer "
                            "must never write a vault secret or its __PENDING, __PENDING_META "
                            "or __AUTH_ID companions")
                continue
            fi, fname, fj, fid = next((i2, n2, j2, c2) for i2, n2, _, r2 in writers()
                                      for j2, c2, k2 in r2 if k2 is first)
            doc.problem(line, field, f"writes {config.describe()}, which consumer {fid} of "
                        f"credential {fname} writes too (line "
                        f"{_line(doc, ('credentials', fi, 'consumers', fj, 'consumer_id'))});"
                        " two consumers must not write one target")


def _shared_vault(doc: _Located, writers: Callable[[], Iterable[Writers]], i: int, name: str,
                  vault: VaultConfig, holder: str) -> None:
    doc.problem(_line(doc, ("credentials", i, "vault", "name")), f"credentials[{name}].vault.name",
                f"{vault.describe()} is a vault slot of credential {holder} too (line "
                f"{_vault_line(doc, writers, holder)}); each credential needs a vault secret of "
                "its own")


def _vault_line(doc: _Located, writers: Callable[[], Iterable[Writers]], name: str) -> int:
    i = next(i for i, n, vault, _ in writers() if n == name and vault is not None)
    return _line(doc, ("credentials", i, "vault", "name"))


def _line(doc: _Located, path: Path_) -> int:
    """The line of `path`, or of the nearest enclosing node the document has."""
    while path and path not in doc.lines:
        path = path[:-1]
    return doc.lines.get(path, 1)


def load(path: str | Path) -> Manifest:
    """Load and validate the manifest file at `path`."""
    file = Path(path)
    text = read_limited(file)
    if text is None:
        raise ManifestError([f"{file}:1: (file): no such file"])
    return parse(text, str(file))
