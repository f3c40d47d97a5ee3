"""The local Zenskar API's HTTP front: auth on every path, `POST /usage/<slug>`, and the `/_local/...` admin
endpoints that tests and the demo use to define usage events, switch faults, read what arrived and move the
clock. Plain HTTP/1.1 with keep-alive, a thread per connection, JSON in and out, no per-request log.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from zenskar_devtools.zenskar_api.faults import FaultSettingsError, UsageFaults
from zenskar_devtools.zenskar_api.schemas import SchemaError
from zenskar_devtools.zenskar_api.store import StoredEvent, UsageStore
from zenskar_devtools.zenskar_api.usage import Answer, Clock, UsageService, UsageStats, detail, json_answer

log = logging.getLogger(__name__)

DEFAULT_ORGANISATION = "local-org"
ENV_FILE_NAME = "zenskar-api.env"
# Far above 1000 events of any sensible size; a body beyond it is refused unread.
MAX_BODY_BYTES = 64 * 1024 * 1024


class ZenskarApiServer(ThreadingHTTPServer):
    """Zenskar's usage-event API for one organisation and API key, over what `state_dir` holds.

    Binds on construction; `serve_forever()` serves (on whichever thread calls it), `shutdown()` stops it,
    `close()` then releases the socket and the database.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        organisation: str = DEFAULT_ORGANISATION,
        api_key: str,
        schemas: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.organisation = organisation
        self.api_key = api_key
        self.store = UsageStore(self.state_dir)
        self.faults = UsageFaults()
        self.clock = Clock()
        self.stats = UsageStats()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        try:
            self.usage = UsageService(self.store, organisation, self.faults, self.clock, self.stats)
            for slug, fields in (schemas or {}).items():
                self.usage.define(slug, fields)
            super().__init__((host, port), _Handler)
        except BaseException:
            self.store.close()
            raise

    @property
    def api_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def environment(self) -> dict[str, str]:
        """The settings a Zenskar client reads, as environment variables."""
        return {
            "ZENSKAR_API_URL": self.api_url,
            "ZENSKAR_ORGANISATION": self.organisation,
            "ZENSKAR_API_KEY": self.api_key,
        }

    def write_environment_file(self) -> Path:
        """`<state dir>/zenskar-api.env`, readable by its owner only: it holds the API key."""
        path = self.state_dir / ENV_FILE_NAME
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            os.fchmod(file.fileno(), 0o600)  # also when the file was there before with other rights
            file.write("".join(f"{name}={value}\n" for name, value in self.environment().items()))
        return path

    def close(self) -> None:
        """Stop listening and end the kept-alive connections too, so that a client's pooled connection
        cannot reach a stopped server (as after a restart in a test)."""
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.store.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def authentication_error(self, api_key: str | None, organisation: str | None) -> Answer | None:
        if not api_key:
            return detail(401, "missing x-api-key header")
        if not hmac.compare_digest(api_key.encode(errors="replace"), self.api_key.encode()):
            return detail(401, "invalid x-api-key")
        if not organisation:
            return detail(403, "missing organisation header")
        if organisation != self.organisation:
            return detail(403, f"the API key gives no access to organisation '{organisation}'")
        return None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is the client's business.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _BadRequest(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; without TCP_NODELAY the body waits for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: ZenskarApiServer
    body = b""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # nothing per request: the delivery benchmark measures against this server

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # answered 405 in JSON, rather than http.server's 501 page
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        usage = url.path.startswith("/usage/")
        if usage:
            self.server.stats.request()
        answer = self._body_error()
        if answer is None:
            answer = self.server.authentication_error(
                self.headers.get("x-api-key"), self.headers.get("organisation")
            )
        if answer is None:
            try:
                if usage:
                    answer = self._usage(method, urllib.parse.unquote(url.path[len("/usage/") :]))
                else:
                    answer = self._admin(method, url.path, urllib.parse.parse_qs(url.query))
            except _BadRequest as bad:
                answer = bad.answer
            except Exception:  # a bug here must still answer, and in JSON, as everywhere else
                log.exception("%s %s failed", method, url.path)
                answer = detail(500, "the local Zenskar API failed on this request")
        if usage:
            self.server.stats.answered(answer)
        if answer.dropped:
            self._drop()
        else:
            self._send(answer)

    def _body_error(self) -> Answer | None:
        """Reads the body into `self.body`; an answer when it cannot be read (the connection then closes)."""
        self.body = b""  # the handler serves every request of a kept-alive connection
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return detail(411, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            return detail(413 if length > 0 else 400, f"bad Content-Length (at most {MAX_BODY_BYTES} bytes)")
        self.body = self.rfile.read(length)
        return None

    # -- /usage/<slug> ---------------------------------------------------------------------------------------
    def _usage(self, method: str, slug: str) -> Answer:
        if method != "POST":
            return detail(405, "usage events are sent with POST")
        if not slug or "/" in slug:
            return detail(404, f"no usage event with api_slug '{slug}'")
        key = self.headers.get("Idempotency-Key") or None
        return self.server.usage.post(slug, self.body, key)

    def _drop(self) -> None:
        """Close the connection without a word: the client cannot tell whether its events arrived."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- /_local/... -----------------------------------------------------------------------------------------
    def _admin(self, method: str, path: str, query: dict[str, list[str]]) -> Answer:
        server, usage = self.server, self.server.usage
        route = (method, path)
        if path.startswith("/_local/usage-events/"):
            if method != "PUT":
                return detail(405, "a usage event is defined with PUT")
            slug = urllib.parse.unquote(path[len("/_local/usage-events/") :])
            if not slug or "/" in slug:
                return detail(400, "a usage event's api_slug is a non-empty path segment")
            try:
                fields = usage.define(slug, self._json_object().get("schema"))
            except SchemaError as error:
                return detail(400, str(error))
            return json_answer(200, {"api_slug": slug, "schema": fields})
        if route == ("GET", "/_local/usage-events"):
            return json_answer(200, {"usage_events": usage.schemas()})
        if route == ("GET", "/_local/events"):
            slugs = query.get("slug")
            return Answer(200, _events_body(server.store.events(slugs[-1] if slugs else None)))
        if route == ("GET", "/_local/stats"):
            return json_answer(200, server.stats.snapshot())
        if path == "/_local/faults":
            return self._faults(method)
        if route == ("POST", "/_local/clock"):
            seconds = self._json_object().get("advance_seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                return detail(400, "advance_seconds: a number of seconds from 0")
            offset = server.clock.advance(seconds)
            return json_answer(200, {"offset_seconds": offset, "now": server.clock.now()})
        if route == ("POST", "/_local/reset"):
            usage.reset()
            return json_answer(200, {"reset": True})
        known = {"/_local/usage-events", "/_local/events", "/_local/stats", "/_local/clock", "/_local/reset"}
        if path in known:
            return detail(405, f"{method} is not allowed on {path}")
        return detail(404, f"no endpoint {path}")

    def _faults(self, method: str) -> Answer:
        faults: UsageFaults = self.server.faults
        if method == "GET":
            return json_answer(200, faults.state())
        if method == "DELETE":
            faults.clear()
            return json_answer(200, faults.state())
        if method == "POST":
            try:
                return json_answer(200, faults.update(self._json_object()))
            except FaultSettingsError as error:
                return detail(400, str(error))
        return detail(405, f"{method} is not allowed on /_local/faults")

    def _json_object(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.body or b"{}")
        except ValueError as error:
            raise _BadRequest(detail(400, f"the body is not JSON: {error}")) from None
        if not isinstance(payload, dict):
            raise _BadRequest(detail(400, "the body is a JSON object"))
        return payload

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)


def _events_body(events: list[StoredEvent]) -> bytes:
    """`{"events": [...]}`, each event's data pasted in as stored, so that every value reads back as sent."""
    rendered = []
    for event in events:
        head = json.dumps(
            {
                "seq": event.seq,
                "slug": event.slug,
                "customer_id": event.customer_id,
                "timestamp": event.timestamp,
                "idempotency_key": event.idempotency_key,
                "received_at": event.received_at,
            },
            ensure_ascii=False,
        )
        rendered.append(f'{head[:-1]}, "data": {event.data}}}')
    return ('{"events": [' + ", ".join(rendered) + "]}").encode()
