"""Two streams of a small billing source, landed before a test runs something bad, so that it can show that
the bad run loses and changes nothing: usage events appended by daily partition, customers refreshed whole."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline import runner
from zenskar_pipeline_tests.test_end_to_end.project import CopyState, copy_state, land

CATALOG = "ze2e_bad"
EVENTS = f"{CATALOG}.billing.usage_events"
CUSTOMERS = f"{CATALOG}.billing.customers"

STREAMS = """\
destination:
  uri: {destination}
streams:
  - table: {events}
    sync_mode: incremental_append
    cursor_field: updated_at
    partitions:
      field: event_time
      granularity: daily
      start: "2026-01-01"
  - table: {customers}
    sync_mode: full_refresh
"""


def write_source_tables(root: Path) -> None:
    """Written once per warehouse: nine events over three days, two customers (no primary key declared)."""
    if (root / CATALOG).exists():
        return
    events = pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("event_time", pa.timestamp("us", tz="UTC")),
            pa.field("quantity", pa.int64()),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    day = [dt.datetime(2026, 1, 1 + i % 3, i, tzinfo=dt.UTC) for i in range(9)]
    rows = [
        {"event_id": f"e{i}", "event_time": day[i], "quantity": i, "updated_at": day[i]} for i in range(9)
    ]
    tables.create_table(root, EVENTS, pa.Table.from_pylist(rows, events), primary_key=["event_id"])
    customers = pa.schema(
        [
            pa.field("customer_id", pa.string(), nullable=False),
            pa.field("plan", pa.string()),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    people = [{"customer_id": "c1", "plan": "pro", "updated_at": day[0]}, {"customer_id": "c2"}]
    tables.create_table(root, CUSTOMERS, pa.Table.from_pylist(people, customers))


@dataclass(frozen=True)
class LandedCopies:
    destination: Path
    before: dict[str, CopyState]  # by stream, as landed

    def streams_text(self, *edits: tuple[str, str]) -> str:
        """The streams file that landed the copies, with each (old, new) text replaced once."""
        text = STREAMS.format(destination=self.destination, events=EVENTS, customers=CUSTOMERS)
        for old, new in edits:
            assert text.count(old) == 1, old
            text = text.replace(old, new)
        return text

    def copy(self, stream: str) -> Path:
        return self.destination.joinpath(*stream.split("."))

    def now(self) -> dict[str, CopyState]:
        return {stream: copy_state(self.copy(stream)) for stream in self.before}


def land_copies(warehouse: LocalWarehouse, folder: Path) -> LandedCopies:
    """Both streams landed through the runner: three daily partitions of events, the customers whole."""
    write_source_tables(warehouse.root)
    landed = LandedCopies(folder / "destination", {})
    config = folder / "streams.yaml"
    config.write_text(landed.streams_text())
    land(warehouse, config, runner.Selection(first="2026-01-01", last="2026-01-03"))
    before = {stream: copy_state(landed.copy(stream)) for stream in (EVENTS, CUSTOMERS)}
    assert len(before[EVENTS].rows) == 9 and len(before[CUSTOMERS].rows) == 2
    return LandedCopies(landed.destination, before)


def write_streams(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "streams.yaml"
    path.write_text(text)
    return path
