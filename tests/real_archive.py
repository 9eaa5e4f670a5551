"""An archive built by the real pipeline, once per test session and engine.

Staff-app and browser tests must look at what stations really send (a PDF/A archival part,
the station's thumbnail, OCR text, the capture), not at parts a test made by hand — such
fixtures once hid a viewer that could not show a single real page. So: Vietnamese pages are
drawn (Noto Serif, 300 dpi, as a copier would save them), ``sohoa-agent import``ed,
processed (cleanup, tesseract ``vie``, PDF/A), synced with their masters over a real
Mosquitto to a real ``sohoa-server run``, which ingests them. That takes a minute, so it is
done once per session and engine; each test then gets a copy of the catalogue (a file copy
on SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL). The archive's files are shared and
read-only: every test reads the same store.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from harness import Broker, ServerProcess, agent_env, run_agent
from pgcluster import PostgresCluster, url_of
from PIL import Image, ImageDraw, ImageFont

from server.store.keys import KEY_FILE

FONT = Path("/usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf")
DPI = 300
# Page texts (NFC). Page 1 is the one search tests look for ("khoáng sản", "Tân Lập"); page 2
# a short one; page 3 is blank paper, which the pipeline flags for review.
PAGES: tuple[tuple[str, ...], ...] = (
    (
        "ỦY BAN NHÂN DÂN XÃ TÂN LẬP",
        "BIÊN BẢN",
        "Xử lý vi phạm: Khai thác khoáng sản trái phép tại thôn Đông.",
        "Hôm nay, ngày 14 tháng 3 năm 2024, tại trụ sở Ủy ban nhân dân xã,",
        "đoàn kiểm tra lập biên bản về việc khai thác khoáng sản trái phép.",
    ),
    (
        "Trang hai. Sổ hộ tịch năm 1998.",
        "Đăng ký khai sinh, kết hôn và khai tử của các thôn trong xã.",
    ),
    (),
)
WORDS_PAGE_1 = ("khoáng", "sản", "Tân", "Lập")


def draw_page(lines: tuple[str, ...], path: Path) -> Path:
    """An A5-landscape sheet (half an A4: half the OCR time) at 300 dpi, black Vietnamese
    text on off-white paper, saved as PNG with its dpi."""
    width, height = round(210 / 25.4 * DPI), round(148 / 25.4 * DPI)
    image = Image.new("RGB", (width, height), (246, 245, 241))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), round(13 / 72 * DPI))
    y = round(0.6 * DPI)
    for line in lines:
        draw.text((round(0.6 * DPI), y), line, fill=(30, 30, 35), font=font)
        y += round(0.28 * DPI)
    image.save(path, dpi=(DPI, DPI), compress_level=1)
    return path


@dataclass(frozen=True)
class RealArchive:
    """The store (shared, read-only) and a catalogue to copy per test."""

    store: Path  # the server data dir holding store/ and receipt key
    engine: str  # "sqlite" | "postgresql"
    sqlite_file: Path | None
    template_db: str | None  # the PostgreSQL database name to clone

    def catalogue_for(self, target: Path | str, cluster: PostgresCluster | None) -> str:
        """A private copy of the catalogue at ``target`` (a SQLite path, or the URL of a
        database to create on ``cluster``); its URL for ServerSettings.database_url."""
        if self.engine == "sqlite":
            assert self.sqlite_file is not None and isinstance(target, Path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.sqlite_file, target)
            return url_of(target)
        assert cluster is not None and self.template_db is not None
        return clone_database(cluster, self.template_db)

    def seed_data_dir(self, data_dir: Path) -> None:
        """Give a test's server data dir the archive's receipt key (its store paths in the
        catalogue are absolute and point into the shared store)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.store / KEY_FILE, data_dir / KEY_FILE)


def clone_database(cluster: PostgresCluster, template: str) -> str:
    url = cluster.create_database("real")  # a name that is free; replaced by the clone
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(cluster.url(), autocommit=True) as con:
        con.execute(f'DROP DATABASE "{name}"')
        con.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return url


def build(
    workdir: Path, engine: str, cluster: PostgresCluster | None, images: Sequence[Path] = ()
) -> RealArchive:
    """Import, process and sync :data:`PAGES` through the real agent, broker and server —
    or, when given, ``images`` (files of pages this project did not make), in that order."""
    workdir.mkdir(parents=True, exist_ok=True)
    incoming = workdir / "in"
    incoming.mkdir(exist_ok=True)
    for n, source in enumerate(images, 1):
        shutil.copyfile(source, incoming / f"trang-{n:02d}{source.suffix}")
    for n, lines in enumerate(() if images else PAGES, 1):
        draw_page(lines, incoming / f"trang-{n:02d}.png")
    if engine == "sqlite":
        sqlite_file: Path | None = workdir / "server" / "archive.sqlite3"
        database_url = url_of(sqlite_file)  # type: ignore[arg-type]
        template = None
    else:
        assert cluster is not None
        database_url = cluster.create_database("tpl")
        template = database_url.rsplit("/", 1)[1]
        sqlite_file = None
    broker = Broker(workdir / "broker").start()
    server = ServerProcess(workdir / "server", broker.url, database_url=database_url)
    try:
        server.start()
        env = agent_env(workdir / "agent", broker.url, SOHOA_SYNC_MASTERS="true")
        run_agent(env, "import", str(incoming), check=True)
        run_agent(env, "sync", "--wait", "--timeout", "300", check=True)
    finally:
        server.stop()
        broker.stop()
    if sqlite_file is not None:  # one self-contained file to copy
        con = sqlite3.connect(sqlite_file)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
    return RealArchive(workdir / "server", engine, sqlite_file, template)
