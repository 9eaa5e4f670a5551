"""The citizens' lookup (issue 17): the public page per chế độ sử dụng, no existence leak for
Mật and unknown addresses, rotation, the per-client brake, views counted, nothing of the staff
session reaching it, the A4 label sheet whose QR codes open it — and the page in Chromium on a
phone-sized screen. All on the archive the real pipeline built (tests/real_archive.py)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient
from harness import BIN, REPO, Broker, ServerProcess
from real_archive import RealArchive
from test_staff import MA, PASSWORD, Staff, ho_so_body, make_ho_so

from server.app import create_app
from server.archive import auth, labels, public
from server.config import ServerSettings
from server.store.db import Database

pytestmark = [pytest.mark.tesseract, pytest.mark.mqtt, pytest.mark.slow]
LIMIT = 40  # the brake in these tests: requests per minute per client
UNKNOWN = "AAAAAAAAAAAAAAAAAAAAAA"  # well-formed, never issued (22 characters)


@pytest.fixture
def staff(
    request: pytest.FixtureRequest, tmp_path: Path, real_archive: RealArchive
) -> Iterator[Staff]:
    """test_staff's fixture with a known public base URL and brake."""
    cluster = request.getfixturevalue("pg_cluster") if real_archive.engine != "sqlite" else None
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", cluster)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    settings = ServerSettings(
        data_dir=data_dir,
        ingest=False,
        database_url=url,
        public_base_url="https://luutru.example.gov.vn/",
        public_requests_per_minute=LIMIT,
    )
    db = Database(settings.database())
    tokens = {}
    for role in auth.ROLES:
        auth.add_user(db, role, role, PASSWORD)
        tokens[role] = auth.create_token(db, role)
    with TestClient(create_app(settings)) as client:
        yield Staff(client, db, data_dir, tokens)
    db.close()


def token_of(s: Staff, ma: str = MA) -> str:
    r = s.client.get(f"/api/v1/ho-so/{ma}/public-address", headers=s.bearer("viewer"))
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    assert url.startswith("https://luutru.example.gov.vn/p/")
    return str(url.rsplit("/", 1)[1])


def set_regime(s: Staff, regime: str) -> None:
    # Only an admin may file a hồ sơ as Mật (server.archive.access.may_file_as).
    r = s.client.put(
        f"/api/v1/ho-so/{MA}", json=ho_so_body(che_do_su_dung=regime), headers=s.bearer("admin")
    )
    assert r.status_code == 200, r.text


def test_the_page_shows_what_the_regime_allows_and_mat_is_unknown(staff: Staff) -> None:
    s = staff
    make_ho_so(s)
    token = token_of(s)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token)
    assert token_of(s) == token  # the same address on every ask until rotated

    # Công khai: title, dates, creating body, the văn bản with their pages.
    r = s.client.get(f"/p/{token}")
    assert r.status_code == 200
    html = r.text
    for shown in ("Hồ sơ xử lý vi phạm khai thác khoáng sản năm 1998", "05/01/1998",
                  "30/12/1998", "000.00.00.H53", "Biên bản 12/BB-UBND", "02/03/1998",
                  "Ủy ban nhân dân xã Tân Lập", "Xử lý vi phạm khai thác khoáng sản trái phép",
                  "2 trang", 'lang="vi"'):  # fmt: skip
        assert shown in html, shown
    assert "<script" not in html and "style=" not in html and "<style" not in html
    assert len(r.content) < 2500, len(r.content)  # a phone on 2G: one small page
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'none'; style-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
    en = s.client.get(f"/p/{token}?lang=en")
    assert en.status_code == 200 and "Documents" in en.text and 'lang="en"' in en.text
    css = s.client.get("/p/s.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")

    # Sử dụng có điều kiện: the title and how to ask, nothing of the content.
    set_regime(s, "Sử dụng có điều kiện")
    r = s.client.get(f"/p/{token}")
    assert r.status_code == 200
    assert "Hồ sơ xử lý vi phạm khai thác khoáng sản năm 1998" in r.text
    assert "Phòng đọc" in r.text and "Cách đề nghị được xem" in r.text
    for hidden in ("Tân Lập", "Biên bản", "trái phép", "05/01/1998"):
        assert hidden not in r.text, hidden

    # Mật: exactly what an unknown, a malformed or a never-issued address gets.
    set_regime(s, "Mật")
    answers = [s.client.get(f"/p/{t}") for t in (token, UNKNOWN, "x")]
    assert {a.status_code for a in answers[:3]} == {404}
    assert answers[0].content == answers[1].content == answers[2].content
    assert {k: v for k, v in answers[0].headers.items() if k != "date"} == {
        k: v for k, v in answers[1].headers.items() if k != "date"
    }
    assert "khoáng sản" not in answers[0].text and MA not in answers[0].text
    assert "Hồ sơ không công khai" in answers[0].text

    # Every view counted: per hồ sơ while it showed something, the rest under ''.
    assert public.views(s.db, MA) == 3  # two Công khai (vi, en) + one conditional
    assert public.views(s.db, "") >= 3


def test_rotating_the_address_retires_the_old_one(staff: Staff) -> None:
    s = staff
    make_ho_so(s)
    old = token_of(s)
    viewer = s.client.post(f"/api/v1/ho-so/{MA}/public-address", headers=s.bearer("viewer"))
    assert viewer.status_code == 403  # staff with the archivist role rotate
    r = s.client.post(f"/api/v1/ho-so/{MA}/public-address", headers=s.bearer("archivist"))
    assert r.status_code == 200, r.text
    new = r.json()["url"].rsplit("/", 1)[1]
    assert new != old and token_of(s) == new
    assert s.client.get(f"/p/{new}").status_code == 200
    gone, unknown = s.client.get(f"/p/{old}"), s.client.get(f"/p/{UNKNOWN}")
    assert gone.status_code == unknown.status_code == 404 and gone.content == unknown.content
    rows = s.db.read().execute("SELECT action FROM audit WHERE action LIKE 'public.%'").fetchall()
    assert [r["action"] for r in rows] == ["public.address", "public.rotate"]


def test_an_address_no_route_serves_answers_a_person_in_their_language(staff: Staff) -> None:
    """A QR code scanned cut short, a mistyped staff link: FastAPI answered them with
    {"detail": "Not Found"} in English. Citizens now get the public side's one 404 page
    (the same bytes as an unknown address's), staff the app's own page; the API and the
    static files answer JSON as before."""
    s = staff
    client = TestClient(s.client.app)  # no session: as a citizen's phone
    unknown = client.get(f"/p/{UNKNOWN}")
    for path in ("/p", f"/p/{UNKNOWN}/extra", "/p/a/b/c"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.content == unknown.content and "Hồ sơ không công khai" in r.text, path
        assert r.headers["content-type"].startswith("text/html"), path
        assert "set-cookie" not in r.headers, path
    anonymous = client.get("/fleet")
    assert anonymous.status_code == 404 and "Không tìm thấy." in anonymous.text
    assert 'href="/review"' not in anonymous.text  # nothing of the app's menu
    r = client.get("/p/x/y", headers={"Accept-Language": "en"}, params={"lang": "en"})
    assert r.status_code == 404 and "This record is not public" in r.text
    s.login("admin")
    for path in ("/fleet", "/ho_so/XYZ", "/stations/nope"):
        r = s.client.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
        assert "Không tìm thấy." in r.text and '{"detail"' not in r.text, path
        assert 'href="/review"' in r.text, path  # signed in: the app's menu is there
    assert "Not found." in s.client.get("/fleet?lang=en").text
    for path in ("/api/v1/nope", "/static/nope.js"):
        r = s.client.get(path)
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}, path
    r = s.client.get("/api/v1/pages/999999", headers=s.bearer("admin"))
    assert r.status_code == 404 and r.json() == {"detail": "no such page"}  # a route's own
    assert s.client.delete("/search").status_code == 405  # other errors as before


def test_a_staff_session_gives_nothing_more_and_no_cookie_is_set(staff: Staff) -> None:
    s = staff
    make_ho_so(s)
    token = token_of(s)
    set_regime(s, "Mật")
    anonymous = TestClient(s.client.app).get(f"/p/{token}")
    s.login("admin")  # the client now holds an admin's session cookie (Path=/)
    assert s.client.cookies.get(auth.SESSION_COOKIE)
    assert s.client.get(f"/api/v1/ho-so/{MA}").status_code == 200  # the cookie works there
    for path in (f"/p/{token}", f"/p/{token}?lang=en", "/p/s.css", f"/p/{UNKNOWN}"):
        r = s.client.get(path)
        assert "set-cookie" not in r.headers, path
    with_cookie = s.client.get(f"/p/{token}")
    assert with_cookie.status_code == anonymous.status_code == 404
    assert with_cookie.content == anonymous.content


def test_the_brake_refuses_a_client_that_hammers(staff: Staff) -> None:
    s = staff
    codes = [s.client.get(f"/p/{UNKNOWN}").status_code for _ in range(LIMIT + 5)]
    assert codes[:LIMIT] == [404] * LIMIT
    assert codes[LIMIT:] == [429] * 5
    r = s.client.get(f"/p/{UNKNOWN}")
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert "set-cookie" not in r.headers
    # The staff app is not braked by it.
    assert s.client.get("/api/v1/ho-so", headers=s.bearer("viewer")).status_code == 200


def test_the_brake_is_per_client_and_slides() -> None:
    brake = public.RateLimit(3)
    assert [brake.allow("a", now=t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert brake.allow("b", now=3)  # another client is not refused for a's requests
    assert brake.allow("a", now=60.5)  # the first request left the minute


def test_the_label_sheet_carries_each_hosos_address_as_a_qr_code(staff: Staff) -> None:
    s = staff
    make_ho_so(s)
    codes = [MA]
    for n in range(2, 10):  # nine hồ sơ: a full sheet of eight and one on a second sheet
        body = ho_so_body(ky_hieu=f"{n:02d}.HT", tieu_de=f"Sổ đăng ký khai sinh quyển {n}")
        ma = f"000.00.00.H53.1998.{n:02d}.HT"
        assert s.client.put(f"/api/v1/ho-so/{ma}", json=body,
                            headers=s.bearer("archivist")).status_code == 200  # fmt: skip
        codes.append(ma)
    query = "&".join(f"ma={c}" for c in codes)
    assert (
        s.client.get(f"/api/v1/labels.pdf?{query}", headers=s.bearer("viewer")).status_code == 403
    )
    missing = s.client.get("/api/v1/labels.pdf?ma=000.00.00.H53.1998.99.XX",
                           headers=s.bearer("archivist"))  # fmt: skip
    assert missing.status_code == 404
    r = s.client.get(f"/api/v1/labels.pdf?{query}", headers=s.bearer("archivist"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    pdf = pdfium.PdfDocument(r.content)
    try:
        assert len(pdf) == 2
        width, height = pdf[0].get_size()
        assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (210, 297)  # A4
        sheets = [
            np.asarray(pdf[i].render(scale=labels.DPI / 72).to_pil().convert("L")) for i in range(2)
        ]
    finally:
        pdf.close()
    detectors = [cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()]
    for index, ma in enumerate(codes):
        left, top, right, bottom = labels.cell(index)
        # What a phone frames: the code and its quiet zone, not the label's text beside it
        # (OpenCV's detector alone, on the whole label, missed one random code in ~20).
        qr_area = left + labels._px(3 + 38 + 3)
        crop = np.ascontiguousarray(sheets[index // labels.PER_SHEET][top:bottom, left:qr_area])
        text = ""
        for detector in detectors:
            text = detector.detectAndDecode(crop)[0]
            if text:
                break
        assert text == f"https://luutru.example.gov.vn/p/{token_of(s, ma)}", (index, ma)
    # The words are Vietnamese, in a font that has the letters (tesseract vie reads them).
    left, top, right, bottom = labels.cell(0)
    encoded, png = cv2.imencode(".png", np.ascontiguousarray(sheets[0][top:bottom, left:right]))
    assert encoded
    read = subprocess.run(
        ["tesseract", "-", "-", "-l", "vie", "--dpi", "300"],
        input=png.tobytes(), capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    words = " ".join(read.stdout.decode("utf-8").split())
    for wanted in ("LƯU TRỮ LỊCH SỬ TỈNH", "vi phạm khai thác khoáng", "Quét mã để tra cứu"):
        assert wanted in words, (wanted, words)
    # The sheet is a public address's first use: nothing is made twice on a reprint.
    again = s.client.get(f"/api/v1/labels.pdf?{query}", headers=s.bearer("archivist"))
    assert again.status_code == 200
    n = s.db.read().execute("SELECT COUNT(*) AS n FROM public_links").fetchone()["n"]
    assert n == len(codes)


# -- Chromium on a phone-sized screen -------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the browser part runs once
def test_the_public_page_on_a_phone_in_chromium(
    request: pytest.FixtureRequest, tmp_path: Path, broker: Broker, real_archive: RealArchive
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    assert real_archive.engine == "sqlite"
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", None)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    artefacts = REPO / "var" / "test-artifacts" / "browser" / "public"
    artefacts.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(data_dir, broker.url, database_url=url).start()
    try:
        pw_file = tmp_path / "pw"
        pw_file.write_text(PASSWORD + "\n")
        subprocess.run(
            [str(BIN / "sohoa-server"), "user", "add", "lan", "--role", "admin",
             "--password-file", str(pw_file)],
            env=server.env(), check=True, capture_output=True,
        )  # fmt: skip
        status, _, _ = server.request("PUT", f"/api/v1/ho-so/{MA}", ho_so_body())
        assert status == 200
        pages = server.get_json("/api/v1/batches/1")["pages"]
        status, _, _ = server.request(
            "POST",
            f"/api/v1/ho-so/{MA}/van-ban",
            {"ten_loai": "Biên bản", "so": "12", "co_quan_ban_hanh": "Ủy ban nhân dân xã Tân Lập",
             "trich_yeu": "Xử lý vi phạm khai thác khoáng sản trái phép",
             "pages": [pages[0]["id"], pages[1]["id"]]},
        )  # fmt: skip
        assert status == 201
        token = server.get_json(f"/api/v1/ho-so/{MA}/public-address")["url"].rsplit("/", 1)[1]

        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            phone = browser.new_context(
                viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True,
                has_touch=True, locale="vi-VN",
            )  # fmt: skip
            page = phone.new_page()
            page.set_default_timeout(10_000)
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            received: list[tuple[str, int, str]] = []
            page.on(
                "response",
                lambda r: received.append((r.url, len(r.body()), r.headers.get("set-cookie", ""))),
            )
            page.goto(f"{server.url}/p/{token}")
            assert page.locator("h1").inner_text() == (
                "Hồ sơ xử lý vi phạm khai thác khoáng sản năm 1998"
            )
            assert page.get_by_text("Ủy ban nhân dân xã Tân Lập").is_visible()
            assert page.get_by_text("2 trang").is_visible()
            # Fits the phone: no sideways scrolling, readable type, the stylesheet applied.
            assert page.evaluate("document.documentElement.scrollWidth") <= 360
            assert page.evaluate("getComputedStyle(document.body).fontSize") == "16px"
            page.screenshot(path=str(artefacts / "phone-public.png"), full_page=True)
            total = sum(size for _, size, _ in received)
            # The page and its stylesheet, nothing else (in either order: Playwright's response
            # events may come in the order the bodies finish, and the stylesheet is smaller).
            assert sorted(u.rsplit("/", 1)[1] for u, _, _ in received) == sorted([token, "s.css"])
            assert total < 3500, received  # the page and its stylesheet, uncompressed
            assert not [c for _, _, c in received if c]
            assert not [m for m in console if "Content Security Policy" in m], console
            page.click("a[hreflang=en]")
            page.wait_for_url("**?lang=en")
            assert page.locator("h2").inner_text().startswith("Documents")

            # A staff session in the same browser changes nothing on a Mật hồ sơ's page.
            body = ho_so_body(che_do_su_dung="Mật")
            status, _, _ = server.request("PUT", f"/api/v1/ho-so/{MA}", body)
            assert status == 200
            anon = page.goto(f"{server.url}/p/{token}")
            assert anon is not None and anon.status == 404
            anon_html = page.content()
            # A QR code read cut short, or with a stray path after it: the same page.
            for cut in (f"/p/{token[:-5]}", f"/p/{token}/x"):
                short = page.goto(server.url + cut)
                assert short is not None and short.status == 404, cut
                assert page.content() == anon_html, cut
            page.goto(f"{server.url}/login")
            page.fill("#username", "lan")
            page.fill("#password", PASSWORD)
            page.click("form.grid button[type=submit]")
            page.wait_for_url(server.url + "/")
            assert any(c["name"] == auth.SESSION_COOKIE for c in phone.cookies())
            again = page.goto(f"{server.url}/p/{token}")
            assert again is not None and again.status == 404
            assert page.content() == anon_html
            assert "Hồ sơ không công khai" in page.locator("h1").inner_text()
            page.screenshot(path=str(artefacts / "phone-not-public.png"))
            browser.close()
        print(f"public page on a phone: {total} bytes (HTML + CSS)")
    finally:
        server.stop()


def test_the_command_line_prints_labels_and_rotates_an_address(
    staff: Staff, tmp_path: Path
) -> None:
    from pgcluster import url_of

    s = staff
    make_ho_so(s)
    token = token_of(s)
    env = {
        "SOHOA_SERVER_DATA_DIR": str(s.data_dir),
        "SOHOA_DATABASE_URL": url_of(s.db.path or s.db.url),
        "SOHOA_PUBLIC_BASE_URL": "https://luutru.example.gov.vn",
        "PATH": "/usr/bin:/bin",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "sohoa-server"), *args], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    shown = cli("public-address", MA)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"https://luutru.example.gov.vn/p/{token}"
    out = tmp_path / "labels" / "nhan.pdf"
    made = cli("labels", MA, "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert "1 labels on 1 A4 sheet" in made.stdout and out.read_bytes().startswith(b"%PDF-")
    assert cli("labels", "000.00.00.H53.1998.99.XX", "--out", str(out)).returncode == 2
    rotated = cli("public-address", MA, "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip() != shown.stdout.strip()
    assert s.client.get(f"/p/{token}").status_code == 404
