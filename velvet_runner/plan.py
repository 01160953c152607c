"""What a manifest change does: credentials and consumers added, removed and changed.

`velvet manifest plan BASE HEAD` prints it; the manifest-check workflow puts the markdown form in
the pull request's step summary, so a reviewer sees "HK_X loses consumer y; approvers.prod drops
alice" instead of a YAML diff. Both files are loaded with `manifest.load`, so the head must be
valid (ManifestError otherwise). A missing base means everything is new; an invalid base is
reported and treated the same way, so a pull request that repairs a broken manifest still gets
a plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from velvet_runner.errors import ManifestError
from velvet_runner.manifest import Manifest, load

# Changes a reviewer must not miss: who may approve, what is rotated at all, and where.
SENSITIVE = ("approvers", "active", "env", "vault", "repository", "org", "environment")


@dataclass
class Item:
    """One added or removed credential or consumer."""

    name: str
    what: str  # "heroku, prod" / "heroku_config_var, prod"


@dataclass
class Change:
    """One changed credential or consumer, with its field-level differences."""

    name: str
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)


@dataclass
class CredentialPlan:
    name: str
    status: str  # added, removed, changed
    what: str
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)
    consumers_added: list[Item] = field(default_factory=list)
    consumers_removed: list[Item] = field(default_factory=list)
    consumers_changed: list[Change] = field(default_factory=list)


@dataclass
class Plan:
    credentials: list[CredentialPlan] = field(default_factory=list)
    base_note: str | None = None

    def counts(self) -> dict[str, int]:
        out = {"credentials_added": 0, "credentials_removed": 0, "credentials_changed": 0,
               "consumers_added": 0, "consumers_removed": 0, "consumers_changed": 0}
        for cred in self.credentials:
            out[f"credentials_{cred.status}"] += 1
            out["consumers_added"] += len(cred.consumers_added)
            out["consumers_removed"] += len(cred.consumers_removed)
            out["consumers_changed"] += len(cred.consumers_changed)
        return out


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys; lists and scalars are leaves."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key in sorted(data):
            out.update(_flatten(data[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    a, b = _flatten(old), _flatten(new)
    missing = object()
    rows = []
    for key in sorted(set(a) | set(b)):
        before, after = a.get(key, missing), b.get(key, missing)
        if before != after:
            rows.append((key, None if before is missing else before,
                         None if after is missing else after))
    return rows


def _dump(model: Any, *, exclude: set[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", exclude=exclude)
    return data


def _cred_what(cred: Any) -> str:
    return f"{cred.vendor}, {cred.env}"


def _consumer_what(consumer: Any) -> str:
    return f"{consumer.kind}, {consumer.env}: {consumer.describe()}"


def plan(base: Manifest | None, head: Manifest) -> Plan:
    result = Plan()
    old = {c.name: c for c in base.credentials} if base is not None else {}
    new = {c.name: c for c in head.credentials}
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before is None:
            assert after is not None  # noqa: S101 - name came from one of the two
            result.credentials.append(CredentialPlan(
                name, "added", _cred_what(after),
                consumers_added=[Item(c.consumer_id, _consumer_what(c))
                                 for c in after.consumers]))
            continue
        if after is None:
            result.credentials.append(CredentialPlan(
                name, "removed", _cred_what(before),
                consumers_removed=[Item(c.consumer_id, _consumer_what(c))
                                   for c in before.consumers]))
            continue
        entry = CredentialPlan(name, "changed", _cred_what(after),
                               fields=_diff(_dump(before, exclude={"consumers"}),
                                            _dump(after, exclude={"consumers"})))
        was = {c.consumer_id: c for c in before.consumers}
        now = {c.consumer_id: c for c in after.consumers}
        for cid in sorted(set(was) | set(now)):
            if cid not in was:
                entry.consumers_added.append(Item(cid, _consumer_what(now[cid])))
            elif cid not in now:
                entry.consumers_removed.append(Item(cid, _consumer_what(was[cid])))
            else:
                rows = _diff(_dump(was[cid]), _dump(now[cid]))
                if rows:
                    entry.consumers_changed.append(Change(cid, rows))
        if entry.fields or entry.consumers_added or entry.consumers_removed or (
                entry.consumers_changed):
            result.credentials.append(entry)
    return result


def _load_base(path: Path) -> tuple[Manifest | None, str | None]:
    if not path.exists():
        return None, f"base {path} does not exist: everything in the head is new"
    try:
        return load(path), None
    except ManifestError as exc:
        first = exc.reasons[0] if exc.reasons else "invalid"
        return None, (f"base {path} is not a valid manifest ({len(exc.reasons)} problem(s), "
                      f"first: {first}): everything in the head is shown as new")


def plan_text(base_path: str | Path, head_path: str | Path, *, markdown: bool = False) -> str:
    """The plan of changing the manifest from `base_path` to `head_path`, as text or markdown.

    Raises ManifestError when the head is invalid.
    """
    head = load(head_path)
    base, note = _load_base(Path(base_path))
    result = plan(base, head)
    result.base_note = note
    return _markdown(result) if markdown else _text(result)


def _summary_line(result: Plan) -> str:
    c = result.counts()
    return (f"credentials: {c['credentials_added']} added, {c['credentials_removed']} removed, "
            f"{c['credentials_changed']} changed; consumers: {c['consumers_added']} added, "
            f"{c['consumers_removed']} removed, {c['consumers_changed']} changed")


def _value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flag(key: str) -> str:
    return " (!)" if key.split(".", 1)[0] in SENSITIVE else ""


def _text(result: Plan) -> str:
    lines = [_summary_line(result)]
    if result.base_note:
        lines.append(f"note: {result.base_note}")
    if not result.credentials:
        lines.append("no changes to credentials or consumers")
    sign = {"added": "+", "removed": "-", "changed": "~"}
    for cred in result.credentials:
        lines.append(f"{sign[cred.status]} credential {cred.name} ({cred.what})")
        for key, before, after in cred.fields:
            lines.append(f"    {key}: {_value(before)} -> {_value(after)}{_flag(key)}")
        for item in cred.consumers_added:
            lines.append(f"  + consumer {item.name} ({item.what})")
        for item in cred.consumers_removed:
            lines.append(f"  - consumer {item.name} ({item.what})")
        for change in cred.consumers_changed:
            lines.append(f"  ~ consumer {change.name}")
            for key, before, after in change.fields:
                lines.append(f"      {key}: {_value(before)} -> {_value(after)}{_flag(key)}")
    return "\n".join(lines) + "\n"


def _md(value: Any) -> str:
    """A value inside a markdown table cell: no pipes, HTML, backticks or newlines."""
    text = _value(value)
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "'"),
                      ("\r", " "), ("\n", " ")):
        text = text.replace(raw, safe)
    return f"`{text}`" if text else "``"


def _markdown(result: Plan) -> str:
    lines = ["## Velvet manifest plan", "", _summary_line(result), ""]
    if result.base_note:
        lines += [f"> {_md(result.base_note)}", ""]
    if not result.credentials:
        lines.append("No changes to credentials or consumers.")
        return "\n".join(lines) + "\n"
    icon = {"added": "➕ added", "removed": "➖ removed", "changed": "✏️ changed"}
    lines += ["| credential | change | vendor, env |", "|---|---|---|"]
    for cred in result.credentials:
        lines.append(f"| {_md(cred.name)} | {icon[cred.status]} | {_md(cred.what)} |")
    rows = []
    for cred in result.credentials:
        for key, before, after in cred.fields:
            rows.append(f"| {_md(cred.name)} | | {_md(key)}{_flag(key)} | {_md(before)} | "
                        f"{_md(after)} |")
        for item in cred.consumers_added:
            rows.append(f"| {_md(cred.name)} | {_md(item.name)} | ➕ added | | "
                        f"{_md(item.what)} |")
        for item in cred.consumers_removed:
            rows.append(f"| {_md(cred.name)} | {_md(item.name)} | ➖ removed | "
                        f"{_md(item.what)} | |")
        for change in cred.consumers_changed:
            for key, before, after in change.fields:
                rows.append(f"| {_md(cred.name)} | {_md(change.name)} | {_md(key)}{_flag(key)} "
                            f"| {_md(before)} | {_md(after)} |")
    if rows:
        lines += ["", "### Details", "", "| credential | consumer | field | before | after |",
                  "|---|---|---|---|---|", *rows]
    if any(_flag(key) for cred in result.credentials for key, _b, _a in cred.fields) or any(
            _flag(key) for cred in result.credentials for change in cred.consumers_changed
            for key, _b, _a in change.fields):
        lines += ["", "(!) changes who approves, whether or where a credential is rotated: "
                  "review with care."]
    return "\n".join(lines) + "\n"
