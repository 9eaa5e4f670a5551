"""Page-text search (server.archive.catalog.Catalog.search_page): diacritic rules, the phrase tier,
bm25 order, the candidate budget, paging and the API's X-Total-Count. Pages are written
straight into the catalogue through server.store.db.Database.index_text (as bench/search.py does);
ingest itself is covered by test_ingest.py."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pgcluster import url_of
from test_staff import post_login

from server.app import create_app
from server.archive import auth, progress
from server.archive.catalog import Catalog, aligned, parse_query, snippet
from server.config import ServerSettings
from server.store.db import Database, fold


def archive(db: Database, texts: list[str]) -> list[int]:
    """One batch with a page per text, in order (later pages are newer); their ids."""
    ids = []
    with db.tx() as con:
        con.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen) VALUES ('xa-01', 0, 0)"
            " ON CONFLICT DO NOTHING"
        )
        batch = con.execute(
            "INSERT INTO batches(device_id, batch_id, created_at, received_at, page_count,"
            " source, agent_version) VALUES ('xa-01', ?, 0, 0, ?, 'scan', 'test') RETURNING id",
            (f"b{len(texts)}-{id(texts)}", len(texts)),
        ).fetchall()[0][0]
        for n, text in enumerate(texts, 1):
            page = con.execute(
                "INSERT INTO pages(batch_pk, device_id, page_id, page_no, capture_sha256,"
                " capture_size, dpi, width_px, height_px, colour)"
                " VALUES (?, 'xa-01', ?, ?, '', 0, 300, 2480, 3508, 1) RETURNING id",
                (batch, f"{batch}-{n}", n),
            ).fetchall()[0][0]
            db.index_text(con, page, text)
            ids.append(page)
    return ids


@pytest.fixture
def db(database: Path | str) -> Database:
    return Database(database)


def pages(catalog: Catalog, q: str, limit: int = 50, offset: int = 0) -> list[int]:
    return [h["page"] for h in catalog.search(q, limit, offset)]


def test_with_and_without_diacritics_nfc_nfd_and_d(db: Database) -> None:
    a, b, c = archive(
        db,
        [
            "Khai thác khoáng sản trái phép tại Đà Nẵng",
            "Khoang tàu, sàn nhà",  # the same letters without diacritics
            "Sổ hộ tịch năm 1998",
        ],
    )
    cat = Catalog(db)
    assert set(pages(cat, "khoang san")) == {a, b}  # no diacritics: either spelling
    assert pages(cat, "khoáng sản") == [a]  # diacritics: exact
    assert pages(cat, unicodedata.normalize("NFD", "khoáng sản")) == [a]  # NFD query
    assert pages(cat, "KHOÁNG SẢN") == [a]
    assert pages(cat, "khoàng") == []  # another tone is another syllable
    # đ/Đ has no Unicode decomposition: folded by hand, both cases.
    assert pages(cat, "da nang") == [a] == pages(cat, "DA NANG") == pages(cat, "Đà Nẵng")
    assert pages(cat, "đà") == [a] and pages(cat, "dà") == []
    assert pages(cat, "ho tich 1998") == [c]
    assert pages(cat, "") == pages(cat, "  ?! ") == []
    # NFD text in the archive is found by NFC and NFD queries alike (index_text makes NFC).
    (d,) = archive(db, [unicodedata.normalize("NFD", "Giấy chứng nhận quyền sử dụng đất")])
    assert pages(cat, "quyền sử dụng") == [d] == pages(cat, "quyen su dung")
    assert pages(cat, unicodedata.normalize("NFD", "quyền")) == [d]


def test_rare_word_outweighs_common_word(db: Database) -> None:
    filler = ["xã xã thôn ấp"] * 8  # "xã" on every page: idf ~0
    common_heavy, rare_heavy = archive(
        db,
        [
            "xã xã xã xã xã xã xã xã thôn khoáng thôn",  # many "xã", one "khoáng"
            "xã thôn khoáng ấp khoáng ấp khoáng",  # one "xã", three "khoáng"
            *filler,
        ],
    )[:2]
    cat = Catalog(db)
    assert pages(cat, "xa khoang") == [rare_heavy, common_heavy]
    assert pages(cat, "khoáng xã") == [rare_heavy, common_heavy]


def test_words_together_rank_above_words_apart(db: Database) -> None:
    apart, together, other = archive(
        db,
        [
            # more of both syllables, but never "khoáng sản" (one Vietnamese word)
            "khoáng chất ở đây. Tài sản công. Khoáng vật, khoáng hóa, di sản, sản xuất",
            "Biên bản: khai thác khoáng sản trái phép",
            "không liên quan",
        ],
    )
    cat = Catalog(db)
    for q in ("khoang san", "khoáng sản", "KHOÁNG  SẢN"):
        assert pages(cat, q) == [together, apart], q
    # The snippet of the phrase hit is centred on the phrase.
    (hit, _) = cat.search("khoang san")
    assert "khoáng sản" in hit["snippet"]
    # Quotes: the phrase only.
    assert pages(cat, '"khoang san"') == [together]
    assert pages(cat, '"san khoang"') == []
    assert pages(cat, '"khoáng sản" biên') == [together]
    assert set(pages(cat, "sản khoáng")) == {apart, together}  # no phrase in that order
    assert other not in pages(cat, "khoang")


def test_candidate_budget_and_paging(db: Database) -> None:
    ids = archive(db, [f"quyết định số {n} về việc xã" for n in range(30)])
    strong = archive(db, ["quyết định quyết định quyết định"])[0]
    full = Catalog(db)
    assert pages(full, "quyet dinh")[0] == strong
    hits, total, _ = full.search_page("quyet dinh", 10, 0)
    assert total == 31 and len(hits) == 10
    # Paging: consecutive pages of results, no repeats, nothing lost.
    seen = []
    for offset in range(0, 40, 10):
        seen += pages(full, "quyet dinh", 10, offset)
    assert sorted(seen) == sorted([*ids, strong])
    # A budget of 5 ranks only the 5 newest matches of each tier, but still counts all.
    small = Catalog(db, candidate_budget=5)
    hits, total, _ = small.search_page("quyet dinh", 50, 0)
    assert total == 31
    assert hits[0]["page"] == strong  # the newest page is in the window
    # Phrase tier and all-words tier have the same 5 newest candidates: 5 hits.
    assert set(pages(small, "quyet dinh")) == {strong, *ids[-4:]}
    assert pages(small, "xa") == list(reversed(ids))[:5]  # equal scores: newest first


def test_parse_query_and_aligned() -> None:
    p = parse_query('  Khoáng "sản trái" phép ')
    assert p is not None and p.exact
    assert p.terms == ["khoáng", "sản", "trái", "phép"]
    assert p.match == '"khoáng" "sản trái" "phép"' and p.phrase is None
    p = parse_query("khoang san")
    assert p is not None and not p.exact and p.phrase == '"khoang san"'
    assert parse_query('"') is None
    text = "ĐÀ Nẵng İ x\u0301"  # a two-character lower case, a stray combining mark
    assert len(aligned(text, False)) == len(text) == len(aligned(text, True))
    assert aligned("ĐÀ Nẵng", False) == "da nang"
    assert snippet("a " * 200 + "Đà Nẵng", ["da", "nang"], False).endswith("Đà Nẵng")


def test_a_snippet_is_cut_between_words_around_its_hit() -> None:
    """The demo's first hit began "…n Phú, ngày 14": a window cut by character count shows
    a syllable's tail, which reads as another word in Vietnamese."""
    text = (
        "Ủy ban nhân dân xã Xuân Phú, ngày 14 tháng 3 năm 2024. QUYẾT ĐỊNH về việc phê duyệt"
        " kế hoạch sử dụng đất năm 2024 của xã Xuân Phú, huyện Xuân Lộc, tỉnh Đồng Nai và"
        " các nội dung liên quan khác được trình bày dưới đây cho nhân dân\nbiết."
    )
    words = set(text.replace("\n", " ").split())
    for terms in (["phe", "duyet", "ke", "hoach"], ["dong", "nai"], ["ngay"], ["biet"]):
        for width in (40, 80, 160):
            shown = snippet(text, terms, False, width)
            inner = shown.removeprefix("…").removesuffix("…")
            assert set(inner.split()) <= words, (terms, width, shown)  # whole words only
            assert " ".join(terms) in aligned(inner, False).replace("\n", " "), (terms, shown)
            assert len(inner) <= width, (terms, width, shown)
            assert shown.startswith("…") == (not text.startswith(inner)), shown
            assert shown.endswith("…") == (not text.replace("\n", " ").endswith(inner)), shown
    one_word = "x" * 500
    assert snippet(one_word, ["x"], False) == "x" * 160 + "…"  # no space: cut where it must


def test_a_metadata_hit_shows_its_matching_line_cut_between_words() -> None:
    from server.archive.search import META_LINE, meta_line

    title = "Tiêu đề: " + "Hồ sơ giải quyết tranh chấp đất đai thôn Nà Hẩu " * 8
    text = "Mã hồ sơ: 01.2024.TC\n\n" + title.strip() + "\nGhi chú: không"
    line = meta_line(text, ["tranh", "chap"], False)
    assert line.endswith("…") and len(line) <= META_LINE + 1
    assert set(line.removesuffix("…").split()) <= set(title.split()), line  # whole words
    assert meta_line(text, ["ghi"], False) == "Ghi chú: không"
    assert meta_line(text, ["không có"], True) == "Mã hồ sơ: 01.2024.TC"  # no hit: the first
    assert meta_line("", ["x"], False) == ""


def test_aligned_is_the_text_mapped_character_by_character() -> None:
    def one(c: str, exact: bool) -> str:
        f = c.lower() if exact else fold(c)
        return f if len(f) == 1 else c

    odd = "ĐÀ Nẵng İ ΟΔΟΣ x\u0301 한국 \x00 \ud800 ǅ ＡＢ"  # no character beyond U+FFFF
    for text in (odd, odd + " 😀 𝐀", "", "Ủy ban nhân dân xã " * 50):
        for exact in (True, False):
            assert aligned(text, exact) == "".join(one(c, exact) for c in text)
            assert aligned(text, exact) == aligned(text, exact)  # the tables filled: the same


def test_api_search_shape_paging_and_total(tmp_path: Path, database: Path | str) -> None:
    settings = ServerSettings(data_dir=tmp_path, ingest=False, database_url=url_of(database))
    db = Database(settings.database())
    ids = archive(db, [f"Ủy ban nhân dân xã Tân Lập, văn bản {n}" for n in range(12)])
    auth.add_user(db, "viewer", "viewer", None)
    headers = {"Authorization": f"Bearer {auth.create_token(db, 'viewer')}"}
    with TestClient(create_app(settings)) as client:
        r = client.get("/api/v1/search", params={"q": "uy ban"}, headers=headers)
        assert r.status_code == 200 and r.headers["X-Total-Count"] == "12"
        body = r.json()
        assert len(body) == 12
        assert set(body[0]) == {
            "kind", "page", "page_no", "batch", "device_id", "ma_ho_so", "title", "snippet",
            "spans", "score",
        }  # fmt: skip
        assert body[0]["kind"] == "page" and body[0]["ma_ho_so"] is None
        first = body[0]
        assert [first["snippet"][s:e] for s, e in first["spans"]] == ["Ủy", "ban", "bản"]
        r = client.get(
            "/api/v1/search", params={"q": "ủy ban", "limit": 5, "offset": 10}, headers=headers
        )
        assert len(r.json()) == 2 and r.headers["X-Total-Count"] == "12"
        assert {h["page"] for h in r.json()} <= set(ids)
        bad = client.get("/api/v1/search", params={"q": "x", "offset": -1}, headers=headers)
        assert bad.status_code == 422


def test_api_search_refuses_and_hides_as_before(tmp_path: Path, database: Path | str) -> None:
    """The route and the dependencies that only look things up run on the event loop now
    (the token check and the search in the thread pool), and a token's user and places come
    from one statement: who may search, what they see and the errors they get are unchanged
    (this passes on the code before those changes too)."""
    settings = ServerSettings(data_dir=tmp_path, ingest=False, database_url=url_of(database))
    db = Database(settings.database())
    ids = archive(db, [f"Ủy ban nhân dân xã Tân Lập, văn bản {n}" for n in range(3)])
    assert progress.set_commune(db, "xa-01", "Huyện Gần / Xã Tân Lập", "admin")
    auth.add_user(db, "viewer", "viewer", "mật-khẩu-đủ-dài")
    for who, places in (("far", ["Huyện Xa", "Huyện Xa Hơn"]), ("near", ["Huyện Xa", "Huyện Gần"])):
        auth.add_user(db, who, "viewer", None)
        auth.set_places(db, who, places)
    tokens = {who: auth.create_token(db, who) for who in ("viewer", "far", "near")}

    with TestClient(create_app(settings)) as client:

        def search(headers: dict[str, str], q: str = "uy ban") -> Response:
            return client.get("/api/v1/search", params={"q": q}, headers=headers)

        for refused in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer nope"},
                        {"Authorization": f"Basic {tokens['viewer']}"}):  # fmt: skip
            r = search(refused)
            assert r.status_code == 401, refused
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert r.json() == {"detail": "missing or invalid bearer token"}
        r = search({"Authorization": f"Bearer {tokens['viewer']}"})
        assert r.status_code == 200 and r.headers["X-Total-Count"] == "3"
        assert sorted(h["page"] for h in r.json()) == sorted(ids)
        assert r.headers["content-type"] == "application/json"
        assert r.headers["X-Content-Type-Options"] == "nosniff"  # the middlewares still ran
        # A reader scoped to other places sees nothing and learns no count; one of whose
        # places holds the station sees every page.
        r = search({"Authorization": f"Bearer {tokens['far']}"})
        assert r.status_code == 200 and r.json() == [] and r.headers["X-Total-Count"] == "0"
        r = search({"Authorization": f"Bearer {tokens['near']}"})
        assert sorted(h["page"] for h in r.json()) == sorted(ids)
        assert r.headers["X-Total-Count"] == "3"
        auth.set_disabled(db, "near", True)
        assert search({"Authorization": f"Bearer {tokens['near']}"}).status_code == 401
        bad = client.get("/api/v1/search", headers={"Authorization": f"Bearer {tokens['far']}"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "q"]
        # A staff member's session cookie reads the API too (GET only), by the same rules.
        assert post_login(client, username="viewer", password="mật-khẩu-đủ-dài").status_code == 200
        r = search({})
        assert r.status_code == 200 and r.headers["X-Total-Count"] == "3"
    db.close()


def test_web_search_pages_through_results(tmp_path: Path, database: Path | str) -> None:
    settings = ServerSettings(data_dir=tmp_path, ingest=False, database_url=url_of(database))
    db = Database(settings.database())
    archive(db, [f"Quyết định số {n} về khoáng sản" for n in range(60)])
    auth.add_user(db, "viewer", "viewer", "mật-khẩu-đủ-dài")
    with TestClient(create_app(settings)) as client:
        login = {"username": "viewer", "password": "mật-khẩu-đủ-dài"}
        assert post_login(client, **login).status_code == 200
        first = client.get("/search", params={"q": "khoang san"}).text
        assert "(1–50 / 60)" in first and first.count("<mark>khoáng</mark>") == 50
        assert 'href="/search?q=khoang%20san&amp;offset=50"' in first
        second = client.get("/search", params={"q": "khoang san", "offset": 50}).text
        assert "(51–60 / 60)" in second and 'rel="next"' not in second
        assert '<ol class="hits" start="51">' in second
