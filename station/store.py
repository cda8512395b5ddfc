"""The station's own tables, beside the archive's index: ``<archive>/station.sqlite``.

Kept apart from ``index.sqlite`` so the ingest path (dock/archive.py) is untouched. The
schema uses only types PostgreSQL has as well (TEXT, INTEGER, REAL; ids are text, no
AUTOINCREMENT), so the same statements can later run on the agency's PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0, locked_until REAL, created_at REAL NOT NULL,
    created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
    created_at REAL NOT NULL, last_seen REAL NOT NULL, remote TEXT);
CREATE TABLE IF NOT EXISTS filings (
    device TEXT NOT NULL, activity TEXT NOT NULL, filed_by TEXT NOT NULL,
    filed_at REAL NOT NULL, filed_session TEXT NOT NULL, confirmed_by TEXT,
    confirmed_at REAL, PRIMARY KEY (device, activity));
CREATE TABLE IF NOT EXISTS reviews (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, activity TEXT NOT NULL,
    work_record TEXT NOT NULL, state TEXT NOT NULL, reviewer TEXT NOT NULL,
    reviewed_at REAL NOT NULL, comment TEXT NOT NULL, reason_key TEXT, reason_note TEXT,
    body TEXT NOT NULL, signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS matters (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, activity TEXT NOT NULL, matter TEXT NOT NULL,
    previous TEXT, set_by TEXT NOT NULL, set_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, activity TEXT NOT NULL,
    placed_by TEXT NOT NULL, placed_at REAL NOT NULL, reason TEXT NOT NULL,
    released_by TEXT, released_at REAL);
CREATE TABLE IF NOT EXISTS long_term (
    device TEXT NOT NULL, activity TEXT NOT NULL, set_by TEXT NOT NULL, set_at REAL NOT NULL,
    reason TEXT NOT NULL, PRIMARY KEY (device, activity));
CREATE TABLE IF NOT EXISTS purge_requests (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, activity TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at REAL NOT NULL, state TEXT NOT NULL,
    confirmed_by TEXT, confirmed_at REAL);
CREATE TABLE IF NOT EXISTS purged (
    device TEXT NOT NULL, activity TEXT NOT NULL, purged_at REAL NOT NULL,
    requested_by TEXT NOT NULL, confirmed_by TEXT NOT NULL, files TEXT NOT NULL,
    PRIMARY KEY (device, activity));
CREATE TABLE IF NOT EXISTS retention (
    matter TEXT PRIMARY KEY, months INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS places (
    device TEXT NOT NULL, activity TEXT NOT NULL, lat REAL, lon REAL,
    PRIMARY KEY (device, activity));
"""

STORE_NAME = "station.sqlite"


def new_id() -> str:
    return uuid.uuid4().hex


class Store:
    """One connection shared by the server's threads, one statement group at a time."""

    def __init__(self, archive_root: Path) -> None:
        self.path = Path(archive_root) / STORE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._db.commit()
        self._lock = threading.RLock()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        with self._lock:
            try:
                yield self._db
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()
