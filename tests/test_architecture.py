"""The code keeps the shape docs/ARCHITECTURE.md describes: layers that import only downwards, no
import circle, modules a newcomer can read, and a short path from the page to the model."""

from __future__ import annotations

import ast
import re
from collections import deque
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fashionnet", "indexer", "webui")
MAX_MODULE_LINES = 450

# Lower layers first; a module may import its own layer and the layers before it.
LAYERS = [
    ("fashionnet.landmarks", "fashionnet.device", "fashionnet.cli", "fashionnet.data"),
    ("fashionnet.models",),
    ("fashionnet.calibration", "fashionnet.runtimes"),
    ("fashionnet.inference",),
    ("fashionnet.evaluation",),
    ("fashionnet.training",),
    ("indexer",),
    ("webui",),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def _imported_module(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` is or lies in (``fashionnet.models.FashionNetConfig`` -> ``fashionnet.models``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules a file imports, at any depth of the file (imports inside functions count too).
    ``from package import submodule`` imports the submodule; the packages above an imported module,
    whose ``__init__`` Python also runs, are not counted, as import checkers do not."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(_imported_module(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else _imported_module(node.module, modules))
    return {module for module in found if module is not None} - {name}


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    if best is None:  # the fashionnet package itself (its __init__ sets environment defaults only)
        return 0
    return best[0]


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import each other in a circle (Tarjan's strongly connected
    components), as one circle through the group: [a, b, ..., a]."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(start: str) -> None:
        # iterative depth-first search: the module graph is deeper than a recursion would like
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
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
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_circle_through(group, graph) for group in groups]


def _circle_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest circle from the group's first module back to it, inside the group."""
    start, members = group[0], set(group)
    came_from = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for nxt in sorted(graph[current] & members):
            if nxt == start:
                path = [current]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if nxt not in came_from:
                came_from[nxt] = current
                queue.append(nxt)
    return group


def test_no_module_imports_a_higher_layer():
    upward = [f"{name} imports {target}" for name, targets in _import_graph().items() for target in targets
              if _layer(target) > _layer(name)]
    assert not upward, upward


def test_no_modules_import_each_other_in_a_circle():
    cycles = import_cycles(_import_graph())
    assert not cycles, "import circles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_check_finds_a_circle_closed_inside_a_function(tmp_path):
    """A function-level import counts: it is how circles are usually hidden."""
    package = tmp_path / "webui"
    package.mkdir()
    (package / "a.py").write_text("import webui.b\n")
    (package / "b.py").write_text("def later():\n    from webui.c import x\n")
    (package / "c.py").write_text("from webui import a\nx = 1\n")
    modules = {f"webui.{p.stem}": p for p in package.glob("*.py")}
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert import_cycles(graph) == [["webui.a", "webui.b", "webui.c", "webui.a"]]


def test_no_module_is_over_the_size_a_newcomer_can_read():
    long = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {n: c for n, c in long.items() if c > MAX_MODULE_LINES} == {}


def test_the_page_reaches_the_model_in_three_imports():
    """webui.app -> indexer.search (SearchEngine) -> fashionnet.inference.predictor -> fashionnet.models."""
    graph = _import_graph()
    hops = {"webui.app": 0}
    queue = deque(["webui.app"])
    while queue:
        current = queue.popleft()
        for nxt in graph[current]:
            if nxt not in hops:
                hops[nxt] = hops[current] + 1
                queue.append(nxt)
    assert min(h for name, h in hops.items() if name.startswith("fashionnet.models")) <= 3, hops


def test_every_document_the_code_names_is_in_the_repository():
    """Comments and messages may point at documents, but only at ones a reader of this repository has."""
    named = set()
    for package in (*PACKAGES, "scripts"):
        for path in (REPO / package).rglob("*.py"):
            named.update(re.findall(r"[\w./-]+\.md\b", path.read_text()))
    missing = sorted(n for n in named if not (REPO / n).exists() and not list(REPO.rglob(Path(n).name)))
    assert not missing, missing
