"""Schedules: a stream's `schedule` (cron) runs its latest partition plus `lookback` earlier ones as one range
run, or the whole table when unpartitioned; one schedule per (cron, partitions definition).

A schedule targets the copies of its streams, which share one partitions definition (Dagster cannot put
assets of different definitions in one job); each request selects one stream's copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dagster as dg

from zenskar_pipeline.config import Granularity, ResolvedStream
from zenskar_pipeline.defs.requests import range_label, stream_run_request
from zenskar_pipeline.defs.translator import StreamTranslator
from zenskar_pipeline.sync.calendar import PartitionCalendar


@dataclass(frozen=True)
class ScheduleGroup:
    """Streams run by one schedule: the same cron and the same partitions definition (None: unpartitioned)."""

    cron: str
    granularity: Granularity | None
    start: dt.datetime | None
    timezone: str
    end_offset: int

    @classmethod
    def of(cls, stream: ResolvedStream) -> ScheduleGroup:
        assert stream.settings.schedule is not None
        spec = stream.settings.partitions
        if spec is None:
            return cls(stream.settings.schedule, None, None, "UTC", 0)
        return cls(stream.settings.schedule, spec.granularity, spec.start, spec.timezone, spec.end_offset)

    @property
    def base_name(self) -> str:
        """`<granularity>_copies_<when>`: `daily_copies_hourly_at_15`, `unpartitioned_copies_daily_at_0300`,
        `hourly_copies_every_15_minutes`, `daily_copies_weekly_on_mon_to_fri_at_0615` (see `cron_words`)."""
        return f"{self.granularity or 'unpartitioned'}_copies_{cron_words(self.cron)}"

    @property
    def digest(self) -> str:
        text = f"{self.cron}|{self.granularity}|{self.start}|{self.timezone}|{self.end_offset}"
        return hashlib.sha1(text.encode()).hexdigest()[:6]


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_words(cron: str) -> str:
    """A cron as a name: `15 * * * *` is `hourly_at_15`, `*/15 * * * *` `every_15_minutes`, `0 3 * * *`
    `daily_at_0300`, `15 6 * * 1-5` `weekly_on_mon_to_fri_at_0615`, `0 0 1 * *` `monthly_on_day_1_at_0000`;
    any other cron is spelled out, `*` as `x` and other punctuation as `_` (`cron_0_x_x_x_x_x`)."""
    fields = cron.split()
    if len(fields) == 5:
        minute, hour, day, month, weekday = fields
        if minute.isdigit() and hour == day == month == weekday == "*":
            return f"hourly_at_{int(minute):02d}"
        step = re.fullmatch(r"\*/(\d+)", minute)
        if step and hour == day == month == weekday == "*":
            return f"every_{step.group(1)}_minutes"
        if minute.isdigit() and hour.isdigit() and month == "*":
            at = f"at_{int(hour):02d}{int(minute):02d}"
            days = _weekdays(weekday)
            if day == weekday == "*":
                return f"daily_{at}"
            if day == "*" and days is not None:
                return f"weekly_on_{days}_{at}"
            if day.isdigit() and weekday == "*":
                return f"monthly_on_day_{int(day)}_{at}"
    return "cron_" + re.sub(r"[^A-Za-z0-9]+", "_", cron.replace("*", "x")).strip("_")


def _weekdays(field: str) -> str | None:
    """`1-5` as `mon_to_fri`, `1,3` as `mon_wed`, `sat` as `sat`; None for what this does not spell."""
    words = []
    for part in field.lower().split(","):
        ends = part.split("-")
        if len(ends) > 2 or not all((end.isdigit() and int(end) <= 7) or end in _DAYS for end in ends):
            return None
        names = [_DAYS[int(end)] if end.isdigit() else end for end in ends]
        words.append("_to_".join(names))
    return "_".join(words)


def stream_schedules(
    streams: Sequence[ResolvedStream], translator: StreamTranslator
) -> list[dg.ScheduleDefinition]:
    """One running schedule per (cron, partitions definition) of the streams that have a `schedule`."""
    groups: dict[ScheduleGroup, list[ResolvedStream]] = {}
    for stream in streams:
        if stream.settings.schedule is not None:
            groups.setdefault(ScheduleGroup.of(stream), []).append(stream)
    names = [group.base_name for group in groups]
    schedules = []
    for group, members in groups.items():
        # Definitions that differ only in start or time zone share a base name: the digest tells them apart.
        name = group.base_name if names.count(group.base_name) == 1 else f"{group.base_name}_{group.digest}"
        schedules.append(_schedule(name, group, members, translator))
    return schedules


def _schedule(
    name: str, group: ScheduleGroup, streams: Sequence[ResolvedStream], translator: StreamTranslator
) -> dg.ScheduleDefinition:
    keys = {stream.name: translator.copy_key(stream) for stream in streams}

    def run(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        at = context.scheduled_execution_time
        for stream in streams:
            spec = stream.settings.partitions
            calendar = None if spec is None else PartitionCalendar(spec, None, at)
            wanted = [] if calendar is None else calendar.latest_keys(stream.settings.lookback + 1)
            if calendar is not None and not wanted:
                continue  # no partition yet at this time
            run_key = f"{stream.name}:{range_label(wanted)}@{at.isoformat()}"
            yield stream_run_request(stream, wanted, run_key, asset_selection=[keys[stream.name]])

    shown = ", ".join(stream.name for stream in streams)
    return dg.ScheduleDefinition(
        name=name,
        cron_schedule=group.cron,
        execution_timezone=group.timezone,
        target=dg.AssetSelection.assets(*keys.values()),
        execution_fn=run,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"At `{group.cron}` ({group.timezone}), the latest partition plus lookback of: {shown}.",
    )
