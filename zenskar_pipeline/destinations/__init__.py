"""Where rows land: the `Destination` interface (`base.py`) and its Delta implementation, one Delta table per
stream (local folder or object store), handed out by the `destination` Dagster resource.

`landing` names the system columns every landed row carries; `schema_drift` decides which source column
changes a copy can follow.
"""

from zenskar_pipeline.destinations.base import (
    AppendNew,
    AppTransaction,
    ChangeAction,
    Destination,
    DestinationNotWritableError,
    DestinationResource,
    Landing,
    MergeDeduped,
    Rows,
    WriteResult,
)
from zenskar_pipeline.destinations.delta import DeltaDestination
from zenskar_pipeline.destinations.landing import (
    CONTENT_HASH,
    PARTITION,
    ROW_ID,
    SOURCE_VERSION,
    SYNCED_AT,
)
from zenskar_pipeline.destinations.resource import DeltaDestinationResource
from zenskar_pipeline.destinations.schema_drift import SchemaDriftError

__all__ = [
    "CONTENT_HASH",
    "PARTITION",
    "ROW_ID",
    "SOURCE_VERSION",
    "SYNCED_AT",
    "AppTransaction",
    "AppendNew",
    "ChangeAction",
    "DeltaDestination",
    "DeltaDestinationResource",
    "Destination",
    "DestinationNotWritableError",
    "DestinationResource",
    "Landing",
    "MergeDeduped",
    "Rows",
    "SchemaDriftError",
    "WriteResult",
]
