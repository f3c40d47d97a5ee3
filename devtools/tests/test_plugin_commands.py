"""The dev tools' commands reach users through the product's `zenskar-pipeline` command."""

from __future__ import annotations

import subprocess
import sys

CLI = [sys.executable, "-m", "zenskar_pipeline.cli"]


def test_the_product_cli_lists_the_dev_tools_beside_its_own_commands() -> None:
    shown = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True)
    listed = {line.split()[0] for line in shown.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert listed >= {"warehouse", "zenskar-api", "demo", "dev", "discover", "sync", "reset"}
    assert shown.stderr == ""  # every plugin command loaded


def test_warehouse_lists_serve_and_seed_demo() -> None:
    shown = subprocess.run([*CLI, "warehouse", "--help"], capture_output=True, text=True, check=True)
    assert {"serve", "seed-demo"} <= set(shown.stdout.split())


def test_zenskar_api_lists_serve() -> None:
    shown = subprocess.run([*CLI, "zenskar-api", "--help"], capture_output=True, text=True, check=True)
    assert "serve" in shown.stdout.split()
