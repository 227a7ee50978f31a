"""The operators stay thin: each `act` is a short call into a plain module of `dereg` (the work,
tested without Airflow, lives there). Read from the source with `ast`, without importing Airflow."""

from __future__ import annotations

import ast
from pathlib import Path

import dereg

OPERATORS = Path(dereg.__file__).parent / "operators"
MAX_ACT_LINES = 40


def _code_lines(lines: list[str], node: ast.FunctionDef) -> int:
    """Lines of `node` that hold code: blank and comment-only lines do not count."""
    body = lines[node.lineno - 1 : node.end_lineno]
    return sum(1 for line in body if line.strip() and not line.strip().startswith("#"))


def _acts() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(OPERATORS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for method in cls.body:
                if isinstance(method, ast.FunctionDef) and method.name == "act":
                    found.append((path.name, cls.name, _code_lines(text.splitlines(), method)))
    return found


def test_every_act_is_at_most_40_lines():
    acts = _acts()
    assert len(acts) >= 12, acts  # the closure's stages are all found
    long = [
        f"{file}: {cls}.act has {lines} lines of code" for file, cls, lines in acts if lines > MAX_ACT_LINES
    ]
    assert not long, "move the work into a plain module of dereg: " + "; ".join(long)
