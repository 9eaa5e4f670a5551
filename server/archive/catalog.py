"""Read side of the archive: what the API and the staff pages show. No writes here, and no
HTML: hits carry their text and the offsets of the query's words (``spans``); the web layer
renders them."""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from server.archive import rotation
from server.store import epochs, pg
from server.store.db import PAIRS_META_KEY, Connection, Database, Row, fold


@dataclass(frozen=True)
class PartFile:
    location: str  # an absolute path or s3://bucket/key: read through server.store.objects
    media_type: str
    sha256: str
    part_pk: int = 0
    size: int = 0


def _batch_row(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "batch_id": row["batch_id"],
        "device_id": row["device_id"],
        "created_at": row["created_at"],
        "received_at": row["received_at"],
        "page_count": row["page_count"],
        "pages_received": row["pages_received"],
        "complete": row["complete_at"] is not None,
        "complete_at": row["complete_at"],
        "source": row["source"],
        "scanner": row["scanner"],
        "profile": row["profile"],
        "fonds_code": row["fonds_code"],  # the fonds it was scanned for (issue 21)
    }


_BATCH_SELECT = (
    "SELECT b.*, (SELECT COUNT(*) FROM pages p WHERE p.batch_pk = b.id AND NOT EXISTS"
    " (SELECT 1 FROM parts t WHERE t.page_pk = p.id AND t.state != 'committed'"
    "  AND t.name != 'capture')) AS pages_received FROM batches b"
)


# Search: each ranking tier scores at most this many matching pages (the newest); see
# Catalog.search_page. bench/search.py at 100,000 pages: bm25 over 5,000 candidates costs
# 5–10 ms, over 20,000 20 ms, over every match of a common word 55–65 ms.
CANDIDATE_BUDGET = 5000
# PostgreSQL reads a ~2 KB vector per candidate where FTS5 walks a doclist: at 100,000 pages
# a window of 5,000 gave p95 45–52 ms, 3,000 gave 33 ms (bench/search.py --engine postgresql).
PG_CANDIDATE_BUDGET = 3000
# "More results" paging goes this deep at most (the tiers are re-ranked per request).
MAX_OFFSET = 1000
# PostgreSQL counts a word's pages exactly up to this, then takes the planner's estimate
# (from the tsvector statistics ANALYZE keeps): an exact count of a word on 90,000 of
# 100,000 pages visits every one of them (115–170 ms). The total of a query is exact when
# it is inside the candidate window or below PG_TOTAL_EXACT_UP_TO, else estimated the same
# way. bench/search.py.
PG_DF_EXACT_UP_TO = 500
PG_TOTAL_EXACT_UP_TO = 2000
# A word that ANALYZE's statistics (its most common elements) put on more pages than this
# has its document frequency taken from them, uncounted: four times PG_DF_EXACT_UP_TO, so
# that a word the count would have found under it (a sampling error) is not among them.
PG_DF_FROM_STATS_ABOVE = 4 * PG_DF_EXACT_UP_TO
# Document frequencies and the planner's statistics change slowly (ANALYZE, a few minutes
# after a large ingest): kept this many seconds per process.
PG_STATS_TTL = 300.0
# work_mem of the window statements: the bitmap path sorts up to PG_CANDIDATE_BUDGET rows
# with their ~2.8 KB vectors by page id (~8 MB), which the default 4 MB wrote to a
# temporary file (docs/benchmarks.md, seventh sitting).
PG_WINDOW_WORK_MEM = "32MB"
# A span of the newest pages is walked instead of read through the GIN bitmap when the
# words' posting lists hold more than this many entries per page of the span. The span is
# sized to hold twice the budget's matches, so the walk should read half of it and stops
# once it has the budget; it reads the whole span — still no more pages than the bitmap
# decodes entries — only when the words meet less than half as often as estimated. The
# bitmap also reads and sorts every match of the span (twice the budget), which the entry
# counts leave out: at 1,000,000 pages "lụt bão" (posting lists 1.45 times its span) took
# ~85–123 ms through the bitmap and ~40–47 ms walked (tenth and thirteenth sittings); it was
# 2 before, for a page read and tested ~0.4–1 µs against an entry decoded ~0.1–0.3 µs.
PG_SPAN_PAGE_IN_ENTRIES = 1
# With an index per epoch of the newest pages (server.store.epochs) the window is read
# through them, newest first, unless the words are estimated on more than this share of the
# pages: then the walk is cheaper. The walk reads ~budget / share vectors; an epoch's index
# reads its matches (share × 32,768, ~1.5 µs each with the sort) until the budget. Measured
# at 1,000,000 pages (docs/benchmarks.md, twentieth sitting): words on 5–11 % of the pages
# 30 % faster through the epochs; on 14–20 % no faster, some three-word queries slower.
PG_EPOCH_WALK_ABOVE = 0.14
_DF_CACHE: dict[tuple[str, str, str], tuple[int, float]] = {}
_STATS_CACHE: dict[tuple[str, str], tuple[tuple[float, dict[str, float], float], float]] = {}
# Databases whose pair tables are known complete (meta says 'ready'; it never goes back).
_PAIRS_READY: set[str] = set()


# Matches among a reader's pages are counted by ``IN`` lists up to this many pages, else by
# reading every matching id once (Catalog._matching_among).
AMONG_BY_LISTS_UP_TO = 1000


class PageSet(Protocol):
    """Pages as one set (server.archive.access.PageFilter): only ``ids``, or all but them."""

    @property
    def only(self) -> bool: ...
    @property
    def ids(self) -> frozenset[int]: ...
    def allows(self, page: int) -> bool: ...


class SearchPage(NamedTuple):
    hits: list[dict[str, Any]]
    total: int  # pages with every word
    estimated: bool = False  # total is the database's estimate (PostgreSQL, large counts)


@dataclass(frozen=True)
class ParsedQuery:
    """A search query as the FTS5 tables see it.

    ``terms``: every word, lower-cased (``exact``) or folded; ``match``: the FTS5 expression
    (every word or quoted phrase, AND); ``phrase``: the whole query as one phrase, for the
    phrase tier (None for one word or when the query has its own quotes)."""

    terms: list[str]
    exact: bool
    match: str
    phrase: str | None
    items: list[list[str]]  # each word, or the words of a quoted phrase (PostgreSQL's tsquery)


def _fts_phrase(terms: list[str]) -> str:
    return '"' + " ".join(terms).replace('"', '""') + '"'


def parse_query(query: str) -> ParsedQuery | None:
    """``query`` (any Unicode normal form) as FTS5 MATCH expressions, None without words.
    Text between double quotes is a phrase; an unclosed quote runs to the end."""
    query = unicodedata.normalize("NFC", query).strip()
    exact = fold(query) != query.lower()
    items: list[list[str]] = []
    for i, segment in enumerate(query.split('"')):
        words = [w.lower() if exact else fold(w) for w in re.findall(r"\w+", segment)]
        if i % 2:  # inside quotes
            if words:
                items.append(words)
        else:
            items.extend([w] for w in words)
    terms = [t for item in items for t in item]
    if not terms:
        return None
    quoted = '"' in query
    return ParsedQuery(
        terms=terms,
        exact=exact,
        match=" ".join(_fts_phrase(item) for item in items),
        phrase=_fts_phrase(terms) if len(terms) > 1 and not quoted else None,
        items=items,
    )


class Catalog:
    def __init__(self, db: Database, candidate_budget: int | None = None) -> None:
        self.db = db
        if candidate_budget is None:
            sqlite = db.dialect == "sqlite"
            candidate_budget = CANDIDATE_BUDGET if sqlite else PG_CANDIDATE_BUDGET
        self.candidate_budget = max(1, candidate_budget)

    def batches(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        rows = self.db.read().execute(
            f"{_BATCH_SELECT} ORDER BY b.received_at DESC LIMIT ? OFFSET ?", (limit, offset)
        )
        return [_batch_row(r) for r in rows]

    def batch(self, batch_pk: int) -> dict[str, Any] | None:
        con = self.db.read()
        row = con.execute(f"{_BATCH_SELECT} WHERE b.id = ?", (batch_pk,)).fetchone()
        if row is None:
            return None
        out = _batch_row(row)
        out["metadata"] = json.loads(row["metadata"])
        out["pages"] = [
            self._page(con, p)
            for p in con.execute(
                "SELECT * FROM pages WHERE batch_pk = ? ORDER BY page_no", (batch_pk,)
            )
        ]
        return out

    def page(self, page_pk: int) -> dict[str, Any] | None:
        con = self.db.read()
        row = con.execute("SELECT * FROM pages WHERE id = ?", (page_pk,)).fetchone()
        return None if row is None else self._page(con, row)

    def _page(self, con: Connection, row: Row) -> dict[str, Any]:
        parts = {
            r["name"]: r for r in con.execute("SELECT * FROM parts WHERE page_pk = ?", (row["id"],))
        }
        text = con.execute("SELECT text FROM page_text WHERE page_pk = ?", (row["id"],)).fetchone()
        archival = parts.get("archival")
        return {
            "id": row["id"],
            "page_id": row["page_id"],
            "page_no": row["page_no"],
            "batch_pk": row["batch_pk"],
            "capture_sha256": row["capture_sha256"],
            "capture_size": row["capture_size"],
            "sha256": archival["sha256"] if archival else None,
            "dpi": row["dpi"],
            "width_px": row["width_px"],
            "height_px": row["height_px"],
            "colour": bool(row["colour"]),
            "flags": json.loads(row["flags"]),
            "ocr_confidence": row["ocr_confidence"],
            "source_name": row["source_name"],
            "parts": {
                name: {
                    "sha256": p["sha256"],
                    "size": p["size"],
                    "media_type": p["media_type"],
                    "committed": p["state"] == "committed",
                }
                for name, p in parts.items()
            },
            "has_original": "capture" in parts and parts["capture"]["state"] == "committed",
            "text": text[0] if text else None,
        }

    def part_file(self, page_pk: int, name: str) -> PartFile | None:
        """A committed part of the page. ``archival`` is the page's archival file as it
        stands now: a turned version when staff turned the page (server.archive.rotation)."""
        con = self.db.read()
        if name == "archival":
            part_pk = rotation.current_part_pk(con, page_pk)
            row = None
            if part_pk is not None:
                row = con.execute(
                    "SELECT id, path, media_type, sha256, size FROM parts"
                    " WHERE id = ? AND state = 'committed'",
                    (part_pk,),
                ).fetchone()
        else:
            row = con.execute(
                "SELECT id, path, media_type, sha256, size FROM parts"
                " WHERE page_pk = ? AND name = ? AND state = 'committed'",
                (page_pk, name),
            ).fetchone()
        if row is None or not row["path"]:
            return None
        return PartFile(str(row["path"]), row["media_type"], row["sha256"], row["id"], row["size"])

    def devices(self) -> list[dict[str, Any]]:
        rows = self.db.read().execute(
            "SELECT d.*, (SELECT COUNT(*) FROM batches b WHERE b.device_id = d.device_id)"
            " AS batches, (SELECT COUNT(*) FROM pages p WHERE p.device_id = d.device_id)"
            " AS pages FROM devices d ORDER BY d.device_id"
        )
        return [
            {
                "device_id": r["device_id"],
                "status": r["status"],
                "first_seen": r["first_seen"],
                "last_seen": r["last_seen"],
                "agent_version": r["agent_version"],
                "commune": r["commune"],
                "telemetry": json.loads(r["telemetry"]),
                "batches": r["batches"],
                "pages": r["pages"],
            }
            for r in rows
        ]

    def alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest alerts (a device that sent another's id, bytes that conflict, the
        archive unable to store), newest first."""
        rows = self.db.read().execute(
            "SELECT at, device_id, kind, detail FROM alerts ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [
            {"at": r["at"], "device_id": r["device_id"], "kind": r["kind"], "detail": r["detail"]}
            for r in rows
        ]

    def search(self, query: str, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Full-text search, best first (see :meth:`search_page`); the hits only."""
        return self.search_page(query, limit, offset).hits

    def search_page(
        self,
        query: str,
        limit: int = 50,
        offset: int = 0,
        visible: PageSet | None = None,
    ) -> SearchPage:
        """One page of full-text hits, best first, and how many pages match all the words
        (on PostgreSQL an estimate above ``PG_TOTAL_EXACT_UP_TO``, flagged).

        A query without diacritics matches with or without them ("khoang san" finds "khoáng
        sản"); a query with diacritics matches exactly. Words in double quotes must occur as
        that phrase.

        Ranking (docs/benchmarks.md "Search" has the numbers behind it):

        1. Phrase tier, for 2+ words typed without quotes: pages where the words occur
           adjacent and in order rank first. The tokenizer splits Vietnamese by syllable, so a
           word such as "quyết định" is two tokens; a page with "quyết" at the top and "định"
           at the bottom does not contain the word.
        2. Every other page with all the words. Within each tier: bm25 of all the words
           (idf makes a rare word weigh more than a common one; bm25 normalises for page
           length), ties newest first.

        Only the newest ``candidate_budget`` pages with all the words are ranked (all of them
        when fewer match); the count returned is of every match. Common words such as "xã",
        "ủy ban", "quyết định" match 60–98 % of an administrative archive, and FTS5 has no
        top-k pruning: ``ORDER BY bm25() LIMIT k`` scores every match (~0.6 µs each plus a
        page-size lookup: 55–65 ms for 90,000 matches at 100,000 pages, on 2 cores). The
        newest N matches are found by walking the doclist backwards, which stops after N
        (``_cutoff``), and bm25 then scores only ``rowid >= cutoff``; 5,000 candidates cost
        ~10 ms. Rejected: ``rowid IN (candidates)`` (FTS5 re-computes bm25's idf per IN
        value: 11 s for 2,000), bm25 of the phrase itself (its idf re-scans every phrase
        match: 20–90 ms), ``columnsize=0`` (3x faster bm25 but no page-length
        normalisation, and a rebuild), ``detail=column`` (bm25 gives 0 on a contentless
        table, no phrases), ``ORDER BY rank`` (slower than ``ORDER BY bm25()`` here).
        Consequence: when a query's words are on more than ``candidate_budget`` pages, older
        pages are not ranked (nor reachable by paging); staff see the total and narrow the
        query with another word or a quoted phrase.

        ``visible`` (the pages this reader may see, server.archive.access.PageFilter)
        restricts hits and total to those pages: hidden pages are dropped from the ranked
        window before paging, and the total is exact (never an estimate).
        """
        limit = max(0, limit)
        offset = max(0, min(offset, MAX_OFFSET))
        want = offset + limit
        parsed = parse_query(query)
        if parsed is None or want == 0:
            return SearchPage([], 0)
        con = self.db.read()
        estimated = False
        if visible is not None:
            ranked, total = self._rank_visible(con, parsed, limit, offset, visible)
        elif self.db.dialect == "sqlite":
            ranked, total = self._rank_fts5(con, parsed, limit, offset)
        else:
            ranked, total, estimated = self._rank_postgres(con, parsed, limit, offset)
        if not ranked:
            return SearchPage([], total, estimated)
        marks = ", ".join("?" * len(ranked))
        sql = (
            "SELECT p.id, p.page_no, p.batch_pk, p.device_id, t.text FROM pages p"  # noqa: S608
            f" JOIN page_text t ON t.page_pk = p.id WHERE p.id IN ({marks})"  # (placeholders)
        )
        pages = {r["id"]: r for r in con.execute(sql, [rowid for rowid, _ in ranked])}
        out = []
        for rowid, score in ranked:
            page = pages.get(rowid)
            if page is None:
                continue
            shown = snippet(page["text"], parsed.terms, parsed.exact)
            out.append(
                {
                    "page": page["id"],
                    "page_no": page["page_no"],
                    "batch": page["batch_pk"],
                    "device_id": page["device_id"],
                    "snippet": shown,
                    "spans": match_spans(shown, parsed.terms, parsed.exact),
                    "score": score,
                }
            )
        return SearchPage(out, total, estimated)

    def _rank_visible(
        self,
        con: Connection,
        parsed: ParsedQuery,
        limit: int,
        offset: int,
        visible: PageSet,
    ) -> tuple[list[tuple[int, float]], int]:
        """One page of the hits ``visible`` allows, ranked as without it, and their exact
        count. Every page but a few (``only`` false): a window just long enough to drop
        them from, and the total less those of them that match. Only some pages: the whole
        candidate window, and the matches among them counted."""
        budget = self.candidate_budget
        want = budget if visible.only else min(budget, offset + limit + len(visible.ids))
        if self.db.dialect == "sqlite":
            window, total = self._rank_fts5(con, parsed, want, 0)
            estimated = False
        else:
            window, total, estimated = self._rank_postgres(con, parsed, want, 0)
        shown = [hit for hit in window if visible.allows(hit[0])]
        page = shown[offset : offset + limit]
        if len(window) >= total and not estimated:  # the window holds every match
            return page, len(shown)
        among = self._matching_among(con, parsed, visible.ids)
        return page, among if visible.only else max(0, total - among)

    def _matching_among(self, con: Connection, parsed: ParsedQuery, ids: frozenset[int]) -> int:
        """How many of the pages ``ids`` have all the words: a count per 500 ids for a few
        ids; for many, every matching id is read once and looked up (FTS5 matches the whole
        query again for each ``rowid IN`` list: 40 lists cost ~1 s at 20,000 pages)."""
        if self.db.dialect == "sqlite":
            table = "page_fts_exact" if parsed.exact else "page_fts"
            where = f"FROM {table} WHERE {table} MATCH ?"  # (constants)
            first: object = parsed.match
            key = "rowid"
        else:
            table = "page_search_exact" if parsed.exact else "page_search_folded"
            where = f"FROM {table} WHERE vec @@ ?::tsquery"  # (constants)
            first = pg.tsquery(parsed.items)
            key = "page_pk"
        if len(ids) > AMONG_BY_LISTS_UP_TO:
            rows = con.execute(f"SELECT {key} {where}", (first,))
            return sum(1 for r in rows if int(r[0]) in ids)
        sql = f"SELECT count(*) {where} AND {key} IN "
        ordered = sorted(ids)
        found = 0
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            marks = "(" + ",".join("?" * len(chunk)) + ")"
            found += int(con.execute(sql + marks, (first, *chunk)).fetchone()[0])
        return found

    def _rank_fts5(
        self, con: Connection, parsed: ParsedQuery, limit: int, offset: int
    ) -> tuple[list[tuple[int, float]], int]:
        """SQLite: (page id, bm25) of one page of hits, best (lowest) first, and the count."""
        table = "page_fts_exact" if parsed.exact else "page_fts"
        cutoff = self._cutoff(con, table, parsed.match)
        # The phrase tier: pages with the words together (in this window) first.
        tier, tier_args = "", []
        if parsed.phrase is not None:
            tier = (
                f"rowid NOT IN (SELECT rowid FROM {table}"  # noqa: S608  (constants)
                f" WHERE {table} MATCH ? AND rowid >= ?),"
            )
            tier_args = [parsed.phrase, cutoff or 0]
        # One statement: bm25 of every candidate, the phrase tier first. The phrase
        # subquery runs once (SQLite materialises a constant IN list); sorting 5,000 rows
        # here costs less than fetching them into Python.
        ranked = [
            (int(r[0]), float(r[1]))
            for r in con.execute(
                f"SELECT rowid, bm25({table}) AS score FROM {table}"  # noqa: S608  (constants)
                f" WHERE {table} MATCH ? AND rowid >= ? ORDER BY {tier} score, rowid DESC"
                " LIMIT ? OFFSET ?",
                [parsed.match, cutoff or 0, *tier_args, limit, offset],
            )
        ]
        if cutoff is None and offset == 0 and len(ranked) < limit:
            return ranked, len(ranked)  # every match is here
        return ranked, self._count(con, table, parsed.match)

    def _rank_postgres(
        self, con: Connection, parsed: ParsedQuery, limit: int, offset: int
    ) -> tuple[list[tuple[int, float]], int, bool]:
        """PostgreSQL: the same tiers and candidate window as :meth:`_rank_fts5`, in one
        statement over a table of tsvectors with a GIN index; (hits, total, whether the total
        is an estimate).

        ``ts_rank`` knows no idf, so the score is bm25's idf of each word (or quoted phrase)
        times its ``ts_rank(…, 1)`` (term frequency, saturated, divided by 1 + log(page
        length)), summed and negated: lower is better on both engines. A word's document
        frequency is counted up to ``PG_DF_EXACT_UP_TO`` and estimated above (idf hardly
        moves there: 0.1 at 90 % of pages, 0.7 at 50 %); one word needs no idf at all.

        The window (the newest ``candidate_budget`` matches) is looked for among the newest
        pages first: ``page_pk > n - span``, where ``span`` should hold twice the budget
        by the words' estimated frequency, so that the GIN bitmap is cut by the primary
        key's range before any vector is read (one read per match in the span, not per
        match in the archive: people's names, ~100,000 of 1,000,000 pages, read ~6,000
        vectors instead of ~50,000 — the bitmap itself still decodes each syllable's pages,
        and name syllables are on 30–100 % of them; so when the words' posting lists hold
        more than ``PG_SPAN_PAGE_IN_ENTRIES`` times the span's pages, the span is walked
        instead, same rows). The window statements are planned for each query's values,
        never by a prepared statement's generic plan. The walk is bounded too: four times the
        pages it should need, then the GIN index (PostgreSQL takes words as independent, so
        two that rarely meet are estimated too high). When the span holds fewer than the
        budget, the whole archive is searched — except for a quoted phrase, whose matches are far
        fewer than its words' estimate: the span's phrase matches are kept when they fill
        the page asked for, and the total is then scaled from the span (flagged as an
        estimate). docs/benchmarks.md, "Search over 1,000,000 pages".

        Before all this, quoted phrases and the phrase tier of 2+ words typed without quotes
        go through the index of adjacent syllable pairs when the archive has it
        (:meth:`_rank_pairs`): it answers a query of quoted phrases, and a name whose phrase
        matches fill the page asked for, without the window above."""
        table = "page_search_exact" if parsed.exact else "page_search_folded"
        query = pg.tsquery(parsed.items)
        # n ~ pages indexed (ids are dense), and each word's document frequency
        n, dfs = self._pg_n_and_dfs(con, table, parsed.items if len(parsed.items) > 1 else [])
        score: list[str] = []
        score_args: list[object] = []
        if len(parsed.items) == 1:
            score.append("ts_rank(vec, ?::tsquery, 1)")
            score_args.append(query)
        else:
            for item, df in zip(parsed.items, dfs, strict=True):
                score.append("? * ts_rank(vec, ?::tsquery, 1)")
                unit = pg.tsquery([item])
                score_args += [math.log(1 + max(0.0, n - df + 0.5) / (df + 0.5)), unit]
        tier, tier_args = "false", []
        if parsed.phrase is not None:
            tier, tier_args = "vec @@ ?::tsquery", [pg.tsquery([parsed.terms])]
        where = f"FROM {table} WHERE vec @@ ?::tsquery"  # (constants)
        estimate = self._pg_estimate_items(con, table, parsed.items, where, query)
        if self._pg_pairs_ready(con):
            found = self._rank_pairs(con, parsed, n, estimate, (score, score_args), limit, offset)
            if found is not None:
                return found
        # The window (the newest matches) is a LIMIT subquery, which the planner keeps apart:
        # each candidate's vector is read once to match, then ranked; count(*) OVER () is
        # the window's size, i.e. the exact total when fewer than the budget match. The
        # scores are computed below the count (``OFFSET 0`` keeps that subquery apart too):
        # flattened, the count's buffer held every candidate's vector, ~8 MB for 3,000,
        # written to a temporary file past work_mem — 20–40 ms of a common word's ~60 at
        # 100,000 pages (docs/benchmarks.md, seventh sitting). Through the GIN bitmap, the
        # matches are sorted by page id with their row addresses only, then each row is
        # read again by address: sorting the vectors themselves (~8 MB) cost more.
        newest = f"{where} AND page_pk > ? ORDER BY page_pk DESC LIMIT ?"  # (constants)
        sources = {
            True: f"SELECT page_pk, vec {newest}",  # the walk: already in page order
            False: f"SELECT t.page_pk, t.vec FROM (SELECT ctid AS at {newest}) c"  # noqa: S608
            f" JOIN {table} t ON t.ctid = c.at",  # (constants)
        }

        def ranked_from(source: str) -> str:
            return (
                f"SELECT page_pk, score, count(*) OVER () FROM (SELECT page_pk,"  # noqa: S608
                f" -({' + '.join(score)}) AS score, {tier} AS tier FROM ({source}) w OFFSET 0)"
                " r ORDER BY tier DESC, score, page_pk DESC LIMIT ? OFFSET ?"  # (constants)
            )

        sql = {walk: ranked_from(source) for walk, source in sources.items()}
        budget = self.candidate_budget
        # Two ways to find the window, and PostgreSQL's planner misjudges which is cheaper
        # (it does not cost reading a vector to test it): walking the primary key from the
        # newest page and testing each vector reads budget × n / matches vectors; the GIN
        # index finds every match but then reads each one's heap row (~3 µs: a vector is
        # ~2 KB, 4 to a page) before sorting. The walk wins when matches² > budget × n.
        walk = estimate * estimate > budget * max(n, 1)
        phrase = any(len(item) > 1 for item in parsed.items)
        # First a span of the newest pages: for the GIN bitmap, one that should hold twice
        # the budget's matches; for the walk, four times the pages it should need (an
        # estimate too high — words that rarely meet — would otherwise walk the archive).
        # When it holds fewer than the budget: the whole archive, and a walk that stopped
        # short goes to the GIN index (the matches are fewer than estimated).
        bitmap_first = phrase or not walk
        span = (2 if bitmap_first else 4) * budget * n // max(estimate, 1) if estimate > 0 else n
        rows: list[Any] | None = None
        # Through the epochs' own indexes (server.store.epochs), newest first, stopping once
        # the window is full: the newest matches of the whole archive (the last part is the
        # whole index, below the oldest epoch), each epoch's bitmap holding its own pages
        # only. Not for a quoted phrase (its words' pages are far more than its own: the
        # span rule below) nor for words on most pages (the walk is cheaper).
        by_epoch = (
            []
            if phrase or estimate > PG_EPOCH_WALK_ABOVE * n
            else epochs.spans(self.db, con, table)
        )
        if by_epoch and _epochs_fill(by_epoch, estimate, n, budget):
            parts = _epoch_parts(by_epoch, n)
            kids = " UNION ALL ".join(
                f"(SELECT ctid AS at, page_pk {where} AND {part}"  # (ints)
                " ORDER BY page_pk DESC)"
                for part in parts
            )
            source = (
                f"SELECT t.page_pk, t.vec FROM (SELECT at FROM ({kids}) k LIMIT ?) c"  # noqa: S608
                f" JOIN {table} t ON t.ctid = c.at"  # (constants)
            )
            args = [*score_args, *tier_args, *[query] * len(parts), budget, limit, offset]
            rows = self._pg_window({False: ranked_from(source)}, args, False)
        elif 0 < span < n:
            args = [*score_args, *tier_args, query, n - span, budget, limit, offset]
            # The GIN bitmap of a span still decodes every word's whole posting list (the
            # index cannot stop at the page range): for words each on much of the archive
            # but estimated together on fewer pages — a phrase, a rare subject of common
            # syllables — walking the span reads fewer rows than that. At 1,000,000 pages:
            # 80–150 ms for the bitmap against 9–45 ms for the walk (docs/benchmarks.md,
            # tenth sitting). Same rows either way: only the plan differs.
            span_walk = walk and not bitmap_first
            if bitmap_first and span * PG_SPAN_PAGE_IN_ENTRIES < self._pg_postings(
                con, table, parsed.items
            ):
                span_walk = True
            rows = self._pg_window(sql, args, span_walk)
            window = int(rows[0][2]) if rows else 0
            if phrase and budget > window >= offset + limit > 0:
                ranked = [(int(r[0]), float(r[1])) for r in rows]
                return ranked, max(window, window * n // span), True
            if window < budget:  # some of the newest matches are older than the span
                rows = None
                walk = walk and bitmap_first
        if rows is None:
            args = [*score_args, *tier_args, query, 0, budget, limit, offset]
            rows = self._pg_window(sql, args, walk)
        ranked = [(int(r[0]), float(r[1])) for r in rows]
        window = int(rows[0][2]) if rows else 0
        if not ranked and offset:
            window = self._pg_count(con, table, query, budget)[0]
        if window < budget:
            return ranked, window, False
        if estimate >= PG_TOTAL_EXACT_UP_TO:
            return ranked, max(window, estimate), True
        total, estimated = self._pg_count(con, table, query, PG_TOTAL_EXACT_UP_TO)
        return ranked, max(window, total), estimated

    def _pg_pairs_ready(self, con: Connection) -> bool:
        """Whether every page has its pair vectors (``meta`` says so once the tables were
        created on an empty archive or a backfill finished; it never goes back)."""
        if self.db.url in _PAIRS_READY:
            return True
        row = con.execute("SELECT value FROM meta WHERE key = ?", (PAIRS_META_KEY,)).fetchone()
        if row is None or row[0] != "ready":
            return False
        _PAIRS_READY.add(self.db.url)
        return True

    def _rank_pairs(
        self,
        con: Connection,
        parsed: ParsedQuery,
        n: int,
        estimate: int,
        score: tuple[list[str], list[object]],
        limit: int,
        offset: int,
    ) -> tuple[list[tuple[int, float]], int, bool] | None:
        """The phrase matches through the adjacent-pair index (``page_pairs``), for a query
        of quoted phrases only and for the phrase tier of 2+ words typed without quotes;
        None when this path does not answer and :meth:`_rank_postgres` goes on as before.

        A phrase's pages are those with every pair of it, folded, and the phrase in the
        word vector (checked: for three syllables or more the pairs may be apart, and a
        phrase with diacritics has the folded pairs of others: "Vũ Thị" and "Vũ Thì"). The
        pairs' posting lists are the phrase's own pages, a tiny fraction of its
        syllables' (a name's three syllables are on 30–100 % of pages, the name on ~0.03 %):
        the newest ``candidate_budget`` of them are found by the pair index, sorted by page
        id, each checked and ranked on its word vector as the window is. Used when the
        pairs are rare enough for that (estimated matches² ≤ budget × n, the bitmap-or-walk
        rule of the window); a common phrase ("ủy ban") is found as before, by the walk. For
        words typed without quotes, only when the words' own window would not be a walk
        either (people's names, rare subjects: their syllables' bitmaps were the cost): words
        on most pages find their window and its phrase tier in a short walk of the newest
        pages, cheaper than ~3,000 vectors read at random through the pairs.

        - Quoted phrases only: the window is the newest ``candidate_budget`` matches, as
          before, found without the syllables' bitmaps or the walk; the total is exact when
          fewer match, else estimated from the pairs' statistics (flagged).
        - 2+ words without quotes: when the phrase matches fill the page asked for (offset +
          limit), the page is the newest ``candidate_budget`` phrase matches, ranked as the
          phrase tier is, and the all-words window is not built at all; the total is the
          pages with all the words, estimated (flagged) or counted when the estimate is
          under the budget (or ``PG_TOTAL_EXACT_UP_TO``, the larger). Change from before
          this path (issue 19): the phrase tier was only looked for inside the newest
          ``candidate_budget`` pages with all the words, so on a large archive, where a
          name's syllables are each on most pages, a page with the name older than that
          window did not appear at all; it now does, ranked among the newest
          ``candidate_budget`` pages with the name. When they
          do not fill the page, the tiers are ranked as before — so paging past the phrase
          matches of a large archive goes back to the all-words window (whose phrase tier
          may hold fewer of them)."""
        quoted = parsed.phrase is None
        if quoted and not all(len(item) > 1 for item in parsed.items):
            return None  # a loose word beside a phrase, or one word: as before
        budget = self.candidate_budget
        if not quoted and estimate * estimate > budget * max(n, 1):
            # Words on most pages: the all-words window is a short walk of the newest pages
            # and holds the phrase tier; the pairs would add ~3,000 random vector reads
            # (measured at 1,000,000 pages: 2 common words p95 92 -> 204 ms through them).
            return None
        items = parsed.items if quoted else [parsed.terms]
        # The pairs are folded: with diacritics, the folded phrase's pages, checked exactly.
        folded = [[fold(t) for t in item] for item in items]
        lexemes = pg.pairs(folded)
        if not lexemes:
            return None
        table = "page_search_exact" if parsed.exact else "page_search_folded"
        pairs = "page_pairs"
        pq = pg.pairs_tsquery(folded)
        phrase = pg.tsquery(items)
        pair_where = f"FROM {pairs} WHERE vec @@ ?::tsquery"  # (constants)
        pair_estimate = self._pg_estimate_items(con, pairs, [[x] for x in lexemes], pair_where, pq)
        if pair_estimate * pair_estimate > budget * max(n, 1):
            return None  # a common phrase: the walk finds its newest matches sooner
        terms, term_args = score
        # 2+ words without quotes on few pages by the estimate: their total is counted (up
        # to what the window or the count after it would have, so a small archive's total
        # stays exact), in the window statement (an InitPlan, run once the window has a
        # row; a statement of its own was a round trip more) — and only when the window
        # holds fewer than ``exact_up_to`` phrase matches: every one of them has all the
        # words, so a full window already says the count would reach its bound (the
        # InitPlan under a CASE not taken is never run; at 1,000,000 pages it decoded the
        # words' posting lists and visited ~3,000 heap pages, 10–20 ms).
        exact_up_to = max(budget, PG_TOTAL_EXACT_UP_TO)
        count, count_args = "", []
        if not quoted and estimate < exact_up_to:
            count = (
                ", CASE WHEN count(*) OVER () < ? THEN (SELECT count(*) FROM (SELECT 1"  # noqa: S608
                f" FROM {table} WHERE vec @@ ?::tsquery LIMIT ?) s) END"  # (constants)
            )
            count_args = [exact_up_to, pg.tsquery(parsed.items), exact_up_to]
        # Candidates by the pair index sorted newest first (their page ids only), then each
        # one's word vector by primary key, checked, until the budget: a nested loop in the
        # candidates' order, stopped by the LIMIT (joined before sorting, PostgreSQL read
        # every candidate's vector and sorted the vectors). Then ranked, below the count
        # (``OFFSET 0``: see the window of :meth:`_rank_postgres`). With the pair table's
        # epoch indexes (server.store.epochs), the candidates come epoch by epoch, newest
        # first (a ``UNION ALL``, each part sorted), so the nested loop and its LIMIT stop
        # before the older epochs' bitmaps are read at all: a common phrase's candidates are
        # not every heap page of the pair table (~20 of ~45 ms at 1,000,000 pages). The
        # parts come in that order (an Append runs them one after another): no ORDER BY
        # above them, which would read and sort every candidate's vector first.
        by_epoch = epochs.spans(self.db, con, pairs)
        if by_epoch and _epochs_fill(by_epoch, pair_estimate, n, budget):
            parts = _epoch_parts(by_epoch, n)
            candidates = " UNION ALL ".join(
                f"(SELECT page_pk FROM {pairs} WHERE vec @@ ?::tsquery AND {part}"  # noqa: S608  (ints)
                " ORDER BY page_pk + 0 DESC)"  # (not by walking the key: see _epoch_parts)
                for part in parts
            )
            pair_args = [pq] * len(parts)
            newest_first = ""
        else:
            candidates = (
                f"SELECT page_pk FROM {pairs} WHERE vec @@ ?::tsquery"  # noqa: S608
                " ORDER BY page_pk DESC OFFSET 0"  # (constants)
            )
            pair_args = [pq]
            newest_first = " ORDER BY c.page_pk DESC"
        sql = (
            f"SELECT page_pk, score, count(*) OVER (){count} FROM (SELECT page_pk,"  # noqa: S608
            f" -({' + '.join(terms)}) AS score FROM (SELECT w.page_pk, w.vec FROM ("
            f"{candidates}) c JOIN {table} w ON w.page_pk = c.page_pk WHERE w.vec @@ ?::tsquery"
            f"{newest_first} LIMIT ?) w OFFSET 0) r"
            " ORDER BY score, page_pk DESC LIMIT ? OFFSET ?"  # (constants)
        )
        args = [*count_args, *term_args, *pair_args, phrase, budget, limit, offset]
        rows = self._pg_pairs_window(sql, args)
        ranked = [(int(r[0]), float(r[1])) for r in rows]
        window = int(rows[0][2]) if rows else 0
        if not quoted:
            if window < offset + limit or not ranked:
                return None  # the phrase matches do not fill the page: both tiers
            if not count:
                return ranked, max(window, estimate), True
            if rows[0][3] is not None and int(rows[0][3]) < exact_up_to:  # None: not counted
                return ranked, max(window, int(rows[0][3])), False
            return ranked, max(window, exact_up_to, estimate), True
        if not ranked and offset:
            window = self._pg_pair_count(con, pairs, table, pq, phrase, budget)
        if window < budget:
            return ranked, window, False
        if pair_estimate >= PG_TOTAL_EXACT_UP_TO or window >= PG_TOTAL_EXACT_UP_TO:
            # A full window of at least that many: a count up to it would only say so.
            return ranked, max(window, pair_estimate), True
        total = self._pg_pair_count(con, pairs, table, pq, phrase, PG_TOTAL_EXACT_UP_TO)
        if total < PG_TOTAL_EXACT_UP_TO:
            return ranked, max(window, total), False
        return ranked, max(window, total, pair_estimate), True

    def _pg_pair_count(
        self, con: Connection, pairs: str, table: str, pq: str, phrase: str, up_to: int
    ) -> int:
        """Pages with the phrase(s), through the pair index, counted up to ``up_to``."""
        sql = (
            f"SELECT count(*) FROM (SELECT 1 FROM {pairs} c JOIN {table} w"  # noqa: S608
            " ON w.page_pk = c.page_pk WHERE c.vec @@ ?::tsquery AND w.vec @@ ?::tsquery"
            " LIMIT ?) s"  # (constants)
        )
        return int(con.execute(sql, (pq, phrase, up_to)).fetchone()[0])

    def _pg_pairs_window(self, sql: str, args: list[object]) -> list[Any]:
        """The pair window with its plan: the pair index's bitmap, then the word vectors by
        primary key, newest first (a hash or merge join would read every word vector). No
        Materialize either: when PostgreSQL put the phrase on a handful of pages (two rare
        words with diacritics, "ma túy"), it read the phrase's pages once, kept them and
        compared every candidate with every one of them — at 1,000,000 pages 1,013,176
        comparisons, 95 of 102 ms (docs/benchmarks.md, fourteenth sitting)."""
        return self._pg_planned(
            sql, args, ("enable_seqscan", "enable_hashjoin", "enable_mergejoin", "enable_material")
        )

    def _pg_n_and_dfs(
        self, con: Connection, table: str, items: list[list[str]]
    ) -> tuple[int, list[int]]:
        """The highest page id of ``table`` and the pages with each of ``items`` (a word or a
        phrase), for idf, in one statement: each counted up to ``PG_DF_EXACT_UP_TO``, else
        estimated as the planner would (:meth:`_pg_estimate_items`) — and then kept for
        ``PG_STATS_TTL`` seconds (counting the first 500 pages of a common word costs a
        bitmap of all of them). A word the column's statistics put on more than
        ``PG_DF_FROM_STATS_ABOVE`` pages is not counted at all: its estimate is what the
        count would end in. One round trip for all of them: each statement is a wake-up of
        the server and of this process, 1–6 ms of wall time on a loaded machine for a
        count that takes 0.2 ms (docs/benchmarks.md, eighth sitting)."""
        stats = self._pg_stats(con, table) if items else None
        now = time.monotonic()
        dfs: list[int | None] = []
        counted: list[int] = []  # indexes into items
        args: list[object] = []
        columns = [f"(SELECT COALESCE(max(page_pk), 0) FROM {table})"]  # noqa: S608  (constants)
        for i, item in enumerate(items):
            if stats is not None and len(item) == 1:
                rows, freqs, _ = stats
                seen = rows * freqs.get(item[0], 0.0)
                if seen >= PG_DF_FROM_STATS_ABOVE:
                    # What the count would have returned (it stops at PG_DF_EXACT_UP_TO and
                    # takes the planner's estimate, which is this), without the count: a GIN
                    # bitmap of the word's every page, 2–20 ms for a common word.
                    dfs.append(round(seen))
                    continue
            kept = _DF_CACHE.get((self.db.url, table, " ".join(item)))
            if kept is not None and now - kept[1] < PG_STATS_TTL:
                dfs.append(kept[0])
                continue
            dfs.append(None)
            counted.append(i)
            columns.append(
                f"(SELECT count(*) FROM (SELECT 1 FROM {table}"  # noqa: S608  (constants)
                " WHERE vec @@ ?::tsquery LIMIT ?) s)"
            )
            args += [pg.tsquery([item]), PG_DF_EXACT_UP_TO]
        row = con.execute(f"SELECT {', '.join(columns)}", args).fetchone()
        n = int(row[0])
        where = f"FROM {table} WHERE vec @@ ?::tsquery"  # (constants)
        for column, i in enumerate(counted, 1):
            df = int(row[column])
            if df >= PG_DF_EXACT_UP_TO:
                unit = pg.tsquery([items[i]])
                df = max(
                    PG_DF_EXACT_UP_TO, self._pg_estimate_items(con, table, [items[i]], where, unit)
                )
                if len(_DF_CACHE) > 10_000:
                    _DF_CACHE.clear()
                _DF_CACHE[(self.db.url, table, " ".join(items[i]))] = (df, now)
            dfs[i] = df
        return n, [int(df or 0) for df in dfs]

    def _pg_postings(self, con: Connection, table: str, items: list[list[str]]) -> int:
        """The entries of the GIN posting lists of ``items``' words, by the column's
        statistics (0 without them): what a bitmap of them decodes."""
        stats = self._pg_stats(con, table)
        if stats is None:
            return 0
        rows, freqs, floor = stats
        return round(sum(rows * freqs.get(w, floor) for w in {t for i in items for t in i}))

    def _pg_estimate_items(
        self, con: Connection, table: str, items: list[list[str]], where: str, query: str
    ) -> int:
        """The planner's row estimate for ``items`` (all of them), computed as it computes
        it (``tsquerysel``: the product of each lexeme's frequency among the column's most
        common elements, half the least frequent one's for another lexeme; a phrase like
        the AND of its words) from ``pg_stats``, read once per ``PG_STATS_TTL``: an
        ``EXPLAIN`` per query cost 5–37 ms at 1,000,000 pages. Without statistics (no
        ANALYZE yet) the planner is asked."""
        stats = self._pg_stats(con, table)
        if stats is None:
            return self._pg_estimate(con, where, query)
        rows, freqs, floor = stats
        selectivity = 1.0
        for word in {t for item in items for t in item}:
            selectivity *= freqs.get(word, floor)
        return max(1, round(rows * selectivity))

    def _pg_stats(
        self, con: Connection, table: str
    ) -> tuple[float, dict[str, float], float] | None:
        key = (self.db.url, table)
        now = time.monotonic()
        kept = _STATS_CACHE.get(key)
        if kept is not None and now - kept[1] < PG_STATS_TTL:
            return kept[0]
        row = con.execute(
            "SELECT c.reltuples, s.most_common_elems::text::text[], s.most_common_elem_freqs"
            " FROM pg_class c JOIN pg_stats s ON s.tablename = c.relname"
            " AND s.schemaname = current_schema() AND s.attname = 'vec'"
            " WHERE c.oid = to_regclass(?)",
            (table,),
        ).fetchone()
        if row is None or row[1] is None or float(row[0]) <= 0:
            return None  # not analysed yet: not kept, the next query looks again
        elems, freqs = list(row[1]), [float(f) for f in row[2]]
        # most_common_elem_freqs ends with the minimum, the maximum and the null fraction.
        floor = min(freqs[len(elems)] / 2, 0.005)  # ts_selfuncs.c: DEFAULT_TS_MATCH_SEL
        stats = (float(row[0]), dict(zip(elems, freqs, strict=False)), floor)
        _STATS_CACHE[key] = (stats, now)
        return stats

    def _pg_window(self, sql: dict[bool, str], args: list[object], walk: bool) -> list[Any]:
        """The window statement (``sql[walk]``) with the plan chosen: the walk (primary key
        from the newest page) or the GIN bitmap (cut by the primary key's range when there
        is one; the row addresses it finds read by a TID scan). On one held connection: the
        settings must reach the statement's session (a pooled statement borrows any
        connection), and are reset before it goes back."""
        off = "enable_bitmapscan" if walk else "enable_indexscan"
        return self._pg_planned(sql[walk], args, (off, "enable_seqscan"))

    def _pg_planned(self, sql: str, args: list[object], off: tuple[str, ...]) -> list[Any]:
        """``sql`` with the planner settings ``off`` switched off and ``work_mem`` at
        ``PG_WINDOW_WORK_MEM``, on one held connection (a pooled statement borrows any
        connection), reset before it goes back. The three statements go in one round trip
        (libpq's pipeline): each round trip is a wake-up of the server and of this
        process, dear on a loaded machine."""
        settings = dict.fromkeys(off, "off") | {
            "work_mem": PG_WINDOW_WORK_MEM,
            # No parallel workers: starting them costs more CPU than the window's ~3,000
            # rows save, on a server whose cores serve other searches and ingest.
            "max_parallel_workers_per_gather": "0",
            # A plan for these values: psycopg prepares a statement run 5 times, and after 5
            # more PostgreSQL may keep one generic plan for every value, which cannot know
            # the span's page range nor how common the words are.
            "plan_cache_mode": "force_custom_plan",
        }
        with self.db.pool().hold() as con:
            return con.fetch_with_settings(settings, sql, args)

    @staticmethod
    def _pg_count(con: Connection, table: str, query: str, exact_up_to: int) -> tuple[int, bool]:
        """Pages matching ``query``: exact below ``exact_up_to`` (the scan stops there),
        else the planner's estimate, at least ``exact_up_to``. (count, estimated)"""
        where = f"FROM {table} WHERE vec @@ ?::tsquery"  # (constants)
        sql = f"SELECT count(*) FROM (SELECT 1 {where} LIMIT ?) s"  # noqa: S608
        found = int(con.execute(sql, (query, exact_up_to)).fetchone()[0])
        if found < exact_up_to:
            return found, False
        return max(exact_up_to, Catalog._pg_estimate(con, where, query)), True

    @staticmethod
    def _pg_estimate(con: Connection, where: str, query: str) -> int:
        """The planner's row estimate for ``SELECT 1 <where>`` (tsvector statistics)."""
        plan = con.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 {where}", (query,)).fetchone()[0]
        return int(plan[0]["Plan"]["Plan Rows"])

    def _cutoff(self, con: Connection, table: str, match: str) -> int | None:
        """The lowest rowid of the newest ``candidate_budget`` matches; None when fewer
        match. Walks the doclist from its end and stops: ~1 ms for 5,000 of 100,000."""
        row = con.execute(
            f"SELECT rowid FROM {table} WHERE {table} MATCH ?"  # noqa: S608  (constants)
            " ORDER BY rowid DESC LIMIT 1 OFFSET ?",
            (match, self.candidate_budget - 1),
        ).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _count(con: Connection, table: str, match: str) -> int:
        """How many pages match: rowids only, no positions (2–4 ms for 90,000 matches)."""
        sql = f"SELECT count(*) FROM {table} WHERE {table} MATCH ?"  # noqa: S608  (constants)
        return int(con.execute(sql, (match,)).fetchone()[0])


# Per character below U+10000: its lower case (exact) or folded form when that is one
# character (else itself), and whether it is known yet. A page is mapped through the table
# by numpy in one step; characters never seen are filled first (fold() of each).
_BMP = 0x10000
_ALIGN: dict[bool, np.ndarray] = {e: np.zeros(_BMP, np.uint32) for e in (True, False)}
_KNOWN: dict[bool, np.ndarray] = {e: np.zeros(_BMP, np.bool_) for e in (True, False)}


def _aligned_char(c: str, exact: bool) -> str:
    f = c.lower() if exact else fold(c)
    return f if len(f) == 1 else c


_SPACE = re.compile(r"\s+")


def aligned(text: str, exact: bool) -> str:
    """``text`` lower-cased (exact) or folded, one character per character of ``text``, so
    offsets found in the result are offsets in ``text``. fold() of a whole NFC string keeps
    lengths for Vietnamese, but a stray combining mark or a letter whose lower case is two
    characters ("İ") would shift every later offset; per character they cannot.

    Through a table of code points indexed by numpy (the text as UTF-32): fold() per
    character cost ~1 ms per 2 KB page; ``str.translate`` with a dict table, ~80 µs per
    page (a Python lookup per character: ~4 ms of a 50-hit query's snippets); this, ~15 µs
    (docs/benchmarks.md, eighth sitting). A text with a character beyond U+FFFF is mapped
    character by character."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    if codes.size and int(codes.max()) >= _BMP:
        return "".join(_aligned_char(c, exact) for c in text)
    table, known = _ALIGN[exact], _KNOWN[exact]
    new = codes[~known[codes]]
    if new.size:
        for code in set(new.tolist()):
            table[code] = ord(_aligned_char(chr(code), exact))
            known[code] = True  # after its value: another thread may read it at once
    return table[codes].tobytes().decode("utf-32-le", "surrogatepass")


def query_terms(query: str) -> tuple[list[str], bool]:
    """The words of a query as search compares them, and whether it matches exactly."""
    parsed = parse_query(query)
    if parsed is None:
        return [], fold(query) != query.lower()
    return parsed.terms, parsed.exact


Span = tuple[int, int]


def match_spans(text: str, terms: list[str], exact: bool) -> list[Span]:
    """Where the terms occur in ``text``: sorted, non-overlapping ``(start, end)`` offsets
    into ``text`` itself (a longer term wins over a shorter one inside it)."""
    hay = aligned(text, exact)
    spans: list[Span] = []
    for term in sorted({t for t in terms if t}, key=len, reverse=True):
        start = hay.find(term)
        while start >= 0:
            end = start + len(term)
            if not any(s < end and start < e for s, e in spans):
                spans.append((start, end))
            start = hay.find(term, end)
    return sorted(spans)


def snippet(text: str, terms: list[str], exact: bool, width: int = 160) -> str:
    """A window of ``text`` around the first occurrence of the words as a phrase, else
    around the first hit (plain text; the page escapes it), about ``width`` characters cut
    at spaces, never inside a word ("…n Phú" showed a syllable's tail) unless one word is
    longer than the window's margin. One page of text per hit: callers bound the hits (one
    page of results)."""
    hay = aligned(text, exact)
    together = re.search(r"\W+".join(map(re.escape, terms)), hay) if len(terms) > 1 else None
    if together is not None:
        pos, hit_end = together.start(), together.end()
    else:
        found = [(i, i + len(t)) for t, i in ((t, hay.find(t)) for t in terms) if i >= 0]
        pos, hit_end = min(found, default=(0, 0))
    start = max(0, pos - width // 3)
    end = min(len(text), start + width)
    if start and not text[start - 1].isspace():
        space = _SPACE.search(text, start, pos)  # the first word wholly in the window
        start = space.end() if space else start
    if end < len(text) and not text[end].isspace():
        last = max(text.rfind(" ", max(hit_end, start), end), text.rfind("\n", 0, end))
        end = last if last > max(hit_end, start) else end
    piece = text[start:end].strip().replace("\n", " ")
    return ("…" if start else "") + piece + ("…" if end < len(text) else "")


def _epochs_fill(spans: list[tuple[int, int]], estimate: int, n: int, budget: int) -> bool:
    """Whether the epochs with an index should hold the window (``budget`` of the
    ``estimate`` matches, spread evenly over ``n`` pages). When they should not, each
    epoch's bitmap is read and then the whole index's for the rest: ten bitmaps for what one
    found (a rare subject through the pairs, ~10 ms more at 1,000,000 pages)."""
    covered = min(n, sum(hi - lo for lo, hi in spans))
    return estimate * covered >= budget * n


def _epoch_parts(spans: list[tuple[int, int]], n: int) -> list[str]:
    """The page ranges of an epoch window, newest first (``spans``: server.store.epochs.spans,
    newest first and contiguous): pages above the newest indexed epoch when there are any
    (the builder has not caught up: the whole index), each epoch in the form of its index's
    predicate, then every older page. The two open ends are written ``page_pk + 0`` so that
    PostgreSQL does not read them by walking the primary key and testing each row's vector
    (the whole index's bitmap is far cheaper for them)."""
    top = spans[0][1]
    parts = [f"page_pk + 0 >= {int(top)}"] if n >= top else []
    parts += [epochs.predicate(lo, hi) for lo, hi in spans]
    parts.append(f"page_pk + 0 < {int(spans[-1][0])}")
    return parts
