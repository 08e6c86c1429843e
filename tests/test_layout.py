"""The dependency direction docs/architecture.md states, kept by the code.

cli → api → engine (+ evaluation, debug, report, export, review, view) → store → graph →
nodes → llm / state / prompts, with methods, config, records and outputs at the bottom. A
module may import its own layer or the ones below it, never one above; a new top-level
module must be placed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import codeclm

LAYERS: dict[str, int] = {
    "__main__": 10,
    "cli": 9,
    "api": 8,
    # the drivers, over the engine
    "evaluation": 7,
    "debug": 7,
    "report": 7,
    "export": 7,
    "bench": 7,
    "split": 7,
    "review": 7,
    "view": 7,
    "engine": 6,
    "store": 5,
    "graph": 4,
    "nodes": 3,
    "context": 2,
    "llm": 2,
    "prompts": 2,
    "analysis": 2,
    "seeds": 2,
    "outputs": 1,
    "records": 1,
    "config": 1,
    "methods": 0,
    "state": 0,
    "codeclm": 0,  # the package itself: __version__
}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_import_points_down_the_layers() -> None:
    root = Path(codeclm.__file__).parent
    wrong = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        source = _unit(module)
        assert source in LAYERS, f"{module}: place it in a layer (tests/test_layout.py)"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] != "codeclm":
                    continue
                target = _unit(name)
                if LAYERS.get(target, 99) > LAYERS[source]:
                    wrong.append(f"{module} imports {name}")
    assert not wrong, "imports against the dependency direction: " + "; ".join(wrong)


def test_no_module_is_named_like_the_standard_library() -> None:
    import sys

    root = Path(codeclm.__file__).parent
    names = {path.stem for path in root.rglob("*.py")} | {p.name for p in root.rglob("*/")}
    assert not names & set(sys.stdlib_module_names) - {"__main__", "__init__"}
