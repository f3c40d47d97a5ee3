"""The partition calendar against the partitions definitions the product registers with Dagster
(`defs.assets.partitions_def`): the same keys, windows and latest keys at any `now`, through the DST
transitions of New York and London, and refusals of keys and ranges that are not the definition's."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from zoneinfo import ZoneInfo

import pytest

from zenskar_pipeline.config import Granularity, PartitionSpec
from zenskar_pipeline.databricks.discovery import TypeFamily
from zenskar_pipeline.defs.assets import partitions_def
from zenskar_pipeline.sync.calendar import PartitionCalendar

NEW_YORK = "America/New_York"
LONDON = "Europe/London"
MICRO = dt.timedelta(microseconds=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def at(text: str) -> dt.datetime:
    """A UTC instant, `2026-11-01 06:00`."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


# Each zone's 2026 transitions as UTC instants; UTC has none, so it takes both zones' instants.
TRANSITIONS = {
    # 02:00 EST -> 03:00 EDT; 02:00 EDT -> 01:00 EST
    NEW_YORK: (at("2026-03-08 07:00"), at("2026-11-01 06:00")),
    # 01:00 GMT -> 02:00 BST; 02:00 BST -> 01:00 GMT
    LONDON: (at("2026-03-29 01:00"), at("2026-10-25 01:00")),
}
TRANSITIONS["UTC"] = TRANSITIONS[NEW_YORK] + TRANSITIONS[LONDON]
CASES = [(zone, moment) for zone, moments in TRANSITIONS.items() for moment in moments]
CASE_IDS = [f"{zone}-{moment:%m-%d}" for zone, moment in CASES]


def spec(granularity: Granularity, start: dt.datetime, zone: str, include_current: bool) -> PartitionSpec:
    return PartitionSpec("updated_at", granularity, start, zone, include_current)


def dagster_keys(partitions: PartitionSpec, now: dt.datetime) -> list[str]:
    definition = partitions_def(partitions)
    assert definition is not None
    return list(definition.get_partition_keys(current_time=now))


def start_before(granularity: Granularity, transition: dt.datetime, zone: str) -> dt.datetime:
    """A start a little before the transition's local day: two days of hours, else a few windows."""
    day = dt.datetime.combine(transition.astimezone(ZoneInfo(zone)).date(), dt.time())
    if granularity is Granularity.HOURLY:
        return day - 2 * DAY
    if granularity is Granularity.DAILY:
        return day - 10 * DAY
    if granularity is Granularity.WEEKLY:
        return day - dt.timedelta(days=28 + (day.weekday() + 1) % 7)  # a Sunday
    return (day.replace(day=1) - 80 * DAY).replace(day=1)


def nows(
    granularity: Granularity, zone: str, transition: dt.datetime, start: dt.datetime
) -> list[dt.datetime]:
    """Instants around the transition, around the local midnights either side of it, and around the start
    (inside the window before it, too, where end_offset 1 lists the first window early)."""
    zone_info = ZoneInfo(zone)
    local_day = transition.astimezone(zone_info).date()
    edges = [dt.datetime.combine(local_day + d * DAY, dt.time(), zone_info) for d in (0, 1)]
    opened = start.replace(tzinfo=zone_info)
    moments = [transition + d * MINUTE for d in (-120, -60, -30, 0, 30, 60, 90, 120)]
    moments += [moment + d for moment in [transition, *edges, opened] for d in (-MICRO, MICRO)]
    moments += [*edges, transition + DAY, opened - 30 * MINUTE, opened - HOUR]
    if granularity is not Granularity.HOURLY:
        moments += [transition + 8 * DAY, transition + 40 * DAY]
    return sorted({moment.astimezone(dt.UTC) for moment in moments})


@pytest.mark.parametrize("include_current", [True, False], ids=["end_offset=1", "end_offset=0"])
@pytest.mark.parametrize(("zone", "transition"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("granularity", list(Granularity), ids=str)
def test_keys_and_latest_keys_are_dagsters_at_every_now(
    granularity: Granularity, zone: str, transition: dt.datetime, include_current: bool
) -> None:
    partitions = spec(granularity, start_before(granularity, transition, zone), zone, include_current)
    for now in nows(granularity, zone, transition, partitions.start):
        calendar = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, now)
        expected = dagster_keys(partitions, now)
        assert list(calendar.keys()) == expected, f"now={now}"
        if expected:
            assert (calendar.first_key, calendar.last_key) == (expected[0], expected[-1]), f"now={now}"
        for count in (1, 2, 3, 30):
            assert calendar.latest_keys(count) == expected[-count:], f"now={now}, count={count}"


@pytest.mark.parametrize("include_current", [True, False], ids=["end_offset=1", "end_offset=0"])
@pytest.mark.parametrize(("zone", "transition"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("granularity", list(Granularity), ids=str)
def test_windows_are_dagsters_instants_and_wall_clock(
    granularity: Granularity, zone: str, transition: dt.datetime, include_current: bool
) -> None:
    partitions = spec(granularity, start_before(granularity, transition, zone), zone, include_current)
    definition = partitions_def(partitions)
    assert definition is not None
    now = max(nows(granularity, zone, transition, partitions.start))
    calendar = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, now)
    windows = calendar.all_windows()
    assert [w.key for w in windows] == dagster_keys(partitions, now)
    for window in windows:
        theirs = definition.time_window_for_partition_key(window.key)
        # TIMESTAMP bounds are what the reader binds: they must be Dagster's instants.
        assert calendar.bound(window.start) == theirs.start.astimezone(dt.UTC), window.key
        assert calendar.bound(window.end) == theirs.end.astimezone(dt.UTC), window.key
        assert (window.start, window.end) == (
            theirs.start.replace(tzinfo=None),
            theirs.end.replace(tzinfo=None),
        ), window.key
        assert calendar.window(window.key) == window


@pytest.mark.parametrize(
    ("zone", "start", "now", "expected"),
    [
        (  # the skipped hour 02:00 has no key; 01:00 lasts until the clock resumes at 03:00 EDT
            NEW_YORK,
            "2026-03-08 00:00",
            "2026-03-08 08:00",
            [("2026-03-08-00:00", "05:00"), ("2026-03-08-01:00", "06:00"), ("2026-03-08-03:00", "07:00")],
        ),
        (  # the repeated hour is two keys, the second carrying its offset
            NEW_YORK,
            "2026-11-01 00:00",
            "2026-11-01 08:00",
            [
                ("2026-11-01-00:00", "04:00"),
                ("2026-11-01-01:00", "05:00"),
                ("2026-11-01-01:00-0500", "06:00"),
                ("2026-11-01-02:00", "07:00"),
            ],
        ),
        (
            LONDON,
            "2026-03-29 00:00",
            "2026-03-29 03:00",
            [("2026-03-29-00:00", "00:00"), ("2026-03-29-02:00", "01:00"), ("2026-03-29-03:00", "02:00")],
        ),
        (
            LONDON,
            "2026-10-25 00:00",
            "2026-10-25 03:00",
            [
                ("2026-10-25-00:00", "-1 23:00"),
                ("2026-10-25-01:00", "00:00"),
                ("2026-10-25-01:00+0000", "01:00"),
                ("2026-10-25-02:00", "02:00"),
            ],
        ),
    ],
    ids=["new-york-spring", "new-york-fall", "london-spring", "london-fall"],
)
def test_hourly_keys_skip_and_repeat_hours_as_dagsters_do(
    zone: str, start: str, now: str, expected: list[tuple[str, str]]
) -> None:
    """Each window lasts one real hour; `expected` gives each key's start in UTC on the transition's day
    (`-1 23:00`: the day before)."""
    partitions = spec(Granularity.HOURLY, dt.datetime.fromisoformat(start), zone, False)
    calendar = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, at(now))
    day = at(now).replace(hour=0)

    def utc_start(text: str) -> dt.datetime:
        before, _, clock = text.rpartition(" ")
        hours, minutes = map(int, clock.split(":"))
        return day + int(before or 0) * DAY + dt.timedelta(hours=hours, minutes=minutes)

    assert [(w.key, calendar.bound(w.start), calendar.bound(w.end)) for w in calendar.all_windows()] == [
        (key, utc_start(text), utc_start(text) + HOUR) for key, text in expected
    ]
    assert list(calendar.keys()) == dagster_keys(partitions, at(now))


@pytest.mark.parametrize(
    ("zone", "start", "first_key"),
    [
        (NEW_YORK, "2026-03-08 02:00", "2026-03-08-03:00"),  # a skipped hour opens at the next one
        (NEW_YORK, "2026-11-01 01:00", "2026-11-01-01:00"),  # a repeated hour opens at its first pass
        (LONDON, "2026-03-29 01:00", "2026-03-29-02:00"),
        (LONDON, "2026-10-25 01:00", "2026-10-25-01:00"),
    ],
)
def test_a_start_in_a_skipped_or_repeated_hour_opens_where_dagsters_does(
    zone: str, start: str, first_key: str
) -> None:
    partitions = spec(Granularity.HOURLY, dt.datetime.fromisoformat(start), zone, True)
    now = at("2026-12-01 00:00")
    calendar = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, now)
    assert calendar.first_key == first_key
    assert list(calendar.keys())[:3] == dagster_keys(partitions, now)[:3]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-01-02 00:00", []),  # on the tick before the first window: nothing yet
        ("2026-01-02 00:00:00.000001", ["2026-01-03"]),  # inside the day before: Dagster lists it already
        ("2026-01-02 23:59", ["2026-01-03"]),
        ("2026-01-03 00:00", ["2026-01-03"]),
        ("2026-01-04 00:00", ["2026-01-03", "2026-01-04"]),
    ],
)
def test_end_offset_1_lists_the_first_window_from_inside_the_window_before_it(
    now: str, expected: list[str]
) -> None:
    partitions = spec(Granularity.DAILY, dt.datetime(2026, 1, 3), "UTC", True)
    assert dagster_keys(partitions, at(now)) == expected
    calendar = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, at(now))
    assert list(calendar.keys()) == expected
    assert calendar.latest_keys(5) == expected


@pytest.mark.parametrize("zone", ["UTC", NEW_YORK, LONDON])
def test_a_naive_now_is_wall_clock_in_the_zone(zone: str) -> None:
    partitions = spec(Granularity.DAILY, dt.datetime(2026, 1, 1), zone, False)
    # 00:30 in the zone: the 7th is complete. Read as UTC (this machine's zone), it would be 19:30 on the 7th
    # in New York, and the 6th the last complete day.
    naive = dt.datetime(2026, 3, 8, 0, 30)
    calendar = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, naive)
    assert calendar.last_key == "2026-03-07"
    assert list(calendar.keys()) == dagster_keys(partitions, naive)
    aware = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, naive.replace(tzinfo=ZoneInfo(zone)))
    assert calendar.keys() == aware.keys()


@pytest.mark.parametrize("zone", [NEW_YORK, LONDON])
def test_a_year_of_hourly_keys_is_dagsters(zone: str) -> None:
    partitions = spec(Granularity.HOURLY, dt.datetime(2026, 1, 1), zone, True)
    now = at("2026-12-31 12:30")
    calendar = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, now)
    expected = dagster_keys(partitions, now)
    assert len(expected) > 8700
    assert list(calendar.keys()) == expected
    assert calendar.last_key == expected[-1]
    assert calendar.latest_keys(3) == expected[-3:]


NEW_YORK_HOURLY = spec(Granularity.HOURLY, dt.datetime(2026, 3, 6), NEW_YORK, True)
NOW = at("2026-11-05 00:00")


@pytest.mark.parametrize(
    ("partitions", "key"),
    [
        (NEW_YORK_HOURLY, "2026-03-08-02:00"),  # skipped: Dagster's has_partition_key takes it, as 03:00
        (NEW_YORK_HOURLY, "2026-11-01-01:00-0400"),  # the first pass is spelled without its offset
        (NEW_YORK_HOURLY, "2026-11-01-02:00-0500"),  # no offset outside the second pass
        (NEW_YORK_HOURLY, "2026-03-08-01:30"),
        (NEW_YORK_HOURLY, "2026-03-05-23:00"),  # before the start
        (NEW_YORK_HOURLY, "2026-11-05-00:00"),  # ends after `now`'s window
        (spec(Granularity.DAILY, dt.datetime(2026, 3, 1), NEW_YORK, False), "2026-3-8"),
        (spec(Granularity.WEEKLY, dt.datetime(2026, 3, 1), LONDON, False), "2026-03-09"),  # a Monday
        (spec(Granularity.MONTHLY, dt.datetime(2026, 1, 1), LONDON, False), "2026-03-15"),
    ],
)
def test_window_rejects_a_key_that_is_not_the_definitions(partitions: PartitionSpec, key: str) -> None:
    calendar = PartitionCalendar(partitions, TypeFamily.TIMESTAMP, NOW)
    assert key not in dagster_keys(partitions, NOW)
    message = (
        f"partition key {key!r} is not a partition of this stream (from {calendar.first_key}, "
        f"{partitions.granularity}, up to the window ending {calendar.end:%Y-%m-%d %H:%M})"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        calendar.window(key)
    assert not calendar.has_key(key)


@pytest.mark.parametrize(
    ("granularity", "key"),
    [
        (Granularity.HOURLY, "2026-03-08T01:00"),
        (Granularity.HOURLY, "2026-03-08"),
        (Granularity.DAILY, "03/08"),
    ],
)
def test_window_rejects_a_key_in_another_format(granularity: Granularity, key: str) -> None:
    calendar = PartitionCalendar(
        spec(granularity, dt.datetime(2026, 3, 1), NEW_YORK, True), TypeFamily.TIMESTAMP, NOW
    )
    message = f"partition key {key!r} is not a {granularity} key ({granularity.key_format})"
    with pytest.raises(ValueError, match=re.escape(message)):
        calendar.window(key)


@pytest.mark.parametrize(
    "keys",
    [
        ["2026-11-01-00:00", "2026-11-01-01:00-0500"],  # skips the first pass: the same wall-clock start
        ["2026-11-01-01:00-0500", "2026-11-01-01:00"],  # out of order
        ["2026-03-08-00:00", "2026-03-08-03:00"],
    ],
)
def test_windows_rejects_keys_that_are_not_one_contiguous_run(keys: list[str]) -> None:
    calendar = PartitionCalendar(NEW_YORK_HOURLY, TypeFamily.TIMESTAMP, NOW)
    message = f"partition keys must be one contiguous range in order: {keys[0]} then {keys[1]}"
    with pytest.raises(ValueError, match=re.escape(message)):
        calendar.windows(keys)


@pytest.mark.parametrize(
    "keys",
    [
        ["2026-03-08-01:00", "2026-03-08-03:00"],  # across the skipped hour
        ["2026-11-01-00:00", "2026-11-01-01:00", "2026-11-01-01:00-0500", "2026-11-01-02:00"],
    ],
)
def test_windows_runs_across_a_transition(keys: list[str]) -> None:
    calendar = PartitionCalendar(NEW_YORK_HOURLY, TypeFamily.TIMESTAMP, NOW)
    assert [w.key for w in calendar.windows(keys)] == keys


def test_contiguous_ranges_cut_where_a_window_does_not_follow_in_real_time() -> None:
    calendar = PartitionCalendar(NEW_YORK_HOURLY, TypeFamily.TIMESTAMP, NOW)
    keys = [
        "2026-11-01-02:00",
        "2026-11-01-01:00-0500",
        "2026-11-01-00:00",
        "2026-03-08-03:00",
        "2026-03-08-01:00",
    ]
    assert calendar.contiguous_ranges(keys) == (
        ("2026-03-08-01:00", "2026-03-08-03:00"),
        ("2026-11-01-00:00",),
        ("2026-11-01-01:00-0500", "2026-11-01-02:00"),
    )
    with pytest.raises(ValueError, match="is not a partition of this stream"):
        calendar.contiguous_ranges(["2026-03-08-02:00"])


@pytest.mark.parametrize(
    ("family", "key", "bounds"),
    [
        (TypeFamily.TIMESTAMP, "2026-11-01-01:00", (at("2026-11-01 05:00"), at("2026-11-01 06:00"))),
        (TypeFamily.TIMESTAMP, "2026-11-01-01:00-0500", (at("2026-11-01 06:00"), at("2026-11-01 07:00"))),
        (TypeFamily.TIMESTAMP, "2026-03-08-01:00", (at("2026-03-08 06:00"), at("2026-03-08 07:00"))),
        # Wall-clock values cannot tell the passes apart: the repeated hour goes to the key its clock reads.
        (
            TypeFamily.TIMESTAMP_NTZ,
            "2026-11-01-01:00",
            (dt.datetime(2026, 11, 1, 1), dt.datetime(2026, 11, 1, 2)),
        ),
        (
            TypeFamily.TIMESTAMP_NTZ,
            "2026-11-01-01:00-0500",
            (dt.datetime(2026, 11, 1, 2), dt.datetime(2026, 11, 1, 2)),
        ),
        (
            TypeFamily.TIMESTAMP_NTZ,
            "2026-03-08-01:00",
            (dt.datetime(2026, 3, 8, 1), dt.datetime(2026, 3, 8, 3)),
        ),
    ],
)
def test_bounds_of_hourly_windows_across_transitions(
    family: TypeFamily, key: str, bounds: tuple[dt.datetime, dt.datetime]
) -> None:
    calendar = PartitionCalendar(NEW_YORK_HOURLY, family, NOW)
    window = calendar.window(key)
    assert (calendar.bound(window.start), calendar.bound(window.end)) == bounds


@pytest.mark.parametrize("family", [TypeFamily.TIMESTAMP, TypeFamily.TIMESTAMP_NTZ])
def test_bounds_tile_the_fall_day_without_gap_or_overlap(family: TypeFamily) -> None:
    calendar = PartitionCalendar(NEW_YORK_HOURLY, family, NOW)
    day = [w for w in calendar.all_windows() if w.key.startswith("2026-11-01")]
    assert len(day) == 25
    for before, after in itertools.pairwise(day):
        assert calendar.bound(before.end) == calendar.bound(after.start)  # no gap, no overlap
    assert calendar.bound(day[0].start) == (
        at("2026-11-01 04:00") if family is TypeFamily.TIMESTAMP else dt.datetime(2026, 11, 1)
    )
    assert calendar.bound(day[-1].end) == (
        at("2026-11-02 05:00") if family is TypeFamily.TIMESTAMP else dt.datetime(2026, 11, 2)
    )


def test_date_bounds_are_the_days_of_a_window() -> None:
    calendar = PartitionCalendar(
        spec(Granularity.WEEKLY, dt.datetime(2026, 3, 1), NEW_YORK, True), TypeFamily.DATE, NOW
    )
    window = calendar.window("2026-03-08")
    assert (calendar.bound(window.start), calendar.bound(window.end)) == (
        dt.date(2026, 3, 8),
        dt.date(2026, 3, 15),
    )


@pytest.mark.parametrize(
    ("granularity", "family", "message"),
    [
        (
            Granularity.DAILY,
            TypeFamily.STRING,
            "must be a TIMESTAMP, TIMESTAMP_NTZ or DATE column, not string",
        ),
        (Granularity.HOURLY, TypeFamily.DATE, "hourly partitions need a TIMESTAMP or TIMESTAMP_NTZ"),
    ],
)
def test_the_partition_field_must_hold_a_window_bound(
    granularity: Granularity, family: TypeFamily, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PartitionCalendar(spec(granularity, dt.datetime(2026, 3, 1), "UTC", True), family, NOW)
