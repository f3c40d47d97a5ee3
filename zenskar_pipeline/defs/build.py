"""A validated streams file and the discovery cache become `dg.Definitions`, without contacting Databricks."""

from __future__ import annotations

import dagster as dg

from zenskar_pipeline.config import PipelineConfig
from zenskar_pipeline.databricks import DatabricksResource
from zenskar_pipeline.databricks.discovery import DiscoveredCatalog
from zenskar_pipeline.defs.assets import stream_asset
from zenskar_pipeline.defs.delivery import delivery_asset
from zenskar_pipeline.defs.delivery_sensor import Delivering, zenskar_delivery_sensor
from zenskar_pipeline.defs.jobs import delivery_job_name, stream_job_name
from zenskar_pipeline.defs.schedules import stream_schedules
from zenskar_pipeline.defs.sensor import delta_version_sensor
from zenskar_pipeline.defs.translator import StreamTranslator
from zenskar_pipeline.delivery.resource import ZenskarResource
from zenskar_pipeline.destinations import DeltaDestinationResource, DestinationResource
from zenskar_pipeline.streams import validate_streams
from zenskar_pipeline.sync.watch import Watched


def build_definitions(
    config: PipelineConfig,
    state: DiscoveredCatalog,
    translator: StreamTranslator | None = None,
    *,
    databricks: DatabricksResource | None = None,
    destination: DestinationResource | None = None,
    zenskar: ZenskarResource | None = None,
) -> dg.Definitions:
    """Per stream: the source table as an external asset and its copy as an asset. One job per partitions
    definition runs any of its copies (runs select one copy and carry the tag `zenskar/stream`, which
    `dagster.yaml` limits to one run at a time); over all streams, the sensor on new Delta versions and
    one schedule per (cron, partitions definition).

    A job per stream would be simpler to name, but Dagster resolves each job against the whole asset graph:
    with 500 streams that alone took 30 s of every code location load.

    `ConfigError` when the streams file does not fit the discovered tables. `databricks` defaults to
    `DatabricksResource.from_env()`, which only names variables: nothing connects until a step runs;
    `destination` to `DeltaDestinationResource.from_env()` (object-store credentials from the environment);
    `zenskar` to `ZenskarResource.from_env()`. A stream with `deliver:` also gets its delivery asset, in
    one delivery job per partitions definition, run by `zenskar_delivery_sensor`.
    """
    translator = translator or StreamTranslator()
    streams = validate_streams(config, state)
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = []
    copies: dict[str, list[dg.AssetKey]] = {}  # by job name
    watched: list[Watched] = []
    deliveries: dict[str, list[dg.AssetKey]] = {}  # by job name
    delivering: list[Delivering] = []
    for stream in streams:
        table = state.get(stream.name)
        assert table is not None  # validate_streams keeps only discovered tables
        assets.append(translator.source_spec(stream, table))
        copy = stream_asset(stream, table, translator)
        assets.append(copy)
        copies.setdefault(stream_job_name(stream), []).extend(copy.keys)
        watched.append(Watched(stream, table))
        if stream.settings.deliver is not None:
            delivery = delivery_asset(stream, table, translator)
            assets.append(delivery)
            deliveries.setdefault(delivery_job_name(stream), []).extend(delivery.keys)
            delivering.append(Delivering(stream, copy.key, delivery.key))
    jobs = [
        dg.define_asset_job(
            name,
            selection=dg.AssetSelection.assets(*keys),
            description="Sync copies of one partitions definition; each run selects one copy.",
        )
        for name, keys in copies.items()
    ]
    delivery_jobs = [
        dg.define_asset_job(
            name,
            selection=dg.AssetSelection.assets(*keys),
            description="Deliver copies' rows of one partitions definition to Zenskar; each run selects one.",
        )
        for name, keys in deliveries.items()
    ]
    sensors = [delta_version_sensor(watched, jobs, translator)] if watched else []
    if delivering:
        sensors.append(zenskar_delivery_sensor(delivering, delivery_jobs))
    return dg.Definitions(
        assets=assets,
        jobs=[*jobs, *delivery_jobs],
        sensors=sensors,
        schedules=stream_schedules(streams, translator),
        # A run is one sync step (its checks included): run in the worker itself, so that nothing is left
        # writing when a worker is killed (a multiprocess step lived on, re-parented, after its run was
        # failed and its stream freed), and no subprocess is started per run.
        executor=dg.in_process_executor,
        resources={
            "databricks": databricks or DatabricksResource.from_env(),
            "destination": destination or DeltaDestinationResource.from_env(),
            "zenskar": zenskar or ZenskarResource.from_env(),
        },
    )
