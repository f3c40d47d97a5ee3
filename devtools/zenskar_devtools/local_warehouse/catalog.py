"""The warehouse's catalog: the Delta tables under the root folder, by Unity Catalog name, read fresh.

Tables are read anew by every statement, so a table another process writes is seen by the next one; only a
table's description (`table_info`: schema, properties, last_altered) is kept, for as long as its newest log
entry is the same, so that `information_schema` over thousands of tables does not replay every log. Errors
carry the error class and SQLSTATE Databricks uses for the same mistake.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, Field

from zenskar_devtools.local_warehouse import information_schema as views
from zenskar_devtools.local_warehouse.change_feed import read_changes
from zenskar_devtools.local_warehouse.delta_log import (
    HISTORY_SCHEMA,
    LogFiles,
    after_latest_commit,
    commit_time,
    commit_times,
    from_millis,
    history_row,
    last_at_or_before,
    utc,
    version_not_found,
)
from zenskar_devtools.local_warehouse.delta_types import databricks_type
from zenskar_devtools.local_warehouse.errors import table_not_found
from zenskar_devtools.local_warehouse.layout import PRIMARY_KEY_PROPERTY, TableName, decode_primary_key

# Unity Catalog stores names lower-case; anything else under the root (hidden folders, odd names) is not ours.
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class TableInfo:
    """What information_schema, DESCRIBE and the metadata calls show about one table (its latest version)."""

    name: TableName
    location: Path
    fields: list[Field]
    comment: str | None
    properties: dict[str, str]
    partition_columns: list[str]
    created: datetime
    last_altered: datetime
    version: int

    @property
    def primary_key(self) -> list[str]:
        return decode_primary_key(self.properties.get(PRIMARY_KEY_PROPERTY))


class Catalog:
    """Unity Catalog names over `<root>/<catalog>/<schema>/<table>/` Delta tables."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._infos: dict[Path, tuple[tuple[str, int], TableInfo]] = {}
        self._infos_lock = threading.Lock()

    # -- listing -------------------------------------------------------------------------------------------

    def catalogs(self) -> list[str]:
        return _child_names(self.root)

    def schemas(self, catalog: str) -> list[str]:
        return _child_names(self.root / catalog) if _NAME.match(catalog) else []

    def tables(self, catalog: str, schema: str) -> list[str]:
        if not (_NAME.match(catalog) and _NAME.match(schema)):
            return []
        folder = self.root / catalog / schema
        return [name for name in _child_names(folder) if (folder / name / "_delta_log").is_dir()]

    def exists(self, name: TableName) -> bool:
        parts = (name.catalog, name.schema, name.table)
        return all(_NAME.match(part) for part in parts) and (name.path(self.root) / "_delta_log").is_dir()

    def resolve(self, parts: Sequence[str], default_catalog: str, default_schema: str) -> TableName:
        """A 1, 2 or 3-part name as written in SQL, completed with the session's catalog and schema."""
        written = "`.`".join(parts)
        if not 1 <= len(parts) <= 3:
            raise table_not_found(written)
        full = [default_catalog, default_schema][: 3 - len(parts)] + list(parts)
        name = TableName(*(part.lower() for part in full))
        if not self.exists(name):
            raise table_not_found(written)
        return name

    # -- reading -------------------------------------------------------------------------------------------

    def latest_version(self, name: TableName) -> int:
        return self._open(name).version()

    def dataset(
        self, name: TableName, version: int | None = None, timestamp: datetime | None = None
    ) -> ds.Dataset:
        """The table (or the version `VERSION AS OF` / `TIMESTAMP AS OF` picks) as a lazily read dataset."""
        table = self._open(name)
        if version is not None or timestamp is not None:
            table.load_as_version(self._version_as_of(name, table, version, timestamp))
        return table.to_pyarrow_dataset()

    def table_info(self, name: TableName) -> TableInfo:
        """What `information_schema` and `DESCRIBE` say of a table; described again when its log moved."""
        path = name.path(self.root)
        newest = _newest_log_entry(path / "_delta_log")
        with self._infos_lock:
            kept = self._infos.get(path)
        if kept is not None and newest is not None and kept[0] == newest:
            return kept[1]
        info = self._describe(name)
        if newest is not None:
            with self._infos_lock:
                self._infos[path] = (newest, info)
        return info

    def _describe(self, name: TableName) -> TableInfo:
        table = self._open(name)
        metadata = table.metadata()
        last_commit = table.history(1)
        last_altered = commit_time(last_commit[0]) if last_commit else from_millis(metadata.created_time)
        return TableInfo(
            name=name,
            location=name.path(self.root),
            fields=list(table.schema().fields),
            comment=metadata.description or None,
            properties=dict(metadata.configuration),
            partition_columns=list(metadata.partition_columns),
            created=from_millis(metadata.created_time) if metadata.created_time else last_altered,
            last_altered=last_altered,
            version=table.version(),
        )

    def all_tables(self, catalog: str | None = None) -> Iterator[TableName]:
        """Every table, in name order; only `catalog`'s when given."""
        for cat in [catalog] if catalog is not None else self.catalogs():
            for schema in self.schemas(cat):
                for table in self.tables(cat, schema):
                    yield TableName(cat, schema, table)

    # -- metadata statements -------------------------------------------------------------------------------

    def information_schema(self, catalog: str, view: str) -> pa.Table:
        """`<catalog>.information_schema.<view>`; the `system` catalog's views span every catalog."""
        return views.information_schema(self, catalog.lower(), view.lower())

    def jdbc_catalogs(self) -> pa.Table:
        """`cursor.catalogs()` (GetCatalogs)."""
        return views.jdbc_catalogs(self)

    def jdbc_schemas(self, catalog: str | None, schema_pattern: str | None) -> pa.Table:
        """`cursor.schemas()` (GetSchemas); patterns use LIKE wildcards, None matches all."""
        return views.jdbc_schemas(self, catalog, schema_pattern)

    def jdbc_tables(
        self,
        catalog: str | None,
        schema_pattern: str | None,
        table_pattern: str | None,
        table_types: list[str] | None = None,
    ) -> pa.Table:
        """`cursor.tables()` (GetTables)."""
        return views.jdbc_tables(self, catalog, schema_pattern, table_pattern, table_types)

    def jdbc_columns(
        self,
        catalog: str | None,
        schema_pattern: str | None,
        table_pattern: str | None,
        column_pattern: str | None,
    ) -> pa.Table:
        """`cursor.columns()` (GetColumns)."""
        return views.jdbc_columns(self, catalog, schema_pattern, table_pattern, column_pattern)

    def describe(self, name: TableName) -> pa.Table:
        """`DESCRIBE TABLE`: one row per column, then the partition columns as Databricks prints them."""
        info = self.table_info(name)
        return pa.Table.from_pylist(_column_rows(info), schema=_DESCRIBE_SCHEMA)

    def describe_extended(self, name: TableName) -> pa.Table:
        """`DESCRIBE TABLE EXTENDED`: `describe` plus the `# Detailed Table Information` block."""
        info = self.table_info(name)
        properties = ",".join(f"{key}={value}" for key, value in sorted(info.properties.items()))
        details = [
            ("", "", ""),
            ("# Detailed Table Information", "", ""),
            ("Catalog", info.name.catalog, ""),
            ("Database", info.name.schema, ""),
            ("Table", info.name.table, ""),
            ("Created Time", info.created.strftime("%a %b %d %H:%M:%S UTC %Y"), ""),
            ("Type", "MANAGED", ""),
            ("Location", info.location.as_uri(), ""),
            ("Provider", "delta", ""),
            ("Owner", views.OWNER, ""),
            ("Comment", info.comment or "", ""),
            ("Table Properties", f"[{properties}]", ""),
        ]
        rows = _column_rows(info) + [dict(zip(_DESCRIBE_SCHEMA.names, row, strict=True)) for row in details]
        return pa.Table.from_pylist(rows, schema=_DESCRIBE_SCHEMA)

    def history(self, name: TableName, limit: int | None = None) -> pa.Table:
        """`DESCRIBE HISTORY [LIMIT n]`: newest version first, in Databricks' columns."""
        commits = sorted(self._open(name).history(limit), key=lambda c: -int(c["version"]))
        # delta-rs can return more than `limit` commits while another process commits: keep the newest.
        kept = commits if limit is None else commits[:limit]
        return pa.Table.from_pylist([history_row(c) for c in kept], schema=HISTORY_SCHEMA)

    def changes(
        self, name: TableName, start: int | datetime, end: int | datetime | None = None
    ) -> pa.RecordBatchReader:
        """`table_changes(table, start[, end])`: versions or timestamps, `end` inclusive, streamed."""
        return read_changes(self._open(name), name.path(self.root), start, end)

    # -- internals -----------------------------------------------------------------------------------------

    def _open(self, name: TableName) -> DeltaTable:
        if not self.exists(name):
            raise table_not_found(str(name))
        return DeltaTable(str(name.path(self.root)))

    def _version_as_of(
        self, name: TableName, table: DeltaTable, version: int | None, timestamp: datetime | None
    ) -> int:
        latest = table.version()
        earliest = LogFiles.scan(name.path(self.root)).earliest_version(latest)
        if version is not None:
            if not earliest <= version <= latest:
                raise version_not_found(version, earliest, latest)
            return version
        assert timestamp is not None
        times, at = commit_times(table, earliest), utc(timestamp)
        if at > times[-1][1]:
            raise after_latest_commit(at, times[-1][1])
        return last_at_or_before(times, at)


def _child_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and _NAME.match(entry.name))


# -- DESCRIBE results ---------------------------------------------------------------------------------------

_DESCRIBE_SCHEMA = pa.schema(
    [pa.field("col_name", pa.string()), pa.field("data_type", pa.string()), pa.field("comment", pa.string())]
)


def _column_rows(info: TableInfo) -> list[dict[str, str | None]]:
    rows: list[dict[str, str | None]] = [
        {"col_name": f.name, "data_type": databricks_type(f.type), "comment": f.metadata.get("comment")}
        for f in info.fields
    ]
    if info.partition_columns:
        by_name = {row["col_name"]: row for row in rows}
        rows.append({"col_name": "# Partition Information", "data_type": "", "comment": ""})
        rows.append({"col_name": "# col_name", "data_type": "data_type", "comment": "comment"})
        rows.extend(dict(by_name[column]) for column in info.partition_columns)
    return rows


def _newest_log_entry(log: Path) -> tuple[str, int] | None:
    """The name and modification time of a Delta log's newest entry (commit or checkpoint); None when the
    folder cannot be listed. A new commit adds an entry, so the pair changes with every version."""
    try:
        entries = [
            (entry.name, entry) for entry in os.scandir(log) if entry.name.endswith((".json", ".parquet"))
        ]
    except OSError:
        return None
    if not entries:
        return None
    name, entry = max(entries, key=lambda item: item[0])
    return name, entry.stat().st_mtime_ns
