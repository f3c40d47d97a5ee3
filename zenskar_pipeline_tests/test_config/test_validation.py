"""Bad values, one case at a time: each names the stream, the key and the fix; good values Dagster accepts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from zenskar_pipeline.config import (
    TableName,
    parse_duration,
)
from zenskar_pipeline_tests.test_config.streams_files import (
    load,
    one_stream,
    problems_of,
    with_destination,
)

# --- bad input, one case at a time ------------------------------------------------------------------------

STREAM = "stream main.billing.usage_events"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            "sync_mode: incremental_apend",
            f"{STREAM}: sync_mode: 'incremental_apend' is not a sync mode; did you mean "
            "'incremental_append'? "
            "(full_refresh | incremental_append | incremental_append_deduped | history)",
            id="misspelt-mode",
        ),
        pytest.param(
            "sync_mode: upsert",
            f"{STREAM}: sync_mode: 'upsert' is not a sync mode; use one of full_refresh | incremental_append "
            "| "
            "incremental_append_deduped | history",
            id="unknown-mode",
        ),
        pytest.param(
            "sync_mode: full_refresh\ncursor_feild: updated_at",
            f"{STREAM}: cursor_feild: unknown key; did you mean 'cursor_field'?",
            id="misspelt-key",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {granularity: daily, start: '2026-01-01', time_zone: UTC}",
            f"{STREAM}: partitions.time_zone: unknown key; did you mean 'timezone'?",
            id="misspelt-nested-key",
        ),
        pytest.param(
            "sync_mode: full_refresh\ndeletes: soft",
            f"{STREAM}: deletes: only applies with change_feed: true (cursor syncs do not see deletes); "
            "set change_feed: true, or remove deletes",
            id="deletes-without-change-feed",
        ),
        pytest.param(
            "sync_mode: full_refresh\nchange_feed: true",
            f"{STREAM}: change_feed: full_refresh copies the whole scope each run and cannot apply the "
            "change "
            "feed; set change_feed: false, or sync_mode: incremental_append_deduped to apply the change feed",
            id="full-refresh-with-change-feed",
        ),
        pytest.param(
            "change_feed: 'yes'",
            f"{STREAM}: change_feed: 'yes' is not a boolean; write true or false (unquoted)",
            id="quoted-boolean",
        ),
        pytest.param(
            "sync_mode: full_refresh\ncolumns: {include: [a, b], exclude: [email]}",
            f"{STREAM}: columns: include and exclude are both set; keep one: include lists the columns to "
            "copy, "
            "exclude the ones to leave out",
            id="include-and-exclude",
        ),
        pytest.param(
            "sync_mode: full_refresh\ncolumns: {include: []}",
            f"{STREAM}: columns.include: [] is not a list of column names; write a list such as [event_id]",
            id="empty-include",
        ),
        pytest.param(
            "cursor_field: updated_at\ncolumns: {exclude: [Updated_At]}",
            f"{STREAM}: columns.exclude: excludes 'updated_at', the stream's cursor_field; remove "
            "'updated_at' "
            "from columns.exclude, or choose another cursor_field",
            id="exclude-the-cursor",
        ),
        pytest.param(
            "cursor_field: updated_at\nprimary_key: [event_id]\ncolumns: {include: [updated_at, amount]}",
            f"{STREAM}: columns.include: leaves out 'event_id', the stream's primary_key; add 'event_id' to "
            "columns.include",
            id="include-without-the-key",
        ),
        pytest.param(
            "primary_key: []",
            f"{STREAM}: primary_key: [] is not a list of column names; write a list such as [event_id]",
            id="empty-primary-key",
        ),
        pytest.param(
            "cursor_field: updated_at\ncursor_lag: 10 minutes",
            f"{STREAM}: cursor_lag: '10 minutes' is not a duration; write a number with a unit s, m, h or d, "
            "such as 0s, 10m, 2h or 1d",
            id="bad-duration",
        ),
        pytest.param(
            "cursor_field: updated_at\ncursor_lag: 600",
            f"{STREAM}: cursor_lag: 600 is not a duration; write a number with a unit s, m, h or d, "
            "such as 0s, 10m, 2h or 1d",
            id="duration-without-unit",
        ),
        pytest.param(
            "sync_mode: full_refresh\nfreshness: soon",
            f"{STREAM}: freshness: 'soon' is not a duration; write how old the copy may get, such as 30m, 2h "
            "or 1d",
            id="freshness-not-a-duration",
        ),
        pytest.param(
            "sync_mode: full_refresh\nfreshness: -2h",
            f"{STREAM}: freshness: '-2h' is not a duration; write how old the copy may get, such as 30m, 2h "
            "or 1d",
            id="negative-freshness",
        ),
        pytest.param(
            "sync_mode: full_refresh\nfreshness: 30s",
            f"{STREAM}: freshness: '30s' is under a minute, finer than Dagster checks freshness; write 1m or "
            "more, such as 2h, or remove freshness",
            id="freshness-under-a-minute",
        ),
        pytest.param(
            "sync_mode: full_refresh\nschedule: '0 * * *'",
            f"{STREAM}: schedule: '0 * * *' is not a cron schedule; write five fields 'minute hour "
            "day-of-month month day-of-week', such as '15 * * * *'",
            id="cron-four-fields",
        ),
        pytest.param(
            "sync_mode: full_refresh\nschedule: '0 25 * * *'",
            f"{STREAM}: schedule: '0 25 * * *' is not a cron schedule; write five fields 'minute hour "
            "day-of-month month day-of-week', such as '15 * * * *'",
            id="cron-hour-25",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {granularity: daily, start: '2026-01-01'}\nlookback: -1",
            f"{STREAM}: lookback: -1 is not a number of partitions; write a whole number 0 or more",
            id="negative-lookback",
        ),
        pytest.param(
            "sync_mode: full_refresh\nlookback: 2",
            f"{STREAM}: lookback: counts earlier partitions, and this stream is unpartitioned; set "
            "partitions, "
            "or remove lookback",
            id="lookback-without-partitions",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: dayly, start: '2026-01-01'}",
            f"{STREAM}: partitions.granularity: 'dayly' is not a granularity; did you mean 'daily'? "
            "(hourly | daily | weekly | monthly)",
            id="misspelt-granularity",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: daily}",
            f"{STREAM}: partitions.start: missing; set the first window, such as '2026-01-01'",
            id="missing-start",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: daily, start: '2026-13-01'}",
            f"{STREAM}: partitions.start: '2026-13-01' is not a daily start; write it as '2026-01-01'",
            id="daily-not-a-date",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: daily, start: '2026-01-01-13:00'}",
            f"{STREAM}: partitions.start: a daily start is a date, '2026-01-01-13:00' has a time of day; "
            "write "
            "'2026-01-01' (YYYY-MM-DD)",
            id="daily-with-hour",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: hourly, start: '2026-01-01'}",
            f"{STREAM}: partitions.start: an hourly start needs an hour, '2026-01-01' has none; write "
            "'2026-01-01-00:00' (YYYY-MM-DD-HH:MM)",
            id="hourly-without-hour",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: hourly, start: '2026-01-01-13:30'}",
            f"{STREAM}: partitions.start: '2026-01-01-13:30' does not open an hourly window; start on the "
            "hour: '2026-01-01-13:00' or '2026-01-01-14:00'",
            id="hourly-not-on-the-hour",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: weekly, start: 2026-01-07}",
            f"{STREAM}: partitions.start: 2026-01-07 is a Wednesday, and weekly windows start on Sunday; use "
            "'2026-01-04' or '2026-01-11'",
            id="weekly-not-sunday",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: monthly, start: '2026-02-15'}",
            f"{STREAM}: partitions.start: 2026-02-15 is not the 1st of a month, and monthly windows start on "
            "the 1st; use '2026-02-01' or '2026-03-01'",
            id="monthly-not-first",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: daily, start: '2026-01-01', "
            "timezone: America/New_Yrok}",
            f"{STREAM}: partitions.timezone: 'America/New_Yrok' is not a time zone; did you mean "
            "'America/New_York'?",
            id="misspelt-time-zone",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: daily, start: '2026-01-01', "
            "timezone: Mars/Olympus}",
            f"{STREAM}: partitions.timezone: 'Mars/Olympus' is not a time zone; use an IANA time zone name "
            "such as UTC or Europe/Berlin",
            id="unknown-time-zone",
        ),
        pytest.param(
            "sync_mode: full_refresh\npartitions: {field: d, granularity: daily, start: '2026-01-01', "
            "include_current: maybe}",
            f"{STREAM}: partitions.include_current: 'maybe' is not a boolean; write true or false (unquoted)",
            id="include-current-not-boolean",
        ),
    ],
)
def test_bad_stream_setting_is_named_with_its_fix(tmp_path: Path, settings: str, expected: str) -> None:
    assert problems_of(tmp_path, one_stream(settings)) == [expected]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            "'main.s.t; DROP TABLE x'",
            "streams[0]: table: 'main.s.t; DROP TABLE x' is not a table name: 't; DROP TABLE x' has "
            "characters "
            "other than letters, digits and underscore (and * in a pattern); write catalog.schema.table, "
            "such as "
            "main.billing.usage_events, or a pattern such as main.billing.*",
        ),
        (
            "'main.billing.`usage`'",
            "streams[0]: table: 'main.billing.`usage`' is not a table name: '`usage`' has characters other "
            "than letters, digits and underscore (and * in a pattern); write catalog.schema.table, such as "
            "main.billing.usage_events, or a pattern such as main.billing.*",
        ),
        (
            "billing.usage_events",
            "streams[0]: table: 'billing.usage_events' is not catalog.schema.table (it has 2 part(s)); write "
            "catalog.schema.table, such as main.billing.usage_events, or a pattern such as main.billing.*",
        ),
    ],
)
def test_table_names_must_be_plain_identifiers(tmp_path: Path, table: str, expected: str) -> None:
    assert problems_of(tmp_path, one_stream("sync_mode: full_refresh", table=table)) == [expected]


def test_table_name_model_refuses_sql() -> None:
    assert TableName.parse("Main.Billing.Usage_Events") == TableName("main", "billing", "usage_events")
    with pytest.raises(ValueError, match="has characters other than letters"):
        TableName.parse("main.s.t; DROP TABLE x")
    with pytest.raises(ValueError, match="not a lower-case identifier"):
        TableName("main", "s", "t--")


def test_destination_and_file_level_problems(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """
        destinaton: {uri: out}
        defaults: {table: main.x.y, cursor_lag: 5}
        streams: []
        """,
    ) == [
        "top level: destinaton: unknown key; did you mean 'destination'?",
        "destination: uri: missing; set destination.uri (such as data/destination) or "
        "ZENSKAR_PIPELINE_DESTINATION",
        "defaults: table: a table is chosen per stream; move it into a streams entry",
        "defaults: cursor_lag: 5 is not a duration; write a number with a unit s, m, h or d, such as 0s, "
        "10m, "
        "2h or 1d",
        "top level: streams: no streams listed; list the tables to copy, such as "
        "`streams: [{table: main.billing.usage_events}]`",
    ]


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        (
            "{uri: out, namespace: sorce}",
            "destination: namespace: 'sorce' is not a namespace; did you mean 'source'? (source | "
            "destination "
            "| a pattern using ${SOURCE_NAMESPACE}, such as raw_${SOURCE_NAMESPACE})",
        ),
        (
            "{uri: out, namespace: raw}",
            "destination: namespace: 'raw' is not a namespace; use source | destination | a pattern using "
            "${SOURCE_NAMESPACE}, such as raw_${SOURCE_NAMESPACE}; for one fixed folder, use namespace: "
            "destination with default_schema: raw",
        ),
        (
            "{uri: out, namespace: 'raw-${SOURCE_NAMESPACE}'}",
            "destination: namespace: 'raw-${SOURCE_NAMESPACE}' is not a namespace pattern; besides "
            "${SOURCE_NAMESPACE}, use only letters, digits and underscores",
        ),
        (
            "{uri: out, namespace: destination}",
            "destination: default_schema: missing; namespace: destination lands every table in it; set "
            "destination.default_schema, such as zenskar",
        ),
        (
            "{uri: out, prefix: 'zs-'}",
            "destination: prefix: 'zs-' is not a name of letters, digits and underscores; use only those "
            "characters",
        ),
        (
            "{uri: 'ftp://host/x'}",
            "destination: uri: ftp:// is not a storage delta-rs writes to; use one of s3 | s3a | gs | az | "
            "adl "
            "| azure | abfs | abfss | file",
        ),
        (
            "{uri: out, schema: x}",
            "destination: schema: unknown key; did you mean 'default_schema'?",
        ),
        (
            "{uri: out, bucket: x}",
            "destination: bucket: unknown key; valid keys: uri, namespace, default_schema, prefix",
        ),
    ],
)
def test_bad_destination_is_named_with_its_fix(tmp_path: Path, destination: str, expected: str) -> None:
    assert problems_of(tmp_path, with_destination(destination)) == [expected]


# --- values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", dt.timedelta(0)),
        (0, dt.timedelta(0)),
        ("10m", dt.timedelta(minutes=10)),
        ("2h", dt.timedelta(hours=2)),
        ("1d", dt.timedelta(days=1)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        ("45s", dt.timedelta(seconds=45)),
    ],
)
def test_durations(text: object, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("granularity", "start", "timezone", "key"),
    [
        ("hourly", "2026-01-01-13:00", "Europe/Berlin", "2026-01-01-13:00"),
        ("hourly", "2026-01-01 13:00", "UTC", "2026-01-01-13:00"),
        ("daily", "2026-01-01", "America/New_York", "2026-01-01"),
        ("daily", "2026-03-01", "UTC", "2026-03-01"),
        ("weekly", "2026-01-04", "UTC", "2026-01-04"),
        ("monthly", "2026-02-01", "Asia/Kolkata", "2026-02-01"),
    ],
)
def test_valid_starts_are_dagsters_first_partition(
    tmp_path: Path, granularity: str, start: str, timezone: str, key: str
) -> None:
    settings = (
        "sync_mode: full_refresh\n"
        f"partitions: {{field: d, granularity: {granularity}, start: '{start}', timezone: {timezone}}}"
    )
    partitions = load(tmp_path, one_stream(settings)).streams[0].settings.partitions
    assert partitions is not None and partitions.start_key == key
    kinds = {
        "hourly": dg.HourlyPartitionsDefinition,
        "daily": dg.DailyPartitionsDefinition,
        "weekly": dg.WeeklyPartitionsDefinition,
        "monthly": dg.MonthlyPartitionsDefinition,
    }
    definition = kinds[granularity](
        start_date=partitions.start_key, timezone=partitions.timezone, end_offset=partitions.end_offset
    )
    assert definition.get_first_partition_key() == key


def test_unquoted_yaml_dates_are_accepted(tmp_path: Path) -> None:
    settings = """
        sync_mode: full_refresh
        partitions: {field: d, granularity: daily, start: 2026-01-01, include_current: false}
    """
    partitions = load(tmp_path, one_stream(settings)).streams[0].settings.partitions
    assert partitions is not None
    assert (partitions.start_key, partitions.end_offset) == ("2026-01-01", 0)


def test_a_table_listed_twice_is_refused(tmp_path: Path) -> None:
    text = one_stream("sync_mode: full_refresh") + "  - table: MAIN.billing.usage_events\n"
    assert problems_of(tmp_path, text) == [
        "stream main.billing.usage_events: table: listed twice (streams[0] and streams[1]); keep one entry "
        "per table"
    ]


def test_any_column_name_unity_catalog_allows_is_accepted(tmp_path: Path) -> None:
    # YAML: quote a name holding `: `, ` #`, a leading backtick or quote; a dot or space needs no quotes.
    settings = """
        sync_mode: incremental_append_deduped
        cursor_field: order
        primary_key: [número, "we`ird"]
        columns: {exclude: ["e-mail, (private)", 'say "hi"', a.b]}
        partitions: {field: with space, granularity: daily, start: "2026-01-01"}
    """
    stream = load(tmp_path, one_stream(settings)).streams[0].settings
    assert stream.cursor_field == "order"
    assert stream.primary_key == ("número", "we`ird")
    assert stream.columns is not None and stream.columns.exclude == ("e-mail, (private)", 'say "hi"', "a.b")
    assert stream.partitions is not None and stream.partitions.field == "with space"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ('""', "'' is not a column name"),
        ("x" * 256, "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... is not a column name (at most 255"),
    ],
)
def test_only_names_no_column_can_have_are_refused(tmp_path: Path, name: str, expected: str) -> None:
    (problem,) = problems_of(tmp_path, one_stream(f"sync_mode: incremental_append\ncursor_field: {name}"))
    assert problem.startswith(f"{STREAM}: cursor_field: {expected}")
