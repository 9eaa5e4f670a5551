"""Partial GIN indexes over the newest pages' search vectors, one per block of 32,768 page
ids (an "epoch"), PostgreSQL only (issue 19): the server keeps them (:func:`keep_up`, a
thread of its own), ``sohoa-server db search-epochs`` builds them at once.

Why: the search window is the newest ``candidate_budget`` pages with all the words
(server.archive.catalog). Through the archive's one GIN index that costs every page of the
words' posting lists, the whole archive's; walking the newest pages instead costs a vector
read per page until the window is full. For words on a few to a fifth of the pages
(people's names, whose syllables are each on a third of them) both were dear at 1,000,000
pages: ~40 ms of walk for ~30,000 vectors. An index of one epoch holds only that epoch's
postings, so the window asks the newest epoch's index first, then the one before, and stops
once it has the budget: ~25 ms for the same names, the same rows. The pair index's
candidates for a phrase likewise (docs/benchmarks.md, twentieth sitting).

The indexes: ``<table>_vec_<lo>_<hi>`` on both word vector tables and the pair table,
``WHERE (page_pk >> 15) = lo / 32768`` (:func:`predicate`), for the epoch of the newest
page, the next one (so that it is indexed from its first page on) and ``KEEP - 1`` before;
none while the archive is within its first ``MIN_EPOCHS`` epochs (the whole index is no
larger). Older epochs' indexes are dropped: the window reaches them through the whole index,
as before. Each is built ``CONCURRENTLY`` (ingest and search go on; it reads the table
twice, a few seconds per million pages), one process at a time (an advisory lock), and one
an interrupted build left invalid is built again. Ingest then writes a new page's vectors
into two GIN indexes each (the whole one and its epoch's) instead of one.

Owns: which epochs have an index, creating and dropping them. Must not: decide how a query
uses them (the catalog does), or block ingest or search (``CONCURRENTLY`` only).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from server.store.db import Connection, Database

log = logging.getLogger(__name__)

EPOCH_BITS = 15  # an epoch: the 32,768 page ids with the same page_pk >> EPOCH_BITS
KEEP = 8
MIN_EPOCHS = 2
TABLES = ("page_search_folded", "page_search_exact", "page_pairs")
# How often the server looks whether the newest page reached another epoch.
EVERY_S = 60.0
# How long a process trusts its list of the indexes (a new one is used this much later; a
# dropped one still listed costs speed, never answers: the planner takes the whole index).
SPANS_TTL_S = 60.0
# pg_try_advisory_lock's key: one builder at a time across every server process.
LOCK_KEY = 0x736F686F_6570  # "soho" "ep"

_NAME = re.compile(r"^(page_search_folded|page_search_exact|page_pairs)_vec_(\d+)_(\d+)$")
_SPANS: dict[tuple[str, str], tuple[list[tuple[int, int]], float]] = {}


def index_name(table: str, lo: int, hi: int) -> str:
    return f"{table}_vec_{lo}_{hi}"


def wanted(
    newest: int, bits: int = EPOCH_BITS, keep: int = KEEP, min_epochs: int = MIN_EPOCHS
) -> list[tuple[int, int]]:
    """The epochs (lo, hi) that should have an index when the newest page is ``newest``,
    newest first: the next epoch, the newest page's, and ``keep - 1`` before it."""
    pages = 1 << bits
    current = newest >> bits
    if current < min_epochs:
        return []
    first = max(0, current - keep + 1)
    return [(e * pages, (e + 1) * pages) for e in range(current + 1, first - 1, -1)]


def predicate(lo: int, hi: int) -> str:
    """The rows of epoch [lo, hi): ``(page_pk >> bits) = epoch``. Not a range of page_pk:
    a range the primary key's B-tree can read too, and PostgreSQL then walked it testing each
    row's (TOASTed) pair vector, ~400 ms for a common phrase at 1,000,000 pages."""
    bits = (hi - lo).bit_length() - 1
    return f"(page_pk >> {int(bits)}) = {int(lo) >> bits}"


def present(con: Connection, table: str) -> dict[tuple[int, int], bool]:
    """The epoch indexes of ``table``: (lo, hi) → whether the index is usable: valid (a
    ``CONCURRENTLY`` build that did not finish leaves an invalid one, never used) and of
    :func:`predicate`'s form."""
    rows = con.execute(
        "SELECT c.relname, i.indisvalid AND i.indisready, pg_get_expr(i.indpred, i.indrelid)"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = to_regclass(?)",
        (table,),
    )
    out: dict[tuple[int, int], bool] = {}
    for r in rows:
        m = _NAME.match(str(r[0]))
        if m is not None and m.group(1) == table:
            lo, hi = int(m.group(2)), int(m.group(3))
            out[(lo, hi)] = bool(r[1]) and predicate(lo, hi) in str(r[2])
    return out


def spans(db: Database, con: Connection, table: str) -> list[tuple[int, int]]:
    """The epochs of ``table`` with a valid index that a window can use, newest first and
    contiguous from the newest (kept ``SPANS_TTL_S``); [] on SQLite or when there are none."""
    if db.dialect != "postgresql":
        return []
    key = (db.url, table)
    now = time.monotonic()
    kept = _SPANS.get(key)
    if kept is not None and now - kept[1] < SPANS_TTL_S:
        return kept[0]
    valid = sorted((s for s, ok in present(con, table).items() if ok), reverse=True)
    run: list[tuple[int, int]] = []
    for lo, hi in valid:
        if run and hi != run[-1][0]:
            break  # a gap: older ones are reached through the whole index
        run.append((lo, hi))
    _SPANS[key] = (run, now)
    return run


def forget() -> None:
    """Drop every process-wide list of spans (tests; after a build in this process)."""
    _SPANS.clear()


def ensure(
    db: Database,
    bits: int = EPOCH_BITS,
    keep: int = KEEP,
    min_epochs: int = MIN_EPOCHS,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[list[str], list[str]] | None:
    """Build the wanted epochs' indexes that are missing or invalid and drop the others
    (``CONCURRENTLY``); (built, dropped) index names, nothing on SQLite. None when another
    process holds the builder's lock (it is doing this)."""
    built: list[str] = []
    dropped: list[str] = []
    if db.dialect != "postgresql":
        return built, dropped
    with db.pool().hold() as con:  # autocommit: CONCURRENTLY runs outside a transaction
        if not con.execute("SELECT pg_try_advisory_lock(?)", (LOCK_KEY,)).fetchall()[0][0]:
            return None
        try:
            for table in TABLES:
                top = f"SELECT COALESCE(max(page_pk), 0) FROM {table}"  # noqa: S608  (constants)
                want = wanted(int(con.execute(top).fetchall()[0][0]), bits, keep, min_epochs)
                have = present(con, table)
                for lo, hi in want:
                    if have.get((lo, hi)):
                        continue
                    name = index_name(table, lo, hi)
                    started = time.monotonic()
                    if (lo, hi) in have:  # invalid: an interrupted build, or an older form
                        con.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                    con.execute(
                        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table}"  # (ints)
                        f" USING gin (vec) WHERE {predicate(lo, hi)}"
                    )
                    built.append(name)
                    say(f"  {name}: built in {time.monotonic() - started:.1f} s")
                for lo, hi in sorted(set(have) - set(want)):
                    name = index_name(table, lo, hi)
                    con.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                    dropped.append(name)
                    say(f"  {name}: dropped")
        finally:
            con.execute("SELECT pg_advisory_unlock(?)", (LOCK_KEY,))
    if built or dropped:
        forget()
    return built, dropped


def keep_up(db: Database, stop: threading.Event, every: float = EVERY_S) -> None:
    """The server's thread: :func:`ensure` at start and every ``every`` seconds until
    ``stop``. A failure is logged and tried again at the next round."""
    if db.dialect != "postgresql":
        return
    while True:
        try:
            done = ensure(db)
            if done is not None and (done[0] or done[1]):
                log.info("search epochs: built %s, dropped %s", *done)
        except Exception:  # the database away, a full disk: search works without them
            if stop.is_set():
                return  # the server is closing its database
            log.exception("search epochs: could not build the indexes (tried again later)")
        if stop.wait(every):
            return
