"""`table_changes(...)`: a table's change data feed, checked the way Databricks checks it, then streamed."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse.delta_log import (
    LogFiles,
    any_timestamp,
    commit_times,
    first_at_or_after,
    last_at_or_before,
    utc,
    version_not_found,
)
from zenskar_devtools.local_warehouse.delta_types import connector_schema
from zenskar_devtools.local_warehouse.errors import WarehouseError
from zenskar_devtools.local_warehouse.layout import CHANGE_DATA_FEED_PROPERTY


def read_changes(
    table: DeltaTable, folder: Path, start: int | datetime, end: int | datetime | None = None
) -> pa.RecordBatchReader:
    """Changes from `start` to `end` (versions or timestamps, inclusive; None: the latest version)."""
    latest = table.version()
    earliest = LogFiles.scan(folder).earliest_commit(latest)
    times = commit_times(table, earliest) if any_timestamp(start, end) else []

    if isinstance(start, datetime):
        start_version = first_at_or_after(times, utc(start))
    else:
        start_version = start
        if start_version > latest:
            raise WarehouseError(
                "DELTA_CDC_START_VERSION_AFTER_LATEST",
                f"Start version {start_version} for change data feed exceeds the latest table version "
                f"{latest}.",
                "22003",
            )
    if end is None:
        end_version = latest
    elif isinstance(end, datetime):
        end_version = last_at_or_before(times, utc(end))
    else:
        end_version = min(end, latest)
        if end < start_version:
            raise WarehouseError(
                "DELTA_INVALID_CDC_RANGE",
                f"CDC range from start {start_version} to end {end} was invalid. End cannot be before start.",
                "22003",
            )
    if start_version < earliest:
        raise version_not_found(start_version, earliest, latest)
    if start_version > end_version:
        # Only timestamps get here: both fall between the same two commits, so nothing changed.
        return _empty_changes(table)

    _check_change_data(folder, start_version, end_version)
    raw = pa.RecordBatchReader.from_stream(
        table.load_cdf(starting_version=start_version, ending_version=end_version)
    )
    schema = connector_schema(raw.schema)
    return pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in raw))


def _check_change_data(folder: Path, start: int, end: int) -> None:
    """Fail like Databricks before streaming: CDF off for a version in range, or its files vacuumed."""
    first = DeltaTable(str(folder), version=start).metadata().configuration
    if not _cdf_enabled(first):
        raise _missing_change_data(start, start, end)
    for version in range(start, end + 1):
        actions = _commit_actions(folder, version)
        for action in actions:
            metadata = action.get("metaData")
            if (
                metadata is not None
                and version > start
                and not _cdf_enabled(metadata.get("configuration", {}))
            ):
                raise _missing_change_data(version, start, end)
        for path in _change_files(actions):
            file = _data_file(folder, path)
            if file is not None and not file.exists():
                raise WarehouseError(
                    "DELTA_CHANGE_DATA_FILE_NOT_FOUND",
                    f"File {file} referenced in the transaction log cannot be found. This can occur "
                    "when data has been manually deleted from the file system rather than using the table "
                    "`DELETE` statement. This request appears to be targeting Change Data Feed, if that is "
                    "the case, this error can occur when the change data file is out of the retention period "
                    "and has been deleted by the `VACUUM` statement.",
                    "42K03",
                )


def _commit_actions(folder: Path, version: int) -> list[dict[str, Any]]:
    commit = folder / "_delta_log" / f"{version:020d}.json"
    with commit.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _change_files(actions: list[dict[str, Any]]) -> list[str]:
    """The files a change feed reads for one commit: its `cdc` files, else the files it added or removed."""
    cdc = [a["cdc"]["path"] for a in actions if "cdc" in a]
    if cdc:
        return cdc
    return [
        a[kind]["path"]
        for a in actions
        for kind in ("add", "remove")
        if kind in a and a[kind].get("dataChange", True)
    ]


def _data_file(folder: Path, path: str) -> Path | None:
    """A log path as a local file; None for remote URIs, which this local tool cannot check."""
    if path.startswith("file:"):
        return Path(unquote(urlparse(path).path))
    if "://" in path:
        return None
    return folder / unquote(path)


def _empty_changes(table: DeltaTable) -> pa.RecordBatchReader:
    extra = [
        pa.field("_change_type", pa.string()),
        pa.field("_commit_version", pa.int64()),
        pa.field("_commit_timestamp", pa.timestamp("us", tz="UTC")),
    ]
    base = connector_schema(table.to_pyarrow_dataset().schema)
    schema = pa.schema(list(base) + extra)
    return pa.RecordBatchReader.from_batches(schema, iter([]))


def _cdf_enabled(configuration: dict[str, str]) -> bool:
    return str(configuration.get(CHANGE_DATA_FEED_PROPERTY, "false")).lower() == "true"


def _missing_change_data(version: int, start: int, end: int) -> WarehouseError:
    return WarehouseError(
        "DELTA_MISSING_CHANGE_DATA",
        f"Error getting change data for range [{start} , {end}] as change data was not recorded for version "
        f"[{version}]. If you've enabled change data feed on this table, use `DESCRIBE HISTORY` to see when "
        "it was first enabled. Otherwise, to start recording change data, use `ALTER TABLE table_name SET "
        f"TBLPROPERTIES ({CHANGE_DATA_FEED_PROPERTY}=true)`.",
        "KD002",
    )
