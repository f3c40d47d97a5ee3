"""`delta_version_sensor`: one pass over every stream's source table per tick (`sync.watch`), its cursor the
last Delta version seen per table, and one run per contiguous range of the partitions a new version changed.

No annotations import from `__future__` here: Dagster reads the sensor function's resource annotation.
"""

import json
import os
from collections.abc import Sequence

import dagster as dg

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.databricks import DatabricksResource
from zenskar_pipeline.defs.jobs import stream_job_name
from zenskar_pipeline.defs.requests import range_label, stream_run_request
from zenskar_pipeline.defs.translator import STREAM_TAG, StreamTranslator
from zenskar_pipeline.destinations import DestinationResource
from zenskar_pipeline.sync.modes import strategy_for
from zenskar_pipeline.sync.watch import DEFAULT_WORKERS, NewVersion, Watched, WatchMemory, watch

SENSOR_NAME = "delta_version_sensor"
INTERVAL_ENV = "ZENSKAR_PIPELINE_SENSOR_INTERVAL"
WORKERS_ENV = "ZENSKAR_PIPELINE_SENSOR_WORKERS"
DEFAULT_INTERVAL = 30
# Dagster's tag for an observation's data version (`DATA_VERSION_TAG`, not exported from `dagster`).
DATA_VERSION_TAG = "dagster/data_version"


def delta_version_sensor(
    watched: Sequence[Watched],
    jobs: "Sequence[dg.UnresolvedAssetJobDefinition]",  # only a type-checking name in dagster
    translator: StreamTranslator,
) -> dg.SensorDefinition:
    """The sensor over `watched`, sending each stream's runs to its partitions definition's job in `jobs`
    (`stream_job_name`), selecting the stream's copy.

    Every `ZENSKAR_PIPELINE_SENSOR_INTERVAL` seconds (default 30), with at most
    `ZENSKAR_PIPELINE_SENSOR_WORKERS` sessions at once (default 4); running by default.
    """
    interval = _positive_int(INTERVAL_ENV, DEFAULT_INTERVAL)
    workers = _positive_int(WORKERS_ENV, DEFAULT_WORKERS)
    configured = {item.name for item in watched}
    # Kept in the code server's process from tick to tick (hints, whose turn it is, open sessions); sessions
    # opened with other connection settings are not reused.
    memory = WatchMemory()
    connected_with: list[str] = []

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=list(jobs),
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reads each source table's latest Delta version; for a new one, runs the partitions "
        "whose rows changed (one run per contiguous range) and records the version as the source's "
        "data version.",
    )
    def delta_version_sensor(
        context: dg.SensorEvaluationContext, databricks: DatabricksResource, destination: DestinationResource
    ) -> dg.SensorResult:
        seen = read_cursor(context.cursor)
        settings = databricks.model_dump_json()  # held in memory only, never logged
        if connected_with != [settings]:
            memory.sessions.close()
            connected_with[:] = [settings]
        found = watch(databricks.session, destination, watched, seen, workers=workers, memory=memory)
        if found.unreachable is not None:
            # No session at all (host, token, warehouse): a failed tick shows in the UI; the cursor stays.
            raise RuntimeError(f"cannot reach the Databricks warehouse: {found.unreachable}")
        for name, reason in found.failed.items():
            context.log.warning(f"{name}: skipped this tick, its version stays {seen.get(name)}: {reason}")
        requests: list[dg.RunRequest] = []
        observations: list[dg.AssetObservation] = []
        for new in found.new:
            observations.append(_observation(new, translator))
            if catches_up(new.stream) and _waiting(context.instance, new.stream.name):
                context.log.info(
                    f"{new.stream.name}: version {new.version} (seen {new.seen}): a run of the stream is "
                    "waiting to start, and it brings the whole copy up to the version current then"
                )
                continue
            requests += run_requests(new, translator)
            context.log.info(
                f"{new.stream.name}: version {new.version} (seen {new.seen}): "
                f"{_asked(new)}; {new.requested.reason}"
            )
        # Only configured tables are kept, and a failed table keeps the version seen before it.
        cursor = {name: version for name, version in seen.items() if name in configured}
        cursor.update(found.versions)
        return dg.SensorResult(
            run_requests=requests, asset_events=observations, cursor=json.dumps(cursor, sort_keys=True)
        )

    return delta_version_sensor


def run_requests(new: NewVersion, translator: StreamTranslator) -> list[dg.RunRequest]:
    """One request per contiguous range (or one for the whole table), keyed by table, range and version, so
    the same version is never run twice for the same range."""
    stream = new.stream
    ranges: list[tuple[str, ...]] = [()] if new.requested.whole else list(new.requested.ranges)
    return [
        stream_run_request(
            stream,
            keys,
            f"{stream.name}:{range_label(keys)}@{new.version}",
            job_name=stream_job_name(stream),
            asset_selection=[translator.copy_key(stream)],
        )
        for keys in ranges
    ]


def catches_up(stream: ResolvedStream) -> bool:
    """Whether any run of the stream, whatever its partitions, lands every change up to the version it
    reads: unpartitioned streams (the whole table), and streams whose mode says so (a change feed lands
    every change since the synced-through version). For those a run not started yet covers a newer version
    too, so none is added behind it and a busy table does not pile up runs."""
    return stream.settings.partitions is None or strategy_for(stream.settings).catches_up


def _waiting(instance: dg.DagsterInstance, stream_name: str) -> bool:
    """Whether a run of the stream is created or queued but not started (it has read nothing yet)."""
    statuses = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED]
    waiting = instance.get_run_ids(
        filters=dg.RunsFilter(tags={STREAM_TAG: stream_name}, statuses=statuses), limit=1
    )
    return bool(waiting)


def read_cursor(cursor: str | None) -> dict[str, int]:
    """`{"catalog.schema.table": last version seen}`; an unreadable cursor starts over (first sight)."""
    if not cursor:
        return {}
    try:
        loaded = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(k): int(v) for k, v in loaded.items() if isinstance(v, int) and not isinstance(v, bool)}


def _observation(new: NewVersion, translator: StreamTranslator) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=translator.source_key(new.stream),
        tags={DATA_VERSION_TAG: str(new.version)},
        metadata={"delta_version": new.version},
    )


def _asked(new: NewVersion) -> str:
    if new.requested.whole:
        return "runs the whole table"
    if not new.requested.ranges:
        return "nothing to run"
    return "runs " + ", ".join(range_label(keys) for keys in new.requested.ranges)


def _positive_int(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable}={raw!r}: give a whole number of at least 1 (default {default})")
    return value
