"""The `zenskar-pipeline` command line."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from zenskar_pipeline.config import ResolvedStream
    from zenskar_pipeline.databricks.discovery import DiscoveredTable


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
    "--client-id", default="local-service-principal", show_default=True, help="OAuth M2M client id."
)
@click.option("--client-secret", default=None, help="OAuth M2M client secret (default: a random one).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the certificate, connection.env and oauth.env go (default: <root>/.warehouse).",
)
def serve(
    root: Path,
    host: str,
    port: int,
    token: str | None,
    client_id: str,
    client_secret: str | None,
    state_dir: Path | None,
) -> None:
    """Serve the Delta tables under ROOT to databricks-sql-connector until interrupted."""
    from zenskar_pipeline.local_warehouse.server import LocalWarehouse

    root.mkdir(parents=True, exist_ok=True)
    server = LocalWarehouse(
        root,
        host=host,
        port=port,
        token=token,
        state_dir=state_dir,
        client_id=client_id,
        client_secret=client_secret,
    )
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
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The streams file (default: $ZENSKAR_PIPELINE_CONFIG, else ./streams.yaml).",
)
def discover(config_file: Path | None) -> None:
    """List the tables the streams file selects, with columns and a suggested cursor and key, and refresh
    the cached discovery that the code location loads."""
    import time

    from zenskar_pipeline.config import ConfigError, load_config, resolve_streams
    from zenskar_pipeline.databricks import DatabricksConnectionError, DatabricksResource
    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.state import save_state, validate_streams

    try:
        config = load_config(config_file)
    except ConfigError as error:
        _fail(str(error))
    missing = [name for name in _REQUIRED_CONNECTION if not os.environ.get(name)]
    if missing:
        _fail(
            f"set {', '.join(missing)} (and DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID with "
            "DATABRICKS_CLIENT_SECRET); for the local warehouse, source <state-dir>/connection.env"
        )
    started = time.monotonic()
    try:
        with DatabricksResource.from_env().process_config_and_initialize().session() as session:
            found = discover_tables(session, config)
    except DatabricksConnectionError as error:
        _fail(f"cannot discover tables: {error}")
    except Exception as error:  # the warehouse refused a statement: permissions, a stopped warehouse
        _fail(f"cannot discover tables: {type(error).__name__}: {error}")
    save_state(found, config.state_path)
    try:
        streams = resolve_streams(config, found.tables, allow_missing_cursor=True)
    except ConfigError:
        streams = []  # validate_streams, below, says why
    for stream in streams:
        table = found.get(stream.name)
        if table is not None:
            _echo_table(table, stream)
    click.echo(
        f"Discovered {len(found.tables)} table(s) in {len(found.catalogs)} catalog(s) with "
        f"{found.statements} statement(s) in {time.monotonic() - started:.1f} s; wrote {config.state_path}"
    )
    try:
        validate_streams(config, found, allow_missing_cursor=True)
    except ConfigError as error:
        _fail(str(error))


_REQUIRED_CONNECTION = ("DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH")


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


def _echo_table(table: DiscoveredTable, stream: ResolvedStream) -> None:
    selected = f"pattern {stream.pattern}" if stream.pattern else "an explicit entry"
    click.echo(click.style(str(table.name), bold=True) + f"  (selected by {selected})")
    if table.comment:
        click.echo(f"  {table.comment}")
    width = max([len(column.name) for column in table.columns] + [6])
    type_width = max([len(column.full_data_type) for column in table.columns] + [4])
    for column in table.columns:
        flags = ("" if column.nullable else "NOT NULL") + ("  PK" if column.name in table.primary_key else "")
        note = f"  -- {column.comment}" if column.comment else ""
        click.echo(
            f"    {column.name:<{width}}  {column.full_data_type:<{type_width}}  {flags:<12}{note}".rstrip()
        )
    settings = stream.settings
    needs_cursor = settings.sync_mode.is_incremental and not settings.change_feed
    key = ", ".join(settings.primary_key) if settings.primary_key else None
    for label, suggestion, configured, needed in (
        ("cursor", table.suggested_cursor, settings.cursor_field, needs_cursor),
        ("key", table.suggested_key, key, False),
    ):
        text = f"{', '.join(suggestion.columns)}  ({suggestion.reason})" if suggestion else "none found"
        if configured:
            text += f"; the stream uses {configured}"
        elif needed and suggestion:
            text += f"; the stream sets none: add `cursor_field: {suggestion.columns[0]}`"
        click.echo(f"  suggested {label}: {text}")
    click.echo()


@main.command()
def demo() -> None:
    """What `make demo` runs."""
    from zenskar_pipeline.demo import run_demo

    sys.exit(run_demo())


if __name__ == "__main__":
    main()
