"""The local warehouse stands on its own: a Databricks stand-in that imports nothing of the product, so it
tests the product from outside, as a real workspace would (only the demo and `dev` use both)."""

from __future__ import annotations

import ast
from pathlib import Path

import zenskar_devtools.local_warehouse

PACKAGE = Path(zenskar_devtools.local_warehouse.__file__).parent


def test_no_module_of_the_warehouse_imports_the_product() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10, f"found only {len(modules)} modules under {PACKAGE}"
    offenders = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.name}:{node.lineno} imports {n}" for n in names if n.startswith("zenskar_pipeline")
            ]
    assert not offenders, "\n".join(offenders)
