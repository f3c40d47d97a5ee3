"""The connection to a Databricks SQL warehouse: a Dagster resource holding the `DATABRICKS_*` settings, and
the session it opens for one run step, which reads results as streams of Arrow record batches.

Every connection failure becomes one `DatabricksConnectionError` that names the setting to check and never
carries the token or the client secret.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import ssl
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
from databricks import sql
from databricks.sql.exc import RequestError
from pydantic import Field

from zenskar_pipeline.databricks.sql_text import ParameterValue, native_parameters
from zenskar_pipeline.databricks.statements import Statement

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 250_000  # per fetch: larger pages cost fewer round trips (500k: about 1.7x 50k's speed)
UTC_SESSION = {"spark.sql.session.timeZone": "UTC"}

_HOST = "DATABRICKS_SERVER_HOSTNAME / DATABRICKS_PORT"
_PATH = "DATABRICKS_HTTP_PATH (http_path)"
_TOKEN = "DATABRICKS_TOKEN (access_token)"
_CLIENT = "DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET"
_CA = "DATABRICKS_TLS_CA_FILE (tls_ca_file)"
_AUTH = "DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID with DATABRICKS_CLIENT_SECRET (exactly one of the two)"


class DatabricksConnectionError(Exception):
    """A session could not be opened; `setting` is the configuration to check. Never holds a secret."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(f"{message}; check {setting}")
        self.setting = setting


# The resource's fields and the variables `from_env` and `resolved_from_env` take them from (the optional
# ones only when set, so that an unused method of auth is absent; the port is read apart: it is a number).
_REQUIRED_VARIABLES = {"server_hostname": "DATABRICKS_SERVER_HOSTNAME", "http_path": "DATABRICKS_HTTP_PATH"}
_OPTIONAL_VARIABLES = {
    "access_token": "DATABRICKS_TOKEN",
    "client_id": "DATABRICKS_CLIENT_ID",
    "client_secret": "DATABRICKS_CLIENT_SECRET",
    "tls_ca_file": "DATABRICKS_TLS_CA_FILE",
}


def _optional_variables_set() -> dict[str, str]:
    return {key: var for key, var in _OPTIONAL_VARIABLES.items() if os.environ.get(var)}


class DatabricksResource(dg.ConfigurableResource):
    """A Databricks SQL warehouse, configured from `DATABRICKS_*` variables (see `from_env`).

    Open one `session()` per run step and issue every statement of the step through it.
    """

    server_hostname: str = Field(description="Workspace host name, no scheme.")
    port: int = Field(default=443, description="HTTPS port of the workspace.")
    http_path: str = Field(description="HTTP path of the SQL warehouse, e.g. /sql/1.0/warehouses/<id>.")
    access_token: str | None = Field(default=None, repr=False, description="Personal access token.")
    client_id: str | None = Field(default=None, description="OAuth M2M service principal (application) id.")
    client_secret: str | None = Field(default=None, repr=False, description="OAuth M2M client secret.")
    tls_ca_file: str | None = Field(default=None, description="Extra CA certificate (PEM) to trust.")
    enable_telemetry: bool = Field(
        default=False,
        description="The connector's telemetry. Off by default: with it on, connect() first asks "
        "https://<host>:443 for feature flags (whatever `port` says), which costs about 35 s of retries "
        "where nothing answers on 443, and it reports usage to Databricks.",
    )
    retry_stop_after_attempts_count: int = Field(
        default=30,
        ge=1,
        le=60,
        description="Connector `_retry_stop_after_attempts_count`: attempts per request (1-60).",
    )
    retry_stop_after_attempts_duration: float = Field(
        default=900.0,
        ge=1,
        le=86400,
        description="Connector `_retry_stop_after_attempts_duration`: seconds one request may spend "
        "retrying 429/503 answers (a starting warehouse answers 503 for minutes).",
    )
    retry_delay_min: float = Field(
        default=1.0,
        ge=0.1,
        le=60,
        description="Connector `_retry_delay_min`: first back-off delay in seconds.",
    )
    retry_delay_max: float = Field(
        default=5.0,
        ge=5,
        le=3600,
        description="Connector `_retry_delay_max` (at least 5): the connector sleeps at least this long "
        "before every 429/503 retry, so it is kept at the minimum rather than the connector's 60.",
    )
    socket_timeout: float = Field(
        default=120.0,
        gt=0,
        description="Connector `_socket_timeout`: seconds a send/receive may stall (connector default 900).",
    )
    connect_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to reach the host (DNS, TCP, TLS) before a session opens, and for OAuth calls.",
    )

    @classmethod
    def from_env(cls, **overrides: Any) -> DatabricksResource:
        """The `DATABRICKS_*` variables as `EnvVar`s, so that Dagster shows variable names, never values.

        Optional variables become `EnvVar`s only when set here, so that an unused method of auth is absent.
        """
        fields: dict[str, Any] = {key: dg.EnvVar(var) for key, var in _REQUIRED_VARIABLES.items()}
        if os.environ.get("DATABRICKS_PORT"):
            fields["port"] = dg.EnvVar.int("DATABRICKS_PORT")
        fields.update({key: dg.EnvVar(var) for key, var in _optional_variables_set().items()})
        return cls(**{**fields, **overrides})

    @classmethod
    def resolved_from_env(cls) -> DatabricksResource:
        """The same settings as `from_env`, their values read now: for the command line, which opens a
        session outside any Dagster run (resolving `EnvVar`s through Dagster would start an instance)."""
        values: dict[str, Any] = {key: os.environ.get(var, "") for key, var in _REQUIRED_VARIABLES.items()}
        port = os.environ.get("DATABRICKS_PORT", "").strip()
        if port:
            if not port.isdigit():
                raise DatabricksConnectionError(f"{port!r} is not a port number", "DATABRICKS_PORT")
            values["port"] = int(port)
        values.update({key: os.environ[var] for key, var in _optional_variables_set().items()})
        return cls(**values)

    @contextmanager
    def session(self) -> Iterator[DatabricksSession]:
        """One connection, time zone pinned to UTC, closed when the block ends."""
        with _OAuthTrust(self.tls_ca_file) as trust:
            connection = self._connect(trust)
            session = DatabricksSession(connection)
            try:
                yield session
            finally:
                session.close()

    # -- connecting -----------------------------------------------------------------------------------------
    def _connect(self, trust: _OAuthTrust) -> Any:
        self._check_auth_settings()
        self._probe()
        auth = self._auth_options(trust)
        where = f"https://{self.server_hostname}:{self.port}{self.http_path}"
        try:
            return sql.connect(
                server_hostname=self.server_hostname,
                port=self.port,
                http_path=self.http_path,
                session_configuration=dict(UTC_SESSION),
                enable_telemetry=self.enable_telemetry,
                _tls_trusted_ca_file=self.tls_ca_file,
                _socket_timeout=self.socket_timeout,
                _retry_stop_after_attempts_count=self.retry_stop_after_attempts_count,
                _retry_stop_after_attempts_duration=self.retry_stop_after_attempts_duration,
                _retry_delay_min=self.retry_delay_min,
                _retry_delay_max=self.retry_delay_max,
                **auth,
            )
        except Exception as error:
            failure = self._failure(f"cannot open a session at {where}", error)
        raise failure  # outside the handler, so that only the checked `__cause__` is chained

    def _check_auth_settings(self) -> None:
        has_token = bool(self.access_token)
        has_client = bool(self.client_id or self.client_secret)
        if has_token == has_client or (has_client and not (self.client_id and self.client_secret)):
            raise DatabricksConnectionError("set exactly one way to authenticate", _AUTH)

    def _auth_options(self, trust: _OAuthTrust) -> dict[str, Any]:
        if self.access_token:
            return {"access_token": self.access_token}
        try:
            headers = trust.service_principal_headers(
                f"https://{self.server_hostname}:{self.port}",
                str(self.client_id),
                str(self.client_secret),
                self.connect_timeout,
            )
            headers()  # a wrong secret fails here, not inside the connector's retry loop
            return {"credentials_provider": lambda: headers}
        except Exception as error:
            message = f"the workspace's OAuth endpoint refused the service principal ({_summary(error)})"
            failure = _without_secrets(DatabricksConnectionError(message, _CLIENT), error, self._secrets())
        raise failure

    def _probe(self) -> None:
        """DNS, TCP and TLS to the host within `connect_timeout`, so that a wrong host, port or CA fails in
        seconds instead of in the connector's retry loop (which serves 503s of a starting warehouse)."""
        if _behind_proxy(self.server_hostname):
            return  # the proxy reaches the host, not us
        where = f"{self.server_hostname}:{self.port}"
        try:
            context = ssl.create_default_context(cafile=self.tls_ca_file)
        except (OSError, ssl.SSLError) as error:
            raise DatabricksConnectionError(
                f"cannot read the CA file {self.tls_ca_file!r} ({_summary(error)})", _CA
            ) from None
        try:
            with (
                socket.create_connection((self.server_hostname, self.port), self.connect_timeout) as raw,
                context.wrap_socket(raw, server_hostname=self.server_hostname),
            ):
                return
        except socket.gaierror as error:
            message = f"cannot resolve the host {self.server_hostname!r} ({error.strerror})"
        except ssl.SSLCertVerificationError as error:
            setting = _HOST if "hostname" in str(error.verify_message).lower() else _CA
            raise DatabricksConnectionError(
                f"the certificate of {where} is not trusted ({error.verify_message})", setting
            ) from None
        except TimeoutError:
            message = f"nothing answered at {where} within {self.connect_timeout:g} s"
        except OSError as error:
            message = f"cannot reach {where} ({_summary(error)})"
        raise DatabricksConnectionError(message, _HOST) from None

    def _failure(self, doing: str, error: Exception) -> DatabricksConnectionError:
        code = error.context.get("http-code") if isinstance(error, RequestError) else None
        if code in (401, 403):
            setting = _CLIENT if self.client_id else _TOKEN
            reason = "rejected the credentials" if code == 401 else "denied access to the warehouse"
            message = f"{doing}: the warehouse {reason} (HTTP {code})"
        elif code == 404:
            setting, message = _PATH, f"{doing}: no SQL warehouse at that HTTP path (HTTP 404)"
        else:
            setting, message = f"{_HOST}, {_PATH}", f"{doing}: {_summary(error)}"
        return _without_secrets(DatabricksConnectionError(message, setting), error, self._secrets())

    def _secrets(self) -> list[str]:
        return [s for s in (self.access_token, self.client_secret) if s]


class DatabricksSession:
    """One open connection for one run step; every statement goes through it and is counted.

    Results come back as Arrow record batches read with `fetchmany_arrow`, one batch of at most
    `batch_rows` rows in memory at a time; values are always bound as native parameters.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._statements = 0

    @property
    def statements_issued(self) -> int:
        return self._statements

    def query_batches(
        self,
        statement: str | Statement,
        parameters: Mapping[str, ParameterValue] | None = None,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> Generator[pa.RecordBatch, None, None]:
        """Runs `statement` now and streams its rows; empty results yield nothing (see `query_reader`)."""
        cursor, first = self._execute(statement, parameters, batch_rows)
        return _stream(cursor, first, batch_rows)

    def query_reader(
        self,
        statement: str | Statement,
        parameters: Mapping[str, ParameterValue] | None = None,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> pa.RecordBatchReader:
        """As `query_batches`, with the result's schema known even when it has no rows. The next page is
        fetched on a background thread while the caller handles this one (one page ahead at most), so a
        reader feeding a writer reads and writes at once; issue no other statement on this session until
        the reader is exhausted or closed."""
        cursor, first = self._execute(statement, parameters, batch_rows)
        return pa.RecordBatchReader.from_batches(
            first.schema, _read_ahead(_stream(cursor, first, batch_rows))
        )

    def query_table(
        self, statement: str | Statement, parameters: Mapping[str, ParameterValue] | None = None
    ) -> pa.Table:
        """A small result as one Arrow table (metadata, aggregates); large reads use `query_batches`."""
        return self.query_reader(statement, parameters).read_all()

    def query_one(
        self, statement: str | Statement, parameters: Mapping[str, ParameterValue] | None = None
    ) -> dict[str, Any] | None:
        """The only row of a result as a dict, None when there is none; more than one row is an error."""
        rows = self.query_table(statement, parameters).to_pylist()
        if len(rows) > 1:
            raise ValueError(f"expected at most one row, got {len(rows)} from: {statement}")
        return rows[0] if rows else None

    def close(self) -> None:
        log.debug("closing Databricks session after %d statements", self._statements)
        self._connection.close()

    def _execute(
        self, statement: str | Statement, parameters: Mapping[str, ParameterValue] | None, batch_rows: int
    ) -> tuple[Any, pa.Table]:
        if isinstance(statement, Statement):  # a built statement carries its own values
            parameters = {**statement.parameters, **(parameters or {})}
            statement = statement.sql
        # arraysize bounds what the connector asks per page, so it buffers one batch, not the result.
        cursor = self._connection.cursor(arraysize=batch_rows)
        try:
            self._statements += 1
            log.debug("statement %d: %s", self._statements, statement)
            cursor.execute(statement, native_parameters(parameters or {}))
            return cursor, cursor.fetchmany_arrow(batch_rows)
        except BaseException:
            cursor.close()
            raise


def _stream(cursor: Any, first: pa.Table, batch_rows: int) -> Generator[pa.RecordBatch, None, None]:
    try:
        table = first
        while table.num_rows:
            yield from table.to_batches(max_chunksize=batch_rows)
            table = cursor.fetchmany_arrow(batch_rows)
    finally:
        cursor.close()


_END = object()


def _read_ahead(batches: Generator[pa.RecordBatch, None, None]) -> Generator[pa.RecordBatch, None, None]:
    """`batches`, produced on a thread of their own one batch ahead of the consumer. Errors reach the
    consumer as themselves; a consumer that stops early stops the producer, which closes the cursor."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_END)
        except BaseException as error:  # handed to the consumer, which raises it
            put(error)
        finally:
            batches.close()

    producer = threading.Thread(target=produce, name="databricks-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join(timeout=30)  # a fetch under way finishes; a hung one is not waited on forever


class _OAuthTrust:
    """databricks-sdk reaches the workspace with `requests`, which takes an extra CA only from
    REQUESTS_CA_BUNDLE. That variable is set only while the SDK runs, to a bundle of what `requests` trusted
    before plus `tls_ca_file` (so that other threads' requests keep working meanwhile), and the SDK is told
    to refresh tokens synchronously, inside that window. Without `tls_ca_file` nothing is changed."""

    _lock = threading.Lock()

    def __init__(self, ca_file: str | None) -> None:
        self._ca_file = ca_file
        self._bundle: Path | None = None

    def __enter__(self) -> _OAuthTrust:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bundle is not None:
            self._bundle.unlink(missing_ok=True)

    def service_principal_headers(
        self, host: str, client_id: str, client_secret: str, timeout: float
    ) -> Callable[[], dict[str, str]]:
        from databricks.sdk.core import Config, oauth_service_principal

        with self._trusted():
            config = Config(
                host=host,
                client_id=client_id,
                client_secret=client_secret,
                auth_type="oauth-m2m",  # also stops DATABRICKS_TOKEN in the environment from competing
                credentials_strategy=oauth_service_principal,
                disable_async_token_refresh=True,  # refresh inside `_trusted`, not on a background thread
                http_timeout_seconds=timeout,
                retry_timeout_seconds=timeout,
            )

        def headers() -> dict[str, str]:
            with self._trusted():
                return dict(config.authenticate())

        return headers

    @contextmanager
    def _trusted(self) -> Iterator[None]:
        if self._ca_file is None:
            yield
            return
        with self._lock:
            previous = os.environ.get("REQUESTS_CA_BUNDLE")
            os.environ["REQUESTS_CA_BUNDLE"] = str(self._bundle_path())
            try:
                yield
            finally:
                if previous is None:
                    os.environ.pop("REQUESTS_CA_BUNDLE", None)
                else:
                    os.environ["REQUESTS_CA_BUNDLE"] = previous

    def _bundle_path(self) -> Path:
        if self._bundle is None:
            import certifi

            assert self._ca_file is not None
            trusted = os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()
            parts = [Path(trusted).read_text(), Path(self._ca_file).read_text()]
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as bundle:
                bundle.write("\n".join(parts))
            self._bundle = Path(bundle.name)
        return self._bundle


def _behind_proxy(host: str) -> bool:
    return bool(urllib.request.getproxies().get("https")) and not urllib.request.proxy_bypass(host)


def _summary(error: BaseException) -> str:
    """The innermost useful line of an error chain (urllib3 nests the reason two levels down)."""
    while error.__cause__ is not None or (error.__context__ is not None and not str(error).strip()):
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def _without_secrets(
    error: DatabricksConnectionError, cause: BaseException, secrets: list[str]
) -> DatabricksConnectionError:
    """`error` with `cause` attached for debugging, unless a secret appears anywhere in the chain."""
    text = str(error)
    for secret in secrets:
        text = text.replace(secret, "***")
    if text != str(error):
        error = DatabricksConnectionError(text.rsplit("; check ", 1)[0], error.setting)
    chain: list[str] = []
    seen: BaseException | None = cause
    while seen is not None and len(chain) < 20:
        chain += [str(seen), repr(seen), repr(getattr(seen, "context", ""))]
        seen = seen.__cause__ or seen.__context__
    if not any(secret in part for secret in secrets for part in chain):
        error.__cause__ = cause
    return error
