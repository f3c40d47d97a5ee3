"""`make demo`: seed the bundled local warehouse, serve it, discover the demo streams, sync every one of them
through Dagster into Delta copies, and show what landed.

The streams' partitions start where the seeded data starts (`ZENSKAR_DEMO_START`, see streams.yaml).
Partitioned streams run as one single-run backfill of their last `DEMO_PARTITIONS` partitions, unpartitioned
ones whole; the demo then says, per stream, how many partitions are filled (a change-feed stream's first run
snapshots every one) and how to fill the rest.

Runs go to the project's Dagster instance (`DAGSTER_HOME`, `.dagster_home` from the Makefile), created with
the local instance's settings when missing, so that `make dev` shows them afterwards; without `DAGSTER_HOME`
they go to a temporary instance.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse.seed import DEMO_START_ENV, demo_start, seed_demo
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_devtools.zenskar_api import LocalZenskarApi
from zenskar_pipeline import runner
from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.databricks import DatabricksResource
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.delivery.resource import ZenskarResource
from zenskar_pipeline.destinations import DeltaDestinationResource
from zenskar_pipeline.state import save_state
from zenskar_pipeline.streams import load_config, validate_streams
from zenskar_pipeline.sync.calendar import PartitionCalendar

DEMO_ROOT = Path("data/warehouse")
DEMO_CONFIG = Path("streams.yaml")
DEMO_PARTITIONS = 7
DEMO_API_STATE = Path("data/zenskar-api")
# The usage events the demo streams deliver to (streams.yaml's deliver: blocks), as Zenskar would define them.
DEMO_USAGE_EVENTS = {
    "usage_events": {"metric": "String", "quantity": "Decimal"},
    "compute_hours": {"cluster_id": "String", "nodes": "Int64", "cpu_hours": "Float64"},
}


def run_demo(
    root: Path = DEMO_ROOT,
    rows: int = 100_000,
    config_file: Path = DEMO_CONFIG,
    dagster_home: str | None = None,
) -> int:
    started = time.monotonic()
    if root.exists():
        shutil.rmtree(root)
    print(f"Seeding the demo tables under {root} ...")
    seed_demo(root, rows=rows)
    os.environ[DEMO_START_ENV] = demo_start(root)  # a fresh seed: its own start
    print(f"The seeded data starts on {os.environ[DEMO_START_ENV]}: the streams' partitions start there")
    config = load_config(config_file)
    server = LocalWarehouse(root)
    info = server.start()
    stack = contextlib.ExitStack()
    stack.callback(server.stop)
    print(f"Local warehouse on https://{info.server_hostname}:{info.port}{info.http_path}\n")
    databricks = DatabricksResource(
        server_hostname=info.server_hostname,
        port=info.port,
        http_path=info.http_path,
        access_token=info.access_token,
        tls_ca_file=info.tls_ca_file,
    )
    try:
        with databricks.session() as session:
            found = discover_tables(session, config)
        save_state(found, config.state_path)
        streams = validate_streams(config, found)
        print(f"Discovered {len(found.tables)} table(s); wrote {config.state_path}\n")
        destinations = DeltaDestinationResource.from_env()
        for stream in streams:  # a fresh seed, a fresh copy
            destinations.for_stream(stream).reset()
        plans = [runner.plan_stream(s, runner.last_keys(s, DEMO_PARTITIONS)) for s in streams]
        api = _start_zenskar_api()
        stack.callback(api.stop)
        defs = build_definitions(config, found, databricks=databricks, zenskar=_zenskar(api))
        home = dagster_home if dagster_home is not None else _project_dagster_home()
        with runner.dagster_instance(home) as instance:
            results = runner.run_streams(defs, plans, instance, on_start=_start, on_finish=_finish)
            print()
            for line in runner.summary_lines(results):
                print(line)
            print()
            for stream in streams:
                _show_copy(stream.name, stream.destination_uri)
            filled = [_filled(instance, defs, stream) for stream in streams]
            delivered = _deliver(defs, instance, [p for p in plans if p.stream.settings.deliver], api)
    finally:
        stack.close()
    failed = [r for r in results if not r.ok] + [r for r in delivered if not r.ok]
    for result in failed:
        print(f"{result.stream}: {result.error}")
    print("What landed:")
    for copy in filled:
        print(f"  {copy.text}")
    missing = [copy for copy in filled if copy.missing]
    if missing:
        print(
            "\nTo fill the rest: `make dev`, open http://127.0.0.1:3000, then an asset's page: Materialize, "
            'choose the missing partitions ("Missing" selects them), Launch backfill. Or, while `make dev` '
            "serves the warehouse, from a second terminal:"
        )
        print(f"  set -a; . {_here(root / '.warehouse' / 'connection.env')}; set +a")
        start = os.environ[DEMO_START_ENV]
        for copy in missing:
            first, last = copy.missing[0], copy.missing[-1]
            print(
                f"  {DEMO_START_ENV}={start} {_cli()} sync --select {copy.stream} --from {first} --to {last}"
            )
    print(
        f"\nDemo finished in {time.monotonic() - started:.0f} s. Next: `make dev` serves these tables and "
        "opens the Dagster UI (http://127.0.0.1:3000), where the demo's runs and copies are listed; "
        "`make dev LIVE=1` also keeps writing new versions of the usage events, and the sensor "
        "delta_version_sensor runs the partitions they change; "
        f"`zenskar-pipeline warehouse serve --root {root}` serves the tables alone."
    )
    return 1 if failed else 0


def _start_zenskar_api() -> LocalZenskarApi:
    """The local Zenskar usage API, fresh, with the demo's usage events defined."""
    if DEMO_API_STATE.exists():
        shutil.rmtree(DEMO_API_STATE)
    api = LocalZenskarApi(DEMO_API_STATE, schemas=DEMO_USAGE_EVENTS).start()
    print(f"Local Zenskar usage API on {api.api_url} (organisation {api.organisation})\n")
    return api


def _zenskar(api: LocalZenskarApi) -> ZenskarResource:
    return ZenskarResource(api_url=api.api_url, organisation=api.organisation, api_key=api.api_key)


def _deliver(
    defs: dg.Definitions, instance: dg.DagsterInstance, plans: list[runner.Plan], api: LocalZenskarApi
) -> list[runner.DeliveryResult]:
    """Deliver what the demo landed, then once more to show that nothing goes out twice."""
    print("\nDelivering the landed rows to Zenskar (the local usage API):")
    results = []
    for plan in plans:
        result = runner.run_delivery(defs, plan, instance)
        results.append(result)
        status = "" if result.ok else f"  FAILED: {result.error}"
        print(
            f"  {plan.stream.name} -> usage event {plan.stream.settings.deliver.api_slug}: "  # type: ignore[union-attr]
            f"{result.sent:,} sent, {result.skipped:,} delivered before, {result.dead_lettered:,} "
            f"dead-lettered, over {result.windows} settled day(s), in {result.seconds:.1f} s{status}"
        )
    again = [runner.run_delivery(defs, plan, instance) for plan in plans]
    print(
        f"  Delivering again: {sum(r.sent for r in again):,} sent, "
        f"{sum(r.skipped for r in again):,} skipped as delivered before (the ledger beside each copy)"
    )
    held = {slug: len(api.events(slug)) for slug in DEMO_USAGE_EVENTS}
    print(
        "  The local API holds "
        + ", ".join(f"{count:,} {slug} events" for slug, count in held.items())
        + "; today's window is delivered once it closes (`settle`)."
    )
    return results + again


def _project_dagster_home() -> str | None:
    """`DAGSTER_HOME`, created when missing (the runner gives it the local instance's settings); None when
    unset."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return None
    Path(home).mkdir(parents=True, exist_ok=True)
    return home


@dataclass(frozen=True)
class Filled:
    """What a stream's copy holds after the demo, as the UI shows it: its partitions materialized."""

    stream: str
    text: str
    missing: tuple[str, ...] = ()  # partition keys not materialized yet, oldest first (contiguous or not)


def _filled(instance: dg.DagsterInstance, defs: dg.Definitions, stream: ResolvedStream) -> Filled:
    key = runner.copy_key(defs, stream)
    try:
        rows = DeltaTable(stream.destination_uri).count()
    except Exception:  # nothing landed (a failed stream)
        rows = 0
    spec = stream.settings.partitions
    if spec is None:
        done = instance.get_latest_materialization_event(key) is not None
        return Filled(
            stream.name, f"{stream.name}: {'copied whole' if done else 'not copied'}, {rows:,} rows"
        )
    keys = list(PartitionCalendar(spec, None, dt.datetime.now(dt.UTC)).keys())
    materialized = instance.get_materialized_partitions(key)
    missing = tuple(k for k in keys if k not in materialized)
    text = (
        f"{stream.name}: {len(keys) - len(missing)} of {len(keys)} partitions filled "
        f"({keys[0]}..{keys[-1]}), {rows:,} rows"
    )
    return Filled(stream.name, text, missing)


def _cli() -> str:
    """This environment's `zenskar-pipeline` as the user can type it here (`.venv/bin/zenskar-pipeline`),
    on the demo's Dagster instance (`DAGSTER_HOME=.dagster_home`), so that the UI sees what it fills."""
    command = _here(Path(sys.executable).with_name("zenskar-pipeline"))
    home = os.environ.get("DAGSTER_HOME")
    return f"DAGSTER_HOME={_here(Path(home))} {command}" if home else command


def _here(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _start(plan: runner.Plan) -> None:
    print(f"-> {plan.stream.name}: runs {plan.label}", flush=True)


def _finish(plan: runner.Plan, result: runner.StreamResult) -> None:
    status = "" if result.ok else "  FAILED"
    rate = f"{result.rows_per_second:,.0f} rows/s"
    print(
        f"   {result.rows_written:,} rows written ({result.rows_read:,} read) in {result.seconds:.1f} s, "
        f"{rate}{status}",
        flush=True,
    )
    if plan.keys and result.materialized > len(plan.keys):
        print(
            f"   into {result.materialized} partitions: a change feed's first run snapshots the whole table"
        )


def _show_copy(name: str, uri: str) -> None:
    try:
        table = DeltaTable(uri)
    except Exception as error:  # nothing landed (a failed stream)
        print(f"{name} -> {uri}: no copy ({type(error).__name__})\n")
        return
    data = table.to_pyarrow_table()
    print(f"{name} -> {uri}  version {table.version()}  {data.num_rows:,} rows")
    print(data.slice(0, 3).to_pandas().to_string(index=False, max_colwidth=30), "\n")
