"""`make prod-local`: the production instance on one machine.

PostgreSQL (Debian's `postgresql`, a cluster under `.prod-local/postgres`), the code location as its own
gRPC server, `dagster-daemon` and `dagster-webserver`, each its own process as on Kubernetes, on the
instance `deploy/dagster.yaml` describes (runs, event logs, schedules and cursors in PostgreSQL; the run
queue's per-stream limit, the warehouse pool, run monitoring and run retries). Runs are launched by the
code server as processes of this machine (Dagster's default run launcher).

`ProdStack` is what the command and the tests of the production instance start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
import yaml

from zenskar_devtools.dev import serve_demo_warehouse, serve_local_zenskar_api
from zenskar_devtools.ports import free_port, port_in_use
from zenskar_devtools.postgres import LocalPostgres, PostgresInfo
from zenskar_devtools.recovery import Recovered, fail_runs_of_earlier_session

PRODUCTION_INSTANCE = Path("deploy/dagster.yaml")
LOCATION = "zenskar_pipeline"


class ProdStack:
    """PostgreSQL, code server, daemon and webserver; `start` returns once each answers."""

    def __init__(
        self,
        folder: Path,
        env: Mapping[str, str],
        *,
        instance_file: Path = PRODUCTION_INSTANCE,
        webserver_port: int | None = 3000,
        daemon: bool = True,
        log_folder: Path | None = None,
    ) -> None:
        self.folder = folder.resolve()
        self.home = self.folder / "dagster_home"
        self.postgres = LocalPostgres(self.folder / "postgres")
        self.instance_file = instance_file
        self.webserver_port = webserver_port
        self.with_daemon = daemon
        self.log_folder = log_folder
        self.env = dict(env)
        self.grpc_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.recovered: list[Recovered] = []
        self.info: PostgresInfo | None = None

    @property
    def workspace(self) -> Path:
        return self.home / "workspace.yaml"

    def start(self) -> ProdStack:
        self.info = self.postgres.start()
        self.postgres.create_database(self.info)
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.instance_file, self.home / "dagster.yaml")
        grpc = {"host": "127.0.0.1", "port": self.grpc_port, "location_name": LOCATION}
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": grpc}]}))
        self.env.update(self.info.env(), DAGSTER_HOME=str(self.home), TZ="UTC")
        self.recovered = self._recover()
        self._spawn(
            "code-server",
            [
                sys.executable, "-m", "dagster", "code-server", "start",
                "-m", "zenskar_pipeline.definitions", "-h", "127.0.0.1", "-p", str(self.grpc_port),
                "--location-name", LOCATION,
            ],
        )  # fmt: skip
        self._wait_for_code_server()
        if self.with_daemon:
            self._spawn("daemon", [_script("dagster-daemon"), "run", "-w", str(self.workspace)])
        if self.webserver_port is not None:
            self._spawn(
                "webserver",
                [
                    _script("dagster-webserver"), "-w", str(self.workspace),
                    "-h", "127.0.0.1", "-p", str(self.webserver_port),
                ],
            )  # fmt: skip
            _wait_for_port(self.webserver_port, self.processes["webserver"], "dagster-webserver")
        return self

    def stop(self) -> None:
        """SIGTERM to each process group (webserver, daemon, code server and the run workers it started),
        SIGKILL to what is left after 20 s, then PostgreSQL."""
        for name in ("webserver", "daemon", "code-server"):
            process = self.processes.pop(name, None)
            if process is not None:
                _stop_group(process)
        self.postgres.stop()

    def __enter__(self) -> ProdStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The stack's instance as this process reads it, its DAGSTER_* variables set meanwhile."""
        names = [name for name in self.env if name.startswith("DAGSTER_")]
        saved = {name: os.environ.get(name) for name in names}
        os.environ.update({name: self.env[name] for name in names})
        try:
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                yield instance
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _recover(self) -> list[Recovered]:
        with self.instance() as instance:
            return fail_runs_of_earlier_session(instance)

    def _spawn(self, name: str, command: list[str]) -> None:
        """`command` in a process group of its own (stopped with its children); its output to this
        terminal, or to `<log_folder>/<name>.log`."""
        log = None
        if self.log_folder is not None:
            self.log_folder.mkdir(parents=True, exist_ok=True)
            log = (self.log_folder / f"{name}.log").open("ab")
        try:
            self.processes[name] = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=True,
            )
        finally:
            if log is not None:
                log.close()  # the child has its own copy

    def _wait_for_code_server(self) -> None:
        process = self.processes["code-server"]
        deadline = time.monotonic() + 180
        command = [sys.executable, "-m", "dagster", "api", "grpc-health-check", "-p", str(self.grpc_port)]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the code server exited ({process.returncode}) before it served")
            healthy = subprocess.run(command, env=self.env, capture_output=True).returncode == 0
            if healthy:
                return
            time.sleep(1)
        raise RuntimeError("the code server did not answer within 180 s")


def _script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}) before it served")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer on port {port} within {timeout:g} s")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # what the leader left behind
    process.wait()


def run_prod_local(folder: Path, warehouse_root: Path, port: int) -> int:
    """What `make prod-local` runs: until Ctrl-C (or SIGTERM), or until one of the processes exits."""
    env = dict(os.environ, TZ="UTC")
    if port_in_use(port):
        print(f"Port {port} is taken (`make dev` or another `make prod-local`?): stop that first")
        return 1
    server = None if env.get("DATABRICKS_SERVER_HOSTNAME") else serve_demo_warehouse(warehouse_root, env)
    api = None if env.get("ZENSKAR_API_KEY") else serve_local_zenskar_api(env)
    stack = ProdStack(folder, env, webserver_port=port)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        discovered = subprocess.call([sys.executable, "-m", "zenskar_pipeline.cli", "discover"], env=env)
        if discovered != 0:
            return discovered
        print(f"Starting PostgreSQL ({stack.postgres.data}), the code server, the daemon and the webserver")
        stack.start()
        assert stack.info is not None
        print(f"PostgreSQL on 127.0.0.1:{stack.info.port}, database {stack.info.database}")
        for run in stack.recovered:
            print(f"Run {run.run_id}, left {run.status.lower()} by an earlier session: failed, to run again")
        print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops everything)")
        while not stopping:
            exited = [name for name, process in stack.processes.items() if process.poll() is not None]
            if exited:
                print(f"{', '.join(exited)} exited: stopping the rest")
                return 1
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        print("Stopping the webserver, the daemon, the code server and PostgreSQL ...")
        stack.stop()
        if server is not None:
            server.stop()
        if api is not None:
            api.stop()
