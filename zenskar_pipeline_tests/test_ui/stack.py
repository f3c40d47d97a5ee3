"""The stack `make dev` starts (`zenskar-pipeline dev`: the local warehouse, discovery, `dg dev` with its
webserver, daemon and code server), in a project folder of its own on a free port, for the UI test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from zenskar_devtools.local_warehouse.seed import seed_demo
from zenskar_devtools.ports import free_port
from zenskar_pipeline_tests.test_end_to_end.project import COMMAND, REPO, user_env

# What `make dev` reads from the folder it runs in: the demo's streams file (it writes the instance's settings
# into DAGSTER_HOME itself, and `dg dev` serves the repository's component on that streams file).
PROJECT_FILES = ("streams.yaml",)
# The demo tables, smaller than `make demo`'s: the UI shows the same assets, and runs take seconds.
DEMO_ROWS = 3_000


@dataclass(frozen=True)
class DevStack:
    url: str
    folder: Path
    log: Path


@contextlib.contextmanager
def dev_stack(folder: Path, *, start_timeout: float = 120) -> Iterator[DevStack]:
    """`zenskar-pipeline dev` (what `make dev` runs) in `folder`, with the demo's files and its own
    DAGSTER_HOME, serving the UI on a free port; every process it started is ended on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copyfile(REPO / name, folder / name)
    seed_demo(folder / "data" / "warehouse", rows=DEMO_ROWS)
    env = user_env({}, dagster_home=folder / ".dagster_home")
    port = free_port()
    log = folder / "dev.log"
    with log.open("wb") as output:
        # A session of its own: the stack is stopped as Ctrl-C stops `make dev`, by a SIGINT to its group.
        process = subprocess.Popen(
            [COMMAND, "dev", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_webserver(url, process, log, start_timeout)
        yield DevStack(url, folder, log)
    finally:
        _stop(process)


def _wait_for_webserver(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"`zenskar-pipeline dev` exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    raise AssertionError(f"the Dagster webserver did not answer within {timeout:g} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to the stack's group, as Ctrl-C in `make dev`'s terminal; what is left of it shortly after (the
    webserver, the daemon and the code server take their time) is killed, found as the stack's descendants
    too, so no process outlives the test."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    process.wait()
    psutil.wait_procs(alive, timeout=10)
