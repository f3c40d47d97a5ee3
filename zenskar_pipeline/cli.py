"""The `zenskar-pipeline` command line."""

from __future__ import annotations

import contextlib
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    import dagster as dg

    from zenskar_pipeline.config import PipelineConfig, ResolvedStream
    from zenskar_pipeline.databricks.discovery import DiscoveredCatalog, DiscoveredTable
    from zenskar_pipeline.runner import Plan, StreamResult


PLUGIN_GROUP = "zenskar_pipeline.commands"


class PipelineCommands(click.Group):
    """The built-in commands plus the click commands that installed distributions register under the
    entry-point group `zenskar_pipeline.commands`, each under its entry point's name. That is how
    zenskar-pipeline-devtools adds `warehouse`, `demo` and `dev` without the product importing it.

    Plugins load on the first lookup that needs them (a command that is not built in, or the list for
    `--help`), so the built-in commands run without importing any plugin. A plugin that fails to load, or
    is not a click command, or takes a name already in use, is left out with one line on stderr.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._plugins_loaded:
            self._load_plugins()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugins()
        return super().list_commands(ctx)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry_point in entry_points(group=PLUGIN_GROUP):
            if entry_point.name in self.commands:
                _warn_plugin(entry_point, "a command of that name exists already")
                continue
            try:
                command = entry_point.load()
            except Exception as error:  # a broken dev install must not take the product's commands down
                _warn_plugin(entry_point, f"cannot be loaded: {type(error).__name__}: {error}")
                continue
            if not isinstance(command, click.Command):
                _warn_plugin(entry_point, f"is a {type(command).__name__}, not a click command")
                continue
            self.add_command(command, entry_point.name)


def _warn_plugin(entry_point: EntryPoint, problem: str) -> None:
    source = entry_point.dist.name if entry_point.dist is not None else "an unknown distribution"
    plugin = f"plugin command {entry_point.name!r} ({entry_point.value}, from {source})"
    line = f"zenskar-pipeline: left out {plugin}: {problem}"
    click.echo(" ".join(line.split()), err=True)  # one line, whatever the error's message holds


@click.group(cls=PipelineCommands)
def main() -> None:
    """Keep exact Delta copies of Databricks Unity Catalog tables for usage-based billing."""


_CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The streams file (default: $ZENSKAR_PIPELINE_CONFIG, else ./streams.yaml).",
)


@main.command()
@_CONFIG_OPTION
@click.option(
    "--summary",
    is_flag=True,
    help="Print one line (how many tables, where the cache went) instead of every table's columns.",
)
def discover(config_file: Path | None, summary: bool) -> None:
    """List the tables the streams file selects, with columns and a suggested cursor and key, and refresh
    the cached discovery that the code location loads."""
    import time

    from zenskar_pipeline.config import ConfigError
    from zenskar_pipeline.streams import resolve_streams, validate_streams

    config = _load_config(config_file)
    started = time.monotonic()
    found = _discover_and_save(config)
    try:
        streams = resolve_streams(config, found.tables, allow_missing_cursor=True)
    except ConfigError:
        streams = []  # validate_streams, below, says why
    for stream in [] if summary else streams:
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


def _load_config(config_file: Path | None) -> PipelineConfig:
    from zenskar_pipeline.config import ConfigError
    from zenskar_pipeline.streams import load_config

    try:
        return load_config(config_file)
    except ConfigError as error:
        _fail(str(error))


def _discover_and_save(config: PipelineConfig) -> DiscoveredCatalog:
    """Discover the tables `config` selects and refresh the cache; exits with the reason when it cannot."""
    from zenskar_pipeline.databricks.refresh import DiscoveryError, refresh_discovery

    try:
        return refresh_discovery(config)
    except DiscoveryError as error:
        _fail(str(error))


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
    from zenskar_pipeline.sync.modes import strategy_for

    settings = stream.settings
    needs_cursor = strategy_for(settings).reads_by_cursor
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
@_CONFIG_OPTION
@click.option(
    "--select",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Only streams whose catalog.schema.table matches (fnmatch, e.g. 'main.billing.*'); repeatable.",
)
@click.option("--partition", default=None, metavar="KEY", help="One partition, e.g. 2026-01-01.")
@click.option("--from", "first", default=None, metavar="KEY", help="First partition of a range (inclusive).")
@click.option("--to", "last", default=None, metavar="KEY", help="Last partition of a range (inclusive).")
def sync(
    config_file: Path | None,
    patterns: tuple[str, ...],
    partition: str | None,
    first: str | None,
    last: str | None,
) -> None:
    """Refresh the discovered tables, then materialize the selected streams through Dagster.

    A partitioned stream runs as one single-run backfill: `--partition KEY`, `--from KEY --to KEY`, or by
    default the whole range from its `start` to the latest partition. Unpartitioned streams run whole. Runs
    go to the Dagster instance in $DAGSTER_HOME when that folder exists (given the local instance's
    dagster.yaml when it has none), else to a temporary one.
    """
    from zenskar_pipeline import runner

    if partition is not None and (first is not None or last is not None):
        _fail("use either --partition KEY or --from KEY --to KEY, not both")
    if (first is None) != (last is None):
        _fail("--from and --to go together: pass both (the range is inclusive)")
    config = _load_config(config_file)
    with contextlib.ExitStack() as stack:
        # The instance first: one that cannot be reached fails the command before anything is read or written.
        try:
            instance = stack.enter_context(runner.dagster_instance())
        except runner.InstanceUnavailable as error:
            _fail(str(error))
        selected = _selected_streams(config, patterns, refresh=True)
        selection = runner.Selection(partition=partition, first=first, last=last)
        plans, failed = [], []
        for stream in selected:
            try:
                plans.append(runner.plan_stream(stream, selection))
            except ValueError as error:
                failed.append(runner.StreamResult(stream.name, "-", 0, 0, 0.0, str(error)))
        defs = _definitions(config)
        results = runner.run_streams(defs, plans, instance, on_start=_echo_start, on_finish=_echo_finish)
    results = failed + results
    click.echo()
    for line in runner.summary_lines(results):
        click.echo(line)
    errors = [result for result in results if not result.ok]
    if errors:
        for result in errors:
            reason = (result.error or "").removeprefix(f"stream {result.stream}: ")
            reason = reason.removeprefix(f"{result.stream}: ")  # the asset names its stream too
            click.echo(f"{result.stream}: {reason}", err=True)
        sys.exit(1)


@main.command()
@_CONFIG_OPTION
@click.option(
    "--select",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Only streams whose catalog.schema.table matches (fnmatch, e.g. 'main.billing.*'); repeatable.",
)
@click.option("--partition", default=None, metavar="KEY", help="One partition, e.g. 2026-01-01.")
@click.option("--from", "first", default=None, metavar="KEY", help="First partition of a range (inclusive).")
@click.option("--to", "last", default=None, metavar="KEY", help="Last partition of a range (inclusive).")
@click.option(
    "--release-dead-letters",
    "release",
    is_flag=True,
    help="First let these windows' dead letters that Zenskar refused (or that could not be sent) go out "
    "again, after you fixed their rows or the event's schema.",
)
def deliver(
    config_file: Path | None,
    patterns: tuple[str, ...],
    partition: str | None,
    first: str | None,
    last: str | None,
    release: bool,
) -> None:
    """Send the selected streams' landed rows to Zenskar as usage events, exactly once.

    Streams with a `deliver:` block only; the windows as for `sync` (default: from `start` to the latest
    partition), each delivered once it has settled. Events already delivered are skipped (the ledger
    beside each copy); refused ones go to the dead letters. Needs ZENSKAR_ORGANISATION and
    ZENSKAR_API_KEY (and ZENSKAR_API_URL for another endpoint than Zenskar's).

    With --release-dead-letters, the windows' dead letters are let go first, so that they are read from
    the copy again and sent under new keys: those Zenskar refused (it took none of their batch) and those
    that could not be sent. Events left unanswered past the idempotency key's lifetime stay dead letters:
    Zenskar may hold them, so check by their keys before sending them another way.
    """
    from zenskar_pipeline import runner

    if partition is not None and (first is not None or last is not None):
        _fail("use either --partition KEY or --from KEY --to KEY, not both")
    if (first is None) != (last is None):
        _fail("--from and --to go together: pass both (the range is inclusive)")
    config = _load_config(config_file)
    with contextlib.ExitStack() as stack:
        try:
            instance = stack.enter_context(runner.dagster_instance())
        except runner.InstanceUnavailable as error:
            _fail(str(error))
        selected = [s for s in _selected_streams(config, patterns, refresh=False) if s.settings.deliver]
        if not selected:
            _fail(
                "no selected stream has a deliver: block; add one to the streams file (see docs/delivery.md)"
            )
        selection = runner.Selection(partition=partition, first=first, last=last)
        plans, results = [], []
        for stream in selected:
            try:
                plans.append(runner.plan_stream(stream, selection))
            except ValueError as error:
                results.append(runner.DeliveryResult(stream.name, "-", error=str(error)))
        defs = _definitions(config)
        for plan in plans:
            click.echo(f"-> {plan.stream.name}: {plan.label}")
            if release:
                freed, kept = runner.release_dead_letters(plan)
                click.echo(f"   {plan.stream.name}: {freed:,} dead letter(s) released, {kept:,} kept")
                if kept:
                    click.echo(
                        f"   {plan.stream.name}: {kept:,} kept were never answered and may be at Zenskar: "
                        "look for their idempotency keys (the dead-letter table has them)"
                    )
            result = runner.run_delivery(defs, plan, instance)
            if result.ok:
                click.echo(
                    f"   {result.stream}: {result.sent:,} sent, {result.skipped:,} delivered before, "
                    f"{result.dead_lettered:,} dead-lettered, in {result.seconds:.1f} s"
                )
            results.append(result)
    errors = [result for result in results if not result.ok]
    for result in errors:
        reason = (result.error or "").removeprefix(f"stream {result.stream}: ")
        click.echo(f"{result.stream}: {reason.removeprefix(f'{result.stream}: ')}", err=True)
    if errors:
        sys.exit(1)


@main.command()
@click.argument("stream_name", metavar="STREAM")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_CONFIG_OPTION
def reset(stream_name: str, yes: bool, config_file: Path | None) -> None:
    """Delete a stream's Delta copy, so that the next sync starts over.

    STREAM is the source table, catalog.schema.table. A stream keeps no sync state besides its copy (the
    high-water marks and the change feed's synced-through version live in the copy), so deleting the copy
    is the whole reset.
    """
    import difflib

    from zenskar_pipeline.destinations import DeltaDestinationResource, DestinationNotWritableError

    config = _load_config(config_file)
    streams = _selected_streams(config, (), refresh=False)
    by_name = {stream.name: stream for stream in streams}
    stream = by_name.get(stream_name.lower())
    if stream is None:
        close = difflib.get_close_matches(stream_name.lower(), list(by_name), n=1)
        known = ", ".join(sorted(by_name)) or "none"
        hint = f"; did you mean {close[0]}?" if close else f" (streams: {known})"
        _fail(f"{stream_name} is not a stream of {config.path}{hint}")
    copy = DeltaDestinationResource.from_env().for_stream(stream)
    try:
        copy.check_writable()  # an object store's credentials and endpoint, in seconds, in one line
    except DestinationNotWritableError as error:
        _fail(f"stream {stream.name}: {error}")
    if not copy.exists():
        click.echo(f"stream {stream.name}: no copy at {copy.uri}; nothing to reset")
        return
    if not yes:
        click.confirm(f"Delete the copy of {stream.name} at {copy.uri}?", abort=True)
    copy.reset()
    click.echo(f"stream {stream.name}: deleted {copy.uri}; the next sync starts over")


def _selected_streams(
    config: PipelineConfig, patterns: tuple[str, ...], *, refresh: bool
) -> list[ResolvedStream]:
    """The config's streams checked against the discovered tables (refreshed first when `refresh`), kept to
    those matching `patterns`; exits with the reason when there are none."""
    from zenskar_pipeline import runner
    from zenskar_pipeline.config import ConfigError
    from zenskar_pipeline.state import StateError, load_state
    from zenskar_pipeline.streams import validate_streams

    try:
        state = _discover_and_save(config) if refresh else load_state(config.state_path)
        streams = validate_streams(config, state)
    except (ConfigError, StateError) as error:
        _fail(str(error))
    selected = runner.select_streams(streams, patterns)
    if patterns and not selected:
        _fail(
            f"--select {' '.join(patterns)} matches no stream; streams: "
            + (", ".join(stream.name for stream in streams) or "none")
        )
    return selected


def _definitions(config: PipelineConfig) -> dg.Definitions:
    from zenskar_pipeline.config import ConfigError
    from zenskar_pipeline.defs import build_definitions
    from zenskar_pipeline.state import load_state

    try:
        return build_definitions(config, load_state(config.state_path))
    except ConfigError as error:
        _fail(str(error))


def _echo_start(plan: Plan) -> None:
    note = f"  ({plan.note})" if plan.note else ""
    click.echo(f"-> {plan.stream.name}: {plan.label}{note}")


def _echo_finish(plan: Plan, result: StreamResult) -> None:
    if result.ok:
        click.echo(
            f"   {result.stream}: {result.rows_written:,} rows written ({result.rows_read:,} read) in "
            f"{result.seconds:.1f} s, {result.rows_per_second:,.0f} rows/s"
        )
    else:
        click.echo(f"   {result.stream}: failed after {result.seconds:.1f} s")


if __name__ == "__main__":
    main()
