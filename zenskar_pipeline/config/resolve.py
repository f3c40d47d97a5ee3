"""From stream entries to the tables they select: patterns expanded against discovered tables, explicit
entries first, each stream's destination table computed, and two streams in one destination table refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from zenskar_pipeline.config.errors import ConfigError, Problem, suggest
from zenskar_pipeline.config.models import PipelineConfig, ResolvedStream, StreamConfig, TableName
from zenskar_pipeline.config.rules import ModeRules

DISCOVER = "`zenskar-pipeline discover`"


def resolve_streams(
    config: PipelineConfig,
    available_tables: Iterable[str],
    *,
    rules: ModeRules,
    allow_missing_cursor: bool = False,
) -> list[ResolvedStream]:
    """One `ResolvedStream` per selected table, in file order (a pattern's tables sorted by name).

    `available_tables` are discovered `catalog.schema.table` names; patterns match only those (names that
    are not plain identifiers never match). Explicit entries are kept whether discovered or not: checking
    them against the source is `source_problems`' job. `allow_missing_cursor` lets `discover` resolve a
    file whose incremental streams still lack the cursor it is about to suggest.
    """
    problems: list[Problem] = []
    tables = sorted(_parse_names(available_tables), key=str)
    explicit = {entry.table for entry in config.streams if not entry.is_pattern}
    claimed: dict[TableName, StreamConfig] = {}
    resolved: list[ResolvedStream] = []
    for entry in config.streams:
        where = f"stream {entry.table}"
        if not allow_missing_cursor:
            problems += rules.cursor_problems(where, entry.settings) + _missing_partition_field(where, entry)
        if not entry.is_pattern:
            resolved.append(_resolve(config, TableName.parse(entry.table), entry))
            continue
        matches = [table for table in tables if entry.matches(table)]
        if not matches:
            problems.append(
                Problem(
                    where,
                    "table",
                    f"the pattern matches none of the {len(tables)} discovered tables",
                    f"check the pattern, or run {DISCOVER} to refresh the cached tables",
                )
            )
        for table in matches:
            if str(table) in explicit:
                continue  # an explicit entry wins over a pattern
            if table in claimed:
                other = claimed[table]
                problems.append(
                    Problem(
                        f"stream {table}",
                        "table",
                        f"selected by two patterns, {other.table} (streams[{other.index}]) and {entry.table} "
                        f"(streams[{entry.index}])",
                        f"add an explicit entry for {table}, or narrow one of the patterns",
                    )
                )
                continue
            claimed[table] = entry
            resolved.append(_resolve(config, table, entry))
    problems += _collisions(resolved)
    if problems:
        raise ConfigError(problems, config.path)
    return resolved


def source_problems(
    streams: Sequence[ResolvedStream], columns_by_table: Mapping[str, Sequence[str]]
) -> list[Problem]:
    """What the source says is wrong: tables not found, and columns a stream names that its table lacks.

    `columns_by_table` maps each discovered `catalog.schema.table` to its column names.
    """
    problems: list[Problem] = []
    known = {name.lower(): columns for name, columns in columns_by_table.items()}
    # A table another stream already copies is not what a misspelt name meant.
    copied = {stream.name for stream in streams if stream.name in known}
    for stream in streams:
        where = f"stream {stream.name}"
        if stream.name not in known:
            nearest = _nearest_table(stream.name, [name for name in known if name not in copied])
            problems.append(
                Problem(
                    where,
                    "table",
                    f"not found among the {len(known)} discovered tables",
                    f"did you mean {nearest!r}?" if nearest else f"check the name, or run {DISCOVER} again",
                )
            )
            continue
        columns = known[stream.name]
        present = {column.casefold() for column in columns}
        for key, names in stream.settings.referenced_columns().items():
            for name in names:
                if name.casefold() not in present:
                    nearest = suggest(name, columns)
                    fix = f"did you mean {nearest!r}?" if nearest else f"columns: {', '.join(columns)}"
                    problems.append(Problem(where, key, f"{name!r} is not a column of {stream.name}", fix))
    return problems


def _parse_names(names: Iterable[str]) -> Iterable[TableName]:
    for name in names:
        try:
            yield TableName.parse(name)
        except ValueError:
            continue


def _resolve(config: PipelineConfig, table: TableName, entry: StreamConfig) -> ResolvedStream:
    destination = config.destination
    return ResolvedStream(
        table=table,
        settings=entry.settings,
        destination_uri=destination.table_uri(table),
        destination_namespace=destination.namespace_for(table),
        destination_table=destination.table_name_for(table),
        pattern=entry.table if entry.is_pattern else None,
    )


def _missing_partition_field(where: str, entry: StreamConfig) -> list[Problem]:
    settings = entry.settings
    if settings.partitions is None or settings.partitions.field is not None or settings.cursor_field:
        return []
    return [
        Problem(
            where,
            "partitions.field",
            "missing, and there is no cursor_field to default to",
            "set partitions.field to the DATE or TIMESTAMP column that places a row in its window",
        )
    ]


def _collisions(streams: Sequence[ResolvedStream]) -> list[Problem]:
    first: dict[str, ResolvedStream] = {}
    problems = []
    for stream in streams:
        other = first.setdefault(stream.destination_uri, stream)
        if other is not stream:
            problems.append(
                Problem(
                    f"stream {stream.name}",
                    "destination",
                    f"lands in {stream.destination_uri}, as stream {other.name} does",
                    "use destination.namespace: source, which keeps catalogs and schemas apart, or copy "
                    "only one of the two tables",
                )
            )
    return problems


def _nearest_table(name: str, candidates: Sequence[str]) -> str | None:
    """A discovered table a misspelt `name` may mean: by the table part alone, in the same schema first (a
    shared `catalog.schema.` prefix would make any two names look alike)."""
    schema, _, table = name.rpartition(".")
    by_table: dict[str, list[str]] = {}
    for candidate in candidates:
        candidate_schema, _, candidate_table = candidate.rpartition(".")
        if candidate_schema == schema:
            by_table.setdefault(candidate_table, []).append(candidate)
    nearest = suggest(table, by_table)
    if nearest is not None:
        return by_table[nearest][0]
    return suggest(name, [c for c in candidates if c.rpartition(".")[0] != schema])
