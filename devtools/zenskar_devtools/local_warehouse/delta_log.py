"""What a table's `_delta_log` still holds: its versions, their commit times, and `DESCRIBE HISTORY` rows.

Log cleanup removes the oldest commits, so the earliest version a statement can read is found here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse.errors import WarehouseError

_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT_FILE = re.compile(r"^(\d{20})\.checkpoint\b")


@dataclass(frozen=True)
class LogFiles:
    """Which commits and checkpoints `_delta_log` still holds: log cleanup removes the oldest ones."""

    commits: frozenset[int]
    checkpoints: frozenset[int]

    @classmethod
    def scan(cls, table_folder: Path) -> LogFiles:
        commits, checkpoints = set(), set()
        for entry in (table_folder / "_delta_log").iterdir():
            if match := _COMMIT_FILE.match(entry.name):
                commits.add(int(match.group(1)))
            elif match := _CHECKPOINT_FILE.match(entry.name):
                checkpoints.add(int(match.group(1)))
        return cls(frozenset(commits), frozenset(checkpoints))

    def earliest_commit(self, latest: int) -> int:
        """The oldest version whose commit, and every later one, is still in the log."""
        version = latest
        while version - 1 in self.commits:
            version -= 1
        return version

    def earliest_version(self, latest: int) -> int:
        """The oldest version a snapshot can be rebuilt for: from version 0 or from a checkpoint."""
        first_commit = self.earliest_commit(latest)
        if first_commit == 0:
            return 0
        usable = [c for c in self.checkpoints if first_commit - 1 <= c <= latest]
        return min(usable, default=first_commit)


def commit_times(table: DeltaTable, earliest: int) -> list[tuple[int, datetime]]:
    """(version, commit time) of every available commit, oldest first."""
    commits = [(int(c["version"]), commit_time(c)) for c in table.history()]
    return sorted((version, at) for version, at in commits if version >= earliest)


def version_not_found(version: int, earliest: int, latest: int) -> WarehouseError:
    return WarehouseError(
        "DELTA_VERSION_NOT_FOUND",
        f"Cannot time travel Delta table to version {version}. Available versions: [{earliest}, {latest}].",
        "22003",
    )


def first_at_or_after(times: list[tuple[int, datetime]], at: datetime) -> int:
    """The first version committed at or after `at` (a change feed's start)."""
    if at > times[-1][1]:
        raise after_latest_commit(at, times[-1][1])
    return next(version for version, time in times if time >= at)


def after_latest_commit(at: datetime, last_commit: datetime) -> WarehouseError:
    return WarehouseError(
        "DELTA_TIMESTAMP_GREATER_THAN_COMMIT",
        f"The provided timestamp ({_show(at)}) is after the latest version available to this table "
        f"({_show(last_commit)}). Please use a timestamp before or at {_show(last_commit)}.",
        "42816",
    )


def last_at_or_before(times: list[tuple[int, datetime]], at: datetime) -> int:
    """The version current at `at` (`TIMESTAMP AS OF`, a change feed's end)."""
    first_time = times[0][1]
    if at < first_time:
        raise WarehouseError(
            "DELTA_TIMESTAMP_EARLIER_THAN_COMMIT_RETENTION",
            f"The provided timestamp ({_show(at)}) is before the earliest version available to this table "
            f"({_show(first_time)}). Please use a timestamp after {_show(first_time)}.",
            "42816",
        )
    return max(version for version, time in times if time <= at)


def any_timestamp(*bounds: int | datetime | None) -> bool:
    return any(isinstance(bound, datetime) for bound in bounds)


def utc(at: datetime) -> datetime:
    """Databricks reads a timestamp without a zone in the session zone, which is UTC here."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _show(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def commit_time(commit: dict[str, Any]) -> datetime:
    return from_millis(int(commit["timestamp"]))


# -- DESCRIBE HISTORY --------------------------------------------------------------------------------------

_STRING_MAP = pa.map_(pa.string(), pa.string())
HISTORY_SCHEMA = pa.schema(
    [
        pa.field("version", pa.int64()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("userId", pa.string()),
        pa.field("userName", pa.string()),
        pa.field("operation", pa.string()),
        pa.field("operationParameters", _STRING_MAP),
        pa.field(
            "job",
            pa.struct(
                [
                    (key, pa.string())
                    for key in ("jobId", "jobName", "jobRunId", "runId", "jobOwnerId", "triggerType")
                ]
            ),
        ),
        pa.field("notebook", pa.struct([("notebookId", pa.string())])),
        pa.field("clusterId", pa.string()),
        pa.field("readVersion", pa.int64()),
        pa.field("isolationLevel", pa.string()),
        pa.field("isBlindAppend", pa.bool_()),
        pa.field("operationMetrics", _STRING_MAP),
        pa.field("userMetadata", pa.string()),
        pa.field("engineInfo", pa.string()),
    ]
)

# delta-rs names a few operations differently from Databricks.
_OPERATION_NAMES = {"ADD COLUMN": "ADD COLUMNS", "UPDATE FIELD METADATA": "CHANGE COLUMN"}
# Databricks' WRITE metrics are numFiles/numOutputRows; the others are delta-rs' names in camelCase.
_WRITE_METRICS = {"num_added_files": "numFiles", "num_added_rows": "numOutputRows"}


def history_row(commit: dict[str, Any]) -> dict[str, Any]:
    operation = str(commit.get("operation", ""))
    parameters = {key: _as_text(value) for key, value in (commit.get("operationParameters") or {}).items()}
    renames = _WRITE_METRICS if operation == "WRITE" else {}
    metrics = {
        renames.get(key, _camel_case(key)): _as_text(value)
        for key, value in (commit.get("operationMetrics") or {}).items()
    }
    blind_append = commit.get("isBlindAppend")
    if blind_append is None:
        blind_append = operation == "WRITE" and parameters.get("mode") == "Append"
    return {
        "version": int(commit["version"]),
        "timestamp": commit_time(commit),
        "userId": commit.get("userId"),
        "userName": commit.get("userName"),
        "operation": _OPERATION_NAMES.get(operation, operation),
        "operationParameters": list(parameters.items()),
        "job": None,
        "notebook": None,
        "clusterId": commit.get("clusterId"),
        "readVersion": commit.get("readVersion"),
        "isolationLevel": commit.get("isolationLevel"),
        "isBlindAppend": bool(blind_append),
        "operationMetrics": list(metrics.items()),
        "userMetadata": commit.get("userMetadata"),
        "engineInfo": commit.get("engineInfo"),
    }


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _camel_case(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)
