"""From the streams file's YAML data to a `PipelineConfig`: every key checked, every problem collected.

Values are parsed once where they are written (a bad default is reported once, under `defaults`), then the
defaults are merged into each stream entry key by key: a key set on the stream replaces the default whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from zenskar_pipeline.config import values
from zenskar_pipeline.config.errors import ConfigError, Problem, suggest
from zenskar_pipeline.config.models import (
    ColumnSelection,
    Deletes,
    DeliverSpec,
    DestinationConfig,
    Granularity,
    Namespace,
    NamespaceKind,
    OnMissingHistory,
    PartitionSpec,
    PipelineConfig,
    StreamConfig,
    StreamSettings,
    SyncMode,
)
from zenskar_pipeline.config.rules import ModeRules

T = TypeVar("T")

DESTINATION_ENV = "ZENSKAR_PIPELINE_DESTINATION"
STATE_ENV = "ZENSKAR_PIPELINE_STATE"
STATE_FILE = Path(".zenskar-pipeline") / "discovery.json"

TOP_KEYS = ("destination", "defaults", "streams")
DESTINATION_KEYS = ("uri", "namespace", "default_schema", "prefix")
SETTING_KEYS = tuple(field.name for field in dataclasses.fields(StreamSettings))
STREAM_KEYS = ("table", *SETTING_KEYS)
PARTITION_KEYS = ("field", "granularity", "start", "timezone", "include_current")
COLUMN_KEYS = ("include", "exclude")
DELIVER_KEYS = ("api_slug", "customer_id", "timestamp", "data", "settle")
# null: unset, also over a default
NULLABLE = ("cursor_field", "primary_key", "schedule", "partitions", "freshness", "deliver")


class _Problems:
    """Collects problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.found: list[Problem] = []

    def add(self, where: str, key: str, problem: str, fix: str) -> None:
        self.found.append(Problem(where, key, problem, fix))

    def parse(self, where: str, key: str, parser: Callable[[Any], T], raw: object) -> T | None:
        try:
            return parser(raw)
        except values.Invalid as invalid:
            self.add(where, key, invalid.problem, invalid.fix)
            return None

    def mapping(self, where: str, key: str, raw: object, valid: tuple[str, ...]) -> Mapping[str, Any] | None:
        """`raw` as a mapping whose keys are all in `valid`; unknown keys are reported, with the nearest."""
        if not isinstance(raw, Mapping):
            problem = f"expected a mapping of {', '.join(valid)}, got {raw!r}"
            self.add(where, key or "value", problem, "write key: value lines")
            return None
        for name in raw:
            if name not in valid:
                full = f"{key}.{name}" if key else str(name)
                nearest = suggest(str(name), valid)
                fix = f"did you mean {nearest!r}?" if nearest else f"valid keys: {', '.join(valid)}"
                self.add(where, full, "unknown key", fix)
        return raw


def parse_config(
    data: object, *, rules: ModeRules, path: Path | None = None, env: Mapping[str, str] = os.environ
) -> PipelineConfig:
    """Validate the streams file's data (as YAML loads it), each stream's settings also by its sync mode's
    `rules`; `ConfigError` lists every problem found."""
    problems = _Problems()
    base_dir = path.parent if path is not None else Path.cwd()
    top = problems.mapping("top level", "", data, TOP_KEYS) or {}
    destination = _destination(problems, top.get("destination"), base_dir, env)
    defaults: dict[str, Any] = {}
    if top.get("defaults") is not None:
        raw_defaults = problems.mapping("defaults", "", top["defaults"], STREAM_KEYS) or {}
        if "table" in raw_defaults:
            problems.add("defaults", "table", "a table is chosen per stream", "move it into a streams entry")
        defaults = _settings(problems, "defaults", raw_defaults)
    streams = _streams(problems, top.get("streams"), defaults, rules)
    if problems.found:
        raise ConfigError(problems.found, path)
    assert destination is not None
    state = env.get(STATE_ENV)
    state_path = Path(state).expanduser().resolve() if state else (base_dir / STATE_FILE).resolve()
    return PipelineConfig(path, destination, MappingProxyType(defaults), tuple(streams), state_path)


def _destination(
    problems: _Problems, raw: object, base_dir: Path, env: Mapping[str, str]
) -> DestinationConfig | None:
    where = "destination"
    section: Mapping[str, Any] = {}
    if raw is not None:
        section = problems.mapping(where, "", raw, DESTINATION_KEYS) or {}
    if env.get(DESTINATION_ENV):
        uri = problems.parse(
            "environment",
            DESTINATION_ENV,
            lambda v: values.destination_uri(v, Path.cwd()),
            env[DESTINATION_ENV],
        )
    elif "uri" in section:
        uri = problems.parse(where, "uri", lambda v: values.destination_uri(v, base_dir), section["uri"])
    else:
        problems.add(
            where, "uri", "missing", f"set destination.uri (such as data/destination) or {DESTINATION_ENV}"
        )
        uri = None
    namespace = Namespace()
    if section.get("namespace") is not None:
        namespace = problems.parse(where, "namespace", values.namespace, section["namespace"]) or namespace
    default_schema = None
    if section.get("default_schema") is not None:
        default_schema = problems.parse(where, "default_schema", values.identifier, section["default_schema"])
    elif namespace.kind is NamespaceKind.DESTINATION:
        problems.add(
            where,
            "default_schema",
            "missing; namespace: destination lands every table in it",
            "set destination.default_schema, such as zenskar",
        )
    prefix = ""
    if section.get("prefix") is not None:
        prefix = (
            problems.parse(where, "prefix", lambda v: values.identifier(v, empty_ok=True), section["prefix"])
            or ""
        )
    if uri is None:
        return None
    return DestinationConfig(uri, namespace, default_schema, prefix)


def _settings(problems: _Problems, where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The stream keys present in `raw`, parsed; keys that fail to parse are reported and left out."""
    parsers: dict[str, Callable[[Any], object]] = {
        "sync_mode": lambda v: values.enum_value(v, SyncMode, "a sync mode"),
        "cursor_field": values.column,
        "cursor_lag": values.duration,
        "primary_key": lambda v: values.columns(v, allow_one=True),
        "change_feed": values.boolean,
        "on_missing_history": lambda v: values.enum_value(
            v, OnMissingHistory, "an on_missing_history choice"
        ),
        "deletes": lambda v: values.enum_value(v, Deletes, "a deletes choice"),
        "schedule": values.cron,
        "lookback": values.lookback,
        "freshness": values.freshness,
    }
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        if key in NULLABLE and value is None:
            parsed[key] = None
        elif key in parsers:
            result = problems.parse(where, key, parsers[key], value)
            if result is not None:
                parsed[key] = result
        elif key == "columns":
            if (columns := _columns(problems, where, value)) is not None:
                parsed[key] = columns
        elif key == "partitions" and (partitions := _partitions(problems, where, value)) is not None:
            parsed[key] = partitions
        elif key == "deliver" and (deliver := _deliver(problems, where, value)) is not None:
            parsed[key] = deliver
    return parsed


def _deliver(problems: _Problems, where: str, raw: object) -> DeliverSpec | None:
    """The `deliver:` block: which usage event, and the copy's columns for its fields (checked against the
    source's columns and types later, in `zenskar_pipeline.delivery.settings`)."""
    section = problems.mapping(where, "deliver", raw, DELIVER_KEYS)
    if section is None:
        return None
    found = len(problems.found)
    needed = {
        "api_slug": ("deliver.api_slug", "set deliver.api_slug to the usage event's slug in Zenskar"),
        "customer_id": ("deliver.customer_id", "set deliver.customer_id to the column holding the customer"),
        "timestamp": (
            "deliver.timestamp",
            "set deliver.timestamp to the TIMESTAMP or DATE column of the event",
        ),
    }
    # A misspelt key was reported as unknown, with the key it likely means: not also as missing.
    meant = {suggest(str(name), DELIVER_KEYS) for name in section if name not in DELIVER_KEYS}
    for key, (full, fix) in needed.items():
        if section.get(key) is None and key not in meant:
            problems.add(where, full, "missing", fix)
    slug = customer = timestamp = None
    if section.get("api_slug") is not None:
        slug = problems.parse(where, "deliver.api_slug", values.api_slug, section["api_slug"])
    if section.get("customer_id") is not None:
        customer = problems.parse(where, "deliver.customer_id", values.column, section["customer_id"])
    if section.get("timestamp") is not None:
        timestamp = problems.parse(where, "deliver.timestamp", values.column, section["timestamp"])
    data: list[tuple[str, str]] = []
    raw_data = section.get("data")
    if raw_data is not None and not isinstance(raw_data, Mapping):
        problems.add(
            where,
            "deliver.data",
            f"expected a mapping of event field: column, got {raw_data!r}",
            "write it as {quantity: quantity_column, metric: metric_column}",
        )
    elif raw_data is not None:
        for name, column in raw_data.items():
            field = problems.parse(where, "deliver.data", values.event_field, name)
            if field in ("customer_id", "timestamp"):
                problems.add(
                    where,
                    f"deliver.data.{field}",
                    "names a field every event has outside data",
                    f"set deliver.{field} instead, or rename the data field",
                )
                continue
            value = problems.parse(where, f"deliver.data.{name}", values.column, column)
            if field is not None and value is not None:
                data.append((field, value))
    settle = dt.timedelta(0)
    if section.get("settle") is not None:
        settle = problems.parse(where, "deliver.settle", values.duration, section["settle"]) or settle
    if len(problems.found) > found or slug is None or customer is None or timestamp is None:
        return None
    return DeliverSpec(slug, customer, timestamp, tuple(data), settle)


def _columns(problems: _Problems, where: str, raw: object) -> ColumnSelection | None:
    if raw is None:
        return ColumnSelection()
    section = problems.mapping(where, "columns", raw, COLUMN_KEYS)
    if section is None:
        return None
    if "include" in section and "exclude" in section:
        problems.add(
            where,
            "columns",
            "include and exclude are both set",
            "keep one: include lists the columns to copy, exclude the ones to leave out",
        )
        return None
    if "include" in section:
        include = problems.parse(where, "columns.include", values.columns, section["include"])
        return None if include is None else ColumnSelection(include=include)
    if "exclude" in section:
        exclude = problems.parse(where, "columns.exclude", values.columns, section["exclude"])
        return None if exclude is None else ColumnSelection(exclude=exclude)
    if not section:
        problems.add(
            where, "columns", "empty", "write {include: [...]} or {exclude: [...]}, or remove columns"
        )
    return None


def _partitions(problems: _Problems, where: str, raw: object) -> PartitionSpec | None:
    section = problems.mapping(where, "partitions", raw, PARTITION_KEYS)
    if section is None:
        return None
    found = len(problems.found)
    field = None
    if section.get("field") is not None:
        field = problems.parse(where, "partitions.field", values.column, section["field"])
    granularity = None
    if "granularity" not in section:
        problems.add(where, "partitions.granularity", "missing", "set hourly | daily | weekly | monthly")
    else:
        granularity = problems.parse(
            where,
            "partitions.granularity",
            partial(values.enum_value, kind=Granularity, noun="a granularity"),
            section["granularity"],
        )
    start = None
    if "start" not in section:
        problems.add(where, "partitions.start", "missing", "set the first window, such as '2026-01-01'")
    elif granularity is not None:
        start = problems.parse(
            where,
            "partitions.start",
            partial(values.partition_start, granularity=granularity),
            section["start"],
        )
    timezone = problems.parse(where, "partitions.timezone", values.timezone, section.get("timezone", "UTC"))
    include_current = problems.parse(
        where, "partitions.include_current", values.boolean, section.get("include_current", True)
    )
    if len(problems.found) > found or granularity is None or start is None:
        return None
    assert timezone is not None and include_current is not None
    return PartitionSpec(field, granularity, start, timezone, include_current)


def _streams(
    problems: _Problems, raw: object, defaults: Mapping[str, Any], rules: ModeRules
) -> list[StreamConfig]:
    if not isinstance(raw, list) or not raw:
        problems.add(
            "top level",
            "streams",
            "no streams listed" if not raw else f"expected a list, got {raw!r}",
            "list the tables to copy, such as `streams: [{table: main.billing.usage_events}]`",
        )
        return []
    streams: list[StreamConfig] = []
    first_entry: dict[str, int] = {}
    for index, entry in enumerate(raw):
        where = f"streams[{index}]"
        table = None
        if isinstance(entry, Mapping) and "table" not in entry:
            problems.add(
                where, "table", "missing", "set table: catalog.schema.table, such as main.billing.events"
            )
        elif isinstance(entry, Mapping):
            table = problems.parse(where, "table", values.table_selector, entry["table"])
        where = f"stream {table}" if table is not None else where
        section = problems.mapping(where, "", entry, STREAM_KEYS)
        if section is None:
            continue
        if table is None:
            _settings(problems, where, section)  # still report what else is wrong
            continue
        if table in first_entry:
            problems.add(
                where,
                "table",
                f"listed twice (streams[{first_entry[table]}] and streams[{index}])",
                "keep one entry per table",
            )
            continue
        first_entry[table] = index
        own = _settings(problems, where, section)
        merged = {**defaults, **own}
        settings = StreamSettings(**merged)
        if settings.partitions is not None and settings.partitions.field is None and settings.cursor_field:
            settings = dataclasses.replace(
                settings, partitions=dataclasses.replace(settings.partitions, field=settings.cursor_field)
            )
        stream = StreamConfig(table, settings, index, frozenset(defaults.keys() - own.keys()))
        problems.found += rules.settings_problems(where, stream, set(section))
        _check_stream(problems, where, stream, set(section))
        streams.append(stream)
    return streams


def _check_stream(problems: _Problems, where: str, stream: StreamConfig, written: set[str]) -> None:
    """Rules across keys that need nothing from the source."""
    settings = stream.settings

    def origin(key: str) -> str:
        return f" ({key} comes from defaults)" if key in stream.from_defaults else ""

    if "lookback" in written and settings.lookback and settings.partitions is None:
        problems.add(
            where,
            "lookback",
            "counts earlier partitions, and this stream is unpartitioned",
            "set partitions, or remove lookback",
        )
    needed: dict[str, tuple[str, ...]] = {}
    needed["cursor_field"] = (settings.cursor_field,) if settings.cursor_field else ()
    needed["primary_key"] = settings.primary_key or ()
    if settings.deliver is not None:
        needed.update({key: (column,) for key, column in settings.deliver.columns.items()})
    if settings.partitions is not None and settings.partitions.field:
        needed["partitions.field"] = (settings.partitions.field,)
    for key, names in needed.items():
        for name in names:
            if settings.columns.keeps(name):
                continue
            if settings.columns.include is not None:
                problems.add(
                    where,
                    "columns.include",
                    f"leaves out {name!r}, the stream's {key}{origin('columns')}",
                    f"add {name!r} to columns.include",
                )
            else:
                problems.add(
                    where,
                    "columns.exclude",
                    f"excludes {name!r}, the stream's {key}{origin('columns')}",
                    f"remove {name!r} from columns.exclude, or choose another {key}",
                )
