"""The discovery cache: what `zenskar-pipeline discover` found, saved as JSON beside the streams file, so that
definitions load without contacting Databricks (`zenskar_pipeline.streams` checks the streams file against
it before data moves).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from zenskar_pipeline.config import TableName
from zenskar_pipeline.databricks.discovery import (
    DiscoveredCatalog,
    DiscoveredColumn,
    DiscoveredTable,
)

FORMAT = "zenskar-pipeline/discovery"
FORMAT_VERSION = 1
DISCOVER = "`zenskar-pipeline discover`"

T = TypeVar("T")


class StateError(Exception):
    """The discovery cache cannot be used; the message says which file and what to run."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class StateMissingError(StateError):
    def __init__(self, path: Path, message: str | None = None) -> None:
        super().__init__(message or f"no discovered tables at {path}; run {DISCOVER}", path)


class StateCorruptError(StateError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"the discovery cache {path} cannot be read ({reason}); run {DISCOVER} again", path)


# -- the file ------------------------------------------------------------------------------------------------


def save_state(catalog: DiscoveredCatalog, path: Path) -> None:
    """Write `catalog` to `path` atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_catalog_to_json(catalog), indent=2, ensure_ascii=False) + "\n"
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as temporary:
        try:
            temporary.write(text)
            temporary.flush()
            os.fsync(temporary.fileno())
        except BaseException:
            temporary.close()
            os.unlink(temporary.name)
            raise
    try:
        os.replace(temporary.name, path)
    except BaseException:
        os.unlink(temporary.name)
        raise


def load_state(path: Path) -> DiscoveredCatalog:
    """The cached discovery at `path`; `StateMissingError` when there is none, `StateCorruptError` when the
    file is not one this version wrote."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateMissingError(path) from None
    except OSError as error:
        raise StateCorruptError(path, error.strerror or type(error).__name__) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateCorruptError(path, f"not JSON: {error.msg} at line {error.lineno}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateCorruptError(path, f"not a {FORMAT} file")
    if data.get("version") != FORMAT_VERSION:
        version = data.get("version")
        raise StateCorruptError(path, f"format version {version!r}, this release reads {FORMAT_VERSION}")
    try:
        return _catalog_from_json(data)
    except _Malformed as error:
        raise StateCorruptError(path, str(error)) from None


def load_newest_state(path: Path, *others: Path | None) -> DiscoveredCatalog:
    """The most recent discovery among `path` and `others` that exist (by `discovered_at`): the Dagster
    component's state and the cache `zenskar-pipeline discover` writes are the same file format, and whichever
    command ran last wrote the newer one. `StateMissingError` for `path` when none exists; a file that exists
    but cannot be read is an error, never skipped."""
    found = [load_state(candidate) for candidate in (path, *others) if candidate and candidate.exists()]
    if not found:
        raise StateMissingError(path)
    return max(found, key=lambda catalog: catalog.discovered_at)


def _catalog_to_json(catalog: DiscoveredCatalog) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "discovered_at": catalog.discovered_at.isoformat(),
        "catalogs": list(catalog.catalogs),
        "tables": [_table_to_json(table) for table in catalog.tables.values()],
    }


def _table_to_json(table: DiscoveredTable) -> dict[str, Any]:
    return {
        "name": str(table.name),
        "table_type": table.table_type,
        "comment": table.comment,
        "last_altered": table.last_altered.isoformat() if table.last_altered else None,
        "primary_key": list(table.primary_key),
        "columns": [dataclasses.asdict(column) for column in table.columns],
    }


class _Malformed(ValueError):
    pass


def _catalog_from_json(data: Mapping[str, Any]) -> DiscoveredCatalog:
    tables = [_table_from_json(item, f"tables[{i}]") for i, item in enumerate(_get(data, "tables", list))]
    return DiscoveredCatalog(
        tables={str(table.name): table for table in sorted(tables, key=lambda t: str(t.name))},
        catalogs=tuple(_strings(_get(data, "catalogs", list), "catalogs")),
        discovered_at=_instant(_get(data, "discovered_at", str), "discovered_at"),
    )


def _table_from_json(data: object, where: str) -> DiscoveredTable:
    if not isinstance(data, dict):
        raise _Malformed(f"{where} is not an object")
    try:
        name = TableName.parse(_get(data, "name", str, where))
    except ValueError as error:
        raise _Malformed(f"{where}.name: {error}") from None
    altered = _get_optional(data, "last_altered", str, where)
    columns = _get(data, "columns", list, where)
    return DiscoveredTable(
        name=name,
        columns=tuple(_column_from_json(c, f"{where}.columns[{i}]") for i, c in enumerate(columns)),
        primary_key=tuple(_strings(_get(data, "primary_key", list, where), f"{where}.primary_key")),
        comment=_get_optional(data, "comment", str, where),
        last_altered=_instant(altered, f"{where}.last_altered") if altered is not None else None,
        table_type=_get_optional(data, "table_type", str, where),
    )


def _column_from_json(data: object, where: str) -> DiscoveredColumn:
    if not isinstance(data, dict):
        raise _Malformed(f"{where} is not an object")
    return DiscoveredColumn(
        name=_get(data, "name", str, where),
        full_data_type=_get(data, "full_data_type", str, where),
        nullable=_get(data, "nullable", bool, where),
        ordinal=_get(data, "ordinal", int, where),
        comment=_get_optional(data, "comment", str, where),
    )


def _get(data: Mapping[str, Any], key: str, kind: type[T], where: str = "") -> T:
    value = _get_optional(data, key, kind, where)
    if value is None:
        raise _Malformed(f"{_label(key, where)} is not a {kind.__name__}")
    return value


def _get_optional(data: Mapping[str, Any], key: str, kind: type[T], where: str = "") -> T | None:
    if key not in data:
        raise _Malformed(f"{_label(key, where)} is missing")
    value = data[key]
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise _Malformed(f"{_label(key, where)} is not a {kind.__name__}")
    return value


def _label(key: str, where: str) -> str:
    return f"{where}.{key}" if where else key


def _strings(values: list[Any], where: str) -> list[str]:
    if not all(isinstance(value, str) for value in values):
        raise _Malformed(f"{where} holds something other than names")
    return values


def _instant(text: str, where: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _Malformed(f"{where} is not an ISO timestamp") from None
    if value.tzinfo is None:
        raise _Malformed(f"{where} has no time zone")
    return value
