"""The audit log: who viewed, edited or exported what, and every login and account change.

Append-only twice over: SQLite triggers abort any UPDATE or DELETE of a row, and each row
stores ``hash = sha256(prev_hash + canonical(row))`` so an edit made behind SQLite's back (a
dropped trigger, a hex editor) breaks the chain at that row. ``sohoa-server audit verify``
walks the chain. Rows are appended inside the caller's transaction when there is one, so an
edit and its audit row commit together.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from server.store.db import Connection, Database

GENESIS = "0" * 64


def canonical(
    row_id: int, at: float, actor: str, action: str, target: str, detail: str, ip: str
) -> str:
    return json.dumps(
        [row_id, repr(at), actor, action, target, detail, ip],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def append(
    con: Connection,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    ip: str = "",
) -> None:
    """Append one row. ``con`` must be inside a write transaction (``Database.tx``): the
    IMMEDIATE lock keeps two writers from chaining onto the same previous row."""
    last = con.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    row_id = (last["id"] + 1) if last else 1
    prev = last["hash"] if last else GENESIS
    at = time.time()
    text = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = _hash(prev, canonical(row_id, at, actor, action, target, text, ip))
    con.execute(
        "INSERT INTO audit(id, at, actor, action, target, detail, ip, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (row_id, at, actor, action, target, text, ip, prev, digest),
    )


def record(
    db: Database,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    ip: str = "",
) -> None:
    """Append one row in a transaction of its own."""
    with db.tx() as con:
        append(con, actor, action, target, detail, ip)


@dataclass(frozen=True)
class Broken:
    row_id: int
    reason: str


def verify(db: Database) -> tuple[int, Broken | None]:
    """Walk the chain: (rows checked, the first broken row or None)."""
    prev = GENESIS
    expected_id = 1
    count = 0
    for r in db.read().execute("SELECT * FROM audit ORDER BY id"):
        if r["id"] != expected_id:
            return count, Broken(expected_id, f"row {expected_id} is missing")
        if r["prev_hash"] != prev:
            return count, Broken(r["id"], "does not chain onto the previous row")
        body = canonical(
            r["id"], r["at"], r["actor"], r["action"], r["target"], r["detail"], r["ip"]
        )
        if _hash(prev, body) != r["hash"]:
            return count, Broken(r["id"], "content does not match its hash")
        prev = r["hash"]
        expected_id += 1
        count += 1
    return count, None


def recent(db: Database, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    rows = db.read().execute(
        "SELECT id, at, actor, action, target, detail, ip FROM audit"
        " ORDER BY id DESC LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]
