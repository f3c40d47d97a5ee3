"""`zenskar-pipeline dev` run as a user runs it: a separate process in a project folder of its own, on the
local warehouse, a Dagster home of its own and a free port. What it prints, and that SIGTERM (`kill`) or
Ctrl-C (SIGINT to the terminal's foreground process group) leaves nothing of what it started running."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psutil
import pytest

from zenskar_devtools.local_warehouse.seed import seed_demo
from zenskar_devtools.ports import free_port, port_in_use

REPO = Path(__file__).resolve().parents[2]
COMMAND = str(Path(sys.executable).with_name("zenskar-pipeline"))
_USER_PREFIXES = ("DATABRICKS_", "ZENSKAR_PIPELINE_", "DAGSTER_HOME")
# Guards against a hang only; nothing here asserts how long anything takes.
STARTUP_LIMIT_S = 300
RUN_LIMIT_S = 300


@dataclass
class DevSession:
    process: subprocess.Popen[bytes]
    port: int
    home: Path
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_served(self) -> list[psutil.Process]:
        """Block until the webserver answers; returns every process `dev` started by then, at any depth."""
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dev exited ({self.process.returncode}):\n{self.output}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=5):
                    return psutil.Process(self.process.pid).children(recursive=True)
            except OSError:
                time.sleep(1)
        raise AssertionError(f"the webserver did not answer:\n{self.output}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder as `make dev` finds one: the streams file and the demo tables seeded (small, so that
    `dev` does not seed its 100,000 rows); `dg dev` serves the repository's component on that streams file."""
    shutil.copyfile(REPO / "streams.yaml", tmp_path / "streams.yaml")
    seed_demo(tmp_path / "data" / "warehouse", rows=2000)
    return tmp_path


StartDev = Callable[..., DevSession]


@pytest.fixture
def start_dev(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StartDev]:
    """Starts `zenskar-pipeline dev OPTIONS` in `project`; whatever a failed test left is killed after it."""
    sessions: list[DevSession] = []

    def start(*options: str) -> DevSession:
        home = project / "dagster_home"
        env = {name: value for name, value in os.environ.items() if not name.startswith(_USER_PREFIXES)}
        env.update(DAGSTER_HOME=str(home), TZ="UTC")
        monkeypatch.setenv("DAGSTER_HOME", str(home))  # for this process to read the runs
        port = free_port()
        log = project / "dev.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [COMMAND, "dev", "--port", str(port), *options],
                cwd=project,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as a terminal gives a command
            )
        sessions.append(DevSession(process, port, home, log))
        return sessions[-1]

    yield start
    for session in sessions:
        if session.process.poll() is None:
            for child in psutil.Process(session.process.pid).children(recursive=True):
                child.kill()
            session.process.kill()
            session.process.wait()


def _left_running(tree: list[psutil.Process]) -> list[str]:
    left = []
    for process in tree:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {' '.join(process.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            pass
    return left


def _wait_for_a_finished_run(home: Path, session: DevSession) -> dg.DagsterRun:
    """The first run the sensor launched, once it has ended."""
    deadline = time.monotonic() + RUN_LIMIT_S
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            finished = [run for run in instance.get_runs() if run.is_finished]
            if finished:
                return finished[0]
            assert session.process.poll() is None, session.output
            time.sleep(2)
    raise AssertionError(f"no run ended:\n{session.output}")


def test_dev_prints_one_line_of_discovery_runs_at_info_and_sigterm_stops_everything(
    start_dev: StartDev,
) -> None:
    session = start_dev("--live")
    tree = session.wait_until_served()
    commands = [" ".join(process.cmdline()) for process in tree]
    assert any("dagster_webserver" in command for command in commands)
    assert any("dagster._daemon" in command for command in commands)
    assert any("code-server" in command for command in commands)
    assert any("seed-demo" in command and "--live" in command for command in commands)
    run = _wait_for_a_finished_run(session.home, session)  # the sensor's, launched by the daemon

    os.kill(session.process.pid, signal.SIGTERM)  # as `kill PID` sends it
    assert session.process.wait(timeout=120) == 0
    assert _left_running(tree) == []
    assert not port_in_use(session.port)

    output = session.output
    (discovered,) = [line for line in output.splitlines() if "Discovered" in line]
    assert discovered.startswith("Discovered 3 table(s)")
    assert "suggested cursor" not in output  # discover's listing stays in `zenskar-pipeline discover`
    assert "will not be used" not in output  # no dagster.yaml in the working folder
    assert "superseded" not in output
    assert "Telemetry" not in output
    # The run's console log is at INFO in the terminal; its event log keeps the debug events for the UI.
    assert " - DEBUG - " not in output
    assert f"{run.run_id} - " in output  # the run did print there (its steps' INFO lines)
    with dg.DagsterInstance.from_config(str(session.home)) as instance:
        assert any(entry.level == logging.DEBUG for entry in instance.all_logs(run.run_id))


def test_ctrl_c_stops_everything(start_dev: StartDev) -> None:
    session = start_dev()
    tree = session.wait_until_served()
    assert tree
    os.killpg(session.process.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    assert session.process.wait(timeout=120) == 0
    assert _left_running(tree) == []
    assert not port_in_use(session.port)
