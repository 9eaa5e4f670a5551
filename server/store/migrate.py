"""Move an embedded SQLite catalogue into PostgreSQL: ``sohoa-server db migrate-to-postgresql``.

All or nothing: every row is copied in ONE PostgreSQL transaction (``COPY``), the full-text
index is rebuilt from the texts (the engines index differently: server.store.db), and the
copy is verified inside that same transaction before it commits — row counts of every
table, then page for page a sha256 over the page's identity, capture checksum, parts
(name, sha256, size, state, path) and OCR text, and the audit chain's last hash. Any
difference, error or interruption rolls everything back: the target stays as it was, and the
command can simply be run again. The SQLite file is only read (one snapshot); the file store
is not touched (the catalogue's paths stay valid: same ``data_dir``).

A target that already holds data is refused unless ``replace`` is given (its tables are then
emptied in the same transaction, so a failed run leaves the old contents).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.store.db import PAIRS_META_KEY, SCHEMA, STAFF_SCHEMA, Database
from server.store.pg import PgConnection

# Every table both engines have, parents before children (the foreign keys are checked row
# by row). page_text is written by Database.index_texts with the search vectors.
TABLES = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA + STAFF_SCHEMA)
SEARCH_TABLES = (
    "page_search_folded", "page_search_exact", "page_pairs", "meta_search",
)  # fmt: skip
KEEP_META = ("schema_version", "pg_ddl")  # the target's own
_TEXT_BATCH = 500
_VERIFY_SLICE = 5000  # pages compared at a time


class MigrationError(Exception):
    """Refused or not verified; nothing was committed."""


@dataclass
class Report:
    rows: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    parts: int = 0
    texts: int = 0
    seconds: float = 0.0


def readonly_uri(path: Path) -> str:
    """SQLite's URI for reading ``path`` only (percent-encoded: a name may hold ``?``)."""
    return path.resolve().as_uri() + "?mode=ro"


def _quote(name: str) -> str:
    return f'"{name}"'


def _sqlite_columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [r["name"] for r in src.execute(f"PRAGMA table_info({table})")]


def _pg_columns(con: PgConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _page_digests(con: Any, lo: int, hi: int) -> dict[int, str]:
    """Page id → sha256 of everything that makes the page (same on both engines), for the
    pages with ``lo <= id < hi`` (a slice at a time: a province's texts do not fit in RAM)."""
    parts: dict[int, list[list[Any]]] = {}
    for r in con.execute(
        "SELECT page_pk, name, sha256, size, state, path FROM parts"
        " WHERE page_pk >= ? AND page_pk < ? ORDER BY page_pk, name",
        (lo, hi),
    ):
        parts.setdefault(int(r[0]), []).append([r[1], r[2], int(r[3]), r[4], r[5]])
    texts = {
        int(r[0]): str(r[1])
        for r in con.execute(
            "SELECT page_pk, text FROM page_text WHERE page_pk >= ? AND page_pk < ?", (lo, hi)
        )
    }
    out = {}
    for r in con.execute(
        "SELECT id, batch_pk, device_id, page_id, page_no, capture_sha256, capture_size"
        " FROM pages WHERE id >= ? AND id < ? ORDER BY id",
        (lo, hi),
    ):
        pk = int(r[0])
        value = [int(r[1]), r[2], r[3], int(r[4]), r[5], int(r[6])]
        value += [parts.get(pk, []), texts.get(pk)]
        blob = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        out[pk] = hashlib.sha256(blob).hexdigest()
    return out


def _compare_pages(src: sqlite3.Connection, con: PgConnection) -> tuple[int, list[int]]:
    """(pages compared, ids of those that differ), slice by slice of page ids."""
    top = max(
        int(src.execute("SELECT COALESCE(max(id), 0) FROM pages").fetchone()[0]),
        int(_one(con, "SELECT COALESCE(max(id), 0) FROM pages")),
    )
    seen, differ = 0, []
    for lo in range(0, top + 1, _VERIFY_SLICE):
        before = _page_digests(src, lo, lo + _VERIFY_SLICE)
        after = _page_digests(con, lo, lo + _VERIFY_SLICE)
        seen += len(after)
        differ += sorted(
            pk for pk in before.keys() | after.keys() if before.get(pk) != after.get(pk)
        )
    return seen, differ


def _one(con: Any, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _count(con: Any, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


def _audit_head(con: Any) -> str | None:
    row = con.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def migrate(
    source: Path,
    target: Database,
    *,
    replace: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> Report:
    """Copy the SQLite catalogue at ``source`` into ``target`` (a PostgreSQL Database)."""
    if target.dialect != "postgresql":
        raise MigrationError("the target is not a PostgreSQL database")
    if not source.is_file():
        raise MigrationError(f"no SQLite catalogue at {source}")
    Database(source).close()  # an older archive's schema brought up to date first
    started = time.monotonic()
    src = sqlite3.connect(readonly_uri(source), uri=True, timeout=30)
    src.row_factory = sqlite3.Row
    report = Report()
    try:
        src.execute("BEGIN")  # one snapshot of the source for the copy and the check
        with target.tx() as held:
            assert isinstance(held, PgConnection)
            con = held
            nonempty = [
                t for t in (*[t for t in TABLES if t != "meta"], *SEARCH_TABLES) if _count(con, t)
            ]
            if nonempty and not replace:
                raise MigrationError(
                    f"the target database already holds data (tables {', '.join(nonempty)}): "
                    "give --replace to empty it first"
                )
            if nonempty:
                say(f"emptying the target: {', '.join(nonempty)}")
                # The audit log refuses TRUNCATE by a trigger of its own (its owner may
                # lift it); only inside this transaction.
                con.execute("ALTER TABLE audit DISABLE TRIGGER USER")
                con.execute(
                    "TRUNCATE "
                    + ", ".join([t for t in TABLES if t != "meta"] + list(SEARCH_TABLES))
                    + " RESTART IDENTITY CASCADE"
                )
                con.execute("ALTER TABLE audit ENABLE TRIGGER USER")
            for table in TABLES:
                report.rows[table] = _copy_table(src, con, table)
                say(f"{table}: {report.rows[table]} row(s)")
            report.texts = _index(src, target, con)
            con.execute(  # index_texts wrote every page's pairs: search may use them
                "INSERT INTO meta(key, value) VALUES (?, 'ready')"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (PAIRS_META_KEY,),
            )
            say(f"search index: {report.texts} page text(s)")
            _verify(src, con, report)
        report.seconds = time.monotonic() - started
        return report
    finally:
        src.close()


def _copy_table(src: sqlite3.Connection, con: PgConnection, table: str) -> int:
    if table == "page_text":
        return 0  # with the search vectors (_index)
    have = set(_pg_columns(con, table))
    columns = [c for c in _sqlite_columns(src, table) if c in have]
    missing = [c for c in _sqlite_columns(src, table) if c not in have]
    if missing:
        raise MigrationError(f"{table}: columns {missing} have no place in the target")
    names = ", ".join(_quote(c) for c in columns)
    select = f"SELECT {names} FROM {table}"  # noqa: S608 (names from the schema)
    if table == "meta":
        keep = ", ".join(f"'{k}'" for k in KEEP_META)
        rows = src.execute(f"{select} WHERE key NOT IN ({keep})").fetchall()
        con.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
            [tuple(r) for r in rows],
        )
        return len(rows)
    n = 0
    with con.raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in src.execute(select):
            copy.write_row(tuple(row))
            n += 1
    if "id" in columns:  # identity columns go on after the copied ids
        con.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id))"  # noqa: S608
            f" FROM {table} HAVING max(id) IS NOT NULL"
        )
    return n


def _index(src: sqlite3.Connection, target: Database, con: PgConnection) -> int:
    n, batch = 0, []
    for r in src.execute("SELECT page_pk, text FROM page_text ORDER BY page_pk"):
        batch.append((int(r[0]), str(r[1])))
        if len(batch) == _TEXT_BATCH:
            target.index_texts(con, batch)
            n, batch = n + len(batch), []
    if batch:
        target.index_texts(con, batch)
        n += len(batch)
    for r in src.execute("SELECT ref, exact FROM meta_fts"):
        target.index_meta(con, str(r[0]), str(r[1]))
    return n


def _verify(src: sqlite3.Connection, con: PgConnection, report: Report) -> None:
    wrong = []
    for table in TABLES:
        if table == "meta":
            continue
        a, b = _count(src, table), _count(con, table)
        if a != b:
            wrong.append(f"{table}: {a} row(s) in SQLite, {b} in PostgreSQL")
    if _count(con, "page_search_folded") != _count(src, "page_text"):
        wrong.append("the page search index does not cover every text")
    if _count(con, "meta_search") != _count(src, "meta_fts"):
        wrong.append("the hồ sơ search index does not cover every record")
    if _audit_head(src) != _audit_head(con):
        wrong.append("the audit chain ends on another hash")
    pages, differ = _compare_pages(src, con)
    if differ:
        wrong.append(f"{len(differ)} page(s) differ, first ids {differ[:10]}")
    if wrong:
        raise MigrationError("not verified, nothing committed: " + "; ".join(wrong))
    report.pages = pages
    report.parts = _count(con, "parts")
