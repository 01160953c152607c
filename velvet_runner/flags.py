"""Feature flags: flags.yml beside the manifest, and why a flag reads as off.

Apart from manifest.py because flags are not the manifest: a missing file means every flag off,
and the explanations name the file, the key and its likely misspellings.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml

from velvet_runner.errors import ManifestError
from velvet_runner.manifest_yaml import _check_depth, _TooDeep, read_limited, too_deep

# The flags Velvet itself reads from flags.yml (others may sit beside them and are served at
# /flags); a key close to one of these is almost certainly a typo of it.
ROTATION_FLAG = "velvet_v2_rotation"
KNOWN_FLAGS: dict[str, str] = {
    ROTATION_FLAG: "off: every mutating command refuses (exit 4)",
}


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
        raise too_deep(str(file), exc.line) from None
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
