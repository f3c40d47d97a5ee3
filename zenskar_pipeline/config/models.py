"""The streams file as typed, immutable models: what to copy, how, and where each copy lands.

Everything here is plain data; `parse.py` builds it from YAML and `resolve.py` turns it into one
`ResolvedStream` per source table.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

SOURCE_NAMESPACE = "${SOURCE_NAMESPACE}"
IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")


class SyncMode(StrEnum):
    """The names a streams file may give `sync_mode`; what each does is its strategy's (`sync/modes/`)."""

    FULL_REFRESH = "full_refresh"
    INCREMENTAL_APPEND = "incremental_append"
    INCREMENTAL_APPEND_DEDUPED = "incremental_append_deduped"
    HISTORY = "history"


class Granularity(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"

    @property
    def key_format(self) -> str:
        """Dagster's partition key format for this granularity (`fmt` of its partitions definition)."""
        return "%Y-%m-%d-%H:%M" if self is Granularity.HOURLY else "%Y-%m-%d"


class Deletes(StrEnum):
    HARD = "hard"
    SOFT = "soft"  # the row stays, with _zenskar_deleted = true


class OnMissingHistory(StrEnum):
    ERROR = "error"
    RESNAPSHOT = "resnapshot"


class NamespaceKind(StrEnum):
    SOURCE = "source"  # <uri>/<catalog>/<schema>/
    DESTINATION = "destination"  # <uri>/<default_schema>/
    CUSTOM = "custom"  # <uri>/<pattern with ${SOURCE_NAMESPACE} = <catalog>_<schema>>/


@dataclass(frozen=True)
class TableName:
    """A Unity Catalog table `catalog.schema.table`: each part letters, digits, underscores; lower-case."""

    catalog: str
    schema: str
    table: str

    def __post_init__(self) -> None:
        for part in (self.catalog, self.schema, self.table):
            if not IDENTIFIER.fullmatch(part) or part != part.lower():
                raise ValueError(f"{part!r} is not a lower-case identifier (letters, digits, underscore)")

    @classmethod
    def parse(cls, text: str) -> TableName:
        """`main.billing.usage_events` -> TableName; ValueError saying what is wrong otherwise."""
        parts = text.split(".")
        if len(parts) != 3:
            raise ValueError(f"{text!r} is not catalog.schema.table ({len(parts)} part(s))")
        for part in parts:
            if not IDENTIFIER.fullmatch(part):
                raise ValueError(
                    f"{text!r} is not a table name: {part!r} has characters other than letters, digits "
                    "and underscore"
                )
        catalog, schema, table = (part.lower() for part in parts)
        return cls(catalog, schema, table)

    @property
    def parts(self) -> tuple[str, str, str]:
        return (self.catalog, self.schema, self.table)

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"


@dataclass(frozen=True)
class Namespace:
    """Which folder under the destination uri a table's copy lands in."""

    kind: NamespaceKind = NamespaceKind.SOURCE
    pattern: str | None = None  # only for CUSTOM, e.g. "raw_${SOURCE_NAMESPACE}"

    def path_for(self, table: TableName, default_schema: str | None) -> str:
        """The namespace folder, `/`-separated, for one source table."""
        if self.kind is NamespaceKind.SOURCE:
            return f"{table.catalog}/{table.schema}"
        if self.kind is NamespaceKind.DESTINATION:
            if default_schema is None:
                raise ValueError("namespace: destination needs destination.default_schema")
            return default_schema
        assert self.pattern is not None
        return self.pattern.replace(SOURCE_NAMESPACE, f"{table.catalog}_{table.schema}")

    def __str__(self) -> str:
        return self.pattern if self.pattern is not None else self.kind.value


@dataclass(frozen=True)
class DestinationConfig:
    """Where copies land: one Delta table per stream under `uri` (a local folder or an object store url)."""

    uri: str  # a local folder made absolute, or a url (s3://, abfss://, gs://) without a trailing /
    namespace: Namespace = field(default_factory=Namespace)
    default_schema: str | None = None
    prefix: str = ""

    def namespace_for(self, table: TableName) -> str:
        return self.namespace.path_for(table, self.default_schema)

    def table_name_for(self, table: TableName) -> str:
        return f"{self.prefix}{table.table}"

    def table_uri(self, table: TableName) -> str:
        """The copy's Delta table: `<uri>/<namespace>/<prefix><table>`."""
        return f"{self.uri}/{self.namespace_for(table)}/{self.table_name_for(table)}"


@dataclass(frozen=True)
class ColumnSelection:
    """Which source columns a copy holds. Excluded columns are never selected: they never leave Databricks."""

    include: tuple[str, ...] | None = None  # None: every column not excluded
    exclude: tuple[str, ...] = ()

    def select(self, source_columns: Sequence[str]) -> list[str]:
        """The selected columns in source order; names compare case-insensitively, as in Unity Catalog."""
        excluded = {name.casefold() for name in self.exclude}
        included = None if self.include is None else {name.casefold() for name in self.include}
        return [
            name
            for name in source_columns
            if name.casefold() not in excluded and (included is None or name.casefold() in included)
        ]

    def keeps(self, column: str) -> bool:
        return bool(self.select([column]))


@dataclass(frozen=True)
class PartitionSpec:
    """Time-window partitions, keyed as Dagster keys them (hourly `2026-01-01-13:00`, else `2026-01-01`)."""

    field: str | None  # None: the stream's cursor_field (always filled in on a ResolvedStream)
    granularity: Granularity
    start: dt.datetime  # naive wall-clock time in `timezone`; opens a window of `granularity`
    timezone: str = "UTC"
    include_current: bool = True  # the window still in progress is a partition too (Dagster end_offset=1)

    @property
    def start_key(self) -> str:
        """`start` as Dagster's partition key, ready for `start_date=` of a partitions definition."""
        return self.start.strftime(self.granularity.key_format)

    @property
    def end_offset(self) -> int:
        return 1 if self.include_current else 0


@dataclass(frozen=True)
class DeliverSpec:
    """How a stream's landed rows become Zenskar usage events (`deliver:`): which usage event (`api_slug`),
    and which columns of the copy fill each event's `customer_id`, `timestamp` and `data` fields."""

    api_slug: str
    customer_id: str
    timestamp: str
    data: tuple[tuple[str, str], ...] = ()  # (event field, column of the copy), in the file's order
    settle: dt.timedelta = dt.timedelta(0)  # a window is delivered once it has been closed this long

    @property
    def columns(self) -> dict[str, str]:
        """Every column the events read, by the key that names it (`deliver.data.<field>` for data)."""
        named = {"deliver.customer_id": self.customer_id, "deliver.timestamp": self.timestamp}
        named.update({f"deliver.data.{field}": column for field, column in self.data})
        return named


@dataclass(frozen=True)
class StreamSettings:
    """Every per-stream key of the streams file, with defaults merged in."""

    sync_mode: SyncMode = SyncMode.INCREMENTAL_APPEND_DEDUPED
    cursor_field: str | None = None
    cursor_lag: dt.timedelta = dt.timedelta(0)
    primary_key: tuple[str, ...] | None = None  # None: the table's Unity Catalog primary key, if any
    change_feed: bool = False
    on_missing_history: OnMissingHistory = OnMissingHistory.ERROR
    deletes: Deletes = Deletes.HARD
    columns: ColumnSelection = field(default_factory=ColumnSelection)
    partitions: PartitionSpec | None = None  # None: one unpartitioned asset
    schedule: str | None = None  # a cron string Dagster accepts
    lookback: int = 0
    freshness: dt.timedelta | None = None  # late in Dagster when the copy is older than this; None: no policy
    deliver: DeliverSpec | None = None  # None: the copy's rows are not sent to Zenskar

    def referenced_columns(self) -> dict[str, tuple[str, ...]]:
        """Columns this stream names, by key, for checks against the source's columns."""
        named: dict[str, tuple[str, ...]] = {}
        if self.cursor_field is not None:
            named["cursor_field"] = (self.cursor_field,)
        if self.primary_key:
            named["primary_key"] = self.primary_key
        if self.partitions is not None and self.partitions.field is not None:
            named["partitions.field"] = (self.partitions.field,)
        if self.columns.include is not None:
            named["columns.include"] = self.columns.include
        if self.columns.exclude:
            named["columns.exclude"] = self.columns.exclude
        if self.deliver is not None:
            named.update({key: (column,) for key, column in self.deliver.columns.items()})
        return named


@dataclass(frozen=True)
class StreamConfig:
    """One entry of `streams:` (a table, or a pattern such as `main.billing.*`), with defaults merged in."""

    table: str  # lower-case; `*` matches any run of letters, digits and underscores within one part
    settings: StreamSettings
    index: int  # position in `streams:`, for messages
    from_defaults: frozenset[str] = frozenset()  # keys whose value came from `defaults:`

    @property
    def is_pattern(self) -> bool:
        return "*" in self.table

    def matches(self, table: TableName) -> bool:
        parts = self.table.split(".")
        return all(part_matches(part, actual) for part, actual in zip(parts, table.parts, strict=True))


def part_matches(pattern: str, name: str) -> bool:
    """Whether one part of a table pattern (`usage_*`) matches one part of a name; `*` matches any run of
    letters, digits and underscores, nothing else."""
    return re.fullmatch(re.escape(pattern).replace(r"\*", "[A-Za-z0-9_]*"), name) is not None


@dataclass(frozen=True)
class PipelineConfig:
    """The whole streams file, validated."""

    path: Path | None  # the streams file; None when built from a mapping in memory
    destination: DestinationConfig
    defaults: Mapping[str, object]  # the parsed `defaults:` values, already merged into every stream
    streams: tuple[StreamConfig, ...]
    state_path: Path  # the discovery cache, `.zenskar-pipeline/discovery.json` beside the streams file


@dataclass(frozen=True)
class ResolvedStream:
    """One source table to copy: its settings and where its copy lands."""

    table: TableName
    settings: StreamSettings
    destination_uri: str  # the Delta table, `<uri>/<namespace>/<prefix><table>`
    destination_namespace: str
    destination_table: str
    pattern: str | None = None  # the pattern entry that selected it; None for an explicit entry

    @property
    def name(self) -> str:
        """The stream's name: its source table, `catalog.schema.table`."""
        return str(self.table)
