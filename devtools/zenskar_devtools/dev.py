"""`make dev`: the Dagster UI on this code location, against Databricks or the bundled local warehouse.

With `DATABRICKS_SERVER_HOSTNAME` set, the pipeline talks to that workspace. Without it, the demo tables are
seeded (once) under the warehouse root and served locally, and its settings are handed to Dagster as the
`DATABRICKS_*` variables. Either way `discover` refreshes the cache the code location loads from first.
With `live`, a `seed-demo --live` process keeps writing new versions of the demo usage events meanwhile.
Without `ZENSKAR_API_KEY`, the local Zenskar usage API receives what the delivery sensor sends.

Ctrl-C or SIGTERM stops all of it: `dagster dev` with everything it started, the live writer, the local
warehouse (see `process_groups`).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import zenskar_pipeline
from zenskar_devtools.ports import port_in_use
from zenskar_devtools.process_groups import Child, StopSignals, stop_children
from zenskar_pipeline.config import CONFIG_ENV, config_path
from zenskar_pipeline.runner import write_instance_settings

if TYPE_CHECKING:
    from zenskar_devtools.local_warehouse.server import LocalWarehouse
    from zenskar_devtools.zenskar_api import LocalZenskarApi

PROJECT_DAGSTER_HOME = Path(".dagster_home")
# dagster dev gives its webserver and daemon 60 s each; a stop that takes longer than this is stuck.
STOP_TIMEOUT_SECONDS = 30.0


def dagster_dev_command(port: int) -> list[str]:
    """The command that serves the UI, the daemon and the code location on `port`: `dg dev` on the project's
    component (`zenskar_pipeline/components/`), which reads the streams file of `ZENSKAR_PIPELINE_CONFIG`
    and the discovery cache `discover` has just refreshed. Without the project around the installed package
    (a wheel), `dagster dev` on `workspace.yaml`, the same definitions through `definitions.py`."""
    project = Path(zenskar_pipeline.__file__).resolve().parents[1]
    if (project / "pyproject.toml").is_file() and (project / "zenskar_pipeline/components").is_dir():
        dg = str(Path(sys.executable).with_name("dg"))
        return [dg, "dev", "--port", str(port), "--target-path", str(project), "--use-active-venv"]
    return [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)]


def run_dev(warehouse_root: Path, port: int, live: bool = False) -> int:
    """Until Ctrl-C or SIGTERM (then 0), or until `dg dev` exits by itself (its exit code)."""
    # In this process too: the instance's settings read their storage folder from DAGSTER_HOME (the
    # recovery below opens it), and `zenskar-pipeline dev` may be run without the Makefile setting it.
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_DAGSTER_HOME.resolve())))
    # One streams file for discover and the code location, whatever folder `dg dev` serves the project from;
    # `dg dev --use-active-venv` runs the code location in this environment.
    env = dict(os.environ, TZ="UTC", VIRTUAL_ENV=sys.prefix)
    env[CONFIG_ENV] = str(config_path(env))
    dagster_home.mkdir(parents=True, exist_ok=True)
    write_instance_settings(dagster_home, replace=True)  # make dev runs on the project's current settings
    if port_in_use(port):
        print(f"Port {port} is taken (another `make dev`?): stop it, or use `zenskar-pipeline dev --port N`")
        return 1
    recover_runs(dagster_home)
    server = None
    api = None
    children: list[Child] = []
    with StopSignals() as stop:
        try:
            if live and env.get("DATABRICKS_SERVER_HOSTNAME"):
                print("--live writes to the local warehouse only; DATABRICKS_SERVER_HOSTNAME is set: ignored")
            if not env.get("DATABRICKS_SERVER_HOSTNAME"):
                server = serve_demo_warehouse(warehouse_root, env)
            if not env.get("ZENSKAR_API_KEY"):
                api = serve_local_zenskar_api(env)
            if stop.received is not None:
                return 0
            # The code location loads from the discovery cache: refresh it first, so the UI shows today's
            # tables (one line here; `zenskar-pipeline discover` lists their columns).
            command = [sys.executable, "-m", "zenskar_pipeline.cli", "discover", "--summary"]
            children.append(Child.start("discover", command, env))
            discovered = stop.wait_for(children[-1])
            if discovered is None or discovered != 0:
                return discovered or 0  # stopped meanwhile, or discover said why it failed
            if live and server is not None:
                children.append(_start_live_writer(warehouse_root, env))
            # SIGINT, as a Ctrl-C in a terminal sends it to the whole group: dg dev and its webserver, daemon
            # and code server each shut down on it.
            dagster = Child.start("dg dev", dagster_dev_command(port), env, stop_signal=signal.SIGINT)
            children.append(dagster)
            print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C or SIGTERM stops everything)", flush=True)
            exited = stop.wait_for(dagster)
            return 0 if exited is None else exited
        finally:
            if any(child.running() for child in children):
                names = ", ".join(child.name for child in children if child.running())
                print(f"Stopping {names} (at most {STOP_TIMEOUT_SECONDS:g} s) ...", flush=True)
            for name in stop_children(children, STOP_TIMEOUT_SECONDS):
                print(f"{name} did not stop within {STOP_TIMEOUT_SECONDS:g} s: killed", flush=True)
            if server is not None:
                server.stop()
            if api is not None:
                api.stop()


def serve_local_zenskar_api(env: dict[str, str]) -> LocalZenskarApi:
    """The local Zenskar usage API (the demo's usage events defined), its settings added to `env` as the
    ZENSKAR_* variables: the delivery sensor's runs deliver there. Its state (what it received) stays in
    data/zenskar-api between sessions, as the copies do."""
    from zenskar_devtools.demo import DEMO_API_STATE, DEMO_USAGE_EVENTS
    from zenskar_devtools.zenskar_api import LocalZenskarApi

    api = LocalZenskarApi(DEMO_API_STATE, schemas=DEMO_USAGE_EVENTS).start()
    env.update(api.environment())
    print(f"Local Zenskar usage API at {api.api_url} (ZENSKAR_API_KEY is not set)")
    return api


def serve_demo_warehouse(warehouse_root: Path, env: dict[str, str]) -> LocalWarehouse:
    """The local warehouse on `warehouse_root` (the demo tables seeded first when missing), started, its
    connection settings added to `env` as the DATABRICKS_* variables (and written to
    `<root>/.warehouse/connection.env`), and the day its data starts as ZENSKAR_DEMO_START (streams.yaml's
    partitions start there) unless set."""
    from zenskar_devtools.local_warehouse.seed import DEMO_START_ENV, USAGE_EVENTS, demo_start, seed_demo
    from zenskar_devtools.local_warehouse.server import LocalWarehouse

    if not USAGE_EVENTS.path(warehouse_root).exists():
        seed_demo(warehouse_root)
    env.setdefault(DEMO_START_ENV, demo_start(warehouse_root))
    server = LocalWarehouse(warehouse_root)
    env.update(server.start().env())
    server.write_connection_env()  # for a second terminal's commands: `. <root>/.warehouse/connection.env`
    print(f"Local warehouse serving {warehouse_root} at {server.info.server_hostname}:{server.info.port}")
    return server


def recover_runs(dagster_home: Path) -> None:
    """Fail the runs an earlier session left in progress (see `zenskar_devtools.recovery`), saying which."""
    import dagster as dg

    from zenskar_devtools.recovery import fail_runs_of_earlier_session

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in fail_runs_of_earlier_session(instance):
            print(
                f"Run {run.run_id} ({run.job_name}) was left {run.status.lower()} by an earlier session: "
                "failed now, so the daemon runs it again"
            )


def _start_live_writer(warehouse_root: Path, env: dict[str, str]) -> Child:
    """`seed-demo --live` on the root just served, as its own process: its writes do not compete with the
    warehouse's threads for this process's interpreter, and its lines go to this terminal. SIGTERM stops
    it after the version under way."""
    command = [sys.executable, "-m", "zenskar_pipeline.cli", "warehouse", "seed-demo"]
    return Child.start("the live writer", [*command, "--root", str(warehouse_root), "--live"], env)
