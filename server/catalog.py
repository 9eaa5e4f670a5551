"""Read side of the archive: what the API and the staff pages show. No writes here."""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from server.db import Database, fold


@dataclass(frozen=True)
class PartFile:
    path: Path
    media_type: str
    sha256: str


def _batch_row(row: sqlite3.Row) -> dict[str, Any]:
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
    }


_BATCH_SELECT = (
    "SELECT b.*, (SELECT COUNT(*) FROM pages p WHERE p.batch_pk = b.id AND NOT EXISTS"
    " (SELECT 1 FROM parts t WHERE t.page_pk = p.id AND t.state != 'committed'"
    "  AND t.name != 'capture')) AS pages_received FROM batches b"
)


class Catalog:
    def __init__(self, db: Database) -> None:
        self.db = db

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

    def _page(self, con: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
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
        row = (
            self.db.read()
            .execute(
                "SELECT path, media_type, sha256 FROM parts WHERE page_pk = ? AND name = ?"
                " AND state = 'committed'",
                (page_pk, name),
            )
            .fetchone()
        )
        if row is None or not row["path"]:
            return None
        return PartFile(Path(row["path"]), row["media_type"], row["sha256"])

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

    def pages_in_records(self) -> dict[str, int]:
        """Per device: how many of its pages are already described in a văn bản."""
        rows = self.db.read().execute(
            "SELECT p.device_id, COUNT(DISTINCT p.id) FROM pages p"
            " JOIN van_ban_pages v ON v.page_pk = p.id GROUP BY p.device_id"
        )
        return {r[0]: int(r[1]) for r in rows}

    def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Full-text search. A query without diacritics matches with or without them
        ("khoang san" finds "khoáng sản"); a query with diacritics matches exactly."""
        query = unicodedata.normalize("NFC", query).strip()
        words = re.findall(r"\w+", query)
        if not words:
            return []
        exact = fold(query) != query.lower()
        table, column = ("page_fts_exact", "text") if exact else ("page_fts", "folded")
        terms = [w.lower() if exact else fold(w) for w in words]
        match = " ".join('"' + t.replace('"', '""') + '"' for t in terms)
        con = self.db.read()
        rows = con.execute(
            # table and column come from the two constants above, never from the query.
            f"SELECT rowid, bm25({table}) AS score FROM {table} WHERE {column} MATCH ?"  # noqa: S608
            " ORDER BY score LIMIT ?",
            (match, limit),
        ).fetchall()
        out = []
        for r in rows:
            page = con.execute(
                "SELECT p.id, p.page_no, p.batch_pk, p.device_id, t.text FROM pages p"
                " JOIN page_text t ON t.page_pk = p.id WHERE p.id = ?",
                (r["rowid"],),
            ).fetchone()
            if page is None:
                continue
            out.append(
                {
                    "page": page["id"],
                    "page_no": page["page_no"],
                    "batch": page["batch_pk"],
                    "device_id": page["device_id"],
                    "snippet": snippet(page["text"], terms, exact),
                    "score": r["score"],
                }
            )
        return out


def aligned(text: str, exact: bool) -> str:
    """``text`` lower-cased (exact) or folded, one character per character of ``text``, so
    offsets found in the result are offsets in ``text``. fold() of a whole NFC string keeps
    lengths for Vietnamese, but a stray combining mark or a letter whose lower case is two
    characters ("İ") would shift every later offset; per character they cannot."""
    out = []
    for c in text:
        f = c.lower() if exact else fold(c)
        out.append(f if len(f) == 1 else c)
    return "".join(out)


def query_terms(query: str) -> tuple[list[str], bool]:
    """The words of a query as search compares them, and whether it matches exactly."""
    query = unicodedata.normalize("NFC", query).strip()
    exact = fold(query) != query.lower()
    words = re.findall(r"\w+", query)
    return [w.lower() if exact else fold(w) for w in words], exact


def highlight(text: str, terms: list[str], exact: bool) -> Markup:
    """``text`` HTML-escaped with every occurrence of a term wrapped in <mark>."""
    hay = aligned(text, exact)
    spans: list[tuple[int, int]] = []
    for term in sorted({t for t in terms if t}, key=len, reverse=True):
        start = hay.find(term)
        while start >= 0:
            end = start + len(term)
            if not any(s < end and start < e for s, e in spans):
                spans.append((start, end))
            start = hay.find(term, end)
    out, pos = [], 0
    for s, e in sorted(spans):
        out.append(escape(text[pos:s]))
        out.append(Markup("<mark>") + escape(text[s:e]) + Markup("</mark>"))
        pos = e
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def snippet(text: str, terms: list[str], exact: bool, width: int = 160) -> str:
    """A window of ``text`` around the first hit (plain text; the page escapes it)."""
    hay = aligned(text, exact)
    pos = min((i for i in (hay.find(t) for t in terms) if i >= 0), default=0)
    start = max(0, pos - width // 3)
    piece = text[start : start + width].replace("\n", " ")
    return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")
