"""core/ is pure logic: no module under it opens, reads or writes a file, loads model weights or
talks to the network (README "Layout"; resources/ does all of that). The import-linter contracts
catch imports (`core-pure`, `core-loads-no-model`); this catches the calls that need no import:
`open(...)`, `Path.read_bytes()`, `torch.load`, `from_pretrained`, ..."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "artsim_pipeline" / "core"

#: Methods that read or write a file or a model, whatever object they are called on.
FILE_METHODS = {"read_bytes", "read_text", "write_bytes", "write_text", "from_pretrained", "save_pretrained",
                "iterdir", "glob", "rglob", "mkdir", "unlink", "rmdir", "touch", "listdir", "scandir", "walk"}
#: module.function calls that read or write files.
MODULE_CALLS = {("torch", "load"), ("torch", "save"), ("np", "load"), ("np", "save"), ("np", "savez"),
                ("np", "fromfile"), ("numpy", "load"), ("numpy", "save"), ("os", "remove"), ("os", "rename"),
                ("os", "replace"), ("os", "makedirs")}
NETWORK_MODULES = {"requests", "urllib3", "httpx", "socket", "http"}


def _is_network_module(name: str) -> bool:
    return name.split(".")[0] in NETWORK_MODULES or name.startswith("urllib.request")  # urllib.parse is pure


def _is_in_memory_stream(node: ast.expr) -> bool:
    """``io.BytesIO(...)`` / ``BytesIO(...)`` / ``io.StringIO(...)``: opening these reads no file."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in {"BytesIO", "StringIO"}


def file_io_calls(source: str) -> list[tuple[int, str]]:
    """(line, what) for every call or import in ``source`` that reads, writes or downloads."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if _is_network_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and _is_network_module(node.module or ""):
            found.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                found.append((node.lineno, "open("))
            elif isinstance(func, ast.Attribute):
                owner = func.value.id if isinstance(func.value, ast.Name) else None
                if func.attr in FILE_METHODS or (owner, func.attr) in MODULE_CALLS:
                    found.append((node.lineno, f".{func.attr}("))
                elif func.attr == "open" and not (node.args and _is_in_memory_stream(node.args[0])):
                    found.append((node.lineno, f"{owner or '?'}.open( on something that is not in memory"))
    return found


def test_the_check_finds_what_it_looks_for():
    code = """
import requests
from pathlib import Path
from PIL import Image
import io
from urllib.parse import quote
a = open("x")
b = Path("y").read_bytes()
c = AutoModel.from_pretrained("z")
d = torch.load("w")
e = Image.open("v.jpg")
f = Image.open(io.BytesIO(b""))
"""
    found = dict((line, what) for line, what in file_io_calls(code))
    # urllib.parse (line 6) and the in-memory Image.open (line 12) are fine
    assert sorted(found) == [2, 7, 8, 9, 10, 11]


@pytest.mark.parametrize("module", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_does_no_file_or_network_io(module):
    calls = file_io_calls(module.read_text(encoding="utf-8"))
    assert not calls, f"{module.relative_to(CORE.parent)} does I/O (move it to resources/): {calls}"
