"""Speed machinery: the manifest's YAML read twice as fast as PyYAML alone, lines kept.

A manifest is read from libyaml's event stream when it is plain data (no anchors, aliases, merge
keys, duplicate keys or non-core tags) and otherwise composed into nodes that remember the line
of every path, so pydantic's errors can be pointed back at the file. Both ways refuse what a
manifest never needs: object-constructing tags, alias bombs and deep nesting. Files (the
manifest, flags.yml) are read through `read_limited`, which refuses what is not a small file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from velvet_runner.errors import ManifestError

# A manifest (or flags.yml) bigger than this is refused before it is read; a generated manifest
# of 10,000 consumers is about 3 MB.
MAX_BYTES = 32 * 1024 * 1024
# Nodes that alias expansion may add on top of the document's own: a billion-laughs document
# stops here, while a big manifest written out in full (no aliases) is never refused for size.
MAX_NODES = 20_000
# Deeper nesting than any manifest needs; the composer and the loader recurse once per level.
MAX_DEPTH = 64

Path_ = tuple[str | int, ...]


_CORE = "tag:yaml.org,2002:"
MERGE_TAG = _CORE + "merge"
# Plain data only: any other tag (python/*, local !tags) would construct something.
SAFE_TAGS = frozenset(_CORE + t for t in (
    "str", "int", "float", "bool", "null", "timestamp", "map", "seq", "merge"))


class _Located:
    """Plain data built from a YAML node tree, with the line of every path in it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[Path_, int] = {}
        self.problems: list[str] = []
        self._count = 0  # nodes visited again through an alias (expansion beyond the text)
        self._seen: set[int] = set()
        self._loader = yaml.SafeLoader("")
        self.duplicates: list[tuple[int, Path_]] = []

    def problem(self, line: int, field: str, message: str) -> None:
        self.problems.append(f"{self.source}:{line}: {field}: {message}")

    def build(self, node: yaml.Node, path: Path_ = ()) -> Any:
        if id(node) in self._seen:
            self._count += 1
        else:
            self._seen.add(id(node))
        if self._count > MAX_NODES:
            raise _TooLarge(node.start_mark.line + 1)
        self.lines[path] = node.start_mark.line + 1
        if node.tag not in SAFE_TAGS:
            raise _BadTag(node.start_mark.line + 1, node.tag)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self._scalar(key_node, path)
                if key in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, path + (str(key),)))
                seen.add(key)
            # << merge keys: merged pairs come first, so an explicit key overrides them.
            self._loader.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = self._scalar(key_node, path)
                out[key] = self.build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node.start_mark.line + 1, _field(path), "keys must be plain scalars")
            return f"<invalid key at line {node.start_mark.line + 1}>"
        if node.tag not in SAFE_TAGS:
            raise _BadTag(node.start_mark.line + 1, node.tag)
        return self._loader.construct_object(node)


class _TooLarge(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def too_deep(source: str, line: int) -> ManifestError:
    return ManifestError([f"{source}:{line}: (document): nested more than {MAX_DEPTH} levels "
                          "deep; refusing to load it"])


def _check_depth(text: str) -> None:
    """Raise _TooDeep where collections nest deeper than MAX_DEPTH.

    The event stream is produced without recursion (PyYAML's parser is a state machine),
    unlike composing, so a document of 100,000 nested `[` is refused here instead of
    exhausting the stack. libyaml is tried first for speed; where it refuses the document
    (it has its own nesting limit), PyYAML's parser looks again. A syntax error before that
    depth is left for `_compose` to word.
    """
    if _FAST_COMPOSER is not None:
        try:
            _event_depth(_FAST_COMPOSER(text))
            return
        except yaml.YAMLError:
            pass
    try:
        _event_depth(yaml.SafeLoader(text))
    except yaml.YAMLError:
        return


def _event_depth(loader: Any) -> None:
    depth = 0
    try:
        while True:
            event = loader.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    raise _TooDeep(mark.line + 1 if mark is not None else 1)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.StreamEndEvent):
                return
    finally:
        loader.dispose()


class _BadTag(Exception):
    def __init__(self, line: int, tag: str) -> None:
        self.line, self.tag = line, tag


class _TagCheckingComposer(yaml.SafeLoader):
    """Composes nodes only; refuses tags that would construct objects before anything runs."""


_FAST_COMPOSER = getattr(yaml, "CSafeLoader", None)  # libyaml, when PyYAML was built with it


def _compose(text: str) -> yaml.Node | None:
    """The node tree of `text`; composing builds no objects and expands no aliases.

    libyaml composes the same tree (same tags, from the same resolver, and the same line
    marks) some 30 times faster than the pure-Python parser. Where it refuses a document, the
    pure-Python parser composes it again, so a refusal is worded exactly as it always was.
    """
    if _FAST_COMPOSER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_COMPOSER)  # noqa: S506 - composes only
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=_TagCheckingComposer)


def _field(path: Path_, data: Any = None) -> str:
    """A readable field path: credentials[HK_X].consumers[consumer-id].app."""
    out = ""
    node = data
    for part in path:
        if isinstance(part, int):
            label: str | int = part
            if isinstance(node, list) and 0 <= part < len(node) and isinstance(node[part], dict):
                item = node[part]
                label = item.get("name") or item.get("consumer_id") or part
            out += f"[{label}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(document)"



class _NotPlain(Exception):
    """The document uses something only the located loader handles (or is invalid)."""


_STR, _SEQ, _MAP = _CORE + "str", _CORE + "seq", _CORE + "map"
_SCALAR_TAGS = SAFE_TAGS - {MERGE_TAG, _SEQ, _MAP}
_NO_KEY = object()


def _plain_data(text: str) -> Any:
    """The data of a document written out in full, straight from libyaml's event stream.

    The located loader (`_compose` + `_Located.build`) spends most of a big manifest's load
    time making a node per value and remembering its line, which only an error message needs.
    A document without anchors, aliases, merge keys, duplicate keys or non-core tags (what a
    generated manifest looks like) is read here instead, resolving implicit tags with the same
    resolver table; anything else raises _NotPlain and goes the located way.
    """
    if _FAST_COMPOSER is None:
        raise _NotPlain
    resolvers = yaml.SafeLoader.yaml_implicit_resolvers
    wildcard = resolvers.get(None, [])
    constructors = yaml.SafeLoader.yaml_constructors
    loader = yaml.SafeLoader("")
    stack: list[list[Any]] = []  # [container, pending key] per open collection
    done: list[Any] = []
    documents = 0

    def attach(item: Any, scalar: bool) -> None:
        if not stack:
            done.append(item)
            return
        top = stack[-1]
        container = top[0]
        if isinstance(container, list):
            container.append(item)
        elif top[1] is _NO_KEY:
            if not scalar or item in container:
                raise _NotPlain  # a collection as a key, or a duplicate key
            top[1] = item
        else:
            container[top[1]] = item
            top[1] = _NO_KEY

    plain_tags: dict[str, str] = {}  # implicit tag of each plain scalar seen so far
    parser = _FAST_COMPOSER(text)
    try:
        while True:
            event: Any = parser.get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                if event.anchor is not None:
                    raise _NotPlain
                value, tag = event.value, event.tag
                if tag is None or tag == "!":
                    if event.implicit[0]:
                        tag = plain_tags.get(value)
                        if tag is None:
                            tag = _STR
                            for candidate, regexp in resolvers.get(value[0] if value else "",
                                                                   []) + wildcard:
                                if regexp.match(value):
                                    tag = candidate
                                    break
                            plain_tags[value] = tag
                    else:
                        tag = _STR
                if tag == _STR:
                    attach(value, True)
                elif tag in _SCALAR_TAGS:
                    attach(constructors[tag](loader, yaml.ScalarNode(tag, value)), True)
                else:
                    raise _NotPlain
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                mapping = kind is yaml.MappingStartEvent
                if event.anchor is not None or event.tag not in (
                        None, "!", _MAP if mapping else _SEQ):
                    raise _NotPlain
                if len(stack) >= MAX_DEPTH:
                    raise _TooDeep(event.start_mark.line + 1)
                stack.append([{} if mapping else [], _NO_KEY])
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                attach(stack.pop()[0], False)
            elif kind is yaml.AliasEvent:
                raise _NotPlain
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _NotPlain
            elif kind is yaml.StreamEndEvent:
                break
    except yaml.YAMLError:
        raise _NotPlain from None
    finally:
        parser.dispose()
    if len(done) != 1:
        raise _NotPlain
    return done[0]


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
