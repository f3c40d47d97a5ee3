"""A validated streams file and the discovery cache become `dg.Definitions`, without contacting Databricks."""

from __future__ import annotations

import dagster as dg

from zenskar_pipeline.config import PipelineConfig, ResolvedStream
from zenskar_pipeline.databricks import DatabricksResource
from zenskar_pipeline.databricks.discovery import DiscoveredCatalog
from zenskar_pipeline.defs.assets import stream_asset
from zenskar_pipeline.defs.schedules import stream_schedules
from zenskar_pipeline.defs.sensor import delta_version_sensor
from zenskar_pipeline.defs.translator import STREAM_TAG, StreamTranslator
from zenskar_pipeline.state import validate_streams
from zenskar_pipeline.sync.watch import Watched


def build_definitions(
    config: PipelineConfig,
    state: DiscoveredCatalog,
    translator: StreamTranslator | None = None,
    *,
    databricks: DatabricksResource | None = None,
) -> dg.Definitions:
    """Per stream: the source table as an external asset, its copy as an asset, and a job that runs the copy
    with the run tag `zenskar/stream` (which `dagster.yaml` limits to one run at a time); over all streams,
    the sensor on new Delta versions and one schedule per (cron, partitions definition).

    `ConfigError` when the streams file does not fit the discovered tables. `databricks` defaults to
    `DatabricksResource.from_env()`, which only names variables: nothing connects until a step runs.
    """
    translator = translator or StreamTranslator()
    streams = validate_streams(config, state)
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = []
    jobs: dict[str, dg.UnresolvedAssetJobDefinition] = {}
    watched: list[Watched] = []
    for stream in streams:
        table = state.get(stream.name)
        assert table is not None  # validate_streams keeps only discovered tables
        assets.append(translator.source_spec(stream, table))
        copy = stream_asset(stream, table, translator)
        assets.append(copy)
        jobs[stream.name] = dg.define_asset_job(
            stream_job_name(stream),
            selection=dg.AssetSelection.assets(*copy.keys),
            tags={STREAM_TAG: stream.name},
            description=f"Sync {stream.name} into {stream.destination_uri}.",
        )
        watched.append(Watched(stream, table))
    return dg.Definitions(
        assets=assets,
        jobs=list(jobs.values()),
        sensors=[delta_version_sensor(watched, jobs, translator)] if watched else [],
        schedules=stream_schedules(streams, translator),
        resources={"databricks": databricks or DatabricksResource.from_env()},
    )


def stream_job_name(stream: ResolvedStream) -> str:
    """`sync__<catalog>__<schema>__<table>`: a job name Dagster accepts, unique per stream."""
    return "sync__" + "__".join(stream.table.parts)
