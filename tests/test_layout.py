"""The structure docs/architecture.md states, kept by the code.

The dependency direction, read from the one block of docs/architecture.md that states it
(a line a rank, top first): a module imports only packages on lower lines, never a peer on
its own line nor one above; a new top-level module or package must be placed there. Only
the handle reads and writes run.json and eval.json; the store knows nothing of the graphs;
no module is over 400 lines and no function over 80.
"""

from __future__ import annotations

import ast
from pathlib import Path

import codeclm

ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
LAYERS_MARK = "<!-- the layers, top to bottom: read by tests/test_layout.py -->"


def _layers() -> dict[str, int]:
    """Each package's rank, from the one statement of the order (docs/architecture.md):
    the block after ``LAYERS_MARK``, a line a rank, top first; names on a line are peers."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split(LAYERS_MARK, 1)[1].split("```", 2)[1]
    lines = [line.split() for line in block.strip().splitlines()]
    return {name: len(lines) - rank for rank, names in enumerate(lines) for name in names}


LAYERS = _layers()

ROOT = Path(codeclm.__file__).parent


def _modules() -> list[tuple[str, Path, ast.Module]]:
    """Every module of the package: its dotted name, path and syntax tree."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        found.append((module, path, ast.parse(path.read_text(encoding="utf-8"))))
    return found


def _imports(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return [name for name in names if name.split(".")[0] == "codeclm"]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_import_points_down_the_layers() -> None:
    wrong = []
    for module, _, tree in _modules():
        source = _unit(module)
        assert source in LAYERS, f"{module}: place it in a layer (docs/architecture.md)"
        for name in _imports(tree):
            target = _unit(name)
            if target != source and LAYERS.get(target, 99) >= LAYERS[source]:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "imports against the dependency direction: " + "; ".join(wrong)


def test_the_store_knows_nothing_of_the_graphs() -> None:
    """Storage is storage: it saves whatever the state models are, whoever runs them."""
    wrong = [
        f"{module} imports {name}"
        for module, _, tree in _modules()
        if _unit(module) == "store"
        for name in _imports(tree)
        if _unit(name) in ("graph", "nodes", "prepare")
    ]
    assert not wrong, "; ".join(wrong)


_RECORD_NAMES = {"RUN_JSON", "EVAL_JSON", "run.json", "eval.json"}


def _code_mentions(tree: ast.Module) -> set[str]:
    """The record files a module names in code (docstrings and comments aside)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name | ast.alias):
            name = node.id if isinstance(node, ast.Name) else node.name
            found |= {name} & _RECORD_NAMES
        elif (
            isinstance(node, ast.Constant)
            and id(node) not in docstrings
            and isinstance(node.value, str)
            and node.value in _RECORD_NAMES
        ):
            found.add(node.value)
    return found


def test_only_the_handle_reads_and_writes_the_records() -> None:
    """run.json and eval.json are read and written in one place: ``codeclm.handle``
    (``outputs`` only names them)."""
    wrong = [
        f"{module} ({', '.join(sorted(names))})"
        for module, _, tree in _modules()
        if _unit(module) not in ("handle", "outputs") and (names := _code_mentions(tree))
    ]
    assert not wrong, "modules naming run.json or eval.json outside the handle: " + "; ".join(wrong)


def test_no_module_over_400_lines_and_no_function_over_80() -> None:
    long_modules = [
        f"{module} ({lines} lines)"
        for module, path, _ in _modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 400
    ]
    long_functions = [
        f"{module}.{node.name} ({length} lines)"
        for module, _, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > 80
    ]
    assert not long_modules and not long_functions, long_modules + long_functions


def test_no_module_is_named_like_the_standard_library() -> None:
    import sys

    names = {path.stem for path in ROOT.rglob("*.py")} | {p.name for p in ROOT.rglob("*/")}
    assert not names & set(sys.stdlib_module_names) - {"__main__", "__init__"}


def test_the_cli_is_a_thin_layer_over_the_api() -> None:
    """``cli/`` imports nothing of codeclm's but the API (and its own modules): what a
    command needs (errors, results, rules such as what --update may change) the API has."""
    wrong = []
    for module, _, tree in _modules():
        if _unit(module) != "cli":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "codeclm":
                names = [f"codeclm.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names = _imports(ast.Module(body=[node], type_ignores=[]))
            else:
                continue
            wrong += [name for name in names if _unit(name) not in ("cli", "api")]
    assert not wrong, "cli imports " + "; ".join(wrong)
