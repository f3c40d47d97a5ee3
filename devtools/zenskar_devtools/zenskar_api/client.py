"""`LocalZenskarApi`: the local Zenskar API for a test, the demo or a benchmark, started in this process or as
a subprocess, and driven over HTTP through its admin endpoints either way.
"""

from __future__ import annotations

import http.client
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from zenskar_devtools.zenskar_api.server import DEFAULT_ORGANISATION, ZenskarApiServer

_STOP_TIMEOUT_S = 10.0


class LocalZenskarApiError(RuntimeError):
    """An admin call the server refused."""

    def __init__(self, method: str, path: str, status: int, payload: Any) -> None:
        super().__init__(f"{method} {path}: {status} {payload}")
        self.status = status
        self.payload = payload


class LocalZenskarApi:
    """A local Zenskar usage API for one organisation and API key (by default "local-org" and a random key),
    its schemas, events and idempotency keys in SQLite under `state_dir`.

    `start()` serves it on a daemon thread here, `start_process()` in a subprocess
    (`python -m zenskar_devtools.zenskar_api serve`); `stop()` ends either. Also a context manager.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        organisation: str | None = None,
        api_key: str | None = None,
        schemas: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.organisation = organisation or DEFAULT_ORGANISATION
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.schemas = {slug: dict(fields) for slug, fields in (schemas or {}).items()}
        self._api_url: str | None = None
        self._server: ZenskarApiServer | None = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[str] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        if self._api_url is None:
            raise RuntimeError("the local Zenskar API is not running: start() or start_process() first")
        return self._api_url

    def environment(self) -> dict[str, str]:
        """ZENSKAR_API_URL, ZENSKAR_ORGANISATION and ZENSKAR_API_KEY, as the product reads them."""
        return {
            "ZENSKAR_API_URL": self.api_url,
            "ZENSKAR_ORGANISATION": self.organisation,
            "ZENSKAR_API_KEY": self.api_key,
        }

    def headers(self) -> dict[str, str]:
        """The auth headers every request needs."""
        return {"organisation": self.organisation, "x-api-key": self.api_key}

    def start(self) -> LocalZenskarApi:
        """Serve in this process, on a daemon thread."""
        self._not_running()
        server = ZenskarApiServer(
            self.state_dir,
            host=self.host,
            port=self.port,
            organisation=self.organisation,
            api_key=self.api_key,
            schemas=self.schemas,
        )
        # A short poll: stop() waits for the serving loop to look up, and tests stop one server each.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True, name="local-zenskar-api"
        )
        self._thread.start()
        self._server, self._api_url = server, server.api_url
        return self

    def start_process(self) -> LocalZenskarApi:
        """Serve in a subprocess (its own interpreter, so its threads don't share this process's GIL)."""
        self._not_running()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "zenskar_devtools.zenskar_api",
            "serve",
            *("--host", self.host, "--port", str(self.port), "--state-dir", str(self.state_dir)),
            *("--organisation", self.organisation, "--api-key", self.api_key),
        ]
        with tempfile.TemporaryDirectory() as scratch:
            if self.schemas:
                schemas_file = Path(scratch) / "schemas.json"
                schemas_file.write_text(json.dumps(self.schemas))
                command += ["--schemas", str(schemas_file)]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            assert process.stdout is not None
            line = process.stdout.readline()  # once it is printed, the schemas file has been read
        if not line:
            code = process.wait()
            raise RuntimeError(f"the local Zenskar API exited with {code} before it served")
        self._process, self._api_url = process, json.loads(line)["api_url"]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close()
            if self._thread is not None:
                self._thread.join(_STOP_TIMEOUT_S)
            self._server = self._thread = None
        if self._process is not None:
            process, self._process = self._process, None
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self._api_url = None

    def __enter__(self) -> LocalZenskarApi:
        return self if self._api_url is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _not_running(self) -> None:
        if self._api_url is not None:
            raise RuntimeError(f"the local Zenskar API already runs at {self._api_url}")

    # -- admin calls ----------------------------------------------------------------------------------------
    def define(self, slug: str, schema: Mapping[str, str]) -> dict[str, str]:
        """Define (or redefine) the usage event `slug` with its data fields' types."""
        path = f"/_local/usage-events/{urllib.parse.quote(slug, safe='')}"
        answer = self._call("PUT", path, {"schema": dict(schema)})
        self.schemas[slug] = dict(answer["schema"])  # a restart serves it again, also in a subprocess
        return self.schemas[slug]

    def usage_events(self) -> dict[str, dict[str, str]]:
        usage_events: dict[str, dict[str, str]] = self._call("GET", "/_local/usage-events")["usage_events"]
        return usage_events

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Switch faults on for the coming `/usage` requests (see faults.py); what is on afterwards."""
        faults: dict[str, Any] = self._call("POST", "/_local/faults", settings)
        return faults

    def faults(self) -> dict[str, Any]:
        faults: dict[str, Any] = self._call("GET", "/_local/faults")
        return faults

    def clear_faults(self) -> None:
        self._call("DELETE", "/_local/faults")

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock forward (Idempotency-Keys expire 24 hours after their first use)."""
        self._call("POST", "/_local/clock", {"advance_seconds": seconds})

    def reset(self) -> None:
        """Forget the events, idempotency keys, faults and counts; the usage events' schemas stay."""
        self._call("POST", "/_local/reset", {})

    def events(self, slug: str | None = None) -> list[dict[str, Any]]:
        """The events received, in order; numbers with a fraction come as Decimal, exactly as sent."""
        query = f"?{urllib.parse.urlencode({'slug': slug})}" if slug is not None else ""
        events: list[dict[str, Any]] = self._call("GET", f"/_local/events{query}", exact=True)["events"]
        return events

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._call("GET", "/_local/stats")
        return stats

    def _call(self, method: str, path: str, payload: Any = None, *, exact: bool = False) -> Any:
        url = urllib.parse.urlsplit(self.api_url)
        connection = http.client.HTTPConnection(url.hostname or self.host, url.port, timeout=60)
        try:
            body = None if payload is None else json.dumps(payload).encode()
            headers = {**self.headers(), "Content-Type": "application/json"}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            status, content = response.status, response.read()
        finally:
            connection.close()
        answer = json.loads(content, parse_float=Decimal if exact else float)
        if status >= 300:
            raise LocalZenskarApiError(method, path, status, answer)
        return answer
