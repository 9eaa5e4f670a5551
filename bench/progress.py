"""The dashboard's per-commune progress over a large archive: the scan it costs against the
kept answer a page load gets (server.archive.progress.communes).

    python -m bench progress [--pages 100000] [--devices 100] [--db PATH_OR_URL] [--runs 3]

Builds a synthetic archive in the server's own schema (SQLite in a temporary directory unless
``--db`` names a file or a PostgreSQL URL): ``--devices`` stations, batches of 50 pages, each
page with the four parts a station sends (the capture stays on the station), committed over the
last 40 days, 5 % flagged for review. Then times, as CPU of this process and wall clock:
- **scan**: the question asked of the archive (``progress._communes``), what every dashboard
  load paid before the answer was kept, and what the first load and a load after a staff
  action still pay;
- **kept**: a dashboard load when nothing counted has moved (three index lookups).
The numbers are the median of ``--runs``; the ratio is scan / kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

from server.archive import progress
from server.store.db import Database

PAGES_PER_BATCH = 50
PARTS = ("capture", "archival", "thumb", "text")


def build(db: Database, pages: int, devices: int) -> None:
    rnd = random.Random(1)
    now = time.time()
    with db.tx() as con:
        for d in range(devices):
            con.execute(
                "INSERT INTO devices (device_id, first_seen, last_seen) VALUES (?, ?, ?)",
                (f"st{d:04}", now, now),
            )
        pk = 0
        for b in range(pages // PAGES_PER_BATCH):
            device = f"st{b % devices:04}"
            con.execute(
                "INSERT INTO batches (id, device_id, batch_id, created_at, received_at,"
                " page_count, source, agent_version) VALUES (?, ?, ?, ?, ?, ?, 'scan', '1')",
                (b + 1, device, f"b{b}", now, now, PAGES_PER_BATCH),
            )
            rows, parts = [], []
            for i in range(PAGES_PER_BATCH):
                pk += 1
                flags = '["review"]' if rnd.random() < 0.05 else "[]"
                rows.append((pk, b + 1, device, f"p{pk}", i + 1, "0" * 64, flags))
                at = now - rnd.random() * 40 * 86400
                for name in PARTS:
                    done = name != "capture"
                    parts.append(
                        (pk, name, "committed" if done else "receiving", at if done else None)
                    )
            con.executemany(
                "INSERT INTO pages (id, batch_pk, device_id, page_id, page_no, capture_sha256,"
                " capture_size, dpi, width_px, height_px, colour, flags)"
                " VALUES (?, ?, ?, ?, ?, ?, 1, 300, 2480, 3508, 0, ?)",
                rows,
            )
            con.executemany(
                "INSERT INTO parts (page_pk, name, sha256, size, media_type, state, committed_at)"
                " VALUES (?, ?, '', 1, 'application/octet-stream', ?, ?)",
                parts,
            )


def timed(fn: object, runs: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench progress", description=__doc__)
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--db", help="an archive to use (a SQLite file or postgresql:// URL)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        target = args.db or str(Path(tmp) / "archive.sqlite")
        db = Database(target)
        (have,) = db.read().execute("SELECT COUNT(*) FROM pages").fetchone()
        if int(have) == 0:
            started = time.monotonic()
            build(db, args.pages, args.devices)
            print(f"built {args.pages:,} pages in {time.monotonic() - started:.0f} s")
        (have,) = db.read().execute("SELECT COUNT(*) FROM pages").fetchone()
        today = dt.date.today()
        scan_wall, scan_cpu = timed(lambda: progress._communes(db, today), args.runs)
        progress.communes(db)  # the first load keeps the answer
        kept_wall, kept_cpu = timed(lambda: progress.communes(db), max(args.runs, 20))
        print(f"archive: {int(have):,} pages, {db.dialect}")
        print("| dashboard load | wall (ms, median) | CPU of this process (ms, median) |")
        print("|---|---|---|")
        print(f"| scan (first load, after a staff action) | {scan_wall:.1f} | {scan_cpu:.1f} |")
        print(f"| kept answer (nothing counted moved) | {kept_wall:.2f} | {kept_cpu:.2f} |")
        print(f"scan / kept: {scan_wall / max(kept_wall, 1e-3):,.0f}x (wall)")
    return 0
