"""Settings in one place: no module of the package but `settings.py` reads or writes the
environment (the layering itself is checked by `lint-imports`, run by `make test`)."""

from __future__ import annotations

import ast
from pathlib import Path

import artsim_pipeline

PACKAGE = Path(artsim_pipeline.__file__).parent


def environment_uses(source: str) -> list[int]:
    """Lines that touch the environment: `os.environ`, `os.getenv`, `os.putenv`, `os.unsetenv`,
    or those names imported from `os`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv", "environb"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if {a.name for a in node.names} & {"environ", "getenv", "putenv", "unsetenv", "environb"}:
                lines.append(node.lineno)
    return lines


def test_the_checker_sees_each_way_of_touching_the_environment():
    assert environment_uses("import os\nos.environ['A'] = '1'\nos.getenv('B')\n") == [2, 3]
    assert environment_uses("from os import environ\n") == [1]
    assert environment_uses("import os\nos.cpu_count()\n") == []


def test_only_settings_touches_the_environment():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "settings.py":
            continue
        lines = environment_uses(path.read_text(encoding="utf-8"))
        if lines:
            offenders[relative] = lines
    assert offenders == {}, f"environment read or written outside settings.py: {offenders}"
    assert environment_uses((PACKAGE / "settings.py").read_text(encoding="utf-8"))  # and settings does


def test_one_default_backbone():
    from artsim_pipeline import settings
    from artsim_pipeline.core.ml import backbones
    from artsim_pipeline.resources.encoders import EncoderResource

    assert settings.DEFAULT_IMAGE_BACKBONE is backbones.DEFAULT_BACKBONE
    assert EncoderResource().backbone == backbones.DEFAULT_BACKBONE
