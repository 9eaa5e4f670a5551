"""Names and quoted phrases through the adjacent-pair index on PostgreSQL (issue 19:
server.archive.catalog.Catalog._rank_pairs, server.store.pg.pairs_tsvector) and the backfill
of an archive indexed before it (server.store.pairs, ``sohoa-server db search-pairs``).

Every answer of the pair path is checked against a direct check of the word vectors
(``vec @@ phrase``, the path of before) and a Python scan of the texts; the path is spied on
so that a test cannot pass by falling back to the word vectors."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pgcluster import PostgresCluster
from test_search import archive

from server.archive import catalog
from server.archive.catalog import Catalog
from server.store import pairs, pg
from server.store.db import PAIRS_META_KEY, Database, fold

pytestmark = pytest.mark.postgres

BIN = Path(sys.executable).parent
FILLER = ("xã", "ủy", "ban", "nhân", "dân", "biên", "bản", "họp", "thôn", "sửa")


def corpus() -> list[str]:
    """~120 pages: "đê" and "điều" on every page but adjacent on few (once across a line
    break, once across a comma, once with another diacritic: "dê điều"); "Nguyễn Văn Hùng"
    on some pages (once across a line break), and on others "Nguyễn Văn" and "Văn Hùng"
    apart, so that every pair of the name is there without the name."""
    rng = random.Random(19)
    texts = []
    for k in range(1, 121):
        words = [rng.choice(FILLER) for _ in range(30)]
        words[3:3] = ["đê", "bao"]
        words[20:20] = ["kè", "điều"]  # both syllables on every page, apart
        text = " ".join(words)
        if k in (7, 50, 90):
            text += " tu bổ đê điều"
        if k == 60:
            text += " tu bổ đê\nđiều năm nay"  # a line break between them
        if k == 70:
            text += " đê, điều chỉnh"  # punctuation between them
        if k == 80:
            text += " dê điều"  # folded: "de dieu"; exact: not "đê điều"
        if k % 9 == 0:
            text += ". Người ký: Nguyễn Văn Hùng"
        if k == 100:
            text += ". Người ký: Nguyễn Văn\nHùng"
        if k % 11 == 0:
            text += ". Nguyễn Văn An và Lê Văn Hùng"  # the name's pairs, not the name
        texts.append(text)
    return texts


def scan(texts: list[str], ids: list[int], phrase: str) -> set[int]:
    """Pages whose tokens (\\w+, folded or lower-cased as the query is) hold the phrase."""
    phrase = unicodedata.normalize("NFC", phrase)
    exact = fold(phrase) != phrase.lower()

    def tokens(s: str) -> list[str]:
        s = unicodedata.normalize("NFC", s)
        return re.findall(r"\w+", s.lower() if exact else fold(s))

    want = tokens(phrase)
    found = set()
    for page, text in zip(ids, texts, strict=True):
        have = tokens(text)
        if any(have[i : i + len(want)] == want for i in range(len(have))):
            found.add(page)
    return found


def direct(db: Database, phrase: str) -> set[int]:
    """Pages the word vectors match the phrase on (the path of before)."""
    exact = fold(phrase) != phrase.lower()
    table = "page_search_exact" if exact else "page_search_folded"
    words = pg.words(phrase.lower() if exact else fold(phrase))
    rows = db.read().execute(
        f"SELECT page_pk FROM {table} WHERE vec @@ ?::tsquery",
        (pg.tsquery([words]),),
    )
    return {int(r[0]) for r in rows}


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each search answered through the pair index (True) or went on without it."""
    calls: list[bool] = []
    original = Catalog._rank_pairs

    def spied(self: Catalog, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(Catalog, "_rank_pairs", spied)
    return calls


@pytest.fixture
def built(pg_cluster: PostgresCluster) -> Iterator[tuple[Database, list[str], list[int]]]:
    db = Database(pg_cluster.create_database())
    texts = corpus()
    ids = archive(db, texts)
    yield db, texts, ids
    db.close()


PHRASES = ['"đê điều"', '"de dieu"', '"nguyễn văn hùng"', '"nguyen van hung"', '"van hung"']


def test_quoted_phrases_through_the_pairs_are_the_pages_the_words_say(
    built: tuple[Database, list[str], list[int]], spy: list[bool]
) -> None:
    db, texts, ids = built
    catalog = Catalog(db)
    expected = {
        '"đê điều"': {ids[k - 1] for k in (7, 50, 60, 70, 90)},  # line break, comma: adjacent
        '"de dieu"': {ids[k - 1] for k in (7, 50, 60, 70, 80, 90)},  # and "dê điều"
    }
    for phrase in PHRASES:
        bare = phrase.strip('"')
        want = scan(texts, ids, bare)
        assert want == direct(db, bare), phrase  # the tokenizer's adjacency, both ways
        if phrase in expected:
            assert want == expected[phrase]
        found = catalog.search_page(phrase, 100)
        assert spy[-1] is True, phrase  # answered by the pair index
        assert {h["page"] for h in found.hits} == want, phrase
        assert (found.total, found.estimated) == (len(want), False), phrase
    # The name's pairs without the name (pages 11, 22, …) are not matches of the name.
    name = scan(texts, ids, "nguyen van hung")
    assert ids[10] not in name and ids[10] in direct(db, "nguyen van") & direct(db, "van hung")


def test_a_window_smaller_than_the_matches_is_the_newest_and_pages_cover_them(
    built: tuple[Database, list[str], list[int]], spy: list[bool]
) -> None:
    db, texts, ids = built
    want = scan(texts, ids, "de dieu")  # 6 pages
    small = Catalog(db, candidate_budget=4)
    found = small.search_page('"de dieu"', 10)
    assert spy[-1] is True
    assert {h["page"] for h in found.hits} == set(sorted(want)[-4:])  # the newest 4
    assert (found.total, found.estimated) == (6, False)  # counted past the window
    seen: list[int] = []
    for offset in range(0, 6, 2):
        seen += [h["page"] for h in Catalog(db).search_page('"de dieu"', 2, offset).hits]
    assert sorted(seen) == sorted(want)  # paging: each once
    beyond = Catalog(db).search_page('"de dieu"', 2, 10)
    assert (beyond.hits, beyond.total) == ([], 6)


def test_a_name_typed_without_quotes_fills_the_page_from_its_phrase_matches(
    built: tuple[Database, list[str], list[int]], spy: list[bool]
) -> None:
    db, texts, ids = built
    catalog = Catalog(db)
    for name in ("Nguyễn Văn Hùng", "nguyen van hung"):
        phrase = scan(texts, ids, name)
        every = {
            page for page, text in zip(ids, texts, strict=True)
            if all(scan([text], [page], w) for w in name.split())
        }  # fmt: skip
        assert len(phrase) == 14 and len(every) > len(phrase)
        full = catalog.search_page(name, len(phrase))  # the phrase matches fill the page
        assert spy[-1] is True
        assert {h["page"] for h in full.hits} == phrase
        assert (full.total, full.estimated) == (len(every), False)
        # More than the phrase matches: both tiers, as before — the phrase tier first.
        more = catalog.search_page(name, 50)
        assert spy[-1] is False
        pages = [h["page"] for h in more.hits]
        assert set(pages[: len(phrase)]) == phrase and set(pages) == every
        assert more.total == len(every)


def test_sqlite_and_postgresql_find_the_same_phrase_pages(
    built: tuple[Database, list[str], list[int]], tmp_path: Path, spy: list[bool]
) -> None:
    db, texts, ids = built
    lite = Database(tmp_path / "archive.sqlite")
    lite_ids = archive(lite, texts)
    where = dict(zip(lite_ids, ids, strict=True))
    for phrase in PHRASES:
        a = {h["page"] for h in Catalog(db).search_page(phrase, 100).hits}
        b = {where[h["page"]] for h in Catalog(lite).search_page(phrase, 100).hits}
        assert spy[-1] is True
        assert a == b, phrase


def _before_the_pairs(db: Database) -> Database:
    """The archive as an older release left it (no pair tables), then opened by this one:
    the schema update makes the tables, empty, and marks the archive for backfill."""
    with db.tx() as con:
        con.execute("DROP TABLE page_pairs")
        con.execute("DELETE FROM meta WHERE key IN (?, 'pg_ddl')", (PAIRS_META_KEY,))
    url = db.url
    db.close()
    return Database(url)


def test_an_archive_indexed_before_the_pairs_searches_correctly_until_filled(
    built: tuple[Database, list[str], list[int]], spy: list[bool]
) -> None:
    db, texts, ids = built
    db = _before_the_pairs(db)
    try:
        assert pairs.state(db) == "backfill"
        for phrase in PHRASES:  # the word vectors alone, same pages
            found = Catalog(db).search_page(phrase, 100)
            assert {h["page"] for h in found.hits} == scan(texts, ids, phrase.strip('"'))
        assert spy == []  # the pair index was never asked
        new = archive(db, ["tu bổ đê điều năm sau"])  # a page ingested after the upgrade
        texts, ids = [*texts, "tu bổ đê điều năm sau"], [*ids, *new]
        assert pairs.state(db) == "backfill"

        said: list[str] = []

        def stop(line: str) -> None:  # interrupted after its first batch
            said.append(line)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            pairs.backfill(db, batch=50, say=stop)
        count = "SELECT count(*) FROM page_pairs"
        assert db.read().execute(count).fetchone()[0] == 51  # the first batch and the new page
        assert pairs.state(db) == "backfill"
        assert pairs.backfill(db, batch=50) == 70  # the rest, not the first batch again
        assert pairs.state(db) == "ready"
        for phrase in PHRASES:
            found = Catalog(db).search_page(phrase, 100)
            assert spy[-1] is True
            assert {h["page"] for h in found.hits} == scan(texts, ids, phrase.strip('"'))
        # A page left without its pairs (an older release ran meanwhile): the next schema
        # update sends search back to the word vectors.
        with db.tx() as con:
            con.execute("DELETE FROM page_pairs WHERE page_pk = ?", (ids[6],))
            con.execute("DELETE FROM meta WHERE key = 'pg_ddl'")
        url = db.url
        db.close()
        db = Database(url)
        assert pairs.state(db) == "backfill"
    finally:
        db.close()


def test_search_pairs_command_fills_and_reports(
    built: tuple[Database, list[str], list[int]], tmp_path: Path
) -> None:
    db, texts, ids = built
    db = _before_the_pairs(db)
    url = db.url
    db.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(tmp_path / "data"), SOHOA_DATABASE_URL=url)
    run = subprocess.run(
        [str(BIN / "sohoa-server"), "db", "search-pairs"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "120 page(s)" in run.stdout
    db = Database(url)
    try:
        assert pairs.state(db) == "ready"
        assert db.read().execute("SELECT count(*) FROM page_pairs").fetchone()[0] == 120
    finally:
        db.close()


def test_a_name_s_page_and_exact_total_take_three_round_trips(
    built: tuple[Database, list[str], list[int]],
    spy: list[bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each statement is a round trip, 1–6 ms of wall time on a loaded server for a count
    that takes 0.2 ms: the highest page id with the words' document frequencies, the window
    with the total counted in it, the page texts — seven before (one count per word and one
    for the total)."""
    db, texts, ids = built
    db.read().execute("ANALYZE")
    catalog = Catalog(db)
    catalog.search_page("Lê Văn Hùng", 5)  # the statistics, once per a few minutes
    trips: list[str] = []
    inside = [False]
    execute, settings = pg.PgConnection.execute, pg.PgConnection.fetch_with_settings

    def counted(self: pg.PgConnection, sql: str, parameters: Any = (), /) -> Any:
        if not inside[0]:
            trips.append(sql)
        return execute(self, sql, parameters)

    def pipelined(self: pg.PgConnection, s: dict[str, str], sql: str, p: Any) -> Any:
        trips.append(sql)  # one round trip: settings, statement, reset
        inside[0] = True
        try:
            return settings(self, s, sql, p)
        finally:
            inside[0] = False

    monkeypatch.setattr(pg.PgConnection, "execute", counted)
    monkeypatch.setattr(pg.PgConnection, "fetch_with_settings", pipelined)
    name = "Nguyễn Văn Hùng"
    phrase = scan(texts, ids, name)
    every = {
        page for page, text in zip(ids, texts, strict=True)
        if all(scan([text], [page], w) for w in name.split())
    }  # fmt: skip
    found = catalog.search_page(name, len(phrase))
    assert spy[-1] is True
    assert {h["page"] for h in found.hits} == phrase
    assert (found.total, found.estimated) == (len(every), False)
    assert len(trips) == 3, trips


def _pair_window_plans(monkeypatch: pytest.MonkeyPatch, explain: str) -> list[str]:
    """The plans (``explain`` of the statement, under its own settings) of every pair window
    search runs from now on, in order; the statements still run."""
    plans: list[str] = []
    fetch = pg.PgConnection.fetch_with_settings

    def explained(self: pg.PgConnection, s: dict[str, str], sql: str, args: Any) -> Any:
        if "page_pairs WHERE vec" in sql and "count(*) OVER ()" in sql:
            plan = fetch(self, s, f"{explain} {sql}", args)
            plans.append("\n".join(r[0] for r in plan))
        return fetch(self, s, sql, args)

    monkeypatch.setattr(pg.PgConnection, "fetch_with_settings", explained)
    return plans


@pytest.mark.parametrize("full", [True, False])
def test_a_name_s_total_is_counted_only_when_its_phrase_window_is_not_full(
    built: tuple[Database, list[str], list[int]],
    spy: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    full: bool,
) -> None:
    """Words typed without quotes, through the pairs: the pages with all the words are
    counted in the window statement up to the exact bound — but a window holding that many
    phrase matches already says the count would reach it (each has all the words), so the
    count is not run (at 1,000,000 pages it cost 10–20 ms: docs/benchmarks.md, thirteenth
    sitting). Same hits and total either way."""
    db, texts, ids = built
    db.read().execute("ANALYZE")
    name = "Nguyễn Văn Hùng"
    phrase = scan(texts, ids, name)  # 14 pages
    every = {
        page for page, text in zip(ids, texts, strict=True)
        if all(scan([text], [page], w) for w in name.split())
    }  # fmt: skip
    bound = 10 if full else 30  # all three words on 23 pages
    monkeypatch.setattr(catalog, "PG_TOTAL_EXACT_UP_TO", bound)
    plans = _pair_window_plans(monkeypatch, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)")
    found = Catalog(db, candidate_budget=bound).search_page(name, 5)
    assert spy[-1] is True
    newest = sorted(phrase, reverse=True)[:bound]
    assert {h["page"] for h in found.hits} <= set(newest)
    assert len(found.hits) == 5
    assert len(plans) == 1
    count = re.search(r"InitPlan 1.*\n\s*->\s+Aggregate \((.*)\)", plans[0])
    assert count is not None, plans[0]
    if full:
        assert (found.total, found.estimated) == (bound, True)  # the bound, as counted before
        assert count[1] == "never executed", plans[0]
    else:
        assert (found.total, found.estimated) == (len(every), False)
        assert count[1] == "actual rows=1 loops=1", plans[0]


def test_each_pair_candidate_s_vector_is_read_by_its_key_not_matched_against_every_match(
    pg_cluster: PostgresCluster, spy: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rare words with diacritics typed together ("ma túy"): PostgreSQL puts the phrase on
    a handful of pages, so with hash and merge joins off it read the phrase's pages once,
    kept them in memory and compared every pair candidate with every one of them (a
    Materialize under a join filter: at 1,000,000 pages 1,424 × 712 on average, 1,013,176
    comparisons, 95 of 102 ms; docs/benchmarks.md, fourteenth sitting). Each candidate's
    vector is read by its primary key instead. Same hits and total."""
    rng = random.Random(23)
    filler = [f"{a}{b}{c}" for a in "bcdghklnpqrstvx" for b in "aeiouy" for c in "cmnpt"]
    texts = []
    for k in range(300):
        words = rng.sample(filler, 40)
        if k % 5 == 0:
            words.insert(rng.randrange(40), "ma túy")
        elif k % 7 == 0:
            words.insert(rng.randrange(40), "mà tùy")  # the same folded pair, not the phrase
        texts.append(" ".join(words))
    db = Database(pg_cluster.create_database())
    ids = archive(db, texts)
    db.read().execute("ANALYZE")
    plans = _pair_window_plans(monkeypatch, "EXPLAIN (COSTS OFF)")
    found = Catalog(db, candidate_budget=100).search_page("ma túy", 10)
    assert spy[-1] is True
    assert len(plans) == 1
    assert "Materialize" not in plans[0] and "Join Filter" not in plans[0], plans[0]
    assert "Index Scan using page_search_exact_pkey" in plans[0], plans[0]
    phrase = scan(texts, ids, "ma túy")
    assert len(phrase) == 60
    assert {h["page"] for h in found.hits} <= phrase and len(found.hits) == 10
    assert (found.total, found.estimated) == (60, False)
    db.close()
