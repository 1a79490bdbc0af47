"""Reading and writing version rows: refs resolved to versions, rows turned into ``ModelVersion``.

Every function takes an open connection, so callers decide the transaction around it.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from shopserve.errors import ConflictError, NotFoundError
from shopserve.registry.records import FileRecord, ModelSummary, ModelVersion
from shopserve.registry.refs import Ref
from shopserve.types import ModelKind, ModelSignature, Optimization, VersionStatus


def now_text() -> str:
    return datetime.now(UTC).isoformat()


def resolve(conn: sqlite3.Connection, ref: Ref) -> int:
    """The version number ``ref`` points at now; ``NotFoundError`` saying what is missing."""
    if conn.execute("SELECT 1 FROM models WHERE name = ?", (ref.name,)).fetchone() is None:
        raise NotFoundError(f"no model named {ref.name!r} in the registry")
    if ref.version is not None:
        row = conn.execute(
            "SELECT version FROM versions WHERE name = ? AND version = ?", (ref.name, ref.version)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"model {ref.name!r} has no version {ref.version}")
    elif ref.alias is not None:
        row = conn.execute(
            "SELECT version FROM aliases WHERE name = ? AND alias = ?", (ref.name, ref.alias)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"model {ref.name!r} has no alias {ref.alias!r}")
    else:
        row = conn.execute(
            "SELECT MAX(version) AS version FROM versions WHERE name = ? AND status = ?",
            (ref.name, VersionStatus.READY.value),
        ).fetchone()
        if row is None or row["version"] is None:
            raise NotFoundError(f"model {ref.name!r} has no READY version")
    return int(row["version"])


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def fetch(conn: sqlite3.Connection, name: str, version: int) -> ModelVersion:
    """The full record of one version, with its files and the aliases on it."""
    row = conn.execute(
        "SELECT * FROM versions WHERE name = ? AND version = ?", (name, version)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"model {name!r} has no version {version}")
    files = {
        f["file"]: FileRecord(sha256=f["sha256"], size=f["size"])
        for f in conn.execute(
            "SELECT file, sha256, size FROM files WHERE name = ? AND version = ? ORDER BY file",
            (name, version),
        )
    }
    aliases = tuple(
        a["alias"]
        for a in conn.execute(
            "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias",
            (name, version),
        )
    )
    signature = _loads(row["signature"])
    optimization = _loads(row["optimization"])
    return ModelVersion(
        name=name,
        version=version,
        kind=ModelKind(row["kind"]),
        files=files,
        signature=None if signature is None else ModelSignature.model_validate(signature),
        config=json.loads(row["config"]),
        metrics=json.loads(row["metrics"]),
        data_hash=row["data_hash"],
        parent=row["parent"],
        optimization=None if optimization is None else Optimization.model_validate(optimization),
        created_at=datetime.fromisoformat(row["created_at"]),
        author=row["author"],
        status=VersionStatus(row["status"]),
        reason=row["reason"],
        aliases=aliases,
        origin=row["origin"],
    )


def allocate_version(conn: sqlite3.Connection, name: str, kind: ModelKind) -> int:
    """The next number for ``name`` (never reused, even after a delete); creates the model."""
    row = conn.execute("SELECT kind, next_version FROM models WHERE name = ?", (name,)).fetchone()
    if row is not None and row["kind"] != kind.value:
        raise ConflictError(
            f"model {name!r} holds {row['kind']} models; cannot register a {kind.value} "
            "model under the same name"
        )
    if row is None:
        conn.execute(
            "INSERT INTO models (name, kind, next_version, created_at) VALUES (?, ?, 2, ?)",
            (name, kind.value, now_text()),
        )
        return 1
    version = int(row["next_version"])
    conn.execute("UPDATE models SET next_version = ? WHERE name = ?", (version + 1, name))
    return version


def insert(conn: sqlite3.Connection, mv: ModelVersion) -> None:
    """Write a version row and its file rows (the caller holds the write transaction)."""
    conn.execute(
        "INSERT INTO versions (name, version, kind, status, reason, created_at, author, "
        "data_hash, parent, origin, signature, optimization, config, metrics) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            mv.name,
            mv.version,
            mv.kind.value,
            mv.status.value,
            mv.reason,
            mv.created_at.isoformat(),
            mv.author,
            mv.data_hash,
            mv.parent,
            mv.origin,
            None if mv.signature is None else mv.signature.model_dump_json(),
            None if mv.optimization is None else mv.optimization.model_dump_json(),
            json.dumps(mv.config, sort_keys=True),
            json.dumps(mv.metrics, sort_keys=True),
        ),
    )
    conn.executemany(
        "INSERT INTO files (name, version, file, sha256, size) VALUES (?, ?, ?, ?, ?)",
        [(mv.name, mv.version, f, r.sha256, r.size) for f, r in mv.files.items()],
    )


def referenced_objects(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT DISTINCT sha256 FROM files")}


def version_numbers(conn: sqlite3.Connection, name: str) -> list[int]:
    if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is None:
        raise NotFoundError(f"no model named {name!r} in the registry")
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT version FROM versions WHERE name = ? ORDER BY version", (name,)
        )
    ]


def summaries(conn: sqlite3.Connection) -> list[ModelSummary]:
    """One summary per model that still has versions, by name."""
    out = []
    for model in conn.execute("SELECT name, kind FROM models ORDER BY name").fetchall():
        name = model["name"]
        stats = conn.execute(
            "SELECT COUNT(*) AS n, MAX(CASE WHEN status = ? THEN version END) AS latest "
            "FROM versions WHERE name = ?",
            (VersionStatus.READY.value, name),
        ).fetchone()
        if not stats["n"]:
            continue
        held = conn.execute(
            "SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (name,)
        )
        out.append(
            ModelSummary(
                name=name,
                kind=ModelKind(model["kind"]),
                versions=int(stats["n"]),
                latest=stats["latest"],
                aliases={a["alias"]: int(a["version"]) for a in held},
            )
        )
    return out
