"""The `deliver:` block's bad input, each one line naming the stream, the setting and the fix: from the file
alone, and against the source table's columns and types (as discovery describes them)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from zenskar_pipeline.config import ConfigError, TableName
from zenskar_pipeline.databricks.discovery import DiscoveredCatalog, DiscoveredColumn, DiscoveredTable
from zenskar_pipeline.streams import validate_streams
from zenskar_pipeline_tests.test_config.streams_files import load, one_stream, problems_of

STREAM = "stream main.billing.usage_events"
DELIVER = (
    "deliver: {api_slug: api_calls, customer_id: customer_id, timestamp: event_time, "
    "data: {quantity: quantity}}"
)


@pytest.mark.parametrize(
    ("deliver", "expected"),
    [
        pytest.param(
            "deliver: {customer_id: customer_id, timestamp: event_time}",
            f"{STREAM}: deliver.api_slug: missing; set deliver.api_slug to the usage event's slug in Zenskar",
            id="missing-slug",
        ),
        pytest.param(
            "deliver: {api_slug: 'api calls', customer_id: customer_id, timestamp: event_time}",
            f"{STREAM}: deliver.api_slug: 'api calls' is not a usage event's api_slug; write the slug "
            "Zenskar shows for the usage event (letters, digits, _ and -), such as api_calls",
            id="slug-with-a-space",
        ),
        pytest.param(
            "deliver: {api_slug: api_calls, customer: customer_id, timestamp: event_time}",
            f"{STREAM}: deliver.customer: unknown key; did you mean 'customer_id'?",
            id="misspelt-key",
        ),
        pytest.param(
            "deliver: {api_slug: a, customer_id: customer_id, timestamp: event_time, data: [quantity]}",
            f"{STREAM}: deliver.data: expected a mapping of event field: column, got ['quantity']; write it "
            "as {quantity: quantity_column, metric: metric_column}",
            id="data-not-a-mapping",
        ),
        pytest.param(
            "deliver: {api_slug: api_calls, customer_id: customer_id, timestamp: event_time, settle: soon}",
            f"{STREAM}: deliver.settle: 'soon' is not a duration; write a number with a unit s, m, h or d, "
            "such as 0s, 10m, 2h or 1d",
            id="settle-not-a-duration",
        ),
        pytest.param(
            f"columns: {{exclude: [quantity]}}\n{DELIVER}",
            f"{STREAM}: columns.exclude: excludes 'quantity', the stream's deliver.data.quantity; remove "
            "'quantity' from columns.exclude, or choose another deliver.data.quantity",
            id="excluded-column",
        ),
    ],
)
def test_a_bad_deliver_block_is_one_line_with_the_fix(tmp_path: Path, deliver: str, expected: str) -> None:
    settings = (
        f"sync_mode: incremental_append_deduped\ncursor_field: updated_at\nprimary_key: [event_id]\n{deliver}"
    )
    assert problems_of(tmp_path, one_stream(settings)) == [expected]


def _catalog(*extra: DiscoveredColumn, primary_key: tuple[str, ...] = ("event_id",)) -> DiscoveredCatalog:
    names = ["event_id", "customer_id", "event_time", "quantity", "updated_at"]
    types = ["string", "string", "timestamp", "bigint", "timestamp"]
    columns = tuple(
        DiscoveredColumn(n, t, True, i) for i, (n, t) in enumerate(zip(names, types, strict=True))
    )
    columns += tuple(
        DiscoveredColumn(c.name, c.full_data_type, True, len(columns) + i) for i, c in enumerate(extra)
    )
    table = DiscoveredTable(TableName("main", "billing", "usage_events"), columns, primary_key)
    return DiscoveredCatalog({"main.billing.usage_events": table}, ("main",), dt.datetime.now(dt.UTC))


def _source_problems(tmp_path: Path, settings: str, catalog: DiscoveredCatalog) -> list[str]:
    config = load(tmp_path, one_stream(settings))
    with pytest.raises(ConfigError) as caught:
        validate_streams(config, catalog)
    return [str(problem) for problem in caught.value.problems]


KEYED = "sync_mode: incremental_append_deduped\ncursor_field: updated_at\nprimary_key: [event_id]\n"


def test_a_column_the_table_lacks_is_named_with_the_nearest(tmp_path: Path) -> None:
    deliver = "deliver: {api_slug: a, customer_id: customer_id, timestamp: event_time, data: {q: quantty}}"
    assert _source_problems(tmp_path, KEYED + deliver, _catalog()) == [
        f"{STREAM}: deliver.data.q: 'quantty' is not a column of main.billing.usage_events; did you mean "
        "'quantity'?"
    ]


def test_a_type_zenskar_has_no_type_for_is_refused(tmp_path: Path) -> None:
    deliver = "deliver: {api_slug: a, customer_id: customer_id, timestamp: event_time, data: {tags: tags}}"
    problems = _source_problems(
        tmp_path, KEYED + deliver, _catalog(DiscoveredColumn("tags", "array<string>", True, 0))
    )
    assert problems == [
        f"{STREAM}: deliver.data.tags: 'tags' is array<string>, which a Zenskar usage event has no type for "
        "(Bool, Date32, DateTime64, Decimal, Float64, Int64, String); send a column of one of those types "
        "(cast it in a view), or leave the field out"
    ]


def test_the_timestamp_and_customer_columns_must_be_a_time_and_an_id(tmp_path: Path) -> None:
    deliver = "deliver: {api_slug: a, customer_id: amount, timestamp: quantity}"
    problems = _source_problems(
        tmp_path, KEYED + deliver, _catalog(DiscoveredColumn("amount", "double", True, 0))
    )
    assert problems == [
        f"{STREAM}: deliver.customer_id: 'amount' is double; a customer id is sent as text; choose a STRING "
        "or integer column that holds Zenskar's customer id",
        f"{STREAM}: deliver.timestamp: 'quantity' is bigint, not a time; choose the TIMESTAMP, TIMESTAMP_NTZ "
        "or DATE column of the event",
    ]


def test_rows_a_sync_mode_cannot_tell_apart_are_refused(tmp_path: Path) -> None:
    settings = (
        "sync_mode: full_refresh\ndeliver: {api_slug: a, customer_id: customer_id, timestamp: event_time}"
    )
    assert _source_problems(tmp_path, settings, _catalog(primary_key=())) == [
        f"{STREAM}: deliver: sync_mode full_refresh without a primary key cannot tell one event from "
        "another, so a row could go out twice; set primary_key (or declare one in Unity Catalog), or use "
        "sync_mode incremental_append"
    ]


def test_a_keyless_append_delivers_every_row_as_its_own_event(tmp_path: Path) -> None:
    settings = (
        "sync_mode: incremental_append\ncursor_field: updated_at\n"
        "deliver: {api_slug: a, customer_id: customer_id, timestamp: event_time}"
    )
    config = load(tmp_path, one_stream(settings))
    [stream] = validate_streams(config, _catalog(primary_key=()))
    assert stream.settings.deliver is not None and stream.settings.deliver.api_slug == "a"
