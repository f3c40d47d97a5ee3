"""The code location's image, built without Docker: the Dockerfile's instructions carried out on this machine,
with the image's own folders under a temporary root, on a build context made as Docker makes it (the
repository through .dockerignore, plus a streams file and its discovery cache, as CI has them after
`zenskar-pipeline discover`). The environment that results must load the definitions with no Databricks
settings, serve them as the code server the image starts, and hold none of the dev tools.

Adapted from the Dockerfile, and nothing else: paths (the image's folders under the temporary root); the
base image's `python` is this Python (the FROM tag must name its version); `pip install` skips compiling
bytecode (how fast modules load, not what is installed) and reads this machine's package-index settings;
`useradd` and `chown` are skipped (no users are made here); both stages share the root, so that the virtual
environment keeps its paths when the last stage copies it.

The build installs the deploy lock from the wheels `make install` downloaded into the virtual environment's
wheelhouse (from the package index when there is none, two to four minutes more): about a minute, once for
the module.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_devtools.ports import free_port
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.state import save_state
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.dockerfile import (
    REPO,
    Instruction,
    Stage,
    assignments,
    exec_form,
    expand,
    in_context,
    read_dockerfile,
    read_dockerignore,
)
from zenskar_pipeline_tests.test_defs.conftest import CUSTOMERS, EVENTS, READINGS, STREAMS, source_tables

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # the base image's must be this one
SKIPPED_PROGRAMS = {"useradd", "chown"}
# The base image's environment; its PATH without /usr/local/bin, where its Python is (here: this one).
BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
# This machine's package-index and proxy settings, which pip needs here as the build needs its own there.
PASSED_THROUGH = re.compile(r"PIP_\w+|(?i:https?_proxy|no_proxy)|SSL_CERT_\w+")
# The distributions `make install` downloaded (requirements.lock, which pins the deploy lock's versions).
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"
FORBIDDEN_DISTRIBUTIONS = {"sqlglot", "zenskar-pipeline-devtools", "pytest", "ruff", "mypy", "moto"}


@dataclass(frozen=True)
class Image:
    root: Path  # the image's / on this machine
    env: Mapping[str, str]  # the last stage's environment, its paths under root
    workdir: Path
    cmd: list[str]
    user: str

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.workdir, env=dict(self.env), capture_output=True, text=True, timeout=timeout
        )


class Build:
    """Carries out the Dockerfile's stages under `root`, COPY reading from `context`."""

    def __init__(self, context: Path, root: Path) -> None:
        self.context = context
        self.root = root
        self.python = Path(sys.base_prefix) / "bin" / f"python{PYTHON}"
        self.stages = read_dockerfile()
        self.image_dirs = self._image_dirs()

    def _image_dirs(self) -> set[str]:
        """The top folders the Dockerfile makes (WORKDIR, COPY destinations): what moves under root."""
        paths = [i.arguments for s in self.stages for i in s.all("WORKDIR")]
        paths += [shlex.split(i.arguments)[-1] for s in self.stages for i in s.all("COPY")]
        return {path.split("/")[1] for path in paths if path.startswith("/")}

    def moved(self, text: str) -> str:
        """`text` with the image's absolute paths under root."""
        names = "|".join(sorted(self.image_dirs))
        return re.sub(rf"(?<![\w./$-])/(?=(?:{names})\b)", f"{self.root}/", text)

    def on_host(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def carry_out(self) -> Image:
        built = [self._stage(stage) for stage in self.stages]
        env, workdir, user = built[-1]
        env = {key: self.moved(value) for key, value in env.items()} | {"HOME": str(self.root / "home")}
        return Image(self.root, env, self.on_host(workdir), exec_form(self.stages[-1].all("CMD")[-1]), user)

    def _stage(self, stage: Stage) -> tuple[dict[str, str], str, str]:
        """Carries out one stage; returns its environment (ENV over the base image's), WORKDIR and USER."""
        assert stage.base.startswith("python:"), stage.base
        assert stage.base.removeprefix("python:").split("-")[0] == PYTHON, f"{stage.base}: not {PYTHON}"
        env = dict(BASE_ENV)
        arguments: dict[str, str] = {}  # ARG values: seen by RUN, not part of the image's environment
        workdir, user = "/", "root"
        for instruction in stage.instructions:
            keyword = instruction.keyword
            variables = arguments | env
            if keyword == "ARG":
                arguments.update(assignments(instruction, variables))
            elif keyword == "ENV":
                env.update(assignments(instruction, variables))
            elif keyword == "WORKDIR":
                workdir = posixpath.join(workdir, expand(instruction.arguments, variables))
                self.on_host(workdir).mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                self._copy(instruction, variables, workdir)
            elif keyword == "RUN":
                self._run(instruction, variables, workdir)
            elif keyword == "USER":
                user = instruction.arguments
            elif keyword not in ("LABEL", "EXPOSE", "CMD"):
                raise AssertionError(f"Dockerfile:{instruction.line}: this test does not carry out {keyword}")
        return env, workdir, user

    def _copy(self, instruction: Instruction, variables: Mapping[str, str], workdir: str) -> None:
        words = shlex.split(expand(instruction.arguments, variables))
        stage = words.pop(0).removeprefix("--from=") if words[0].startswith("--from=") else None
        *sources, destination = words
        target = self.on_host(posixpath.join(workdir, destination))
        for source in sources:
            origin = self.on_host(source) if stage else self.context / source
            assert origin.exists(), f"Dockerfile:{instruction.line}: {source} is not in the build context"
            if origin == target:  # the stages share the root: the virtual environment is already there
                continue
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                place = target / origin.name if destination.endswith("/") else target
                place.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin, place)

    def _run(self, instruction: Instruction, variables: Mapping[str, str], workdir: str) -> None:
        steps = []
        for step in re.split(r"\s*&&\s*", self.moved(instruction.arguments)):
            program = step.split()[0]
            if program in SKIPPED_PROGRAMS:
                continue
            if program == "python":
                step = f"{self.python}{step.removeprefix('python')}"
            if re.search(r"\bpip install\b", step):
                step += " --no-compile"
            steps.append(step)
        env = {key: self.moved(value) for key, value in variables.items()}
        env |= {key: value for key, value in os.environ.items() if PASSED_THROUGH.fullmatch(key)}
        if any(WHEELHOUSE.glob("*")):  # what `make install` downloaded: the deploy lock's versions are its
            env |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}
        env["HOME"] = str(self.root / "home")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", " && ".join(steps)],
            cwd=self.on_host(workdir),
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"Dockerfile:{instruction.line} failed:\n{done.stdout}\n{done.stderr}"


def context_files() -> list[str]:
    """The repository's files that .dockerignore lets into the build context."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    patterns = read_dockerignore()
    return sorted(name for name in listed if name and in_context(name, patterns))


@pytest.fixture(scope="module")
def image(warehouse: LocalWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Image:
    context = tmp_path_factory.mktemp("context")
    for name in context_files():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, context / name)
    # CI's streams file and the cache `zenskar-pipeline discover` writes beside it, from a real discovery.
    source_tables(warehouse.root)
    streams = STREAMS.format(uri="s3://zenskar-copies", events=EVENTS, customers=CUSTOMERS, readings=READINGS)
    (context / "streams.yaml").write_text(textwrap.dedent(streams))
    config = load_config(context / "streams.yaml", env={})
    with databricks_resource(warehouse).session() as session:
        save_state(discover_tables(session, config), config.state_path)
    return Build(context, tmp_path_factory.mktemp("image")).carry_out()


PROBE = """
import importlib.metadata, importlib.util, json
from zenskar_pipeline.definitions import defs
import zenskar_pipeline
print(json.dumps({
    "assets": sorted("/".join(key.path) for a in defs.assets or () for key in getattr(a, "keys", ())),
    "product": zenskar_pipeline.__file__,
    "distributions": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
    "modules": {m: importlib.util.find_spec(m) is not None for m in %r},
}))
"""
MODULES = ["sqlglot", "zenskar_devtools", "dagster_k8s", "dagster_postgres", "psycopg2"]


@pytest.fixture(scope="module")
def probed(image: Image) -> dict[str, Any]:
    done = image.run("python", "-c", PROBE % MODULES)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_the_image_loads_the_definitions_from_its_cache_without_any_databricks_setting(
    image: Image, probed: dict[str, Any]
) -> None:
    assert not any(name.startswith("DATABRICKS_") for name in image.env)
    copies = [f"zenskar/{name.replace('.', '/')}" for name in (EVENTS, CUSTOMERS, READINGS)]
    assert set(copies) <= set(probed["assets"])
    # installed in the image's environment, not read from a source tree
    assert str(probed["product"]).startswith(str(image.root / "opt"))


def test_the_image_holds_neither_the_dev_tools_nor_sqlglot(probed: dict[str, Any]) -> None:
    modules = probed["modules"]
    assert modules == {**dict.fromkeys(MODULES, True), "sqlglot": False, "zenskar_devtools": False}
    assert not FORBIDDEN_DISTRIBUTIONS & set(probed["distributions"])


def on_loopback(cmd: list[str], port: int) -> list[str]:
    """`cmd` serving on 127.0.0.1:`port` instead of its own host and port."""
    wanted = {"--host": "127.0.0.1", "--port": str(port)}
    return [wanted.get(before, word) for before, word in zip(["", *cmd], cmd, strict=False)]


@pytest.fixture
def code_server(image: Image) -> Iterator[int]:
    """The image's command, on loopback and a free port; its port."""
    port = free_port()
    server = subprocess.Popen(
        on_loopback(image.cmd, port), cwd=image.workdir, env=dict(image.env), stdout=subprocess.DEVNULL
    )
    try:
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_image_command_serves_the_code_location_to_health_checks(image: Image, code_server: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        check = image.run("dagster", "api", "grpc-health-check", "--port", str(code_server), timeout=30)
        if check.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_image_runs_as_a_numeric_non_root_user(image: Image) -> None:
    assert image.user.isdigit() and int(image.user) != 0, image.user


def test_the_build_context_holds_what_the_image_copies_and_no_more() -> None:
    top = {name.split("/")[0] for name in context_files()}
    assert top == {
        "requirements-deploy.lock",
        "pyproject.toml",
        "README.md",
        "zenskar_pipeline",
        "streams.yaml",
    }
    patterns = read_dockerignore()
    kept_out = [
        ".venv/bin/python",
        "devtools/zenskar_devtools/local_warehouse/server.py",
        ".dagster_home/dagster.yaml",
        "data/destination/main/billing/usage_events/_delta_log/0.json",
        "warehouse/connection.env",
        ".env",
        ".zenskar-pipeline/other.json",
        "zenskar_pipeline/__pycache__/cli.cpython-311.pyc",
        ".git/config",
    ]
    assert [path for path in kept_out if in_context(path, patterns)] == []
    assert in_context(".zenskar-pipeline/discovery.json", patterns)
