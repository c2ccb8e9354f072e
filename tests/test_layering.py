"""The package's layers: every import (inside functions too) points down or sideways within
its own subpackage, and the module graph has no cycle. docs/architecture.md draws the same
layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "include" / "trailhouse"

# Lowest first. A module may import modules of its own layer's lower entries or of any
# lower layer; the foundation modules may import one another (the cycle test still holds).
LAYERS: list[set[str]] = [
    {"settings", "config", "storage", "faults", "common", "output", "airflow_env"},
    {"warehouse", "db"},
    {"deployment"},
    {"ingest"},
    {"alerting"},
    {"integrity"},
    {"pipeline"},
    {"dev"},
    {"web"},
    {"cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every trailhouse module `path` imports, at any depth of the file."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("trailhouse")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trailhouse") and not node.level:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PKG.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                          or (PKG.parent / candidate.replace(".", "/")).is_dir() else node.module)
    return found


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py")) if "migrations" not in p.parts}
GRAPH = {name: {i for i in _imports(path) if i != name} for name, path in MODULES.items()}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_top_level_piece_has_a_layer() -> None:
    tops = {_top(m) for m in MODULES} - {""}
    assert tops <= set(RANK), f"put these in a layer of tests/test_layering.py: {sorted(tops - set(RANK))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_point_down(module: str) -> None:
    here = RANK.get(_top(module), -1)
    upward = sorted(i for i in GRAPH[module]
                    if _top(i) and _top(i) != _top(module) and RANK.get(_top(i), 99) > here)
    assert not upward, f"{module} imports from a higher layer: {upward}"


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_subpackage_inits_stay_empty() -> None:
    # Parsing the DAG file imports trailhouse.pipeline.dag_factory: an __init__ that imported
    # its package's modules would make every parse pay for them.
    for init in PKG.glob("*/**/__init__.py"):  # subpackages at any depth (dev/synth too)
        if init.parent.name == "web":
            continue  # web/__init__ holds the mount path and nothing that imports
        assert not init.read_text().strip(), f"{init.relative_to(PKG.parent)} should stay empty"
