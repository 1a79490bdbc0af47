"""Aliases (``production``, ``staging``, ...) that move atomically, with a history to roll back.

Each promotion pushes the new holder onto the alias's history; a rollback marks the current
holder undone and moves the alias back to the most recent holder still present.
"""

from __future__ import annotations

import sqlite3

from shopserve.errors import ConflictError, NotFoundError
from shopserve.registry.rows import now_text
from shopserve.types import VersionStatus


def set_alias(
    conn: sqlite3.Connection, name: str, alias: str, version: int, author: str
) -> int | None:
    """Point ``name@alias`` at ``version``; returns the previous holder (``None`` if new)."""
    row = conn.execute(
        "SELECT status, reason FROM versions WHERE name = ? AND version = ?", (name, version)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"model {name!r} has no version {version}")
    if row["status"] == VersionStatus.REJECTED.value:
        raise ConflictError(
            f"{name}@{version} was rejected and cannot hold an alias: "
            f"{row['reason'] or 'no reason given'}"
        )
    previous = current_holder(conn, name, alias)
    if previous == version:
        return previous
    at = now_text()
    conn.execute(
        "INSERT INTO aliases (name, alias, version, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, "
        "updated_at = excluded.updated_at",
        (name, alias, version, at),
    )
    conn.execute(
        "INSERT INTO alias_history (name, alias, version, action, at, author) "
        "VALUES (?, ?, ?, 'promote', ?, ?)",
        (name, alias, version, at, author),
    )
    return previous


def current_holder(conn: sqlite3.Connection, name: str, alias: str) -> int | None:
    row = conn.execute(
        "SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)
    ).fetchone()
    return None if row is None else int(row["version"])


def roll_back(conn: sqlite3.Connection, name: str, alias: str, author: str) -> tuple[int, int]:
    """Move ``name@alias`` to its previous holder; returns ``(from_version, to_version)``."""
    current = current_holder(conn, name, alias)
    if current is None:
        raise NotFoundError(f"model {name!r} has no alias {alias!r}")
    pushes = conn.execute(
        "SELECT id, version FROM alias_history WHERE name = ? AND alias = ? "
        "AND action = 'promote' AND undone = 0 ORDER BY id DESC",
        (name, alias),
    ).fetchall()
    # The top of the stack is the current holder; below it, skip holders deleted since.
    undo = [pushes[0]["id"]] if pushes and pushes[0]["version"] == current else []
    target: int | None = None
    for push in pushes[len(undo) :]:
        if push["version"] != current and _usable(conn, name, push["version"]):
            target = int(push["version"])
            break
        undo.append(push["id"])
    if target is None:
        raise ConflictError(f"{name}@{alias} has no previous holder to roll back to")
    conn.executemany("UPDATE alias_history SET undone = 1 WHERE id = ?", [(i,) for i in undo])
    at = now_text()
    conn.execute(
        "UPDATE aliases SET version = ?, updated_at = ? WHERE name = ? AND alias = ?",
        (target, at, name, alias),
    )
    conn.execute(
        "INSERT INTO alias_history (name, alias, version, action, undone, at, author) "
        "VALUES (?, ?, ?, 'rollback', 1, ?, ?)",
        (name, alias, target, at, author),
    )
    return current, target


def _usable(conn: sqlite3.Connection, name: str, version: int) -> bool:
    row = conn.execute(
        "SELECT status FROM versions WHERE name = ? AND version = ?", (name, version)
    ).fetchone()
    return row is not None and row["status"] == VersionStatus.READY.value


def aliases_on(conn: sqlite3.Connection, name: str, version: int) -> list[str]:
    return [
        r["alias"]
        for r in conn.execute(
            "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias",
            (name, version),
        )
    ]
