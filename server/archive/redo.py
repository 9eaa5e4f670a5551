"""Redo a page's decisions at the archive from its capture, with the station's own code.

The server must not import `agent` (docs/architecture.md), so the pipeline runs as a separate
process: `sohoa-agent reprocess CAPTURE --out DIR` from the same installation (the server host
needs the agent extra and tesseract with `vie`; `pip install .[agent]`). This module owns
finding and re-verifying the capture (its sha256 recomputed before anything runs), the folder
the new result goes to — beside the old, never over it:
`<data_dir>/reprocessed/page-<id>/<UTC time>/` with the pipeline's outputs and `result.json` —
and the audit line. It must not replace the page's archival part or its text.

Staff compare and choose (the staff app's "Làm lại" page, server.web.redo): :func:`results`
reads each result folder back (only folders named by a UTC stamp, only files inside them),
:func:`choose` records the choice — "new" (the redone result is the better reading) or "old"
(the station's stays) — in ``redo_choices`` with the sha256 of the files compared, and in
the audit log. The choice does not yet swap the stored archival part, the search text or
what exports carry: those stay the station's until that step is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.archive import audit
from server.archive.catalog import Catalog
from server.store import objects
from server.store.db import Database

TIMEOUT_S = 600  # one page: seconds of tesseract time; minutes on a loaded host


class RedoError(Exception):
    pass


@dataclass(frozen=True)
class Redone:
    page: int
    folder: Path
    result: dict[str, Any]


def agent_command() -> str:
    """`sohoa-agent` of this installation (beside our interpreter), else on PATH."""
    beside = Path(sys.executable).parent / "sohoa-agent"
    found = str(beside) if beside.exists() else shutil.which("sohoa-agent")
    if not found:
        raise RedoError("sohoa-agent not installed here: pip install '.[agent]' on this host")
    return found


def reprocess(db: Database, data_dir: Path, page: int, actor: str) -> Redone:
    capture = Catalog(db).part_file(page, "capture")
    if capture is None:
        raise RedoError(f"page {page}: its capture has not arrived (sync_masters or a USB export)")
    # A local copy when the capture is in the object store (the agent opens a file).
    suffix = Path(capture.location).suffix
    with objects.local_file(capture.location, suffix=suffix) as source:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if digest != capture.sha256:
            raise RedoError(f"page {page}: capture {capture.location} does not match its sha256")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder = data_dir / "reprocessed" / f"page-{page}" / stamp
        folder.mkdir(parents=True, exist_ok=False)
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        done = subprocess.run(
            [agent_command(), "reprocess", str(source), "--out", str(folder)],
            capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RedoError(f"page {page}: sohoa-agent reprocess failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result |= {"page": page, "capture_sha256": digest, "at": stamp}
    (folder / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    audit.record(db, actor, "page.reprocess", str(page), {"folder": str(folder)})
    return Redone(page, folder, result)


STAMP = re.compile(r"^\d{8}T\d{6}Z$")
CHOICES = ("new", "old")


@dataclass(frozen=True)
class RedoResult:
    """One redone result of a page, read back from its folder."""

    stamp: str
    archival: Path | None  # the redone archival PDF/A (inside the folder), if written
    archival_sha256: str
    text: str
    text_sha256: str
    flags: list[str]
    ocr_confidence: float | None


def _inside(folder: Path, name: object) -> Path | None:
    if not isinstance(name, str) or not name:
        return None
    path = Path(name)
    path = path if path.is_absolute() else folder / path
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return None
    return resolved if resolved.parent == folder.resolve() and resolved.is_file() else None


def _sha256(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else ""


def results(data_dir: Path, page: int) -> list[RedoResult]:
    """The page's redone results, newest first (unreadable folders left out)."""
    root = data_dir / "reprocessed" / f"page-{int(page)}"
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir(), reverse=True):
        found = result(data_dir, page, folder.name)
        if found is not None:
            out.append(found)
    return out


def count(data_dir: Path, page: int) -> int:
    """How many redone results the page has (folders only: for a link)."""
    root = data_dir / "reprocessed" / f"page-{int(page)}"
    if not root.is_dir():
        return 0
    return sum(1 for f in root.iterdir() if STAMP.match(f.name) and (f / "result.json").is_file())


def result(data_dir: Path, page: int, stamp: str) -> RedoResult | None:
    """One result by its stamp; None unless it is a complete, well-formed folder."""
    if not STAMP.match(stamp):
        return None
    folder = data_dir / "reprocessed" / f"page-{int(page)}" / stamp
    try:
        doc = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    archival = _inside(folder, doc.get("archival"))
    text_path = _inside(folder, doc.get("text"))
    text = text_path.read_text(encoding="utf-8", errors="replace") if text_path else ""
    confidence = doc.get("ocr_confidence")
    return RedoResult(
        stamp=stamp,
        archival=archival,
        archival_sha256=_sha256(archival),
        text=text,
        text_sha256=_sha256(text_path),
        flags=[str(f) for f in doc.get("flags", []) if isinstance(f, str)],
        ocr_confidence=float(confidence) if isinstance(confidence, int | float) else None,
    )


def choose(
    db: Database, data_dir: Path, page: int, stamp: str, choice: str, actor: str, ip: str = ""
) -> bool:
    """Record ``choice`` ("new" or "old") for the result ``stamp`` of ``page``, with the
    sha256 of its files, and audit it. False when there is no such result or choice."""
    found = result(data_dir, page, stamp)
    if found is None or choice not in CHOICES:
        return False
    with db.tx() as con:
        con.execute(
            "INSERT INTO redo_choices(page_pk, stamp, choice, archival_sha256, text_sha256,"
            " chosen_by, chosen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (page, stamp, choice, found.archival_sha256, found.text_sha256, actor, time.time()),
        )
        audit.append(
            con,
            actor,
            "page.redo.choose",
            str(page),
            {"stamp": stamp, "choice": choice, "archival_sha256": found.archival_sha256},
            ip,
        )
    return True


def chosen(db: Database, page: int) -> dict[str, Any] | None:
    """The latest choice for ``page`` (None: none made)."""
    row = (
        db.read()
        .execute(
            "SELECT stamp, choice, chosen_by, chosen_at FROM redo_choices WHERE page_pk = ?"
            " ORDER BY id DESC LIMIT 1",
            (page,),
        )
        .fetchone()
    )
    return dict(row) if row else None
