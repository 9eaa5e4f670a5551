"""Chế độ sử dụng and place on every read path of the API and the staff pages
(server.archive.access), on the archive the real pipeline built: each test first shows what
was open before, then that it is refused."""

from __future__ import annotations

import csv
import io
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from harness import BIN
from real_archive import RealArchive
from test_search import archive as pages_of

from server.app import create_app
from server.archive import access, auth
from server.config import ServerSettings
from server.store import pg
from server.store.db import Database

pytestmark = [pytest.mark.tesseract, pytest.mark.mqtt, pytest.mark.slow]
ORGAN = "000.00.00.H53"


@dataclass
class Archive:
    client: TestClient
    db: Database
    tokens: dict[str, str]
    pages: list[int]
    env: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def ho_so(self, ky_hieu: str, regime: str, pages: list[int]) -> str:
        body = {
            "organ_id": ORGAN, "nam": 2024, "ky_hieu": ky_hieu, "tieu_de": f"Hồ sơ {ky_hieu}",
            "thoi_han_bao_quan": "Vĩnh viễn", "che_do_su_dung": regime,
        }  # fmt: skip
        ma = f"{ORGAN}.2024.{ky_hieu}"
        r = self.client.put(f"/api/v1/ho-so/{ma}", json=body, headers=self.h("admin"))
        assert r.status_code == 200, r.text
        doc = {"ten_loai": "Biên bản", "trich_yeu": "khai thác khoáng sản", "pages": pages}
        r = self.client.post(f"/api/v1/ho-so/{ma}/van-ban", json=doc, headers=self.h("admin"))
        assert r.status_code == 201, r.text
        return ma


@pytest.fixture
def archive(
    request: pytest.FixtureRequest, real_archive: RealArchive, tmp_path: Path
) -> Iterator[Archive]:
    cluster = request.getfixturevalue("pg_cluster") if real_archive.engine != "sqlite" else None
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", cluster)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    settings = ServerSettings(data_dir=data_dir, ingest=False, database_url=url)
    db = Database(settings.database())
    tokens = {}
    for name, role in (("viewer", "viewer"), ("archivist", "archivist"), ("admin", "admin"),
                       ("far", "archivist"), ("near", "archivist")):  # fmt: skip
        auth.add_user(db, name, role, None)
        tokens[name] = auth.create_token(db, name)
    pages = [r[0] for r in db.read().execute("SELECT id FROM pages ORDER BY page_no")]
    env = {"SOHOA_SERVER_DATA_DIR": str(data_dir), "SOHOA_DATABASE_URL": url, "PATH": "/usr/bin"}
    with TestClient(create_app(settings)) as client:
        yield Archive(client, db, tokens, pages, env)
    db.close()


def _refusals(db: Database) -> list[tuple[str, str]]:
    rows = db.read().execute("SELECT actor, target FROM audit WHERE action = 'access.refused'")
    return [(r["actor"], r["target"]) for r in rows]


def test_a_secret_ho_so_is_for_admins_only_and_never_in_bulk(archive: Archive) -> None:
    c, first = archive.client, archive.pages[0]
    # Before: any viewer reads page 1.
    assert c.get(f"/api/v1/pages/{first}/text", headers=archive.h("viewer")).status_code == 200
    ma = archive.ho_so("01.MAT", "Mật", [first])
    for who in ("viewer", "archivist"):
        for tail in ("", "/text", "/render?w=800", "/thumb", "/image", "/original",
                     "/capture?w=800", "/words?q=khoang"):  # fmt: skip
            r = c.get(f"/api/v1/pages/{first}{tail}", headers=archive.h(who))
            assert r.status_code == 403, (who, tail, r.status_code)
        assert c.get(f"/api/v1/ho-so/{ma}", headers=archive.h(who)).status_code == 403
        assert ma not in [
            h["ma_ho_so"] for h in c.get("/api/v1/ho-so", headers=archive.h(who)).json()
        ]
        hits = c.get("/api/v1/search", params={"q": "khoang san"}, headers=archive.h(who)).json()
        assert first not in [h["page"] for h in hits]
        meta = c.get("/api/v1/ho-so-search", params={"q": "khoang"}, headers=archive.h(who))
        assert ma not in [h["ma_ho_so"] for h in meta.json()]
        batch = c.get("/api/v1/batches", headers=archive.h(who)).json()[0]
        listed = c.get(f"/api/v1/batches/{batch['id']}", headers=archive.h(who)).json()["pages"]
        assert first not in [p["id"] for p in listed] and len(listed) == 2
    assert c.get(f"/api/v1/ho-so/{ma}/bag", headers=archive.h("archivist")).status_code == 403
    # An archivist can neither file a hồ sơ as Mật nor rewrite the secret one.
    body = {"organ_id": ORGAN, "nam": 2024, "ky_hieu": "01.MAT", "tieu_de": "x",
            "thoi_han_bao_quan": "Vĩnh viễn", "che_do_su_dung": "Công khai"}  # fmt: skip
    assert (
        c.put(f"/api/v1/ho-so/{ma}", json=body, headers=archive.h("archivist")).status_code == 403
    )
    # The admin reads it, one by one.
    assert (
        c.get(f"/api/v1/pages/{first}/render?w=800", headers=archive.h("admin")).status_code == 200
    )
    assert c.get(f"/api/v1/ho-so/{ma}/bag", headers=archive.h("admin")).status_code == 200
    # ... but not in bulk: neither the catalogue nor the commune's zip carries it.
    rows = list(csv.reader(io.StringIO(
        c.get("/api/v1/catalogue.csv", headers=archive.h("admin")).content.decode("utf-8-sig")
    )))  # fmt: skip
    assert all(ma not in row for row in rows)
    bulk = c.get(f"/api/v1/export/{ORGAN}.zip", headers=archive.h("admin"))
    with zipfile.ZipFile(io.BytesIO(bulk.content)) as zf:
        assert f"{ma}.zip" not in zf.namelist()
    refused = _refusals(archive.db)
    assert ("viewer", str(first)) in refused and ("archivist", ma) in refused


def test_a_conditional_ho_so_is_for_archivists_and_admins(archive: Archive) -> None:
    c, second = archive.client, archive.pages[1]
    ma = archive.ho_so("02.DK", "Sử dụng có điều kiện", [second])
    assert c.get(f"/api/v1/pages/{second}", headers=archive.h("viewer")).status_code == 403
    assert c.get(f"/api/v1/ho-so/{ma}", headers=archive.h("viewer")).status_code == 403
    assert c.get(f"/api/v1/pages/{second}", headers=archive.h("archivist")).status_code == 200
    assert c.get(f"/api/v1/ho-so/{ma}", headers=archive.h("archivist")).status_code == 200
    rows = c.get("/api/v1/catalogue.csv", headers=archive.h("archivist")).content.decode()
    assert ma in rows  # conditional is not secret: it may be listed for those who may read it


def test_staff_scoped_to_a_place_read_only_there(archive: Archive) -> None:
    c, first = archive.client, archive.pages[0]
    (device,) = [
        d["device_id"] for d in c.get("/api/v1/devices", headers=archive.h("admin")).json()
    ]
    r = c.put(f"/api/v1/devices/{device}", json={"commune": "Huyện Gần / Xã Tân Lập"},
              headers=archive.h("admin"))  # fmt: skip
    assert r.status_code == 200
    cli = str(BIN / "sohoa-server")
    out = subprocess.run([cli, "user", "places", "far", "Huyện Xa"], env=archive.env,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = subprocess.run([cli, "user", "places", "near", "Huyện Gần"], env=archive.env,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Huyện Xa" in subprocess.run([cli, "user", "list"], env=archive.env,
                                        capture_output=True, text=True).stdout  # fmt: skip
    # Scopes are read when the token is used: no new token needed.
    assert c.get("/api/v1/batches", headers=archive.h("far")).json() == []
    assert c.get(f"/api/v1/pages/{first}", headers=archive.h("far")).status_code == 403
    hits = c.get("/api/v1/search", params={"q": "khoang san"}, headers=archive.h("far")).json()
    assert hits == []
    assert c.get(f"/api/v1/pages/{first}", headers=archive.h("near")).status_code == 200
    assert len(c.get("/api/v1/batches", headers=archive.h("near")).json()) == 1
    # A place name that only starts the same is not inside it.
    subprocess.run([cli, "user", "places", "near", "Huyện G"], env=archive.env, check=True,
                   capture_output=True)  # fmt: skip
    assert c.get(f"/api/v1/pages/{first}", headers=archive.h("near")).status_code == 403
    # An admin reads every place.
    assert c.get(f"/api/v1/pages/{first}", headers=archive.h("admin")).status_code == 200
    assert ("far", str(first)) in _refusals(archive.db)


def test_the_staff_pages_apply_the_same_rules(archive: Archive) -> None:
    c, first, second = archive.client, archive.pages[0], archive.pages[1]
    ma = archive.ho_so("03.MAT", "Mật", [first])
    auth.add_user(archive.db, "xem", "viewer", "mật-khẩu-đủ-dài")
    form = c.get("/login").text
    csrf = form.split('name="csrf" value="')[1].split('"')[0]
    r = c.post("/login", data={"username": "xem", "password": "mật-khẩu-đủ-dài", "csrf": csrf})
    assert r.status_code == 200
    page = c.get(f"/pages/{first}")
    assert page.status_code == 403 and "không mở" in page.text
    assert c.get(f"/pages/{second}").status_code == 200
    assert c.get(f"/ho-so/{ma}").status_code == 403
    assert ma not in c.get("/ho-so").text
    assert f'href="/pages/{first}' not in c.get("/").text  # no thumbnail on the dashboard
    batch = c.get("/api/v1/batches").json()[0]["id"]
    assert f'href="/pages/{first}"' not in c.get(f"/batches/{batch}").text
    hits = c.get("/search", params={"q": "khoang san"}).text
    assert f"/pages/{first}?" not in hits and ma not in hits
    assert ("xem", str(first)) in _refusals(archive.db)


def test_search_totals_count_only_pages_the_reader_may_open(archive: Archive) -> None:
    """The leak: hits were filtered after ranking, but ``X-Total-Count`` (and the search
    page's count) was the index's count of every matching page: a viewer learnt that a
    secret page holds a word. Now both count through the same filter, and paging reaches
    exactly the total."""
    c, first, second = archive.client, archive.pages[0], archive.pages[1]

    def search(who: str, **params: object) -> tuple[list[int], str]:
        r = c.get("/api/v1/search", params={"q": "xa", **params}, headers=archive.h(who))
        assert r.status_code == 200, r.text
        pages = [h["page"] for h in r.json() if h["kind"] == "page"]
        return pages, r.headers["X-Total-Count"]

    # "xã" is on pages 1 and 2; before anything is secret a viewer sees both.
    assert sorted(search("viewer")[0]) == sorted([first, second])
    assert search("viewer")[1] == "2"
    archive.ho_so("04.MAT", "Mật", [first])
    for who in ("viewer", "archivist"):
        assert search(who) == ([second], "1"), who  # was ([second], "2")
        assert search(who, limit=1) == ([second], "1")
        assert search(who, limit=1, offset=1) == ([], "1")
    assert search("admin")[1] == "2"
    # Scoped readers: nothing in their place, nothing counted.
    (device,) = [
        d["device_id"] for d in c.get("/api/v1/devices", headers=archive.h("admin")).json()
    ]
    c.put(f"/api/v1/devices/{device}", json={"commune": "Huyện Gần / Xã Tân Lập"},
          headers=archive.h("admin"))  # fmt: skip
    cli = str(BIN / "sohoa-server")
    for who, place in (("far", "Huyện Xa"), ("near", "Huyện Gần")):
        subprocess.run([cli, "user", "places", who, place], env=archive.env, check=True,
                       capture_output=True)  # fmt: skip
    assert search("far") == ([], "0")
    assert search("near") == ([second], "1")


def test_the_list_filter_agrees_with_page_by_page_access(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """access.page_filter (every page at once, for lists and totals) decides as
    access.readable_pages (page by page) for every reader, also when the candidate window
    is smaller than the matches (the total is then counted over every matching id)."""
    from server.archive import access, catalog
    from server.archive.catalog import Catalog

    first, second = archive.pages[:2]
    archive.ho_so("05.MAT", "Mật", [first])
    archive.ho_so("06.DK", "Sử dụng có điều kiện", [second])
    for who in ("viewer", "archivist", "admin"):
        principal = auth.Principal(who, who)  # type: ignore[arg-type]
        scoped = auth.Principal(who, who, ("Huyện Xa",))  # type: ignore[arg-type]
        for p in (principal, scoped):
            visible = access.page_filter(archive.db, p)
            readable = access.readable_pages(archive.db, p, archive.pages)
            allowed = {page for page in archive.pages if visible is None or visible.allows(page)}
            assert allowed == readable, (who, p.places)
        # A window of one page for two matches: the total is counted over every match.
        for p in (principal, scoped):
            v = access.page_filter(archive.db, p)
            if v is None:
                continue
            expected = [page for page in (first, second) if v.allows(page)]
            for lists_up_to in (1000, 0):  # counted by IN lists, then by reading every match
                monkeypatch.setattr(catalog, "AMONG_BY_LISTS_UP_TO", lists_up_to)
                small = Catalog(archive.db, candidate_budget=1).search_page("xa", 10, 0, v)
                assert small.total == len(expected), (who, p.places, lists_up_to)
                assert {h["page"] for h in small.hits} <= set(expected)
    assert Catalog(archive.db, candidate_budget=1).search_page("xa", 10, 0).total == 2


def test_a_rescan_shares_its_old_page_s_rule_in_lists_and_page_by_page(
    database: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page that replaced one a secret hồ sơ holds is hidden with it, in a list's filter
    and page by page; each answer is one statement on PostgreSQL (the hồ sơ's pages with
    the replacements, and a page's rules with whether it is in a replacement: two each
    before, a round trip more per search)."""
    db = Database(database)
    old, new, plain = pages_of(db, ["cũ", "mới", "khác"])
    with db.tx() as con:
        con.execute(
            "INSERT INTO ho_so(ma_ho_so, organ_id, nam, ky_hieu, data, created_at, updated_at,"
            " updated_by) VALUES ('H1', 'X', 2020, 'k', ?, 0, 0, 't')",
            ('{"che_do_su_dung": "Mật"}',),
        )
        con.execute("INSERT INTO van_ban(id, ma_ho_so, stt, data, created_at, updated_at)"
                    " VALUES (1, 'H1', 1, '{}', 0, 0)")  # fmt: skip
        con.execute("INSERT INTO van_ban_pages(van_ban_id, seq, page_pk) VALUES (1, 1, ?)", (old,))
        con.execute(
            "INSERT INTO page_replacements(page_pk, replaces_pk, placed_at) VALUES (?, ?, 0)",
            (new, old),
        )
    viewer = auth.add_user(db, "v", "viewer", None)
    statements: list[str] = []
    if db.dialect == "postgresql":
        execute = pg.PooledConnection.execute

        def counted(self: pg.PooledConnection, sql: str, parameters: object = (), /) -> object:
            statements.append(sql)
            return execute(self, sql, parameters)  # type: ignore[arg-type]

        monkeypatch.setattr(pg.PooledConnection, "execute", counted)
    shown = access.page_filter(db, viewer)
    assert shown is not None and not shown.only and shown.ids == {old, new}
    assert len(statements) <= 1, statements
    statements.clear()
    assert access.readable_pages(db, viewer, [plain]) == {plain}
    assert len(statements) <= 1, statements
    assert access.readable_pages(db, viewer, [old, new, plain]) == {plain}
    assert access.readable_pages(db, auth.add_user(db, "a", "admin", None), [new]) == {new}
    db.close()
