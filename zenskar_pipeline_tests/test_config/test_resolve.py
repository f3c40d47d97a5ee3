"""Resolving streams: patterns against discovered tables, where each copy lands, checks at resolve time."""

from __future__ import annotations

from pathlib import Path

import pytest

from zenskar_pipeline.config import (
    ColumnSelection,
    ConfigError,
    Deletes,
    OnMissingHistory,
    SyncMode,
    source_problems,
)
from zenskar_pipeline.streams import resolve_streams
from zenskar_pipeline_tests.test_config.streams_files import (
    DISCOVERED,
    load,
    one_stream,
    with_destination,
)

# --- patterns and explicit entries ------------------------------------------------------------------------


def test_pattern_expands_against_discovered_tables_and_explicit_entries_win(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: out}
        streams:
          - table: main.billing.*
            sync_mode: full_refresh
          - table: main.billing.usage_events
            cursor_field: updated_at
          - table: Main.*.Compute_*
            sync_mode: full_refresh
        """,
    )
    resolved = resolve_streams(config, [*DISCOVERED, "main.billing.bad-name", "MAIN.METERING.COMPUTE_DAILY"])

    by_name = {stream.name: stream for stream in resolved}
    assert list(by_name) == [
        "main.billing.customers",
        "main.billing.invoices",
        "main.billing.usage_events",
        "main.metering.compute_daily",
        "main.metering.compute_hours",
    ]
    assert by_name["main.billing.usage_events"].settings.sync_mode is SyncMode.INCREMENTAL_APPEND_DEDUPED
    assert by_name["main.billing.usage_events"].pattern is None
    assert by_name["main.billing.customers"].settings.sync_mode is SyncMode.FULL_REFRESH
    assert by_name["main.billing.customers"].pattern == "main.billing.*"
    assert by_name["main.metering.compute_hours"].pattern == "main.*.compute_*"


def test_pattern_matching_nothing_is_named(tmp_path: Path) -> None:
    config = load(tmp_path, one_stream("sync_mode: full_refresh", table="main.sales.*"))
    with pytest.raises(ConfigError) as caught:
        resolve_streams(config, DISCOVERED)
    assert [str(p) for p in caught.value.problems] == [
        "stream main.sales.*: table: the pattern matches none of the 6 discovered tables; check the pattern, "
        "or run `zenskar-pipeline discover` to refresh the cached tables"
    ]


def test_two_patterns_selecting_one_table_are_refused(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: out}
        defaults: {sync_mode: full_refresh}
        streams:
          - table: main.billing.*
          - table: "*.billing.usage_*"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        resolve_streams(config, DISCOVERED)
    assert [str(p) for p in caught.value.problems] == [
        "stream main.billing.usage_events: table: selected by two patterns, main.billing.* (streams[0]) and "
        "*.billing.usage_* (streams[1]); add an explicit entry for main.billing.usage_events, or narrow one "
        "of the patterns"
    ]


# --- where copies land ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("{uri: s3://lake/copies/}", "s3://lake/copies/main/billing/usage_events"),
        ("{uri: s3://lake, namespace: source, prefix: zs_}", "s3://lake/main/billing/zs_usage_events"),
        (
            "{uri: gs://lake, namespace: destination, default_schema: zenskar}",
            "gs://lake/zenskar/usage_events",
        ),
        (
            "{uri: abfss://c@acct.dfs.core.windows.net/x, namespace: destination, default_schema: z, "
            "prefix: p_}",
            "abfss://c@acct.dfs.core.windows.net/x/z/p_usage_events",
        ),
        ("{uri: s3://lake, namespace: 'raw_${SOURCE_NAMESPACE}'}", "s3://lake/raw_main_billing/usage_events"),
        (
            "{uri: s3://lake, namespace: '${SOURCE_NAMESPACE}_v2', prefix: zenskar_}",
            "s3://lake/main_billing_v2/zenskar_usage_events",
        ),
    ],
)
def test_destination_table_per_namespace_and_prefix(tmp_path: Path, destination: str, expected: str) -> None:
    config = load(tmp_path, with_destination(destination))
    (stream,) = resolve_streams(config, DISCOVERED)
    assert stream.destination_uri == expected
    assert expected.endswith(f"/{stream.destination_namespace}/{stream.destination_table}")


def test_a_local_destination_is_relative_to_the_streams_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.parent)
    config = load(
        tmp_path, one_stream("sync_mode: full_refresh").replace("uri: out", "uri: data/destination")
    )
    (stream,) = resolve_streams(config, DISCOVERED)
    assert stream.destination_uri == f"{tmp_path}/data/destination/main/billing/usage_events"


def test_two_streams_in_one_destination_table_are_refused(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: out, namespace: destination, default_schema: zenskar}
        defaults: {sync_mode: full_refresh}
        streams:
          - table: main.billing.events
          - table: main.metering.events
          - table: main.metering.other
        """,
    )
    with pytest.raises(ConfigError) as caught:
        resolve_streams(config, [])
    assert [str(p) for p in caught.value.problems] == [
        f"stream main.metering.events: destination: lands in {tmp_path}/out/zenskar/events, as stream "
        "main.billing.events does; use destination.namespace: source, which keeps catalogs and schemas "
        "apart, "
        "or copy only one of the two tables"
    ]


def test_a_namespace_pattern_can_collide_too(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: s3://lake, namespace: "${SOURCE_NAMESPACE}"}
        defaults: {sync_mode: full_refresh}
        streams:
          - table: a_b.c.t
          - table: a.b_c.t
        """,
    )
    with pytest.raises(
        ConfigError, match=r"stream a\.b_c\.t: destination: lands in s3://lake/a_b_c/t, as stream a_b\.c\.t"
    ):
        resolve_streams(config, [])


# --- cursor and partition field, required when streams resolve --------------------------------------------


def test_incremental_stream_without_cursor_loads_but_does_not_resolve(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        one_stream(
            """
            sync_mode: incremental_append
            partitions: {granularity: daily, start: "2026-01-01"}
            """
        ),
    )
    with pytest.raises(ConfigError) as caught:
        resolve_streams(config, DISCOVERED)
    assert [str(p) for p in caught.value.problems] == [
        "stream main.billing.usage_events: cursor_field: missing; sync_mode incremental_append without "
        "change_feed reads rows by a cursor; set cursor_field to a column that grows with every change "
        "(`zenskar-pipeline discover` suggests one), or set change_feed: true",
        "stream main.billing.usage_events: partitions.field: missing, and there is no cursor_field to "
        "default "
        "to; set partitions.field to the DATE or TIMESTAMP column that places a row in its window",
    ]
    # discover resolves it anyway, to suggest the cursor
    (stream,) = resolve_streams(config, DISCOVERED, allow_missing_cursor=True)
    assert stream.settings.cursor_field is None


def test_change_feed_streams_need_no_cursor(tmp_path: Path) -> None:
    config = load(tmp_path, one_stream("change_feed: true\ndeletes: soft\non_missing_history: resnapshot"))
    (stream,) = resolve_streams(config, DISCOVERED)
    assert (stream.settings.deletes, stream.settings.on_missing_history) == (
        Deletes.SOFT,
        OnMissingHistory.RESNAPSHOT,
    )


# --- columns and the source ------------------------------------------------------------------------------


def test_excluded_columns_are_never_selected() -> None:
    columns = ["event_id", "Email", "amount", "email_domain"]
    assert ColumnSelection(exclude=("email",)).select(columns) == ["event_id", "amount", "email_domain"]
    assert ColumnSelection(include=("amount", "EVENT_ID")).select(columns) == ["event_id", "amount"]
    assert ColumnSelection().select(columns) == columns


def test_source_problems_name_unknown_tables_and_columns(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        destination: {uri: out}
        streams:
          - table: main.billing.usage_event
            sync_mode: full_refresh
          - table: main.billing.customers
            cursor_field: updated
            primary_key: customer_id
            columns: {exclude: [emial]}
        """,
    )
    streams = resolve_streams(config, DISCOVERED)
    columns = {
        "main.billing.usage_events": ["event_id", "updated_at"],
        "main.billing.customers": ["id", "email", "updated_at"],
    }
    assert [str(p) for p in source_problems(streams, columns)] == [
        "stream main.billing.usage_event: table: not found among the 2 discovered tables; did you mean "
        "'main.billing.usage_events'?",
        "stream main.billing.customers: cursor_field: 'updated' is not a column of main.billing.customers; "
        "did "
        "you mean 'updated_at'?",
        "stream main.billing.customers: primary_key: 'customer_id' is not a column of "
        "main.billing.customers; "
        "columns: id, email, updated_at",
        "stream main.billing.customers: columns.exclude: 'emial' is not a column of main.billing.customers; "
        "did "
        "you mean 'email'?",
    ]
