"""deploy/helm/values.yaml, for Dagster's Helm chart, checked here without Helm, a cluster or the chart itself
(deploy/helm/check_values.py checks it against the chart's schema, given the chart): the instance the chart
makes from these values is deploy/dagster.yaml's, as Dagster reads both; the run launcher's settings and the
Kubernetes objects are ones dagster-k8s and the Kubernetes client accept; the code location is the image the
Dockerfile builds; no secret is written in the values.

`chart_instance` follows the chart's configmap-instance template for the settings these values give.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from zenskar_pipeline.destinations.resource import SECRET_FIELDS, STORAGE_VARIABLES
from zenskar_pipeline_tests.dockerfile import REPO, assignments, exec_form, read_dockerfile

VALUES = REPO / "deploy" / "helm" / "values.yaml"
INSTANCE = REPO / "deploy" / "dagster.yaml"
DEPLOYING = REPO / "docs" / "deploying.md"
SECRET_VARIABLES = {
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "DAGSTER_PG_PASSWORD",
    *(STORAGE_VARIABLES[name] for name in SECRET_FIELDS),
}


# The chart's storages: one PostgreSQL database for runs, event logs and schedules.
POSTGRES_STORAGES: dict[str, Any] = {
    "run_storage": PostgresRunStorage,
    "event_log_storage": PostgresEventLogStorage,
    "schedule_storage": PostgresScheduleStorage,
}


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    return loaded


def launcher(given: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = given["runLauncher"]["config"]["k8sRunLauncher"]
    return config


def code_location(given: Mapping[str, Any]) -> dict[str, Any]:
    (deployment,) = given["dagster-user-deployments"]["deployments"]
    assert isinstance(deployment, dict)
    return deployment


def chart_instance(given: Mapping[str, Any]) -> dict[str, Any]:
    """The dagster.yaml the chart renders from `given`, for the settings the values give (the release's
    names stand in where the chart would put them)."""
    pg = given["postgresql"]
    database = {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"],
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
            "params": pg.get("postgresqlParams", {}),
            **({"scheme": pg["postgresqlScheme"]} if pg.get("postgresqlScheme") else {}),
        }
    }
    daemon = given["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    concurrency = given["concurrency"]
    assert concurrency["enabled"] and not queued.get("tagConcurrencyLimits")
    monitoring, retries = daemon["runMonitoring"], daemon["runRetries"]
    run_launcher = launcher(given)
    return {
        **{
            key: {"module": storage.__module__, "class": storage.__name__, "config": database}
            for key, storage in POSTGRES_STORAGES.items()
        },
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "dequeue_use_threads": queued["dequeueUseThreads"],
                "dequeue_num_workers": queued["dequeueNumWorkers"],
            },
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "load_incluster_config": run_launcher["loadInclusterConfig"],
                "job_namespace": "zenskar",
                "image_pull_policy": run_launcher["imagePullPolicy"],
                "service_account_name": "dagster",
                "dagster_home": "/opt/dagster/dagster_home",
                "instance_config_map": "dagster-instance",
                "postgres_password_secret": given["global"]["postgresqlSecretName"],
                "env_secrets": [secret["name"] for secret in run_launcher["envSecrets"]],
                "volume_mounts": run_launcher["volumeMounts"],
                "volumes": run_launcher["volumes"],
                "resources": run_launcher["resources"],
                "run_k8s_config": {
                    "container_config": run_launcher["runK8sConfig"]["containerConfig"],
                    "pod_spec_config": run_launcher["runK8sConfig"]["podSpecConfig"],
                },
            },
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "max_runtime_seconds": monitoring["maxRuntimeSeconds"],
            "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
        },
        "run_retries": {
            "enabled": retries["enabled"],
            "max_retries": retries["maxRetries"],
            "retry_on_asset_or_op_failure": retries["retryOnAssetOrOpFailure"],
        },
        "telemetry": {"enabled": given["telemetry"]["enabled"]},
        "concurrency": {
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
            "runs": {
                "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],
            },
        },
    }


def _read_instance(folder: Path, settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """`settings` as Dagster reads a dagster.yaml (its schema checked)."""
    folder.mkdir(exist_ok=True)
    (folder / "dagster.yaml").write_text(yaml.safe_dump(dict(settings)))
    read, _ = dagster_instance_config(str(folder))
    return read


def test_the_instance_the_chart_makes_from_the_values_is_deploy_dagster_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "read-by-the-storages-settings-check")
    production = _read_instance(tmp_path / "production", yaml.safe_load(INSTANCE.read_text()))
    chart = _read_instance(tmp_path / "chart", chart_instance(values()))
    for section in ("concurrency", "run_retries", "telemetry"):
        assert chart[section] == production[section], section
    # Dagster's default for the one setting the chart always writes
    assert chart["run_monitoring"] == {**production["run_monitoring"], "max_resume_run_attempts": 0}
    assert chart["run_coordinator"]["class"] == production["run_coordinator"]["class"]
    # the same database through the same driver; the password from the same variable
    production_db = production["storage"]["postgres"]["postgres_db"]
    for key, storage in POSTGRES_STORAGES.items():
        chart_db = chart[key]["config"]["postgres_db"]
        assert chart_db["scheme"] == production_db["scheme"] == "postgresql+psycopg2"
        assert chart_db["password"] == production_db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
        assert chart_db["params"] == production_db["params"]
        processed = process_config(storage.config_type(), chart[key]["config"])
        assert processed.success, [error.message for error in processed.errors or []]


def test_dagster_k8s_accepts_the_run_launcher_the_chart_makes_from_the_values() -> None:
    config = chart_instance(values())["run_launcher"]["config"]
    processed = process_config(K8sRunLauncher.config_type(), config)
    assert processed.success, [error.message for error in processed.errors or []]


def _kubernetes(model: Any, data: Mapping[str, Any]) -> Any:
    """`data` as a Kubernetes client model, as dagster-k8s reads the objects in its settings: unknown keys
    and values of the wrong type raise."""
    return k8s_model_from_dict(model, k8s_snake_case_dict(model, data))


def test_the_kubernetes_objects_in_the_values_are_valid() -> None:
    given = values()
    deployment, run_launcher = code_location(given), launcher(given)
    _kubernetes(k8s.V1PodSecurityContext, deployment["podSecurityContext"])
    _kubernetes(k8s.V1SecurityContext, deployment["securityContext"])
    _kubernetes(k8s.V1ResourceRequirements, deployment["resources"])
    for variable in deployment["env"]:
        _kubernetes(k8s.V1EnvVar, variable)
    _kubernetes(k8s.V1ResourceRequirements, run_launcher["resources"])
    for volume in run_launcher["volumes"]:
        _kubernetes(k8s.V1Volume, volume)
    for mount in run_launcher["volumeMounts"]:
        _kubernetes(k8s.V1VolumeMount, mount)
    run_config = run_launcher["runK8sConfig"]
    _kubernetes(k8s.V1PodSpec, {**run_config["podSpecConfig"], "containers": [{"name": "run"}]})
    _kubernetes(k8s.V1Container, {"name": "run", **run_config["containerConfig"]})


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_the_code_location_is_the_image_the_dockerfile_builds_and_runs_share_its_secret() -> None:
    final = read_dockerfile()[-1]
    cmd = exec_form(final.all("CMD")[-1])
    (label,) = final.all("LABEL")
    given = values()
    deployment, run_launcher = code_location(given), launcher(given)
    assert (
        deployment["image"]["repository"].rsplit("/", 1)[-1]
        == assignments(label, {})["org.opencontainers.image.title"]
    )
    assert deployment["port"] == int(_option(cmd, "--port")) == int(final.all("EXPOSE")[-1].arguments)
    args = deployment["dagsterApiGrpcArgs"]
    assert _option(args, "--module-name") == _option(cmd, "--module-name") == "zenskar_pipeline.definitions"
    user = int(final.all("USER")[-1].arguments)
    assert deployment["podSecurityContext"]["runAsUser"] == user
    assert run_launcher["runK8sConfig"]["podSpecConfig"]["securityContext"]["runAsUser"] == user
    # a run pod loads the definitions again: with the code server's credentials, from the same Secret
    assert run_launcher["envSecrets"] == deployment["envSecrets"]


def _walk(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}[{i}]")


def test_no_secret_is_written_in_the_values() -> None:
    given = values()
    assert "postgresqlPassword" not in given["postgresql"]
    written = [
        where
        for where, node in _walk(given)
        if (isinstance(node, dict) and node.get("name") in SECRET_VARIABLES and "value" in node)
        or (isinstance(node, str) and node.split("=", 1)[0] in SECRET_VARIABLES and "=" in node)
    ]
    assert written == []


def test_the_chart_version_is_the_dagster_release_the_image_pins() -> None:
    pinned = re.search(r"^dagster==(\S+)$", (REPO / "requirements-deploy.lock").read_text(), re.M)
    assert pinned is not None
    for text in (VALUES.read_text(), DEPLOYING.read_text()):
        assert set(re.findall(r"--version (\S+)", text)) == {pinned.group(1)}


# -- check_values.py, on a chart made here ------------------------------------------------------------------


def _check_values() -> Any:
    spec = importlib.util.spec_from_file_location(
        "check_values", REPO / "deploy" / "helm" / "check_values.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCHEMA = """{"type": "object", "required": ["port"], "additionalProperties": false,
 "properties": {"port": {"type": "integer"}, "sub": {"type": "object"}, "global": {"type": "object"}}}"""
SUB_SCHEMA = """{"type": "object", "properties": {"name": {"type": "string"}, "global": {"type": "object"}},
 "additionalProperties": false}"""


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    folder = tmp_path / "chart"
    (folder / "charts" / "sub").mkdir(parents=True)
    (folder / "values.yaml").write_text("port: 80\nsub: {}\n")
    (folder / "values.schema.json").write_text(SCHEMA)
    (folder / "charts" / "sub" / "values.yaml").write_text("name: x\n")
    (folder / "charts" / "sub" / "values.schema.json").write_text(SUB_SCHEMA)
    return folder


@pytest.mark.parametrize(
    ("given", "problems"),
    [
        ("port: 4000\nsub: {name: code}\n", []),
        ("port: '4000'\n", ["chart: port: '4000' is not of type 'integer'"]),
        ("port: null\n", ["chart: (top level): 'port' is a required property"]),  # a null removes the default
        ("sub: {nme: code}\n", ["chart/charts/sub: (top level): Additional properties are not allowed"]),
    ],
    ids=["valid", "wrong type", "default removed", "subchart key"],
)
def test_check_values_reports_what_the_chart_schema_refuses_and_where(
    chart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str, problems: list[str]
) -> None:
    (tmp_path / "values.yaml").write_text(given)
    status = _check_values().main([str(chart), str(tmp_path / "values.yaml")])
    lines = capsys.readouterr().out.splitlines()
    assert status == (1 if problems else 0)
    for problem, line in zip(problems, lines, strict=False):
        assert line.startswith(problem), line
    assert len(lines) == len(problems) + 1  # and a closing line
