"""The `zenskar-pipeline` command line."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from types import FrameType

import click


@click.group()
def main() -> None:
    """Keep exact Delta copies of Databricks Unity Catalog tables for usage-based billing."""


@main.group()
def warehouse() -> None:
    """The bundled local Databricks SQL warehouse (for development, tests and the demo)."""


@warehouse.command()
@click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), required=True, help="Delta tables root."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, help="0 picks a free port.")
@click.option("--token", default=None, help="The access token clients must send (default: a random one).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the certificate and connection.env go (default: <root>/.warehouse).",
)
def serve(root: Path, host: str, port: int, token: str | None, state_dir: Path | None) -> None:
    """Serve the Delta tables under ROOT to databricks-sql-connector until interrupted."""
    from zenskar_pipeline.local_warehouse.server import LocalWarehouse

    root.mkdir(parents=True, exist_ok=True)
    server = LocalWarehouse(root, host=host, port=port, token=token, state_dir=state_dir)
    server.write_connection_env()
    click.echo(server.info.json_line(), nl=True)
    sys.stdout.flush()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@warehouse.command("seed-demo")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--rows", type=click.IntRange(1, 10_000_000), default=100_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same tables.")
def seed_demo(root: Path, rows: int, seed: int) -> None:
    """Write the demo billing tables (several Delta versions) under ROOT."""
    from zenskar_pipeline.local_warehouse.seed import seed_demo as write_demo

    summary = write_demo(root, rows=rows, seed=seed)
    for line in summary.lines():
        click.echo(line)


@main.command()
@click.option(
    "--warehouse-root", type=click.Path(file_okay=False, path_type=Path), default=Path("data/warehouse")
)
@click.option("--port", type=int, default=3000, show_default=True, help="The Dagster UI's port.")
def dev(warehouse_root: Path, port: int) -> None:
    """`dagster dev` on workspace.yaml; against the local warehouse unless DATABRICKS_* is set."""
    from zenskar_pipeline.dev import run_dev

    sys.exit(run_dev(warehouse_root, port))


@main.command()
def demo() -> None:
    """What `make demo` runs."""
    from zenskar_pipeline.demo import run_demo

    sys.exit(run_demo())


if __name__ == "__main__":
    main()
