"""Benchmark: full-text search latency over a large archive (issue 6: p95 ≤ 50 ms).

    python -m bench search [--pages 100000] [--queries 300] [--http 100] [--keep DIR]

Builds a SQLite archive of ``--pages`` synthetic pages of Vietnamese administrative text
(~2 KB each, NFC, with diacritics) directly through ``server.store.db.Database.index_text``, in
one transaction (the schema, FTS tables and tokenizer the server uses), then measures, in the
same run and on the same queries:

- ``server.archive.catalog.Catalog.search`` (FTS5, phrase tier then all words, bm25 over at most
  ``CANDIDATE_BUDGET`` candidates per tier, top 50, the snippet built per hit) for queries
  of 1, 2 and 3 words, with diacritics (exact table) and without (folded table);
- the same queries through the HTTP API (FastAPI TestClient: routing, auth, JSON);
- the previous ranking: FTS5 ``ORDER BY bm25() LIMIT 50`` over every match (no snippets);
- the baseline: a naive ``LIKE '%word%'`` scan over ``page_text`` (every word, AND, LIMIT 50);
- how many pages match all the words, and the words as a phrase (the common-word problem);
- ranking quality: of the top 50, how many have the words together (a Vietnamese word is
  several syllables: "khoáng sản"), now and with bm25 of every match.

Queries take words from the vocabulary with the frequency they have in the text (common
words like "xã" match most pages: the worst case for ranking).

``--engine postgresql`` runs the same on a throwaway PostgreSQL server (tests/pgcluster.py,
Debian's postgresql): the archive is built there, search is the tsvector/GIN path of
``Catalog.search``, "every match" is ``ts_rank`` of every page with all the words, and the
baseline is the same ``LIKE`` scan.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from server.store import pg
from server.store.db import Connection, Database, fold

ROOT = Path(__file__).resolve().parent.parent

VOCAB_TEXT = (
    "ủy ban nhân dân xã phường thị trấn huyện tỉnh thành phố cộng hòa xã hội chủ nghĩa "
    "việt nam độc lập tự do hạnh phúc quyết định về việc phê duyệt kế hoạch năm báo cáo "
    "tình hình thực hiện nhiệm vụ công văn thông báo tờ trình biên bản hội nghị nghị quyết "
    "hội đồng chủ tịch phó chủ tịch ủy viên thư ký cán bộ công chức địa chính xây dựng "
    "tư pháp hộ tịch văn hóa xã hội tài chính kế toán quân sự công an trưởng thôn ấp bản "
    "khu phố tổ dân phố đất đai giấy chứng nhận quyền sử dụng đất nhà ở tài sản gắn liền "
    "với hộ gia đình cá nhân khai sinh khai tử kết hôn chứng thực bản sao hợp đồng chuyển "
    "nhượng thừa kế tặng cho thế chấp giải quyết khiếu nại tố cáo kiến nghị phản ánh xử lý "
    "vi phạm hành chính khai thác khoáng sản trái phép bảo vệ môi trường rừng thủy lợi "
    "giao thông nông thôn mới xóa đói giảm nghèo chính sách người có công thương binh liệt "
    "sĩ bảo hiểm y tế giáo dục trường học trạm y tế dân số kế hoạch hóa gia đình ngân sách "
    "thu chi dự toán quyết toán đầu tư công trình hạng mục nghiệm thu bàn giao lưu trữ hồ "
    "sơ tài liệu số hóa danh mục mục lục thời hạn bảo quản vĩnh viễn căn cứ luật tổ chức "
    "chính quyền địa phương nghị định thông tư hướng dẫn điều khoản kính gửi nơi nhận như "
    "trên lưu văn phòng ký tên đóng dấu ngày tháng"
)
VOCAB = VOCAB_TEXT.split()


def _vocabulary(seed: int) -> tuple[list[str], list[float]]:
    words = list(dict.fromkeys(VOCAB))
    rng = random.Random(seed)
    rng.shuffle(words)
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(words))]  # Zipf-like
    return words, weights


def page_text(rng: random.Random, words: list[str], weights: list[float]) -> str:
    """~2 KB: lines of 8–14 words, as OCR of a typed page reads."""
    lines, size = [], 0
    while size < 2000:
        line = " ".join(rng.choices(words, weights, k=rng.randint(8, 14)))
        line = line[0].upper() + line[1:]
        lines.append(line)
        size += len(line.encode()) + 1
    return "\n".join(lines)


def build(path: Path | str, pages: int, seed: int = 6) -> tuple[float, int]:
    """The archive at ``path`` (or a PostgreSQL URL): batches of 100 pages and their text.
    (seconds, bytes)."""
    words, weights = _vocabulary(seed)
    rng = random.Random(seed)
    db = Database(path)
    started = time.perf_counter()
    with db.tx() as con:
        con.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen) VALUES ('xa-bench-01', 0, 0)"
        )
        for first in range(0, pages, 100):
            count = min(100, pages - first)
            batch_pk = con.execute(
                "INSERT INTO batches(device_id, batch_id, created_at, received_at, page_count,"
                " source, agent_version) VALUES ('xa-bench-01', ?, 0, 0, ?, 'scan', 'bench')"
                " RETURNING id",
                (f"{first:032x}", count),
            ).fetchall()[0][0]
            for n in range(count):
                page_pk = con.execute(
                    "INSERT INTO pages(batch_pk, device_id, page_id, page_no, capture_sha256,"
                    " capture_size, dpi, width_px, height_px, colour)"
                    " VALUES (?, 'xa-bench-01', ?, ?, '', 0, 300, 2480, 3508, 1) RETURNING id",
                    (batch_pk, f"{first + n:032x}", n + 1),
                ).fetchall()[0][0]
                db.index_text(con, page_pk, page_text(rng, words, weights))
    seconds = time.perf_counter() - started
    if db.dialect == "sqlite":
        db.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = Path(path).stat().st_size
    else:
        db.connect().execute("VACUUM ANALYZE")  # as autovacuum would, soon after a bulk load
        size = int(db.read().execute("SELECT pg_database_size(current_database())").fetchone()[0])
    db.close()
    return seconds, size


def queries(n: int, seed: int = 60) -> dict[str, list[str]]:
    """``n`` queries per class: 1–3 words, with diacritics and without."""
    words, weights = _vocabulary(seed - 54)
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for k in (1, 2, 3):
        picked = [" ".join(rng.choices(words, weights, k=k)) for _ in range(n)]
        out[f"{k} word{'s' if k > 1 else ''}, diacritics"] = picked
        out[f"{k} word{'s' if k > 1 else ''}, none"] = [fold(q) for q in picked]
    return out


def timed(run: Callable[[str], object], qs: list[str]) -> list[float]:
    out = []
    for q in qs:
        started = time.perf_counter()
        run(q)
        out.append((time.perf_counter() - started) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")  # a baseline not run (--naive 0)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def naive(con: Connection, q: str) -> list[int]:
    terms = q.lower().split()
    where = " AND ".join("lower(text) LIKE ?" for _ in terms)
    return [
        r[0]
        for r in con.execute(
            f"SELECT page_pk FROM page_text WHERE {where} LIMIT 50",  # placeholders only
            [f"%{t}%" for t in terms],
        )
    ]


def exhaustive(db: Database, q: str) -> list[int]:
    """The ranking before candidate budgets: bm25 (PostgreSQL: ts_rank) of every page with
    all the words."""
    from server.archive.catalog import parse_query

    parsed = parse_query(q)
    assert parsed is not None
    con = db.read()
    if db.dialect == "postgresql":
        table = "page_search_exact" if parsed.exact else "page_search_folded"
        sql = (
            f"SELECT page_pk, ts_rank(vec, q, 1) AS s FROM {table},"
            f" CAST(? AS tsquery) q WHERE vec @@ q ORDER BY s DESC LIMIT 50"
        )
        return [r[0] for r in con.execute(sql, (pg.tsquery(parsed.items),))]
    table = "page_fts_exact" if parsed.exact else "page_fts"
    sql = f"SELECT rowid, bm25({table}) AS s FROM {table} WHERE {table} MATCH ? ORDER BY s LIMIT 50"
    return [r[0] for r in con.execute(sql, (parsed.match,))]


def _match(db: Database, exact: bool, fts5: str, items: list[list[str]]) -> tuple[str, str]:
    """(WHERE clause, its argument) matching ``items`` on this engine."""
    if db.dialect == "postgresql":
        return "vec @@ ?::tsquery", pg.tsquery(items)
    table = "page_fts_exact" if exact else "page_fts"
    return f"{table} MATCH ?", fts5


def _table(db: Database, exact: bool) -> tuple[str, str]:
    """(table, page id column) of the page index on this engine."""
    if db.dialect == "postgresql":
        return ("page_search_exact" if exact else "page_search_folded"), "page_pk"
    return ("page_fts_exact" if exact else "page_fts"), "rowid"


def matches(db: Database, q: str) -> tuple[int, int]:
    """(pages with all the words, pages with the words as a phrase)."""
    from server.archive.catalog import parse_query

    parsed = parse_query(q)
    assert parsed is not None
    table, _ = _table(db, parsed.exact)
    where, arg = _match(db, parsed.exact, parsed.match, parsed.items)
    sql = f"SELECT count(*) FROM {table} WHERE {where}"
    every = db.read().execute(sql, (arg,)).fetchone()[0]
    phrase = every
    if parsed.phrase:
        where, arg = _match(db, parsed.exact, parsed.phrase, [parsed.terms])
        phrase = db.read().execute(f"SELECT count(*) FROM {table} WHERE {where}", (arg,))
        phrase = phrase.fetchone()[0]
    return int(every), int(phrase)


def together(db: Database, q: str, pages: list[int]) -> int:
    """How many of ``pages`` have the words of ``q`` together (as a phrase)."""
    from server.archive.catalog import parse_query

    parsed = parse_query(q)
    assert parsed is not None
    if parsed.phrase is None or not pages:
        return len(pages)
    table, key = _table(db, parsed.exact)
    where, arg = _match(db, parsed.exact, parsed.phrase, [parsed.terms])
    marks = ", ".join("?" * len(pages))
    sql = f"SELECT count(*) FROM {table} WHERE {where} AND {key} IN ({marks})"
    return int(db.read().execute(sql, (arg, *pages)).fetchone()[0])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench search", description=__doc__)
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300, help="per class (6 classes)")
    parser.add_argument("--http", type=int, default=100, help="per class through the API")
    parser.add_argument("--naive", type=int, default=30, help="per class, LIKE baseline")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the archive here")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)

    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.archive import auth
    from server.archive.catalog import Catalog
    from server.config import ServerSettings

    work = args.keep or Path(tempfile.mkdtemp(prefix="sohoa-bench-search-"))
    cluster = None
    if args.engine == "postgresql":
        sys.path.insert(0, str(ROOT / "tests"))
        from pgcluster import PostgresCluster

        cluster = PostgresCluster().start()
        url = cluster.create_database("bench")
        settings = ServerSettings(data_dir=work, ingest=False, database_url=url)
        build_s, size = build(url, args.pages)
    else:
        settings = ServerSettings(data_dir=work, ingest=False)
        path = settings.sqlite_path()
        if path.exists() and args.keep:
            print(f"reusing {path}")
            build_s, size = float("nan"), path.stat().st_size
        else:
            build_s, size = build(path, args.pages)
    db = Database(settings.database())
    count = db.read().execute("SELECT COUNT(*) FROM page_text").fetchone()[0]
    catalog = Catalog(db)
    qs = queries(args.queries)

    Row = tuple[
        str, list[float], list[float], list[float], list[float], float, float, float,
        tuple[float, float],
    ]  # fmt: skip
    rows: list[Row] = []
    auth.add_user(db, "bench", "viewer", None)
    token = auth.create_token(db, "bench")
    con = db.read()
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        for name, items in qs.items():
            timed(catalog.search, items[:10])  # warm the page cache
            hits = [len(catalog.search(q)) for q in items[:50]]
            direct = timed(catalog.search, items)
            http = timed(
                lambda q: client.get("/api/v1/search", params={"q": q}, headers=headers),
                items[: args.http],
            )
            scan = timed(lambda q: naive(con, q), items[: args.naive])
            full = timed(lambda q: exhaustive(db, q), items[: args.naive])
            counts = [matches(db, q) for q in items[:50]]
            sample = items[: args.naive]
            quality = (
                statistics.mean(
                    together(db, q, [h["page"] for h in catalog.search(q)]) for q in sample
                ),
                statistics.mean(together(db, q, exhaustive(db, q)) for q in sample),
            )
            every_ = statistics.mean(c[0] for c in counts)
            phrase = statistics.mean(c[1] for c in counts)
            rows.append(
                (name, direct, http, full, scan, statistics.mean(hits), every_, phrase, quality)
            )
    engine = f"SQLite {sqlite3.sqlite_version}"
    if cluster is not None:
        engine = str(db.read().execute("SELECT version()").fetchone()[0]).split(" on ")[0]
    db.close()
    if cluster is not None:
        cluster.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    every = [v for r in rows for v in r[1]]
    print(
        f"\n{count:,} pages, {size / 1e6:.0f} MB ({engine}), built in {build_s:.0f} s"
        f" ({count / build_s:,.0f} pages/s); {platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}\n"
    )
    print("| query | n | Catalog.search p50 / p95 / max (ms) | HTTP API p50 / p95 (ms) |"
          " bm25 of every match p50 / p95 (ms) | LIKE scan p50 / p95 (ms) | hits |"
          " pages with all words / as phrase (mean) | top 50 with the words together:"
          " now / bm25 of every match |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    https: list[float] = []
    for name, direct, http, full, scan, hits, every_, phrase, (now, before) in rows:
        https += http
        print(
            f"| {name} | {len(direct)} | {pct(direct, 50):.1f} / {pct(direct, 95):.1f} /"
            f" {max(direct):.1f} | {pct(http, 50):.1f} / {pct(http, 95):.1f} |"
            f" {pct(full, 50):.0f} / {pct(full, 95):.0f} |"
            f" {pct(scan, 50):.0f} / {pct(scan, 95):.0f} | {hits:.0f} |"
            f" {every_:,.0f} / {phrase:,.0f} | {now:.0f} / {before:.0f} |"
        )
    print(f"| **all** | {len(every)} | {pct(every, 50):.1f} / **{pct(every, 95):.1f}** /"
          f" {max(every):.1f} | {pct(https, 50):.1f} / **{pct(https, 95):.1f}**"
          " | | | | | |")  # fmt: skip
    return 0
