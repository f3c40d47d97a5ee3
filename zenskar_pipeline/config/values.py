"""Parsers for single values of the streams file; each raises `Invalid(problem, fix)` for bad input.

The caller knows the stream and the key, and turns an `Invalid` into a `Problem`.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TypeVar

from dagster._utils.schedules import is_valid_cron_string

from zenskar_pipeline.config.errors import choose_from, suggest
from zenskar_pipeline.config.models import (
    IDENTIFIER,
    SOURCE_NAMESPACE,
    Granularity,
    Namespace,
    NamespaceKind,
)

E = TypeVar("E", bound=StrEnum)

DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
# Storage schemes delta-rs opens (object_store); anything else without "://" is a local folder.
URL_SCHEMES = ("s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "file")


class Invalid(ValueError):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


def enum_value(value: object, kind: type[E], noun: str) -> E:
    choices = [member.value for member in kind]
    if isinstance(value, str) and value in choices:
        return kind(value)
    raise Invalid(f"{value!r} is not {noun}", choose_from(str(value), choices))


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise Invalid(f"{value!r} is not a boolean", "write true or false (unquoted)")


MAX_NAME_LENGTH = 255  # Unity Catalog's limit for a name


def column(value: object) -> str:
    """A column name as the source spells it: any text Unity Catalog allows (Unicode, spaces, dots,
    backticks, keywords), as every statement quotes it; only what no name can be is refused, as
    `databricks.sql_text.quote_identifier` refuses it."""
    fix = "write the column's name as the source spells it, quoted in YAML when it holds : # or a quote"
    if not isinstance(value, str) or not value:
        raise Invalid(f"{value!r} is not a column name", fix)
    if len(value) > MAX_NAME_LENGTH or "\x00" in value:
        shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
        raise Invalid(f"{shown} is not a column name (at most {MAX_NAME_LENGTH} characters, no NUL)", fix)
    return value


def columns(value: object, *, allow_one: bool = False) -> tuple[str, ...]:
    """A list of column names (or, with `allow_one`, a single name); no repeats, not empty."""
    if allow_one and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise Invalid(f"{value!r} is not a list of column names", "write a list such as [event_id]")
    names = tuple(column(item) for item in value)
    repeated = sorted({name for name in names if [n.casefold() for n in names].count(name.casefold()) > 1})
    if repeated:
        raise Invalid(f"{', '.join(repeated)} listed more than once", "list each column once")
    return names


def duration(value: object) -> dt.timedelta:
    """`0s`, `10m`, `2h`, `1d` or a combination such as `1h30m`; a bare 0 is zero."""
    if value == 0 and not isinstance(value, bool):
        return dt.timedelta(0)
    match = DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or not value or not any(match.groups()):
        raise Invalid(
            f"{value!r} is not a duration",
            "write a number with a unit s, m, h or d, such as 0s, 10m, 2h or 1d",
        )
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def freshness(value: object) -> dt.timedelta:
    """How old a copy may get before Dagster shows it late: a duration of at least a minute (Dagster's
    freshness checks measure no finer)."""
    try:
        window = duration(value)
    except Invalid:
        raise Invalid(
            f"{value!r} is not a duration", "write how old the copy may get, such as 30m, 2h or 1d"
        ) from None
    if window < dt.timedelta(minutes=1):
        raise Invalid(
            f"{value!r} is under a minute, finer than Dagster checks freshness",
            "write 1m or more, such as 2h, or remove freshness",
        )
    return window


API_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def api_slug(value: object) -> str:
    """A Zenskar usage event's `api_slug`: the last part of its url, `/usage/{api_slug}`."""
    if isinstance(value, str) and API_SLUG.fullmatch(value):
        return value
    raise Invalid(
        f"{value!r} is not a usage event's api_slug",
        "write the slug Zenskar shows for the usage event (letters, digits, _ and -), such as api_calls",
    )


def event_field(value: object) -> str:
    """The name of a field in a usage event's `data`."""
    if isinstance(value, str) and value.strip() and len(value) <= MAX_NAME_LENGTH:
        return value
    raise Invalid(
        f"{value!r} is not an event field name", "write the field's name in the usage event's schema"
    )


def cron(value: object) -> str:
    if isinstance(value, str) and is_valid_cron_string(value):
        return value
    raise Invalid(
        f"{value!r} is not a cron schedule",
        "write five fields 'minute hour day-of-month month day-of-week', such as '15 * * * *'",
    )


def lookback(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise Invalid(f"{value!r} is not a number of partitions", "write a whole number 0 or more")


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone(value: object) -> str:
    if isinstance(value, str) and value in _time_zones():
        return value
    nearest = suggest(str(value), _time_zones())
    fix = (
        f"did you mean {nearest!r}?" if nearest else "use an IANA time zone name such as UTC or Europe/Berlin"
    )
    raise Invalid(f"{value!r} is not a time zone", fix)


def _parse_start(value: object) -> dt.datetime | dt.date | None:
    """What a `start` value says: a datetime (minute precision), a date, or None when unreadable."""
    if isinstance(value, dt.datetime):  # unquoted `2026-01-01 13:00:00` in YAML
        return None if value.tzinfo is not None else value
    if isinstance(value, dt.date):  # unquoted `2026-01-01` in YAML
        return value
    if not isinstance(value, str):
        return None
    for fmt in ("%Y-%m-%d-%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"):
        try:
            return dt.datetime.strptime(value, fmt)
        except ValueError:
            pass
    try:
        return dt.date.fromisoformat(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
    except ValueError:
        return None


def _day(day: dt.date) -> str:
    return day.isoformat()


def partition_start(value: object, granularity: Granularity) -> dt.datetime:
    """A start that opens a window of `granularity`, as Dagster would key it; else the nearest valid ones."""
    parsed = _parse_start(value)
    if parsed is None:
        example = "'2026-01-01-00:00'" if granularity is Granularity.HOURLY else "'2026-01-01'"
        raise Invalid(f"{value!r} is not a {granularity.value} start", f"write it as {example}")
    if granularity is Granularity.HOURLY:
        if not isinstance(parsed, dt.datetime):
            raise Invalid(
                f"an hourly start needs an hour, {str(value)!r} has none",
                f"write '{_day(parsed)}-00:00' (YYYY-MM-DD-HH:MM)",
            )
        if parsed.minute or parsed.second or parsed.microsecond:
            hour = parsed.replace(minute=0, second=0, microsecond=0)
            next_hour = hour + dt.timedelta(hours=1)
            raise Invalid(
                f"{str(value)!r} does not open an hourly window",
                f"start on the hour: '{hour:%Y-%m-%d-%H:%M}' or '{next_hour:%Y-%m-%d-%H:%M}'",
            )
        return parsed
    if isinstance(parsed, dt.datetime):
        if parsed.time() != dt.time(0):
            raise Invalid(
                f"a {granularity.value} start is a date, {str(value)!r} has a time of day",
                f"write '{_day(parsed.date())}' (YYYY-MM-DD)",
            )
        parsed = parsed.date()
    if granularity is Granularity.WEEKLY and parsed.weekday() != 6:
        sunday = parsed - dt.timedelta(days=(parsed.weekday() + 1) % 7)
        raise Invalid(
            f"{_day(parsed)} is a {parsed:%A}, and weekly windows start on Sunday",
            f"use '{_day(sunday)}' or '{_day(sunday + dt.timedelta(days=7))}'",
        )
    if granularity is Granularity.MONTHLY and parsed.day != 1:
        first = parsed.replace(day=1)
        following = (first + dt.timedelta(days=32)).replace(day=1)
        raise Invalid(
            f"{_day(parsed)} is not the 1st of a month, and monthly windows start on the 1st",
            f"use '{_day(first)}' or '{_day(following)}'",
        )
    return dt.datetime.combine(parsed, dt.time(0))


def table_selector(value: object) -> str:
    """`catalog.schema.table`, or a pattern with `*` in a part; lower-case, as Unity Catalog stores names."""
    fix = "write catalog.schema.table, such as main.billing.usage_events, or a pattern such as main.billing.*"
    if not isinstance(value, str):
        raise Invalid(f"{value!r} is not a table name", fix)
    parts = value.split(".")
    if len(parts) != 3:
        raise Invalid(f"{value!r} is not catalog.schema.table (it has {len(parts)} part(s))", fix)
    for part in parts:
        if not IDENTIFIER.fullmatch(part.replace("*", "_")):
            raise Invalid(
                f"{value!r} is not a table name: {part!r} has characters other than letters, digits and "
                "underscore (and * in a pattern)",
                fix,
            )
    return value.lower()


def identifier(value: object, *, empty_ok: bool = False) -> str:
    if isinstance(value, str) and (IDENTIFIER.fullmatch(value) or (empty_ok and value == "")):
        return value
    raise Invalid(f"{value!r} is not a name of letters, digits and underscores", "use only those characters")


def namespace(value: object) -> Namespace:
    kinds = [NamespaceKind.SOURCE.value, NamespaceKind.DESTINATION.value]
    if isinstance(value, str) and value in kinds:
        return Namespace(NamespaceKind(value))
    choices = f"source | destination | a pattern using {SOURCE_NAMESPACE}, such as raw_{SOURCE_NAMESPACE}"
    if not isinstance(value, str) or SOURCE_NAMESPACE not in value:
        nearest = suggest(str(value), kinds)
        fix = f"did you mean {nearest!r}? ({choices})" if nearest else f"use {choices}"
        if nearest is None and isinstance(value, str) and IDENTIFIER.fullmatch(value):
            fix += f"; for one fixed folder, use namespace: destination with default_schema: {value}"
        raise Invalid(f"{value!r} is not a namespace", fix)
    literal = value.replace(SOURCE_NAMESPACE, "_")
    if not IDENTIFIER.fullmatch(literal):
        raise Invalid(
            f"{value!r} is not a namespace pattern",
            f"besides {SOURCE_NAMESPACE}, use only letters, digits and underscores",
        )
    return Namespace(NamespaceKind.CUSTOM, value)


def url_scheme(uri: str) -> str | None:
    """`s3` for `s3://bucket/copies`; None for a plain path."""
    return uri.split("://", 1)[0].lower() if "://" in uri else None


def local_path(uri: str) -> Path | None:
    """The folder a destination uri names on this machine (plain paths and `file://` urls); None for an
    object store."""
    scheme = url_scheme(uri)
    if scheme is None:
        return Path(uri)
    return Path(uri.split("://", 1)[1]) if scheme == "file" else None


def destination_uri(value: object, base_dir: Path) -> str:
    """A url kept as written, or a local folder made absolute against `base_dir`."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(
            f"{value!r} is not a destination", "write a local folder or an s3://, abfss:// or gs:// url"
        )
    scheme = url_scheme(value)
    if scheme is not None:
        if scheme not in URL_SCHEMES:
            raise Invalid(
                f"{scheme}:// is not a storage delta-rs writes to", choose_from(scheme, URL_SCHEMES)
            )
        return value.rstrip("/")
    return str((base_dir / Path(value).expanduser()).resolve())
