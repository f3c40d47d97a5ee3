"""`make dev`: the Dagster UI on this code location, against Databricks or the bundled local warehouse.

With `DATABRICKS_SERVER_HOSTNAME` set, the pipeline talks to that workspace. Without it, the demo tables are
seeded (once) under the warehouse root and served locally, and its settings are handed to Dagster as the
`DATABRICKS_*` variables. Either way `discover` refreshes the cache the code location loads from first.
With `live`, a `seed-demo --live` process keeps writing new versions of the demo usage events meanwhile.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zenskar_devtools.local_warehouse.server import LocalWarehouse

PROJECT_DAGSTER_HOME = Path(".dagster_home")


def run_dev(warehouse_root: Path, port: int, live: bool = False) -> int:
    env = dict(os.environ, TZ="UTC")
    dagster_home = Path(env.setdefault("DAGSTER_HOME", str(PROJECT_DAGSTER_HOME.resolve())))
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile("dagster.yaml", dagster_home / "dagster.yaml")
    if port_in_use(port):
        print(f"Port {port} is taken (another `make dev`?): stop it, or use `zenskar-pipeline dev --port N`")
        return 1
    recover_runs(dagster_home)
    server = None
    live_writer: subprocess.Popen[bytes] | None = None
    if live and env.get("DATABRICKS_SERVER_HOSTNAME"):
        print("--live writes to the local warehouse only, and DATABRICKS_SERVER_HOSTNAME is set: not started")
    if not env.get("DATABRICKS_SERVER_HOSTNAME"):
        server = serve_demo_warehouse(warehouse_root, env)
    try:
        # The code location loads from the discovery cache: refresh it first, so the UI shows today's tables.
        discovered = subprocess.call([sys.executable, "-m", "zenskar_pipeline.cli", "discover"], env=env)
        if discovered != 0:
            return discovered
        if live and server is not None:
            live_writer = _start_live_writer(warehouse_root, env)
        command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)]
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        if live_writer is not None:
            _stop_live_writer(live_writer)
        if server is not None:
            server.stop()


def serve_demo_warehouse(warehouse_root: Path, env: dict[str, str]) -> LocalWarehouse:
    """The local warehouse on `warehouse_root` (the demo tables seeded first when missing), started, its
    connection settings added to `env` as the DATABRICKS_* variables, and the day its data starts as
    ZENSKAR_DEMO_START (streams.yaml's partitions start there) unless set."""
    from zenskar_devtools.local_warehouse.seed import DEMO_START_ENV, USAGE_EVENTS, demo_start, seed_demo
    from zenskar_devtools.local_warehouse.server import LocalWarehouse

    if not USAGE_EVENTS.path(warehouse_root).exists():
        seed_demo(warehouse_root)
    env.setdefault(DEMO_START_ENV, demo_start(warehouse_root))
    server = LocalWarehouse(warehouse_root)
    env.update(server.start().env())
    print(f"Local warehouse serving {warehouse_root} at {server.info.server_hostname}:{server.info.port}")
    return server


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


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


def _start_live_writer(warehouse_root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`seed-demo --live` on the root just served, as its own process: its writes do not compete with the
    warehouse's threads for this process's interpreter, and its lines go to this terminal."""
    command = [sys.executable, "-m", "zenskar_pipeline.cli", "warehouse", "seed-demo"]
    return subprocess.Popen([*command, "--root", str(warehouse_root), "--live"], env=env)


def _stop_live_writer(live_writer: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets the version under way finish (a Ctrl-C in the terminal has sent it SIGINT already)."""
    if live_writer.poll() is None:
        live_writer.send_signal(signal.SIGTERM)
    try:
        live_writer.wait(timeout=30)
    except subprocess.TimeoutExpired:
        live_writer.kill()
        live_writer.wait()
