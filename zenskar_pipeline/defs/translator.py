"""How streams look in Dagster: one object decides asset keys, groups, kinds, descriptions and metadata for
every stream; subclass `StreamTranslator` to change naming without touching the asset factory."""

from __future__ import annotations

from typing import Any

import dagster as dg

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.destinations import SOURCE_VERSION, SYNCED_AT

STREAM_TAG = "zenskar/stream"


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
            metadata={"table": stream.name},
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
            "dagster/column_schema": self.column_schema(stream, table),
        }
        if settings.primary_key:
            metadata["primary_key"] = list(settings.primary_key)
        if settings.cursor_field:
            metadata["cursor_field"] = settings.cursor_field
        return metadata

    def column_schema(self, stream: ResolvedStream, table: DiscoveredTable) -> dg.TableSchema:
        """The copy's columns: the selected source columns, then the columns every landed row carries."""
        kept = set(stream.settings.columns.select(table.column_names))
        columns = [
            dg.TableColumn(column.name, column.full_data_type, description=column.comment)
            for column in table.columns
            if column.name in kept
        ]
        columns.append(dg.TableColumn(SYNCED_AT, "timestamp", description="When the row landed (UTC)."))
        columns.append(dg.TableColumn(SOURCE_VERSION, "bigint", description="Source Delta version."))
        return dg.TableSchema(columns=columns)

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
        )
