"""Small modules, small functions (issue 25): no module over 400 lines, no function over 60.

A listed exception names its reason; shrinking it means deleting its line here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnsearch"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

#: module (relative to cnnsearch/) -> why it may be longer, until it is split.
MODULE_EXCEPTIONS: dict[str, str] = {
}
#: "module:function" -> why it may be longer, until it is split.
FUNCTION_EXCEPTIONS: dict[str, str] = {
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_over_the_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    unexplained = {m: n for m, n in long.items() if m not in MODULE_EXCEPTIONS}
    assert unexplained == {}, f"modules over {MAX_MODULE_LINES} lines: {unexplained}"


def test_no_function_over_the_limit() -> None:
    long = {}
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                key = f"{p.relative_to(PACKAGE)}:{node.name}"
                if n > MAX_FUNCTION_LINES and key not in FUNCTION_EXCEPTIONS:
                    long[key] = n
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_exceptions_are_still_needed() -> None:
    """A listed exception that no longer applies is deleted, so the list stays the truth."""
    lines = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    stale = [m for m in MODULE_EXCEPTIONS if lines.get(m, 0) <= MAX_MODULE_LINES]
    assert stale == [], f"no longer over the limit, delete from MODULE_EXCEPTIONS: {stale}"
