"""Child processes that stop when, and only when, the command that started them says so.

Each child starts in a session of its own, so a Ctrl-C in the terminal reaches the starting command alone
(not the child's own children half-way through their shutdown), and a SIGTERM to that command, which never
reaches the children by itself, is not a way to leave them running. The command then stops each child's
whole process group (the child and all it started: `dagster dev`'s webserver, daemon, code server and run
workers), waits a bounded time, and kills what is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Child:
    """A started process, the leader of its own process group; `stop_signal` asks the group to stop."""

    name: str
    process: subprocess.Popen[bytes]
    stop_signal: signal.Signals = signal.SIGTERM

    @classmethod
    def start(
        cls,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> Child:
        process = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
        return cls(name, process, stop_signal)

    def running(self) -> bool:
        """The leader or any process of its group is alive (the leader's exit is reaped first)."""
        if self.process.poll() is None:
            return True
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a process of the group that is not ours to signal: still there
            return True
        return True

    def ask_to_stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.stop_signal)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def stop_children(children: Sequence[Child], timeout: float) -> list[str]:
    """Ask every running child's group to stop, all at once; wait up to `timeout` seconds in all for every
    process of those groups to end, then SIGKILL the groups still running. Returns the killed ones' names."""
    running = [child for child in children if child.running()]
    for child in running:
        child.ask_to_stop()
    deadline = time.monotonic() + timeout
    killed = []
    for child in running:
        while child.running() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        if child.running():
            child.kill()
            killed.append(child.name)
    return killed


class StopSignals:
    """While entered, SIGINT (Ctrl-C) and SIGTERM only note that a stop was asked for: the command then stops
    its children in order, instead of being interrupted wherever it was (and leaving them running)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> StopSignals:
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)

    def wait_for(self, child: Child) -> int | None:
        """`child`'s exit code once it exits, or None as soon as a stop is asked for."""
        while self.received is None:
            code = child.process.poll()
            if code is not None:
                return code
            time.sleep(POLL_SECONDS)
        return None
