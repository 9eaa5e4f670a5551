"""The newest pages' own search indexes (server.store.epochs) and the search window read
through them (server.archive.catalog), on a real PostgreSQL: which indexes exist as the
archive grows, and the window's hits, scores and totals, which must be the whole archive's."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import psycopg
import pytest
from harness import BIN
from pgcluster import PostgresCluster
from test_postgres import _window_plans
from test_search import archive

from server.archive.catalog import Catalog
from server.store import epochs
from server.store.db import PAIRS_META_KEY, Database

pytestmark = pytest.mark.postgres


def _names(db: Database, table: str) -> dict[str, bool]:
    rows = db.read().execute(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c"
        " ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(?)",
        (table,),
    )
    return {str(r[0]): bool(r[1]) for r in rows if str(r[0]).startswith(f"{table}_vec_")}


def test_each_table_has_an_index_for_the_newest_epochs_and_no_other(
    pg_cluster: PostgresCluster,
) -> None:
    """Epochs of 64 page ids, the newest two kept: with pages up to id 250 (epoch 3), the
    indexes of epochs 4 (the next, empty), 3 and 2 on both word vector tables; none below
    two epochs; built once; as the archive grows the next ones are built and those now
    older than the newest two dropped; a second builder finds the lock taken and does
    nothing."""
    epochs.forget()
    db = Database(pg_cluster.create_database())
    ids = archive(db, [f"trang {k} biên bản" for k in range(1, 101)])
    assert epochs.ensure(db, bits=6, keep=2) == ([], [])  # epoch 1 of 0..1: none yet
    ids += archive(db, [f"trang {k} biên bản" for k in range(101, 251)])
    assert max(ids) == 250, "ids are dense from 1 in a new database"
    built, dropped = epochs.ensure(db, bits=6, keep=2) or ([], [])
    want = {
        f"{t}_vec_{lo}_{lo + 64}" for t in epochs.TABLES for lo in (128, 192, 256)
    }  # fmt: skip
    assert (set(built), dropped) == (want, [])
    for table in epochs.TABLES:
        assert _names(db, table) == {n: True for n in want if n.startswith(table)}
    assert epochs.ensure(db, bits=6, keep=2) == ([], [])  # nothing to do
    assert epochs.spans(db, db.read(), "page_search_folded") == [(256, 320), (192, 256), (128, 192)]
    archive(db, [f"trang {k}" for k in range(251, 331)])  # the newest page in epoch 5
    built, dropped = epochs.ensure(db, bits=6, keep=2) or ([], [])
    assert set(built) == {f"{t}_vec_{lo}_{lo + 64}" for t in epochs.TABLES for lo in (320, 384)}
    assert set(dropped) == {f"{t}_vec_{lo}_{lo + 64}" for t in epochs.TABLES for lo in (128, 192)}
    other = psycopg.connect(db.url, autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s)", (epochs.LOCK_KEY,))
    try:
        archive(db, [f"trang {k}" for k in range(331, 400)])
        assert epochs.ensure(db, bits=6, keep=2) is None  # another process is at it
    finally:
        # Released here, not by close(): the server ends the session (and frees its locks)
        # a moment after the client closes it, and the next ensure() could still find it
        # taken (seen once in CI).
        other.execute("SELECT pg_advisory_unlock(%s)", (epochs.LOCK_KEY,))
        other.close()
    assert epochs.ensure(db, bits=6, keep=2) is not None
    db.close()


def _corpus(n: int) -> list[str]:
    """Filler syllables, and: a name's syllables each on ~45 % of the pages (so all three on
    ~9 %, as PostgreSQL estimates them), two words together on ~15 % (estimated on ~2 %: too
    few for the epochs to hold the window), a word on pages 1–3 only, one on every page."""
    rng = random.Random(20)
    filler = [f"{a}{b}{c}" for a in "bcdghklmnpqrstvx" for b in "aeiou" for c in "cmnpt"]
    texts = []
    for k in range(1, n + 1):
        words = [*rng.sample(filler, 40), "biên bản"]
        for syllable in ("Trần", "Xuân", "Nghĩa"):  # each on ~45 % of pages, ~9 % all three
            if rng.random() < 0.45:
                words.insert(rng.randrange(len(words)), syllable)
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words)), "ký tên")
        if k <= 3:
            words.append("lũ quét")
        texts.append(" ".join(words))
    return texts


def _explained(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``EXPLAIN ANALYZE`` of every window statement from now on (the statements still run)."""
    return _window_plans(monkeypatch, "ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF")


def test_the_window_through_the_epochs_is_the_whole_archive_s(
    pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 pages, epochs of 64 (indexes for ids 256–703: the newest six and the next). For a
    name, two words, with and without diacritics, a word on the three oldest pages only,
    and pages further on: the same hits, scores, totals and flags through the epochs as
    without them. The name's window is found in the newest epochs' indexes and the older
    parts are never run; words the epochs should not hold the window of (a word on three
    old pages, two estimated on 2 % of the pages) do not go through them; nor does a word
    on every page, which is walked."""
    epochs.forget()
    db = Database(pg_cluster.create_database())
    archive(db, _corpus(600))
    with db.tx() as con:  # the word vectors alone (the pair path: tests/test_search_pairs.py)
        con.execute("UPDATE meta SET value = 'backfill' WHERE key = ?", (PAIRS_META_KEY,))
    db.read().execute("ANALYZE")
    assert epochs.ensure(db, bits=6, keep=6)
    small = Catalog(db, candidate_budget=20)
    queries = ["tran xuan nghia", "Trần Xuân Nghĩa", "ky ten", "ký tên", "lu quet", "bien ban"]

    def answers(q: str, offset: int) -> tuple[object, ...]:
        found = small.search_page(q, 10, offset)
        return [(h["page"], round(h["score"], 9)) for h in found.hits], found.total, found.estimated

    plans = _explained(monkeypatch)
    through = {(q, o): answers(q, o) for q in queries for o in (0, 10)}
    by_query = dict(zip([(q, o) for q in queries for o in (0, 10)], plans, strict=True))
    monkeypatch.setattr(epochs, "spans", lambda *args: [])
    without = {(q, o): answers(q, o) for q in queries for o in (0, 10)}
    assert through == without
    assert through[("lu quet", 0)][1:] == (3, False)
    name = by_query[("tran xuan nghia", 0)]
    assert "Bitmap Index Scan on page_search_folded_vec_576_640" in name, name
    assert "never executed" in name, name  # older epochs and the rest of the archive
    assert "page_search_exact_vec_576_640" in by_query[("Trần Xuân Nghĩa", 0)]
    old = by_query[("lu quet", 0)]
    assert "_vec_" not in old, old  # 3 pages: the epochs would not hold the window
    assert "_vec_" not in by_query[("ky ten", 0)]  # estimated on 2 %: nor for these
    common = by_query[("bien ban", 0)]
    assert "Index Scan Backward" in common and "_vec_" not in common, common
    db.close()


def test_the_command_runs_and_says_what_it_did(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    """``sohoa-server db search-epochs``: exit 0 and a line of what it did, on an archive
    too small for any (nothing built)."""
    url = pg_cluster.create_database()
    Database(url).close()
    env = {
        "SOHOA_SERVER_DATA_DIR": str(tmp_path),
        "SOHOA_DATABASE_URL": url,
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [str(BIN / "sohoa-server"), "db", "search-epochs"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 index(es) built, 0 dropped" in done.stdout, done.stdout


def test_a_phrase_s_candidates_come_from_the_newest_epochs_of_the_pair_index(
    pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quoted phrase on ~12 % of 600 pages (its words apart on ~20 % more), through the
    pair index with its epochs: the same hits, scores and totals as without them, with and
    without diacritics; the candidates come from the newest epochs' pair indexes, the older
    parts never run, and no part walks the pair table's primary key testing each row's
    vector (PostgreSQL's choice for a page-id range: ~400 ms for a common phrase at
    1,000,000 pages)."""
    epochs.forget()
    rng = random.Random(12)
    filler = [f"{a}{b}{c}" for a in "bcghklmnpqrstvx" for b in "aeiou" for c in "cmnpt"]
    texts = []
    for _ in range(600):
        words = rng.sample(filler, 40)
        if rng.random() < 0.12:
            words.insert(rng.randrange(len(words)), "đê điều")
        elif rng.random() < 0.2:
            words[3:3] = ["đê"]
            words.append("điều")
        texts.append(" ".join(words))
    db = Database(pg_cluster.create_database())
    archive(db, texts)
    db.read().execute("ANALYZE")
    assert epochs.ensure(db, bits=6, keep=6)
    small = Catalog(db, candidate_budget=20)
    keys = [(q, o) for q in ('"đê điều"', '"de dieu"') for o in (0, 10)]

    def answers(q: str, offset: int) -> tuple[object, ...]:
        found = small.search_page(q, 10, offset)
        return [(h["page"], round(h["score"], 9)) for h in found.hits], found.total, found.estimated

    plans = _explained(monkeypatch)
    through = {key: answers(*key) for key in keys}
    by_query = dict(zip(keys, plans, strict=True))
    monkeypatch.setattr(epochs, "spans", lambda *args: [])
    assert through == {key: answers(*key) for key in keys}
    assert len(through[keys[0]][0]) == 10
    for q in ('"đê điều"', '"de dieu"'):
        plan = by_query[(q, 0)]
        assert "Bitmap Index Scan on page_pairs_vec_576_640" in plan, plan
        assert "never executed" in plan, plan
        assert plan.count("Bitmap Index Scan on page_pairs_vec_") == 7, plan
        assert "page_pairs_pkey" not in plan, plan
    db.close()
