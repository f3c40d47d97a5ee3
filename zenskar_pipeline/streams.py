"""The streams file as the pipeline runs it: read and parsed (`config`), each stream's settings checked by its
sync mode (`sync.modes`), and the whole checked against the discovered tables (`state`) before data moves.
Every problem is reported at once, each naming the stream, the key and the fix.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from zenskar_pipeline import config as _config
from zenskar_pipeline.config import ConfigError, PipelineConfig, Problem, ResolvedStream, source_problems
from zenskar_pipeline.databricks.discovery import DiscoveredCatalog, DiscoveredTable
from zenskar_pipeline.delivery.settings import delivery_problems
from zenskar_pipeline.sync.modes import MODE_RULES, strategy_for


def load_config(path: Path | None = None, env: Mapping[str, str] = os.environ) -> PipelineConfig:
    """Read and validate the streams file (`ZENSKAR_PIPELINE_CONFIG`, else ./streams.yaml, when `path` is
    None); `ConfigError` lists every problem found."""
    return _config.load_config(path, env, rules=MODE_RULES)


def parse_config(
    data: object, *, path: Path | None = None, env: Mapping[str, str] = os.environ
) -> PipelineConfig:
    """Validate streams-file data already loaded from YAML (see `load_config`)."""
    return _config.parse_config(data, rules=MODE_RULES, path=path, env=env)


def resolve_streams(
    config: PipelineConfig, available_tables: Iterable[str], *, allow_missing_cursor: bool = False
) -> list[ResolvedStream]:
    """One `ResolvedStream` per selected table (`config.resolve_streams`), a missing cursor reported by the
    modes that read by one unless `allow_missing_cursor` (`discover`, which suggests it)."""
    return _config.resolve_streams(
        config, available_tables, rules=MODE_RULES, allow_missing_cursor=allow_missing_cursor
    )


_PARTITION_TYPES = "TIMESTAMP, TIMESTAMP_NTZ or DATE"


def validate_streams(
    config: PipelineConfig, state: DiscoveredCatalog, *, allow_missing_cursor: bool = False
) -> list[ResolvedStream]:
    """Every stream the config selects among the discovered tables, checked against the source, with the
    Unity Catalog primary key filled in where the stream sets none.

    `ConfigError` lists every problem at once: tables or columns not found, a cursor that cannot order rows,
    a deduplicated stream without a key, a partition field that is not a time. `allow_missing_cursor` is for
    `discover`, which suggests the missing cursor.
    """
    streams = resolve_streams(config, state.tables, allow_missing_cursor=allow_missing_cursor)
    problems = source_problems(streams, state.columns_by_table())
    checked: list[ResolvedStream] = []
    for stream in streams:
        table = state.get(stream.name)
        if table is None:
            continue  # source_problems named it
        stream = _with_source_key(stream, table)
        checked.append(stream)
        problems += _cursor_problems(stream, table)
        problems += strategy_for(stream.settings).source_problems(stream, table)
        problems += _key_problems(stream, table) + _partition_problems(stream, table)
        problems += delivery_problems(stream, table)
    if problems:
        raise ConfigError(problems, config.path)
    return checked


def _with_source_key(stream: ResolvedStream, table: DiscoveredTable) -> ResolvedStream:
    """The default key: the table's Unity Catalog primary key when the stream names none."""
    if stream.settings.primary_key is not None or not table.primary_key:
        return stream
    settings = dataclasses.replace(stream.settings, primary_key=table.primary_key)
    return dataclasses.replace(stream, settings=settings)


def _cursor_problems(stream: ResolvedStream, table: DiscoveredTable) -> list[Problem]:
    settings = stream.settings
    column = table.column(settings.cursor_field) if settings.cursor_field else None
    if column is None:
        return []  # unset, or not a column (source_problems named it)
    where = f"stream {stream.name}"
    if not column.family.can_order:
        return [
            Problem(
                where,
                "cursor_field",
                f"{column.name!r} is {column.full_data_type}, which cannot order rows for a cursor",
                f"choose a TIMESTAMP, TIMESTAMP_NTZ, DATE or numeric column{_suggested(table)}, or set "
                "change_feed: true",
            )
        ]
    if settings.cursor_lag and not column.family.is_time:
        return [
            Problem(
                where,
                "cursor_lag",
                f"{settings.cursor_lag} is a duration, but the cursor {column.name!r} is "
                f"{column.full_data_type}",
                "remove cursor_lag, or choose a TIMESTAMP, TIMESTAMP_NTZ or DATE cursor",
            )
        ]
    return []


def _suggested(table: DiscoveredTable) -> str:
    suggestion = table.suggested_cursor
    return f" (such as {suggestion.columns[0]!r})" if suggestion else ""


def _key_problems(stream: ResolvedStream, table: DiscoveredTable) -> list[Problem]:
    """A Unity Catalog key (the stream names none) whose columns `columns` leaves out (a key the stream
    names itself was checked when the file was parsed)."""
    settings = stream.settings
    if not settings.primary_key or settings.primary_key != table.primary_key:
        return []
    dropped = [name for name in table.primary_key if not settings.columns.keeps(name)]
    return [
        Problem(
            f"stream {stream.name}",
            "columns",
            f"leaves out {name!r}, a column of the table's Unity Catalog primary key",
            f"keep {name!r}, or set primary_key to columns the copy keeps",
        )
        for name in dropped
    ]


def _partition_problems(stream: ResolvedStream, table: DiscoveredTable) -> list[Problem]:
    spec = stream.settings.partitions
    column = table.column(spec.field) if spec is not None and spec.field else None
    if column is None or column.family.is_time:
        return []
    return [
        Problem(
            f"stream {stream.name}",
            "partitions.field",
            f"{column.name!r} is {column.full_data_type}; partition windows need {_PARTITION_TYPES}",
            f"set partitions.field to a {_PARTITION_TYPES} column, or partitions: null",
        )
    ]
