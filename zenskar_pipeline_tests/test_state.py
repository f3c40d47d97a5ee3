"""The discovery cache (written atomically, read back exactly, clear when missing or unreadable) and the
streams file checked against what discovery found."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.config import ConfigError, PipelineConfig, TableName
from zenskar_pipeline.databricks.discovery import DiscoveredCatalog, DiscoveredColumn, DiscoveredTable
from zenskar_pipeline.state import (
    FORMAT_VERSION,
    StateCorruptError,
    StateMissingError,
    load_newest_state,
    load_state,
    save_state,
)
from zenskar_pipeline.streams import validate_streams
from zenskar_pipeline_tests.test_config.streams_files import load, one_stream
from zenskar_pipeline_tests.test_databricks.test_discovery import (
    AUDIT,
    CUSTOMERS,
    LINES,
    READINGS,
    USAGE,
    discover,
    source_tables,
    streams,
)


@pytest.fixture(scope="module")
def found(warehouse: LocalWarehouse, tmp_path_factory: pytest.TempPathFactory) -> DiscoveredCatalog:
    source_tables(warehouse.root)
    return discover(warehouse, streams(tmp_path_factory.mktemp("found"), "zdisc.*.*", AUDIT))


# -- the file -----------------------------------------------------------------------------------------------
def test_round_trip_is_exact(found: DiscoveredCatalog, tmp_path: Path) -> None:
    path = tmp_path / ".zenskar-pipeline" / "discovery.json"
    save_state(found, path)
    loaded = load_state(path)
    assert loaded == found
    assert list(loaded.tables) == list(found.tables)
    for name, table in found.tables.items():
        assert loaded.tables[name].columns == table.columns
        assert loaded.tables[name].last_altered == table.last_altered
    assert loaded.discovered_at == found.discovered_at
    assert loaded.tables[USAGE].suggested_cursor == found.tables[USAGE].suggested_cursor
    data = json.loads(path.read_text())
    assert (data["format"], data["version"]) == ("zenskar-pipeline/discovery", FORMAT_VERSION)
    save_state(loaded, path)  # writing what was read changes nothing
    assert json.loads(path.read_text()) == data


def test_round_trip_of_unusual_values(tmp_path: Path) -> None:
    table = DiscoveredTable(
        TableName("c", "s", "t"),
        (DiscoveredColumn("Ünïcode", "map<string,array<int>>", True, 0, comment='línea 1\n"quoted"'),),
        comment=None,
        last_altered=dt.datetime(2026, 3, 1, 1, 2, 3, 456789, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    )
    catalog = DiscoveredCatalog({"c.s.t": table}, ("c", "empty"), dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    save_state(catalog, tmp_path / "state.json")
    assert load_state(tmp_path / "state.json") == catalog


def test_write_is_atomic(found: DiscoveredCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "discovery.json"
    save_state(found, path)
    before = path.read_bytes()
    renames: list[tuple[str, str]] = []

    def failing_replace(source: str, target: str) -> None:
        renames.append((source, target))
        assert Path(source).parent == path.parent and Path(source).read_text().endswith("}\n")
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", failing_replace)
    empty = DiscoveredCatalog({}, (), dt.datetime.now(dt.UTC))
    with pytest.raises(OSError, match="disk gone"):
        save_state(empty, path)
    assert [Path(target) for _, target in renames] == [path]  # the new file went through a rename
    assert path.read_bytes() == before  # the old one is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["discovery.json"]  # no temporary file left


def test_the_newest_of_the_component_state_and_the_cache_is_read(
    found: DiscoveredCatalog, tmp_path: Path
) -> None:
    """`dg utils refresh-defs-state` writes both files, `zenskar-pipeline discover` only the cache: whichever
    ran last wins, and a missing file is no error while the other exists."""
    cache, component_state = tmp_path / "discovery.json", tmp_path / "state"
    later = dataclasses.replace(found, discovered_at=found.discovered_at + dt.timedelta(minutes=5), tables={})
    save_state(found, cache)
    assert load_newest_state(cache, component_state) == found
    save_state(later, component_state)
    assert load_newest_state(cache, component_state) == later
    save_state(dataclasses.replace(found, discovered_at=later.discovered_at + dt.timedelta(minutes=5)), cache)
    assert load_newest_state(cache, component_state).tables == found.tables
    with pytest.raises(StateMissingError):
        load_newest_state(tmp_path / "none.json", None)


def test_missing_state_says_to_run_discover(tmp_path: Path) -> None:
    path = tmp_path / ".zenskar-pipeline" / "discovery.json"
    with pytest.raises(StateMissingError) as raised:
        load_state(path)
    assert str(raised.value) == f"no discovered tables at {path}; run `zenskar-pipeline discover`"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not JSON: Expecting property name enclosed in double quotes at line 1"),
        ("[]", "not a zenskar-pipeline/discovery file"),
        ('{"format": "zenskar-pipeline/discovery", "version": 0}', "format version 0, this release reads 1"),
        (
            '{"format": "zenskar-pipeline/discovery", "version": 1, "catalogs": [], "tables": [], '
            '"discovered_at": "yesterday"}',
            "discovered_at is not an ISO timestamp",
        ),
        (
            '{"format": "zenskar-pipeline/discovery", "version": 1, "catalogs": ["c"], '
            '"discovered_at": "2026-01-01T00:00:00+00:00", "tables": [{"name": "c.s.t", "table_type": null, '
            '"comment": null, "last_altered": null, "primary_key": [], '
            '"columns": [{"name": "x", "full_data_type": "int", "nullable": "yes", "ordinal": 0, '
            '"comment": null}]}]}',
            "tables[0].columns[0].nullable is not a bool",
        ),
        (
            '{"format": "zenskar-pipeline/discovery", "version": 1, "catalogs": [], '
            '"discovered_at": "2026-01-01T00:00:00+00:00", "tables": [{"name": "c.s"}]}',
            "tables[0].name: 'c.s' is not catalog.schema.table (2 part(s))",
        ),
    ],
)
def test_unreadable_state_says_why_and_what_to_run(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "discovery.json"
    path.write_text(text)
    with pytest.raises(StateCorruptError) as raised:
        load_state(path)
    assert str(raised.value) == (
        f"the discovery cache {path} cannot be read ({reason}); run `zenskar-pipeline discover` again"
    )


# -- the streams file against the source --------------------------------------------------------------------
def problems(config: PipelineConfig, found: DiscoveredCatalog) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        validate_streams(config, found)
    return [str(problem) for problem in raised.value.problems]


def test_valid_streams_take_the_unity_catalog_key(found: DiscoveredCatalog, tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: out}
        streams:
          - {table: zdisc.billing.usage_events, cursor_field: updated_at, cursor_lag: 10m,
             partitions: {field: event_time, granularity: daily, start: "2026-01-01"}}
          - {table: zdisc.billing.invoice_lines, sync_mode: incremental_append, cursor_field: created_at}
          - {table: zdisc.billing.customers, sync_mode: incremental_append_deduped, change_feed: true,
             primary_key: [customer_id]}
          - {table: zdisc.metering.readings, sync_mode: incremental_append, cursor_field: id,
             partitions: {field: day, granularity: daily, start: "2026-01-01"}}
        """,
    )
    resolved = {stream.name: stream for stream in validate_streams(config, found)}
    assert list(resolved) == [USAGE, LINES, CUSTOMERS, READINGS]
    assert resolved[USAGE].settings.primary_key == ("event_id",)  # from the PRIMARY KEY constraint
    assert resolved[LINES].settings.primary_key == ("invoice_id", "line_no")
    assert resolved[CUSTOMERS].settings.primary_key == ("customer_id",)  # set by the stream
    assert resolved[READINGS].settings.primary_key is None


def test_unknown_table_and_column(found: DiscoveredCatalog, tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: out}
        streams:
          - {table: zdisc.billing.usage_event, sync_mode: full_refresh}
          - {table: zdisc.billing.usage_events, cursor_field: updatedat}
        """,
    )
    assert problems(config, found) == [
        # usage_events is copied by its own stream: not what the misspelt name meant
        "stream zdisc.billing.usage_event: table: not found among the 6 discovered tables; "
        "check the name, or run `zenskar-pipeline discover` again",
        "stream zdisc.billing.usage_events: cursor_field: 'updatedat' is not a column of "
        "zdisc.billing.usage_events; did you mean 'updated_at'?",
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            "sync_mode: incremental_append\ncursor_field: active",
            "stream zdisc.billing.customers: cursor_field: 'active' is boolean, which cannot order "
            "rows for a cursor; choose a TIMESTAMP, TIMESTAMP_NTZ, DATE or numeric column, or set "
            "change_feed: true",
        ),
        (
            "sync_mode: incremental_append\ncursor_field: updated_at",
            "stream zdisc.billing.customers: cursor_field: 'updated_at' is string, which cannot order "
            "rows for a cursor; choose a TIMESTAMP, TIMESTAMP_NTZ, DATE or numeric column, or set "
            "change_feed: true",
        ),
        (
            "sync_mode: incremental_append_deduped\nchange_feed: true",
            "stream zdisc.billing.customers: primary_key: missing; sync_mode "
            "incremental_append_deduped keeps one row per key, and zdisc.billing.customers declares no "
            "PRIMARY KEY constraint in Unity Catalog; set primary_key ('customer_id' looks like one), "
            "or declare a PRIMARY KEY constraint on the table in Unity Catalog",
        ),
        (
            "sync_mode: full_refresh\n"
            "partitions: {field: customer_id, granularity: daily, start: '2026-01-01'}",
            "stream zdisc.billing.customers: partitions.field: 'customer_id' is string; partition "
            "windows need TIMESTAMP, TIMESTAMP_NTZ or DATE; set partitions.field to a TIMESTAMP, "
            "TIMESTAMP_NTZ or DATE column, or partitions: null",
        ),
    ],
    ids=["boolean-cursor", "string-cursor", "deduped-without-key", "partition-not-a-time"],
)
def test_each_source_problem_names_table_and_column(
    found: DiscoveredCatalog, tmp_path: Path, settings: str, expected: str
) -> None:
    config = load(tmp_path, one_stream(settings, table=CUSTOMERS))
    assert problems(config, found) == [expected]


def test_cursor_lag_needs_a_time_cursor(found: DiscoveredCatalog, tmp_path: Path) -> None:
    config = load(
        tmp_path, one_stream("sync_mode: incremental_append\ncursor_field: id\ncursor_lag: 5m", READINGS)
    )
    assert problems(config, found) == [
        "stream zdisc.metering.readings: cursor_lag: 0:05:00 is a duration, but the cursor 'id' is bigint; "
        "remove cursor_lag, or choose a TIMESTAMP, TIMESTAMP_NTZ or DATE cursor"
    ]


def test_the_unity_catalog_key_must_be_kept(found: DiscoveredCatalog, tmp_path: Path) -> None:
    config = load(tmp_path, one_stream("cursor_field: updated_at\ncolumns: {exclude: [event_id]}", USAGE))
    assert problems(config, found) == [
        "stream zdisc.billing.usage_events: columns: leaves out 'event_id', a column of the table's Unity "
        "Catalog primary key; keep 'event_id', or set primary_key to columns the copy keeps"
    ]


def test_every_problem_at_once_and_a_missing_cursor_only_when_asked(
    found: DiscoveredCatalog, tmp_path: Path
) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: out}
        streams:
          - {table: zdisc.billing.customers}
          - {table: zdisc.metering.readings, sync_mode: incremental_append, cursor_field: value,
             partitions: {field: value, granularity: daily, start: "2026-01-01"}}
        """,
    )
    with pytest.raises(ConfigError) as raised:
        validate_streams(config, found, allow_missing_cursor=True)
    assert [(p.where, p.key) for p in raised.value.problems] == [
        ("stream zdisc.billing.customers", "primary_key"),
        ("stream zdisc.metering.readings", "partitions.field"),
    ]
    assert str(raised.value).startswith(f"streams file {config.path} has 2 problems:")
    with pytest.raises(ConfigError) as raised:
        validate_streams(config, found)
    assert ("stream zdisc.billing.customers", "cursor_field") in [
        (p.where, p.key) for p in raised.value.problems
    ]


def test_a_bad_cursor_gets_the_suggested_one(found: DiscoveredCatalog, tmp_path: Path) -> None:
    config = load(tmp_path, one_stream("cursor_field: customer_id", USAGE))
    assert problems(config, found) == [
        "stream zdisc.billing.usage_events: cursor_field: 'customer_id' is string, which cannot order rows "
        "for a cursor; choose a TIMESTAMP, TIMESTAMP_NTZ, DATE or numeric column (such as 'updated_at'), "
        "or set change_feed: true"
    ]
