"""`make demo`: seed the bundled local warehouse, serve it, and read it through the real connector.

The sync of every demo stream into Delta copies joins this demo with the sync engine; today it shows the
source side end to end: the demo tables, their versions and a few rows, as databricks-sql-connector sees them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from databricks import sql

from zenskar_pipeline.local_warehouse.seed import seed_demo
from zenskar_pipeline.local_warehouse.server import LocalWarehouse

DEMO_ROOT = Path("data/warehouse")


def run_demo(root: Path = DEMO_ROOT, rows: int = 100_000) -> int:
    if root.exists():
        shutil.rmtree(root)
    print(f"Seeding the demo tables under {root} ...")
    seed_demo(root, rows=rows)
    server = LocalWarehouse(root)
    info = server.start()
    print(f"Local warehouse on https://{info.server_hostname}:{info.port}{info.http_path}\n")
    try:
        with (
            sql.connect(
                server_hostname=info.server_hostname,
                port=info.port,
                http_path=info.http_path,
                access_token=info.access_token,
                _tls_trusted_ca_file=info.tls_ca_file,
                enable_telemetry=False,
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(
                "SELECT table_catalog, table_schema, table_name, comment "
                "FROM system.information_schema.tables ORDER BY 1, 2, 3"
            )
            for catalog, schema, table, comment in cursor.fetchall():
                name = ".".join(f"`{part}`" for part in (catalog, schema, table))
                cursor.execute(f"DESCRIBE HISTORY {name} LIMIT 1")
                version = cursor.fetchall()[0].version
                cursor.execute(f"SELECT count(*) AS n FROM {name}")
                count = cursor.fetchall()[0].n
                print(f"{catalog}.{schema}.{table}  version {version}  {count:,} rows  -- {comment or ''}")
                cursor.execute(f"SELECT * FROM {name} LIMIT 3")
                print(cursor.fetchall_arrow().to_pandas().to_string(index=False, max_colwidth=40), "\n")
    finally:
        server.stop()
    print(
        "Next: `make dev` serves these tables and opens Dagster; "
        f"`zenskar-pipeline warehouse serve --root {root}` serves them alone."
    )
    return 0
