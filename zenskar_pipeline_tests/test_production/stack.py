"""What the production-instance tests share: a project (streams file, discovery cache) against the session's
local warehouse, the `make prod-local` stack on a PostgreSQL of its own, and ways to launch and read runs as
the webserver, the `sync` command and the instance see them."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES, DagsterRunStatus, RunsFilter

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_devtools.ports import free_port
from zenskar_devtools.prod_local import LOCATION, ProdStack
from zenskar_pipeline.defs import STREAM_TAG
from zenskar_pipeline.defs.sensor import SENSOR_NAME
from zenskar_pipeline_tests.test_end_to_end.project import REPO, user_env

COMMAND = str(Path(sys.executable).with_name("zenskar-pipeline"))
REPOSITORY = "__repository__"


@dataclass
class Project:
    folder: Path
    env: dict[str, str]

    @property
    def copies(self) -> Path:
        return self.folder / "copies"


def make_project(folder: Path, warehouse: LocalWarehouse, streams_yaml: str, **extra_env: str) -> Project:
    """A streams file under `folder` (its copies under `folder/copies`), discovered against `warehouse`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "streams.yaml").write_text(streams_yaml.replace("{copies}", str(folder / "copies")))
    env = user_env(warehouse.info.env())
    env.update(ZENSKAR_PIPELINE_CONFIG=str(folder / "streams.yaml"), **extra_env)
    subprocess.run([COMMAND, "discover"], env=env, cwd=folder, check=True, capture_output=True)
    return Project(folder, env)


@contextlib.contextmanager
def prod_stack(project: Project, *, daemon: bool = True, webserver: bool = True) -> Iterator[ProdStack]:
    """The stack `make prod-local` starts, in a folder of its own (PostgreSQL's account must reach it)."""
    folder = Path(tempfile.mkdtemp(prefix="zenskar-prod-"))
    folder.chmod(0o755)
    stack = ProdStack(
        folder,
        project.env,
        instance_file=REPO / "deploy" / "dagster.yaml",
        webserver_port=free_port() if webserver else None,
        daemon=daemon,
        log_folder=folder / "logs",
    )
    try:
        yield stack.start()
    except BaseException:
        stack.stop()
        print(f"the stack's logs are kept under {folder / 'logs'}")
        raise
    stack.stop()
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def instance_of(stack: ProdStack) -> Iterator[dg.DagsterInstance]:
    """The stack's instance, as this process reads it."""
    with stack.instance() as instance:
        yield instance


def graphql(stack: ProdStack, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    """A query to the stack's webserver, as the UI sends it."""
    assert stack.webserver_port is not None
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.webserver_port}/graphql",
        data=json.dumps({"query": query, "variables": dict(variables)}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    assert "errors" not in body, body
    return body["data"]


LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def launch_ui_run(stack: ProdStack, asset_path: list[str], partition: str | None = None) -> str:
    """What the UI's "Materialize" sends for one asset (and one partition)."""
    tags = [{"key": "dagster/partition", "value": partition}] if partition else []
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": asset_path}],
        },
        "mode": "default",
        "executionMetadata": {"tags": tags},
    }
    result = graphql(stack, LAUNCH_RUN, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id: str = result["run"]["runId"]
    return run_id


SENSOR = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { jobOriginId sensorState { selectorId status } }
  }
}
"""
STOP_SENSOR = """
mutation($origin: String!, $selector: String!) {
  stopSensor(jobOriginId: $origin, jobSelectorId: $selector) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
  }
}
"""


def stop_sensor(stack: ProdStack, name: str = SENSOR_NAME) -> None:
    """What the UI's sensor toggle sends to turn a sensor off."""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}
    sensor = graphql(stack, SENSOR, {"selector": selector})["sensorOrError"]
    variables = {"origin": sensor["jobOriginId"], "selector": sensor["sensorState"]["selectorId"]}
    stopped = graphql(stack, STOP_SENSOR, variables)["stopSensor"]
    assert stopped["instigationState"]["status"] == "STOPPED", stopped


SCHEDULES = """
query($repository: RepositorySelector!) {
  schedulesOrError(repositorySelector: $repository) {
    ... on Schedules { results { name scheduleState { id status } } }
  }
}
"""
STOP_SCHEDULE = """
mutation($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
  }
}
"""


def stop_schedules(stack: ProdStack) -> list[str]:
    """What the UI's schedule toggles send to turn every schedule off; the names of those stopped."""
    repository = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    schedules = graphql(stack, SCHEDULES, {"repository": repository})["schedulesOrError"]["results"]
    for schedule in schedules:
        stopped = graphql(stack, STOP_SCHEDULE, {"id": schedule["scheduleState"]["id"]})[
            "stopRunningSchedule"
        ]
        assert stopped["scheduleState"]["status"] == "STOPPED", stopped
    return [schedule["name"] for schedule in schedules]


TERMINATE_RUN = """
mutation($runId: String!) {
  terminateRun(runId: $runId) { __typename ... on PythonError { message } }
}
"""


def terminate_run(stack: ProdStack, run_id: str) -> None:
    """What the UI's "Terminate" button on a run's page sends."""
    result = graphql(stack, TERMINATE_RUN, {"runId": run_id})["terminateRun"]
    assert result["__typename"] == "TerminateRunSuccess", result


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
  }
}
"""


def launch_ui_backfill(stack: ProdStack, asset_path: list[str], partitions: list[str]) -> str:
    """What the UI's "Materialize" > "Launch backfill" sends for one asset and some of its partitions."""
    params = {"partitionNames": partitions, "assetSelection": [{"path": asset_path}]}
    result = graphql(stack, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id: str = result["backfillId"]
    return backfill_id


def stream_runs(instance: dg.DagsterInstance, stream: str) -> list[dg.DagsterRun]:
    records = instance.get_run_records(RunsFilter(tags={STREAM_TAG: stream}), ascending=True)
    return [record.dagster_run for record in records]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def all_runs_ended(instance: dg.DagsterInstance) -> bool:
    """No run queued or in progress, and none not started yet."""
    pending = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    ]
    return not instance.get_run_records(RunsFilter(statuses=pending), limit=1)


def ended(run: dg.DagsterRun) -> bool:
    return run.status in FINISHED_STATUSES
