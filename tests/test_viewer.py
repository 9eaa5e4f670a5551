"""The page images staff see, on pages the real pipeline made (tests/real_archive.py): the
archival PDF/A rendered by the server, cached, with ETags; thumbnails from the same path."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from real_archive import RealArchive

from server.app import create_app
from server.archive import auth
from server.archive.page_images import WIDTHS, PageRenderer, RenderError
from server.config import ServerSettings
from server.store.db import Database

pytestmark = [pytest.mark.tesseract, pytest.mark.mqtt, pytest.mark.slow]


@dataclass
class Viewer:
    client: TestClient
    data_dir: Path
    headers: dict[str, str]
    pages: list[dict]  # type: ignore[type-arg]


@pytest.fixture
def viewer(
    request: pytest.FixtureRequest, real_archive: RealArchive, tmp_path: Path
) -> Iterator[Viewer]:
    cluster = request.getfixturevalue("pg_cluster") if real_archive.engine != "sqlite" else None
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", cluster)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    settings = ServerSettings(data_dir=data_dir, ingest=False, database_url=url)
    db = Database(settings.database())
    auth.add_user(db, "xem", "viewer", None)
    token = auth.create_token(db, "xem")
    db.close()
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        batch = client.get("/api/v1/batches", headers=headers).json()[0]
        pages = client.get(f"/api/v1/batches/{batch['id']}", headers=headers).json()["pages"]
        yield Viewer(client, data_dir, headers, pages)


def _decode(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


def test_the_archival_part_is_a_pdf_a_browser_cannot_show(viewer: Viewer) -> None:
    # What the first viewer put in <img>: the station's archival PDF/A.
    page = viewer.pages[0]
    r = viewer.client.get(f"/api/v1/pages/{page['id']}/image", headers=viewer.headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-")


def test_render_shows_the_real_page_as_a_jpeg(viewer: Viewer) -> None:
    page = viewer.pages[0]
    r = viewer.client.get(f"/api/v1/pages/{page['id']}/render?w=1200", headers=viewer.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    image = _decode(r.content)
    assert image.format == "JPEG"
    assert image.width == 1200
    # A5 landscape at 100 % scale: the rendered page keeps the capture's proportions.
    assert abs(image.height / image.width - page["height_px"] / page["width_px"]) < 0.01
    # Ink on paper, not a blank or black square: some dark pixels, mostly light ones.
    grey = image.convert("L")
    histogram = grey.histogram()
    dark, light = sum(histogram[:100]), sum(histogram[200:])
    assert dark > 0.002 * image.width * image.height
    assert light > 0.8 * image.width * image.height


def test_render_is_cached_and_answers_if_none_match(viewer: Viewer) -> None:
    page = viewer.pages[0]
    url = f"/api/v1/pages/{page['id']}/render?w=800"
    first = viewer.client.get(url, headers=viewer.headers)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert page["sha256"] in etag
    assert "max-age=31536000" in first.headers["cache-control"]
    assert "private" in first.headers["cache-control"]
    cached = list((viewer.data_dir / "render-cache").rglob(f"{page['sha256']}-800-*.jpg"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns

    again = viewer.client.get(url, headers=viewer.headers)
    assert again.content == first.content
    assert cached[0].stat().st_mtime_ns == stamp  # served from the cache, not re-rendered

    not_modified = viewer.client.get(url, headers={**viewer.headers, "If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    other = viewer.client.get(url, headers={**viewer.headers, "If-None-Match": '"nope"'})
    assert other.status_code == 200


def test_widths_are_a_fixed_few(viewer: Viewer) -> None:
    page = viewer.pages[0]
    for asked, served in ((1, WIDTHS[0]), (1000, 1200), (100_000, WIDTHS[-1])):
        r = viewer.client.get(
            f"/api/v1/pages/{page['id']}/render?w={asked}", headers=viewer.headers
        )
        assert r.status_code == 200
        assert r.headers["x-render-width"] == str(served)
        assert _decode(r.content).width == served
    assert (
        viewer.client.get(
            f"/api/v1/pages/{page['id']}/render?w=0", headers=viewer.headers
        ).status_code
        == 422
    )


def test_thumbnail_is_rendered_from_the_archival_page(viewer: Viewer) -> None:
    page = viewer.pages[0]
    r = viewer.client.get(f"/api/v1/pages/{page['id']}/thumb", headers=viewer.headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert _decode(r.content).width == WIDTHS[0]


def test_the_capture_is_rendered_beside_the_archival_page(viewer: Viewer) -> None:
    """The capture the station sent (its scan before cleanup, synced with the masters) as a
    JPEG at the viewer's widths, cached by the capture's own sha256 and answering ETags
    (the viewer shows it beside the archival page: test_browser)."""
    page = viewer.pages[0]
    assert page["has_original"]
    url = f"/api/v1/pages/{page['id']}/capture?w=1000"
    r = viewer.client.get(url, headers=viewer.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-render-width"] == "1200"
    image = _decode(r.content)
    assert image.width == 1200
    assert abs(image.height / image.width - page["height_px"] / page["width_px"]) < 0.01
    # The capture, not the cleaned page: the paper keeps its off-white (246, 245, 241).
    paper = image.convert("RGB").getpixel((20, 20))
    assert isinstance(paper, tuple) and 238 <= paper[0] <= 252 and paper[2] < paper[0]
    etag = r.headers["etag"]
    assert page["capture_sha256"] in etag and page["sha256"] not in etag
    cached = list((viewer.data_dir / "render-cache").rglob(f"{page['capture_sha256']}-1200-*"))
    assert len(cached) == 1
    again = viewer.client.get(url, headers={**viewer.headers, "If-None-Match": etag})
    assert again.status_code == 304


def test_render_needs_a_login(viewer: Viewer) -> None:
    page = viewer.pages[0]
    assert viewer.client.get(f"/api/v1/pages/{page['id']}/render").status_code == 401
    assert viewer.client.get("/api/v1/pages/999999/render", headers=viewer.headers).status_code == (
        404
    )


def test_renderer_refuses_what_is_not_a_page(tmp_path: Path) -> None:
    renderer = PageRenderer(tmp_path / "cache")
    html = tmp_path / "evil.html"
    html.write_bytes(b"<script>alert(1)</script>")
    sha = "a" * 64
    with pytest.raises(RenderError, match="cannot render"):
        renderer.render(html, "text/html", sha, 800)
    with pytest.raises(RenderError, match="PDF"):
        renderer.render(html, "application/pdf", sha, 800)
    with pytest.raises(RenderError, match="image"):
        renderer.render(html, "image/jpeg", sha, 800)
    with pytest.raises(RenderError, match="width"):
        renderer.cached_path(sha, 801)
    with pytest.raises(RenderError, match="sha256"):
        renderer.cached_path("../../etc/passwd", 800)
    assert not list((tmp_path / "cache").rglob("*.jpg"))  # nothing cached for refused input


def test_search_words_are_found_on_the_page_image(viewer: Viewer) -> None:
    page = viewer.pages[0]
    r = viewer.client.get(
        f"/api/v1/pages/{page['id']}/words", params={"q": "khoang san"}, headers=viewer.headers
    )
    assert r.status_code == 200, r.text
    boxes = r.json()
    # Page 1 has "khoáng sản" twice (lines 3 and 5 of tests/real_archive.py).
    assert sorted(b["word"] for b in boxes) == ["khoáng", "khoáng", "sản", "sản"]
    for b in boxes:
        assert 0 <= b["left"] < b["left"] + b["width"] <= 1
        assert 0 <= b["top"] < b["top"] + b["height"] <= 1
    first = min(boxes, key=lambda b: (b["top"], b["left"]))
    # Line 3 starts 0.6 + 2 × 0.28 inch down a 148 mm sheet: ~20 % of its height.
    assert first["word"] == "khoáng" and 0.17 < first["top"] < 0.24
    exact = viewer.client.get(
        f"/api/v1/pages/{page['id']}/words", params={"q": "khoảng"}, headers=viewer.headers
    ).json()
    assert exact == []  # with diacritics the match is exact: "khoảng" is not "khoáng"
