"""The dashboard's per-commune progress and the plan page's per-fonds progress over a large
archive: the scan each costs against the kept answer a page load gets
(server.archive.progress.communes and .plan).

    python -m bench progress [--pages 100000] [--devices 100] [--engine sqlite|postgresql]
                             [--db PATH_OR_URL] [--runs 3]

Builds a synthetic archive in the server's own schema (SQLite in a temporary directory, or a
throwaway PostgreSQL server from tests/pgcluster.py with ``--engine postgresql``, unless
``--db`` names a file or a PostgreSQL URL): ``--devices`` stations, one fonds each, batches of
50 pages, each batch one planned hồ sơ whose cover sheet is its first page (plus 10 % of
planned hồ sơ nothing was scanned for), each page with the four parts a station sends (the
capture stays on the station), committed over the last 40 days, 5 % flagged for review.
Then times, as CPU of this process and wall clock:
- **scan**: the question asked of the archive (``progress._communes``, ``progress._plan``),
  what the first load of a server process pays;
- **kept**: a load when nothing counted has moved (index lookups).
The numbers are the median of ``--runs``; the ratio is scan / kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from server.archive import progress
from server.store.db import Database

ROOT = Path(__file__).resolve().parent.parent
PAGES_PER_BATCH = 50
PARTS = ("capture", "archival", "thumb", "text")
UNSCANNED_SHARE = 0.1  # planned hồ sơ with no page yet


def _device(d: int) -> str:
    return f"st{d:04}"


def _sheet(batch: int) -> str:
    return json.dumps({"cover_sheet": {"ma_ho_so": f"HS-{batch}"}})


def build(db: Database, pages: int, devices: int) -> None:
    """The archive, row by row through the server's Database (either engine)."""
    rnd = random.Random(1)
    now = time.time()
    batches = pages // PAGES_PER_BATCH
    with db.tx() as con:
        for d in range(devices):
            con.execute(
                "INSERT INTO devices (device_id, first_seen, last_seen) VALUES (?, ?, ?)",
                (_device(d), now, now),
            )
            con.execute(
                "INSERT INTO fonds (code, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (f"F{d:04}", f"Xã {d:04}", now, now),
            )
        planned = [
            (f"F{b % devices:04}", f"HS-{b + 1}", str(b + 1), 2020, f"Hồ sơ {b + 1}",
             PAGES_PER_BATCH - 1, "bench.csv", b + 1, now)
            for b in range(int(batches * (1 + UNSCANNED_SHARE)))
        ]  # fmt: skip
        con.executemany(
            "INSERT INTO planned_ho_so (fonds_code, code, ky_hieu, nam, tieu_de, so_trang,"
            " source, line, imported_at, imported_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'bench')",
            planned,
        )
        pk = 0
        for b in range(batches):
            device = _device(b % devices)
            con.execute(
                "INSERT INTO batches (id, device_id, batch_id, created_at, received_at,"
                " page_count, source, agent_version, complete_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'scan', '1', ?)",
                (b + 1, device, f"b{b}", now, now, PAGES_PER_BATCH, now),
            )
            rows, parts = [], []
            for i in range(PAGES_PER_BATCH):
                pk += 1
                if i == 0:
                    flags, decisions = '["separator"]', _sheet(b + 1)
                else:
                    flags = '["review"]' if rnd.random() < 0.05 else "[]"
                    decisions = "{}"
                rows.append((pk, b + 1, device, f"p{pk}", i + 1, "0" * 64, flags, decisions))
                at = now - rnd.random() * 40 * 86400
                for name in PARTS:
                    done = name != "capture"
                    parts.append(
                        (pk, name, "committed" if done else "receiving", at if done else None)
                    )
            con.executemany(
                "INSERT INTO pages (id, batch_pk, device_id, page_id, page_no, capture_sha256,"
                " capture_size, dpi, width_px, height_px, colour, flags, decisions)"
                " VALUES (?, ?, ?, ?, ?, ?, 1, 300, 2480, 3508, 0, ?, ?)",
                rows,
            )
            con.executemany(
                "INSERT INTO parts (page_pk, name, sha256, size, media_type, state, committed_at)"
                " VALUES (?, ?, '', 1, 'application/octet-stream', ?, ?)",
                parts,
            )


def build_postgresql(url: str, pages: int, devices: int) -> None:
    """The same archive with ``generate_series`` (a million pages in a few minutes)."""
    import psycopg

    Database(url).close()  # the server's schema
    now = time.time()
    batches = pages // PAGES_PER_BATCH
    per = PAGES_PER_BATCH
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(
            "INSERT INTO devices (device_id, first_seen, last_seen)"
            " SELECT 'st' || lpad(d::text, 4, '0'), %s, %s FROM generate_series(0, %s) d",
            (now, now, devices - 1),
        )
        con.execute(
            "INSERT INTO fonds (code, name, created_at, updated_at)"
            " SELECT 'F' || lpad(d::text, 4, '0'), 'Xã ' || lpad(d::text, 4, '0'), %s, %s"
            " FROM generate_series(0, %s) d",
            (now, now, devices - 1),
        )
        con.execute(
            "INSERT INTO planned_ho_so (fonds_code, code, ky_hieu, nam, tieu_de, so_trang,"
            " source, line, imported_at, imported_by)"
            " SELECT 'F' || lpad((b %% %s)::text, 4, '0'), 'HS-' || (b + 1), (b + 1)::text,"
            " 2020, 'Hồ sơ ' || (b + 1), %s, 'bench.csv', b + 1, %s, 'bench'"
            " FROM generate_series(0, %s) b",
            (devices, per - 1, now, int(batches * (1 + UNSCANNED_SHARE)) - 1),
        )
        con.execute(
            "INSERT INTO batches (id, device_id, batch_id, created_at, received_at, page_count,"
            " source, agent_version, complete_at)"
            " SELECT b + 1, 'st' || lpad((b %% %s)::text, 4, '0'), 'b' || b, %s, %s, %s,"
            " 'scan', '1', %s FROM generate_series(0, %s) b",
            (devices, now, now, per, now, batches - 1),
        )
        # Page g of batch (g - 1) / per + 1; its first page is the cover sheet; 5 % of the rest
        # flagged for review (a hash of the id, the same pages every build).
        con.execute(
            "INSERT INTO pages (id, batch_pk, device_id, page_id, page_no, capture_sha256,"
            " capture_size, dpi, width_px, height_px, colour, flags, decisions)"
            " SELECT g, (g - 1) / %(per)s + 1,"
            " 'st' || lpad((((g - 1) / %(per)s) %% %(dev)s)::text, 4, '0'), 'p' || g,"
            " (g - 1) %% %(per)s + 1, repeat('0', 64), 1, 300, 2480, 3508, 0,"
            " CASE WHEN (g - 1) %% %(per)s = 0 THEN '[\"separator\"]'"
            "  WHEN hashint4(g) %% 20 = 0 THEN '[\"review\"]' ELSE '[]' END,"
            " CASE WHEN (g - 1) %% %(per)s = 0 THEN"
            '  \'{"cover_sheet": {"ma_ho_so": "HS-\' || ((g - 1) / %(per)s + 1) || \'"}}\''
            "  ELSE '{}' END"
            " FROM generate_series(1, %(n)s) g",
            {"per": per, "dev": devices, "n": batches * per},
        )
        con.execute(
            "INSERT INTO parts (page_pk, name, sha256, size, media_type, state, committed_at)"
            " SELECT g, n.name, '', 1, 'application/octet-stream',"
            "  CASE WHEN n.name = 'capture' THEN 'receiving' ELSE 'committed' END,"
            "  CASE WHEN n.name = 'capture' THEN NULL"
            "  ELSE %s - (hashint4(g) & 1048575) / 1048576.0 * 40 * 86400 END"
            " FROM generate_series(1, %s) g,"
            " (VALUES ('capture'), ('archival'), ('thumb'), ('text')) n(name)",
            (now, batches * per),
        )
        for table in ("batches", "pages", "parts"):
            con.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
        con.execute("VACUUM ANALYZE")


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
    ap.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--db", help="an archive to use (a SQLite file or postgresql:// URL)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    cluster = None
    with tempfile.TemporaryDirectory() as tmp:
        target = args.db
        started = time.monotonic()
        if target is None and args.engine == "postgresql":
            sys.path.insert(0, str(ROOT / "tests"))
            from pgcluster import PostgresCluster

            cluster = PostgresCluster().start()
            target = cluster.create_database("bench")
            build_postgresql(target, args.pages, args.devices)
            print(f"built {args.pages:,} pages in {time.monotonic() - started:.0f} s")
        db = Database(target or str(Path(tmp) / "archive.sqlite"))
        try:
            (have,) = db.read().execute("SELECT COUNT(*) FROM pages").fetchone()
            if int(have) == 0:
                build(db, args.pages, args.devices)
                print(f"built {args.pages:,} pages in {time.monotonic() - started:.0f} s")
            (have,) = db.read().execute("SELECT COUNT(*) FROM pages").fetchone()
            today = dt.date.today()
            rows = []
            for name, scan, kept in (
                ("dashboard `/` (per commune)",
                 lambda: progress.communes(db, today), lambda: progress.communes(db)),
                ("plan `/plan` (per fonds)",
                 lambda: progress.plan(db, today), lambda: progress.plan(db)),
            ):  # fmt: skip
                scan_wall, scan_cpu = timed(scan, args.runs)
                kept()  # the first load keeps the answer
                kept_wall, kept_cpu = timed(kept, max(args.runs, 20))
                rows.append((name, scan_wall, scan_cpu, kept_wall, kept_cpu))
            print(f"archive: {int(have):,} pages, {db.dialect}")
            print(
                "| page | scan: wall (ms) | scan: CPU of this process (ms) | kept: wall (ms)"
                " | kept: CPU (ms) | scan / kept (wall) |"
            )
            print("|---|---|---|---|---|---|")
            for name, sw, sc, kw, kc in rows:
                print(
                    f"| {name} | {sw:,.1f} | {sc:,.1f} | {kw:.2f} | {kc:.2f}"
                    f" | {sw / max(kw, 1e-3):,.0f}x |"
                )
        finally:
            db.close()
            if cluster is not None:
                cluster.stop()
    return 0
