"""The runner's import structure, read from its source with `ast` (nothing is imported), and
checked once at run time.

(a) No module of the runner imports the sandbox (velvet_sandbox/, beside it in the same
    distribution): not at module level, not inside a function, not for its annotations, not by
    an `importlib.import_module` string. The commands that start fakes are velvet_sandbox's,
    mounted on `velvet` through entry points that `velvet --help` lists without importing them;
    a child Python that imports every runner module and prints the help ends with no
    velvet_sandbox module loaded.
(b) No adapter (vendors/, targets/, vaults/) imports the object that builds it (`wiring`), at
    run time or for its annotations: an adapter declares what it needs (client.Api) and its
    `build` receives the clients (client.Supplies), never the builder (issue #26).
(c) No import cycle among the runner's modules: the graph of their imports, module-level and
    inside functions (an import put in a function still ties the two modules together; only
    TYPE_CHECKING blocks are left out), a package's __init__ a module of its own, has no
    strongly connected set of more than one module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import velvet_runner

PACKAGE = Path(velvet_runner.__file__).parent
ROOT = "velvet_runner"
SANDBOX = "velvet_sandbox"
ADAPTERS = ("velvet_runner.vendors", "velvet_runner.targets", "velvet_runner.vaults")
BUILDER = "velvet_runner.wiring"
TIMEOUT = 120  # safety net for a hung child; not a timing assertion


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


def _is_import_module(node: ast.Call) -> bool:
    """`importlib.import_module("literal")` or `import_module("literal")`."""
    if not node.args:
        return False
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module")
    return named and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)


def _import_nodes(tree: ast.Module, *, module_level: bool,
                  typing_only: bool) -> Iterator[ast.Import | ast.ImportFrom | ast.Call]:
    """The import statements and `import_module` calls; with `module_level`, only those that run
    when the module is imported (not in a function); with `typing_only`, also those under
    TYPE_CHECKING."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom) or (
                isinstance(node, ast.Call) and _is_import_module(node)):
            yield node
            continue
        if module_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if not typing_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported(tree: ast.Module, name: str, package: bool, *, module_level: bool,
              typing_only: bool, known: set[str]) -> set[str]:
    """Every module `name` imports, by its absolute name. `from P import m` is an import of
    P.m when m is a module of `known` (and of P only for the names P defines: a package's
    submodule is imported without its __init__'s names); `importlib.import_module("m")` with
    a literal name is an import of m."""
    found: set[str] = set()
    for node in _import_nodes(tree, module_level=module_level, typing_only=typing_only):
        if isinstance(node, ast.Call):
            found.add(str(ast.literal_eval(node.args[0])))
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
            continue
        if node.level:
            base = name.split(".") if package else name.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        submodules = {f"{target}.{a.name}" for a in node.names} & known
        found |= submodules
        if len(submodules) < len(node.names):  # names defined by the module itself
            found.add(target)
    return found


def _graph(*, module_level: bool, typing_only: bool = False) -> dict[str, set[str]]:
    """Module -> the runner's modules it imports."""
    modules = _parse()
    return {name: {e for e in _imported(tree, name, package, module_level=module_level,
                                        typing_only=typing_only, known=set(modules))
                   if e in modules and e != name}
            for name, (tree, package) in modules.items()}


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


def _sandbox_imports(tree: ast.Module, name: str, package: bool) -> list[str]:
    """What of the sandbox `name` imports anywhere, its annotations' imports included."""
    return sorted(target for target in _imported(tree, name, package, module_level=False,
                                                 typing_only=True, known=set())
                  if _within(target, (SANDBOX,)))


def test_no_runner_module_imports_the_sandbox() -> None:
    offenders = sorted(f"{name} imports {target}"
                       for name, (tree, package) in _parse().items()
                       for target in _sandbox_imports(tree, name, package))
    assert offenders == [], "the runner never imports velvet_sandbox (mount a command through " \
        "the velvet.commands entry points instead)"


def test_the_runner_and_its_help_load_no_sandbox_module() -> None:
    """Every runner module imported, then `velvet --help` in the same process: the mounted
    commands are listed with their help, and no velvet_sandbox module was loaded."""
    code = textwrap.dedent("""
        import pkgutil, importlib, sys
        import velvet_runner
        for module in pkgutil.walk_packages(velvet_runner.__path__, "velvet_runner."):
            if not module.name.endswith(".__main__"):  # a script: importing it runs velvet
                importlib.import_module(module.name)
        from velvet_runner.cli import main
        sys.argv = ["velvet", "--help"]
        try:
            main()
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] == "velvet_sandbox"))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=TIMEOUT, env={"COLUMNS": "100", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "LOADED []"
    listed = dict(line.split(None, 1) for line in proc.stdout.split("Commands:\n")[1]
                  .splitlines()[:-1] if line.strip())
    assert listed["sandbox"].startswith("Start every fake vendor on 127.0.0.1")
    assert listed["demo"].startswith("One full rotation of the example world")
    assert listed["rehearse"].startswith("Run this repository's workflows locally")


def test_reading_the_declarations_and_the_state_imports_no_http_client() -> None:
    """Settings, the manifest, the adapters' declarations, the state branch and the engine's
    modules load without httpx (transport.py and the call sites import it): a command that
    calls no vendor (status, due, a refused setting) does not pay for it in every process."""
    code = textwrap.dedent("""
        import sys
        from velvet_runner import engine, manifest, store, wiring, notify, checks
        from velvet_runner.settings import Settings
        from velvet_runner.targets import load_all as targets
        from velvet_runner.vendors import load_all as vendors
        targets(), vendors(), Settings.from_env({})
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] == "httpx"))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=TIMEOUT, env={"PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "LOADED []"


def test_adapters_do_not_import_their_builder() -> None:
    def importers(graph: dict[str, set[str]]) -> set[str]:
        return {m for m, targets in graph.items() if _within(m, ADAPTERS) and BUILDER in targets}

    assert importers(_graph(module_level=False)) == set()  # at run time: none
    assert importers(_graph(module_level=False, typing_only=True)) == set()  # nor typing


def test_no_import_cycle_among_the_runners_modules() -> None:
    cycles = sorted(" -> ".join(sorted(c)) for c in _cycles(_graph(module_level=False)))
    assert cycles == [], "modules that import one another (move what they share to the " \
        "module that owns it):\n" + "\n".join(cycles)


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


def test_the_sandbox_rule_sees_every_way_of_importing() -> None:
    source = textwrap.dedent("""
        from typing import TYPE_CHECKING
        import importlib
        if TYPE_CHECKING:
            from velvet_sandbox.world import Sandbox
        def f():
            import velvet_sandbox.registry
            importlib.import_module("velvet_sandbox.cli")
        def g():
            from velvet_sandbox import heroku
        import velvet_sandboxes  # another package whose name starts alike
    """)
    found = _sandbox_imports(ast.parse(source), "velvet_runner.x", False)
    assert found == ["velvet_sandbox", "velvet_sandbox.cli", "velvet_sandbox.registry",
                     "velvet_sandbox.world"]
