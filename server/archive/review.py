"""The review queue: pages the device flagged (blank, low OCR confidence, text likely wrong,
rotated, below 200 dpi, failed legal check, processing failed) that nobody has decided on yet.

A page flagged ``review`` carries the device's judgement of its text in its decisions
(``quality``: a 0–100 score and the reasons, agent/pipeline/quality.py); the queue passes
the score and reasons on, lowest score first within a batch is left to the reader.

A decision is a row in ``reviews`` (and one in the audit log); the page and its files are
never changed here. Decisions: ``accept``; ``rotate`` (90/180/270 degrees: a new, turned
archival version beside the original, :mod:`server.archive.rotation`; only a page without an
archival PDF is shown turned by the viewer, ``page_views``); ``rescan`` (ask the commune to
scan the page again: :mod:`server.archive.rescan`).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Literal

from server.archive import audit
from server.archive import rotation as turns
from server.store.db import Database

REVIEW_FLAGS = ("blank", "low_confidence", "review", "rotated", "below_200dpi", "dpi_unknown",
                "legal_fail", "processing_failed")  # fmt: skip
Action = Literal["accept", "rotate", "rescan"]
ROTATIONS = (0, 90, 180, 270)


def queue(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    rows = db.read().execute(
        "SELECT p.id, p.page_no, p.batch_pk, p.device_id, p.flags, p.ocr_confidence, p.dpi,"
        " p.decisions, b.batch_id, b.profile, EXISTS (SELECT 1 FROM parts c WHERE c.page_pk = p.id"
        " AND c.name = 'capture' AND c.state = 'committed') AS has_capture"
        " FROM pages p JOIN batches b ON b.id = p.batch_pk"
        " WHERE p.flags != '[]' AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.page_pk = p.id)"
        " ORDER BY p.batch_pk DESC, p.page_no"
    )
    out = []
    for r in rows:
        flags = [f for f in json.loads(r["flags"]) if f in REVIEW_FLAGS]
        if flags:
            row = {k: v for k, v in dict(r).items() if k != "decisions"}
            row["has_capture"] = bool(row["has_capture"])
            out.append({**row, "flags": flags, **_quality(r["decisions"])})
        if len(out) >= limit:
            break
    return out


def page_quality(db: Database, page_pk: int) -> dict[str, Any]:
    """What the device judged of one page's text, for its viewer: the score and reasons
    (`_quality`) and, when text left unread is one of the reasons, where (`unread_boxes`)."""
    row = db.read().execute("SELECT decisions FROM pages WHERE id = ?", (page_pk,)).fetchone()
    return judged_text(_decisions(row[0] if row else None))


def judged_text(decisions: dict[str, Any]) -> dict[str, Any]:
    """`page_quality` of a page's decisions: boxes only when unread text is a reason (the
    station found a little on most pages, within what a page read right leaves)."""
    judged = _quality(decisions)
    unread = "unread_text" in judged["quality_reasons"]
    return {
        **judged,
        "unread_boxes": unread_boxes(decisions) if unread else [],
        "turned_sideways": _turned_sideways(decisions),
    }


def _turned_sideways(decisions: dict[str, Any]) -> bool:
    """Whether the station turned the page by 90 or 270 degrees (its ``orientation``
    decision): the archival page is then the capture's width high and its height wide."""
    orientation = decisions.get("orientation")
    turn = orientation.get("turn_cw") if isinstance(orientation, dict) else None
    return turn in (90, 270) and not isinstance(turn, bool)


def _decisions(raw: str | None) -> dict[str, Any]:
    try:
        decisions = json.loads(raw or "{}")
    except ValueError:
        return {}
    return decisions if isinstance(decisions, dict) else {}


UNREAD_BOXES_SHOWN = 20  # as many as a station keeps (agent/pipeline/process.py)


def unread_boxes(decisions: dict[str, Any]) -> list[dict[str, float]]:
    """Where the device saw word-shaped ink that its reading left out (`decisions`'
    ``unread_text``, agent/pipeline/process.py `_unread_record`), as fractions of the page
    tesseract read — the archival page's geometry, turned and deskewed —, so that the viewer
    draws them at any zoom. The boxes still unread after the station read them again
    (``reread.boxes_after``) when it did. [] when the record is missing, malformed, or from
    an agent that did not record the image's size (before the sixteenth sitting)."""
    record = decisions.get("unread_text")
    if not isinstance(record, dict):
        return []
    reread = record.get("reread")
    boxes = record.get("boxes")
    if isinstance(reread, dict) and "boxes_after" in reread:
        boxes = reread["boxes_after"]
    size = record.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(_positive(v) for v in size)):
        return []
    if not isinstance(boxes, list):
        return []
    width, height = float(size[0]), float(size[1])
    out = []
    for box in boxes[:UNREAD_BOXES_SHOWN]:
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
            continue
        # The box's part on the page, in fractions of it.
        left, top = max(box[0] / width, 0.0), max(box[1] / height, 0.0)
        right = min((box[0] + box[2]) / width, 1.0)
        bottom = min((box[1] + box[3]) / height, 1.0)
        if right > left and bottom > top:
            out.append(
                {
                    "left": round(left, 5),
                    "top": round(top, 5),
                    "width": round(right - left, 5),
                    "height": round(bottom - top, 5),
                }
            )
    return out


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v: object) -> bool:
    return _number(v) and float(v) > 0  # type: ignore[arg-type]


def _quality(decisions: str | dict[str, Any] | None) -> dict[str, Any]:
    """The device's text score and reasons (None and [] for pages from older agents)."""
    if not isinstance(decisions, dict):
        decisions = _decisions(decisions)
    judged = decisions.get("quality") or {}
    score = judged.get("score") if isinstance(judged, dict) else None
    reasons = judged.get("reasons") if isinstance(judged, dict) else None
    return {
        "quality_score": float(score) if isinstance(score, int | float) else None,
        "quality_reasons": [str(x) for x in reasons] if isinstance(reasons, list) else [],
    }


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


def rotate(db: Database, page_pk: int, degrees: int, actor: str, ip: str = "") -> bool:
    """Turn the page ``degrees`` clockwise from its original (0 undoes it); False if no such
    page. Also a review decision: the page leaves the queue.

    A page whose archival file is a PDF gets a new, turned archival version that exports use
    (:mod:`server.archive.rotation`; the original is kept). A page without one (not arrived
    yet, or a JPEG from an older agent) can only be shown turned: the viewer applies it."""
    if degrees not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}")
    try:
        return turns.rotate(db, page_pk, degrees, actor, ip) is not None
    except turns.RotationError:
        return _rotate_view(db, page_pk, degrees, actor, ip)


def _rotate_view(db: Database, page_pk: int, degrees: int, actor: str, ip: str) -> bool:
    with db.tx() as con:
        if con.execute("SELECT 1 FROM pages WHERE id = ?", (page_pk,)).fetchone() is None:
            return False
        now = time.time()
        con.execute(
            "INSERT INTO page_views(page_pk, rotation, updated_at, updated_by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(page_pk) DO UPDATE SET rotation = excluded.rotation,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (page_pk, degrees, now, actor),
        )
        con.execute(
            "INSERT INTO reviews(page_pk, action, actor, at, note) VALUES (?, 'rotate', ?, ?, ?)",
            (page_pk, actor, now, str(degrees)),
        )
        audit.append(con, actor, "review.rotate", str(page_pk), {"degrees": degrees}, ip)
    return True


def rotation(db: Database, page_pk: int) -> int:
    row = db.read().execute("SELECT rotation FROM page_views WHERE page_pk = ?", (page_pk,))
    found = row.fetchone()
    return int(found["rotation"]) if found else 0
