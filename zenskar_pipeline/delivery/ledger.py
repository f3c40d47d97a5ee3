"""The delivery ledger and the dead letters: two Delta tables beside each delivering stream's copy.

The ledger is append-only. Per event it holds a `planned` entry (its batch, the batch's idempotency key, its
place in the batch and its exact JSON), written before the batch is sent, and then the answer: `accepted`,
`dead_letter` (Zenskar refused it, or it cannot be sent), or `retry` (its batch was refused as a whole:
the event is planned again in a smaller batch, in the same commit). A `released` entry after a dead letter
lets the event be planned again. A batch with a `planned` entry and no
answer was sent, or was about to be, when its run died: the next run sends it again, the same bytes under
the same key, so Zenskar answers it once whatever happened. The ledger alone keeps an answered event from
going out again, also after Zenskar has forgotten the key (24 hours).

`<copy>__zenskar_ledger` and `<copy>__zenskar_dead_letters`, on the copy's storage, with its options.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from zenskar_pipeline.destinations import Destination

LEDGER_SUFFIX = "__zenskar_ledger"
DEAD_LETTERS_SUFFIX = "__zenskar_dead_letters"
RUN_KEY = "zenskar_run_id"  # in each commit's commitInfo: the run that wrote it
# Of an event's dead_letter and released entries (a statement's `e`), the latest is a dead letter: in force.
STILL_DEAD = (
    "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY \"at\" DESC, entry = 'released' DESC) = 1 "
    "AND entry = 'dead_letter'"
)


class Entry(StrEnum):
    PLANNED = "planned"
    ACCEPTED = "accepted"
    DEAD_LETTER = "dead_letter"
    RETRY = "retry"
    RELEASED = "released"  # a dead letter let go by a person (`deliver --release-dead-letters`)


LEDGER_SCHEMA = pa.schema(
    [
        ("partition", pa.string()),  # the window's partition key; NULL for an unpartitioned stream
        ("event_id", pa.string()),  # the event's identity: its key's values as a JSON array
        ("entry", pa.string()),
        ("batch_id", pa.string()),
        ("idempotency_key", pa.string()),
        ("position", pa.int32()),  # the event's place in its batch (planned entries)
        ("event", pa.string()),  # the event's JSON text as sent (planned entries)
        ("http_status", pa.int32()),  # Zenskar's answer's status (answers; NULL: none was received)
        ("answer", pa.string()),  # Zenskar's answer's body, or why the event was not sent
        ("at", pa.timestamp("us", tz="UTC")),
        ("run_id", pa.string()),
        ("identity", pa.string()),  # what event ids are made of (planned entries): columns and types
        ("identity_key", pa.string()),  # `identity` digested, short enough for exact file statistics
    ]
)
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("partition", pa.string()),
        ("event_id", pa.string()),
        ("batch_id", pa.string()),
        ("idempotency_key", pa.string()),
        ("event", pa.string()),  # NULL when the row could not be made an event
        ("http_status", pa.int32()),
        ("answer", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("run_id", pa.string()),
    ]
)


class LedgerMoved(Exception):
    """Another run wrote to the ledger since it was read: what was planned from that reading may overlap
    what the other run planned, so it was not committed."""


class DeliveryLedger:
    """The ledger and dead letters of one stream's deliveries."""

    def __init__(self, copy_uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = copy_uri + LEDGER_SUFFIX
        self.dead_letters_uri = copy_uri + DEAD_LETTERS_SUFFIX
        self.storage_options = storage_options

    @classmethod
    def beside(cls, copy: Destination) -> DeliveryLedger:
        return cls(copy.uri, copy.storage_options)

    def __repr__(self) -> str:  # never the storage options: they may hold secrets
        return f"DeliveryLedger({self.uri!r})"

    # --- reading -------------------------------------------------------------------------------------------

    def version(self) -> int | None:
        """The ledger's latest commit version; None before its first commit."""
        table = self._open(self.uri)
        return None if table is None else table.version()

    def entries(self, partitions: Sequence[str] | None, version: int | None) -> pa.Table:
        """Every entry of the windows `partitions` (None: the unpartitioned stream's), as of `version`."""
        if version is None:
            return LEDGER_SCHEMA.empty_table()
        dataset = DeltaTable(
            self.uri, version=version, storage_options=self.storage_options
        ).to_pyarrow_dataset()
        field = pc.field("partition")
        where = field.is_null() if partitions is None else field.isin(list(partitions))
        return dataset.to_table(filter=where)

    def entries_of_events(self, event_ids: pa.Array, version: int | None) -> pa.Table:
        """Every entry, in any window, of the events `event_ids` (an event whose row moved to another window
        since it was delivered is still delivered), as of `version`; without `answer`."""
        columns = ["partition", "event_id", "entry", "batch_id", "event", "at"]
        if version is None or len(event_ids) == 0:
            return LEDGER_SCHEMA.empty_table().select(columns)
        dataset = DeltaTable(
            self.uri, version=version, storage_options=self.storage_options
        ).to_pyarrow_dataset()
        quoted = ", ".join(f'"{name}"' for name in columns)
        with duckdb.connect() as con:
            con.register("ledger", dataset)
            con.register("wanted", pa.table({"event_id": event_ids}))
            return con.sql(
                f"SELECT {quoted} FROM ledger WHERE event_id IN (SELECT event_id FROM wanted)"
            ).to_arrow_table()

    def dead_lettered(self, partitions: Sequence[str] | None, version: int | None) -> pa.Table:
        """The dead-letter entries still in force in these windows, as of `version`: one per event, the
        latest (a dead letter not released since); the dead-letter table holds each one's detail."""
        columns = ["partition", "event_id", "batch_id", "http_status", "at"]
        if version is None:
            return LEDGER_SCHEMA.empty_table().select(columns)
        dataset = DeltaTable(
            self.uri, version=version, storage_options=self.storage_options
        ).to_pyarrow_dataset()
        field = pc.field("partition")
        window = field.is_null() if partitions is None else field.isin(list(partitions))
        kinds = pc.field("entry").isin([Entry.DEAD_LETTER.value, Entry.RELEASED.value])
        entries = dataset.to_table(columns=[*columns, "entry"], filter=window & kinds)
        quoted = ", ".join(f'"{name}"' for name in columns)
        with duckdb.connect() as con:
            con.register("e", entries)
            return con.sql(
                f"SELECT {quoted} FROM e WHERE entry IN ('dead_letter', 'released') {STILL_DEAD}"
            ).to_arrow_table()

    def release(self, partitions: Sequence[str] | None, run_id: str, now: dt.datetime) -> tuple[int, int]:
        """Let the dead letters of these windows be planned again: those Zenskar refused (a 4xx: it took
        none of their batch) or that were never sent; not those left unanswered past the key's lifetime,
        which Zenskar may hold. Returns (released, kept)."""
        dead = self.dead_lettered(partitions, self.version())
        unknown = pc.and_(pc.is_valid(dead.column("batch_id")), pc.is_null(dead.column("http_status")))
        free = dead.filter(pc.invert(unknown))
        if free.num_rows:
            # After the dead letters it releases, whatever this machine's clock says.
            latest = pc.max(free.column("at")).as_py()
            now = max(now, latest + dt.timedelta(microseconds=1))
            released = entries_table(
                {
                    "partition": free.column("partition"),
                    "event_id": free.column("event_id"),
                    "entry": Entry.RELEASED.value,
                    "answer": "released, to be delivered again",
                    "at": now,
                    "run_id": run_id,
                },
                free.num_rows,
            )
            self.record(released, run_id)
        return free.num_rows, dead.num_rows - free.num_rows

    def identity_keys(self) -> set[str]:
        """The `identity_key`s planned entries carry, from the Delta log's file statistics (no data read;
        statistics cut long strings, so the short digest is read, not the description): one, unless how
        the stream tells its events apart has changed."""
        table = self._open(self.uri)
        if table is None:
            return set()
        files = pa.table(table.get_add_actions(flatten=True))
        found: set[str] = set()
        for bound in ("min.identity_key", "max.identity_key"):
            if bound in files.column_names:
                found.update(value for value in files.column(bound).to_pylist() if value)
        return found

    def identities_other_than(self, key: str) -> list[str]:
        """The identity descriptions of planned entries whose `identity_key` is not `key` (reads the data:
        for an error message)."""
        table = self._open(self.uri)
        if table is None:
            return []
        field = pc.field("identity_key")
        other = field.is_valid() & (field != pc.scalar(key))
        found = table.to_pyarrow_dataset().to_table(columns=["identity"], filter=other)
        return sorted({value for value in found.column("identity").to_pylist() if value})

    def dead_letters(self, partitions: Sequence[str] | None) -> pa.Table:
        """The dead letters of the windows `partitions` (None: the unpartitioned stream's)."""
        table = self._open(self.dead_letters_uri)
        if table is None:
            return DEAD_LETTER_SCHEMA.empty_table()
        field = pc.field("partition")
        where = field.is_null() if partitions is None else field.isin(list(partitions))
        return table.to_pyarrow_dataset().to_table(filter=where)

    # --- writing -------------------------------------------------------------------------------------------

    def plan(self, entries: pa.Table, read_version: int | None, run_id: str) -> int:
        """Commit planned entries read against ledger `read_version` (None: no ledger yet), only if nothing
        else was committed since: `LedgerMoved` otherwise. Returns the version committed."""
        entries = entries.cast(LEDGER_SCHEMA)
        properties = CommitProperties(max_commit_retries=0, custom_metadata={RUN_KEY: run_id})
        try:
            if read_version is None:
                write_deltalake(
                    self.uri,
                    entries,
                    mode="error",
                    storage_options=self.storage_options,
                    commit_properties=properties,
                )
                return 0
            table = DeltaTable(self.uri, version=read_version, storage_options=self.storage_options)
            write_deltalake(table, entries, mode="append", commit_properties=properties)
        except (CommitFailedError, FileExistsError) as error:
            raise LedgerMoved(str(error)) from error
        except DeltaError as error:
            if "exist" in str(error).lower() or "version" in str(error).lower():
                raise LedgerMoved(str(error)) from error
            raise
        return read_version + 1

    def plan_more(self, entries: pa.Table, since: int, run_id: str) -> int:
        """Commit more planned entries of run `run_id`, whose last plan was version `since`: only if every
        commit after it is the run's own (its answers), else `LedgerMoved`. Returns the version committed."""
        latest = DeltaTable(self.uri, storage_options=self.storage_options)
        newer = [
            c for c in latest.history(limit=latest.version() - since + 1) if c.get("version", -1) > since
        ]
        if any(commit.get(RUN_KEY) != run_id for commit in newer):
            raise LedgerMoved(f"{self.uri}: another run committed to the ledger after version {since}")
        return self.plan(entries, latest.version(), run_id)

    def record(self, entries: pa.Table, run_id: str) -> None:
        """Append answers (and the plans of batches split from refused ones)."""
        write_deltalake(
            self.uri,
            entries.cast(LEDGER_SCHEMA),
            mode="append",
            storage_options=self.storage_options,
            commit_properties=CommitProperties(custom_metadata={RUN_KEY: run_id}),
        )

    def add_dead_letters(self, rows: pa.Table) -> None:
        if rows.num_rows:
            write_deltalake(
                self.dead_letters_uri,
                rows.cast(DEAD_LETTER_SCHEMA),
                mode="append",
                storage_options=self.storage_options,
            )

    def _open(self, uri: str) -> DeltaTable | None:
        try:
            return DeltaTable(uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None


def now_column(count: int, at: dt.datetime) -> pa.Array:
    return pa.array([at] * count, pa.timestamp("us", tz="UTC"))


def identity_key(identity: str) -> str:
    """A digest of an identity description (`events.identity_description`) that file statistics keep whole."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def entries_table(rows: dict[str, Any], count: int) -> pa.Table:
    """Ledger entries from columns given (a value is repeated `count` times when not a list)."""
    columns = {}
    for field in LEDGER_SCHEMA:
        value = rows.get(field.name)
        if isinstance(value, pa.Array | pa.ChunkedArray):
            columns[field.name] = value.cast(field.type)
        elif isinstance(value, list):
            columns[field.name] = pa.array(value, field.type)
        else:
            columns[field.name] = pa.repeat(pa.scalar(value, field.type), count)
    return pa.table(columns, schema=LEDGER_SCHEMA)
