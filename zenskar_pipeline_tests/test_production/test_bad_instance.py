"""A production instance that cannot be reached: `zenskar-pipeline sync` fails at once, with one line that
names the variables to check and never the password, before it reads or writes anything."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zenskar_devtools.postgres import LocalPostgres, PostgresInfo
from zenskar_pipeline_tests.test_end_to_end.project import REPO, run_cli, user_env

STREAMS = """\
destination:
  uri: {copies}
streams:
  - table: main.billing.customers
    sync_mode: full_refresh
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresInfo]:
    folder = Path(tempfile.mkdtemp(prefix="zenskar-pg-"))
    folder.chmod(0o755)
    server = LocalPostgres(folder / "postgres")
    info = server.start()
    server.create_database(info)
    yield info
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    ("wrong", "reason"),
    [
        ({"DAGSTER_PG_PASSWORD": "not-the-password-4711"}, "password authentication failed"),
        ({"DAGSTER_PG_PORT": "1"}, "Connection refused"),
        ({"DAGSTER_PG_HOST": "no-such-host.invalid"}, "could not translate host name"),
        ({"DAGSTER_PG_DB": "no_such_database"}, 'database "no_such_database" does not exist'),
    ],
)
def test_a_wrong_postgres_setting_fails_in_one_line_naming_the_variables(
    postgres: PostgresInfo, tmp_path: Path, wrong: dict[str, str], reason: str
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "streams.yaml").write_text(STREAMS.format(copies=tmp_path / "copies"))
    env = user_env({}, dagster_home=home)
    env.update(postgres.env(), **wrong)
    env.update(
        DATABRICKS_SERVER_HOSTNAME="unused.invalid", DATABRICKS_HTTP_PATH="/x", DATABRICKS_TOKEN="t0ken"
    )

    started = time.monotonic()
    done = run_cli("sync", env=env, cwd=tmp_path, timeout=120)
    seconds = time.monotonic() - started

    assert done.returncode == 1
    (line,) = done.error_lines
    assert reason in line
    assert (
        "check DAGSTER_PG_HOST, DAGSTER_PG_PORT, DAGSTER_PG_USERNAME, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB"
        in line
    )
    assert postgres.password not in done.stdout + done.stderr
    assert wrong.get("DAGSTER_PG_PASSWORD", postgres.password) not in done.stdout + done.stderr
    # nothing read or written: no discovery cache, no copy
    assert not (tmp_path / ".zenskar-pipeline").exists()
    assert not (tmp_path / "copies").exists()
    print(f"{next(iter(wrong))}: failed after {seconds:.1f} s: {line}")
