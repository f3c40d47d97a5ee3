"""The Thrift `TCLIService` the connector calls: sessions, asynchronous statements, paged Arrow results.

Statements run on worker threads; results stay lazy batch iterators until a FetchResults asks for the next
page, so a large SELECT is never held whole. Idle operations and sessions are reaped after a timeout.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import lz4.frame
import pyarrow as pa
from databricks.sql.thrift_api.TCLIService import ttypes as t

from zenskar_devtools.local_warehouse.commands import TIME_ZONE_KEY, session_key, validate_time_zone
from zenskar_devtools.local_warehouse.errors import WarehouseError
from zenskar_devtools.local_warehouse.faults import FaultInjector
from zenskar_devtools.local_warehouse.result_metadata import result_set_metadata
from zenskar_devtools.local_warehouse.statement import Parameter, SessionState, StatementResult

log = logging.getLogger(__name__)

PROTOCOL_VERSION = t.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V7
_OK = t.TStatus(statusCode=t.TStatusCode.SUCCESS_STATUS)
# How long a status poll waits for a running statement to change state, so clients do not busy-loop.
_STATUS_LONG_POLL_S = 0.5
# How long ExecuteStatement waits for a statement before answering with a bare handle.
_DIRECT_RESULTS_WAIT_S = 1.0

Runner = Callable[[str, list[Parameter], SessionState], StatementResult]


def _error_status(error: WarehouseError) -> t.TStatus:
    return t.TStatus(
        statusCode=t.TStatusCode.ERROR_STATUS,
        sqlState=error.sqlstate,
        errorMessage=error.display_message,
        displayMessage=error.display_message,
    )


def _invalid_handle(kind: str) -> t.TStatus:
    message = f"[INVALID_HANDLE] The {kind} handle is unknown or was closed. SQLSTATE: HY000"
    return t.TStatus(statusCode=t.TStatusCode.INVALID_HANDLE_STATUS, errorMessage=message, sqlState="HY000")


@dataclass
class Session:
    id: bytes
    state: SessionState
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class Operation:
    """One statement: its state, its lazy result, and the rows already handed out."""

    id: bytes
    session: Session
    lz4: bool
    arrow_flags: t.TSparkArrowTypes | None
    state: int = t.TOperationState.RUNNING_STATE
    error: WarehouseError | None = None
    result: StatementResult | None = None
    metadata: t.TGetResultSetMetadataResp | None = None
    rows_sent: int = 0
    pending: pa.RecordBatch | None = None
    exhausted: bool = False
    fail_after_rows: int | None = None
    row_limit: int | None = None  # the statement's `resultRowLimit` (the connector's `row_limit`)
    rows_taken: int = 0  # rows taken from the result so far (sent, or pending)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)

    def handle(self) -> t.TOperationHandle:
        return t.TOperationHandle(
            operationId=t.THandleIdentifier(guid=self.id, secret=self.id),
            operationType=t.TOperationType.EXECUTE_STATEMENT,
            hasResultSet=True,
        )

    def status(self) -> t.TGetOperationStatusResp:
        resp = t.TGetOperationStatusResp(status=_OK, operationState=self.state, hasResultSet=True)
        if self.result is not None:
            resp.numModifiedRows = self.result.num_modified_rows
        if self.error is not None:
            resp.sqlState = self.error.sqlstate
            resp.errorMessage = self.error.display_message
            resp.displayMessage = self.error.display_message
        return resp

    def next_page(self, max_rows: int, max_bytes: int) -> tuple[list[t.TSparkArrowBatch], int, bool]:
        """Up to `max_rows` rows / about `max_bytes` bytes as serialized Arrow batches; more rows left?"""
        assert self.result is not None
        batches: list[t.TSparkArrowBatch] = []
        start = self.rows_sent
        size = 0
        while self.rows_sent - start < max_rows and size < max_bytes:
            batch = self._next_batch()
            if batch is None:
                break
            room = max_rows - (self.rows_sent - start)
            if batch.num_rows > room:
                batch, self.pending = batch.slice(0, room), batch.slice(room)
            self._check_injected_failure(batch.num_rows)
            body = batch.serialize().to_pybytes()
            size += len(body)
            if self.lz4:
                body = lz4.frame.compress(body)
            batches.append(t.TSparkArrowBatch(batch=body, rowCount=batch.num_rows))
            self.rows_sent += batch.num_rows
        return batches, start, not self._at_end()

    def _next_batch(self) -> pa.RecordBatch | None:
        assert self.result is not None
        if self.pending is not None:
            batch, self.pending = self.pending, None
            return batch
        while not self.exhausted:
            if self.row_limit is not None and self.rows_taken >= self.row_limit:
                self.exhausted = True  # as Databricks does: the result ends at the limit, no error
                return None
            try:
                batch = next(self.result.batches)
            except StopIteration:
                self.exhausted = True
                return None
            if batch.num_rows:
                if self.row_limit is not None:
                    batch = batch.slice(0, self.row_limit - self.rows_taken)
                self.rows_taken += batch.num_rows
                return batch
        return None

    def prime(self) -> None:
        self._at_end()

    def _at_end(self) -> bool:
        if self.pending is not None:
            return False
        batch = self._next_batch()
        if batch is None:
            return True
        self.pending = batch
        return False

    def _check_injected_failure(self, rows: int) -> None:
        if self.fail_after_rows is not None and self.rows_sent + rows > self.fail_after_rows:
            raise WarehouseError(
                "INJECTED_FAULT",
                f"The statement failed after {self.fail_after_rows} rows, as the test asked.",
                "58000",
            )

    def close(self) -> None:
        if self.result is not None:
            self.result.cancel()
            self.result.close()
        self.state = t.TOperationState.CLOSED_STATE


STATEMENT_COUNTS = ("statements", "statement_bytes", "largest_statement_bytes", "parameters")


class WarehouseService:
    """Implements the Thrift `TCLIService.Iface` over a statement runner (the SQL engine)."""

    def __init__(
        self,
        run_statement: Runner,
        metadata_call: Callable[[str, dict[str, object], SessionState], StatementResult],
        faults: FaultInjector,
        idle_timeout_s: float = 900.0,
    ) -> None:
        self._run_statement = run_statement
        self._metadata_call = metadata_call
        self._faults = faults
        self._idle_timeout_s = idle_timeout_s
        self._sessions: dict[bytes, Session] = {}
        self._operations: dict[bytes, Operation] = {}
        self._lock = threading.Lock()
        # What clients sent, for benchmarks (`/_local/health`): statements, their text and bound values.
        self._statements = {
            "statements": 0,
            "statement_bytes": 0,
            "largest_statement_bytes": 0,
            "parameters": 0,
        }

    # -- sessions -------------------------------------------------------------------------------------------
    def OpenSession(self, req: t.TOpenSessionReq) -> t.TOpenSessionResp:
        try:
            state = SessionState(configuration=_session_configuration(req.configuration or {}))
        except WarehouseError as error:
            return t.TOpenSessionResp(status=_error_status(error))
        namespace = req.initialNamespace
        if namespace is not None:
            state.catalog = (namespace.catalogName or state.catalog).lower()
            state.schema = (namespace.schemaName or state.schema).lower()
        session = Session(id=uuid.uuid4().bytes, state=state)
        with self._lock:
            self._sessions[session.id] = session
        return t.TOpenSessionResp(
            status=_OK,
            serverProtocolVersion=PROTOCOL_VERSION,
            sessionHandle=t.TSessionHandle(sessionId=t.THandleIdentifier(guid=session.id, secret=session.id)),
            canUseMultipleCatalogs=True,
            initialNamespace=t.TNamespace(catalogName=state.catalog, schemaName=state.schema),
            configuration={},
        )

    def CloseSession(self, req: t.TCloseSessionReq) -> t.TCloseSessionResp:
        session_id = req.sessionHandle.sessionId.guid
        with self._lock:
            self._sessions.pop(session_id, None)
            ops = [op for op in self._operations.values() if op.session.id == session_id]
            for op in ops:
                del self._operations[op.id]
        for op in ops:
            op.close()
        return t.TCloseSessionResp(status=_OK)

    def GetInfo(self, req: t.TGetInfoReq) -> t.TGetInfoResp:
        value = t.TGetInfoValue(stringValue="zenskar-pipeline local warehouse")
        return t.TGetInfoResp(status=_OK, infoValue=value)

    # -- statements -----------------------------------------------------------------------------------------
    def ExecuteStatement(self, req: t.TExecuteStatementReq) -> t.TExecuteStatementResp:
        session = self._session(req.sessionHandle)
        if session is None:
            return t.TExecuteStatementResp(status=_invalid_handle("session"))
        params = _parameters(req.parameters or [])
        statement = req.statement or ""
        size = len(statement.encode())
        with self._lock:
            sent = self._statements
            sent["statements"] += 1
            sent["statement_bytes"] += size
            sent["largest_statement_bytes"] = max(sent["largest_statement_bytes"], size)
            sent["parameters"] += len(req.parameters or [])
        op = self._start(req, session, lambda: self._run_statement(statement, params, session.state))
        return t.TExecuteStatementResp(
            status=_OK, operationHandle=op.handle(), directResults=self._direct_results(op, req)
        )

    def GetCatalogs(self, req: t.TGetCatalogsReq) -> t.TExecuteStatementResp:
        return self._metadata("catalogs", req, {})

    def GetSchemas(self, req: t.TGetSchemasReq) -> t.TExecuteStatementResp:
        return self._metadata("schemas", req, {"catalog": req.catalogName, "schema": req.schemaName})

    def GetTables(self, req: t.TGetTablesReq) -> t.TExecuteStatementResp:
        args = {
            "catalog": req.catalogName,
            "schema": req.schemaName,
            "table": req.tableName,
            "table_types": req.tableTypes,
        }
        return self._metadata("tables", req, args)

    def GetColumns(self, req: t.TGetColumnsReq) -> t.TExecuteStatementResp:
        args = {
            "catalog": req.catalogName,
            "schema": req.schemaName,
            "table": req.tableName,
            "column": req.columnName,
        }
        return self._metadata("columns", req, args)

    def GetOperationStatus(self, req: t.TGetOperationStatusReq) -> t.TGetOperationStatusResp:
        op = self._operation(req.operationHandle)
        if op is None:
            return t.TGetOperationStatusResp(status=_invalid_handle("operation"))
        op.done.wait(_STATUS_LONG_POLL_S)
        return op.status()

    def CancelOperation(self, req: t.TCancelOperationReq) -> t.TCancelOperationResp:
        op = self._operation(req.operationHandle)
        if op is None:
            return t.TCancelOperationResp(status=_invalid_handle("operation"))
        if op.state in (t.TOperationState.RUNNING_STATE, t.TOperationState.PENDING_STATE) or (
            op.state == t.TOperationState.FINISHED_STATE and not op.exhausted
        ):
            op.state = t.TOperationState.CANCELED_STATE
            op.error = WarehouseError("OPERATION_CANCELED", "The operation was cancelled.", "HY008")
            if op.result is not None:
                op.result.cancel()
        return t.TCancelOperationResp(status=_OK)

    def CloseOperation(self, req: t.TCloseOperationReq) -> t.TCloseOperationResp:
        with self._lock:
            op = self._operations.pop(req.operationHandle.operationId.guid, None)
        if op is not None:
            op.close()
        return t.TCloseOperationResp(status=_OK)

    def GetResultSetMetadata(self, req: t.TGetResultSetMetadataReq) -> t.TGetResultSetMetadataResp:
        op = self._operation(req.operationHandle)
        if op is None or op.metadata is None:
            return t.TGetResultSetMetadataResp(status=_invalid_handle("operation"))
        return op.metadata

    def FetchResults(self, req: t.TFetchResultsReq) -> t.TFetchResultsResp:
        op = self._operation(req.operationHandle)
        if op is None or op.result is None:
            return t.TFetchResultsResp(status=_invalid_handle("operation"))
        if op.error is not None:
            return t.TFetchResultsResp(status=_error_status(op.error))
        with op.lock:
            try:
                batches, start, more = op.next_page(req.maxRows or 100_000, req.maxBytes or 100 << 20)
            except WarehouseError as error:
                op.state, op.error = t.TOperationState.ERROR_STATE, error
                return t.TFetchResultsResp(status=_error_status(error))
        return t.TFetchResultsResp(
            status=_OK,
            hasMoreRows=more,
            results=t.TRowSet(startRowOffset=start, rows=[], arrowBatches=batches),
            resultSetMetadata=op.metadata if req.includeResultSetMetadata else None,
        )

    # -- housekeeping ---------------------------------------------------------------------------------------
    def reap_idle(self) -> int:
        """Close operations and sessions unused for longer than the idle timeout; returns how many."""
        cutoff = time.monotonic() - self._idle_timeout_s
        with self._lock:
            stale_ops = [op for op in self._operations.values() if op.last_used < cutoff]
            for op in stale_ops:
                del self._operations[op.id]
            stale_sessions = [s for s in self._sessions.values() if s.last_used < cutoff]
            for session in stale_sessions:
                del self._sessions[session.id]
        for op in stale_ops:
            op.close()
        return len(stale_ops) + len(stale_sessions)

    def reset_counts(self) -> None:
        """Start counting what clients send afresh (DELETE `/_local/health`)."""
        with self._lock:
            self._statements = dict.fromkeys(STATEMENT_COUNTS, 0)

    def counts(self) -> dict[str, int]:
        """Open sessions and operations now."""
        with self._lock:
            return {"sessions": len(self._sessions), "operations": len(self._operations)}

    def statement_counts(self) -> dict[str, int]:
        """What clients have sent since the counts were last reset: statements, text bytes, bound values."""
        with self._lock:
            return dict(self._statements)

    def _session(self, handle: t.TSessionHandle) -> Session | None:
        with self._lock:
            session = self._sessions.get(handle.sessionId.guid)
        if session is not None:
            session.last_used = time.monotonic()
        return session

    def _operation(self, handle: t.TOperationHandle) -> Operation | None:
        with self._lock:
            op = self._operations.get(handle.operationId.guid)
        if op is not None:
            op.last_used = time.monotonic()
            op.session.last_used = op.last_used
        return op

    def _metadata(self, call: str, req: object, args: dict[str, object]) -> t.TExecuteStatementResp:
        session = self._session(req.sessionHandle)  # type: ignore[attr-defined]
        if session is None:
            return t.TExecuteStatementResp(status=_invalid_handle("session"))
        op = self._start(req, session, lambda: self._metadata_call(call, args, session.state))
        return t.TExecuteStatementResp(
            status=_OK, operationHandle=op.handle(), directResults=self._direct_results(op, req)
        )

    def _start(self, req: object, session: Session, run: Callable[[], StatementResult]) -> Operation:
        op = Operation(
            id=uuid.uuid4().bytes,
            session=session,
            lz4=bool(getattr(req, "canDecompressLZ4Result", False)),
            arrow_flags=getattr(req, "useArrowNativeTypes", None),
            row_limit=_row_limit(getattr(req, "resultRowLimit", None)),
        )
        fault = self._faults.for_statement()
        if fault is not None:
            op.fail_after_rows = fault.rows
        with self._lock:
            self._operations[op.id] = op
        threading.Thread(target=self._execute, args=(op, run), daemon=True, name="statement").start()
        return op

    def _execute(self, op: Operation, run: Callable[[], StatementResult]) -> None:
        try:
            result = run()
            op.metadata = result_set_metadata(result, lz4=op.lz4)
            op.result = result
            if op.state == t.TOperationState.RUNNING_STATE:
                with op.lock:
                    # The first batch is where an aggregate or sort does its work: the statement runs (and can
                    # be cancelled) until it is there.
                    op.prime()
            if op.state == t.TOperationState.RUNNING_STATE:
                op.state = t.TOperationState.FINISHED_STATE
            else:  # cancelled while it ran
                result.close()
        except WarehouseError as error:
            op.error = error
            if op.state == t.TOperationState.RUNNING_STATE:
                op.state = t.TOperationState.ERROR_STATE
        except Exception as exc:  # the server never dies on input: anything else is an internal error
            log.exception("statement failed unexpectedly")
            op.error = WarehouseError("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", "XX000")
            if op.state == t.TOperationState.RUNNING_STATE:
                op.state = t.TOperationState.ERROR_STATE
        finally:
            op.done.set()

    def _direct_results(self, op: Operation, req: object) -> t.TSparkDirectResults | None:
        wanted = getattr(req, "getDirectResults", None)
        if wanted is None or not op.done.wait(_DIRECT_RESULTS_WAIT_S):
            return None
        if op.state != t.TOperationState.FINISHED_STATE:
            return t.TSparkDirectResults(operationStatus=op.status())
        with op.lock:
            try:
                batches, start, more = op.next_page(wanted.maxRows or 100_000, wanted.maxBytes or 100 << 20)
            except WarehouseError as error:
                op.state, op.error = t.TOperationState.ERROR_STATE, error
                return t.TSparkDirectResults(operationStatus=op.status())
        result_set = t.TFetchResultsResp(
            status=_OK,
            hasMoreRows=more,
            results=t.TRowSet(startRowOffset=start, rows=[], arrowBatches=batches),
        )
        direct = t.TSparkDirectResults(
            operationStatus=op.status(), resultSetMetadata=op.metadata, resultSet=result_set
        )
        if not more:
            with self._lock:
                self._operations.pop(op.id, None)
            op.close()
            direct.closeOperation = t.TCloseOperationResp(status=_OK)
        return direct


def _session_configuration(given: dict[str, str]) -> dict[str, str]:
    """A session's configuration as asked for, its time zone (`timezone` or Spark's key) validated."""
    configuration = {session_key(key): value for key, value in given.items()}
    if TIME_ZONE_KEY in configuration:
        configuration[TIME_ZONE_KEY] = validate_time_zone(configuration[TIME_ZONE_KEY])
    return configuration


def _row_limit(value: int | None) -> int | None:
    """A positive `resultRowLimit` caps the result; none, or not positive, leaves it whole."""
    return value if value is not None and value > 0 else None


def _parameters(raw: list[t.TSparkParameter]) -> list[Parameter]:
    params = []
    position = 0
    for p in raw:
        if not p.name:
            position += 1
        value = p.value.stringValue if p.value is not None else None
        params.append(Parameter(name=p.name or None, ordinal=position, type=p.type or "STRING", value=value))
    return params
