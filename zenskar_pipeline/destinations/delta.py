"""The Delta destination: one Delta table per stream (local folder or object store), written in single
commits by the sync modes, physically partitioned by `_zenskar_partition` when the stream is.

The sync hands Arrow batches in; `landing.py` says which system columns they gain and how rows are told
apart, `schema_drift.py` how their columns meet the copy's, `change_merge.py` how a change feed is applied.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable, Field, QueryBuilder, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.schema import PrimitiveType

from zenskar_pipeline.config.models import ResolvedStream
from zenskar_pipeline.config.values import local_path
from zenskar_pipeline.destinations import (
    change_merge,
    conditions,
    delta_stats,
    first_version,
    landing,
    object_stores,
)
from zenskar_pipeline.destinations.base import (
    AppTransaction,
    Destination,
    DestinationNotWritableError,
    Rows,
    WriteResult,
)
from zenskar_pipeline.destinations.commits import (
    STREAMING_WRITER,
    TARGET_FILE_BYTES,
    commit_properties,
    creating_commit_properties,
    merge_into,
)
from zenskar_pipeline.destinations.landing import (
    CONTENT_HASH,
    DELETED,
    PARTITION,
    ROW_ID,
    SOURCE_VERSION,
    SYNCED_AT,
)
from zenskar_pipeline.destinations.schema_drift import SchemaPlan, conform, plan_schema

log = logging.getLogger(__name__)

_POSITION = "__zenskar_position"  # a row's place in a write while it is compared with the copy
_RANK_HASH = "__zenskar_rank_hash"  # the content hash while ranking an append batch; never landed
COMMIT_ATTEMPTS = 6  # a lost race is retried this many times in all, with a growing random pause


@dataclass(frozen=True)
class Prepared:
    """A write's rows with their system columns, in the schema they are written with."""

    rows: pa.Table
    plan: SchemaPlan


class DeltaDestination(Destination):
    """The Delta copy of one stream at `table_uri`; `storage_options` go to delta-rs as they are."""

    def __init__(
        self, table_uri: str, storage_options: Mapping[str, str] | None = None, *, partitioned: bool
    ) -> None:
        self.table_uri = table_uri
        self.storage_options = dict(storage_options) if storage_options else None
        self.partitioned = partitioned

    @classmethod
    def for_stream(
        cls, stream: ResolvedStream, storage_options: Mapping[str, str] | None = None
    ) -> DeltaDestination:
        partitioned = stream.settings.partitions is not None
        return cls(stream.destination_uri, storage_options, partitioned=partitioned)

    def __repr__(self) -> str:  # never the storage options: they may hold secrets
        return f"DeltaDestination({self.table_uri!r}, partitioned={self.partitioned})"

    @property
    def uri(self) -> str:
        return self.table_uri

    def check_writable(self) -> None:
        """Fail before anything is read when the copy cannot be written. A local copy: its folder is a file,
        or a folder on its way cannot be created or written. An object store: a probe written and deleted
        under the copy's location in seconds (`object_stores.check_writable`), which also refuses a store or
        setting that would let two writers overwrite each other's commits."""
        path = local_path(self.table_uri)
        if path is None:
            object_stores.check_writable(self.table_uri, self.storage_options or {})
            return
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        problem = None
        if not existing.is_dir():
            problem = f"{existing} is a file, not a folder"
        elif not os.access(existing, os.W_OK | os.X_OK):
            problem = f"{existing} is not writable"
        elif (
            existing == path
            and (path / "_delta_log").exists()
            and not os.access(path / "_delta_log", os.W_OK | os.X_OK)
        ):
            problem = f"{path / '_delta_log'} is not writable"
        if problem is not None:
            raise DestinationNotWritableError(
                f"cannot write the copy at {path}: {problem}; make it a writable folder, or point "
                "destination.uri (or ZENSKAR_PIPELINE_DESTINATION) at one"
            )

    def reset(self) -> bool:
        """Delete the copy: a local copy's folder, or every object under an object-store copy's location
        (`object_stores.delete_copy`)."""
        path = local_path(self.table_uri)
        if path is None:
            return object_stores.delete_copy(self.table_uri, self.storage_options or {})
        if not path.exists():
            return False
        shutil.rmtree(path)
        return True

    # --- reading the copy -------------------------------------------------------------------------------

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(self.table_uri, storage_options=self.storage_options)

    def version(self) -> int | None:
        return self._table().version() if self.exists() else None

    def schema(self) -> pa.Schema | None:
        return pa.schema(self._table().schema()) if self.exists() else None

    def transaction_version(self, app_id: str) -> int | None:
        return self._table().transaction_version(app_id) if self.exists() else None

    def row_counts(self, partitions: Sequence[str] | None = None) -> dict[str | None, int]:
        """Rows per partition (`{None: n}` when unpartitioned), from the Delta log alone: no data read.
        Partitioned: every asked-for partition (None: every partition holding rows), 0 when empty."""
        counts: dict[str | None, int] = dict.fromkeys(partitions or [], 0) if self.partitioned else {None: 0}
        if not self.exists():
            return counts
        files = pa.table(self._table().get_add_actions(flatten=True))
        records = files.column("num_records").to_pylist()
        if not self.partitioned:
            return {None: int(sum(n or 0 for n in records))}
        for key, n in zip(files.column(f"partition.{PARTITION}").to_pylist(), records, strict=True):
            if partitions is None or key in counts:
                counts[key] = counts.get(key, 0) + int(n or 0)
        return counts

    def live_row_count(self) -> int:
        """Rows not marked `_zenskar_deleted` (all rows when the copy keeps no tombstones)."""
        if not self.exists():
            return 0
        dataset = self._table().to_pyarrow_dataset()
        if DELETED not in dataset.schema.names:
            return int(sum(self.row_counts().values()))
        live = pc.field(DELETED).is_null() | (pc.field(DELETED) == pc.scalar(False))
        return int(dataset.count_rows(filter=live))

    def duplicate_keys(self, key: Sequence[str], *, only_where: str | None = None) -> int:
        """How many key values more than one row of the copy holds (NULL equal to NULL)."""
        keys = self.key_values(key, only_where=only_where)
        if keys.num_rows == 0:
            return 0
        grouped = keys.group_by(list(key), use_threads=False).aggregate([([], "count_all")])
        return int(pc.sum(pc.greater(grouped.column("count_all"), 1)).as_py() or 0)

    def key_values(self, key: Sequence[str], *, only_where: str | None = None) -> pa.Table:
        """See `Destination.key_values`."""
        if not self.exists():
            return pa.table({name: pa.array([], pa.null()) for name in key})
        dataset = self._table().to_pyarrow_dataset()
        where = None if only_where is None else pc.field(only_where) == pc.scalar(True)
        return dataset.to_table(columns=list(key), filter=where)

    def high_water_marks(
        self, cursor_field: str, partitions: Sequence[str] | None = None
    ) -> dict[str | None, Any]:
        """The greatest non-NULL cursor landed per partition, from the Delta log's file statistics (files
        without usable ones are read, the cursor column alone; see `delta_stats`).

        Unpartitioned: `{None: mark}`. Partitioned: every asked-for partition (None: every partition
        holding rows); a partition with nothing landed maps to None.
        """
        marks: dict[str | None, Any] = (
            {None: None} if not self.partitioned else dict.fromkeys(partitions or [])
        )
        if not self.exists():
            return marks
        landed = delta_stats.column_max(self._table(), cursor_field, partitions, partitioned=self.partitioned)
        marks.update(landed)
        return marks

    def holds_version(self, partitions: Sequence[str] | None, version: int) -> bool:
        """See `Destination.holds_version`: from the log's row counts and `_zenskar_source_version` statistics
        (an empty partition proves nothing, so it is read again)."""
        if not self.exists():
            return False
        table = self._table()
        counts = self.row_counts(partitions)
        if not counts or any(rows == 0 for rows in counts.values()):
            return False
        least, greatest = delta_stats.column_range(
            table, SOURCE_VERSION, partitions, partitioned=self.partitioned
        )
        return least == version and greatest == version

    def dataset(self, version: int | None = None) -> ds.Dataset:
        return self._table(version).to_pyarrow_dataset()

    def rows_with_keys(self, key: Sequence[str], keys: pa.Table, columns: Sequence[str]) -> pa.Table:
        """See `Destination.rows_with_keys`: one semi-join of the copy with `keys` in DuckDB."""
        if not self.exists() or keys.num_rows == 0:
            schema = self.schema()
            if schema is None:
                return pa.table(
                    {
                        name: pa.array([], keys.schema.field(name).type)
                        for name in columns
                        if name in keys.schema.names
                    }
                )
            return schema.empty_table().select(list(columns))
        dataset = self._table().to_pyarrow_dataset()
        same = " AND ".join(f"c.{_sql_name(n)} IS NOT DISTINCT FROM k.{_sql_name(n)}" for n in key)
        wanted = ", ".join(f"c.{_sql_name(n)}" for n in columns)
        with duckdb.connect() as con:
            con.register("keys", keys.select(list(key)))
            con.register("copy", dataset)
            return con.sql(
                f"SELECT {wanted} FROM copy c WHERE EXISTS (SELECT 1 FROM keys k WHERE {same})"
            ).to_arrow_table()

    # --- writing ----------------------------------------------------------------------------------------

    def replace(
        self,
        batches: Rows,
        partitions: Sequence[str] | None,
        *,
        source_version: int,
        app_transaction: AppTransaction | None = None,
        keep_tombstones: bool = False,
    ) -> WriteResult:
        """Full refresh: the scope (these partitions, or the whole table when None) becomes exactly the
        batches' rows in one overwrite commit. Batches stream through; if the reader fails, nothing is
        committed and its error is raised. A row outside the scope is an error. `keep_tombstones`: rows
        marked `_zenskar_deleted` stay (a window rebuilt from the source, which no longer has them)."""
        if partitions is not None and not self.partitioned:
            raise ValueError(f"{self.table_uri} is not partitioned; replace it whole (partitions=None)")
        reader = batches if isinstance(batches, pa.RecordBatchReader) else batches.to_reader()
        self._check_partition_column(reader.schema)
        synced_at = landing.now()
        incoming = landing.with_system_fields(reader.schema, extra=())
        current = self.schema()
        plan = plan_schema(self.table_uri, current, incoming)
        self._widen(plan)
        scope = None if partitions is None else sorted(set(partitions))
        rows_in_scope = self._rows_in_scope(scope)
        first = _first_rows(reader)
        if first is None and rows_in_scope == 0 and current is not None:
            return WriteResult(0, 0, None, {})

        counts: Counter[str | None] = Counter()
        failure: list[BaseException] = []

        def conformed() -> Iterator[pa.RecordBatch]:
            try:
                for batch in _chain(first, reader):
                    batch = landing.add_system_columns(batch, source_version, synced_at)
                    counts.update(self._partition_counts(batch, scope))
                    yield conform(batch, plan.schema)
            except BaseException as error:  # handed back to the caller as itself, not as a Delta error
                failure.append(error)
                raise

        stream = pa.RecordBatchReader.from_batches(plan.schema, conformed())
        try:
            write_deltalake(
                self.table_uri,
                stream,
                mode="overwrite",
                predicate=None if current is None else self._replaced(scope, keep_tombstones, current),
                partition_by=[PARTITION] if self.partitioned else None,
                schema_mode="merge" if plan.added and current is not None else None,
                storage_options=self.storage_options,
                commit_properties=commit_properties(app_transaction),
                target_file_size=TARGET_FILE_BYTES,
                writer_properties=STREAMING_WRITER,
            )
        except Exception:
            if failure:
                raise failure[0] from None
            raise
        return WriteResult(sum(counts.values()), rows_in_scope, self.version(), dict(counts))

    def append_new(
        self,
        batches: Rows,
        landing_key: Sequence[str] | None,
        *,
        source_version: int | None = None,
        app_transaction: AppTransaction | None = None,
        per_source_version: bool = False,
    ) -> WriteResult:
        """Incremental append: lands the rows not landed yet, matched on `landing_key` (primary key and
        cursor) within their partition, or on `_zenskar_row_id` when there is no key. One insert-only
        merge, so a racing writer fails Delta's conflict check and this one retries; nothing new, no
        commit. Rows sharing a landing key within the batch land once (greatest version, then content).

        `per_source_version` (change-feed appends, rows carrying `_zenskar_source_version`): rows are told
        apart by (row id, source version), row ids counted per version, so the same change read again
        lands nothing and an identical change of another version still lands."""
        if landing_key is None and not per_source_version:
            self.check_row_ids()
        prepared = self.prepare_rows(
            batches,
            source_version,
            ROW_ID if landing_key is None else None,
            row_ids_per_version=per_source_version,
        )
        rows = prepared.rows
        if landing_key is None:
            key: Sequence[str] = [ROW_ID, SOURCE_VERSION] if per_source_version else [ROW_ID]
        else:
            key = list(landing_key)
            hashes = landing.content_hashes(rows)
            ranked = landing.first_per_key(
                rows.append_column(_RANK_HASH, hashes),
                key + ([PARTITION] if self.partitioned else []),
                [(SOURCE_VERSION, "descending"), (_RANK_HASH, "descending")],
            )
            rows = ranked.drop_columns([_RANK_HASH])
        return self.insert_prepared(Prepared(rows, prepared.plan), key, app_transaction=app_transaction)

    def check_row_ids(self) -> None:
        """A key-less append recognises the rows it landed by `_zenskar_row_id`: refuse a copy without it.
        (A change-feed copy starts from a snapshot without row ids; its changes never meet those rows, as
        they carry later source versions, so it is not checked.)"""
        current = self.schema()
        if current is not None and ROW_ID not in current.names:
            raise ValueError(
                f"{self.table_uri} was not written by a key-less append (it has no {ROW_ID}), so rows "
                "landed before cannot be recognised; give the stream a primary key or reset it"
            )

    def insert_prepared(
        self, prepared: Prepared, key: Sequence[str], *, app_transaction: AppTransaction | None = None
    ) -> WriteResult:
        """Insert the prepared rows (at most one per `key` within a partition) whose `key` the copy does not
        hold in their partition yet: `append_new` once its rows are ranked or numbered."""
        # Within the row's partition: the merge then reads (and conflicts on) only the partitions it lands in.
        landing_columns = [*key, *([PARTITION] if self.partitioned else [])]
        rows = self._drop_landed(prepared.rows, landing_columns)  # landed before: not inserted anyway
        matched = conditions.same_key(landing_columns)

        def merge(table: DeltaTable) -> dict[str, Any]:
            if ROW_ID in key and ROW_ID not in pa.schema(table.schema()).names:
                # A change-feed copy a snapshot wrote: the match names the column, so it must exist.
                table.alter.add_columns([Field(ROW_ID, PrimitiveType("string"), nullable=True)])
            merger = merge_into(
                table, rows, matched, app_transaction=app_transaction, merge_schema=bool(prepared.plan.added)
            )
            return merger.when_not_matched_insert(conditions.every_column(rows.column_names)).execute()

        return self.commit_merge(
            rows, prepared.plan, merge, by_partition=True, app_transaction=app_transaction
        )

    def merge_deduped(
        self,
        batches: Rows,
        primary_key: Sequence[str],
        cursor_field: str | None,
        *,
        source_version: int | None = None,
        app_transaction: AppTransaction | None = None,
    ) -> WriteResult:
        """Incremental deduped: one row per primary key across the whole table, the greatest by
        (cursor, source version, content hash). The batch is ranked first, then merged in one commit:
        a matched row is rewritten only when the incoming one is greater and its content differs (it
        moves if its partition changed); an unmatched one is inserted. Keys compare NULL-safely."""
        if not primary_key:
            raise ValueError(f"{self.table_uri}: a deduped merge needs a primary key")
        prepared = self.prepare_rows(batches, source_version, CONTENT_HASH)
        order = [] if cursor_field is None else [(cursor_field, "descending")]
        order += [(SOURCE_VERSION, "descending"), (CONTENT_HASH, "descending")]
        rows = landing.first_per_key(prepared.rows, primary_key, order)
        return self.merge_prepared(
            Prepared(rows, prepared.plan), primary_key, cursor_field, app_transaction=app_transaction
        )

    def merge_prepared(
        self,
        prepared: Prepared,
        primary_key: Sequence[str],
        cursor_field: str | None,
        *,
        app_transaction: AppTransaction | None = None,
    ) -> WriteResult:
        """Merge prepared rows, at most one per `primary_key` and each with its content hash, on the key:
        `merge_deduped` once its rows are ranked."""
        # Unchanged rows: the merge would skip them. An equal content hash means an equal cursor, so the
        # cursor's range narrows what is read of the copy.
        within = [] if cursor_field is None else [cursor_field]
        rows = self._drop_landed(prepared.rows, [*primary_key, CONTENT_HASH], within=within)
        matched = conditions.same_key(primary_key)
        update_when = conditions.newer_and_different(cursor_field)

        def merge(table: DeltaTable) -> dict[str, Any]:
            if CONTENT_HASH not in pa.schema(table.schema()).names:
                # A copy first written by another mode: give it the column, so that the update condition
                # can name it (its rows' hashes are NULL and lose every tie).
                table.alter.add_columns([Field(CONTENT_HASH, PrimitiveType("string"), nullable=True)])
            return (
                merge_into(
                    table,
                    rows,
                    matched,
                    app_transaction=app_transaction,
                    merge_schema=bool(prepared.plan.added),
                )
                .when_matched_update(conditions.every_column(rows.column_names), update_when)
                .when_not_matched_insert(conditions.every_column(rows.column_names))
                .execute()
            )

        result = self.commit_merge(
            rows, prepared.plan, merge, by_partition=False, app_transaction=app_transaction
        )
        return self._with_stamped_counts(result, rows)

    # See `Destination.create_copy`; the staging and the streamed first commit are first_version.py's.
    create_copy = first_version.create_copy

    # See `Destination.apply_changes`; the merge, its ranking and its soft deletes are change_merge.py's.
    apply_changes = change_merge.apply_deduped_changes

    def upsert(
        self,
        rows: pa.Table,
        on: Sequence[str],
        *,
        compare: Sequence[str],
        source_version: int | None = None,
        partitions: Sequence[str] | None = None,
        app_transaction: AppTransaction | None = None,
    ) -> WriteResult:
        """See `Destination.upsert`: one merge on `on`, updating a matched row when a `compare` column
        differs, inserting the others; rows that match a row of the copy exactly are dropped first."""
        if not on:
            raise ValueError(f"{self.table_uri}: an upsert needs columns to match on")
        prepared = self.prepare_rows(rows, source_version, None, system_columns_given=True)
        rows = self._drop_landed(prepared.rows, [*on, *compare])
        matched = conditions.same_key(on)
        if partitions:
            matched += " AND t." + conditions.in_list(PARTITION, partitions)
        changed = " OR ".join(
            f"(s.{conditions.quote(c)} IS DISTINCT FROM t.{conditions.quote(c)})" for c in compare
        )

        def merge(table: DeltaTable) -> dict[str, Any]:
            # The match and the update condition name columns the copy may not have yet: add them first.
            present = set(pa.schema(table.schema()).names)
            missing = [
                field.with_nullable(True) for field in prepared.plan.schema if field.name not in present
            ]
            if missing:
                table.alter.add_columns([Field.from_arrow(field) for field in missing])
            return (
                merge_into(table, rows, matched, app_transaction=app_transaction)
                .when_matched_update(conditions.every_column(rows.column_names), f"({changed})")
                .when_not_matched_insert(conditions.every_column(rows.column_names))
                .execute()
            )

        result = self.commit_merge(
            rows, prepared.plan, merge, by_partition=False, app_transaction=app_transaction
        )
        return self._with_stamped_counts(result, rows)

    # --- the steps --------------------------------------------------------------------------------------

    def _table(self, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.table_uri, version=version, storage_options=self.storage_options)

    def prepare_rows(
        self,
        batches: Rows,
        source_version: int | None,
        landing_column: str | None,
        *,
        row_ids_per_version: bool = False,
        system_columns_given: bool = False,
    ) -> Prepared:
        """The whole write in memory (ranking and row ids need all of it), with system columns, in the
        copy's schema (checked for drift; widened first when the source widened a column).
        `system_columns_given`: the rows carry the content hash or row id themselves (an upsert)."""
        rows = batches.read_all() if isinstance(batches, pa.RecordBatchReader) else batches
        self._check_partition_column(rows.schema, system_columns_given=system_columns_given)
        if source_version is None and SOURCE_VERSION not in rows.column_names:
            raise ValueError(f"{self.table_uri}: give source_version or a {SOURCE_VERSION} column")
        if source_version is not None:
            rows = landing.set_column(
                rows, SOURCE_VERSION, landing.constant(source_version, pa.int64(), rows.num_rows)
            )
        rows = landing.set_column(
            rows, SYNCED_AT, landing.constant(landing.now(), landing.SYNCED_AT_TYPE, rows.num_rows)
        )
        incoming = landing.with_system_fields(
            rows.schema, extra=() if landing_column is None else (landing_column,)
        )
        plan = plan_schema(self.table_uri, self.schema(), incoming)
        self._widen(plan)
        rows = pa.Table.from_batches(
            [conform(batch, landing.without(plan.schema, landing_column)) for batch in rows.to_batches()],
            schema=landing.without(plan.schema, landing_column),
        )
        if landing_column == CONTENT_HASH:
            rows = rows.append_column(CONTENT_HASH, landing.content_hashes(rows))
        elif landing_column == ROW_ID:
            within = rows.column(SOURCE_VERSION).combine_chunks() if row_ids_per_version else None
            rows = rows.append_column(ROW_ID, landing.row_ids(landing.content_hashes(rows), within))
        return Prepared(rows.select(plan.schema.names), plan)

    def commit_merge(
        self,
        rows: pa.Table,
        plan: SchemaPlan,
        merge: Callable[[DeltaTable], dict[str, Any]],
        *,
        by_partition: bool,
        app_transaction: AppTransaction | None = None,
        first_write: bool = True,
    ) -> WriteResult:
        """Run `merge` against the copy in one commit, retrying a lost race. A copy that does not exist yet
        has nothing to match: with `first_write` the rows are written as its first version instead, without
        a join (else that is an error: the rows are not the copy's rows as they stand)."""
        if rows.num_rows == 0:
            return WriteResult(0, 0, None, {})
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                if not self.exists():
                    if not first_write:
                        raise ValueError(f"{self.table_uri} does not exist; sync the stream afresh")
                    first = self._write_first(rows, app_transaction)
                    if first is not None:
                        return first
                table = self._table()
                before = table.version()
                metrics = merge(table)
                break
            except CommitFailedError as error:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                pause = random.uniform(0.05, 0.2) * 2**attempt
                log.warning(
                    "%s: commit lost a race with another writer (%s); retry %d of %d in %.2fs",
                    self.table_uri,
                    str(error).splitlines()[0],
                    attempt,
                    COMMIT_ATTEMPTS - 1,
                    pause,
                )
                time.sleep(pause)
        written = metrics["num_target_rows_inserted"] + metrics["num_target_rows_updated"]
        deleted = metrics["num_target_rows_deleted"]
        if written == 0 and deleted == 0:
            return WriteResult(0, 0, None, {})
        after = self._table()
        version = after.version() if after.version() > before else None
        counts = self._added_rows_by_partition(version) if by_partition and version is not None else None
        return WriteResult(written, deleted, version, counts)

    def _write_first(self, rows: pa.Table, app_transaction: AppTransaction | None) -> WriteResult | None:
        """The copy's first version from `rows`; None when another writer created the copy meanwhile (then
        the caller merges into theirs, so nothing lands twice)."""
        try:
            write_deltalake(
                self.table_uri,
                rows,
                mode="error",
                partition_by=[PARTITION] if self.partitioned else None,
                storage_options=self.storage_options,
                commit_properties=creating_commit_properties(app_transaction),
            )
        except (CommitFailedError, DeltaError) as error:
            if not self.exists():
                raise
            log.info("%s was created by another writer (%s); merging into it", self.table_uri, error)
            return None
        counts: dict[str | None, int] = {None: rows.num_rows}
        if self.partitioned:
            counts = landing.count_values(rows.column(PARTITION))
        return WriteResult(rows.num_rows, 0, self._table().version(), counts)

    def advance(self, app_transaction: AppTransaction) -> int:
        """Commit `app_transaction` without data (changes that touched no row of the copy), so that the
        synced-through version moves on; the copy must exist. Returns the new table version."""
        current = self.schema()
        if current is None:
            raise ValueError(f"{self.table_uri} does not exist; nothing to record a version in")
        write_deltalake(
            self.table_uri,
            current.empty_table(),
            mode="append",
            storage_options=self.storage_options,
            commit_properties=commit_properties(app_transaction),
        )
        return self._table().version()

    def _with_stamped_counts(self, result: WriteResult, rows: pa.Table) -> WriteResult:
        """`result` with the rows it wrote per partition. A merge that updates rewrites whole files, so its
        metrics cannot tell partitions apart: the rows it wrote are those stamped with this write's
        `_zenskar_synced_at`, in the partitions its rows belong to."""
        if result.version is None or not self.partitioned:
            return (
                result
                if result.version is None
                else WriteResult(
                    result.rows_written, result.rows_deleted, result.version, {None: result.rows_written}
                )
            )
        stamp = rows.column(SYNCED_AT)[0]
        where = pc.field(PARTITION).isin(pc.unique(rows.column(PARTITION)).to_pylist()) & (
            pc.field(SYNCED_AT) == stamp
        )
        stamped = self._table(result.version).to_pyarrow_dataset().to_table(columns=[PARTITION], filter=where)
        counts = landing.count_values(stamped.column(PARTITION)) if stamped.num_rows else {}
        return WriteResult(result.rows_written, result.rows_deleted, result.version, counts)

    def _drop_landed(self, rows: pa.Table, columns: Sequence[str], *, within: Sequence[str] = ()) -> pa.Table:
        """`rows` without those whose `columns` (NULL equal to NULL) a row of the copy already holds. The
        merge leaves such rows alone anyway; finding them first lets a write with nothing new skip the
        merge. Only what may hold such rows is read, by delta-rs's own query engine: the files of their
        partitions whose statistics overlap their values, and within those the rows in the ranges of
        `columns` and of `within` (columns a landed row equal on `columns` must also equal), as
        `delta_stats.scan_condition` spells them. Narrowing can only keep a row for the merge to check,
        never drop one."""
        if rows.num_rows == 0 or not self.exists():
            return rows
        table = self._table()
        columns = list(dict.fromkeys(columns))  # a cursor may be part of the key too: once in the SQL
        narrowing = [*columns, *within]
        if not set(narrowing) <= set(pa.schema(table.schema()).names):
            return rows
        condition = delta_stats.scan_condition(rows, narrowing)
        wanted = ", ".join(conditions.quote(n) for n in columns)
        scan = QueryBuilder().register("copy", table)
        landed = scan.execute(f"SELECT {wanted} FROM copy" + (f" WHERE {condition}" if condition else ""))
        same = " AND ".join(f"c.{_sql_name(n)} IS NOT DISTINCT FROM i.{_sql_name(n)}" for n in columns)
        with duckdb.connect() as con:
            con.register(
                "incoming",
                rows.select(list(columns)).append_column(_POSITION, pa.array(range(rows.num_rows))),
            )
            con.register("copy", pa.RecordBatchReader.from_stream(landed))
            kept = con.sql(
                f"SELECT {_POSITION} FROM incoming i WHERE NOT EXISTS "
                f"(SELECT 1 FROM copy c WHERE {same}) ORDER BY {_POSITION}"
            ).to_arrow_table()
        if kept.num_rows == rows.num_rows:
            return rows
        return rows.take(kept.column(_POSITION))

    def _widen(self, plan: SchemaPlan) -> None:
        """Rewrite the copy with wider column types, in one commit, before writing rows that need them."""
        if not plan.widened:
            return
        log.warning("%s: widening %s to the source's types", self.table_uri, ", ".join(plan.widened))
        current = self._table()
        target = pa.schema([plan.schema.field(f.name) for f in pa.schema(current.schema())])
        batches = (b.cast(target) for b in current.to_pyarrow_dataset().to_batches())
        write_deltalake(
            self.table_uri,
            pa.RecordBatchReader.from_batches(target, batches),
            mode="overwrite",
            schema_mode="overwrite",
            partition_by=[PARTITION] if self.partitioned else None,
            storage_options=self.storage_options,
        )

    def _replaced(self, scope: Sequence[str] | None, keep_tombstones: bool, current: pa.Schema) -> str | None:
        """The predicate of the rows an overwrite replaces (None: all of them)."""
        parts = [] if scope is None else [conditions.in_list(PARTITION, scope)]
        if keep_tombstones and DELETED in current.names:
            parts.append(f"({conditions.quote(DELETED)} IS NULL OR {conditions.quote(DELETED)} = false)")
        return " AND ".join(parts) or None

    def _check_partition_column(self, schema: pa.Schema, *, system_columns_given: bool = False) -> None:
        has = PARTITION in schema.names
        if has != self.partitioned:
            state = "partitioned" if self.partitioned else "unpartitioned"
            raise ValueError(
                f"{self.table_uri} is {state}; its batches must {'' if self.partitioned else 'not '}"
                f"carry {PARTITION}"
            )
        stray = sorted(
            set(schema.names) & ({SYNCED_AT} if system_columns_given else {SYNCED_AT, CONTENT_HASH, ROW_ID})
        )
        if stray:
            raise ValueError(f"{self.table_uri}: the writer sets {', '.join(stray)}; batches must not")

    def _rows_in_scope(self, scope: Sequence[str] | None) -> int:
        if not self.exists():
            return 0
        files = pa.table(self._table().get_add_actions(flatten=True))
        if scope is not None:
            files = files.filter(pc.is_in(files.column(f"partition.{PARTITION}"), pa.array(scope)))
        return int(pc.sum(files.column("num_records")).as_py() or 0)

    def _partition_counts(self, batch: pa.RecordBatch, scope: Sequence[str] | None) -> Counter[str | None]:
        if not self.partitioned:
            return Counter({None: batch.num_rows})
        keys = batch.column(PARTITION)
        if keys.null_count:
            raise ValueError(f"{self.table_uri}: {keys.null_count} row(s) without a {PARTITION}")
        counts: Counter[str | None] = Counter(landing.count_values(keys))
        outside = sorted(str(key) for key in counts if scope is not None and key not in scope)
        if outside:
            raise ValueError(
                f"{self.table_uri}: rows of partition(s) {', '.join(outside)} outside the "
                f"replaced scope {', '.join(scope or [])}"
            )
        return counts

    def _added_rows_by_partition(self, version: int) -> dict[str | None, int]:
        """Rows in the files `version` added: for an insert-only merge, exactly the rows it landed."""
        old = set(pa.table(self._table(version - 1).get_add_actions()).column("path").to_pylist())
        files = pa.table(self._table(version).get_add_actions(flatten=True))
        counts: Counter[str | None] = Counter()
        for path, key, records in zip(
            files.column("path").to_pylist(),
            files.column(f"partition.{PARTITION}").to_pylist() if self.partitioned else [None] * len(files),
            files.column("num_records").to_pylist(),
            strict=True,
        ):
            if path not in old:
                counts[key] += records
        return dict(counts)


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_rows(reader: pa.RecordBatchReader) -> list[pa.RecordBatch] | None:
    """Batches read up to the first non-empty one; None when the reader holds no rows at all."""
    seen: list[pa.RecordBatch] = []
    for batch in reader:
        seen.append(batch)
        if batch.num_rows:
            return seen
    return None


def _chain(first: list[pa.RecordBatch] | None, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    yield from first or []
    yield from reader
