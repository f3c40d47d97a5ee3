"""Running streams through Dagster for the command line (`sync`, `demo`): one run per stream, in process, on
the project's Dagster instance, with each stream's result gathered from its materialization events.

A partitioned stream runs as one single-run backfill over its range (the partition-range tags); an
unpartitioned one runs whole. Dagster's console log is kept to critical messages: a failed stream is
reported as one line of its own. Errors retrying cannot fix fail the step at once (the asset raises them
as not retryable); transient warehouse errors still follow the asset's retry policy.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.defs import STREAM_TAG, stream_job_name
from zenskar_pipeline.defs.jobs import delivery_job_name
from zenskar_pipeline.defs.requests import RANGE_END, RANGE_START
from zenskar_pipeline.defs.translator import DELIVERY_TAG
from zenskar_pipeline.destinations.resource import SECRET_FIELDS, STORAGE_VARIABLES
from zenskar_pipeline.errors import first_line
from zenskar_pipeline.sync.calendar import PartitionCalendar

# Blanked out of every line a failed run reports, in case an error quotes one (the object-store ones too).
SECRET_VARIABLES = (
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "DAGSTER_PG_PASSWORD",
    "ZENSKAR_API_KEY",
    *sorted(STORAGE_VARIABLES[name] for name in SECRET_FIELDS),
)

# A range run announces its planned partitions as one event rather than one per partition (half of what a
# run of a year of hourly partitions writes to the instance); Dagster's cost: a failed run's partitions
# show as missing rather than failed. The variable is Dagster's own, read when a run is created.
PLANNED_AS_ONE_EVENT = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
# Quiet console (see the module docstring).
RUN_CONFIG: dict[str, Any] = {
    "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    "execution": {"config": {"retries": {"disabled": {}}}},
}


@dataclass(frozen=True)
class Selection:
    """Which partitions a run covers: one key, an inclusive range, or everything (`start` to the latest)."""

    partition: str | None = None
    first: str | None = None
    last: str | None = None


@dataclass(frozen=True)
class Plan:
    """What one stream's run covers. `keys` empty and `whole` False: nothing to run (`note` says why)."""

    stream: ResolvedStream
    keys: tuple[str, ...] = ()
    whole: bool = False
    note: str | None = None

    @property
    def label(self) -> str:
        if self.whole:
            return "whole table"
        if not self.keys:
            return "-"
        if len(self.keys) == 1:
            return self.keys[0]
        return f"{self.keys[0]}..{self.keys[-1]} ({len(self.keys)})"


@dataclass(frozen=True)
class StreamResult:
    stream: str
    partitions: str  # the plan's label
    rows_read: int
    rows_written: int
    seconds: float
    error: str | None = None  # one line, no traceback
    materialized: int = 0  # partitions the run recorded (a change feed's first run: every one it snapshot)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


def select_streams(streams: Sequence[ResolvedStream], patterns: Iterable[str]) -> list[ResolvedStream]:
    """The streams whose `catalog.schema.table` matches any of `patterns` (fnmatch); all when none given."""
    patterns = list(patterns)
    if not patterns:
        return list(streams)
    return [s for s in streams if any(fnmatch.fnmatchcase(s.name, p.lower()) for p in patterns)]


def plan_stream(stream: ResolvedStream, selection: Selection, now: dt.datetime | None = None) -> Plan:
    """The partitions `selection` means for `stream` at `now`; `ValueError` (naming the stream) for a key
    it lacks."""
    spec = stream.settings.partitions
    if spec is None:
        return Plan(stream, whole=True)
    keys = list(PartitionCalendar(spec, None, now or dt.datetime.now(dt.UTC)).keys())
    if not keys:
        return Plan(stream, note="no partitions yet (start is in the future)")

    def known(key: str) -> str:
        if key not in keys:
            raise ValueError(
                f"stream {stream.name}: {key!r} is not one of its partitions ({keys[0]} .. {keys[-1]})"
            )
        return key

    if selection.partition is not None:
        return Plan(stream, keys=(known(selection.partition),))
    first = known(selection.first) if selection.first is not None else keys[0]
    last = known(selection.last) if selection.last is not None else keys[-1]
    start, end = keys.index(first), keys.index(last)
    if start > end:
        raise ValueError(f"stream {stream.name}: --from {first} is after --to {last}")
    return Plan(stream, keys=tuple(keys[start : end + 1]))


def last_keys(stream: ResolvedStream, count: int, now: dt.datetime | None = None) -> Selection:
    """The last `count` partitions of a partitioned stream as a range (all, when unpartitioned)."""
    spec = stream.settings.partitions
    if spec is None:
        return Selection()
    keys = PartitionCalendar(spec, None, now or dt.datetime.now(dt.UTC)).latest_keys(count)
    return Selection(first=keys[0], last=keys[-1]) if keys else Selection()


class InstanceUnavailable(Exception):
    """The instance of `DAGSTER_HOME` cannot be opened; the message is one line naming what to check."""


# The variables deploy/dagster.yaml reads its PostgreSQL connection from.
POSTGRES_VARIABLES = (
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
)


# The settings of a local instance (SQLite under DAGSTER_HOME, telemetry off, the run queue's limits): what
# `make dev` runs on, and what a DAGSTER_HOME without a dagster.yaml gets. Without one, Dagster would print a
# warning that the file is missing and a notice about telemetry at the first command.
LOCAL_INSTANCE_SETTINGS = Path(__file__).with_name("dagster.yaml")
INSTANCE_SETTINGS_FILE = "dagster.yaml"  # the one name Dagster reads in DAGSTER_HOME


@contextmanager
def dagster_instance(home: str | None = None) -> Iterator[dg.DagsterInstance]:
    """The instance of `DAGSTER_HOME` when it names an existing folder (given the local instance's settings
    when it has none), else a temporary one; `InstanceUnavailable` when that instance's storage cannot be
    reached or its settings are wrong."""
    home = home if home is not None else os.environ.get("DAGSTER_HOME")
    if home and Path(home).is_dir():
        os.environ["DAGSTER_HOME"] = str(Path(home).resolve())
        try:
            write_instance_settings(Path(home), replace=False)
            # Dagster retries a PostgreSQL it cannot reach for about 20 s, logging each try: probe it first.
            _probe_postgres(Path(home) / "dagster.yaml")
            instance = dg.DagsterInstance.get()
        except Exception as error:
            raise InstanceUnavailable(_instance_problem(error, Path(home))) from None
        with instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


def write_instance_settings(home: Path, *, replace: bool) -> Path:
    """The local instance's settings written to `home`'s dagster.yaml (kept when there is one, unless
    `replace`); returns the file."""
    settings = home / INSTANCE_SETTINGS_FILE
    if replace or not settings.exists():
        shutil.copyfile(LOCAL_INSTANCE_SETTINGS, settings)
    return settings


def _probe_postgres(settings: Path) -> None:
    """Connect once (5 s at most) to the PostgreSQL `settings` names in `storage.postgres`, if any."""
    if not settings.exists():
        return
    import yaml

    storage = (yaml.safe_load(settings.read_text()) or {}).get("storage") or {}
    postgres = storage.get("postgres") if isinstance(storage, dict) else None
    if not isinstance(postgres, dict):
        return
    import psycopg2

    def value(raw: Any) -> Any:
        return os.environ.get(raw["env"]) if isinstance(raw, dict) and "env" in raw else raw

    url = value(postgres.get("postgres_url"))
    if url:
        connection = psycopg2.connect(re.sub(r"^postgresql\+\w+://", "postgresql://", url), connect_timeout=5)
    else:
        db = postgres.get("postgres_db") or {}
        params = {k: value(v) for k, v in (db.get("params") or {}).items()}
        params.setdefault("connect_timeout", 5)
        connection = psycopg2.connect(
            host=value(db.get("hostname")),
            port=value(db.get("port", 5432)),
            user=value(db.get("username")),
            password=value(db.get("password")),
            dbname=value(db.get("db_name")),
            **params,
        )
    connection.close()


def _instance_problem(error: Exception, home: Path) -> str:
    settings = home / "dagster.yaml"
    reason = redact(first_line(error, default=type(error).__name__))
    reason = reason.removeprefix("(psycopg2.OperationalError) ")
    described = settings.read_text(errors="replace") if settings.exists() else ""
    if "postgres" in f"{type(error).__module__} {described}":
        variables = ", ".join(POSTGRES_VARIABLES)
        return f"the Dagster instance's PostgreSQL ({settings}) cannot be used: {reason}; check {variables}"
    return f"the Dagster instance in {home} cannot be opened: {reason}; check {settings}"


def run_plan(defs: dg.Definitions, plan: Plan, instance: dg.DagsterInstance) -> StreamResult:
    """Run one stream's job for its plan and gather what it landed."""
    started = time.monotonic()
    if not plan.whole and not plan.keys:
        return StreamResult(plan.stream.name, plan.label, 0, 0, 0.0)
    key = copy_key(defs, plan.stream)
    outcome = _execute(
        defs, stream_job_name(plan.stream), key, {STREAM_TAG: plan.stream.name}, plan, instance
    )
    if isinstance(outcome, str):
        return StreamResult(plan.stream.name, plan.label, 0, 0, time.monotonic() - started, outcome)
    events, failure = outcome
    read = sum(_int(metadata.get("rows_read")) for metadata in events)
    written = sum(_int(metadata.get("rows_written")) for metadata in events)
    seconds = time.monotonic() - started
    return StreamResult(plan.stream.name, plan.label, read, written, seconds, failure, len(events))


@dataclass(frozen=True)
class DeliveryResult:
    """One stream's delivery run, as `deliver` prints it."""

    stream: str
    partitions: str
    sent: int = 0
    skipped: int = 0  # delivered by earlier runs
    dead_lettered: int = 0
    windows: int = 0  # windows delivered (a window not settled yet is not)
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_delivery(defs: dg.Definitions, plan: Plan, instance: dg.DagsterInstance) -> DeliveryResult:
    """Run one stream's delivery job for its plan and gather what it sent."""
    started = time.monotonic()
    if not plan.whole and not plan.keys:
        return DeliveryResult(plan.stream.name, plan.label)
    key = asset_key_tagged(defs, plan.stream, DELIVERY_TAG)
    tags = {DELIVERY_TAG: plan.stream.name}
    outcome = _execute(defs, delivery_job_name(plan.stream), key, tags, plan, instance)
    if isinstance(outcome, str):
        return DeliveryResult(plan.stream.name, plan.label, seconds=time.monotonic() - started, error=outcome)
    events, failure = outcome
    return DeliveryResult(
        plan.stream.name,
        plan.label,
        sent=sum(_int(metadata.get("events_sent")) for metadata in events),
        skipped=sum(_int(metadata.get("events_delivered_before")) for metadata in events),
        dead_lettered=sum(_int(metadata.get("events_dead_lettered")) for metadata in events),
        windows=len(events),
        seconds=time.monotonic() - started,
        error=failure,
    )


def release_dead_letters(plan: Plan) -> tuple[int, int]:
    """Release the dead letters of the plan's windows that may go out again (see `DeliveryLedger.release`);
    (released, kept)."""
    from zenskar_pipeline.delivery.ledger import DeliveryLedger
    from zenskar_pipeline.destinations import DeltaDestinationResource

    if not plan.whole and not plan.keys:
        return 0, 0
    copy = DeltaDestinationResource.from_env().for_stream(plan.stream)
    ledger = DeliveryLedger.beside(copy)
    windows = None if plan.whole else plan.keys
    return ledger.release(windows, run_id="cli-release", now=dt.datetime.now(dt.UTC))


def _execute(
    defs: dg.Definitions,
    job_name: str,
    key: dg.AssetKey,
    tags: dict[str, str],
    plan: Plan,
    instance: dg.DagsterInstance,
) -> tuple[list[Mapping[str, Any]], str | None] | str:
    """Run `job_name` selecting `key` for the plan's partitions: each materialization's metadata and the
    failure (None: success), or the reason Dagster refused the run."""
    job = defs.resolve_job_def(job_name)
    tags = dict(tags)
    options: dict[str, Any] = {"asset_selection": [key], "tags": tags}
    if len(plan.keys) == 1:
        options["partition_key"] = plan.keys[0]
    elif plan.keys:
        tags.update({RANGE_START: plan.keys[0], RANGE_END: plan.keys[-1]})
    try:
        result = job.execute_in_process(
            run_config=RUN_CONFIG, instance=instance, raise_on_error=False, **options
        )
    except Exception as error:  # Dagster refused the run itself (a bad tag, an instance problem)
        return redact(f"{type(error).__name__}: {first_line(error, default='unknown error')}")
    metadata = []
    for event in result.get_asset_materialization_events():
        data = event.step_materialization_data
        metadata.append(data.materialization.metadata if data is not None else {})
    return metadata, None if result.success else _failure(result)


def copy_key(defs: dg.Definitions, stream: ResolvedStream) -> dg.AssetKey:
    """The key of the stream's copy in `defs`, whatever translator named it: the asset whose step carries
    the stream's `zenskar/stream` tag."""
    return asset_key_tagged(defs, stream, STREAM_TAG)


def asset_key_tagged(defs: dg.Definitions, stream: ResolvedStream, tag: str) -> dg.AssetKey:
    """The key of the asset whose step carries `tag` with the stream's name (`zenskar/stream`: its copy;
    `zenskar/deliver`: its delivery)."""
    for assets in defs.assets or ():
        if isinstance(assets, dg.AssetsDefinition) and assets.op.tags.get(tag) == stream.name:
            return assets.key
    raise ValueError(f"stream {stream.name}: no asset of these definitions carries {tag}")


def run_streams(
    defs: dg.Definitions,
    plans: Sequence[Plan],
    instance: dg.DagsterInstance,
    *,
    on_start: Callable[[Plan], None] | None = None,
    on_finish: Callable[[Plan, StreamResult], None] | None = None,
) -> list[StreamResult]:
    os.environ.setdefault(PLANNED_AS_ONE_EVENT, "true")
    results = []
    for plan in plans:
        if on_start is not None:
            on_start(plan)
        result = run_plan(defs, plan, instance)
        if on_finish is not None:
            on_finish(plan, result)
        results.append(result)
    return results


def summary_lines(results: Sequence[StreamResult]) -> list[str]:
    """A plain-text table: stream, partitions, rows read, rows written, seconds, status."""
    header = ("stream", "partitions", "rows read", "rows written", "seconds", "status")
    rows = [
        (
            r.stream,
            r.partitions,
            f"{r.rows_read:,}",
            f"{r.rows_written:,}",
            f"{r.seconds:.1f}",
            r.status,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def redact(text: str) -> str:
    """`text` with the values of the secret variables blanked out."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        error = data.error if data is not None else None
        # Dagster wraps what the step raised; the user's own error is the useful one.
        while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
            error = error.cause
        if error is not None:
            name = error.cls_name or ""
            # Dagster records the message as Python prints it, behind the module path of the class
            # ("dagster._core.definitions.events.Failure: ..."): keep the class's own name at most.
            message = re.sub(
                rf"^(?:\w+\.)*{re.escape(name)}: ", "", first_line(error.message, "unknown error")
            )
            if name in ("Failure", "DagsterExecutionStepExecutionError"):
                return redact(message)
            return redact(f"{name}: {message}")
    return "the run failed (see the Dagster run log)"


def _int(value: Any) -> int:
    raw = getattr(value, "value", value)
    return int(raw) if isinstance(raw, int | float) else 0
