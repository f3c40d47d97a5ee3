"""The SQL engine: a Databricks SQL statement in, a lazily streamed Arrow result out.

Queries are parsed with sqlglot, their tables read through the catalog (`sql_rewrite`), and run by DuckDB on a
cursor of its own, so statements run in parallel threads. SHOW/DESCRIBE/USE/SET go to `commands`. Every
failure leaves as a `WarehouseError` carrying the class and SQLSTATE Databricks would report.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from zenskar_devtools.local_warehouse.arrow_types import BatchConformer, databricks_result_columns
from zenskar_devtools.local_warehouse.catalog import Catalog
from zenskar_devtools.local_warehouse.commands import TIME_ZONE_KEY, run_command, validate_time_zone
from zenskar_devtools.local_warehouse.duckdb_errors import cancelled, from_duckdb
from zenskar_devtools.local_warehouse.errors import WarehouseError, parse_error
from zenskar_devtools.local_warehouse.parameters import bind_parameters, number_positional_markers
from zenskar_devtools.local_warehouse.sql_rewrite import NONZERO_MACRO_SQL, Evaluate, QueryRewrite, Source
from zenskar_devtools.local_warehouse.statement import Parameter, SessionState, StatementResult

BATCH_ROWS = 65_536
_T = TypeVar("_T")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-/]+")
_COMMANDS = {"SHOW", "DESC", "DESCRIBE", "USE", "SET"}
_WRITES = {
    "INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE", "REPLACE", "COPY",
    "OPTIMIZE", "VACUUM", "RESTORE", "GRANT", "REVOKE", "MSCK", "REFRESH", "CACHE", "UNCACHE", "ANALYZE",
}  # fmt: skip
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


class Engine:
    """Runs statements against the catalog's tables; safe to call from many threads at once."""

    def __init__(self, catalog: Catalog, batch_rows: int = BATCH_ROWS) -> None:
        self._catalog = catalog
        self._batch_rows = batch_rows
        self._database = duckdb.connect(":memory:")
        # Tables come only from the catalog: no Python variables by name, no files by path.
        self._database.execute("SET python_enable_replacements = false")
        self._database.execute(NONZERO_MACRO_SQL)
        self._database.execute("SET enable_external_access = false")
        self._cursor_lock = threading.Lock()

    def execute(self, sql: str, parameters: Sequence[Parameter], session: SessionState) -> StatementResult:
        """Plans the statement now; a query's rows are computed as its `batches` are read."""
        try:
            return self._execute(sql, parameters, session)
        except WarehouseError:
            raise
        except (duckdb.Error, pa.ArrowException, OSError) as error:  # Arrow's stream raises OSError
            raise from_duckdb(str(error)) from error
        except Exception as error:  # the caller gets a statement error, never a crash
            raise WarehouseError("INTERNAL_ERROR", f"{type(error).__name__}: {error}", "XX000") from error

    def _execute(self, sql: str, parameters: Sequence[Parameter], session: SessionState) -> StatementResult:
        text = _LEADING_COMMENTS.sub("", sql).strip().rstrip(";").strip()
        keyword = _first_keyword(text)
        if keyword in _WRITES:
            raise _read_only(keyword)
        if keyword in _COMMANDS:
            answer = run_command(text, self._catalog, session)
            if answer is None:
                raise _unsupported(" ".join(text.split()[:2]).upper())
            return table_result(answer, session.configuration.get(TIME_ZONE_KEY, "UTC"))
        return self._query(text, parameters, session)

    def _query(self, text: str, parameters: Sequence[Parameter], session: SessionState) -> StatementResult:
        time_zone = session.configuration.get(TIME_ZONE_KEY, "UTC")
        bound = bind_parameters(parameters, ZoneInfo(validate_time_zone(time_zone)))
        tree = _parse_query(number_positional_markers(text))
        cursor = self._cursor(time_zone)
        try:
            rewrite = QueryRewrite(self._catalog, session, bound, _evaluator(cursor), ZoneInfo(time_zone))
            query = rewrite.run(tree)
            for name, source in query.sources.items():
                cursor.register(name, _streaming(source))
            relation = cursor.sql(query.sql, params=query.parameters or None)
            return RunningQuery(cursor, relation, self._batch_rows, time_zone).result()
        except BaseException:
            cursor.close()
            raise

    def _cursor(self, time_zone: str) -> duckdb.DuckDBPyConnection:
        with self._cursor_lock:
            cursor = self._database.cursor()
        if not _ZONE_NAME.fullmatch(time_zone):  # it becomes a literal below
            cursor.close()
            raise WarehouseError("INVALID_CONF_VALUE.TIME_ZONE", f"Invalid time zone '{time_zone}'.", "22022")
        cursor.execute(f"SET TimeZone = '{time_zone}'")
        return cursor


class RunningQuery:
    """One query's cursor and the lifecycle of its batches: lazy reading, `cancel` and `close`.

    DuckDB must not close a cursor while another thread is inside it, so `close` during a read only
    interrupts, and the reading thread closes the cursor once it is out.
    """

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        relation: duckdb.DuckDBPyRelation,
        rows: int,
        time_zone: str = "UTC",
    ) -> None:
        self._cursor = cursor
        self._time_zone = time_zone
        self._relation = relation
        self._rows = rows
        self._lock = threading.Lock()
        self._reading = self._closed = self._cancelled = self._released = False

    def result(self) -> StatementResult:
        # LIMIT 0 gives the schema without computing rows, so a long query stays cancellable while it runs.
        schema, columns = databricks_result_columns(
            self._relation.limit(0).to_arrow_table().schema, self._time_zone
        )
        return StatementResult(
            columns, schema, self._batches(BatchConformer(schema)), None, self.cancel, self.close
        )

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if not self._released:
                self._cursor.interrupt()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._reading:
                self._cursor.interrupt()
            else:
                self._release()

    def _batches(self, conform: BatchConformer) -> Iterator[pa.RecordBatch]:
        try:
            reader = self._step(lambda: self._relation.to_arrow_reader(self._rows))
            while (batch := self._step(lambda: _next_or_none(reader))) is not None:
                yield conform(batch)
        except WarehouseError:
            raise
        except (duckdb.Error, pa.ArrowException, OSError) as error:  # Arrow's stream raises OSError
            raise (cancelled() if self._cancelled else from_duckdb(str(error))) from error
        finally:
            with self._lock:
                self._release()

    def _step(self, call: Callable[[], _T]) -> _T:
        with self._lock:
            if self._cancelled or self._closed:
                raise cancelled()
            self._reading = True
        try:
            return call()
        finally:
            with self._lock:
                self._reading = False
                if self._closed:
                    self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._cursor.close()


def table_result(table: pa.Table, time_zone: str = "UTC") -> StatementResult:
    """A result already computed in full (SHOW, DESCRIBE, SET, ...), in the types the connector takes."""
    schema, columns = databricks_result_columns(table.schema, time_zone)
    return StatementResult(columns, schema, BatchConformer(schema).conform(table.to_batches()))


class _StreamingDataset(ds.FileSystemDataset):
    """A table's files as DuckDB scans them: one row group at a time, decoded only when DuckDB asks for it.

    DuckDB scans a registered dataset through `type(dataset).scanner(dataset, columns=..., filter=...)` and
    reads that scanner's `to_reader()`. A pyarrow scanner decodes in the background until 1 GiB is queued
    (Acero's default backpressure, which pyarrow does not expose), so against a client paging through Thrift,
    which reads slower than a scan decodes, the server held most of a multi-million-row table. Here each
    row group gets a scanner of its own, started when the previous one is used up, so only the row group
    DuckDB is reading is in memory (pyarrow decodes a row group whole). Those scanners still apply the
    dataset's schema, partition values and filter; files and row groups the filter rules out are skipped.
    """

    def scanner(
        self, columns: list[str] | None = None, filter: ds.Expression | None = None, **_: object
    ) -> _RowGroupScan:
        return _RowGroupScan(self, columns, filter)


class _RowGroupScan:
    """The one part of `ds.Scanner` DuckDB uses: `to_reader()`."""

    def __init__(
        self, dataset: ds.FileSystemDataset, columns: list[str] | None, filter: ds.Expression | None
    ) -> None:
        self._dataset, self._columns, self._filter = dataset, columns, filter

    def to_reader(self) -> pa.RecordBatchReader:
        # A scanner that is never read costs nothing, and knows the result's schema even if no row group is.
        whole = ds.FileSystemDataset.scanner(self._dataset, columns=self._columns, filter=self._filter)
        return pa.RecordBatchReader.from_batches(whole.projected_schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for fragment in self._dataset.get_fragments(self._filter):
            assert isinstance(fragment, ds.ParquetFileFragment)  # Delta tables are Parquet files
            for row_group in fragment.split_by_row_group(self._filter, schema=self._dataset.schema):
                scan = ds.Scanner.from_fragment(
                    row_group, schema=self._dataset.schema, columns=self._columns, filter=self._filter
                )
                yield from scan.to_batches()


def _streaming(source: Source) -> Source:
    if type(source) is not ds.FileSystemDataset:
        return source
    fragments = list(source.get_fragments())
    return _StreamingDataset(fragments, source.schema, source.format, source.filesystem)


def _parse_query(text: str) -> exp.Expr:
    try:
        statements = [s for s in sqlglot.parse(text, read="databricks") if s is not None]
    except sqlglot.errors.ParseError as error:
        near = error.errors[0].get("highlight", "") if error.errors else ""
        first = sqlglot.tokenize(text, read="databricks")[:1]
        if first and first[0].token_type == TokenType.VAR:  # not a statement keyword at all
            near = first[0].text
        raise parse_error(f"at or near '{near}'") from error
    if len(statements) != 1:
        raise parse_error("only one statement can run at a time" if statements else "empty statement")
    statement = statements[0]
    if isinstance(statement, exp.Query):
        return statement
    tokens = sqlglot.tokenize(text, read="databricks")
    if not tokens or tokens[0].token_type in (TokenType.VAR, TokenType.STRING, TokenType.NUMBER):
        raise parse_error(f"at or near '{tokens[0].text if tokens else text}'")
    raise _unsupported(tokens[0].text.upper())


def _evaluator(cursor: duckdb.DuckDBPyConnection) -> Evaluate:
    def evaluate(sql: str, parameters: dict[str, object]) -> object:
        rows = cursor.execute(sql, parameters or None).fetchall()
        return rows[0][0] if rows else None

    return evaluate


def _next_or_none(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


def _first_keyword(text: str) -> str:
    match = re.match(r"[\s(]*([A-Za-z_]+)", text)
    return match.group(1).upper() if match else ""


def _read_only(keyword: str) -> WarehouseError:
    return WarehouseError(
        "UNSUPPORTED_FEATURE.READ_ONLY_WAREHOUSE",
        f"The local warehouse is read-only: {keyword} is not supported. Write Delta tables under its root "
        "folder (for example with deltalake.write_deltalake); the next statement sees them.",
        "0A000",
    )


def _unsupported(what: str) -> WarehouseError:
    return WarehouseError(
        "UNSUPPORTED_FEATURE.STATEMENT", f"The local warehouse does not support `{what}` statements.", "0A000"
    )
