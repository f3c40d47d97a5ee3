"""Loading the streams file: the demo file, defaults, YAML errors, whole-file problems and the environment."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from zenskar_pipeline.config import (
    ColumnSelection,
    ConfigError,
    Deletes,
    Granularity,
    NamespaceKind,
    OnMissingHistory,
    SyncMode,
)
from zenskar_pipeline.streams import load_config, resolve_streams
from zenskar_pipeline_tests.test_config.streams_files import (
    DISCOVERED,
    REPO,
    load,
    one_stream,
    problems_of,
    write,
)

# --- the demo file ----------------------------------------------------------------------------------------


def test_the_demo_file_starts_where_the_environment_says() -> None:
    """`make demo` and `make dev` set ZENSKAR_DEMO_START to the day the seeded data starts; without it the
    file does not load, and the error names the variable and the settings that use it."""
    later = load_config(REPO / "streams.yaml", env={"ZENSKAR_DEMO_START": "2026-10-02"})
    assert {s.settings.partitions.start_key for s in later.streams if s.settings.partitions} == {"2026-10-02"}
    with pytest.raises(ConfigError) as raised:
        load_config(REPO / "streams.yaml", env={})
    message = str(raised.value)
    assert "environment: streams[0].partitions.start: ${env:ZENSKAR_DEMO_START} is not set" in message
    assert "streams[2].partitions.start" in message and "set the variable ZENSKAR_DEMO_START" in message


def test_variables_in_any_value_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        destination:
          uri: ${env:COPIES:-out}/copies
          namespace: raw_${SOURCE_NAMESPACE}
        streams:
          - table: main.billing.${env:TABLE}
            sync_mode: full_refresh
        """,
    )
    config = load_config(path, env={"TABLE": "usage_events"})
    assert config.destination.uri == str(tmp_path / "out" / "copies")
    assert config.destination.namespace.pattern == "raw_${SOURCE_NAMESPACE}"  # the destination's own
    assert [s.table for s in config.streams] == ["main.billing.usage_events"]
    assert load_config(path, env={"TABLE": "t", "COPIES": "/lake"}).destination.uri == "/lake/copies"


def test_demo_streams_file_loads() -> None:
    config = load_config(REPO / "streams.yaml", env={"ZENSKAR_DEMO_START": "2026-09-01"})

    assert config.destination.uri == str(REPO / "data" / "destination")
    assert config.state_path == REPO / ".zenskar-pipeline" / "discovery.json"
    events, customers, compute = config.streams
    assert events.table == "main.billing.usage_events"
    assert events.settings.sync_mode is SyncMode.INCREMENTAL_APPEND_DEDUPED
    assert events.settings.change_feed and events.settings.cursor_field is None
    assert events.settings.deletes is Deletes.HARD
    assert events.settings.on_missing_history is OnMissingHistory.ERROR
    assert events.settings.primary_key == ("event_id",)
    assert events.settings.schedule == "15 * * * *"
    assert events.settings.lookback == 2
    partitions = events.settings.partitions
    assert partitions is not None
    assert (partitions.field, partitions.granularity, partitions.start_key) == (
        "event_time",
        Granularity.DAILY,
        "2026-09-01",
    )
    assert (partitions.timezone, partitions.include_current, partitions.end_offset) == ("UTC", True, 1)
    assert customers.settings.sync_mode is SyncMode.FULL_REFRESH
    assert customers.settings.partitions is None
    assert customers.settings.columns == ColumnSelection(exclude=("email",))
    assert compute.settings.partitions is not None and compute.settings.partitions.field == "usage_date"
    assert compute.settings.primary_key is None  # the table's own key constraint, if any

    resolved = resolve_streams(config, DISCOVERED)
    assert [(stream.name, stream.destination_uri) for stream in resolved] == [
        ("main.billing.usage_events", f"{REPO}/data/destination/main/billing/usage_events"),
        ("main.billing.customers", f"{REPO}/data/destination/main/billing/customers"),
        ("main.metering.compute_hours", f"{REPO}/data/destination/main/metering/compute_hours"),
    ]


def test_built_in_defaults_for_keys_left_out(tmp_path: Path) -> None:
    config = load(tmp_path, one_stream("cursor_field: updated_at"))
    settings = config.streams[0].settings
    assert settings.sync_mode is SyncMode.INCREMENTAL_APPEND_DEDUPED
    assert settings.cursor_lag == dt.timedelta(0)
    assert (settings.change_feed, settings.deletes, settings.on_missing_history) == (
        False,
        Deletes.HARD,
        OnMissingHistory.ERROR,
    )
    assert (settings.partitions, settings.schedule, settings.lookback) == (None, None, 0)
    assert config.destination.namespace.kind is NamespaceKind.SOURCE
    assert config.destination.prefix == ""


def test_defaults_merge_key_by_key(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: out}
        defaults:
          sync_mode: incremental_append
          cursor_field: updated_at
          partitions: {granularity: daily, start: "2026-01-01"}
          schedule: "0 * * * *"
        streams:
          - table: main.billing.usage_events
          - table: main.billing.customers
            sync_mode: full_refresh
            partitions: null
            schedule: null
          - table: main.billing.invoices
            partitions: {field: issued_at, granularity: monthly, start: "2026-01-01"}
        """,
    )
    events, customers, invoices = (stream.settings for stream in config.streams)
    assert events.sync_mode is SyncMode.INCREMENTAL_APPEND
    assert events.partitions is not None and events.partitions.field == "updated_at"  # the cursor, by default
    assert events.schedule == "0 * * * *"
    assert config.streams[0].from_defaults == {"sync_mode", "cursor_field", "partitions", "schedule"}
    assert customers.sync_mode is SyncMode.FULL_REFRESH
    assert customers.cursor_field == "updated_at"
    assert (customers.partitions, customers.schedule) == (None, None)  # null unsets a default
    # a stream's partitions replace the default's whole, not field by field
    assert invoices.partitions is not None
    assert (invoices.partitions.field, invoices.partitions.granularity) == ("issued_at", Granularity.MONTHLY)


def test_a_bad_default_is_reported_once_and_rules_name_its_origin(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        destination: {uri: out}
        defaults: {sync_mode: incremental_apend, change_feed: true}
        streams:
          - {table: main.billing.a, sync_mode: full_refresh}
          - {table: main.billing.b}
          - {table: main.billing.c}
        """,
    )
    assert problems == [
        "defaults: sync_mode: 'incremental_apend' is not a sync mode; did you mean 'incremental_append'? "
        "(full_refresh | incremental_append | incremental_append_deduped | history)",
        "stream main.billing.a: change_feed: full_refresh copies the whole scope each run and cannot apply "
        "the "
        "change feed (change_feed comes from defaults); set change_feed: false, or sync_mode: "
        "incremental_append_deduped to apply the change feed",
    ]


def test_every_problem_is_listed_in_one_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        destination: {uri: out}
        streams:
          - table: main.billing.usage_events
            sync_mode: incremental_apend
            cursor_lag: soon
          - table: main.billing.customers
            sync_mod: full_refresh
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert message.startswith(
        f"streams file {path} has 3 problems:\n  - stream main.billing.usage_events: sync_mode:"
    )
    assert "\n  - stream main.billing.usage_events: cursor_lag: 'soon' is not a duration" in message
    assert "\n  - stream main.billing.customers: sync_mod: unknown key; did you mean 'sync_mode'?" in message


def test_entries_that_are_not_mappings(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "destination: {uri: out}\nstreams:\n  - main.billing.usage_events\n") == [
        "streams[0]: value: expected a mapping of table, sync_mode, cursor_field, cursor_lag, primary_key, "
        "change_feed, on_missing_history, deletes, columns, partitions, schedule, lookback, freshness, "
        "deliver, got 'main.billing.usage_events'; write key: value lines"
    ]
    assert problems_of(tmp_path, "") == [
        "top level: value: expected a mapping of destination, defaults, streams, got None; write key: value "
        "lines",
        "destination: uri: missing; set destination.uri (such as data/destination) or "
        "ZENSKAR_PIPELINE_DESTINATION",
        "top level: streams: no streams listed; list the tables to copy, such as "
        "`streams: [{table: main.billing.usage_events}]`",
    ]


# --- YAML and files -----------------------------------------------------------------------------------------


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "destination:\n  uri: out\nstreams:\n  - table: main.billing.x\n   sync_mode: full\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(f"streams file {path}: YAML: line 5, column 4: not valid YAML: ")


def test_a_key_written_twice_is_a_yaml_error(tmp_path: Path) -> None:
    path = write(
        tmp_path, "destination: {uri: out}\nstreams:\n  - table: main.billing.x\n    table: main.billing.y\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f"streams file {path}: YAML: line 4, column 5: not valid YAML: found the key 'table' twice "
        "(while reading a mapping); fix the YAML at that line"
    )


def test_missing_streams_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml", env={})
    assert str(caught.value) == (
        f"streams file: {tmp_path}/nope.yaml: not found; pass --config FILE or set ZENSKAR_PIPELINE_CONFIG"
    )


# --- environment ------------------------------------------------------------------------------------------


def test_config_path_from_environment_else_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = write(
        tmp_path, one_stream("sync_mode: full_refresh", table="main.billing.elsewhere"), "other.yaml"
    )
    here = tmp_path / "here"
    here.mkdir()
    write(here, one_stream("sync_mode: full_refresh", table="main.billing.here"))
    monkeypatch.chdir(here)

    assert (
        load_config(env={"ZENSKAR_PIPELINE_CONFIG": str(elsewhere)}).streams[0].table
        == "main.billing.elsewhere"
    )
    assert load_config(env={"ZENSKAR_PIPELINE_CONFIG": ""}).streams[0].table == "main.billing.here"
    default = load_config(env={})
    assert default.path == here / "streams.yaml"
    assert default.state_path == here / ".zenskar-pipeline" / "discovery.json"


def test_destination_and_state_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    path = write(tmp_path / "conf", one_stream("sync_mode: full_refresh"))

    plain = load_config(path, env={})
    assert plain.destination.uri == str(tmp_path / "conf" / "out")
    assert plain.state_path == tmp_path / "conf" / ".zenskar-pipeline" / "discovery.json"

    env = {
        "ZENSKAR_PIPELINE_DESTINATION": "s3://lake/copies",
        "ZENSKAR_PIPELINE_STATE": "state/discovered.json",
    }
    overridden = load_config(path, env=env)
    assert overridden.destination.uri == "s3://lake/copies"
    assert overridden.state_path == tmp_path / "state" / "discovered.json"
    (stream,) = resolve_streams(overridden, [])
    assert stream.destination_uri == "s3://lake/copies/main/billing/usage_events"

    # a relative local folder in the environment is relative to the current directory
    assert load_config(path, env={"ZENSKAR_PIPELINE_DESTINATION": "copies"}).destination.uri == str(
        tmp_path / "copies"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"ZENSKAR_PIPELINE_DESTINATION": "sftp://host/x"})
    assert [str(p) for p in caught.value.problems] == [
        "environment: ZENSKAR_PIPELINE_DESTINATION: sftp:// is not a storage delta-rs writes to; use one of "
        "s3 | s3a | gs | az | adl | azure | abfs | abfss | file"
    ]


def test_destination_from_environment_needs_no_destination_section(tmp_path: Path) -> None:
    text = "streams:\n  - {table: main.billing.usage_events, sync_mode: full_refresh}\n"
    config = load(tmp_path, text, env={"ZENSKAR_PIPELINE_DESTINATION": "s3://lake"})
    assert config.destination.uri == "s3://lake"
