"""Word vectors written compressed before the schema kept them plain (PostgreSQL, issue 19):
``sohoa-server db search-vectors``.

Search reads and tests thousands of word vectors per query (``page_search_folded`` and
``page_search_exact``), and a compressed vector is decompressed at every use: the match, the
phrase tier, each word's ``ts_rank``. lz4 saves ~3 % of a Vietnamese page's vector and cost
~40 % of the window's time at 100,000 pages (docs/benchmarks.md, seventh sitting), so the
schema now keeps vectors under ~8 KB uncompressed (``toast_tuple_target = 8160``) — for rows
written from then on. This rewrites the older ones: per table, one ``ALTER TABLE … ALTER
COLUMN vec TYPE tsvector USING vec || ''`` (a fresh, uncompressed copy of each vector; the
table and its indexes rebuilt), in one transaction under the archive's write lock. Search
and ingest wait while a table is rewritten (minutes at a million pages: the command says how
long it took); stopped, nothing is lost and the next run does it again. A table whose oldest
``SAMPLE`` vectors are already plain is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from server.store.db import Database

TABLES = ("page_search_folded", "page_search_exact")
SAMPLE = 1000
# maintenance_work_mem for the index rebuilds (a GIN index over a million pages: ~1.5 min
# with 1 GB in bench/search_million.py; PostgreSQL's default 64 MB takes far longer).
REBUILD_MEMORY = "512MB"


def compressed(db: Database, table: str) -> int:
    """How many of ``table``'s oldest ``SAMPLE`` vectors are stored compressed (a huge page's
    may be, past ~8 KB; any other was written before the schema kept them plain)."""
    sql = (
        f"SELECT count(*) FROM (SELECT vec FROM {table} ORDER BY page_pk LIMIT ?) s"  # noqa: S608
        " WHERE pg_column_compression(vec) IS NOT NULL AND pg_column_size(vec) < 6000"
    )
    return int(db.read().execute(sql, (SAMPLE,)).fetchone()[0])


def rewrite(db: Database, say: Callable[[str], None] = print) -> list[str]:
    """Rewrite each table that still holds compressed vectors; the tables rewritten."""
    done = []
    for table in TABLES:
        if not compressed(db, table):
            say(f"{table}: plain already")
            continue
        started = time.monotonic()
        with db.tx() as con:
            con.execute("SELECT set_config('maintenance_work_mem', ?, true)", (REBUILD_MEMORY,))
            # As the schema sets it (again here: an archive restored from an older dump).
            con.execute(f"ALTER TABLE {table} SET (toast_tuple_target = 8160)")  # (constants)
            con.execute(
                f"ALTER TABLE {table} ALTER COLUMN vec TYPE tsvector"  # (constants)
                " USING vec || ''::tsvector, ALTER COLUMN vec SET STORAGE MAIN,"
                " ALTER COLUMN vec SET COMPRESSION lz4"
            )
        say(f"{table}: rewritten in {time.monotonic() - started:.0f} s")
        done.append(table)
    if done:
        with db.tx() as con:
            con.execute(f"ANALYZE {', '.join(done)}")
    return done
