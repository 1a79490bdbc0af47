"""SQLite metadata of the registry: schema, WAL mode, and short explicit transactions.

One connection per operation keeps the registry safe to share between threads and
processes; writers take ``BEGIN IMMEDIATE`` so two of them never interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from shopserve.errors import ConflictError, IntegrityError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    next_version INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL REFERENCES models(name),
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    author TEXT NOT NULL,
    data_hash TEXT,
    parent TEXT,
    origin TEXT,
    signature TEXT,
    optimization TEXT,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS files (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (name, version, file),
    FOREIGN KEY (name, version) REFERENCES versions(name, version) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS files_by_sha ON files(sha256);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES versions(name, version)
);
CREATE TABLE IF NOT EXISTS alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    action TEXT NOT NULL,          -- 'promote' (pushes a holder) or 'rollback' (audit only)
    undone INTEGER NOT NULL DEFAULT 0,
    at TEXT NOT NULL,
    author TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alias_history_by_alias ON alias_history(name, alias, id);
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), with a busy timeout."""
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise IntegrityError(f"cannot open the registry database {path}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise IntegrityError(f"{path} is not a usable registry database: {exc}") from exc
    return conn


@contextmanager
def transaction(path: Path, write: bool) -> Iterator[sqlite3.Connection]:
    """A read snapshot (``BEGIN``) or a write lock (``BEGIN IMMEDIATE``), committed on success."""
    with closing(connect(path)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise ConflictError(f"registry database {path} is busy: {exc}") from exc
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise ConflictError(f"registry database {path} is busy: {exc}") from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise IntegrityError(f"registry database {path}: {exc}") from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise ConflictError(f"could not commit to the registry {path}: {exc}") from exc


def initialize(path: Path) -> None:
    """Create the schema once and switch the database to WAL (both idempotent)."""
    with closing(connect(path)) as conn:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as exc:
            raise IntegrityError(f"{path} is not a usable registry database: {exc}") from exc
    with transaction(path, write=True) as conn:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise ConflictError(
                f"registry {path} has schema {found}; this shopserve knows up to {SCHEMA_VERSION}"
            )
        if found < SCHEMA_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def integrity_problems(path: Path) -> list[str]:
    """What SQLite's own ``integrity_check`` and ``foreign_key_check`` report."""
    with closing(connect(path)) as conn:
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            problems = [f"database: {r}" for r in rows if r != "ok"]
            for row in conn.execute("PRAGMA foreign_key_check"):
                problems.append(f"database: row {row[1]} of {row[0]} points at a missing {row[2]}")
        except sqlite3.DatabaseError as exc:
            return [f"database: {exc}"]
        return problems
