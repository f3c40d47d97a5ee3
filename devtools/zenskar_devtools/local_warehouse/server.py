"""The local warehouse's HTTPS front: bearer-token auth, OAuth M2M token endpoints, fault injection, Thrift.

Thrift calls arrive as `POST /sql/1.0/warehouses/<id>`; `GET /oidc/.well-known/oauth-authorization-server` and
`POST /oidc/v1/token` serve databricks-sdk's machine-to-machine OAuth; `/_local/faults` switches faults on
and off from another process (GET lists, POST adds a rule as JSON, DELETE clears).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from databricks.sql.thrift_api.TCLIService import TCLIService
from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

from zenskar_devtools.local_warehouse.catalog import Catalog
from zenskar_devtools.local_warehouse.engine import Engine
from zenskar_devtools.local_warehouse.faults import FaultInjector, FaultKind, FaultRule
from zenskar_devtools.local_warehouse.metadata_calls import metadata_call
from zenskar_devtools.local_warehouse.service import WarehouseService
from zenskar_devtools.local_warehouse.tls import ensure_certificate

log = logging.getLogger(__name__)

OAUTH_TOKEN_TTL_S = 3600
_REAP_INTERVAL_S = 30.0


@dataclass(frozen=True)
class ConnectionInfo:
    """What a client needs; the first five are the JSON line `serve` prints, the rest the OAuth client."""

    server_hostname: str
    port: int
    http_path: str
    access_token: str
    tls_ca_file: str
    client_id: str
    client_secret: str

    def env(self) -> dict[str, str]:
        return {
            "DATABRICKS_SERVER_HOSTNAME": self.server_hostname,
            "DATABRICKS_PORT": str(self.port),
            "DATABRICKS_HTTP_PATH": self.http_path,
            "DATABRICKS_TOKEN": self.access_token,
            "DATABRICKS_TLS_CA_FILE": self.tls_ca_file,
        }

    def json_line(self) -> str:
        data = asdict(self)
        return json.dumps(
            {k: data[k] for k in ("server_hostname", "port", "http_path", "access_token", "tls_ca_file")}
        )


class LocalWarehouse:
    """A Databricks-compatible SQL warehouse over the Delta tables under `root`.

    `start()` serves on a background thread (tests); `serve_forever()` blocks (the CLI).
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        state_dir: Path | None = None,
        warehouse_id: str = "local",
        client_id: str = "local-service-principal",
        client_secret: str | None = None,
        idle_timeout_s: float = 900.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.state_dir = Path(state_dir) if state_dir else self.root / ".warehouse"
        self.http_path = f"/sql/1.0/warehouses/{warehouse_id}"
        self.token = token or f"dapi-local-{secrets.token_hex(16)}"
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.faults = FaultInjector()
        self.catalog = Catalog(self.root)
        self.engine = Engine(self.catalog)
        self.service = WarehouseService(
            self.engine.execute,
            lambda call, args, session: metadata_call(self.catalog, call, args, session),
            self.faults,
            idle_timeout_s=idle_timeout_s,
        )
        self._issued_tokens: dict[str, float] = {}
        self._tokens_lock = threading.Lock()
        self._host = host
        self._httpd = _Server((host, port), _Handler, self)
        certs = ensure_certificate(self.state_dir, _certificate_hosts(host))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs.cert_file, certs.key_file)
        self._httpd.socket = context.wrap_socket(
            self._httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self.info = ConnectionInfo(
            server_hostname="localhost" if host in ("127.0.0.1", "0.0.0.0", "::1") else host,
            port=self._httpd.server_address[1],
            http_path=self.http_path,
            access_token=self.token,
            tls_ca_file=str(certs.ca_file.resolve()),
            client_id=self.client_id,
            client_secret=self.client_secret,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def write_connection_env(self) -> Path:
        """`connection.env` (token auth) and `oauth.env` (a service principal instead) in the state dir."""
        token_env = self.info.env()
        oauth_env = {k: v for k, v in token_env.items() if k != "DATABRICKS_TOKEN"}
        oauth_env |= {"DATABRICKS_CLIENT_ID": self.client_id, "DATABRICKS_CLIENT_SECRET": self.client_secret}
        for name, values in (("oauth.env", oauth_env), ("connection.env", token_env)):
            path = self.state_dir / name
            path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
            path.chmod(0o600)
        return path

    def start(self) -> ConnectionInfo:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="local-warehouse")
        self._thread.start()
        return self.info

    def serve_forever(self) -> None:
        threading.Thread(target=self._reap_loop, daemon=True, name="reaper").start()
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _reap_loop(self) -> None:
        while not self._stop.wait(_REAP_INTERVAL_S):
            self.service.reap_idle()

    # -- auth -----------------------------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        presented = header[len("Bearer ") :].strip()
        if hmac.compare_digest(presented, self.token):
            return True
        with self._tokens_lock:
            expiry = self._issued_tokens.get(presented)
        return expiry is not None and expiry > time.time()

    def issue_token(self, client_id: str, client_secret: str) -> str | None:
        if not (
            hmac.compare_digest(client_id, self.client_id)
            and hmac.compare_digest(client_secret, self.client_secret)
        ):
            return None
        token = f"local-oauth-{secrets.token_hex(16)}"
        with self._tokens_lock:
            self._issued_tokens[token] = time.time() + OAUTH_TOKEN_TTL_S
        return token


def _certificate_hosts(host: str) -> list[str]:
    hosts = ["localhost", "127.0.0.1"]
    if host not in hosts and host not in ("0.0.0.0", "::"):
        hosts.insert(0, host)
    return hosts


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type, warehouse: LocalWarehouse) -> None:
        super().__init__(address, handler)
        self.warehouse = warehouse
        processor = TCLIService.Processor(warehouse.service)
        self.processor = processor

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (reset, cancel) is not the server's problem.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: an answer goes out as two writes (headers, then body), and with Nagle's algorithm the body
    # waits for the client's delayed ACK of the headers, about 40 ms on every Thrift call of every statement.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    @property
    def warehouse(self) -> LocalWarehouse:
        return self.server.warehouse

    # -- routing --------------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urllib.parse.urlsplit(self.path).path
        if path == "/oidc/v1/token":
            return self._token(body)
        if not self.warehouse.authorized(self.headers.get("Authorization")):
            return self._unauthorized()
        if path == "/_local/faults":
            self.warehouse.faults.add(FaultRule.from_json(json.loads(body or b"{}")))
            return self._json(200, {"rules": self.warehouse.faults.rules()})
        if path != self.warehouse.http_path:
            return self._json(
                404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {path}"}
            )
        if self._inject_fault(_rpc_name(body)):
            return
        self._thrift(body)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/.well-known/databricks-config":  # databricks-sdk's host metadata probe
            base = f"https://{self.warehouse.info.server_hostname}:{self.warehouse.info.port}"
            return self._json(200, {"oidc_endpoint": f"{base}/oidc", "workspace_id": "1", "cloud": "aws"})
        if path == "/oidc/.well-known/oauth-authorization-server":
            base = f"https://{self.warehouse.info.server_hostname}:{self.warehouse.info.port}"
            return self._json(
                200,
                {
                    "issuer": f"{base}/oidc",
                    "authorization_endpoint": f"{base}/oidc/v1/authorize",
                    "token_endpoint": f"{base}/oidc/v1/token",
                    "grant_types_supported": ["client_credentials"],
                },
            )
        if not self.warehouse.authorized(self.headers.get("Authorization")):
            return self._unauthorized()
        if path == "/_local/faults":
            return self._json(
                200, {"rules": self.warehouse.faults.rules(), "injected": self.warehouse.faults.injected}
            )
        if path == "/_local/health":
            service = self.warehouse.service
            return self._json(200, {"ok": True, **service.counts(), **service.statement_counts()})
        self._json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {path}"})

    def do_DELETE(self) -> None:
        if not self.warehouse.authorized(self.headers.get("Authorization")):
            return self._unauthorized()
        if urllib.parse.urlsplit(self.path).path == "/_local/faults":
            self.warehouse.faults.clear()
            return self._json(200, {"rules": []})
        if urllib.parse.urlsplit(self.path).path == "/_local/health":  # counts what clients send afresh
            self.warehouse.service.reset_counts()
            service = self.warehouse.service
            return self._json(200, {"ok": True, **service.counts(), **service.statement_counts()})
        self._json(404, {"error_code": "ENDPOINT_NOT_FOUND"})

    # -- answers --------------------------------------------------------------------------------------------
    def _thrift(self, body: bytes) -> None:
        itrans = TTransport.TMemoryBuffer(body)
        otrans = TTransport.TMemoryBuffer()
        self.server.processor.process(
            TBinaryProtocol.TBinaryProtocolAccelerated(itrans),
            TBinaryProtocol.TBinaryProtocolAccelerated(otrans),
        )
        self._send(200, otrans.getvalue(), "application/x-thrift")

    def _token(self, body: bytes) -> None:
        form = urllib.parse.parse_qs(body.decode())
        client_id, client_secret = _basic_credentials(self.headers.get("Authorization"))
        client_id = client_id or form.get("client_id", [""])[0]
        client_secret = client_secret or form.get("client_secret", [""])[0]
        if form.get("grant_type", [""])[0] != "client_credentials":
            return self._json(400, {"error": "unsupported_grant_type"})
        token = self.warehouse.issue_token(client_id, client_secret)
        if token is None:
            return self._json(
                401, {"error": "invalid_client", "error_description": "Client authentication failed"}
            )
        self._json(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": OAUTH_TOKEN_TTL_S,
                "scope": form.get("scope", ["all-apis"])[0],
            },
        )

    def _unauthorized(self) -> None:
        reason = "Invalid access token" if self.headers.get("Authorization") else "Missing access token"
        self._send(
            401,
            json.dumps({"error_code": "401", "message": reason}).encode(),
            "application/json",
            {"x-databricks-reason-phrase": reason},
        )

    def _inject_fault(self, rpc: str | None) -> bool:
        rule = self.warehouse.faults.for_request(rpc)
        if rule is None:
            return False
        if rule.kind is FaultKind.DELAY:
            time.sleep(rule.seconds)
            return False
        if rule.kind is FaultKind.RESET:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return True
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        message = {503: "Service Unavailable (injected)", 429: "Too Many Requests (injected)"}
        self._send(rule.status, message.get(rule.status, "Injected fault").encode(), "text/plain", headers)
        return True

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _rpc_name(body: bytes) -> str | None:
    """The Thrift method name of a strict TBinaryProtocol message (version word, then the name)."""
    if len(body) < 8:
        return None
    (length,) = struct.unpack("!i", body[4:8])
    return body[8 : 8 + length].decode(errors="replace") if 0 < length < 64 else None


def _basic_credentials(header: str | None) -> tuple[str, str]:
    if not header or not header.startswith("Basic "):
        return "", ""
    decoded = base64.b64decode(header[len("Basic ") :]).decode()
    client_id, _, secret = decoded.partition(":")
    return urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
