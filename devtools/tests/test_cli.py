"""The `zenskar-pipeline warehouse` commands, run as a user runs them: separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from databricks import sql

CLI = [sys.executable, "-m", "zenskar_pipeline.cli"]
TOKEN = "dapi-cli-test"


def test_seed_demo_then_serve_to_a_plain_connect(tmp_path: Path) -> None:
    root, state = Path("wh"), Path("state")  # relative to the working directory, as a user types them
    seeded = subprocess.run(
        [*CLI, "warehouse", "seed-demo", "--root", str(root), "--rows", "2000"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "main.billing.usage_events" in seeded.stdout
    server = subprocess.Popen(
        [*CLI, "warehouse", "serve", "--root", str(root), "--token", TOKEN, "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        assert set(info) == {"server_hostname", "port", "http_path", "access_token", "tls_ca_file"}
        assert info["access_token"] == TOKEN
        env_file = dict(
            line.split("=", 1) for line in (tmp_path / state / "connection.env").read_text().splitlines()
        )
        assert env_file == {
            "DATABRICKS_SERVER_HOSTNAME": info["server_hostname"],
            "DATABRICKS_PORT": str(info["port"]),
            "DATABRICKS_HTTP_PATH": info["http_path"],
            "DATABRICKS_TOKEN": TOKEN,
            "DATABRICKS_TLS_CA_FILE": info["tls_ca_file"],
        }
        oauth_file = dict(
            line.split("=", 1) for line in (tmp_path / state / "oauth.env").read_text().splitlines()
        )
        assert "DATABRICKS_TOKEN" not in oauth_file
        assert oauth_file["DATABRICKS_CLIENT_ID"] == "local-service-principal"
        assert len(oauth_file["DATABRICKS_CLIENT_SECRET"]) >= 24
        with (
            sql.connect(
                server_hostname=info["server_hostname"],
                port=info["port"],
                http_path=info["http_path"],
                access_token=info["access_token"],
                _tls_trusted_ca_file=info["tls_ca_file"],
                enable_telemetry=False,
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute("SHOW TABLES IN main.billing")
            assert {"usage_events", "customers"} <= {row.tableName for row in cursor.fetchall()}
            cursor.execute("SELECT count(*) AS n FROM main.billing.usage_events VERSION AS OF 1")
            assert cursor.fetchall()[0].n == 2000
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
