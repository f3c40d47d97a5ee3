"""From the copy's rows of some windows to usage events: each event's identity and its exact JSON text.

The JSON is built by one DuckDB statement (its `to_json`), a million events in about a second, and it is
byte-for-byte the same for the same row: a batch rebuilt from the ledger is the batch that was sent. How
each type is written:

- integers as JSON integers; floats as the shortest text that reads back the same double (a FLOAT as
  the double it is); decimals as JSON numbers with every digit of their scale (`12.500000000000000000`),
  never in exponent form; booleans as true/false; dates as `"YYYY-MM-DD"`; strings as JSON strings,
  UTF-8 kept; NULL as null.
- timestamps as ISO 8601 in UTC with microseconds, `"2026-03-08T07:30:00.000000Z"`. A TIMESTAMP_NTZ is
  wall-clock time in the stream's `partitions.timezone` (UTC when unpartitioned), as its windows read it:
  an ambiguous wall time (the hour repeated when clocks go back) is its first occurrence, and one in the
  hour skipped when clocks go forward is read with the offset before the change (Python's `fold=0`).
  `timestamp` from a DATE column is midnight UTC of that day.
- `customer_id` as a JSON string (an integer column's value in decimal digits).

A row that cannot be an event (NULL or empty `customer_id`, NULL `timestamp`, a NaN or infinite float
that JSON cannot carry) is refused here with the reason, and dead-lettered without being sent.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from zenskar_pipeline.config import DeliverSpec, ResolvedStream
from zenskar_pipeline.destinations import Destination
from zenskar_pipeline.destinations.landing import PARTITION
from zenskar_pipeline.sync.modes.base import EventRows

# The columns of `build_events`' table.
EVENT_ID = "event_id"
EVENT = "event"
REFUSAL = "refusal"
WINDOW = "partition"
EVENTS_SCHEMA = pa.schema(
    [(WINDOW, pa.string()), (EVENT_ID, pa.string()), (EVENT, pa.string()), (REFUSAL, pa.string())]
)


@dataclass(frozen=True)
class EventSource:
    """What turns a stream's copy into events: its `deliver:` block, which rows are events, and the time
    zone a TIMESTAMP_NTZ is read in."""

    spec: DeliverSpec
    rows: EventRows
    timezone: str

    @classmethod
    def of(cls, stream: ResolvedStream, rows: EventRows) -> EventSource:
        assert stream.settings.deliver is not None
        partitions = stream.settings.partitions
        return cls(stream.settings.deliver, rows, partitions.timezone if partitions is not None else "UTC")


def read_events(
    copy: ds.Dataset, source: EventSource, partitions: Sequence[str] | None, *, partitioned: bool
) -> pa.Table:
    """The events of the copy's rows in `partitions` (None: the whole copy), sorted by window and event id:
    columns `partition` (None when unpartitioned), `event_id`, `event` (the JSON text, None when refused)
    and `refusal` (why the row cannot be sent)."""
    kinds: dict[str, pa.DataType] = {field.name: field.type for field in copy.schema}
    query, wanted, parameters = _selection(source, partitions, partitioned=partitioned)
    if any(pa.types.is_timestamp(kinds[name]) and kinds[name].tz is None for name in wanted):
        # Wall-clock times are read by Python's time zones (see `_ntz_as_utc`): two statements.
        return build_events(select_event_rows(copy, source, partitions, partitioned=partitioned), source)
    # One statement from the copy to the events: DuckDB never hands the selected rows to Arrow.
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("copy", copy)
        build = _events_statement(source, {WINDOW: pa.string(), **{name: kinds[name] for name in wanted}})
        table = con.sql(f"WITH event_rows AS ({query}) {build}", params=parameters).to_arrow_table()
    return _events_table(table)


def select_event_rows(
    copy: ds.Dataset, source: EventSource, partitions: Sequence[str] | None, *, partitioned: bool
) -> pa.Table:
    """`_selection`'s rows."""
    query, wanted, parameters = _selection(source, partitions, partitioned=partitioned)
    with duckdb.connect() as con:
        con.register("copy", copy)
        table = con.sql(query, params=parameters).to_arrow_table()
    assert table is not None
    return table.select([WINDOW, *wanted])


def _selection(
    source: EventSource, partitions: Sequence[str] | None, *, partitioned: bool
) -> tuple[str, list[str], dict[str, object]]:
    """A statement over the relation `copy` (and its parameters) selecting the rows that are events, one per
    identity: the columns the events read, the identity's, and `partition`. An identity the copy holds
    twice (it should not) is one event, the same on every read: the latest by `latest_by`, then the greatest
    by every column it sends. Where identities hold versions
    (`latest_by`), a key's latest version is looked for in the whole copy, for the keys these windows hold:
    a version that moved to another window is that window's event, not this one's."""
    spec, rows = source.spec, source.rows
    wanted = list(
        dict.fromkeys([*rows.identity, spec.customer_id, spec.timestamp, *(c for _, c in spec.data)])
    )
    windowed = partitioned and partitions is not None
    in_windows = f"{PARTITION} IN (SELECT unnest($windows))"
    filters = [f"({rows.where})"] if rows.where else []
    if windowed and rows.latest_by:
        same = " AND ".join(f"c.{_q(n)} IS NOT DISTINCT FROM w.{_q(n)}" for n in rows.identity)
        held = f"SELECT DISTINCT {', '.join(_q(n) for n in rows.identity)} FROM copy WHERE {in_windows}"
        filters.append(f"EXISTS (SELECT 1 FROM ({held}) w WHERE {same})")
    elif windowed:
        filters.append(in_windows)
    where = f"WHERE {' AND '.join(filters)}" if filters else ""
    parameters: dict[str, object] = (
        {"windows": list(partitions)} if windowed and partitions is not None else {}
    )
    window = PARTITION if partitioned else "CAST(NULL AS VARCHAR)"
    picked = ", ".join(f"c.{_q(name)}" for name in wanted)
    identity = ", ".join(f"c.{_q(name)}" for name in rows.identity)
    order = [f"c.{_q(name)} DESC NULLS LAST" for name in rows.latest_by[:1]]
    order += [f"({rows.prefer}) DESC NULLS LAST"] if rows.prefer else []
    order += [f"c.{_q(name)} DESC NULLS LAST" for name in [*rows.latest_by[1:], *wanted]]
    after = [f"({rows.keep})"] if rows.keep else []
    after += [in_windows.replace(PARTITION, _q(WINDOW), 1)] if windowed and rows.latest_by else []
    query = (
        f"SELECT * EXCLUDE (_n) FROM (SELECT {window} AS {_q(WINDOW)}, {picked}, {_keep_columns(rows)}"
        f" row_number() OVER (PARTITION BY {identity} ORDER BY {', '.join(order)}) AS _n FROM copy c {where})"
        f" WHERE _n = 1 {''.join(f' AND {test}' for test in after)}"
    )
    return query, wanted, parameters


def _keep_columns(rows: EventRows) -> str:
    """The copy's columns `keep` reads, carried out of the inner query (each name once)."""
    if not rows.keep:
        return ""
    return "".join(f"{name}, " for name in _system_names(rows.keep))


def _system_names(predicate: str) -> list[str]:
    return sorted({word for word in predicate.replace("(", " ").split() if word.startswith("_zenskar_")})


def build_events(rows: pa.Table, source: EventSource) -> pa.Table:
    """Event ids and JSON texts of rows from `select_event_rows`, sorted by window and event id: one DuckDB
    statement (its `to_json` escapes strings and writes numbers as this module says, in C++, a million
    events in about half a second)."""
    if rows.num_rows == 0:
        return EVENTS_SCHEMA.empty_table()
    rows = _ntz_as_utc(rows, source.timezone)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("event_rows", rows)
        table = con.sql(_events_statement(source, {f.name: f.type for f in rows.schema})).to_arrow_table()
    return _events_table(table)


def _events_table(table: pa.Table) -> pa.Table:
    if table.num_rows == 0:
        return EVENTS_SCHEMA.empty_table()
    return pa.table([column.combine_chunks() for column in table.columns], schema=EVENTS_SCHEMA)


def _events_statement(source: EventSource, kinds: dict[str, pa.DataType]) -> str:
    """A statement over the relation `event_rows` (of `kinds`' columns) giving `EVENTS_SCHEMA`'s columns,
    sorted by window and event id."""
    spec, identity = source.spec, source.rows.identity
    refusals = [
        (f"{_q(spec.customer_id)} IS NULL", "customer_id is NULL"),
        (f"CAST({_q(spec.customer_id)} AS VARCHAR) = ''", "customer_id is empty"),
        (f"{_q(spec.timestamp)} IS NULL", "timestamp is NULL"),
    ]
    data = []
    for position, (name, column) in enumerate(spec.data):
        kind = kinds[column]
        if pa.types.is_floating(kind):
            reason = f"data.{name} is NaN or infinite, which JSON cannot carry"
            refusals.append((f"isnan({_q(column)}) OR isinf({_q(column)})", reason))
        field = _literal(("," if position else "") + json.dumps(name, ensure_ascii=False) + ":")
        data.append(f"{field} || {_value_json(column, kind, f'data.{name}')}")
    customer = _q(spec.customer_id)
    if not pa.types.is_string(kinds[spec.customer_id]) and not pa.types.is_large_string(
        kinds[spec.customer_id]
    ):
        customer = f"CAST({customer} AS VARCHAR)"
    event = " || ".join(
        [
            _literal('{"customer_id":'),
            f"to_json({customer})",
            _literal(',"timestamp":'),
            _instant_json(spec.timestamp, kinds[spec.timestamp]),
            _literal(',"data":{'),
            *data,
            _literal("}}"),
        ]
    )
    event_id = " || ',' || ".join(_value_json(column, kinds[column], "identity") for column in identity)
    refusal = "CASE " + " ".join(f"WHEN {test} THEN {_literal(why)}" for test, why in refusals) + " END"
    return f"""
        SELECT {_q(WINDOW)}, '[' || {event_id} || ']' AS {EVENT_ID},
            CASE WHEN refusal IS NULL THEN {event} END AS {EVENT}, refusal AS {REFUSAL}
        FROM (SELECT *, {refusal} AS refusal FROM event_rows)
        ORDER BY {_q(WINDOW)}, {EVENT_ID}
    """


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _value_json(column: str, kind: pa.DataType, where: str) -> str:
    """A DuckDB expression: the column's value as JSON text, NULL as `null`."""
    name = _q(column)
    if pa.types.is_floating(kind):
        text = f"to_json(CAST({name} AS DOUBLE))"
    elif _to_json_as_is(kind):
        text = f"to_json({name})"
    elif pa.types.is_decimal(kind):
        text = f"CAST({name} AS VARCHAR)"  # every digit of the scale, whatever the precision
    elif pa.types.is_date(kind):
        text = f"'\"' || strftime({name}, '%Y-%m-%d') || '\"'"
    elif pa.types.is_timestamp(kind):
        text = _instant_json(column, kind)
    else:  # the settings refuse these; a copy whose column changed type since is refused here
        raise ValueError(f"{where}: a column of type {kind} cannot be sent as a usage event field")
    return f"coalesce({text}, 'null')"


def _to_json_as_is(kind: pa.DataType) -> bool:
    """Types DuckDB's `to_json` writes as this module says: integers, booleans, strings. Not decimals: it
    writes one of precision 15 or less through a double (`5.0` for a DECIMAL(10,0) 5)."""
    checks = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_string)
    return any(check(kind) for check in checks) or pa.types.is_large_string(kind)


def _instant_json(column: str, kind: pa.DataType) -> str:
    """A DuckDB expression: a DATE or an instant (NTZ already read as UTC) as quoted ISO 8601 UTC text."""
    name = _q(column)
    instant = f"CAST({name} AS TIMESTAMP)" if pa.types.is_date(kind) else f"({name} AT TIME ZONE 'UTC')"
    return f"'\"' || strftime({instant}, '{TIME_FORMAT}') || '\"'"


def _ntz_as_utc(rows: pa.Table, timezone: str) -> pa.Table:
    """TIMESTAMP_NTZ columns read as wall-clock time in `timezone`, made UTC instants (see the module
    docstring for the hours clocks skip or repeat: Python's `fold=0`, which DuckDB's time zones do not
    follow for a repeated hour)."""
    zone = zoneinfo.ZoneInfo(timezone)
    for index, field in enumerate(rows.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is None:
            walls = pc.cast(rows.column(index), pa.timestamp("us")).to_pylist()
            instants = [
                None if v is None else v.replace(tzinfo=zone, fold=0).astimezone(dt.UTC) for v in walls
            ]
            utc = pa.array(instants, pa.timestamp("us", tz="UTC"))
            rows = rows.set_column(index, pa.field(field.name, utc.type), utc)
    return rows


def identity_of(copy: Destination, rows: EventRows) -> str:
    """`identity_description` of a stream's copy (empty when there is no copy yet: nothing to plan)."""
    schema = copy.schema()
    return "" if schema is None else identity_description(schema, rows.identity)


def identity_description(schema: pa.Schema, identity: Sequence[str]) -> str:
    """What a stream's event ids are made of, as the ledger records it: each identity column with the kind
    of text its values are written as (a change of any of them changes every event id)."""

    def kind(field: pa.Field) -> str:
        if pa.types.is_decimal(field.type):
            return f"decimal scale {field.type.scale}"
        for name, test in (
            ("integer", pa.types.is_integer),
            ("float", pa.types.is_floating),
            ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
            ("boolean", pa.types.is_boolean),
            ("date", pa.types.is_date),
            ("timestamp", pa.types.is_timestamp),
        ):
            if test(field.type):
                return name
        return str(field.type)

    return ", ".join(f"{name} ({kind(schema.field(name))})" for name in identity)


def _literal(text: str) -> str:
    """`text` as a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
