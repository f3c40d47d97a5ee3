"""How a Delta commit carries an application's version (the change feed's synced-through version) with the
data it lands, so that both become visible at once or not at all; the one way the writes open a merge; and
the file sizes of the writes that stream.
"""

from __future__ import annotations

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties
from deltalake.table import TableMerger

from zenskar_pipeline.destinations.base import AppTransaction

# A streamed write holds a file's bytes and a row group's rows until it flushes them: bounded, so that a
# full refresh of 5M rows needs about the memory of one of 1M.
TARGET_FILE_BYTES = 48 * 2**20
STREAMING_WRITER = WriterProperties(max_row_group_size=256 * 1024)


def commit_properties(app_transaction: AppTransaction | None) -> CommitProperties | None:
    if app_transaction is None:
        return None
    return CommitProperties(app_transactions=_transactions(app_transaction))


def creating_commit_properties(app_transaction: AppTransaction | None = None) -> CommitProperties:
    """For a write that creates a copy (`mode="error"`): a lost commit is not retried. delta-rs checks that
    the table is absent when the write starts; a commit of version 0 that then loses to another creating
    writer is retried as version 1, an append, and both writers' rows land (two threads creating one table:
    19 races in 20). Failing instead lets the caller merge into the copy the other writer created."""
    return CommitProperties(max_commit_retries=0, app_transactions=_transactions(app_transaction))


def _transactions(app_transaction: AppTransaction | None) -> list[Transaction] | None:
    if app_transaction is None:
        return None
    return [Transaction(app_transaction.app_id, app_transaction.version)]


def merge_into(
    table: DeltaTable,
    rows: pa.Table,
    matched: str,
    *,
    app_transaction: AppTransaction | None = None,
    merge_schema: bool = False,
) -> TableMerger:
    """A merge of `rows` (alias `s`) into `table` (alias `t`) on `matched`, committing `app_transaction`
    with the data; `merge_schema` adds the rows' new columns to the table."""
    return table.merge(
        rows,
        matched,
        source_alias="s",
        target_alias="t",
        merge_schema=merge_schema,
        commit_properties=commit_properties(app_transaction),
    )
