"""PostgreSQL as the catalogue (``SOHOA_DATABASE_URL=postgresql://…``), against a real server
started by the tests (tests/pgcluster.py). Most of the archive's behaviour is tested on both
engines by the ``database`` fixture (test_ingest, test_search, test_staff, test_e2e); this file
holds what is PostgreSQL's own: the SQL both engines must accept, start-up races, the search
index at its limits, the two engines agreeing on what a query finds, and clear errors."""

from __future__ import annotations

import ast
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest
from harness import BIN, REPO
from pgcluster import PostgresCluster, url_of
from test_search import archive

from server.archive import catalog
from server.archive.catalog import Catalog
from server.store import pg
from server.store.db import PAIRS_META_KEY, Database

pytestmark = pytest.mark.postgres


def _sql_literals() -> list[tuple[str, int, str]]:
    """Every string constant in server/ and its subpackages that looks like SQL (implicit
    concatenation joined)."""
    out = []
    starts = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|WITH|BEGIN|SAVEPOINT)\b")
    for path in sorted((REPO / "server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            if starts.match(text):
                out.append((str(path.relative_to(REPO)), node.lineno, text))
    return out


def test_server_sql_is_in_the_shared_dialect() -> None:
    """server.store.pg rewrites ``?`` → ``%s``: no ``?`` or ``%`` may hide in a quoted literal, and
    SQLite-only forms must not come back."""
    statements = _sql_literals()
    assert len(statements) > 60  # the walk found the server's SQL
    walked = {name for name, _, _ in statements}
    assert {"server/ingest/manifests.py", "server/ingest/parts.py"} <= walked  # subpackages
    sqlite_only = re.compile(
        r"INSERT OR |\bjson_each\b|\bPRAGMA\b|\bGLOB\b|\bIFNULL\b|\bgroup_concat\b|"
        r"\bSELECT offset\b|\bNOT (u\.)?disabled\b"
    )
    for name, line, sql in statements:
        for literal in re.findall(r"'[^']*'", sql):
            assert "?" not in literal and "%" not in literal, (name, line, literal)
        if "fts" not in sql and "bm25" not in sql:  # FTS5 statements are SQLite's own
            assert not sqlite_only.search(sql), (name, line, sql)


def test_schema_is_created_once_by_racing_processes(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            Database(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    db = Database(url)  # and again, on an existing schema
    version = db.read().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert [tuple(r) for r in version] == [("1",)]
    columns = {
        r[0]
        for r in db.read().execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'devices'"
        )
    }
    assert "commune" in columns  # ADDED_COLUMNS applied
    db.close()


def test_index_limits_and_literals() -> None:
    """The tsvector literal keeps what PostgreSQL can store: positions ≤ 16,383, ≤ 256
    positions per word, words ≤ 500 characters; quoting characters never reach it."""
    assert pg.tsvector("a b a") == "'a':1,3 'b':2"
    assert pg.words("o'brien \\x 123/qđ-ubnd") == ["o", "brien", "x", "123", "qđ", "ubnd"]
    assert pg.tsquery([["khoang", "san"], ["xa"]]) == "('khoang' <-> 'san') & ('xa')"
    assert pg.placeholders("SELECT 'a%' , ? ") == b"SELECT 'a%%' , %s "


def test_huge_page_is_indexed_and_found(pg_cluster: PostgresCluster) -> None:
    db = Database(pg_cluster.create_database())
    text = " ".join(["xã"] * 1000 + [f"từ{n}" for n in range(20_000)] + ["khoáng sản", "a" * 3000])
    (page,) = archive(db, [text])
    cat = Catalog(db)
    assert [h["page"] for h in cat.search("khoang san")] == [page]
    assert [h["page"] for h in cat.search("từ19999")] == [page]  # past position 16,383
    assert [h["page"] for h in cat.search("xa")] == [page]
    db.close()


TEXTS = [
    "QUYẾT ĐỊNH số 123/QĐ-UBND về việc phê duyệt kế hoạch khai thác khoáng sản",
    "Ủy ban nhân dân xã Tân Lập; Hội đồng nhân dân xã — kỳ họp thứ 5",
    "Khoang tàu, sàn nhà, Đà Nẵng, e-mail: vanthu@tanlap.gov.vn",
    "Sổ hộ tịch năm 1998 (bản sao). Lưu: VT, VP.",
    "quyền sử dụng đất số 45/2020/NĐ-CP, ngày 05/01/1998",
    "Biên bản xử lý vi phạm hành chính về khoáng sản trái phép",
]
QUERIES = [
    "khoang san", "khoáng sản", "Khoáng", "123", "qđ ubnd", "QĐ-UBND", "uy ban nhan dan",
    '"nhan dan xa"', "da nang", "Đà Nẵng", "vanthu", "gov vn", "1998", "vt vp", "quyen su dung",
    "sử dụng đất", "bien ban vi pham", "khoang", "xyz", "05 01 1998", "nđ cp",
]  # fmt: skip


def test_both_engines_find_the_same_pages(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    """Tokens come from Python on both sides (server.store.pg): a query finds the same pages on
    SQLite FTS5 and on PostgreSQL, with or without diacritics, phrases included."""
    lite, post = Database(tmp_path / "a.sqlite"), Database(pg_cluster.create_database())
    ids_lite, ids_post = archive(lite, TEXTS), archive(post, TEXTS)
    for q in QUERIES:
        found_lite = {ids_lite.index(h["page"]) for h in Catalog(lite).search(q)}
        found_post = {ids_post.index(h["page"]) for h in Catalog(post).search(q)}
        assert found_lite == found_post, q
        if q != "xyz":
            assert found_lite, q
    lite.close()
    post.close()


def _cli(env_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "SOHOA_SERVER_DATA_DIR": str(tmp_path),
        "SOHOA_DATABASE_URL": env_url,
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [str(BIN / "sohoa-server"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_wrong_password_or_no_server_is_one_clear_line(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    url = pg_cluster.create_database()
    wrong = url.replace(pg_cluster.password, "not-the-password")
    for bad, reason in (
        (wrong, "password authentication failed"),
        (url.replace(f":{pg_cluster.port}/", ":1/"), "connection"),
    ):
        for args in (("user", "list"), ("run",)):
            out = _cli(bad, tmp_path, *args)
            assert out.returncode == 69, out.stderr
            assert "cannot open the database" in out.stderr and reason in out.stderr
            assert "Traceback" not in out.stderr
            assert "not-the-password" not in out.stderr and pg_cluster.password not in out.stderr
    assert _cli(url, tmp_path, "user", "list").returncode == 0


def test_password_from_a_file(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database()
    bare = url.replace(f":{pg_cluster.password}@", "@")
    secret = tmp_path / "db-password"
    secret.write_text(pg_cluster.password + "\n")
    out = _cli(bare, tmp_path, "user", "list")
    assert out.returncode == 69  # no password anywhere
    env_out = subprocess.run(
        [str(BIN / "sohoa-server"), "user", "list"],
        env={
            "SOHOA_SERVER_DATA_DIR": str(tmp_path),
            "SOHOA_DATABASE_URL": bare,
            "SOHOA_DATABASE_PASSWORD_FILE": str(secret),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert env_out.returncode == 0, env_out.stderr
    assert url_of(url) == url


def test_a_restarted_database_server_costs_one_failed_call(tmp_path: Path) -> None:
    """PostgreSQL restarts (an upgrade, a crash): the call that meets the dead connection
    fails (the ingest leaves its messages unacknowledged; the broker delivers them again),
    and the next call connects afresh, reads and writes alike."""
    import psycopg

    cluster = PostgresCluster().start()
    try:
        db = Database(cluster.create_database())
        db.alert("before", "x")
        cluster.restart()
        with pytest.raises(psycopg.OperationalError):
            db.alert("during", "x")
        db.alert("after", "x")  # a new connection
        kinds = [r["kind"] for r in db.read().execute("SELECT kind FROM alerts ORDER BY id")]
        assert kinds == ["before", "after"]
        db.close()
    finally:
        cluster.stop()


def test_large_counts_are_estimated_and_flagged(
    pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the candidate window the total is the planner's estimate (an exact count of a
    common word costs a visit to every page), flagged so that the staff page says "about"."""
    from server.archive import catalog

    db = Database(pg_cluster.create_database())
    ids = archive(db, [f"quyết định số {n} của ủy ban" for n in range(40)])
    db.read().execute("ANALYZE page_search_folded")
    monkeypatch.setattr(catalog, "PG_DF_EXACT_UP_TO", 10)
    monkeypatch.setattr(catalog, "PG_TOTAL_EXACT_UP_TO", 10)
    found = Catalog(db, candidate_budget=10).search_page("quyet dinh", 5)
    assert found.estimated and 30 <= found.total <= 50  # ANALYZE saw all 40
    assert [h["page"] for h in found.hits] == list(reversed(ids))[:5]  # equal scores: newest
    exact = Catalog(db, candidate_budget=10).search_page("quyet dinh so", 5, 5)
    assert exact.estimated and len(exact.hits) == 5
    one = Catalog(db, candidate_budget=10).search_page("quyet dinh so 7", 5)  # in the window
    assert not one.estimated and one.total == 1
    assert Catalog(db).search_page("quyet dinh", 5) == (found.hits, 40, False)
    db.close()


def test_a_second_server_starts_without_locking_the_running_one(
    pg_cluster: PostgresCluster,
) -> None:
    """Opening an existing catalogue runs no DDL (it would wait for, and then block, every
    reader: ALTER TABLE takes an ACCESS EXCLUSIVE lock), so a worker can start at any time."""
    import psycopg

    url = pg_cluster.create_database()
    Database(url).close()
    with psycopg.connect(url) as reader:  # a transaction holding a read lock on the index
        reader.execute("SELECT count(*) FROM page_search_folded").fetchone()
        reader.execute("SELECT count(*) FROM audit").fetchone()
        opened = threading.Event()

        def start() -> None:
            Database(url).close()
            opened.set()

        threading.Thread(target=start, daemon=True).start()
        assert opened.wait(10), "the second start waited for the reader's lock"


def test_window_in_the_newest_span_is_the_window_of_the_whole_archive(
    pg_cluster: PostgresCluster,
) -> None:
    """The window is looked for among the newest pages first (Catalog._rank_postgres): the
    hits and totals are those of the whole archive, and a quoted phrase found only on old
    pages (its words apart on the new ones) is still found."""
    db = Database(pg_cluster.create_database())
    texts = []
    for k in range(1, 401):
        words = ["ủy ban nhân dân xã", "biên bản"]
        if k % 4 == 0:
            words += ["Nguyễn Văn Hùng", "ký tên"]
        if k % 2 == 0:
            words += ["đê bao", "điều chỉnh"]  # both words, apart
        if k % 10 == 0:
            words.append("tu bổ đê điều")  # the phrase
        if k % 2 == 1:
            words.append("số lẻ")  # never with "đê" but on page 1
        if k == 1:
            words.append("đê bao")
        if k <= 3:
            words.append("sửa bờ kè")  # an old phrase
        elif k % 3 == 0:
            words += ["bờ ruộng", "kè đá"]  # its words apart, on newer pages
        texts.append(". ".join(words))
    ids = archive(db, texts)
    db.read().execute("ANALYZE page_search_folded")
    # The word vectors alone, as before the pair index is filled (the pair path on the same
    # archive: tests/test_search_pairs.py).
    with db.tx() as con:
        con.execute("UPDATE meta SET value = 'backfill' WHERE key = ?", (PAIRS_META_KEY,))
    small = Catalog(db, candidate_budget=10)
    found = small.search_page("hung ky", 10)  # 100 matches, estimated 25: a span of 320
    assert {h["page"] for h in found.hits} == {ids[k - 1] for k in range(364, 401, 4)}
    assert (found.total, found.estimated) == (100, False)
    phrase = small.search_page('"de dieu"', 5)  # 200 pages with both words, 40 together
    assert {h["page"] for h in phrase.hits} <= {ids[k - 1] for k in range(10, 401, 10)}
    assert len(phrase.hits) == 5
    assert phrase.estimated and 20 <= phrase.total <= 80
    old = small.search_page('"bo ke"', 5)  # on pages 1-3 only
    assert ({h["page"] for h in old.hits}, old.total, old.estimated) == (set(ids[:3]), 3, False)
    whole = Catalog(db).search_page('"de dieu"', 50)  # a window larger than the archive
    assert (len(whole.hits), whole.total, whole.estimated) == (40, 40, False)
    common = small.search_page("uy ban", 5)  # on every page: the walk (bitmaps off)
    assert (len(common.hits), common.total) == (5, 400)
    rare = small.search_page("de le", 5)  # estimated 100 (a walk of 160 pages): on page 1
    assert ([h["page"] for h in rare.hits], rare.total, rare.estimated) == ([ids[0]], 1, False)
    settings = "SELECT name, setting FROM pg_settings WHERE name LIKE 'enable_%scan'"
    assert {r[1] for r in db.read().execute(settings)} == {"on"}  # the plan's settings reset
    db.close()


def test_settings_of_one_statement_are_reset_after_it_even_when_it_fails(
    pg_cluster: PostgresCluster,
) -> None:
    """PgConnection.fetch_with_settings (the search window's planner settings): the
    statement sees them; the session has its own values again afterwards, also when the
    statement failed (the three go in one pipeline)."""
    con = pg.connect(pg_cluster.create_database())
    show = "SELECT current_setting('enable_seqscan') s, current_setting('work_mem') w"
    settings = {"enable_seqscan": "off", "work_mem": "32MB"}
    rows = con.fetch_with_settings(settings, show + ", ?::int n", [7])
    assert [tuple(r) for r in rows] == [("off", "32MB", 7)]
    assert tuple(con.execute(show).fetchall()[0]) == ("on", "4MB")
    with pytest.raises(psycopg.errors.DivisionByZero):
        con.fetch_with_settings(settings, "SELECT 1 / (? - 5)", [5])
    assert tuple(con.execute(show).fetchall()[0]) == ("on", "4MB")
    con.close()


def test_the_window_writes_no_temporary_file(
    pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window's count (count(*) OVER ()) buffers scores, not the candidates' vectors, and
    the GIN bitmap's matches are sorted by page id without them: with work_mem at its minimum
    (64 kB) and 100–120 candidates of ~2 KB vectors (~250 kB), no node of the window
    statement writes a temporary file. (It did: docs/benchmarks.md, seventh
    sitting — ~8 MB per query at a budget of 3,000.)"""
    import random

    rng = random.Random(19)
    syllables = [f"{a}{b}{c}" for a in "bcdghklmnpqrstvx" for b in "aeiouy" for c in "cmnpt"]
    texts = [
        f"ủy ban nhân dân {'đóng dấu ' if k % 3 else ''}{' '.join(rng.sample(syllables, 300))}"
        for k in range(150)
    ]
    db = Database(pg_cluster.create_database())
    archive(db, texts)
    db.read().execute("ANALYZE")
    monkeypatch.setattr(catalog, "PG_WINDOW_WORK_MEM", "64kB")
    plans: list[str] = []
    fetch = pg.PgConnection.fetch_with_settings

    def explained(
        self: pg.PgConnection, settings: dict[str, str], sql: str, args: Sequence[object]
    ) -> list[pg.PgRow]:
        plan = fetch(self, settings, "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + sql, args)
        plans.append("\n".join(r[0] for r in plan))
        return fetch(self, settings, sql, args)

    monkeypatch.setattr(pg.PgConnection, "fetch_with_settings", explained)
    small = Catalog(db, candidate_budget=120)
    for query in ("uy ban", "ủy ban nhân", "nhan dan"):  # the walk, ranked with the tiers
        found = small.search_page(query, 10)
        assert (len(found.hits), found.total) == (10, 150)
    stamped = small.search_page("dau", 10)  # on 100 pages: the GIN bitmap, sorted
    assert (len(stamped.hits), stamped.total) == (10, 100)
    assert plans
    assert not [p for p in plans if re.search(r"temp (read|written)=|Disk: ", p)], plans
    db.close()


def test_the_window_is_planned_for_each_query_s_values(pg_cluster: PostgresCluster) -> None:
    """psycopg prepares a statement its connection has run 5 times, and PostgreSQL may then
    plan a prepared statement once for every value (a generic plan) — which cannot know the
    span's page range or how common the words are: at 1,000,000 pages a quoted phrase's span
    window took 120–200 ms with it against 15–30 ms planned for its values
    (docs/benchmarks.md, tenth sitting). The window statements (the word window and the pair
    window) are planned for each query's values however often they run."""
    import random

    rng = random.Random(19)
    syllables = [f"{a}{b}{c}" for a in "bcdghklmnpqrstvx" for b in "aeiouy" for c in "cmnpt"]
    texts = [
        f"ủy ban nhân dân {'đê điều ' if k % 3 else ''}{' '.join(rng.sample(syllables, 100))}"
        for k in range(300)
    ]
    texts[7] += " Phạm Đức Sơn"
    db = Database(pg_cluster.create_database(), pool_size=1)  # one session sees them all
    archive(db, texts)
    db.read().execute("ANALYZE")
    small = Catalog(db, candidate_budget=40)
    for _ in range(12):
        for query in ("uy ban", '"nhan dan"', '"đê điều"', "de dieu", "pham duc son"):
            small.search_page(query, 5)
    prepared = db.read().execute(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        " WHERE statement LIKE '%count(*) OVER ()%'"
    )
    plans = [(r[0], int(r[1]), int(r[2])) for r in prepared]
    assert sum(custom for _, _, custom in plans) >= 24, plans  # prepared, run many times
    assert [(sql, generic) for sql, generic, _ in plans if generic] == []
    db.close()


def _window_plans(monkeypatch: pytest.MonkeyPatch, how: str = "COSTS OFF") -> list[str]:
    """The plans (``EXPLAIN (how)``, under the statement's own settings) of every window
    statement search runs from now on, in order; the statements still run."""
    plans: list[str] = []
    fetch = pg.PgConnection.fetch_with_settings

    def explained(
        self: pg.PgConnection, settings: dict[str, str], sql: str, args: Sequence[object]
    ) -> list[pg.PgRow]:
        if "count(*) OVER ()" in sql:
            plan = fetch(self, settings, f"EXPLAIN ({how}) " + sql, args)
            plans.append("\n".join(r[0] for r in plan))
        return fetch(self, settings, sql, args)

    monkeypatch.setattr(pg.PgConnection, "fetch_with_settings", explained)
    return plans


def test_a_span_of_words_on_most_pages_is_walked_not_read_through_their_bitmaps(
    pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quoted phrase of two words that are each on every page: the window is looked for in
    a span of the newest pages, and the span is walked (the primary key from the newest page,
    each vector tested) — the GIN bitmap would decode both words' whole posting lists, every
    page of the archive, to keep the span's few. Same hits and total as the bitmap gave."""
    texts = [f"ủy ban nhân dân {'ban ủy ' if k % 4 == 0 else ''}xã số {k}" for k in range(400)]
    db = Database(pg_cluster.create_database())
    ids = archive(db, texts)
    db.read().execute("ANALYZE")
    plans = _window_plans(monkeypatch)
    small = Catalog(db, candidate_budget=20)
    found = small.search_page('"ban uy"', 5)  # on every 4th page: 100 of 400
    assert [h["page"] for h in found.hits] == [ids[k] for k in (396, 392, 388, 384, 380)]
    assert (found.total, found.estimated) == (100, True)  # scaled from the span, as before
    assert len(plans) == 1  # the span held the page asked for
    assert "Index Scan Backward" in plans[0] and "Bitmap" not in plans[0], plans[0]
    db.close()


_STORED = "SELECT count(*) FILTER (WHERE pg_column_compression(vec) IS NOT NULL), count(*) FROM {}"


def _page_texts(n: int) -> list[str]:
    """Pages whose word vectors are ~2.5 KB, as a scanned Vietnamese page's."""
    import random

    rng = random.Random(7)
    syllables = [f"{a}{b}{c}" for a in "bcdghklmnpqrstvx" for b in "aeiouy" for c in "cmnpt"]
    return [f"ủy ban nhân dân {' '.join(rng.sample(syllables, 300))}" for _ in range(n)]


def test_word_vectors_are_stored_uncompressed(pg_cluster: PostgresCluster) -> None:
    """A page's word vectors (~2.5 KB) are stored plain: decompressing them at every use
    (match, phrase tier, each word's rank) cost ~40 % of a search (docs/benchmarks.md,
    seventh sitting)."""
    db = Database(pg_cluster.create_database())
    archive(db, _page_texts(20))
    for table in ("page_search_folded", "page_search_exact"):
        assert tuple(db.read().execute(_STORED.format(table)).fetchone()) == (0, 20), table
    db.close()


def test_search_vectors_rewrites_vectors_stored_compressed(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """An archive indexed before (vectors lz4-compressed): ``sohoa-server db search-vectors``
    rewrites them plain, search finds and ranks the same pages, and a second run has nothing
    to do."""
    url = pg_cluster.create_database()
    db = Database(url)
    with db.tx() as con:  # as the schema was: compressed past ~2 KB
        for table in ("page_search_folded", "page_search_exact"):
            con.execute(f"ALTER TABLE {table} SET (toast_tuple_target = 2032)")
    texts = _page_texts(30)
    texts[4] += " biên bản nghiệm thu"
    texts[17] += " biên bản nghiệm thu đê điều"
    ids = archive(db, texts)
    for table in ("page_search_folded", "page_search_exact"):
        assert tuple(db.read().execute(_STORED.format(table)).fetchone()) == (30, 30), table
    catalog = Catalog(db)
    queries = ("nghiem thu", "biên bản", '"nghiệm thu đê"', "uy ban")
    before = [catalog.search_page(q, 10) for q in queries]
    assert {h["page"] for h in before[0].hits} == {ids[4], ids[17]}
    db.close()
    out = _cli(url, tmp_path, "db", "search-vectors")
    assert out.returncode == 0, out.stderr
    assert "2 table(s) rewritten" in out.stdout
    db = Database(url)
    for table in ("page_search_folded", "page_search_exact"):
        assert tuple(db.read().execute(_STORED.format(table)).fetchone()) == (0, 30), table
        storage = db.read().execute(
            "SELECT attstorage, attcompression FROM pg_attribute"
            " WHERE attrelid = ?::regclass AND attname = 'vec'",
            (table,),
        )
        assert tuple(storage.fetchone()) == ("m", "l"), table  # inline; lz4 past ~8 KB
    catalog = Catalog(db)
    after = [catalog.search_page(q, 10) for q in queries]
    assert [(p.hits, p.total) for p in after] == [(p.hits, p.total) for p in before]
    db.close()
    again = _cli(url, tmp_path, "db", "search-vectors")
    assert again.returncode == 0 and "0 table(s) rewritten" in again.stdout, again.stdout


def test_a_span_whose_posting_lists_hold_more_entries_than_pages_is_walked(
    pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two words typed together on ~42 % of pages: PostgreSQL, taking them as independent,
    estimates them on ~18 %, so the span of the newest pages is sized for that (twice the
    budget's matches), and their posting lists hold ~1.5 entries per page of it. Walking
    the span reads ~a fifth of it here; the GIN bitmap would decode every entry and then
    read and sort each match of the span (at 1,000,000 pages "lụt bão", 1.45 entries per
    page: ~85–123 ms against ~40–47 walked; docs/benchmarks.md, thirteenth sitting). Same
    hits and total as through the bitmap."""
    import random

    rng = random.Random(13)
    filler = [f"{a}{b}{c}" for a in "bcdghklmnpqrstvx" for b in "aeiouy" for c in "cmnpt"]
    texts = [
        f"{' '.join(rng.sample(filler, 60))}{' lụt bão' if rng.random() < 0.42 else ''}"
        for _ in range(400)
    ]
    db = Database(pg_cluster.create_database())
    archive(db, texts)
    db.read().execute("ANALYZE")
    plans = _window_plans(monkeypatch)
    small = Catalog(db, candidate_budget=20)
    walked = small.search_page("lụt bão", 5)
    assert len(plans) == 1, plans  # the span held the window
    assert "Index Scan Backward" in plans[0] and "Bitmap" not in plans[0], plans[0]
    monkeypatch.setattr(catalog, "PG_SPAN_PAGE_IN_ENTRIES", 2)  # the rule before: the bitmap
    read = small.search_page("lụt bão", 5)
    assert "Bitmap" in plans[-1], plans[-1]
    assert [(h["page"], h["score"]) for h in walked.hits] == [
        (h["page"], h["score"]) for h in read.hits
    ]
    assert (walked.total, walked.estimated) == (read.total, read.estimated)
    db.close()


def test_a_full_phrase_window_of_its_bound_is_not_counted_again(
    pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quoted phrase whose window is full holds at least the bound the total would be
    counted up to: counting its pages again only says so. At 1,000,000 pages a phrase the
    statistics put under that bound while it filled the window ("trấn kết": estimated
    1,807, on 3,547 pages) paid a second statement as long as the window (~20 ms). Here
    the statistics' estimate is made low the same way; the count must not run, and the
    total is flagged as an estimate of at least the window."""
    db = Database(pg_cluster.create_database())
    archive(db, [f"trang {k} {'trấn kết ' if k % 3 else ''}biên bản" for k in range(1, 121)])
    db.read().execute("ANALYZE")
    attstattarget = (
        db.read()
        .execute(
            "SELECT attstattarget FROM pg_attribute"
            " WHERE attrelid = 'page_pairs'::regclass AND attname = 'vec'"
        )
        .fetchone()[0]
    )
    assert attstattarget == 1000  # the most common pairs kept by ANALYZE (server/store/db.py)
    monkeypatch.setattr(catalog, "PG_TOTAL_EXACT_UP_TO", 30)
    estimate = Catalog._pg_estimate_items
    monkeypatch.setattr(
        Catalog,
        "_pg_estimate_items",
        lambda self, con, table, *a: (
            10 if table == "page_pairs" else estimate(self, con, table, *a)
        ),
    )
    counted: list[int] = []
    count = Catalog._pg_pair_count
    monkeypatch.setattr(
        Catalog,
        "_pg_pair_count",
        lambda self, *a: counted.append(1) or count(self, *a),
    )
    found = Catalog(db, candidate_budget=40).search_page('"trấn kết"', 10)
    assert len(found.hits) == 10
    assert not counted, "the phrase's pages were counted again"
    assert found.total >= 40 and found.estimated
    db.close()


def test_the_installed_settings_bring_the_cache_back_after_a_restart() -> None:
    """The PostgreSQL settings scripts/install-server.sh writes (for a 2 GB machine here),
    on a real server: the blocks a search had in shared_buffers are read back at the next
    start (pg_prewarm's autoprewarm), so the first searches after a restart or a power cut
    do not all go to the disk (docs/benchmarks.md, twenty-first sitting). Without them, a
    restart leaves the cache empty (the same server, the settings taken out)."""
    script = (REPO / "scripts" / "install-server.sh").read_text()
    conf = re.search(r'cat > "\$pgconf" <<CONF\n(.*?)\nCONF', script, re.S)
    assert conf is not None
    settings = {}
    for line in conf.group(1).replace("$((ram_mb / 4))", "512").splitlines():
        if line.strip() and not line.startswith("#") and "ram_mb" not in line:
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip().strip("'")
    assert settings["shared_preload_libraries"] == "pg_prewarm"
    cluster = PostgresCluster(settings).start()
    try:
        url = cluster.create_database()

        def cached() -> int:
            with psycopg.connect(url, autocommit=True) as con:
                return int(con.execute(
                    "SELECT count(*) FROM pg_buffercache"
                    " WHERE relfilenode = pg_relation_filenode('t')"
                ).fetchone()[0])  # fmt: skip

        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE EXTENSION pg_buffercache")
            con.execute(
                "CREATE TABLE t AS SELECT g, repeat('x', 500) AS pad"
                " FROM generate_series(1, 20000) g"
            )
            con.execute("SELECT count(*) FROM t").fetchone()
        held = cached()
        assert held > 1000  # the table, in shared_buffers
        cluster.restart()  # the list of cached blocks saved at shutdown, read back at start
        deadline = time.monotonic() + 30
        while cached() < held:
            assert time.monotonic() < deadline, f"{cached()} of {held} blocks back"
            time.sleep(0.2)
        for name in ("shared_preload_libraries", "pg_prewarm.autoprewarm"):
            del cluster.settings[name]
        cluster.restart()
        time.sleep(2)
        assert cached() == 0  # what the first searches after a restart would meet
    finally:
        cluster.stop()
