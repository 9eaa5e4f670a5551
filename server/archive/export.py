"""Handover exports: a BagIt bag per hồ sơ and the danh mục hồ sơ (catalogue) as CSV / XLSX.

A bag (RFC 8493, sha256 manifests, made by the Library of Congress ``bagit`` library) holds:
``data/<mã hồ sơ>.<stt>.pdf`` — one PDF per văn bản, its archival page images in order — and
``data/metadata/ho-so.json`` (the hồ sơ and its văn bản, field names as in the API); bag-info
carries the hồ sơ fields under the law's labels. Pages the agent archived as PDF/A-2b are
joined keeping the output intent, XMP identity and text layers; pages older agents archived
as JPEG are wrapped unchanged (DCTDecode, no re-encoding; not PDF/A). Every stored file is
re-hashed against the sha256 recorded at ingest before it enters a bag
(:mod:`server.archive.fixity`): a mismatch stops the export.

Nothing here touches the database except through :class:`server.archive.records.Records`,
:class:`server.archive.catalog.Catalog` and :mod:`server.archive.fixity` (which records each
check); callers write the audit row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import bagit  # type: ignore[import-untyped]
from PIL import Image

from server.archive import fixity, fonds
from server.archive.catalog import Catalog
from server.archive.records import HO_SO_LABELS, HoSoOut, Records, VanBan


class ExportError(Exception):
    """The hồ sơ cannot be exported yet (a page's archival image has not arrived)."""


# -- PDF --------------------------------------------------------------------------------------


def jpegs_to_pdf(images: list[tuple[bytes, int]], title: str = "") -> bytes:
    """A PDF with one page per JPEG (bytes, fallback dpi), each embedded as it is."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog_no = add(b"")  # filled in at the end
    pages_no = add(b"")
    kids = []
    for data, fallback_dpi in images:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise ExportError("an archival image is not a JPEG")
            width, height = im.size
            mode = im.mode
            dpi = im.info.get("dpi", (fallback_dpi, fallback_dpi))[0] or fallback_dpi or 300
        space = {"L": b"/DeviceGray", "RGB": b"/DeviceRGB", "CMYK": b"/DeviceCMYK"}.get(mode)
        if space is None:
            raise ExportError(f"unsupported JPEG colour mode {mode}")
        decode = b" /Decode [1 0 1 0 1 0 1 0]" if mode == "CMYK" else b""
        image_no = add(
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s"
            b" /BitsPerComponent 8 /Filter /DCTDecode%s /Length %d >>\nstream\n"
            % (width, height, space, decode, len(data))
            + data
            + b"\nendstream"
        )
        w_pt, h_pt = width * 72.0 / float(dpi), height * 72.0 / float(dpi)
        content = b"q %.2f 0 0 %.2f 0 0 cm /Im0 Do Q" % (w_pt, h_pt)
        content_no = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %.2f %.2f]"
                b" /Resources << /XObject << /Im0 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_no, w_pt, h_pt, image_no, content_no)
            )
        )
    info_no = add(b"<< /Title (%s) /Producer (sohoa) >>" % _pdf_text(title))
    objects[catalog_no - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_no
    objects[pages_no - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, catalog_no, info_no, xref)
    )
    return out.getvalue()


def _pdf_text(text: str) -> bytes:
    """A PDF text string: UTF-16BE with BOM, as hex, so Vietnamese survives."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


# -- bag --------------------------------------------------------------------------------------


def _bag_info(ho_so: HoSoOut) -> dict[str, str]:
    data = ho_so.model_dump(mode="json", exclude={"van_ban"})
    info = {
        "Source-Organization": ho_so.organ_id,
        "External-Identifier": ho_so.ma_ho_so,
        "External-Description": ho_so.tieu_de[:500],
    }
    for key, vi, _en in HO_SO_LABELS:
        value = data.get(key)
        if value not in (None, ""):
            # Labels must not contain ':' (RFC 8493 §2.2.2); values are single lines.
            info[vi.replace(":", " ")] = " ".join(str(value).split())
    return info


def van_ban_pdf(catalog: Catalog, doc: VanBan, context: str = "export") -> bytes:
    """One PDF for a văn bản: its pages' archival PDF/A files joined in order (the agent makes
    one PDF/A-2b per page, agent/archival.py), or, for pages archived as JPEG by older agents,
    the JPEGs wrapped unchanged. Every page file is re-hashed as it is read and compared with
    the sha256 recorded at ingest (:func:`server.archive.fixity.read_verified`): a mismatch
    raises :class:`~server.archive.fixity.FixityError` naming the file."""
    files = []
    for seq, page_pk in enumerate(doc.pages, 1):
        part = catalog.part_file(page_pk, "archival")
        page = catalog.page(page_pk)
        if part is None or page is None:
            raise ExportError(f"page {page_pk} of {doc.file_name} has no archival image yet")
        label = f"{doc.file_name} trang/page {seq}"
        data = fixity.read_verified(
            catalog.db, part.part_pk, part.location, part.sha256, label, context
        )
        files.append((data, part.media_type, int(page["dpi"])))
    title = f"{doc.file_name} {doc.trich_yeu}".strip()
    if all(media == "application/pdf" for _, media, _ in files):
        return join_pdfa([data for data, _, _ in files], title)
    if any(media == "application/pdf" for _, media, _ in files):
        raise ExportError(f"{doc.file_name} mixes PDF and JPEG pages; re-export after re-sync")
    return jpegs_to_pdf([(data, dpi) for data, _, dpi in files], title)


def join_pdfa(pdfs: list[bytes], title: str) -> bytes:
    """Join single-page PDF/A-2b files, keeping what PDF/A asks of the whole file: the
    first file's output intent (sRGB) and XMP metadata (with its pdfaid), a title, no
    encryption, pages (with their invisible text layers) unchanged."""
    import io

    import pikepdf

    first = pikepdf.open(io.BytesIO(pdfs[0]))
    for data in pdfs[1:]:
        with pikepdf.open(io.BytesIO(data)) as src:
            first.pages.extend(src.pages)
    with first.open_metadata(set_pikepdf_as_editor=False) as meta:
        meta["dc:title"] = title
    first.docinfo["/Title"] = title
    out = io.BytesIO()
    first.save(out, fix_metadata_version=False, deterministic_id=True)
    return out.getvalue()


def write_bag(records: Records, catalog: Catalog, ma: str, out_zip: Path) -> Path:
    """Build the bag of hồ sơ ``ma`` and zip it (the bag directory at the zip's top level)."""
    ho_so = records.ho_so(ma)
    if ho_so is None:
        raise KeyError(ma)
    with tempfile.TemporaryDirectory(prefix="sohoa-bag-") as tmp:
        bag_dir = Path(tmp) / ma
        (bag_dir / "metadata").mkdir(parents=True)
        for doc in ho_so.van_ban:
            pdf = van_ban_pdf(catalog, doc, f"export.bag {ma}")
            (bag_dir / f"{doc.file_name}.pdf").write_bytes(pdf)
        (bag_dir / "metadata" / "ho-so.json").write_text(
            json.dumps(ho_so.model_dump(mode="json"), ensure_ascii=False, indent=2),
            encoding="utf-8",
        )
        bagit.make_bag(str(bag_dir), _bag_info(ho_so), checksums=["sha256"])
        with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(bag_dir.rglob("*")):
                if path.is_file():
                    zf.write(path, str(path.relative_to(tmp)))
    return out_zip


def write_commune_bags(
    records: Records,
    catalog: Catalog,
    organ_id: str,
    out_zip: Path,
    only: Callable[[list[str]], set[str]] | None = None,
) -> Path:
    """Every hồ sơ of one organisation (a commune's mã định danh): one zip of bag zips.
    ``only`` picks, from the codes of all of them, those that may go (server.archive.access)."""
    with (
        tempfile.TemporaryDirectory(prefix="sohoa-bulk-") as tmp,
        zipfile.ZipFile(out_zip, "w", zipfile.ZIP_STORED) as zf,
    ):
        chosen = [h for h in records.list_ho_so(limit=100_000) if h.organ_id == organ_id]
        allowed = only([h.ma_ho_so for h in chosen]) if only else {h.ma_ho_so for h in chosen}
        for ho_so in chosen:
            if ho_so.ma_ho_so not in allowed:
                continue
            one = write_bag(records, catalog, ho_so.ma_ho_so, Path(tmp) / f"{ho_so.ma_ho_so}.zip")
            zf.write(one, one.name)
            one.unlink()
        zf.writestr("danh-muc-ho-so.csv", catalogue_csv(records, organ_id, only))
    return out_zip


# -- catalogue --------------------------------------------------------------------------------

CATALOGUE_KEYS = [k for k, _vi, _en in HO_SO_LABELS if k not in ("organ_id", "nam", "ky_hieu")]


def catalogue_rows(
    records: Records,
    organ_id: str | None = None,
    only: Callable[[list[str]], set[str]] | None = None,
) -> list[list[str | int]]:
    header: list[str | int] = ["STT"]
    header += [vi for k, vi, _en in HO_SO_LABELS if k in CATALOGUE_KEYS]
    # Issue 21: the fonds and its places, named after and before the 2025 reorganisation.
    header += ["Phông lưu trữ", "Địa danh (nay; trước đây)"]
    rows = [header]
    places: dict[str, tuple[str, str]] = {}
    chosen = [h for h in records.list_ho_so(limit=100_000) if organ_id in (None, h.organ_id)]
    if only is not None:
        allowed = only([h.ma_ho_so for h in chosen])
        chosen = [h for h in chosen if h.ma_ho_so in allowed]
    for i, ho_so in enumerate(chosen, 1):
        data = ho_so.model_dump(exclude={"van_ban"})
        row: list[str | int] = [i]
        for key in CATALOGUE_KEYS:
            value = data.get(key)
            if isinstance(value, dt.date):
                row.append(value.strftime("%d/%m/%Y"))
            elif isinstance(value, int):
                row.append(value)
            else:
                row.append("" if value is None else str(value))
        row += list(_fonds_cells(records, ho_so.fonds_code, places))
        rows.append(row)
    return rows


def _fonds_cells(
    records: Records, code: str | None, seen: dict[str, tuple[str, str]]
) -> tuple[str, str]:
    if not code:
        return ("", "")
    if code not in seen:
        found = fonds.get(records.db, code)
        line = fonds.lineage(records.db, code) if found else None
        label = fonds.places_line(line) if line else ""
        seen[code] = (f"{found.name} ({code})" if found else code, label)
    return seen[code]


# A cell a spreadsheet would read as a formula (or as the start of one after a tab or CR):
# OWASP "CSV injection". Metadata comes from staff and, through OCR, from paper; a title
# "=HYPERLINK(…)" must stay text in whoever opens the catalogue.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: str | int) -> str | int:
    """A CSV cell that no spreadsheet evaluates: a text starting like a formula gets a
    leading apostrophe (Excel and LibreOffice show the rest as text)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def catalogue_csv(
    records: Records,
    organ_id: str | None = None,
    only: Callable[[list[str]], set[str]] | None = None,
) -> str:
    buf = io.StringIO()
    # A UTF-8 BOM: without it Excel opens the file as ANSI and garbles Vietnamese.
    buf.write("\ufeff")
    rows = [[formula_safe(v) for v in row] for row in catalogue_rows(records, organ_id, only)]
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


def catalogue_xlsx(
    records: Records,
    organ_id: str | None = None,
    only: Callable[[list[str]], set[str]] | None = None,
) -> bytes:
    from openpyxl import Workbook  # type: ignore[import-untyped]
    from openpyxl.styles import Font  # type: ignore[import-untyped]

    wb = Workbook()
    ws = wb.active
    ws.title = "Danh mục hồ sơ"
    for row in catalogue_rows(records, organ_id, only):
        ws.append(row)
        for cell in ws[ws.max_row]:
            # openpyxl stores any string starting with "=" as a formula: make every text
            # cell a string cell, whatever it starts with (its value stays as entered).
            if isinstance(cell.value, str):
                cell.data_type = "s"
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
