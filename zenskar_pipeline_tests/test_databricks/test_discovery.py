"""Discovery against the local warehouse through the real connector: what information_schema tells about the
selected tables, how few statements it takes, the suggested cursor and key, and the `discover` command."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.config import PipelineConfig, TableName
from zenskar_pipeline.databricks.discovery import (
    DiscoveredCatalog,
    DiscoveredColumn,
    DiscoveredTable,
    Suggestion,
    TypeFamily,
    discover_tables,
)
from zenskar_pipeline.state import load_state
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_config.streams_files import load

USAGE = "zdisc.billing.usage_events"
LINES = "zdisc.billing.invoice_lines"
CUSTOMERS = "zdisc.billing.customers"
READINGS = "zdisc.metering.readings"
IGNORED = "zdisc.other.ignored"
AUDIT = "zdisc2.ops.audit_log"
ALL_IN_ZDISC = [CUSTOMERS, LINES, USAGE, READINGS]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _field(name: str, kind: pa.DataType, nullable: bool = True, comment: str | None = None) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"comment": comment} if comment else None)


def source_tables(root: Path) -> None:
    """The tables these tests discover; written once per warehouse (test modules share it)."""
    if TableName.parse(USAGE).catalog in {p.name for p in root.iterdir()}:
        return
    usage = pa.schema(
        [
            _field("event_id", pa.string(), comment="Unique per event"),
            _field("customer_id", pa.string()),
            _field("event_time", pa.timestamp("us", tz="UTC")),
            _field("quantity", pa.int64(), comment="Units used"),
            _field("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    row = {"event_id": "e1", "customer_id": "c1", "event_time": T0, "quantity": 3, "updated_at": T0}
    tables.create_table(
        root, USAGE, pa.Table.from_pylist([row], usage), primary_key=["event_id"], comment="Usage"
    )
    lines = pa.schema(
        [
            _field("line_no", pa.int32()),
            _field("invoice_id", pa.string()),
            _field("amount", pa.decimal128(12, 2)),
            _field("created_at", pa.timestamp("us")),
        ]
    )
    tables.create_table(root, LINES, lines.empty_table(), primary_key=["invoice_id", "line_no"])
    customers = pa.schema(
        [
            _field("customer_id", pa.string(), nullable=False),
            _field("active", pa.bool_()),
            _field("signup_date", pa.date32()),
            _field("tags", pa.list_(pa.string())),
            _field("updated_at", pa.string()),  # a timestamp written as text: not a cursor
        ]
    )
    tables.create_table(root, CUSTOMERS, customers.empty_table(), comment="Customers")
    readings = pa.schema(
        [
            _field("id", pa.int64(), nullable=False),
            _field("reading_ts", pa.timestamp("us", tz="UTC")),
            _field("value", pa.float64()),
            _field("day", pa.date32()),
        ]
    )
    tables.create_table(root, READINGS, readings.empty_table())
    tables.create_table(root, IGNORED, pa.schema([_field("x", pa.int64())]).empty_table())
    audit = pa.schema(
        [_field("_commit_timestamp", pa.timestamp("us", tz="UTC")), _field("what", pa.string())]
    )
    tables.create_table(root, AUDIT, audit.empty_table())


@pytest.fixture(scope="module")
def source(warehouse: LocalWarehouse) -> LocalWarehouse:
    source_tables(warehouse.root)
    return warehouse


def streams(tmp_path: Path, *tables_or_patterns: str) -> PipelineConfig:
    entries = "\n".join(f"  - table: '{name}'" for name in tables_or_patterns)
    text = f"destination: {{uri: out}}\ndefaults: {{sync_mode: full_refresh}}\nstreams:\n{entries}\n"
    return load(tmp_path, text)


def discover(warehouse: LocalWarehouse, config: PipelineConfig) -> DiscoveredCatalog:
    with databricks_resource(warehouse).session() as session:
        return discover_tables(session, config)


# -- what discovery finds ------------------------------------------------------------------------------------
def test_discovers_columns_comments_and_a_composite_key(source: LocalWarehouse, tmp_path: Path) -> None:
    found = discover(source, streams(tmp_path, "zdisc.billing.*", READINGS))
    assert list(found.tables) == ALL_IN_ZDISC
    assert found.catalogs == ("zdisc",)
    usage = found.tables[USAGE]
    assert usage.name == TableName("zdisc", "billing", "usage_events")
    assert usage.comment == "Usage"
    assert usage.table_type == "MANAGED"
    assert usage.last_altered is not None and usage.last_altered.tzinfo is not None
    assert usage.primary_key == ("event_id",)
    assert usage.columns == (
        DiscoveredColumn("event_id", "string", nullable=False, ordinal=0, comment="Unique per event"),
        DiscoveredColumn("customer_id", "string", nullable=True, ordinal=1),
        DiscoveredColumn("event_time", "timestamp", nullable=True, ordinal=2),
        DiscoveredColumn("quantity", "bigint", nullable=True, ordinal=3, comment="Units used"),
        DiscoveredColumn("updated_at", "timestamp", nullable=True, ordinal=4),
    )
    lines = found.tables[LINES]
    assert lines.primary_key == ("invoice_id", "line_no")  # key order, not column order
    assert [(c.name, c.full_data_type) for c in lines.columns] == [
        ("line_no", "int"),
        ("invoice_id", "string"),
        ("amount", "decimal(12,2)"),
        ("created_at", "timestamp_ntz"),
    ]
    assert found.tables[CUSTOMERS].primary_key == ()
    assert [c.full_data_type for c in found.tables[CUSTOMERS].columns][3] == "array<string>"


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        (["zdisc.billing.usage_events"], [USAGE]),
        (["zdisc.billing.*_events", "zdisc.metering.*"], [USAGE, READINGS]),
        (["zdisc.*.*"], [CUSTOMERS, LINES, USAGE, READINGS, IGNORED]),
        (["*.ops.audit_*", "zdisc.*.readings"], [READINGS, AUDIT]),
        (["zdisc.billing.nope"], []),
    ],
)
def test_selects_only_what_the_entries_match(
    source: LocalWarehouse, tmp_path: Path, selectors: list[str], expected: list[str]
) -> None:
    assert sorted(discover(source, streams(tmp_path, *selectors)).tables) == sorted(expected)


def test_three_statements_per_catalog(source: LocalWarehouse, tmp_path: Path) -> None:
    config = streams(tmp_path, "zdisc.billing.*", READINGS, AUDIT)
    with databricks_resource(source).session() as session:
        found = discover_tables(session, config)
        assert session.statements_issued == 6  # tables, columns, keys: for zdisc and for zdisc2
    assert found.statements == 6
    assert found.catalogs == ("zdisc", "zdisc2")
    assert list(found.tables) == [*ALL_IN_ZDISC, AUDIT]
    # A catalog pattern lists the catalogs first; a catalog without a matching table stops after `tables`.
    wide = discover(source, streams(tmp_path, "zdisc*.ops.*"))
    assert (list(wide.tables), wide.catalogs, wide.statements) == ([AUDIT], ("zdisc", "zdisc2"), 1 + 1 + 3)


def test_a_missing_catalog_has_no_tables(source: LocalWarehouse, tmp_path: Path) -> None:
    found = discover(source, streams(tmp_path, "nosuchcatalog.billing.usage_events", USAGE))
    assert list(found.tables) == [USAGE]
    assert found.catalogs == ("nosuchcatalog", "zdisc")
    assert found.statements == 1 + 3


# -- suggestions ---------------------------------------------------------------------------------------------
def test_suggested_cursor_and_key(source: LocalWarehouse, tmp_path: Path) -> None:
    found = discover(source, streams(tmp_path, "zdisc.*.*", AUDIT))

    def cursor(name: str) -> str | None:
        suggestion = found.tables[name].suggested_cursor
        return suggestion.columns[0] if suggestion else None

    assert cursor(USAGE) == "updated_at"  # a last-change time beats the event time
    assert cursor(LINES) == "created_at"
    assert cursor(CUSTOMERS) is None  # its updated_at is a STRING
    assert cursor(READINGS) == "reading_ts"  # no known name: a time column ending in _ts
    assert cursor(AUDIT) == "_commit_timestamp"
    assert found.tables[USAGE].suggested_key == Suggestion(
        ("event_id",), "the Unity Catalog PRIMARY KEY constraint"
    )
    assert found.tables[LINES].suggested_key.columns == ("invoice_id", "line_no")  # type: ignore[union-attr]
    assert found.tables[CUSTOMERS].suggested_key.columns == ("customer_id",)  # type: ignore[union-attr]
    assert found.tables[READINGS].suggested_key.columns == ("id",)  # type: ignore[union-attr]
    assert found.tables[AUDIT].suggested_key is None


def _table(*columns: tuple[str, str, bool]) -> DiscoveredTable:
    return DiscoveredTable(
        TableName("c", "s", "events"),
        tuple(DiscoveredColumn(n, t, nullable, i) for i, (n, t, nullable) in enumerate(columns)),
    )


@pytest.mark.parametrize(
    ("columns", "cursor"),
    [
        ([("created_at", "timestamp", True), ("modified_at", "timestamp_ntz", True)], "modified_at"),
        ([("event_time", "timestamp", True), ("ingested_at", "date", True)], "ingested_at"),
        ([("updated_at", "double", True), ("created_at", "bigint", True)], "created_at"),
        ([("updated_at", "boolean", True), ("seen", "timestamp", True)], None),
        ([("Updated_At", "decimal(20,0)", True)], "Updated_At"),
        ([("first_seen_at", "date", True), ("last_seen_at", "timestamp", True)], "last_seen_at"),
    ],
)
def test_cursor_rule(columns: list[tuple[str, str, bool]], cursor: str | None) -> None:
    suggestion = _table(*columns).suggested_cursor
    assert (suggestion.columns[0] if suggestion else None) == cursor


def test_key_rule_wants_not_null_scalar_columns() -> None:
    assert _table(("id", "bigint", True), ("event_id", "string", False)).suggested_key == Suggestion(
        ("event_id",), "string NOT NULL; named like a key, and no PRIMARY KEY constraint is declared"
    )
    assert _table(("events_id", "bigint", False), ("id", "bigint", False)).suggested_key.columns == (  # type: ignore[union-attr]
        "events_id",
    )
    assert _table(("id", "struct<a:int>", False)).suggested_key is None


@pytest.mark.parametrize(
    ("full_data_type", "family"),
    [
        ("timestamp", TypeFamily.TIMESTAMP),
        ("timestamp_ntz", TypeFamily.TIMESTAMP_NTZ),
        ("date", TypeFamily.DATE),
        ("int", TypeFamily.INTEGER),
        ("decimal(38,0)", TypeFamily.DECIMAL),
        ("double", TypeFamily.FLOATING),
        ("varchar(10)", TypeFamily.STRING),
        ("boolean", TypeFamily.OTHER),
        ("map<string,int>", TypeFamily.OTHER),
        ("INTERVAL DAY", TypeFamily.OTHER),
    ],
)
def test_type_families(full_data_type: str, family: TypeFamily) -> None:
    assert TypeFamily.of(full_data_type) is family


# -- the command ---------------------------------------------------------------------------------------------
def run_discover(warehouse: LocalWarehouse, config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "ZENSKAR_PIPELINE_"))}
    env.update(warehouse.info.env())
    assert env["DATABRICKS_TLS_CA_FILE"]
    command = [str(Path(sys.executable).with_name("zenskar-pipeline")), "discover", "--config", str(config)]
    command.extend(options)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_discover_command_prints_suggestions_and_writes_state(source: LocalWarehouse, tmp_path: Path) -> None:
    config = tmp_path / "streams.yaml"
    config.write_text(
        "destination: {uri: out}\n"
        "streams:\n"
        "  - table: zdisc.billing.usage_events\n"
        "    sync_mode: incremental_append_deduped\n"  # no cursor yet: discover suggests one
        "  - table: zdisc.metering.*\n"
        "    sync_mode: full_refresh\n"
    )
    result = run_discover(source, config)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "zdisc.billing.usage_events  (selected by an explicit entry)" in out
    assert "zdisc.metering.readings  (selected by pattern zdisc.metering.*)" in out
    assert (
        "suggested cursor: updated_at  (timestamp; named like a last-change time); the stream sets none: "
        "add `cursor_field: updated_at`"
    ) in out
    assert "suggested key: event_id  (the Unity Catalog PRIMARY KEY constraint)" in out
    assert "suggested key: id  (bigint NOT NULL; named like a key" in out
    assert "quantity" in out and "Units used" in out
    state = tmp_path / ".zenskar-pipeline" / "discovery.json"
    assert "with 3 statement(s)" in out  # one catalog
    assert f"wrote {state}" in out
    assert list(load_state(state).tables) == [USAGE, READINGS]


def test_discover_summary_is_one_line_and_writes_the_same_cache(
    source: LocalWarehouse, tmp_path: Path
) -> None:
    config = tmp_path / "streams.yaml"
    config.write_text(
        "destination: {uri: out}\n"
        "streams:\n"
        "  - {table: zdisc.billing.usage_events, sync_mode: incremental_append, cursor_field: updated_at}\n"
        "  - {table: zdisc.metering.*, sync_mode: full_refresh}\n"
    )
    result = run_discover(source, config, "--summary")
    assert result.returncode == 0, result.stderr
    state = tmp_path / ".zenskar-pipeline" / "discovery.json"
    (line,) = result.stdout.splitlines()
    assert line.startswith("Discovered 2 table(s) in 1 catalog(s)") and line.endswith(f"wrote {state}")
    assert list(load_state(state).tables) == [USAGE, READINGS]


def test_discover_command_fails_on_a_bad_cursor_yet_keeps_what_it_found(
    source: LocalWarehouse, tmp_path: Path
) -> None:
    config = tmp_path / "streams.yaml"
    config.write_text(
        "destination: {uri: out}\n"
        "streams:\n"
        "  - {table: zdisc.billing.customers, sync_mode: incremental_append, cursor_field: active}\n"
    )
    result = run_discover(source, config)
    assert result.returncode == 1
    assert "stream zdisc.billing.customers: cursor_field: 'active' is boolean" in result.stderr
    assert list(load_state(tmp_path / ".zenskar-pipeline" / "discovery.json").tables) == [CUSTOMERS]


def test_discover_command_bad_streams_file(source: LocalWarehouse, tmp_path: Path) -> None:
    config = tmp_path / "streams.yaml"
    config.write_text(
        "destination: {uri: out}\nstreams:\n  - {table: zdisc.billing.usage_events, sync_mode: x}\n"
    )
    result = run_discover(source, config)
    assert result.returncode == 1
    assert "sync_mode" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / ".zenskar-pipeline").exists()
