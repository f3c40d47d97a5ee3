"""How streams look in Dagster: one object decides asset keys, groups, kinds, descriptions and metadata for
every stream; subclass `StreamTranslator` to change naming without touching the asset factory."""

from __future__ import annotations

from typing import Any

import dagster as dg

from zenskar_pipeline.config import Deletes, ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.delivery.ledger import DEAD_LETTERS_SUFFIX, LEDGER_SUFFIX
from zenskar_pipeline.destinations.landing import (
    CHANGE_TYPE,
    CONTENT_HASH,
    DELETED,
    PARTITION,
    ROW_ID,
    SOURCE_VERSION,
    SYNCED_AT,
)
from zenskar_pipeline.sync.modes.history import IS_CURRENT, VALID_FROM, VALID_TO

STREAM_TAG = "zenskar/stream"
DELIVERY_TAG = "zenskar/deliver"  # on delivery runs and steps: the stream whose events they send


class StreamTranslator:
    """Asset specs for a stream's source table (an external asset) and for its Delta copy."""

    # -- the source table ------------------------------------------------------------------------------------

    def source_key(self, stream: ResolvedStream) -> dg.AssetKey:
        return dg.AssetKey(["databricks", *stream.table.parts])

    def source_spec(self, stream: ResolvedStream, table: DiscoveredTable) -> dg.AssetSpec:
        return dg.AssetSpec(
            key=self.source_key(stream),
            description=table.comment,
            group_name=self.group_name(stream),
            kinds={"databricks"},
            metadata={
                "table": stream.name,
                "dagster/table_name": stream.name,
                "dagster/column_schema": self.source_column_schema(table),
            },
        )

    def source_column_schema(self, table: DiscoveredTable) -> dg.TableSchema:
        """Every column of the source table as Unity Catalog describes it (also those the copy leaves out)."""
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    column.name,
                    column.full_data_type,
                    description=column.comment,
                    constraints=dg.TableColumnConstraints(nullable=column.nullable),
                )
                for column in table.columns
            ]
        )

    # -- the copy --------------------------------------------------------------------------------------------

    def copy_key(self, stream: ResolvedStream) -> dg.AssetKey:
        return dg.AssetKey(["zenskar", *stream.table.parts])

    def group_name(self, stream: ResolvedStream) -> str:
        """One group per source schema, `<catalog>_<schema>`."""
        return f"{stream.table.catalog}_{stream.table.schema}"

    def description(self, stream: ResolvedStream, table: DiscoveredTable) -> str:
        comment = table.comment or f"Copy of {stream.name}."
        return f"{comment}\n\nSync mode: {stream.settings.sync_mode.value}."

    def kinds(self, stream: ResolvedStream) -> set[str]:
        return {"databricks", "delta"}

    def tags(self, stream: ResolvedStream) -> dict[str, str]:
        return {}

    def metadata(self, stream: ResolvedStream, table: DiscoveredTable) -> dict[str, Any]:
        settings = stream.settings
        metadata: dict[str, Any] = {
            "table": stream.name,
            "sync_mode": settings.sync_mode.value,
            "dagster/uri": stream.destination_uri,
            "dagster/table_name": self.copy_table_name(stream),
            "dagster/column_schema": self.column_schema(stream, table),
        }
        if settings.primary_key:
            metadata["primary_key"] = list(settings.primary_key)
        if settings.cursor_field:
            metadata["cursor_field"] = settings.cursor_field
        return metadata

    def copy_table_name(self, stream: ResolvedStream) -> str:
        """The copy as Spark SQL and Databricks name a Delta table at a path, ``delta.`<uri>` ``: the copy is
        in no catalog, this name can be pasted into a query, and it never equals the source's name (which
        Dagster would take for the same table)."""
        return f"delta.`{stream.destination_uri}`"

    def column_schema(self, stream: ResolvedStream, table: DiscoveredTable) -> dg.TableSchema:
        """The copy's columns: the selected source columns, then the system columns its sync mode writes."""
        kept = set(stream.settings.columns.select(table.column_names))
        columns = [
            dg.TableColumn(column.name, column.full_data_type, description=column.comment)
            for column in table.columns
            if column.name in kept
        ]
        columns += [
            dg.TableColumn(name, kind, description=about) for name, kind, about in system_columns(stream)
        ]
        return dg.TableSchema(columns=columns)

    def freshness_policy(self, stream: ResolvedStream) -> dg.FreshnessPolicy | None:
        """The stream's `freshness:` as a time-window policy: the UI shows the copy late (failing) when its
        last materialization is older than that."""
        window = stream.settings.freshness
        return dg.FreshnessPolicy.time_window(fail_window=window) if window is not None else None

    def copy_spec(self, stream: ResolvedStream, table: DiscoveredTable) -> dg.AssetSpec:
        """Everything the asset factory needs about the copy, except how it runs."""
        return dg.AssetSpec(
            key=self.copy_key(stream),
            deps=[self.source_key(stream)],
            description=self.description(stream, table),
            group_name=self.group_name(stream),
            kinds=self.kinds(stream),
            metadata=self.metadata(stream, table),
            tags=self.tags(stream),
            freshness_policy=self.freshness_policy(stream),
        )

    # -- the delivery to Zenskar -----------------------------------------------------------------------------

    def delivery_key(self, stream: ResolvedStream) -> dg.AssetKey:
        return dg.AssetKey([*self.copy_key(stream).path, "delivered"])

    def delivery_spec(self, stream: ResolvedStream, table: DiscoveredTable) -> dg.AssetSpec:
        """The stream's usage events as Zenskar holds them: downstream of the copy, same partitions."""
        spec = stream.settings.deliver
        assert spec is not None
        fields = ", ".join(f"{name} <- {column}" for name, column in spec.data) or "none"
        return dg.AssetSpec(
            key=self.delivery_key(stream),
            deps=[self.copy_key(stream)],
            description=(
                f"The copy's rows of {stream.name} delivered to Zenskar as usage events of "
                f"`{spec.api_slug}`, each once (customer_id <- {spec.customer_id}, timestamp <- "
                f"{spec.timestamp}; data: {fields})."
            ),
            group_name=self.group_name(stream),
            kinds={"zenskar"},
            metadata={
                "table": stream.name,
                "api_slug": spec.api_slug,
                "settle": str(spec.settle),
                "ledger": stream.destination_uri + LEDGER_SUFFIX,
                "dead_letters": stream.destination_uri + DEAD_LETTERS_SUFFIX,
            },
            tags=self.tags(stream),
        )


def system_columns(stream: ResolvedStream) -> list[tuple[str, str, str]]:
    """(name, type, description) of the columns a copy holds besides the source's, as `landing.py` and the
    sync modes write them, in the order they are listed there."""
    settings = stream.settings
    mode = settings.sync_mode
    keyless = not settings.primary_key
    columns: list[tuple[str, str, str]] = []
    if settings.partitions is not None:
        columns.append((PARTITION, "string", "The Dagster partition key of the row's window."))
    columns.append((SOURCE_VERSION, "bigint", "The source Delta version the row came from."))
    columns.append((SYNCED_AT, "timestamp", "When the row landed (UTC)."))
    if mode in (SyncMode.INCREMENTAL_APPEND_DEDUPED, SyncMode.HISTORY):
        columns.append((CONTENT_HASH, "string", "The row's content hash: how an unchanged row is told."))
    if mode is SyncMode.INCREMENTAL_APPEND and (keyless or settings.change_feed):
        columns.append((ROW_ID, "string", "Content hash and occurrence: two identical rows stay two."))
    if (
        settings.change_feed
        and mode is SyncMode.INCREMENTAL_APPEND_DEDUPED
        and settings.deletes is Deletes.SOFT
    ):
        columns.append((DELETED, "boolean", "True once the source deleted the row."))
    if settings.change_feed and mode is SyncMode.INCREMENTAL_APPEND:
        columns.append((CHANGE_TYPE, "string", "insert, update_postimage, delete, or snapshot."))
    if mode is SyncMode.HISTORY:
        columns.append((VALID_FROM, "timestamp", "When this version of the row became current."))
        columns.append((VALID_TO, "timestamp", "When a newer version replaced it; NULL while current."))
        columns.append((IS_CURRENT, "boolean", "Whether this is the row's current version."))
    return columns
