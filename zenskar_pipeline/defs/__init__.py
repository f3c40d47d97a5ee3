"""Dagster glue: the streams file and the discovery cache become assets, checks and per-stream jobs.

`build_definitions` is what `definitions.py` calls; subclass `StreamTranslator` to change keys and groups.
"""

from zenskar_pipeline.defs.assets import TRANSIENT_RETRY, WAREHOUSE_POOL, partitions_def, stream_asset
from zenskar_pipeline.defs.build import build_definitions
from zenskar_pipeline.defs.checks import OUTSIDE_WINDOWS
from zenskar_pipeline.defs.jobs import stream_job_name
from zenskar_pipeline.defs.translator import STREAM_TAG, StreamTranslator

__all__ = [
    "OUTSIDE_WINDOWS",
    "STREAM_TAG",
    "TRANSIENT_RETRY",
    "WAREHOUSE_POOL",
    "StreamTranslator",
    "build_definitions",
    "partitions_def",
    "stream_asset",
    "stream_job_name",
]
