"""`zenskar_delivery_sensor`: after a copy's partition is materialized, and once its window has settled,
its delivery runs. One pass over the delivering streams per tick, reading only the Dagster instance: a
window is due when its copy has a materialization newer than its delivery's (or it was never delivered),
and it closed at least `settle` ago. One run per contiguous range of due windows.

A sensor rather than declarative automation: whether a window is due depends on `settle` and the window's
end, which the sensor computes from the stream's own calendar, and it works on an instance whose automation
sensor is off. A delivery that failed is asked for again in the next hour (the run key holds the hour), and
delivers only what is still missing.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.defs.delivery import settled_windows
from zenskar_pipeline.defs.jobs import delivery_job_name
from zenskar_pipeline.defs.requests import RANGE_END, RANGE_START, range_label
from zenskar_pipeline.defs.translator import DELIVERY_TAG
from zenskar_pipeline.sync.calendar import PartitionCalendar

SENSOR_NAME = "zenskar_delivery_sensor"
INTERVAL = 60


@dataclass(frozen=True)
class Delivering:
    stream: ResolvedStream
    copy_key: dg.AssetKey
    delivery_key: dg.AssetKey


def zenskar_delivery_sensor(
    delivering: Sequence[Delivering],
    jobs: "Sequence[dg.UnresolvedAssetJobDefinition]",  # only a type-checking name in dagster
) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        jobs=list(jobs),
        minimum_interval_seconds=INTERVAL,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Delivers each copy's settled windows to Zenskar after the copy changes: one run per "
        "contiguous range of windows whose copy is newer than their delivery.",
    )
    def zenskar_delivery_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = dt.datetime.now(dt.UTC)
        requests: list[dg.RunRequest] = []
        for item in delivering:
            requests += due_requests(context.instance, item, now)
        return dg.SensorResult(run_requests=requests)

    return zenskar_delivery_sensor


def due_requests(instance: dg.DagsterInstance, item: Delivering, now: dt.datetime) -> list[dg.RunRequest]:
    """The runs `item`'s delivery is due for at `now`."""
    stream = item.stream
    hour = now.strftime("%Y%m%d%H")
    job = delivery_job_name(stream)
    tags = {DELIVERY_TAG: stream.name}
    if stream.settings.partitions is None:
        copy, delivered = _latest_id(instance, item.copy_key), _latest_id(instance, item.delivery_key)
        if copy is None or (delivered is not None and delivered > copy):
            return []
        return [
            dg.RunRequest(
                run_key=f"deliver:{stream.name}:whole:{copy}:{hour}",
                job_name=job,
                asset_selection=[item.delivery_key],
                tags=tags,
            )
        ]
    storage = instance.event_log_storage
    kind = DagsterEventType.ASSET_MATERIALIZATION
    copies = storage.get_latest_storage_id_by_partition(item.copy_key, kind)
    deliveries = storage.get_latest_storage_id_by_partition(item.delivery_key, kind)
    changed = [key for key, copy_id in copies.items() if deliveries.get(key, -1) < copy_id]
    calendar = PartitionCalendar(stream.settings.partitions, None, now)
    known = [key for key in changed if calendar.has_key(key)]
    due, _ = settled_windows(stream, sorted(known), now)
    requests = []
    for keys in calendar.contiguous_ranges(due):
        newest = max(copies[key] for key in keys)
        run_tags = dict(tags)
        partition_key = keys[0] if len(keys) == 1 else None
        if len(keys) > 1:
            run_tags.update({RANGE_START: keys[0], RANGE_END: keys[-1]})
        requests.append(
            dg.RunRequest(
                run_key=f"deliver:{stream.name}:{range_label(keys)}:{newest}:{hour}",
                job_name=job,
                asset_selection=[item.delivery_key],
                partition_key=partition_key,
                tags=run_tags,
            )
        )
    return requests


def _latest_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    records = instance.fetch_materializations(key, limit=1).records
    return records[0].storage_id if records else None
