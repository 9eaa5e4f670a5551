"""Benchmark: search over a province's archive, 1,000,000 pages on PostgreSQL (issue 19:
p95 ≤ 50 ms, direct and through the HTTP API).

    python -m bench search_million [--pages 1000000] [--queries 100] [--http 30] [--naive 5]
                                   [--url URL] [--keep] [--copy-of URL]
                                   [--shared-buffers 64MB] [--effective-cache-size 4GB]

Builds the archive fast on a throwaway PostgreSQL server (tests/pgcluster.py): batches and
pages from ``generate_series``, then page texts and both search vectors with ``COPY`` from
``--workers`` processes (GIN indexes dropped during the load and built after it, foreign keys
not checked during the load: the rows are consistent by construction), then ``VACUUM
ANALYZE``. The vectors are exactly what ``Database.index_text`` stores (``pg.tsvector`` of the
NFC text, folded and lower-cased), so search runs on what ingest would have built.

Pages are varied Vietnamese text (NFC): a commune record from ``tests/records/texts.py`` (five
kinds, names, dates, numbers, places) followed by lines of the administrative vocabulary of
``bench/search.py`` drawn Zipf-like to ~2 KB, one person's name, and, on ~30 % of pages, a
phrase from a list of rarer subjects (dikes, floods, livestock disease …), itself drawn
Zipf-like so that the rarest are on ~0.1 % of pages.

Measured in the same run, on the same queries: ``server.archive.search.search`` (what both the
search page and the API call: ranking, snippets, access checks, metadata hits), the HTTP API
(``GET /api/v1/search``) twice — in process through FastAPI's TestClient (auth, routing, JSON),
and through a real server: ``sohoa-server run --no-ingest`` (uvicorn, as systemd starts it) in
a subprocess on a loopback port, on the same database, asked over one keep-alive HTTP/1.1
connection with the same bearer token — and two baselines on a few queries per class:
``ts_rank`` of every match (no candidate window) and a ``LIKE`` scan of the page text. Query
classes: common words (1–3, with and without diacritics), rare subjects, people's names (3
words: a phrase on a few hundred pages), a common word with a rare one, and a quoted phrase.
``--url`` reuses a database built before (``--keep`` leaves the cluster up and prints its
URL).

The throwaway server runs with ``shared_buffers = 64MB`` (tests/pgcluster.py) unless
``--shared-buffers`` says otherwise; ``--shared-buffers 4GB --effective-cache-size 12GB`` is
the configuration docs/operations.md gives an archive server with 16 GB of RAM. A server
already running (``--url``) keeps its own: ``--copy-of URL`` starts a new throwaway server
with these settings on a copy of that one's data (``pg_basebackup``, the source keeps
running), so the same database can be measured under both configurations side by side.
The first line of the results says the server's settings. The baselines and the count of
pages with all the words run after each class's queries by default (as in every run recorded
before the tenth sitting); their full scans read gigabytes through the server's buffers and
the file cache, so the next class starts cold. ``--baselines-last`` runs them after every
class instead, closer to a server that only searches. The queries start once the server's
start-up work is done (``progress.warm``, seconds at 1,000,000 pages: before the twelfth
sitting it ran beside the first classes); the results say how long that was waited for.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

from bench import proc_cpu
from bench.search import _vocabulary, exhaustive, matches, naive, pct, timed
from server.store import epochs, pg
from server.store.db import Database, fold

ROOT = Path(__file__).resolve().parent.parent

# Rarer subjects of commune paperwork, most common first (Zipf-like over the list).
RARE = (
    "cầu tràn", "giống lúa", "lụt bão", "mẫu giáo", "kênh mương", "sạt lở đất", "hạn hán",
    "xâm nhập mặn", "rừng phòng hộ", "dịch tả lợn châu phi", "cúm gia cầm", "đê điều",
    "nước sạch", "chợ nông thôn", "nhà văn hóa", "đường giao thông liên thôn", "điện chiếu sáng",
    "bia tưởng niệm", "nghĩa trang liệt sĩ", "trạm bơm", "ao hồ", "bãi bồi ven sông",
    "khai thác cát", "gỗ rừng trồng", "vườn cây ăn quả", "chăn nuôi bò sữa", "nuôi trồng thủy sản",
    "làng nghề mây tre đan", "di tích lịch sử", "lễ hội đình làng", "quỹ tín dụng nhân dân",
    "hợp tác xã", "bếp ăn bán trú", "học bổng khuyến học", "người cao tuổi", "trẻ em mồ côi",
    "bạo lực gia đình", "ma túy", "cai nghiện", "tạm trú", "lưu trú", "căn cước công dân",
    "giấy xác nhận độc thân", "trích lục khai sinh", "cải chính hộ tịch", "nhận cha mẹ con",
    "giám hộ", "mai táng phí", "trợ cấp xã hội", "nhà tình nghĩa", "sổ đỏ", "tranh chấp ranh giới",
    "lấn chiếm hành lang", "xây dựng trái phép", "cháy rừng", "động đất", "lốc xoáy",
    "mưa đá", "rét đậm rét hại", "sâu cuốn lá",
)  # fmt: skip
NAMES = (
    ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô"),
    ("Văn", "Thị", "Hữu", "Đức", "Minh", "Ngọc", "Thanh", "Quang", "Xuân", "Kim", "Công"),
    ("Hùng", "Lan", "Dũng", "Hương", "Tuấn", "Mai", "Khánh", "Phượng", "Thắng", "Yến", "Nghĩa",
     "Hạnh", "Quý", "Trường", "Liễu", "Đạt", "Thủy", "Lộc", "Ánh", "Sơn", "Huệ", "Cường"),
)  # fmt: skip
SEARCH_TABLES = ("page_search_folded", "page_search_exact", "page_pairs")
RECORDS = 2000  # records drawn once, each page takes one at random
DEVICES = 100  # one station per commune of the province


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _records() -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from records.texts import KINDS, record

    out = []
    for n in range(RECORDS):
        blocks = record(KINDS[n % len(KINDS)], n)
        lines = [b.text for b in blocks if b.text]
        lines += [" ".join(cells) for b in blocks for cells in b.rows]
        out.append("\n".join(lines))
    return out


class Pages:
    """Deterministic page texts: page ``n``'s text depends on ``n`` and the seed only."""

    def __init__(self, seed: int = 19) -> None:
        self.records = _records()
        self.words, self.weights = _vocabulary(seed)
        self.rare_weights = [1.0 / (r + 1) ** 1.1 for r in range(len(RARE))]

    def text(self, n: int) -> str:
        rng = random.Random(n)
        lines = [rng.choice(self.records)]
        name = " ".join(rng.choice(part) for part in NAMES)
        lines.append(f"Người ký: {name}")
        if rng.random() < 0.3:
            subject = rng.choices(RARE, self.rare_weights)[0]
            lines.append(f"Về việc {subject} tại thôn {rng.randint(1, 12)}")
        size = sum(len(x.encode()) + 1 for x in lines)
        while size < 2000:
            line = " ".join(rng.choices(self.words, self.weights, k=rng.randint(8, 14)))
            line = line[0].upper() + line[1:]
            lines.append(line)
            size += len(line.encode()) + 1
        rng.shuffle(lines)
        return _nfc("\n".join(lines))


def _load(url: str, first: int, count: int) -> int:
    """COPY pages [first, first + count) into page_text and both search tables."""
    import psycopg

    pages = _PAGES
    assert pages is not None
    text_rows, folded_rows, exact_rows, pair_rows = [], [], [], []
    for pk in range(first, first + count):
        text = pages.text(pk)
        folded, pairs = pg.tsvectors(fold(text))
        text_rows.append((pk, text))
        folded_rows.append((pk, folded))
        exact_rows.append((pk, pg.tsvector(text.lower())))
        pair_rows.append((pk, pairs))
    with psycopg.connect(url) as con:
        con.execute("SET session_replication_role = replica")  # no FK triggers: see docstring
        with con.cursor() as cur:
            for table, columns, rows in (
                ("page_text", "page_pk, text", text_rows),
                ("page_search_folded", "page_pk, vec", folded_rows),
                ("page_search_exact", "page_pk, vec", exact_rows),
                ("page_pairs", "page_pk, vec", pair_rows),
            ):
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
    return count


_PAGES: Pages | None = None


def _init_worker() -> None:
    global _PAGES
    _PAGES = Pages()


def _load_args(args: tuple[str, int, int]) -> int:
    return _load(*args)


def build(url: str, total: int, workers: int) -> float:
    """The archive of ``total`` pages at ``url``; seconds."""
    import psycopg

    started = time.perf_counter()
    Database(url).close()  # the server's schema
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP INDEX page_search_folded_vec, page_search_exact_vec, page_pairs_vec")
        con.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen)"
            " SELECT 'xa-' || lpad(g::text, 3, '0'), 0, 0 FROM generate_series(1, %s) g",
            (DEVICES,),
        )
        batches = (total + 99) // 100
        con.execute(
            "INSERT INTO batches(id, device_id, batch_id, created_at, received_at, page_count,"
            " source, agent_version) SELECT g, 'xa-' || lpad((1 + g %% %s)::text, 3, '0'),"
            " lpad(to_hex(g), 32, '0'), 0, 0, 100, 'scan', 'bench'"
            " FROM generate_series(1, %s) g",
            (DEVICES, batches),
        )
        con.execute(
            "INSERT INTO pages(id, batch_pk, device_id, page_id, page_no, capture_sha256,"
            " capture_size, dpi, width_px, height_px, colour)"
            " SELECT g, 1 + (g - 1) / 100, 'xa-' || lpad((1 + (1 + (g - 1) / 100) %% %s)::text,"
            " 3, '0'), lpad(to_hex(g), 32, '0'), 1 + (g - 1) %% 100, '', 0, 300, 2480, 3508, 1"
            " FROM generate_series(1, %s) g",
            (DEVICES, total),
        )
        for table in ("batches", "pages"):
            con.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
    chunk = 5000
    jobs = [(url, first, min(chunk, total + 1 - first)) for first in range(1, total + 1, chunk)]
    done = 0
    with multiprocessing.get_context("fork").Pool(workers, _init_worker) as pool:
        for n in pool.imap_unordered(_load_args, jobs):
            done += n
            if done % 100_000 < chunk:
                rate = done / (time.perf_counter() - started)
                print(f"  {done:,} pages loaded ({rate:,.0f} pages/s)", flush=True)

    # Two GIN builds at a time (PostgreSQL builds a GIN index in one process): the pair
    # indexes hold ~2x the entries of the word ones.
    def index(tables: tuple[str, ...]) -> None:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("SET maintenance_work_mem = '512MB'")
            for table in tables:
                t = time.perf_counter()
                con.execute(f"CREATE INDEX {table}_vec ON {table} USING gin (vec)")
                print(f"  GIN index on {table}: {time.perf_counter() - t:.0f} s", flush=True)

    builders = [threading.Thread(target=index, args=(SEARCH_TABLES[i::2],)) for i in range(2)]
    for b in builders:
        b.start()
    for b in builders:
        b.join()
    with psycopg.connect(url, autocommit=True) as con:
        t = time.perf_counter()
        con.execute("VACUUM ANALYZE")  # as autovacuum would, soon after a bulk load
        print(f"  VACUUM ANALYZE: {time.perf_counter() - t:.0f} s", flush=True)
    db = Database(url)  # the newest epochs' indexes, as the server's thread builds them
    try:
        t = time.perf_counter()
        epochs.ensure(db, say=lambda line: print(line, flush=True))
        print(f"  epoch indexes: {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        db.close()
    return time.perf_counter() - started


def queries(n: int, seed: int = 1919) -> dict[str, list[str]]:
    """``n`` queries per class."""
    words, weights = _vocabulary(19)
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for k in (1, 2, 3):
        picked = [" ".join(rng.choices(words, weights, k=k)) for _ in range(n)]
        out[f"common, {k} word{'s' if k > 1 else ''}, diacritics"] = picked
        out[f"common, {k} word{'s' if k > 1 else ''}, none"] = [fold(q) for q in picked]
    rare = [rng.choice(RARE) for _ in range(n)]
    out["rare subject, diacritics"] = rare
    out["rare subject, none"] = [fold(q) for q in rare]
    names = [" ".join(rng.choice(part) for part in NAMES) for _ in range(n)]
    out["person's name, diacritics"] = names
    out["person's name, none"] = [fold(q) for q in names]
    out["common + rare word, none"] = [
        f"{fold(rng.choices(words, weights)[0])} {fold(rng.choice(RARE).split()[-1])}"
        for _ in range(n)
    ]
    out['quoted phrase "…"'] = [
        '"' + " ".join(rng.choices(words, weights, k=2)) + '"' for _ in range(n)
    ]
    return out


class Served:
    """The server as production runs it (``sohoa-server run``: server/cli.py, uvicorn, the
    app of server/app.py; systemd/sohoa-server.service), in a subprocess on a loopback port,
    serving ``url``'s archive from the data directory ``work`` (no ingest: no broker here),
    and one keep-alive HTTP/1.1 connection to it."""

    def __init__(self, url: str, work: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("SOHOA_") and k != "PYTHONPATH"
        }
        env |= {
            "SOHOA_SERVER_DATA_DIR": str(work),
            "SOHOA_DATABASE_URL": url,
            "SOHOA_SERVER_CONFIG": os.devnull,  # not /etc/sohoa/server.toml of this machine
            "PYTHONPATH": str(ROOT),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "run", "--no-ingest", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.log: list[str] = []
        self._warm = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        self.connection: http.client.HTTPConnection | None = None

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            # server.archive.progress.warm, the start-up work (see main): done or failed.
            if "progress asked at start" in line or "asking the progress at start" in line:
                self._warm.set()
        self._warm.set()  # the process ended

    def wait(self, token: str, warm: bool, timeout: float = 120.0) -> float:
        """Seconds until the server answers a search (and, when ``warm``, has done its
        start-up work)."""
        started = time.perf_counter()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("sohoa-server run ended:\n" + "\n".join(self.log[-20:]))
            try:
                self.get("/api/v1/search", {"q": "xã"}, token)
                break
            except OSError:
                self.close()
                if time.perf_counter() - started > timeout:
                    raise
                time.sleep(0.1)
        if warm and not self._warm.wait(max(1.0, timeout - (time.perf_counter() - started))):
            raise RuntimeError("the server's start-up work did not end")
        return time.perf_counter() - started

    def get(self, path: str, params: dict[str, str], token: str) -> tuple[dict[str, str], bytes]:
        """(headers, body) of a GET answered 200 (else RuntimeError). uvicorn closes a
        connection idle for 5 s (its ``timeout_keep_alive``): then it is opened again once,
        as a client's pool would."""
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.connection.request(
                    "GET",
                    f"{path}?{urlencode(params)}",
                    headers={"Authorization": f"Bearer {token}"},
                )
                r = self.connection.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status} {body[:200]!r}")
        return {k.lower(): v for k, v in r.getheaders()}, body

    def search(self, q: str, token: str) -> tuple[list[dict[str, object]], int, bool]:
        """``GET /api/v1/search``: (hits, X-Total-Count, X-Total-Count-Estimated)."""
        headers, body = self.get("/api/v1/search", {"q": q}, token)
        total = int(headers["x-total-count"])
        return json.loads(body), total, headers.get("x-total-count-estimated") == "true"

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def stop(self) -> None:
        self.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def served(url: str, work: Path) -> Iterator[Served]:
    server = Served(url, work)
    try:
        yield server
    finally:
        server.stop()


def _pg_cpu(db: Database) -> float:
    """CPU seconds used so far by every process of the PostgreSQL server (backends and
    background workers; read from /proc: the server is on this machine)."""
    pids = [int(r[0]) for r in db.read().execute("SELECT pid FROM pg_stat_activity")]
    return sum(proc_cpu(pid) for pid in pids)


def cpu_timed(
    db: Database, run: Callable[[str], object], qs: list[str], *others: int
) -> tuple[list[float], float]:
    """Wall times (ms) of each query, and the CPU per query (ms, mean) of this process, the
    PostgreSQL server and the processes ``others`` together: what a loaded machine does not
    inflate."""

    def cpu() -> float:
        return time.process_time() + _pg_cpu(db) + sum(proc_cpu(pid) for pid in others)

    before = cpu()
    times = timed(run, qs)
    return times, (cpu() - before) / max(1, len(qs)) * 1000


def _version(db: Database) -> str:
    return str(db.read().execute("SELECT version()").fetchone()[0]).split(" on ")[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench search_million", description=__doc__)
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100, help="per class")
    parser.add_argument("--http", type=int, default=30, help="per class through the API")
    parser.add_argument("--naive", type=int, default=5, help="per class, both baselines")
    parser.add_argument("--workers", type=int, default=2, help="processes building the pages")
    parser.add_argument("--url", help="a database built by an earlier run (--keep)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--build-only", action="store_true", help="build (implies --keep), stop")
    parser.add_argument(
        "--copy-of", metavar="URL", help="measure a copy of this server's data (pg_basebackup)"
    )
    parser.add_argument("--shared-buffers", help="of the throwaway server (default 64MB)")
    parser.add_argument("--effective-cache-size", help="of the throwaway server (default 4GB)")
    parser.add_argument(
        "--baselines-last",
        action="store_true",
        help="run the baselines and match counts after every class's queries, not between"
        " classes (their full scans evict the server's caches before the next class)",
    )
    args = parser.parse_args(argv)
    args.keep = args.keep or args.build_only

    import tempfile

    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.archive import auth, progress, search
    from server.archive.catalog import Catalog
    from server.archive.records import Records
    from server.config import ServerSettings

    cluster = None
    build_s = float("nan")
    url = args.url
    if url is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from pgcluster import PostgresCluster

        tuning = {
            name: value
            for name, value in (
                ("shared_buffers", args.shared_buffers),
                ("effective_cache_size", args.effective_cache_size),
            )
            if value
        }
        cluster = PostgresCluster(tuning)
        if args.copy_of:
            t = time.perf_counter()
            cluster.start_copy_of(args.copy_of)
            url = cluster.url(args.copy_of.rsplit("/", 1)[1])
            print(f"  copied in {time.perf_counter() - t:.0f} s", flush=True)
        else:
            cluster.start()
            url = cluster.create_database("bench")
            build_s = build(url, args.pages, args.workers)
        if args.keep:
            print(f"cluster left running: {url}  (data {cluster.root})", flush=True)
        if args.build_only:
            return 0
    work = Path(tempfile.mkdtemp(prefix="sohoa-bench-search1m-"))
    settings = ServerSettings(data_dir=work, ingest=False, database_url=url)
    db = Database(url)
    con = db.read()
    count = int(con.execute("SELECT count(*) FROM page_text").fetchone()[0])
    size = int(con.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    catalog = Catalog(db)
    records = Records(db)
    reader = auth.get_user(con, "bench") or auth.add_user(db, "bench", "viewer", None)
    token = auth.create_token(db, "bench")
    qs = queries(args.queries)
    load = [os.getloadavg()[0]]

    def direct(q: str) -> object:
        return search.search(catalog, records, q, reader)

    Row = tuple[
        str, list[float], list[float], list[float], list[float], list[float], float, float,
        float, float,
    ]  # fmt: skip
    rows: list[Row] = []
    # The real server starts first, so that its start-up work and the test client's app's
    # run side by side, both before the first query.
    with served(url, work / "served") as server, TestClient(create_app(settings)) as client:
        # The app starts by asking a large archive's progress questions in a thread
        # (server.app: progress.warm, seconds of work at 1,000,000 pages); measured beside
        # it, the first classes' queries shared the cores and the GIL with it (every run
        # before the twelfth sitting). The goal is a running server's: wait for it (and for
        # the real server's, which says in its log when it is done).
        started = time.perf_counter()
        for thread in threading.enumerate():
            if thread.name == "progress":
                thread.join()
        server.wait(token, warm=count >= progress.WARM_FROM_PAGES)
        warm_s = time.perf_counter() - started
        headers = {"Authorization": f"Bearer {token}"}

        def http(q: str) -> object:
            r = client.get("/api/v1/search", params={"q": q}, headers=headers)
            r.raise_for_status()
            return r

        def real(q: str) -> object:
            return server.search(q, token)

        def baselines(items: list[str]) -> tuple[list[float], list[float], float]:
            every = timed(lambda q: exhaustive(db, q), items[: args.naive])
            scan = timed(lambda q: naive(con, q.replace('"', "")), items[: args.naive])
            found = statistics.mean(matches(db, q)[0] for q in items[:5])
            return every, scan, found

        measured = []
        for name, items in qs.items():
            timed(direct, items[:5])  # warm
            d, d_cpu = cpu_timed(db, direct, items)
            h, h_cpu = cpu_timed(db, http, items[: args.http])
            # A new connection for each class, opened by its first query (the test client
            # and the other classes' queries took longer than uvicorn keeps one idle).
            server.close()
            r, r_cpu = cpu_timed(db, real, items[: args.http], server.process.pid)
            measured.append((name, d, h, r, d_cpu, h_cpu, r_cpu))
            load.append(os.getloadavg()[0])
            print(f"  {name}: p95 {pct(d, 95):.1f} ms", flush=True)
            if not args.baselines_last:
                every, scan, found = baselines(items)
                rows.append((name, d, h, r, every, scan, found, d_cpu, h_cpu, r_cpu))
        if args.baselines_last:
            for (name, d, h, r, d_cpu, h_cpu, r_cpu), items in zip(
                measured, qs.values(), strict=True
            ):
                every, scan, found = baselines(items)
                rows.append((name, d, h, r, every, scan, found, d_cpu, h_cpu, r_cpu))
    engine = _version(db)
    shown = ("shared_buffers", "effective_cache_size", "random_page_cost", "work_mem")
    server_settings = ", ".join(
        f"{name} {db.read().execute(f'SHOW {name}').fetchone()[0]}" for name in shown
    )
    db.close()
    if cluster is not None and not args.keep:
        cluster.stop()
    shutil.rmtree(work, ignore_errors=True)

    alld = [v for r in rows for v in r[1]]
    allh = [v for r in rows for v in r[2]]
    allr = [v for r in rows for v in r[3]]
    print(
        f"\n{count:,} pages, {size / 1e9:.1f} GB ({engine}; {server_settings}), built in"
        f" {build_s:.0f} s; {platform.machine()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}; load average (1 min) during the queries"
        f" {min(load):.1f}–{max(load):.1f}; the servers' start-up work waited for"
        f" {warm_s:.1f} s before them\n"
    )
    print("| query | n | search() p50 / p95 / max (ms) | CPU per query (ms) |"
          " HTTP API, test client p50 / p95 (ms) | CPU per query (ms) |"
          " HTTP API, uvicorn p50 / p95 (ms) | CPU per query (ms) |"
          " ts_rank of every match p50 / p95 (ms) | LIKE scan p50 / p95 (ms) |"
          " pages with all words (mean of 5) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, d, h, r, every, scan, found, d_cpu, h_cpu, r_cpu in rows:
        print(
            f"| {name} | {len(d)} | {pct(d, 50):.1f} / {pct(d, 95):.1f} / {max(d):.1f} |"
            f" {d_cpu:.1f} | {pct(h, 50):.1f} / {pct(h, 95):.1f} | {h_cpu:.1f} |"
            f" {pct(r, 50):.1f} / {pct(r, 95):.1f} | {r_cpu:.1f} |"
            f" {pct(every, 50):.0f} / {pct(every, 95):.0f}"
            f" | {pct(scan, 50):.0f} / {pct(scan, 95):.0f} | {found:,.0f} |"
        )
    d_all = statistics.mean(r[7] for r in rows)
    h_all = statistics.mean(r[8] for r in rows)
    r_all = statistics.mean(r[9] for r in rows)
    print(
        f"| **all** | {len(alld)} | {pct(alld, 50):.1f} / **{pct(alld, 95):.1f}** /"
        f" {max(alld):.1f} | {d_all:.1f} | {pct(allh, 50):.1f} / **{pct(allh, 95):.1f}** |"
        f" {h_all:.1f} | {pct(allr, 50):.1f} / **{pct(allr, 95):.1f}** | {r_all:.1f} | | | |"
    )
    return 0
