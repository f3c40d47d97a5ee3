"""The CLI's plugin seam: commands that other distributions register under `zenskar_pipeline.commands`.

Each test installs a small distribution of its own (a dist-info folder and a module on PYTHONPATH, which is
all `importlib.metadata` reads) and runs the command in a separate process, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "zenskar_pipeline.cli"]

PLUGIN_MODULE = '''
import click


@click.command()
def hello() -> None:
    """Say hello from a plugin."""
    click.echo("hello from a plugin")


not_a_command = 42
'''

ENTRY_POINTS = """
[zenskar_pipeline.commands]
hello = test_plugin_commands:hello
broken = test_plugin_commands_missing:command
number = test_plugin_commands:not_a_command
sync = test_plugin_commands:hello
"""


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which the distribution `zenskar-test-plugins` registers one working command and
    three bad ones: a module that does not exist, an object that is not a command, a built-in's name."""
    site = tmp_path / "site"
    dist_info = site / "zenskar_test_plugins-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: zenskar-test-plugins\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "test_plugin_commands.py").write_text(PLUGIN_MODULE)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, check=False)


def test_help_lists_a_plugins_command_and_says_in_one_line_each_why_others_are_left_out(
    plugin_env: dict[str, str],
) -> None:
    shown = _run(["--help"], plugin_env)
    assert shown.returncode == 0, shown.stderr
    listed = {line.split()[0] for line in shown.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert {"discover", "sync", "reset", "hello"} <= listed
    assert "broken" not in listed and "number" not in listed
    assert "Refresh the discovered tables" in shown.stdout  # `sync` is still the built-in one
    warnings = shown.stderr.splitlines()
    assert len(warnings) == 3, shown.stderr
    by_name = {
        name: line for line in warnings for name in ("broken", "number", "sync") if f"'{name}'" in line
    }
    assert set(by_name) == {"broken", "number", "sync"}
    assert all("zenskar-test-plugins" in line for line in warnings)
    assert "ModuleNotFoundError" in by_name["broken"]
    assert "not a click command" in by_name["number"]
    assert "exists already" in by_name["sync"]


def test_a_plugins_command_runs_like_a_built_in_one(plugin_env: dict[str, str]) -> None:
    hello = _run(["hello"], plugin_env)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == "hello from a plugin\n"


def test_built_in_commands_run_without_loading_any_plugin(plugin_env: dict[str, str]) -> None:
    reset = _run(["reset", "--help"], plugin_env)
    assert reset.returncode == 0
    assert "Delete a stream's Delta copy" in reset.stdout
    assert reset.stderr == ""  # no plugin was loaded, so none was found wanting


def test_a_broken_plugin_does_not_stop_the_product_from_answering(plugin_env: dict[str, str]) -> None:
    broken = _run(["broken"], plugin_env)
    assert broken.returncode == 2  # click's usage error: there is no such command
    assert "No such command 'broken'" in broken.stderr
    assert "left out plugin command 'broken'" in broken.stderr
