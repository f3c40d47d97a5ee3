"""The product stands alone: it never imports the dev tools (zenskar_devtools) nor what only they need
(sqlglot), and installing it brings neither. The CLI reaches the dev tools' commands through entry points
only (`zenskar_pipeline.commands`), which these checks leave out on purpose: they cover the product's code.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import zenskar_pipeline
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.state import save_state
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_defs.conftest import source_tables, write_streams

FORBIDDEN_MODULES = {"zenskar_devtools", "sqlglot"}
FORBIDDEN_DISTRIBUTIONS = {"sqlglot", "zenskar-pipeline-devtools"}
PACKAGE = Path(zenskar_pipeline.__file__).parent


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every import statement, wherever it sits (functions, TYPE_CHECKING blocks), and
    every `importlib.import_module("...")` or `__import__("...")` with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if name in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return sorted(found)


def test_no_module_of_the_product_imports_the_dev_tools_or_sqlglot() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20, f"found only {len(modules)} modules under {PACKAGE}"
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in modules
        for line, name in _imported_names(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if name.split(".")[0] in FORBIDDEN_MODULES
    ]
    assert not offenders, "\n".join(offenders)


IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
import zenskar_pipeline

names = [m.name for m in pkgutil.walk_packages(zenskar_pipeline.__path__, "zenskar_pipeline.")]
for name in names:
    importlib.import_module(name)
forbidden = sorted(n for n in sys.modules if n.split(".")[0] in {forbidden!r})
print(json.dumps({{"imported": names, "forbidden": forbidden}}))
"""


def test_importing_every_module_of_the_product_loads_neither(
    warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    # The composition root builds the definitions as it is imported, so it gets a project to build from:
    # a streams file and its discovery cache.
    source_tables(warehouse.root)
    config = load_config(write_streams(tmp_path), env={})
    with databricks_resource(warehouse).session() as session:
        save_state(discover_tables(session, config), config.state_path)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE.format(forbidden=FORBIDDEN_MODULES)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "ZENSKAR_PIPELINE_CONFIG": str(config.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"zenskar_pipeline.cli", "zenskar_pipeline.definitions"} <= set(report["imported"])
    assert report["forbidden"] == []


def _dependency_closure(distribution: str) -> set[str]:
    """Every distribution that installing `distribution` brings, from the installed metadata: its
    requirements whose markers hold here, and theirs, following an extra only where a requirement asks for
    it (`databricks-sql-connector[pyarrow]`), never the distribution's own extras (`dev`)."""
    closure: set[str] = set()
    pending: list[tuple[str, str]] = [(distribution, "")]  # (distribution, extra or "" for the base)
    followed: set[tuple[str, str]] = set()
    while pending:
        name, extra = pending.pop()
        key = (canonicalize_name(name), extra)
        if key in followed:
            continue
        followed.add(key)
        closure.add(key[0])
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            raise AssertionError(f"{name} is required but not installed: the closure is unknown") from None
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                pending.append((requirement.name, ""))
                pending += [(requirement.name, wanted) for wanted in requirement.extras]
    return closure


def test_installing_the_product_brings_neither_sqlglot_nor_the_dev_tools() -> None:
    closure = _dependency_closure("zenskar-pipeline")
    runtime = [Requirement(text) for text in metadata.requires("zenskar-pipeline") or []]
    direct = {canonicalize_name(r.name) for r in runtime if not r.marker or r.marker.evaluate({"extra": ""})}
    assert {"dagster", "databricks-sql-connector", "deltalake"} <= direct < closure
    assert not closure & FORBIDDEN_DISTRIBUTIONS, sorted(closure & FORBIDDEN_DISTRIBUTIONS)
