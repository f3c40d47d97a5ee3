"""Columns named as Unity Catalog allows (Unicode, a keyword, a space, a dot, a backtick) sync end to end
through Dagster in every sync mode, as the partition field, cursor and primary key too: the checks pass,
the copy holds each column under its source name and equals the source, and the sensor's queries run."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline_tests.test_defs.watched_tables import Pipeline, tick

KEY, CURSOR, FIELD, AMOUNT, NOTE = "número", "order", "with space", "a.b", "we`ird"
PRIVATE = "e-mail, (private)"  # excluded: it never leaves the source
WEIRD = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(CURSOR, pa.timestamp("us", tz="UTC")),
        pa.field(FIELD, pa.timestamp("us", tz="UTC")),
        pa.field(AMOUNT, pa.int64()),
        pa.field(NOTE, pa.string()),
    ]
)
SOURCE = WEIRD.append(pa.field(PRIVATE, pa.string()))
RANGE = {
    "dagster/asset_partition_range_start": "2026-01-01",
    "dagster/asset_partition_range_end": "2026-01-03",
}
_numbers = itertools.count()


def _utc(day: int, hour: int = 0) -> dt.datetime:
    """`day` counted from 2026-01-01 (day 1), on past January's end."""
    return dt.datetime(2026, 1, 1, hour, tzinfo=dt.UTC) + dt.timedelta(days=day - 1)


def _row(key: str, day: int, amount: int = 1, *, updated: int = 0) -> dict[str, Any]:
    note = f"`{key}` says ;"
    return {KEY: key, CURSOR: _utc(day, updated), FIELD: _utc(day), AMOUNT: amount, NOTE: note, PRIVATE: "x"}


def _stream(table: str, mode: str, **settings: Any) -> dict[str, Any]:
    daily = {"field": FIELD, "granularity": "daily", "start": "2026-01-01"}
    keyed = {} if mode == "full_refresh" else {"primary_key": [KEY]}
    cursor = {} if mode == "full_refresh" or settings.get("change_feed") else {"cursor_field": CURSOR}
    columns = {"exclude": [PRIVATE]}
    return {
        "table": table,
        "sync_mode": mode,
        **keyed,
        **cursor,
        "partitions": daily,
        "columns": columns,
        **settings,
    }


# Each case: its sync mode and settings beyond the partitions, cursor and key `_stream` gives.
MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "full_refresh": ("full_refresh", {}),
    "incremental_append": ("incremental_append", {}),
    "incremental_append_deduped": ("incremental_append_deduped", {}),
    "history": ("history", {}),
    "change_feed_deduped": ("incremental_append_deduped", {"change_feed": True}),
    "change_feed_append": ("incremental_append", {"change_feed": True}),
}


def _source(pipeline: Pipeline, table: str) -> list[dict[str, Any]]:
    source = tables.open_table(pipeline.warehouse.root, table).to_pyarrow_table(columns=WEIRD.names)
    return _sorted(source.to_pylist())


def _copy(pipeline: Pipeline, table: str, **filters: Any) -> list[dict[str, Any]]:
    landed = DeltaTable(pipeline.destination(table)).to_pyarrow_table().to_pylist()
    rows = [r for r in landed if all(r.get(k) == v for k, v in filters.items())]
    return _sorted([{name: row[name] for name in WEIRD.names} for row in rows])


def _versions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (key, cursor) once, as the source columns the copy holds."""
    return _sorted(list({(r[KEY], r[CURSOR]): {n: r[n] for n in WEIRD.names} for r in rows}.values()))


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r[KEY], r[CURSOR]))


def _synced(defs: dg.Definitions, table: str, tags: dict[str, str] = RANGE) -> dg.ExecuteInProcessResult:
    key = dg.AssetKey(["zenskar", *table.split(".")])
    result = dg.materialize(
        [defs.resolve_assets_def(key)], instance=dg.DagsterInstance.ephemeral(), tags=tags
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks), [(c.check_name, c.metadata) for c in checks]
    return result


@pytest.mark.parametrize("name", list(MODES))
def test_columns_named_as_unity_catalog_allows_sync_end_to_end(
    warehouse: LocalWarehouse, tmp_path: Path, name: str
) -> None:
    pipeline = Pipeline(warehouse, tmp_path, "zcolumns")
    table = f"zcolumns.odd_names.{name}_{next(_numbers)}"
    first = [_row("a", 1), _row("b", 2), _row("c", 3, 5)]
    tables.create_table(
        warehouse.root, table, pa.Table.from_pylist(first, SOURCE), primary_key=[KEY], change_data_feed=True
    )
    mode, settings = MODES[name]
    defs = pipeline.definitions(_stream(table, mode, **settings))
    _synced(defs, table)
    landed = DeltaTable(pipeline.destination(table)).schema().to_arrow()
    assert [field.name for field in landed][: len(WEIRD)] == WEIRD.names
    assert PRIVATE not in landed.names
    assert _copy(pipeline, table) == _source(pipeline, table)

    # A row changes (a later cursor, another amount) and one arrives; the sensor's grouped query on the
    # cursor or the change feed, by the partition field, sees both windows.
    changed = [_row("b", 2, 7, updated=9), _row("d", 3)]
    tables.upsert(warehouse.root, table, pa.Table.from_pylist(changed, SOURCE), [KEY])
    seen = tick(defs, dg.DagsterInstance.ephemeral())
    assert seen.run_requests, "the sensor asked for nothing"
    _synced(defs, table)
    if name in ("incremental_append", "change_feed_append"):
        # Every version of a row stays: the copy holds what the source held, then the new versions.
        assert _copy(pipeline, table) == _versions([*first, *changed])
    elif name == "history":
        assert _copy(pipeline, table, _zenskar_is_current=True) == _source(pipeline, table)
    else:
        assert _copy(pipeline, table) == _source(pipeline, table)


def test_a_read_of_many_windows_with_their_marks_names_odd_columns(
    warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    # 40 daily partitions, each with a mark after the first run: more windows than are spelled one by one,
    # so the second run's read joins them to the rows as one JSON value, on the odd partition field.
    pipeline = Pipeline(warehouse, tmp_path, "zcolumns")
    table = f"zcolumns.odd_names.many_windows_{next(_numbers)}"
    rows = [_row(f"k{day:02}", day) for day in range(1, 41)]
    tables.create_table(warehouse.root, table, pa.Table.from_pylist(rows, SOURCE), primary_key=[KEY])
    defs = pipeline.definitions(_stream(table, "incremental_append_deduped"))
    forty = {**RANGE, "dagster/asset_partition_range_end": "2026-02-09"}
    _synced(defs, table, forty)
    later = [_row("k05", 5, 9, updated=3), _row("k39", 39, 9, updated=3)]
    tables.upsert(warehouse.root, table, pa.Table.from_pylist(later, SOURCE), [KEY])
    result = _synced(defs, table, forty)
    written = {
        m.partition: m.metadata["rows_written"].value
        for m in (e.materialization for e in result.get_asset_materialization_events())
    }
    assert {key: n for key, n in written.items() if n} == {"2026-01-05": 1, "2026-02-08": 1}
    assert _copy(pipeline, table) == _source(pipeline, table)
