"""Redo a page's decisions at the archive from its capture, with the station's own code.

The server must not import `agent` (docs/architecture.md), so the pipeline runs as a separate
process: `sohoa-agent reprocess CAPTURE --out DIR` from the same installation (the server host
needs the agent extra and tesseract with `vie`; `pip install .[agent]`). This module owns
finding and re-verifying the capture (its sha256 recomputed before anything runs), the folder
the new result goes to — beside the old, never over it:
`<data_dir>/reprocessed/page-<id>/<UTC time>/` with the pipeline's outputs and `result.json` —
and the audit line. It must not replace the page's archival part or its text: staff compare
and choose (not built yet: the result is files and an audit row).
"""

from __future__ import annotations

import hashlib
import json
import os
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
