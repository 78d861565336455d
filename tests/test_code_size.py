"""Size limits of the shipped code (issue 14): no module over 400 lines, no function over 60.

Read from the source with :mod:`ast`: every ``.py`` file of the package's folders and of
``benchmarks/`` (tests are not counted). A function's length runs from its ``def`` line
to its last line, docstring and nested functions included (a nested function is also
measured on its own). A function or file that must stay longer goes in ``ALLOWED`` with
the reason; the test also fails on an entry that no longer needs to be there.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("bitfold", "train", "compiler", "hw", "sim", "boards", "interop", "benchmarks")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# "path" (a file) or "path:function" -> why it is longer than the limit
ALLOWED: dict[str, str] = {}


def oversized(root: Path = ROOT) -> dict[str, int]:
    """``{"path": lines}`` of every file over the limit and ``{"path:function": lines}`` of
    every function over it (a name defined twice in a file: the longest)."""
    out: dict[str, int] = {}
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            text = path.read_text()
            lines = len(text.splitlines())
            if lines > MAX_FILE_LINES:
                out[rel] = lines
            for node in ast.walk(ast.parse(text, rel)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    key = f"{rel}:{node.name}"
                    if length > MAX_FUNCTION_LINES:
                        out[key] = max(length, out.get(key, 0))
    return out


def test_no_file_over_400_lines_and_no_function_over_60_but_those_allowed() -> None:
    found = oversized()
    new = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not new, (f"over {MAX_FILE_LINES} lines a file or {MAX_FUNCTION_LINES} a function "
                     f"(split it, or add it to ALLOWED in {Path(__file__).name} with the "
                     "reason): " + ", ".join(f"{k} ({v} lines)" for k, v in sorted(new.items())))
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"within the limits now, remove from ALLOWED: {', '.join(stale)}"


def test_the_check_sees_long_functions_methods_and_files(tmp_path) -> None:
    (tmp_path / "hw").mkdir()
    body = "\n".join(f"        x{i} = {i}" for i in range(60))
    text = (f"class A:\n    def long(self):\n{body}\n\n    def short(self):\n        return 1\n"
            + "# a line\n" * 336)
    assert len(text.splitlines()) == 401  # and A.long is 61 lines with its def
    (tmp_path / "hw" / "long.py").write_text(text)
    flat = body.replace("        ", "    ")
    (tmp_path / "hw" / "edge.py").write_text(f"def at_limit():\n{flat[:flat.rindex(chr(10))]}\n"
                                             f"\n\ndef over():\n{flat}\n    return x0\n")
    assert oversized(tmp_path) == {"hw/long.py": 401, "hw/long.py:long": 61,
                                   "hw/edge.py:over": 62}
