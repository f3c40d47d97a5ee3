"""The dev tools' commands of `zenskar-pipeline`: `warehouse serve`, `warehouse seed-demo`,
`zenskar-api serve`, `demo`, `dev` and `prod-local`.

The product's CLI adds them through the entry-point group `zenskar_pipeline.commands` (see this
distribution's pyproject.toml); the product itself never imports this module. Each command imports what it
runs only when it runs, since every `zenskar-pipeline --help` loads this module.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path
from types import FrameType

import click


@click.group()
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
    from zenskar_devtools.local_warehouse.server import LocalWarehouse

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
@click.option(
    "--live",
    is_flag=True,
    help="Then keep writing new versions of main.billing.usage_events (new events, late corrections, "
    "deletes) until interrupted; an already seeded ROOT is not seeded again.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="With --live: the pause between two steps of writes.",
)
def seed_demo(root: Path, rows: int, seed: int, live: bool, interval: float) -> None:
    """Write the demo billing tables (several Delta versions) under ROOT."""
    from zenskar_devtools.local_warehouse.seed import USAGE_EVENTS
    from zenskar_devtools.local_warehouse.seed import seed_demo as write_demo

    if live and USAGE_EVENTS.path(root).exists():
        click.echo(f"{USAGE_EVENTS} is already seeded under {root}: not seeding again")
    else:
        try:
            summary = write_demo(root, rows=rows, seed=seed)
        except FileExistsError as error:
            raise click.ClickException(f"{error}; --live writes new versions on top of them") from None
        for line in summary.lines():
            click.echo(line)
    if live:
        _write_live(root, seed, interval)


def _write_live(root: Path, seed: int, interval: float) -> None:
    from zenskar_devtools.local_warehouse.live import LiveUsageWriter, LiveVersion, run_live_until_signalled

    try:
        writer = LiveUsageWriter.open(root, seed=seed)
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from None

    def echo(version: LiveVersion) -> None:
        click.echo(version.line())
        sys.stdout.flush()  # each line as its version lands, also through a pipe

    click.echo(f"Writing new versions every {interval:g} s; Ctrl-C stops after the version under way")
    written = run_live_until_signalled(writer, interval=interval, on_version=echo)
    click.echo(f"Stopped after {written} live version(s)")


@click.group("zenskar-api")
def zenskar_api() -> None:
    """A local stand-in for Zenskar's usage-event API (for development, tests and the demo)."""


@zenskar_api.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, help="0 picks a free port.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".zenskar-api"),
    show_default=True,
    help="Where the received events, the usage events' schemas and zenskar-api.env are kept.",
)
@click.option(
    "--organisation", default="local-org", show_default=True, help="The one organisation it serves."
)
@click.option("--api-key", default=None, help="The x-api-key clients must send (default: a random one).")
@click.option(
    "--schemas",
    "schemas_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help='Usage events to define, as JSON: {"<api_slug>": {"<field>": "<type>", ...}, ...}.',
)
def serve_zenskar_api(
    host: str, port: int, state_dir: Path, organisation: str, api_key: str | None, schemas_file: Path | None
) -> None:
    """Serve POST /usage/<api_slug> as Zenskar does until interrupted; prints its settings as a JSON line."""
    import secrets

    from zenskar_devtools.zenskar_api.schemas import SchemaError
    from zenskar_devtools.zenskar_api.server import ZenskarApiServer

    schemas = None
    if schemas_file is not None:
        try:
            schemas = json.loads(schemas_file.read_text())
        except ValueError as error:
            raise click.ClickException(f"{schemas_file} is not JSON: {error}") from None
        if not isinstance(schemas, dict):
            raise click.ClickException(f"{schemas_file}: expected {{api_slug: {{field: type}}}}")
    try:
        server = ZenskarApiServer(
            state_dir,
            host=host,
            port=port,
            organisation=organisation,
            api_key=api_key or secrets.token_urlsafe(24),
            schemas=schemas,
        )
    except SchemaError as error:
        raise click.ClickException(f"{schemas_file}: {error}") from None

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Before the line goes out: whoever reads it may send SIGTERM at once, and that too is a clean stop.
    signal.signal(signal.SIGTERM, stop)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.write_environment_file()
            settings = {"api_url": server.api_url, "organisation": organisation, "api_key": server.api_key}
            click.echo(json.dumps(settings))
            sys.stdout.flush()
            server.serve_forever(poll_interval=0.2)
    finally:
        server.close()


@click.command()
@click.option(
    "--warehouse-root", type=click.Path(file_okay=False, path_type=Path), default=Path("data/warehouse")
)
@click.option("--port", type=int, default=3000, show_default=True, help="The Dagster UI's port.")
@click.option(
    "--live",
    is_flag=True,
    help="Also keep writing new versions of the demo usage events (`seed-demo --live`).",
)
def dev(warehouse_root: Path, port: int, live: bool) -> None:
    """`dagster dev` on workspace.yaml; against the local warehouse unless DATABRICKS_* is set."""
    from zenskar_devtools.dev import run_dev

    sys.exit(run_dev(warehouse_root, port, live=live))


@click.command("prod-local")
@click.option(
    "--warehouse-root", type=click.Path(file_okay=False, path_type=Path), default=Path("data/warehouse")
)
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".prod-local"),
    show_default=True,
    help="Where PostgreSQL's cluster and the Dagster home live (kept from one start to the next).",
)
@click.option("--port", type=int, default=3000, show_default=True, help="The Dagster UI's port.")
def prod_local(warehouse_root: Path, folder: Path, port: int) -> None:
    """The production instance on this machine: PostgreSQL, code server, dagster-daemon, webserver."""
    from zenskar_devtools.prod_local import run_prod_local

    sys.exit(run_prod_local(folder, warehouse_root, port))


@click.command()
def demo() -> None:
    """What `make demo` runs."""
    from zenskar_devtools.demo import run_demo

    sys.exit(run_demo())
