"""The code keeps the shape docs/ARCHITECTURE.md describes: layers that import only downwards,
modules a newcomer can read, and a short path from the page to the model."""

from __future__ import annotations

import ast
import re
from collections import deque
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fashionnet", "indexer", "webui")
MAX_MODULE_LINES = 600

# Lower layers first; a module may import its own layer and the layers before it.
LAYERS = [
    ("fashionnet.landmarks", "fashionnet.images", "fashionnet.metrics", "fashionnet.retrieval_time", "fashionnet.data", "fashionnet.schedule", "fashionnet.miners",
     "fashionnet.cli_errors"),
    ("fashionnet.models", "fashionnet.losses", "fashionnet.runtime"),
    ("fashionnet.ood", "fashionnet.temperature", "fashionnet.checkpoint", "fashionnet.protocols", "fashionnet.onnx_runtime",
     "fashionnet.openvino_runtime",
     "fashionnet.localisation", "fashionnet.landmark_prior", "fashionnet.faces", "fashionnet.whitening"),
    ("fashionnet.inference", "fashionnet.evaluation", "fashionnet.calibration"),
    ("fashionnet.training", "fashionnet.training_log"),
    ("indexer",),
    ("webui",),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Project modules imported by a file, at any depth of the file (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


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


def test_no_module_imports_a_higher_layer():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        for imported in _imports(path):
            target = imported if imported in modules else imported.rsplit(".", 1)[0]
            if target in modules and _layer(target) > _layer(name):
                upward.append(f"{name} imports {target}")
    assert not upward, upward


def test_no_module_is_over_the_size_a_newcomer_can_read():
    long = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {n: c for n, c in long.items() if c > MAX_MODULE_LINES} == {}


def test_the_page_reaches_the_model_in_three_imports():
    modules = _modules()
    graph = {name: {i if i in modules else i.rsplit(".", 1)[0] for i in _imports(path)} & set(modules) for name, path in modules.items()}
    hops = {"webui.app": 0}
    queue = deque(["webui.app"])
    while queue:
        current = queue.popleft()
        for nxt in graph[current]:
            if nxt not in hops:
                hops[nxt] = hops[current] + 1
                queue.append(nxt)
    assert hops.get("fashionnet.models.fashionnet", 99) <= 3, hops


def test_every_document_the_code_names_is_in_the_repository():
    """Comments and messages may point at documents, but only at ones a reader of this repository has."""
    named = set()
    for package in (*PACKAGES, "scripts"):
        for path in (REPO / package).rglob("*.py"):
            named.update(re.findall(r"[\w./-]+\.md\b", path.read_text()))
    missing = sorted(n for n in named if not (REPO / n).exists() and not list(REPO.rglob(Path(n).name)))
    assert not missing, missing
