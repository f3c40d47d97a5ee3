"""A copy's first version in one streamed commit, in memory that does not grow with the rows: the rows are
staged on local disk and ranked there (`staging.py`), then written as `DeltaDestination.replace` writes.

It lands what the merges (`append_new`, `merge_deduped`) land into a copy that does not exist: the same rows,
content hashes and row ids. Through those merges, a first deduped sync of 10M rows held each million-row
chunk's ranking in Python and joined it with the ever larger copy: 3.7 GB peak RSS (1M rows: 1.2 GB); a
key-less one held the whole read: 7.4 GB. Staged: 819 MB and 788 MB, a full refresh of the same rows 608 MB
(`benchmarks/sync_first_keyed.py`, 10M rows).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from zenskar_pipeline.destinations.base import AppendNew, Landing, MergeDeduped, WriteResult
from zenskar_pipeline.destinations.commits import (
    STREAMING_WRITER,
    TARGET_FILE_BYTES,
    creating_commit_properties,
)
from zenskar_pipeline.destinations.landing import (
    CONTENT_HASH,
    PARTITION,
    ROW_ID,
    SOURCE_VERSION,
    SYNCED_AT,
    add_system_columns,
    constant,
    count_values,
    now,
    tables_of,
    with_system_fields,
)
from zenskar_pipeline.destinations.schema_drift import conform, plan_schema
from zenskar_pipeline.destinations.staging import Ranking, Stage

if TYPE_CHECKING:
    from zenskar_pipeline.destinations.delta import DeltaDestination

log = logging.getLogger(__name__)

# After a lost race, rows merged into the other writer's copy per commit: a merge holds its rows in memory.
RACE_CHUNK_ROWS = 1_000_000


def create_copy(
    destination: DeltaDestination, batches: pa.RecordBatchReader, landing: Landing, *, source_version: int
) -> WriteResult:
    """See `Destination.create_copy`."""
    destination._check_partition_column(batches.schema)
    kept = _landing_column(landing)
    plan = plan_schema(
        destination.table_uri,
        None,
        with_system_fields(batches.schema, extra=() if kept is None else (kept,)),
    )
    staged = pa.schema([f for f in plan.schema if f.name not in (SOURCE_VERSION, SYNCED_AT, kept)])
    with Stage(staged, _ranking(destination, landing)) as stage:
        for batch in batches:
            stage.add(conform(batch, staged))
        if stage.rows == 0:
            return WriteResult(0, 0, None, {})
        synced_at = now()
        counts: Counter[str | None] = Counter()

        def rows() -> Iterator[pa.RecordBatch]:
            for batch in stage.landing():
                batch = add_system_columns(batch, source_version, synced_at)
                counts.update(_partition_counts(batch, destination.partitioned))
                yield conform(batch, plan.schema)

        try:
            write_deltalake(
                destination.table_uri,
                pa.RecordBatchReader.from_batches(plan.schema, rows()),
                mode="error",
                partition_by=[PARTITION] if destination.partitioned else None,
                storage_options=destination.storage_options,
                target_file_size=TARGET_FILE_BYTES,
                writer_properties=STREAMING_WRITER,
                commit_properties=creating_commit_properties(),
            )
        except (CommitFailedError, DeltaError) as error:
            if not destination.exists():
                raise
            log.info("%s was created by another writer (%s); merging into it", destination.table_uri, error)
            return _merge_into_theirs(destination, stage, landing, source_version)
        return WriteResult(sum(counts.values()), 0, destination.version(), dict(counts))


def _landing_column(landing: Landing) -> str | None:
    """The system column the copy's rows are told apart by, besides the key."""
    if isinstance(landing, MergeDeduped):
        return CONTENT_HASH
    return ROW_ID if landing.landing_key is None else None


def _ranking(destination: DeltaDestination, landing: Landing) -> Ranking:
    """The order `append_new` and `merge_deduped` rank a write's rows by; the source version, the same for
    every row of the write, is left out."""
    if isinstance(landing, MergeDeduped):
        if not landing.primary_key:
            raise ValueError(f"{destination.table_uri}: a deduped copy needs a primary key")
        cursor = () if landing.cursor_field is None else (landing.cursor_field,)
        return Ranking(tuple(landing.primary_key), cursor)
    if landing.landing_key is None:
        return Ranking(None)
    partition = (PARTITION,) if destination.partitioned else ()
    return Ranking((*landing.landing_key, *partition))


def _partition_counts(batch: pa.RecordBatch, partitioned: bool) -> Counter[str | None]:
    if not partitioned:
        return Counter({None: batch.num_rows})
    return Counter(count_values(batch.column(PARTITION)))


def _merge_into_theirs(
    destination: DeltaDestination, stage: Stage, landing: Landing, source_version: int
) -> WriteResult:
    """The staged rows that land, merged into the copy another writer created, as the merges of a later
    sync would: already ranked (keyed) or numbered (key-less), they can go a chunk a commit."""
    if isinstance(landing, AppendNew) and landing.landing_key is None:
        destination.check_row_ids()
    kept = _landing_column(landing)
    results: list[WriteResult] = []
    for chunk in tables_of(stage.landing(), RACE_CHUNK_ROWS):
        chunk = chunk.append_column(SOURCE_VERSION, constant(source_version, pa.int64(), len(chunk)))
        if kept != CONTENT_HASH:
            chunk = chunk.drop_columns([CONTENT_HASH])  # the ranking's, not the copy's
        prepared = destination.prepare_rows(chunk, None, None, system_columns_given=True)
        if isinstance(landing, MergeDeduped):
            merged = destination.merge_prepared(prepared, landing.primary_key, landing.cursor_field)
        else:
            merged = destination.insert_prepared(prepared, landing.landing_key or [ROW_ID])
        results.append(merged)
    return _added_up(results)


def _added_up(results: list[WriteResult]) -> WriteResult:
    counts: Counter[str | None] = Counter()
    for result in results:
        counts.update(result.rows_by_partition or {})
    versions = [r.version for r in results if r.version is not None]
    return WriteResult(
        sum(r.rows_written for r in results),
        sum(r.rows_deleted for r in results),
        versions[-1] if versions else None,
        dict(counts),
    )
