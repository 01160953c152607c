"""The runner's import structure, read from its source with `ast` (nothing is imported).

(a) Only the sandbox, the rehearsals and the CLI commands that start fakes import the sandbox:
    the engine, the adapters and everything a stage job runs never do.
(b) No adapter (vendors/, targets/, vaults/) imports the object that builds it (`wiring`), at
    run time or for its annotations: an adapter declares what it needs (client.Api) and its
    `build` receives the clients (client.Supplies), never the builder (issue #26).
(c) The cycles of the module-level import graph are exactly KNOWN_CYCLES: a new one fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import velvet_runner

PACKAGE = Path(velvet_runner.__file__).parent
ROOT = "velvet_runner"
SANDBOX = "velvet_runner.sandbox"
# What starts fakes: the sandbox itself, the rehearsals, and the commands behind `velvet
# sandbox`, `velvet demo` and `velvet rehearse` (the demo's module with them).
MAY_IMPORT_SANDBOX = ("velvet_runner.sandbox", "velvet_runner.rehearse",
                      "velvet_runner.cli.local", "velvet_runner.demo")
ADAPTERS = ("velvet_runner.vendors", "velvet_runner.targets", "velvet_runner.vaults")
BUILDER = "velvet_runner.wiring"

# Each a strongly connected set of modules that import one another at module level.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _parse() -> dict[str, tuple[ast.Module, bool]]:
    """Every module of the runner: its tree, and whether it is a package's __init__."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if package else parts)
        out[name] = (ast.parse(path.read_text(encoding="utf-8"), str(path)), package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module, *, module_level: bool,
                  typing_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements; with `module_level`, only those that run when the module is
    imported (not in a function); with `typing_only`, also those under TYPE_CHECKING."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if module_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if not typing_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _graph(*, module_level: bool, typing_only: bool = False) -> dict[str, set[str]]:
    """Module -> the runner's modules it imports. `from P import m` is an import of P.m when m
    is a module (and of P only for the names P defines: a package's submodule is imported
    without its __init__'s names)."""
    modules = _parse()
    graph: dict[str, set[str]] = {}
    for name, (tree, package) in modules.items():
        edges: set[str] = set()
        for node in _import_nodes(tree, module_level=module_level, typing_only=typing_only):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
                continue
            if node.level:
                base = name.split(".") if package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & modules.keys()
            edges |= submodules
            if len(submodules) < len(node.names):  # names defined by the module itself
                edges.add(target)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: set[frozenset[str]] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def test_only_what_starts_fakes_imports_the_sandbox() -> None:
    offenders = sorted(f"{module} imports {target}"
                       for module, targets in _graph(module_level=False).items()
                       if not _within(module, MAY_IMPORT_SANDBOX)
                       for target in targets if _within(target, (SANDBOX,)))
    assert offenders == []


def test_adapters_do_not_import_their_builder() -> None:
    def importers(graph: dict[str, set[str]]) -> set[str]:
        return {m for m, targets in graph.items() if _within(m, ADAPTERS) and BUILDER in targets}

    assert importers(_graph(module_level=False)) == set()  # at run time: none
    assert importers(_graph(module_level=False, typing_only=True)) == set()  # nor typing


def test_module_level_import_cycles_are_the_known_ones() -> None:
    cycles = _cycles(_graph(module_level=True))
    assert {tuple(sorted(c)) for c in cycles} == {tuple(sorted(c)) for c in KNOWN_CYCLES}


def test_the_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    """The reader itself: a function-level import and a relative one are edges."""
    full, top = _graph(module_level=False), _graph(module_level=True)
    assert "velvet_runner.engine.context" in full["velvet_runner.engine"]  # from .context
    assert "velvet_runner.human" in full["velvet_runner.cli.jobs"]  # inside a command
    assert "velvet_runner.human" not in top["velvet_runner.cli.jobs"]
    # a package's submodule imported by name is not an import of the package's __init__
    assert full["velvet_runner.engine.revoke"] >= {"velvet_runner.engine.precheck"}
    assert "velvet_runner.engine" not in full["velvet_runner.engine.revoke"]
    typed = _graph(module_level=False, typing_only=True)
    assert "velvet_runner.manifest" in typed["velvet_runner.targets.base"]  # under TYPE_CHECKING
    assert "velvet_runner.manifest" not in full["velvet_runner.targets.base"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {
        frozenset({"a", "b", "c"})}
