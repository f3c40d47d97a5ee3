"""The code location as a Dagster component, through the `dg` command a user runs, in a copy of the project
whose streams file selects the test tables: refresh the state against the local warehouse, check and list
the definitions with the warehouse out of reach, and scaffold another instance."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.state import load_state, save_state
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.test_defs.conftest import (
    CUSTOMERS,
    EVENTS,
    READINGS,
    Project,
    source_tables,
    write_streams,
)
from zenskar_pipeline_tests.test_end_to_end.project import REPO, connection_files, new_dagster_home, user_env

DG = str(Path(sys.executable).with_name("dg"))
COMPONENT = "zenskar_pipeline.defs.component.StreamsComponent"
STATE_DIR = Path("zenskar_pipeline/components/.local_defs_state")
UNREACHABLE = {  # a warehouse that is down: nothing listens on port 9 of loopback
    "DATABRICKS_SERVER_HOSTNAME": "127.0.0.1",
    "DATABRICKS_PORT": "9",
    "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/down",
    "DATABRICKS_TOKEN": "dapi-not-used",
}


def copy_project(folder: Path) -> Path:
    """The project's dg layout (pyproject.toml, the package with its defs.yaml) and a streams file of the
    test tables; the copy's package comes first on PYTHONPATH, the project's environment is shared."""
    folder.mkdir()
    shutil.copy(REPO / "pyproject.toml", folder)
    shutil.copytree(
        REPO / "zenskar_pipeline",
        folder / "zenskar_pipeline",
        ignore=shutil.ignore_patterns("__pycache__", ".local_defs_state"),
    )
    (folder / ".venv").symlink_to(Path(sys.prefix))
    write_streams(folder)
    return folder


def dg(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DG, *args],
        cwd=project,
        env={**env, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def listed_asset_keys(project: Path, env: dict[str, str]) -> set[str]:
    listed = dg(project, "list", "defs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    return {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}


@pytest.fixture
def dg_project(warehouse: LocalWarehouse, tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, str]]:
    """The project copy, the environment of a user connected to the warehouse, and one whose warehouse is
    down (both with a Dagster home as `make dev` prepares it)."""
    source_tables(warehouse.root)
    project = copy_project(tmp_path / "project")
    home = new_dagster_home(tmp_path / "dagster_home")
    connection, _ = connection_files(warehouse)
    return project, user_env(connection, home), user_env(UNREACHABLE, home)


def test_refresh_defs_state_discovers_and_dg_loads_the_streams_from_state_alone(
    dg_project: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    project, connected, down = dg_project
    refreshed = dg(project, "utils", "refresh-defs-state", env=connected)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr

    # The component's state and the discovery cache that definitions.py reads hold the same discovery.
    (state_file,) = (project / STATE_DIR).glob("*/state")
    cache = project / ".zenskar-pipeline" / "discovery.json"
    assert load_state(state_file) == load_state(cache)
    assert set(load_state(state_file).tables) == {EVENTS, CUSTOMERS, READINGS}

    checked = dg(project, "check", "defs", env=down)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    keys = listed_asset_keys(project, down)
    for table in (EVENTS, CUSTOMERS, READINGS):
        assert f"databricks/{table.replace('.', '/')}" in keys
        assert f"zenskar/{table.replace('.', '/')}" in keys

    # definitions.py's path (workspace.yaml, the image, `sync`) builds the same assets from the cache.
    config = load_config(project / "streams.yaml", env={})
    direct = build_definitions(config, load_state(cache))
    assert {key.to_user_string() for key in direct.resolve_all_asset_keys()} == keys


def test_without_state_loading_names_the_command_to_run(
    dg_project: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    project, _, down = dg_project
    checked = dg(project, "check", "defs", env=down)
    assert checked.returncode != 0
    assert "run `dg utils refresh-defs-state`" in checked.stdout + checked.stderr


def test_a_scaffolded_instance_loads_from_the_discovery_cache(
    dg_project: tuple[Path, dict[str, str], dict[str, str]], project: Project
) -> None:
    copy, _, down = dg_project
    # The discovery `zenskar-pipeline discover` would have cached; the component has no state of its own.
    save_state(project.state, copy / ".zenskar-pipeline" / "discovery.json")
    shutil.rmtree(copy / "zenskar_pipeline" / "components" / "streams")  # one instance per streams file

    scaffolded = dg(copy, "scaffold", "defs", COMPONENT, "billing", env=down)
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    defs_yaml = (copy / "zenskar_pipeline" / "components" / "billing" / "defs.yaml").read_text()
    assert f"type: {COMPONENT}" in defs_yaml
    assert "streams_file: streams.yaml" in defs_yaml

    checked = dg(copy, "check", "defs", env=down)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"zenskar/{EVENTS.replace('.', '/')}" in listed_asset_keys(copy, down)
