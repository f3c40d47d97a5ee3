"""A PostgreSQL server in a folder of its own, for `make prod-local` and the production-instance tests.

Debian's `postgresql` package provides the server (`initdb`, `pg_ctl`, `postgres`, under
/usr/lib/postgresql/<version>/bin); nothing else of the machine is touched: the cluster, its socket and its
log live in the folder given, it listens on loopback only, and the role `dagster` logs in with a password
made at `initdb` and kept in the folder. PostgreSQL refuses to run as root, so as root the cluster belongs to
the `postgres` account the package creates, and its commands run as that account.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from zenskar_devtools.ports import free_port

USER = "dagster"
DATABASE = "dagster"
OWNER_ACCOUNT = "postgres"  # the account Debian's package runs its servers as


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server programs are not installed, or the cluster could not start."""


@dataclass(frozen=True)
class PostgresInfo:
    host: str
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }


def server_bin() -> Path:
    """The folder of `initdb` and `pg_ctl`: on PATH, else the newest under /usr/lib/postgresql."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise PostgresUnavailable(
            "PostgreSQL's server programs are not installed: install Debian's `postgresql` package "
            "(`apt-get install postgresql`)"
        )
    return versions[-1].parent


PORT_ATTEMPTS = 5


class LocalPostgres:
    """The cluster in `folder`: made on the first `start`, kept (with its data) across later ones."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder.resolve()
        self.data = self.folder / "data"
        self.port = port
        self._bin = server_bin()
        self._as_owner = os.geteuid() == 0

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    def start(self) -> PostgresInfo:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        running = self._running_port()
        if running is not None:  # left running by an earlier start: use it as it is
            self.port = running
            return self._info(running)
        for attempt in range(PORT_ATTEMPTS):
            port = self.port or free_port()
            try:
                self._run(
                    "pg_ctl",
                    "start",
                    "--wait",
                    "--timeout=60",
                    f"--pgdata={self.data}",
                    f"--log={self.folder / 'postgres.log'}",
                    f"--options=-c listen_addresses=127.0.0.1 -c port={port} "
                    f"-c unix_socket_directories='{self.folder}'",
                )
            except PostgresUnavailable as error:
                # A free port another process took before the server bound it: another free port. A port
                # asked for is the caller's to change.
                taken = "Address already in use" in str(error)
                if self.port is not None or not taken or attempt == PORT_ATTEMPTS - 1:
                    raise
                continue
            self.port = port
            return self._info(port)
        raise AssertionError("unreachable")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop`; `mode="immediate"` stops as a crash would (recovery at the next start)."""
        if self._running_port() is not None:
            self._run("pg_ctl", "stop", "--wait", f"--mode={mode}", f"--pgdata={self.data}")

    def _info(self, port: int) -> PostgresInfo:
        return PostgresInfo("127.0.0.1", port, USER, self.password_file.read_text().strip(), DATABASE)

    def _running_port(self) -> int | None:
        """The port of this cluster's server when it runs (its postmaster.pid names a live process)."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            os.kill(int(lines[0]), 0)
            return int(lines[3])
        except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
            return None

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(18)
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        pwfile = self.folder / ".initdb-password"
        pwfile.write_text(password + "\n")
        try:
            if self._as_owner:
                reachable = ["runuser", "-u", OWNER_ACCOUNT, "--", "test", "-x", str(self.folder.parent)]
                if subprocess.run(reachable, cwd="/").returncode != 0:
                    raise PostgresUnavailable(
                        f"the {OWNER_ACCOUNT} account cannot reach {self.folder.parent}, so its cluster "
                        "cannot live there: give every folder on the way the x permission for others, or "
                        "use another folder"
                    )
                owner = pwd.getpwnam(OWNER_ACCOUNT)
                os.chown(self.folder, owner.pw_uid, owner.pw_gid)
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            self._run(
                "initdb",
                f"--pgdata={self.data}",
                f"--username={USER}",
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        # A commit returns before its WAL is flushed: Dagster writes an event per commit, and a crash loses at
        # most the last fraction of a second of them (never corrupts the cluster). Runs' processes each hold
        # connections: more than the default 100.
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\nsynchronous_commit = off\nmax_connections = 200\n")

    def create_database(self, info: PostgresInfo) -> None:
        """The instance's database, if missing (the role's `postgres` database is the way in)."""
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(
                host=info.host, port=info.port, user=info.user, password=info.password, dbname="postgres"
            )
        ) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (info.database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{info.database}"')

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if self._as_owner:
            command = ["runuser", "-u", OWNER_ACCOUNT, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if result.returncode != 0:
            log = self.folder / "postgres.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
                + (f"\n{tail}" if tail else "")
            )
