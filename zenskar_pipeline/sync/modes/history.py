"""`history`: every version of a row is kept. A version carries `_zenskar_valid_from`, `_zenskar_valid_to`
(NULL while current) and `_zenskar_is_current`; a row whose content changed closes its key's previous
version, and an unchanged row adds none. Billing teams use it to answer "what did usage look like when we
invoiced" (Fivetran's history mode, dlt's `scd2`).

Two ways to see changes, as for the other modes:
- by cursor (`cursor_field`): reads as `incremental_append` (each window from its high-water mark minus
  `cursor_lag` on); a version is valid from its row's cursor value. Deletes are not seen.
- by change feed (`change_feed: true`): a version is valid from its change's commit time; a delete, or a row
  that moved outside every window, closes the key's current version and leaves none current. A snapshot's
  rows are valid from its version's commit time. A backfill runs as any run: a history is never rebuilt.

How versions are merged, per key: the copy's versions of the keys a run brings, the incoming versions and
deletes make one timeline ordered by `valid_from`. At one `valid_from` one version counts (the greatest by
source version, then content). An incoming version whose content equals the version before it, still open
then, adds nothing. Each version is then valid until the next entry of the timeline starts, or until its
recorded close if that is earlier (a delete). Only versions that are new or whose close moved are written,
in one merge on (primary key, `_zenskar_valid_from`), so a run that finds nothing new commits nothing and a
range run lands what its partitions would land one by one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.destinations import (
    CONTENT_HASH,
    PARTITION,
    SOURCE_VERSION,
    SYNCED_AT,
    AppTransaction,
    Destination,
    WriteResult,
)
from zenskar_pipeline.destinations.landing import constant, content_hashes, set_column, tables_of
from zenskar_pipeline.sync import checks, cursor
from zenskar_pipeline.sync.changed_partitions import Look, Requested, above_high_water_mark
from zenskar_pipeline.sync.checks import CheckOutcome, CheckSpec
from zenskar_pipeline.sync.feed import ChangeFeedStrategy, Changes, Feed
from zenskar_pipeline.sync.modes.base import FEED_ONLY_SETTINGS, EventRows, SyncRun, SyncStrategy
from zenskar_pipeline.sync.report import PartitionReport

VALID_FROM = "_zenskar_valid_from"
VALID_TO = "_zenskar_valid_to"
IS_CURRENT = "_zenskar_is_current"
_POSITION = "__zenskar_position"

ONE_CURRENT_VERSION = CheckSpec(
    "one_current_version_per_key", "No primary key value has more than one current version in the copy."
)
_KEEPS = "keeps the versions of each key"


def current_events(stream: ResolvedStream, key: tuple[str, ...]) -> EventRows:
    """A history's events are its keys' current versions: an earlier version is what the event was, a
    closed key (deleted at the source) no event."""
    return EventRows(key, where=IS_CURRENT)


class HistoryByCursor(SyncStrategy):
    mode = SyncMode.HISTORY
    reads_by_cursor = True
    needs_primary_key = _KEEPS
    unused_settings = FEED_ONLY_SETTINGS

    def sync(self, run: SyncRun) -> list[PartitionReport]:
        field = str(self.cursor(run.stream, run.table))
        key = self.primary_key(run.stream, run.table)
        read = cursor.plan_read(run, field, by_cursor=True)

        def land(rows: pa.Table) -> WriteResult:
            incoming = set_column(rows, SOURCE_VERSION, constant(read.version, pa.int64(), rows.num_rows))
            return land_versions(run.destination, key, _versions(incoming, rows.column(field)))

        return cursor.land_chunks(run, read, cursor.MERGE_CHUNK_ROWS, land)

    def event_rows(self, stream: ResolvedStream, table: DiscoveredTable) -> EventRows | None:
        return current_events(stream, self.primary_key(stream, table))

    def checks(self, stream: ResolvedStream) -> list[CheckSpec]:
        return [*super().checks(stream), ONE_CURRENT_VERSION]

    def verify(self, run: SyncRun, reports: Sequence[PartitionReport]) -> list[CheckOutcome]:
        return [*super().verify(run, reports), _one_current(run)]

    def requested(self, look: Look) -> Requested:
        return above_high_water_mark(look, str(self.cursor(look.stream, look.table)))


class HistoryByChangeFeed(ChangeFeedStrategy):
    mode = SyncMode.HISTORY
    needs_primary_key = _KEEPS
    rebuilds = False
    commit_timestamps = True
    unused_settings = {
        "deletes": (
            "does not apply to sync_mode history (a delete closes the row's current version)",
            "remove deletes",
        )
    }

    def snapshot_columns(self, run: SyncRun, rows: pa.Table) -> pa.Table:
        return rows

    def land_snapshot(self, feed: Feed, rows: pa.RecordBatchReader, version: int) -> WriteResult:
        """The snapshot's rows as versions valid from its commit time, a million rows a commit; keys the
        copy holds a current version of but the snapshot lacks (a resnapshot after lost history) are
        closed then. The last commit, with the last rows and the closes, records `version`; a run that dies
        before it lands the same versions again (unchanged rows add none)."""
        destination, key = feed.run.destination, self.primary_key(feed.run.stream, feed.run.table)
        committed_at = pa.scalar(feed.committed_at, pa.timestamp("us", tz="UTC"))
        current = destination.key_values(key, only_where=IS_CURRENT) if _keeps_versions(destination) else None
        seen: list[pa.Table] = []
        written: Counter[str | None] = Counter()
        held: pa.Table | None = None  # one chunk behind, so that the last one goes with the closes

        def versions_of(chunk: pa.Table) -> pa.Table:
            incoming = set_column(chunk, SOURCE_VERSION, constant(version, pa.int64(), chunk.num_rows))
            return _versions(incoming, pa.repeat(committed_at, chunk.num_rows))

        for chunk in tables_of(rows, cursor.MERGE_CHUNK_ROWS, rows.schema):
            if held is not None:
                written.update(land_versions(destination, key, versions_of(held)).rows_by_partition or {})
            held = chunk
            if current is not None:
                seen.append(chunk.select(list(key)))
        if held is None and not destination.exists():
            # An empty table: an empty copy, so that the synced-through version is recorded.
            empty = rows.schema.empty_table()
            return destination.replace(
                empty, None, source_version=version, app_transaction=feed.transaction(version)
            )
        closes = None if current is None else _absent(current, seen, key, committed_at, version)
        last = land_versions(
            destination,
            key,
            versions_of(held) if held is not None else versions_of(rows.schema.empty_table()),
            closes,
            feed.transaction(version),
        )
        written.update(last.rows_by_partition or {})
        committed = last.version
        if committed is None:  # nothing changed (a resnapshot of the same rows): the version still moves on
            committed = destination.advance(feed.transaction(version))
        return WriteResult(sum(written.values()), 0, committed, dict(written))

    def land(self, feed: Feed, changes: Changes, version: int) -> WriteResult:
        """Upserts as versions valid from their commit time; deletes, and rows that left every window,
        close the key's current version."""
        assert changes.committed_at is not None  # commit_timestamps
        run = feed.run
        key = self.primary_key(run.stream, run.table)
        closing = pc.or_(pc.equal(changes.change_type, "delete"), changes.outside)
        stamps = changes.committed_at
        upserts = changes.rows.filter(pc.invert(closing))
        closes = changes.rows.filter(closing).select([*key, SOURCE_VERSION])
        closes = closes.append_column(VALID_FROM, stamps.filter(closing))
        return land_versions(
            run.destination,
            key,
            _versions(upserts, stamps.filter(pc.invert(closing))),
            closes,
            feed.transaction(version),
        )

    def event_rows(self, stream: ResolvedStream, table: DiscoveredTable) -> EventRows | None:
        return current_events(stream, self.primary_key(stream, table))

    def checks(self, stream: ResolvedStream) -> list[CheckSpec]:
        return [*super().checks(stream), ONE_CURRENT_VERSION]

    def verify(self, run: SyncRun, reports: Sequence[PartitionReport]) -> list[CheckOutcome]:
        return [*super().verify(run, reports), _one_current(run)]


def land_versions(
    destination: Destination,
    key: Sequence[str],
    incoming: pa.Table,
    closes: pa.Table | None = None,
    app_transaction: AppTransaction | None = None,
) -> WriteResult:
    """Merge `incoming` versions (source columns, `_zenskar_partition` when partitioned,
    `_zenskar_source_version`, `_zenskar_valid_from`, `_zenskar_content_hash`) and `closes` (key columns,
    `_zenskar_source_version`, `_zenskar_valid_from` as the time the key stopped being current) into the
    copy's versions of the same keys, in one commit (module docstring)."""
    closes = closes if closes is not None else incoming.select([*key, SOURCE_VERSION, VALID_FROM]).slice(0, 0)
    if incoming.num_rows == 0 and closes.num_rows == 0:
        return WriteResult(0, 0, None, {})
    keys = pa.concat_tables([incoming.select(list(key)), closes.select(list(key))], promote_options="default")
    schema = destination.schema()
    existing = (
        destination.rows_with_keys(key, keys, schema.names)
        if schema is not None and VALID_FROM in schema.names
        else None
    )
    rows = _timeline(key, incoming, closes, existing)
    if rows.num_rows == 0:
        return WriteResult(0, 0, None, {})
    partitions = None
    if PARTITION in rows.column_names:
        touched = [rows.column(PARTITION)] + ([existing.column(PARTITION)] if existing is not None else [])
        partitions = sorted({p for column in touched for p in column.to_pylist() if p is not None})
    return destination.upsert(
        rows,
        [*key, VALID_FROM],
        compare=[CONTENT_HASH, VALID_TO, IS_CURRENT],
        partitions=partitions,
        app_transaction=app_transaction,
    )


def _versions(rows: pa.Table, valid_from: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`rows` (source columns, partition, source version) as versions: their content hash, then when each
    became valid."""
    with_hash = rows.append_column(CONTENT_HASH, content_hashes(rows))
    return with_hash.append_column(VALID_FROM, valid_from)


def _timeline(
    key: Sequence[str], incoming: pa.Table, closes: pa.Table, existing: pa.Table | None
) -> pa.Table:
    """The versions to write: incoming ones that count, and existing ones whose close moved, each with its
    `_zenskar_valid_to` and `_zenskar_is_current`."""
    k = ", ".join(_q(name) for name in key)
    vf, sv, h, vt, pos = (_q(n) for n in (VALID_FROM, SOURCE_VERSION, CONTENT_HASH, VALID_TO, _POSITION))

    def entry(table: str, hash_sql: str, side: str, tomb: str, old_vt: str) -> str:
        return (
            f"SELECT {k}, {vf}, {sv}, {hash_sql} AS hash, '{side}' AS side, {tomb} AS tomb, {pos}, "
            f"{old_vt} AS old_vt FROM {table}"
        )

    entries = [entry("inc", h, "in", "false", "NULL"), entry("closes", "NULL", "in", "true", "NULL")]
    if existing is not None:
        entries.append(entry("ex", h, "ex", "false", vt))
    per_key = f"PARTITION BY {k} ORDER BY {vf}, {sv}"
    query = f"""
        WITH entries AS ({" UNION ALL ".join(entries)}),
        ranked AS (
            SELECT *, max(old_vt) OVER (PARTITION BY {k}, {vf}) AS closed_at,
                row_number() OVER (
                    PARTITION BY {k}, {vf} ORDER BY {sv} DESC, tomb, hash DESC NULLS LAST, side = 'ex' DESC
                ) AS place
            FROM entries
        ),
        counted AS (
            SELECT *, lag(hash) OVER w AS prev_hash, lag(tomb) OVER w AS prev_tomb,
                lag(closed_at) OVER w AS prev_closed_at
            FROM ranked WHERE place = 1 WINDOW w AS ({per_key})
        ),
        kept AS (
            SELECT * FROM counted
            WHERE tomb OR side = 'ex' OR prev_tomb IS DISTINCT FROM false OR prev_hash IS DISTINCT FROM hash
                OR (prev_closed_at IS NOT NULL AND prev_closed_at < {vf})
        ),
        closed AS (SELECT *, lead({vf}) OVER ({per_key}) AS next_vf FROM kept)
        SELECT side, {pos},
            CASE WHEN closed_at IS NULL THEN next_vf WHEN next_vf IS NULL THEN closed_at
                 ELSE least(closed_at, next_vf) END AS valid_to
        FROM closed
        WHERE NOT tomb AND (side = 'in' OR valid_to IS DISTINCT FROM old_vt)
        ORDER BY side, {pos}
    """
    with duckdb.connect() as con:
        con.register("inc", _numbered(incoming))
        con.register("closes", _numbered(closes))
        if existing is not None:
            con.register("ex", _numbered(existing))
        chosen = con.sql(query).to_arrow_table()
    parts = []
    for side, table in (("in", incoming), ("ex", existing)):
        mine = chosen.filter(pc.equal(chosen.column("side"), side))
        if table is None or mine.num_rows == 0:
            continue
        rows = table.take(mine.column(_POSITION))
        valid_to = pc.cast(mine.column("valid_to"), rows.schema.field(VALID_FROM).type)
        rows = set_column(rows, VALID_TO, valid_to)
        rows = set_column(rows, IS_CURRENT, pc.is_null(valid_to))
        parts.append(rows.drop_columns([name for name in (SYNCED_AT,) if name in rows.column_names]))
    if not parts:
        return incoming.slice(0, 0)
    return pa.concat_tables(parts, promote_options="permissive")


def _keeps_versions(destination: Destination) -> bool:
    """Whether the copy holds versions (an empty snapshot's copy has no version columns yet)."""
    schema = destination.schema()
    return schema is not None and IS_CURRENT in schema.names


def _absent(
    current: pa.Table, seen: list[pa.Table], key: Sequence[str], at: pa.Scalar, version: int
) -> pa.Table:
    """Closes, at `at`, of the `current` keys that no chunk of a snapshot held."""
    snapshot = pa.concat_tables(seen) if seen else current.slice(0, 0)
    same = " AND ".join(f"c.{_q(n)} IS NOT DISTINCT FROM s.{_q(n)}" for n in key)
    with duckdb.connect() as con:
        con.register("c", current)
        con.register("s", snapshot)
        absent = con.sql(
            f"SELECT c.* FROM c WHERE NOT EXISTS (SELECT 1 FROM s WHERE {same})"
        ).to_arrow_table()
    absent = absent.append_column(SOURCE_VERSION, constant(version, pa.int64(), absent.num_rows))
    return absent.append_column(VALID_FROM, pa.repeat(at, absent.num_rows))


def _one_current(run: SyncRun) -> CheckOutcome:
    key = list(HistoryByCursor().primary_key(run.stream, run.table))
    earlier = run.earlier_checks.get(ONE_CURRENT_VERSION.name)
    figure = "keys_with_several_current_versions"
    return checks.keys_once(ONE_CURRENT_VERSION.name, figure, run.destination, key, IS_CURRENT, earlier)


def _numbered(table: pa.Table) -> pa.Table:
    return table.append_column(_POSITION, pa.array(range(table.num_rows), pa.int64()))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
