"""The one search of the archive: page text and hồ sơ / văn bản metadata, merged.

Both the staff search page (``server.web``) and ``GET /api/v1/search`` (``server.web.api``) call
:func:`search`, so they show the same hits for the same query. A hit is data: the text to
show and where the query's words occur in it (``spans``, offsets in that text); the web
layer escapes and marks them, the API returns them as they are.

Owns: merging the two result lists and choosing the line a metadata hit shows. Must not:
render (no HTML here), write, or rank pages itself (``Catalog.search_page`` does; metadata
ranking is ``Records.search``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from server.archive import access
from server.archive.auth import Principal
from server.archive.catalog import MAX_OFFSET, Catalog, aligned, match_spans, query_terms
from server.archive.records import Records

# How many characters of a metadata hit's matching line are shown.
META_LINE = 200


class SearchResult(NamedTuple):
    pages: list[dict[str, Any]]  # Catalog.search_page hits, each with "spans" in "snippet"
    records: list[dict[str, Any]]  # hồ sơ / văn bản, each with "snippet" and its "spans"
    total: int  # pages with every word (paging counts pages only)
    estimated: bool = False


def search(
    catalog: Catalog,
    records: Records,
    query: str,
    reader: Principal,
    limit: int = 50,
    offset: int = 0,
) -> SearchResult:
    """Pages (``limit`` from ``offset``, best first), and on the first page of results the
    hồ sơ and văn bản whose metadata match (same diacritic rules) — those ``reader`` may
    read (server.archive.access: chế độ sử dụng and place). Pages are ranked and counted
    among those ``reader`` may open (access.page_filter), so the total is exactly what
    paging can reach, and says nothing of pages hidden from this reader."""
    if not query.strip():
        return SearchResult([], [], 0)
    offset = max(0, min(offset, MAX_OFFSET))
    visible = access.page_filter(catalog.db, reader)
    found = catalog.search_page(query, limit, offset, visible)
    readable = access.readable_pages(catalog.db, reader, [h["page"] for h in found.hits])
    pages = [h for h in found.hits if h["page"] in readable]
    meta = records.search(query) if not offset else []
    open_ho_so = access.readable_ho_so(catalog.db, reader, [m["ma_ho_so"] for m in meta])
    meta = [m for m in meta if m["ma_ho_so"] in open_ho_so]
    terms, exact = query_terms(query)
    out = []
    for m in meta:
        line = meta_line(m["text"], terms, exact)
        out.append(
            {
                "kind": m["kind"],
                "ma_ho_so": m["ma_ho_so"],
                "title": m["title"],
                "snippet": line,
                "spans": match_spans(line, terms, exact),
                "score": m["score"],
            }
        )
    return SearchResult(pages, out, found.total, found.estimated)


def meta_line(text: str, terms: list[str], exact: bool) -> str:
    """The line of a hồ sơ's or văn bản's metadata a hit shows: the first with one of the
    words (else the first line), at most ``META_LINE`` characters, cut between words."""
    lines = [ln for ln in text.splitlines() if ln.strip()] or [""]
    hit = next((ln for ln in lines if any(t in aligned(ln, exact) for t in terms)), lines[0])
    if len(hit) <= META_LINE:
        return hit
    cut = hit.rfind(" ", 0, META_LINE + 1)
    return hit[: cut if cut > 0 else META_LINE].rstrip() + "…"
