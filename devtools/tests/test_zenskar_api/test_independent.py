"""The local Zenskar API stands on its own, as the real one does: none of its modules imports the product."""

from __future__ import annotations

import ast
from pathlib import Path

import zenskar_devtools.zenskar_api

PACKAGE = Path(zenskar_devtools.zenskar_api.__file__).parent


def test_no_module_of_the_zenskar_api_imports_the_product() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) >= 8, f"found only {len(modules)} modules under {PACKAGE}"
    imported = [
        (path.name, node.lineno, name)
        for path in modules
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
            else []
        )
    ]
    offenders = [
        f"{file}:{line} imports {name}"
        for file, line, name in imported
        if name.startswith("zenskar_pipeline")
    ]
    assert not offenders, "\n".join(offenders)
