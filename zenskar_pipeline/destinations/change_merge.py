"""Applying a change feed to a deduped copy: one merge on the primary key that inserts, replaces and deletes
(or marks deleted) in commit-version order, committed with the synced-through version.

Each incoming row carries a `ChangeAction`: `upsert` (an insert or update post-image inside the windows),
`delete` (the source deleted the key) or `remove` (the key's row moved out of every partition window, so
the copy must not keep it anywhere). Per key only the last change counts: the greatest commit version, and
within one commit an upsert over a delete (an overwrite commit deletes and re-inserts the same key).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, Field

from zenskar_pipeline.destinations import conditions, landing
from zenskar_pipeline.destinations.base import AppTransaction, ChangeAction, WriteResult
from zenskar_pipeline.destinations.commits import merge_into
from zenskar_pipeline.destinations.landing import CONTENT_HASH, DELETED, PARTITION, SOURCE_VERSION, SYNCED_AT

if TYPE_CHECKING:
    from zenskar_pipeline.destinations.delta import DeltaDestination

ACTION = "__zenskar_action"  # the change's action while it is merged; never landed
UPSERT, DELETE, REMOVE = ChangeAction.UPSERT.value, ChangeAction.DELETE.value, ChangeAction.REMOVE.value
_RANK = "__zenskar_rank"  # within one commit, an upsert wins over a delete of the same key

_NOTHING = {"num_target_rows_inserted": 0, "num_target_rows_updated": 0, "num_target_rows_deleted": 0}


def apply_deduped_changes(
    destination: DeltaDestination,
    rows: pa.Table,
    actions: pa.Array,
    primary_key: Sequence[str],
    *,
    soft_deletes: bool,
    app_transaction: AppTransaction,
    partitions: Sequence[str] | None = None,
) -> WriteResult:
    """Apply `rows` (source columns, `_zenskar_partition` when partitioned, `_zenskar_source_version` per
    row), each with its action in `actions`, to the copy in one commit carrying `app_transaction`. Nothing
    is done when the copy already records that version or a later one (a racing run got there first).

    `partitions`: the only partitions of the copy that can hold rows of the changed keys (those the
    changes' rows were in before and after), so that the merge reads and rewrites only those; None: all."""
    if not primary_key:
        raise ValueError(f"{destination.table_uri}: applying a change feed needs a primary key")
    if soft_deletes:
        rows = landing.set_column(rows, DELETED, landing.constant(False, pa.bool_(), rows.num_rows))
    prepared = destination.prepare_rows(rows, None, CONTENT_HASH)
    ranks = pc.if_else(pc.equal(actions, DELETE), 0, 1)
    ranked = landing.first_per_key(
        prepared.rows.append_column(ACTION, actions).append_column(_RANK, ranks),
        primary_key,
        [(SOURCE_VERSION, "descending"), (_RANK, "descending"), (CONTENT_HASH, "descending")],
    ).drop_columns([_RANK])
    columns = prepared.plan.schema.names
    q = conditions.quote

    def merge(table: DeltaTable) -> dict[str, Any]:
        recorded = table.transaction_version(app_transaction.app_id)
        if recorded is not None and recorded >= app_transaction.version:
            return dict(_NOTHING)
        _add_missing_columns(table, prepared.plan.schema, soft_deletes)
        copy = {q(name): f"s.{q(name)}" for name in columns}
        match = conditions.same_key(primary_key)
        if partitions:
            match += " AND t." + conditions.in_list(PARTITION, partitions)
        merger = merge_into(table, ranked, match, app_transaction=app_transaction)
        if soft_deletes:
            tombstone = {
                q(DELETED): "true",
                q(SOURCE_VERSION): f"s.{q(SOURCE_VERSION)}",
                q(SYNCED_AT): f"s.{q(SYNCED_AT)}",
            }
            merger = merger.when_matched_update(
                tombstone, f"s.{q(ACTION)} = '{DELETE}' AND (t.{q(DELETED)} IS DISTINCT FROM true)"
            )
        else:
            merger = merger.when_matched_delete(f"s.{q(ACTION)} = '{DELETE}'")
        # Parenthesised: DataFusion binds IS DISTINCT FROM looser than AND and OR.
        changed = f"(s.{q(CONTENT_HASH)} IS DISTINCT FROM t.{q(CONTENT_HASH)})"
        if soft_deletes:
            changed = f"({changed} OR (t.{q(DELETED)} IS DISTINCT FROM false))"
        return (
            merger.when_matched_delete(f"s.{q(ACTION)} = '{REMOVE}'")
            .when_matched_update(copy, f"s.{q(ACTION)} = '{UPSERT}' AND {changed}")
            .when_not_matched_insert(copy, f"s.{q(ACTION)} = '{UPSERT}'")
            .execute()
        )

    return destination.commit_merge(ranked, prepared.plan, merge, by_partition=False, first_write=False)


def _add_missing_columns(table: DeltaTable, schema: pa.Schema, soft_deletes: bool) -> None:
    """Columns the merge writes that the copy lacks: new source columns, the content hash of a copy a
    snapshot wrote, `_zenskar_deleted` once deletes turn soft. Added first, NULL in older rows."""
    present = set(pa.schema(table.schema()).names)
    wanted = [field for field in schema if field.name not in present]
    if soft_deletes and DELETED not in present and DELETED not in schema.names:
        wanted.append(pa.field(DELETED, pa.bool_()))
    if wanted:
        table.alter.add_columns([Field.from_arrow(field.with_nullable(True)) for field in wanted])
