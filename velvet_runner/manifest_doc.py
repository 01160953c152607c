"""docs/manifest.md: the manifest's reference, written from its JSON Schema (`velvet manifest
reference`), so every field is documented where editors read it too (the schema's
descriptions); tests/adopt/test_manifest_reference.py keeps the committed file
current."""

from __future__ import annotations

import json
from typing import Any

from velvet_runner.manifest import json_schema

HEADER = """\
# The subscription manifest: reference

Generated from the manifest's JSON Schema by `velvet manifest reference > docs/manifest.md`
(a test keeps this file current); the schema itself is `velvet manifest schema`. Check a
manifest with `velvet manifest check [PATH]`: every problem is named as
`file:line: field: message`.

A credential's fields depend on its `vendor` (each vendor's `<Vendor>Credential`), a consumer's
and a vault's on their `kind` (each target's `<Target>Consumer` and `<Target>`), a health
check's on its `type`.
"""


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "const" in spec:
        return f"`{json.dumps(spec['const'])}`"
    if "enum" in spec:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in spec["enum"])
    for key in ("anyOf", "oneOf"):
        if key in spec:
            return " or ".join(_type(option) for option in spec[key])
    kind = spec.get("type")
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    if kind == "object" and "additionalProperties" in spec:
        extra = spec["additionalProperties"]
        return f"map of {_type(extra) if isinstance(extra, dict) else 'anything'}"
    shown = str(kind or "any")
    if "pattern" in spec:
        shown += f" matching `{spec['pattern']}`"
    return shown


def _table(spec: dict[str, Any]) -> list[str]:
    required = set(spec.get("required", []))
    rows = ["| field | type | required | default | description |",
            "|---|---|---|---|---|"]
    for name, field in spec.get("properties", {}).items():
        default = f"`{json.dumps(field['default'])}`" if "default" in field else ""
        rows.append(f"| `{name}` | {_type(field)} | {'yes' if name in required else ''} | "
                    f"{default} | {field.get('description', '')} |")
    return rows


def reference() -> str:
    schema = json_schema()
    out = [HEADER, "## Manifest", "", schema.get("description", ""), "", *_table(schema)]
    for name, spec in sorted(schema.get("$defs", {}).items()):
        out += ["", f"## {name}", ""]
        if spec.get("description"):
            out += [spec["description"], ""]
        if "properties" in spec:
            out += _table(spec)
        else:
            out.append(f"One of: {_type(spec)}.")
    return "\n".join(out).rstrip() + "\n"
