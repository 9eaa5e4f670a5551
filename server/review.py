"""The review queue: pages the device flagged (blank, low OCR confidence, rotated, below
200 dpi, failed legal check, processing failed) that nobody has decided on yet.

A decision is a row in ``reviews`` (and one in the audit log); the page and its files are
never changed here. Only "accept" exists so far: rotating a page and asking the commune for a
re-scan (a ``Command`` back to the device over MQTT) come later.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from server import audit
from server.db import Database

REVIEW_FLAGS = ("blank", "low_confidence", "rotated", "below_200dpi", "legal_fail",
                "processing_failed")  # fmt: skip
Action = Literal["accept"]


def queue(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    rows = db.read().execute(
        "SELECT p.id, p.page_no, p.batch_pk, p.device_id, p.flags, p.ocr_confidence, p.dpi,"
        " b.batch_id FROM pages p JOIN batches b ON b.id = p.batch_pk"
        " WHERE p.flags != '[]' AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.page_pk = p.id)"
        " ORDER BY p.batch_pk DESC, p.page_no"
    )
    out = []
    for r in rows:
        flags = [f for f in json.loads(r["flags"]) if f in REVIEW_FLAGS]
        if flags:
            out.append({**dict(r), "flags": flags})
        if len(out) >= limit:
            break
    return out


def decide(db: Database, page_pk: int, action: Action, actor: str, note: str = "",
           ip: str = "") -> bool:  # fmt: skip
    """Record a decision; False if there is no such page."""
    with db.tx() as con:
        if con.execute("SELECT 1 FROM pages WHERE id = ?", (page_pk,)).fetchone() is None:
            return False
        con.execute(
            "INSERT INTO reviews(page_pk, action, actor, at, note) VALUES (?, ?, ?, ?, ?)",
            (page_pk, action, actor, time.time(), note[:500]),
        )
        audit.append(con, actor, f"review.{action}", str(page_pk), {"note": note[:500]}, ip)
    return True
