"""`make dev`: the Dagster UI on this code location, against Databricks or the bundled local warehouse.

With `DATABRICKS_SERVER_HOSTNAME` set, the pipeline talks to that workspace. Without it, the demo tables are
seeded (once) under the warehouse root and served locally, and its settings are handed to Dagster as the
`DATABRICKS_*` variables. Either way `discover` refreshes the cache the code location loads from first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_DAGSTER_HOME = Path(".dagster_home")


def run_dev(warehouse_root: Path, port: int) -> int:
    env = dict(os.environ, TZ="UTC")
    dagster_home = Path(env.setdefault("DAGSTER_HOME", str(PROJECT_DAGSTER_HOME.resolve())))
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile("dagster.yaml", dagster_home / "dagster.yaml")
    server = None
    if not env.get("DATABRICKS_SERVER_HOSTNAME"):
        from zenskar_pipeline.local_warehouse.seed import USAGE_EVENTS, seed_demo
        from zenskar_pipeline.local_warehouse.server import LocalWarehouse

        if not USAGE_EVENTS.path(warehouse_root).exists():
            seed_demo(warehouse_root)
        server = LocalWarehouse(warehouse_root)
        env.update(server.start().env())
        print(f"Local warehouse serving {warehouse_root} at {server.info.server_hostname}:{server.info.port}")
    try:
        # The code location loads from the discovery cache: refresh it first, so the UI shows today's tables.
        discovered = subprocess.call([sys.executable, "-m", "zenskar_pipeline.cli", "discover"], env=env)
        if discovered != 0:
            return discovered
        command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)]
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            server.stop()
