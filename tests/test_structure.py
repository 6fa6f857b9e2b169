"""The import structure of src/socialens (DESIGN.md, "Layout"): imports run one way, from the CLI
down to core; no import circle; no private name imported from another module; a protocol module
never imports its implementations. Every import counts, the lazy ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower number = lower layer. A module may import its own layer or any lower one; within a layer
# the pairs in SAME_LAYER_ORDER say which way imports may run.
LAYERS = {
    "core": 0,
    "tasks": 1,
    "data": 1,
    "llm": 2,
    "tuning": 2,
    "classifiers": 3,
    "evaluation": 4,
    "experiment": 5,
    "predict_output": 6,
    "predict": 6,
    "predict_ray": 6,
    "serving": 6,
    "bench": 6,
    "cli_help": 7,
    "cli": 7,
}
# (importer, imported): allowed within one layer; the reverse direction is not
SAME_LAYER_ORDER = {
    ("data", "tasks"),
    ("tuning", "llm"),
    ("predict", "predict_output"),
    ("predict_ray", "predict"),
    ("predict_ray", "predict_output"),
    ("serving", "predict_output"),
    ("serving", "predict"),
    ("cli", "cli_help"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) for every socialens import in the file, lazy ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "socialens":
                found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "socialens":
                    found.append((node.lineno, alias.name, []))
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (SRC / "socialens").rglob("*.py")}


def resolve(imported: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """The modules an import statement loads: ``from socialens.x import y`` loads socialens.x.y
    when y is a module, else socialens.x."""
    targets = [f"{imported}.{name}" for name in names if f"{imported}.{name}" in modules]
    if len(targets) < len(names) or not names:
        targets.append(imported)
    return [t for t in targets if t in modules]


def test_imports_run_one_way_down_the_layers():
    modules = all_modules()
    wrong = []
    for module, path in modules.items():
        here = area(module)
        if here not in LAYERS:
            continue
        for line, imported, _ in imports_of(path):
            there = area(imported)
            if there is None or there == here or there not in LAYERS:
                continue
            up = LAYERS[there] > LAYERS[here]
            sideways = LAYERS[there] == LAYERS[here] and (here, there) not in SAME_LAYER_ORDER
            if up or sideways:
                wrong.append(f"{path.relative_to(SRC)}:{line} ({here}) imports {imported} ({there})")
    assert wrong == []


def test_core_imports_nothing_of_socialens_outside_core():
    wrong = [
        f"{path.relative_to(SRC)}:{line} imports {imported}"
        for module, path in all_modules().items()
        if area(module) == "core"
        for line, imported, _ in imports_of(path)
        if area(imported) != "core"
    ]
    assert wrong == []


def test_no_private_name_is_imported_from_another_module():
    wrong = [
        f"{path.relative_to(SRC)}:{line} imports {name} from {imported}"
        for module, path in all_modules().items()
        for line, imported, names in imports_of(path)
        for name in names
        if name.startswith("_") and not name.startswith("__") and imported != module
    ]
    assert wrong == []


def test_no_import_circle():
    modules = all_modules()
    graph = {
        module: sorted(
            {t for _, imported, names in imports_of(path) for t in resolve(imported, names, modules)}
            - {module}
        )
        for module, path in modules.items()
    }
    # a package's __init__ importing its own submodule is its face, not a circle
    for module in graph:
        graph[module] = [
            t
            for t in graph[module]
            if not (t.startswith(module + ".") and modules[module].name == "__init__.py")
        ]
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in graph[node]:
            if state.get(target) == 1:
                circles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert circles == []


@pytest.mark.parametrize(
    "protocol",
    ["socialens.classifiers.base", "socialens.llm.base", "socialens.tasks.base"],
)
def test_a_protocol_module_never_imports_its_implementations(protocol):
    package = protocol.rsplit(".", 1)[0]
    path = all_modules()[protocol]
    siblings = [imported for _, imported, _ in imports_of(path) if imported.startswith(package + ".")]
    assert siblings == []
