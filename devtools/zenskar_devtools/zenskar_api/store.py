"""What the local Zenskar API has received, in SQLite under its state dir: the usage events' schemas, the
accepted events, and the idempotency keys with the answers they got. All of it outlives a restart.

One connection, shared by the server's threads behind a lock; an accepted request is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from zenskar_devtools.zenskar_api.schemas import Row

DATABASE_NAME = "zenskar-api.sqlite3"

_TABLES = """
CREATE TABLE IF NOT EXISTS usage_events (slug TEXT PRIMARY KEY, fields TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    slug TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    data TEXT NOT NULL,
    idempotency_key TEXT,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    organisation TEXT NOT NULL,
    key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status INTEGER NOT NULL,
    answer BLOB NOT NULL,
    first_used_at REAL NOT NULL,
    PRIMARY KEY (organisation, key)
);
"""


class KeyedAnswer(NamedTuple):
    """The answer a request with an Idempotency-Key got, kept to answer its repeats the same way."""

    organisation: str
    key: str
    body_sha256: str
    status: int
    answer: bytes
    first_used_at: float  # by the server's clock


class StoredEvent(NamedTuple):
    seq: int
    slug: str
    customer_id: str
    timestamp: str
    data: str  # JSON text, the values as received
    idempotency_key: str | None
    received_at: str


class UsageStore:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DATABASE_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        # WAL with synchronous=NORMAL: a commit costs no fsync, and a crash loses at most the last few
        # commits, which a local stand-in can afford for speed.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_TABLES)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- usage events (the schemas) ------------------------------------------------------------------------
    def schemas(self) -> dict[str, dict[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT slug, fields FROM usage_events ORDER BY slug").fetchall()
        return {slug: json.loads(fields) for slug, fields in rows}

    def define(self, slug: str, fields: Mapping[str, str]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO usage_events (slug, fields) VALUES (?, ?)", (slug, json.dumps(fields))
            )

    # -- events and idempotency keys -----------------------------------------------------------------------
    def store(self, slug: str, rows: Iterable[Row], received_at: str, keyed: KeyedAnswer | None) -> None:
        """The events of one accepted request and, when it had one, its key's answer: all or nothing."""
        key = keyed.key if keyed else None
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO events (slug, customer_id, timestamp, data, idempotency_key, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(slug, *row, key, received_at) for row in rows],
            )
            if keyed is not None:
                self._remember(keyed)

    def remember(self, keyed: KeyedAnswer) -> None:
        with self._lock, self._db:
            self._remember(keyed)

    def _remember(self, keyed: KeyedAnswer) -> None:
        # REPLACE: a key met again after it expired starts afresh.
        self._db.execute("INSERT OR REPLACE INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)", keyed)

    def keyed_answer(self, organisation: str, key: str, used_since: float) -> KeyedAnswer | None:
        """The answer remembered for `key` if it was first used at `used_since` or later."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM idempotency_keys WHERE organisation = ? AND key = ? AND first_used_at >= ?",
                (organisation, key, used_since),
            ).fetchone()
        return KeyedAnswer(*row) if row else None

    def events(self, slug: str | None = None) -> list[StoredEvent]:
        query = "SELECT * FROM events" + (" WHERE slug = ?" if slug is not None else "") + " ORDER BY seq"
        with self._lock:
            rows = self._db.execute(query, (slug,) if slug is not None else ()).fetchall()
        return [StoredEvent(*row) for row in rows]

    def forget_received(self) -> None:
        """Forget the events and the idempotency keys; the schemas stay."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM events")
            self._db.execute("DELETE FROM idempotency_keys")
