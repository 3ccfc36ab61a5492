"""The package's folders are its layers: imports run only downward, with no circle (issue 25).

Read from the source with ``ast`` (no import runs), so a violation in a function-level import or
under ``TYPE_CHECKING`` counts too: the picture is the code, not what happens to be loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnsearch"

#: What each layer may import (besides itself). cli and the package's face (__init__) sit on top.
ALLOWED: dict[str, set[str]] = {
    "ground": set(),
    "model": {"ground"},
    "records": {"ground"},
    "search": {"ground", "model", "records"},
    "evidence": {"ground", "model", "records", "search"},
    "report": {"ground", "model", "records", "search", "evidence"},
    "cli": {"ground", "model", "records", "search", "evidence", "report", "api"},
    "api": {"ground", "model", "records", "search", "evidence", "report"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "cnnsearch":
        return None
    if len(parts) == 1:
        return "api"
    return parts[1] if parts[1] in ALLOWED else "api"


def _imports(path: Path) -> set[str]:
    """Every cnnsearch module ``path`` imports, resolved to dotted names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cnnsearch"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("cnnsearch"):
                continue
            for alias in node.names:  # `from cnnsearch.search import study` names a module
                sub = f"{mod}.{alias.name}"
                found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                          or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else mod)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_sits_in_a_layer_folder() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert loose == [], f"modules outside a layer folder: {loose}"


def test_imports_only_run_downward() -> None:
    wrong = []
    for module, imported in _graph().items():
        mine = _layer(module)
        for other in imported:
            theirs = _layer(other)
            if theirs is None or theirs == mine or theirs == "api" and other != "cnnsearch":
                continue
            if theirs not in ALLOWED[mine]:
                wrong.append(f"{module} ({mine}) imports {other} ({theirs})")
    assert wrong == [], "\n".join(wrong)


def test_no_import_circle() -> None:
    graph = _graph()
    modules = {m: {o for o in deps if o in graph and o != m} for m, deps in graph.items()}
    # a package's __init__ importing its children is how packages work, not a circle
    for m in modules:
        modules[m] = {o for o in modules[m] if not o.startswith(m + ".")}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        seen[m] = 1
        stack.append(m)
        for o in sorted(modules[m]):
            if seen.get(o) == 1:
                return stack[stack.index(o):] + [o]
            if o not in seen and (cycle := visit(o)):
                return cycle
        seen[m] = 2
        stack.pop()
        return None

    for m in sorted(modules):
        if m not in seen and (cycle := visit(m)):
            raise AssertionError("import circle: " + " -> ".join(cycle))
