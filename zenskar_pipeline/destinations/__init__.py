"""Where rows land: one Delta table per stream (local folder or object store).

`DeltaDestination` writes Arrow batches in the three sync modes; `landing` names the system columns every
landed row carries; `schema_drift` decides which source column changes a copy can follow.
"""

from zenskar_pipeline.destinations.delta import (
    AppTransaction,
    DeltaDestination,
    DestinationNotWritableError,
    Rows,
    WriteResult,
)
from zenskar_pipeline.destinations.landing import (
    CONTENT_HASH,
    PARTITION,
    ROW_ID,
    SOURCE_VERSION,
    SYNCED_AT,
)
from zenskar_pipeline.destinations.schema_drift import SchemaDriftError

__all__ = [
    "CONTENT_HASH",
    "PARTITION",
    "ROW_ID",
    "SOURCE_VERSION",
    "SYNCED_AT",
    "AppTransaction",
    "DeltaDestination",
    "DestinationNotWritableError",
    "Rows",
    "SchemaDriftError",
    "WriteResult",
]
