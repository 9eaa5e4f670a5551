"""The adjacent-pair search tables of an archive indexed before them (PostgreSQL, issue 19):
``sohoa-server search-pairs``.

``Database.index_texts`` writes each page's pair vector (``page_pairs``;
server.store.pg.pairs_tsvector of the folded text) with its word vectors. An archive whose
pages were indexed before the tables existed has none for them: the schema update marks it
``backfill`` in ``meta`` (``PAIRS_META_KEY``), and search keeps to the word vectors alone
(server.archive.catalog: the path of before, correct, slower for names and quoted phrases)
until this fills every page and marks it ``ready``.

Resumable and safe beside a running server: pages go by ascending id in batches, each batch
in one write transaction (the archive's write lock: ingest waits at most one batch), reading
the text and writing its pairs under that lock, so a page whose text changes meanwhile gets
the pairs of its new text either way. A page that already has both pair vectors is skipped
(``every`` recomputes them too: after running an older release on the archive, which
re-indexed texts without their pairs). Stopped halfway, the next run finds the rest. The
archive is marked ready only by a final check, under the lock, that no page lacks them.
"""

from __future__ import annotations

from collections.abc import Callable

from server.store import pg
from server.store.db import PAIRS_META_KEY, Connection, Database, fold, nfc

BATCH = 500

_MISSING = "NOT EXISTS (SELECT 1 FROM page_pairs p WHERE p.page_pk = t.page_pk)"


def state(db: Database) -> str:
    """'ready', 'backfill', or '' (SQLite: no pair tables)."""
    if db.dialect != "postgresql":
        return ""
    row = db.read().execute("SELECT value FROM meta WHERE key = ?", (PAIRS_META_KEY,)).fetchone()
    return "" if row is None else str(row[0])


def backfill(
    db: Database,
    every: bool = False,
    batch: int = BATCH,
    say: Callable[[str], None] = lambda line: None,
) -> int:
    """Write the pair vectors of every page lacking them (all pages with ``every``), then
    mark the archive ready; the number of pages written. PostgreSQL only (0 on SQLite)."""
    if db.dialect != "postgresql":
        return 0
    if every:
        with db.tx() as con:  # search goes back to the word vectors until the end
            con.execute("UPDATE meta SET value = 'backfill' WHERE key = ?", (PAIRS_META_KEY,))
    written, last = 0, 0
    missing = "TRUE" if every else _MISSING
    while True:
        with db.tx() as con:
            rows = con.execute(
                f"SELECT t.page_pk, CASE WHEN {missing} THEN t.text END FROM page_text t"  # noqa: S608
                " WHERE t.page_pk > ? ORDER BY t.page_pk LIMIT ?",  # (constants)
                (last, batch),
            ).fetchall()
            if not rows:
                break
            last = int(rows[-1][0])
            todo = [(int(r[0]), nfc(str(r[1]))) for r in rows if r[1] is not None]
            if todo:
                _write(con, todo)
                written += len(todo)
        if todo:
            say(f"  pages up to {last}: {written} written")
    with db.tx() as con:
        left = con.execute(f"SELECT t.page_pk FROM page_text t WHERE {_MISSING} LIMIT 1")  # noqa: S608
        if left.fetchone() is not None:  # written meanwhile by a release without pairs
            say("pages indexed meanwhile without their pairs: run again")
            return written
        con.execute(
            "INSERT INTO meta(key, value) VALUES (?, 'ready')"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (PAIRS_META_KEY,),
        )
    return written


def _write(con: Connection, pages: list[tuple[int, str]]) -> None:
    con.executemany(
        "INSERT INTO page_pairs(page_pk, vec) VALUES (?, ?::tsvector)"
        " ON CONFLICT(page_pk) DO UPDATE SET vec = excluded.vec",
        [(page_pk, pg.pairs_tsvector(fold(text))) for page_pk, text in pages],
    )
