"""The handover package of one hồ sơ, laid out as an E-ARK CSIP / AIP information package
(the layout third-party TT 05/2025 implementations use; docs/handover.md says which points
follow the official text and which follow that practice):

    <package>/METS.xml                         root METS: OBJID urn:uuid, package type AIP
    <package>/metadata/descriptive/EAD.xml     EAD3: the hồ sơ and its văn bản (NĐ 30 / TT 05)
    <package>/metadata/preservation/PREMIS.xml PREMIS 3: objects with SHA-256 fixity, events,
                                               agents
    <package>/representations/rep1/METS.xml    the representation's own METS
    <package>/representations/rep1/data/       one PDF (PDF/A where the agent made PDF/A) per
                                               văn bản, named <mã hồ sơ>.<số thứ tự>.pdf
    <package>/documentation/README.txt         what the package is, in Vietnamese and English
    <package>/schemas/                         the XSDs the metadata follows, when the archive
                                               holds copies (:func:`schema_dir`)

Every stored page file is re-hashed against the sha256 recorded at ingest as it is read
(:func:`server.archive.fixity.read_verified`): a mismatch stops the package.

Owns: building the package and checking it against the XML schemas. Must not: write to the
database other than through :mod:`server.archive.fixity` (callers write the audit row).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from server.archive import export, fixity, rotation
from server.archive.catalog import Catalog
from server.archive.records import HO_SO_LABELS, VAN_BAN_LABELS, HoSoOut, Records

METS_NS = "http://www.loc.gov/METS/"
CSIP_NS = "https://DILCIS.eu/XML/METS/CSIPExtensionMETS"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
PREMIS_NS = "http://www.loc.gov/premis/v3"
EAD_NS = "http://ead3.archivists.org/schema/"
CSIP_PROFILE = "https://earkcsip.dilcis.eu/profile/E-ARK-CSIP.xml"
# CSIP content category vocabulary (CSIPVocabularyContentCategory): digitised records.
CONTENT_CATEGORY = "Textual works – Digital"
CONTENT_INFORMATION_TYPE = "VN TT 05/2025/TT-BNV"

# The XSD files the package's metadata is checked against, by namespace (file names as the
# publishers ship them; server/archive/schemas/README.md says where each comes from).
SCHEMA_FILES = {
    METS_NS: "mets.xsd",
    CSIP_NS: "DILCISExtensionMETS.xsd",
    XLINK_NS: "xlink.xsd",  # the METS profile of XLink (LoC), imported by mets.xsd
    PREMIS_NS: "premis.xsd",
    EAD_NS: "ead3.xsd",
}


class PackageError(export.ExportError):
    """The package cannot be made (nothing to put in it, a page not arrived)."""


def schema_dir() -> Path:
    """Where the archive keeps its copies of the XSDs: ``$SOHOA_SCHEMA_DIR``, else
    ``server/archive/schemas/`` when it holds them, else the team's shared folder beside a
    checkout (``../shared/schemas/xsd``): the official XSDs are third-party files this
    repository does not carry (see ``schemas/README.md``)."""
    env = os.environ.get("SOHOA_SCHEMA_DIR")
    if env:
        return Path(env)
    here = Path(__file__).parent / "schemas"
    shared = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "xsd"
    return shared if missing_schemas(here) and not missing_schemas(shared) else here


def missing_schemas(directory: Path | None = None) -> list[str]:
    directory = schema_dir() if directory is None else directory
    return [name for name in SCHEMA_FILES.values() if not (directory / name).is_file()]


# -- helpers -------------------------------------------------------------------------------------


# Timestamps in Vietnam's time with its offset (ISO 8601 "+07:00"), as third-party TT 05/2025
# packages write them (docs/research/mission.md §3.3.4).
VN_TIME = dt.timezone(dt.timedelta(hours=7))


def _now() -> str:
    return dt.datetime.now(VN_TIME).replace(microsecond=0).isoformat()


def _iso(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts or 0, VN_TIME).replace(microsecond=0).isoformat()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _el(parent: Any, ns: str, tag: str, text: str | None = None, **attrs: str) -> Any:
    node = etree.SubElement(parent, f"{{{ns}}}{tag}")
    for key, value in attrs.items():
        node.set(key, value)
    if text is not None:
        node.text = text
    return node


def _write(root: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    etree.ElementTree(root).write(
        str(path), xml_declaration=True, encoding="UTF-8", pretty_print=True
    )


def _ncname(text: str) -> str:
    """An xml:ID from any text (METS IDs are xsd:ID)."""
    return "ID-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


@dataclass(frozen=True)
class PageSource:
    """What the archive knows of one page that went into a văn bản."""

    page_pk: int
    part_pk: int
    device_id: str
    batch_id: str
    page_no: int
    agent_version: str
    created_at: float
    received_at: float
    committed_at: float
    sha256: str
    size: int
    media_type: str
    capture_sha256: str
    dpi: int
    decisions: dict[str, Any]


def _page_sources(catalog: Catalog, page_pks: list[int]) -> dict[int, PageSource]:
    marks = ", ".join("?" * len(page_pks))  # placeholders only: the ids are parameters
    sql = (
        "SELECT p.id, p.device_id, p.page_no, p.capture_sha256, p.dpi, p.decisions,"  # noqa: S608
        " b.batch_id, b.agent_version, b.created_at, b.received_at,"
        " a.id AS part_pk, a.sha256, a.size, a.media_type, a.committed_at"
        " FROM pages p JOIN batches b ON b.id = p.batch_pk"
        # the page's archival file as it stands now (a turned version: server.archive.rotation)
        f" JOIN parts a ON a.id = {rotation.CURRENT_SQL.format(page='p.id')}"
        " AND a.state = 'committed'"
        f" WHERE p.id IN ({marks})"
    )
    out = {}
    for r in catalog.db.read().execute(sql, page_pks).fetchall():
        out[r["id"]] = PageSource(
            r["id"],
            r["part_pk"],
            r["device_id"],
            r["batch_id"],
            r["page_no"],
            r["agent_version"],
            r["created_at"],
            r["received_at"],
            r["committed_at"] or 0.0,
            r["sha256"],
            r["size"],
            r["media_type"],
            r["capture_sha256"],
            r["dpi"],
            json.loads(r["decisions"] or "{}"),
        )
    return out


# Page flags that say the page fails the legal check (agent.pipeline.archival.legal_check).
LEGAL_FLAGS = ("legal_fail", "below_200dpi", "dpi_unknown")


@dataclass(frozen=True)
class LegalReview:
    failures: tuple[str, ...]  # the page's legal flags; empty: it passed
    accepted_by: str | None  # the archivist whose recorded review accepted it
    accepted_at: float | None


def legal_review(catalog: Catalog, page_pks: list[int]) -> dict[int, LegalReview]:
    """Each page's legal-check result as the station flagged it, and the archivist's recorded
    decision (an ``accept`` in the review queue), if any. A page failing the check enters a
    conforming package only with that decision."""
    marks = ", ".join("?" * len(page_pks))  # placeholders only
    con = catalog.db.read()
    flags = {
        r["id"]: tuple(f for f in json.loads(r["flags"]) if f in LEGAL_FLAGS)
        for r in con.execute(f"SELECT id, flags FROM pages WHERE id IN ({marks})", page_pks)  # noqa: S608
    }
    accepted = {
        r["page_pk"]: (r["actor"], r["at"])
        for r in con.execute(
            f"SELECT page_pk, actor, at FROM reviews WHERE action = 'accept'"  # noqa: S608
            f" AND page_pk IN ({marks}) ORDER BY id",
            page_pks,
        )
    }
    return {p: LegalReview(flags.get(p, ()), *(accepted.get(p) or (None, None))) for p in page_pks}


# -- the flow ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    root: Path
    objid: str
    files: dict[str, str]  # path in the package → sha256 (every file but the root METS)


def write_aip(records: Records, catalog: Catalog, ma: str, out_dir: Path) -> Package:
    """Build the package of hồ sơ ``ma`` in ``out_dir/<mã hồ sơ>/`` (which must not exist).
    Stages top to bottom: the văn bản PDFs (fixity-checked), the descriptive metadata, the
    preservation metadata, the representation METS, documentation and schemas, the root
    METS."""
    ho_so = records.ho_so(ma)
    if ho_so is None:
        raise KeyError(ma)
    if not ho_so.van_ban:
        raise PackageError(f"hồ sơ {ma} has no văn bản yet: nothing to hand over")
    legal = legal_review(catalog, [p for doc in ho_so.van_ban for p in doc.pages])
    failing = [
        f"{doc.file_name} trang {seq}: {', '.join(legal[p].failures)}"
        for doc in ho_so.van_ban
        for seq, p in enumerate(doc.pages, 1)
        if legal[p].failures and legal[p].accepted_by is None
    ]
    if failing:
        raise PackageError(
            "pages fail the legal check and no archivist accepted them (review queue): "
            + "; ".join(failing)
        )
    root = out_dir / ma
    root.mkdir(parents=True)
    try:
        return _fill(catalog, ho_so, root, legal)
    except BaseException:  # a refused package leaves nothing half-written behind
        shutil.rmtree(root, ignore_errors=True)
        raise


def _fill(catalog: Catalog, ho_so: HoSoOut, root: Path, legal: dict[int, LegalReview]) -> Package:
    ma = ho_so.ma_ho_so
    objid = f"urn:uuid:{uuid.uuid4()}"
    created = _now()
    data = root / "representations" / "rep1" / "data"
    data.mkdir(parents=True)
    pdfs: list[tuple[str, Path]] = []
    for doc in ho_so.van_ban:
        target = data / f"{doc.file_name}.pdf"
        target.write_bytes(export.van_ban_pdf(catalog, doc, f"export.aip {ma}"))
        pdfs.append((doc.file_name, target))
    pages = _page_sources(catalog, [p for doc in ho_so.van_ban for p in doc.pages])
    _write(ead(ho_so, created), root / "metadata" / "descriptive" / "EAD.xml")
    premis_xml = premis(catalog, ho_so, root, pdfs, pages, created, legal)
    _write(premis_xml, root / "metadata" / "preservation" / "PREMIS.xml")
    _write(
        representation_mets(ho_so, root, pdfs, created),
        root / "representations" / "rep1" / "METS.xml",
    )
    _documentation(root / "documentation" / "README.txt", ho_so, objid)
    _copy_schemas(root / "schemas")
    _write(root_mets(ho_so, root, objid, created), root / "METS.xml")
    files = {
        str(p.relative_to(root)): _sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p != root / "METS.xml"
    }
    return Package(root, objid, files)


def write_aip_zip(records: Records, catalog: Catalog, ma: str, out_zip: Path) -> Package:
    """The package of hồ sơ ``ma`` as one zip (the package folder at its top level)."""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory(prefix="sohoa-aip-") as tmp:
        package = write_aip(records, catalog, ma, Path(tmp))
        with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(package.root.rglob("*")):
                if path.is_file():
                    zf.write(path, str(path.relative_to(tmp)))
    return package


def _copy_schemas(target: Path) -> None:
    source = schema_dir()
    names = [n for n in SCHEMA_FILES.values() if (source / n).is_file()]
    if not names:
        return
    target.mkdir(parents=True)
    for name in names:
        shutil.copyfile(source / name, target / name)


def _documentation(path: Path, ho_so: HoSoOut, objid: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"Gói bàn giao hồ sơ {ho_so.ma_ho_so} — {ho_so.tieu_de}\n"
        f"Mã gói: {objid}\n"
        "Cấu trúc theo E-ARK CSIP: METS.xml (gốc), metadata/descriptive/EAD.xml (mô tả hồ sơ và\n"
        "văn bản), metadata/preservation/PREMIS.xml (mã băm SHA-256, sự kiện, tác nhân),\n"
        "representations/rep1/data/ (mỗi văn bản một tệp PDF).\n\n"
        f"Handover package of file {ho_so.ma_ho_so}. E-ARK CSIP layout: METS.xml (root),\n"
        "metadata/descriptive/EAD.xml (EAD3), metadata/preservation/PREMIS.xml (PREMIS 3),\n"
        "representations/rep1/data/ (one PDF per document).\n",
        encoding="utf-8",
    )


# -- EAD3 ----------------------------------------------------------------------------------------


def ead(ho_so: HoSoOut, created: str) -> Any:
    """EAD3 for the hồ sơ (archdesc level "file") and its văn bản (components level "item").
    Every NĐ 30/2020 Phụ lục VI and TT 05/2025 field is kept under the law's label in an
    ``odd`` element whose ``localtype`` is the field's name; the fields EAD has an element
    for are also given there (unitid, unittitle, dates, language, extent, access)."""
    root = etree.Element(f"{{{EAD_NS}}}ead", nsmap={None: EAD_NS})
    control = _el(root, EAD_NS, "control")
    _el(control, EAD_NS, "recordid", ho_so.ma_ho_so)
    filedesc = _el(control, EAD_NS, "filedesc")
    _el(_el(filedesc, EAD_NS, "titlestmt"), EAD_NS, "titleproper", ho_so.tieu_de)
    _el(control, EAD_NS, "maintenancestatus", value="new")
    agency = _el(control, EAD_NS, "maintenanceagency")
    _el(agency, EAD_NS, "agencycode", ho_so.organ_id)
    _el(agency, EAD_NS, "agencyname", ho_so.organ_id)
    history = _el(control, EAD_NS, "maintenancehistory")
    event = _el(history, EAD_NS, "maintenanceevent")
    _el(event, EAD_NS, "eventtype", value="created")
    _el(event, EAD_NS, "eventdatetime", created, standarddatetime=created)
    _el(event, EAD_NS, "agenttype", value="machine")
    _el(event, EAD_NS, "agent", fixity.agent_name("export aip"))

    arch = _el(root, EAD_NS, "archdesc", level="file", localtype="ho-so")
    did = _el(arch, EAD_NS, "did")
    _el(did, EAD_NS, "unitid", ho_so.ma_ho_so)
    _el(did, EAD_NS, "unittitle", ho_so.tieu_de)
    _dates(did, ho_so.thoi_gian_bat_dau, ho_so.thoi_gian_ket_thuc)
    _language(did, ho_so.ngon_ngu)
    _extent(did, ho_so.tong_so_trang, "trang")
    if ho_so.nguoi_lap:
        _el(
            _el(_el(did, EAD_NS, "origination"), EAD_NS, "persname"),
            EAD_NS,
            "part",
            ho_so.nguoi_lap,
        )
    access = _el(arch, EAD_NS, "accessrestrict", localtype="che_do_su_dung")
    _el(access, EAD_NS, "p", ho_so.che_do_su_dung)
    _odd_fields(arch, ho_so.model_dump(mode="json", exclude={"van_ban"}), HO_SO_LABELS)
    if ho_so.tu_khoa:
        keywords = _el(arch, EAD_NS, "controlaccess")
        for word in [w.strip() for w in ho_so.tu_khoa.split(";") if w.strip()]:
            _el(_el(keywords, EAD_NS, "subject"), EAD_NS, "part", word)
    dsc = _el(arch, EAD_NS, "dsc")
    for doc in ho_so.van_ban:
        c = _el(dsc, EAD_NS, "c", level="item")
        cdid = _el(c, EAD_NS, "did")
        _el(cdid, EAD_NS, "unitid", doc.file_name)
        title = " ".join(x for x in (doc.ten_loai, doc.so, doc.ky_hieu) if x)
        _el(
            cdid,
            EAD_NS,
            "unittitle",
            f"{title}: {doc.trich_yeu}" if title else doc.trich_yeu or doc.file_name,
        )
        if doc.ngay:
            _el(
                cdid, EAD_NS, "unitdate", doc.ngay.strftime("%d/%m/%Y"), normal=doc.ngay.isoformat()
            )
        if doc.co_quan_ban_hanh:
            origination = _el(cdid, EAD_NS, "origination")
            _el(_el(origination, EAD_NS, "corpname"), EAD_NS, "part", doc.co_quan_ban_hanh)
        _language(cdid, doc.ngon_ngu)
        _extent(cdid, doc.so_trang, "trang")
        _el(
            cdid,
            EAD_NS,
            "dao",
            daotype="derived",
            linktitle=doc.file_name,
            href=f"../../representations/rep1/data/{doc.file_name}.pdf",
        )
        _odd_fields(c, doc.model_dump(mode="json", exclude={"pages", "id"}), VAN_BAN_LABELS)
    return root


def _dates(did: Any, start: dt.date | None, end: dt.date | None) -> None:
    if not start and not end:
        return
    structured = _el(did, EAD_NS, "unitdatestructured")
    span = _el(structured, EAD_NS, "daterange")
    if start:
        _el(span, EAD_NS, "fromdate", start.strftime("%d/%m/%Y"), standarddate=start.isoformat())
    if end:
        _el(span, EAD_NS, "todate", end.strftime("%d/%m/%Y"), standarddate=end.isoformat())


_LANGCODES = {"Tiếng Việt": "vie", "Tiếng Anh": "eng", "Tiếng Pháp": "fre", "Tiếng Trung": "chi"}


def _language(did: Any, name: str) -> None:
    lang = _el(did, EAD_NS, "langmaterial")
    code = _LANGCODES.get(name)
    if code:
        _el(lang, EAD_NS, "language", name, langcode=code)
    else:
        _el(lang, EAD_NS, "language", name)


def _extent(did: Any, count: int, unit: str) -> None:
    phys = _el(
        did, EAD_NS, "physdescstructured", coverage="whole", physdescstructuredtype="materialtype"
    )
    _el(phys, EAD_NS, "quantity", str(count))
    _el(phys, EAD_NS, "unittype", unit)


def _odd_fields(
    parent: Any, values: dict[str, Any], labels: tuple[tuple[str, str, str], ...]
) -> None:
    for key, vi, _en in labels:
        value = values.get(key)
        if value in (None, ""):
            continue
        odd = _el(parent, EAD_NS, "odd", localtype=key)
        _el(odd, EAD_NS, "head", vi)
        _el(odd, EAD_NS, "p", str(value))


# -- PREMIS 3 ------------------------------------------------------------------------------------


class _Premis:
    def __init__(self) -> None:
        self.root = etree.Element(
            f"{{{PREMIS_NS}}}premis", nsmap={None: PREMIS_NS, "xsi": XSI_NS}, version="3.0"
        )
        self.objects: list[Any] = []
        self.events: list[Any] = []
        self.agents: dict[str, Any] = {}

    def _ident(self, parent: Any, kind: str, type_: str, value: str) -> None:
        ident = _el(parent, PREMIS_NS, f"{kind}Identifier")
        _el(ident, PREMIS_NS, f"{kind}IdentifierType", type_)
        _el(ident, PREMIS_NS, f"{kind}IdentifierValue", value)

    def agent(
        self, key: str, name: str, type_: str, version: str | None = None, note: str = ""
    ) -> str:
        if key not in self.agents:
            node = etree.Element(f"{{{PREMIS_NS}}}agent")
            self._ident(node, "agent", "local", key)
            _el(node, PREMIS_NS, "agentName", name)
            _el(node, PREMIS_NS, "agentType", type_)
            if version:
                _el(node, PREMIS_NS, "agentVersion", version)
            if note:
                _el(node, PREMIS_NS, "agentNote", note)
            self.agents[key] = node
        return key

    def event(
        self,
        type_: str,
        at: float | str,
        detail: str,
        outcome: str,
        agents: list[tuple[str, str]],
        objects: list[str],
        outcome_detail: str = "",
    ) -> str:
        key = f"event-{len(self.events) + 1}"
        node = etree.Element(f"{{{PREMIS_NS}}}event")
        self._ident(node, "event", "local", key)
        _el(node, PREMIS_NS, "eventType", type_)
        _el(node, PREMIS_NS, "eventDateTime", at if isinstance(at, str) else _iso(at))
        _el(_el(node, PREMIS_NS, "eventDetailInformation"), PREMIS_NS, "eventDetail", detail)
        info = _el(node, PREMIS_NS, "eventOutcomeInformation")
        _el(info, PREMIS_NS, "eventOutcome", outcome)
        if outcome_detail:
            _el(
                _el(info, PREMIS_NS, "eventOutcomeDetail"),
                PREMIS_NS,
                "eventOutcomeDetailNote",
                outcome_detail,
            )
        for agent_key, role in agents:
            link = _el(node, PREMIS_NS, "linkingAgentIdentifier")
            _el(link, PREMIS_NS, "linkingAgentIdentifierType", "local")
            _el(link, PREMIS_NS, "linkingAgentIdentifierValue", agent_key)
            _el(link, PREMIS_NS, "linkingAgentRole", role)
        for obj in objects:
            link = _el(node, PREMIS_NS, "linkingObjectIdentifier")
            _el(link, PREMIS_NS, "linkingObjectIdentifierType", "local")
            _el(link, PREMIS_NS, "linkingObjectIdentifierValue", obj)
        self.events.append(node)
        return key

    def file_object(
        self,
        key: str,
        sha256: str,
        size: int,
        format_name: str,
        original_name: str,
        sources: Sequence[str] = (),
    ) -> Any:
        node = etree.Element(f"{{{PREMIS_NS}}}object")
        node.set(f"{{{XSI_NS}}}type", "file")
        self._ident(node, "object", "local", key)
        chars = _el(node, PREMIS_NS, "objectCharacteristics")
        _el(chars, PREMIS_NS, "compositionLevel", "0")
        fix = _el(chars, PREMIS_NS, "fixity")
        _el(fix, PREMIS_NS, "messageDigestAlgorithm", "SHA-256")
        _el(fix, PREMIS_NS, "messageDigest", sha256)
        _el(fix, PREMIS_NS, "messageDigestOriginator", "sohoa")
        _el(chars, PREMIS_NS, "size", str(size))
        _el(
            _el(_el(chars, PREMIS_NS, "format"), PREMIS_NS, "formatDesignation"),
            PREMIS_NS,
            "formatName",
            format_name,
        )
        _el(node, PREMIS_NS, "originalName", original_name)
        for source in sources:
            rel = _el(node, PREMIS_NS, "relationship")
            _el(rel, PREMIS_NS, "relationshipType", "derivation")
            _el(rel, PREMIS_NS, "relationshipSubType", "has source")
            rid = _el(rel, PREMIS_NS, "relatedObjectIdentifier")
            _el(rid, PREMIS_NS, "relatedObjectIdentifierType", "local")
            _el(rid, PREMIS_NS, "relatedObjectIdentifierValue", source)
        self.objects.append(node)
        return node

    def done(self) -> Any:
        for node in [*self.objects, *self.events, *self.agents.values()]:
            self.root.append(node)
        return self.root


def _format_name(media_type: str) -> str:
    return {"application/pdf": "PDF/A-2b", "image/jpeg": "JPEG"}.get(media_type, media_type)


def premis(
    catalog: Catalog,
    ho_so: HoSoOut,
    root: Path,
    pdfs: list[tuple[str, Path]],
    pages: dict[int, PageSource],
    created: str,
    legal: dict[int, LegalReview] | None = None,
) -> Any:
    """PREMIS 3: one object per văn bản PDF in the package and per stored page file it was
    made from (both with SHA-256), the events of each page (capture on the station, cleanup
    and OCR with their recorded decisions, transfer, ingest verification, every fixity
    check) and of the package, and the agents (stations, the software, staff)."""
    p = _Premis()
    software = p.agent(
        "sohoa-server", "sohoa-server", "software", fixity.agent_name("export aip").split()[1]
    )
    staff = p.agent(
        f"staff:{ho_so.updated_by}",
        ho_so.updated_by,
        "person",
        note="archivist (last edit of the hồ sơ)",
    )
    organ = p.agent(
        f"organ:{ho_so.organ_id}", ho_so.organ_id, "organization", note="Mã định danh cơ quan"
    )
    checks = fixity.events(catalog.db, [src.part_pk for src in pages.values()])
    checks_by_part: dict[int, list[dict[str, Any]]] = {}
    for check in checks:
        checks_by_part.setdefault(check["part_pk"], []).append(check)
    turns = rotation.versions_of(catalog.db, list(pages))
    by_name = {doc.file_name: doc for doc in ho_so.van_ban}
    for file_name, path in pdfs:
        doc = by_name[file_name]
        page_keys = []
        for seq, page_pk in enumerate(doc.pages, 1):
            src = pages[page_pk]
            key = f"part:{src.device_id}/{src.batch_id}/{src.page_no:04d}"
            page_keys.append(key)
            if any(
                o.findtext(f"{{{PREMIS_NS}}}objectIdentifier/{{{PREMIS_NS}}}objectIdentifierValue")
                == key
                for o in p.objects
            ):
                continue
            p.file_object(
                key, src.sha256, src.size, _format_name(src.media_type), f"{file_name} trang {seq}"
            )
            station = p.agent(
                f"station:{src.device_id}",
                src.device_id,
                "hardware",
                note="trạm quét / scan station",
            )
            agent_sw = p.agent(
                f"sohoa-agent:{src.agent_version}", "sohoa-agent", "software", src.agent_version
            )
            decisions = src.decisions
            p.event(
                "capture",
                src.created_at,
                f"Quét trang {src.page_no} của lô {src.batch_id} ({src.dpi} dpi);"
                f" capture sha256 {src.capture_sha256}",
                "success",
                [(station, "executing program"), (agent_sw, "implementer")],
                [key],
            )
            cleanup = {k: v for k, v in decisions.items() if not k.startswith("ocr")}
            p.event(
                "modification",
                src.created_at,
                "Làm sạch ảnh / image cleanup (orientation, deskew, archival)",
                "success",
                [(agent_sw, "executing program")],
                [key],
                json.dumps(cleanup, ensure_ascii=False, sort_keys=True),
            )
            ocr = {k: v for k, v in decisions.items() if k.startswith("ocr")}
            p.event(
                "metadata extraction",
                src.created_at,
                "Nhận dạng chữ tiếng Việt / OCR (tesseract vie)",
                "success",
                [(agent_sw, "executing program")],
                [key],
                json.dumps(ocr, ensure_ascii=False, sort_keys=True),
            )
            p.event(
                "transfer",
                src.received_at,
                "Gửi về kho lưu trữ / sent store-and-forward to the archive",
                "success",
                [(station, "transmitter"), (software, "recipient")],
                [key],
            )
            page_turns = turns.get(page_pk, [])
            received_sha = page_turns[-1].from_sha256 if page_turns else src.sha256
            p.event(
                "ingestion",
                src.received_at if page_turns else src.committed_at,
                f"Tiếp nhận: sha256 {received_sha} kiểm tra lại khi nhận"
                " / re-hashed and verified at ingest",
                "success",
                [(software, "executing program")],
                [key],
            )
            for turn in page_turns:  # server.archive.rotation: a new version, original kept
                person = p.agent(f"staff:{turn.actor}", turn.actor, "person")
                p.event(
                    "modification",
                    turn.at,
                    f"Xoay trang {turn.degrees}° so với bản gốc khi duyệt"
                    " / page turned in review (PDF /Rotate, lossless; original kept)",
                    "success",
                    [(person, "authorizer"), (software, "executing program")],
                    [key],
                    f"from sha256 {turn.from_sha256} to {turn.sha256}",
                )
            review = (legal or {}).get(page_pk)
            if review is not None:
                accepted = ""
                if review.failures and review.accepted_by:
                    reviewer = p.agent(f"staff:{review.accepted_by}", review.accepted_by, "person")
                    accepted = f"; accepted by {reviewer} at {_iso(review.accepted_at)}"
                p.event(
                    "validation",
                    src.created_at,
                    "Kiểm tra yêu cầu pháp lý của trang số hóa / legal check of the page",
                    "fail" if review.failures else "pass",
                    [(agent_sw, "executing program")],
                    [key],
                    ", ".join(review.failures) + accepted,
                )
            for check in checks_by_part.get(src.part_pk, []):
                p.event(
                    "fixity check",
                    check["at"],
                    f"{check['context']}: SHA-256 so với giá trị lúc tiếp nhận",
                    "pass" if check["outcome"] == "pass" else "fail",
                    [(software, "executing program")],
                    [key],
                    f"expected {check['expected_sha256']},"
                    f" found {check['actual_sha256'] or 'missing'}",
                )
        rel = str(path.relative_to(root))
        p.file_object(
            rel, _sha256(path), path.stat().st_size, _pdf_format(path), path.name, page_keys
        )
        p.event(
            "creation",
            created,
            f"Ghép các trang của văn bản {file_name} thành một tệp PDF",
            "success",
            [(software, "executing program"), (staff, "authorizer"), (organ, "owner")],
            [rel, *page_keys],
        )
    return p.done()


def _pdf_format(path: Path) -> str:
    """The format as the produced file says it: PDF/A when its XMP claims a pdfaid part,
    else the version in its header."""
    data = path.read_bytes()
    if b"pdfaid:part" in data or b"<pdfaid:part>" in data:
        return "PDF/A-2b"
    return "PDF " + data[5:8].decode("ascii", "replace")


# -- METS ----------------------------------------------------------------------------------------


def _mets_root(objid: str, label: str, created: str, package_type: str | None) -> Any:
    root = etree.Element(
        f"{{{METS_NS}}}mets",
        nsmap={None: METS_NS, "csip": CSIP_NS, "xlink": XLINK_NS, "xsi": XSI_NS},
    )
    root.set("OBJID", objid)
    root.set("LABEL", label)
    root.set("TYPE", CONTENT_CATEGORY)
    root.set(f"{{{CSIP_NS}}}CONTENTINFORMATIONTYPE", "OTHER")
    root.set(f"{{{CSIP_NS}}}OTHERCONTENTINFORMATIONTYPE", CONTENT_INFORMATION_TYPE)
    root.set("PROFILE", CSIP_PROFILE)
    hdr = _el(root, METS_NS, "metsHdr", CREATEDATE=created, LASTMODDATE=created, RECORDSTATUS="NEW")
    if package_type:
        hdr.set(f"{{{CSIP_NS}}}OAISPACKAGETYPE", package_type)
    agent = _el(hdr, METS_NS, "agent", ROLE="CREATOR", TYPE="OTHER", OTHERTYPE="SOFTWARE")
    _el(agent, METS_NS, "name", "sohoa-server")
    note = _el(agent, METS_NS, "note", fixity.agent_name("export aip").split()[1])
    note.set(f"{{{CSIP_NS}}}NOTETYPE", "SOFTWARE VERSION")
    return root


def _file(grp: Any, root: Path, path: Path, mime: str, created: str) -> str:
    rel = str(path.relative_to(root))
    file_id = _ncname(rel)
    node = _el(
        grp,
        METS_NS,
        "file",
        ID=file_id,
        MIMETYPE=mime,
        SIZE=str(path.stat().st_size),
        CREATED=created,
        CHECKSUM=_sha256(path),
        CHECKSUMTYPE="SHA-256",
    )
    _el(
        node,
        METS_NS,
        "FLocat",
        LOCTYPE="URL",
        **{f"{{{XLINK_NS}}}type": "simple", f"{{{XLINK_NS}}}href": rel},
    )
    return file_id


def _md_ref(parent: Any, root: Path, path: Path, mdtype: str, created: str) -> None:
    _el(
        parent,
        METS_NS,
        "mdRef",
        LOCTYPE="URL",
        MDTYPE=mdtype,
        MIMETYPE="text/xml",
        SIZE=str(path.stat().st_size),
        CREATED=created,
        CHECKSUM=_sha256(path),
        CHECKSUMTYPE="SHA-256",
        **{f"{{{XLINK_NS}}}type": "simple", f"{{{XLINK_NS}}}href": str(path.relative_to(root))},
    )


def representation_mets(
    ho_so: HoSoOut, root: Path, pdfs: list[tuple[str, Path]], created: str
) -> Any:
    rep = root / "representations" / "rep1"
    mets = _mets_root(f"{ho_so.ma_ho_so}/rep1", ho_so.tieu_de, created, None)
    file_sec = _el(mets, METS_NS, "fileSec", ID="ID-rep1-fileSec")
    grp = _el(file_sec, METS_NS, "fileGrp", ID="ID-rep1-data", USE="Data")
    ids = [_file(grp, rep, path, "application/pdf", created) for _, path in pdfs]
    smap = _el(mets, METS_NS, "structMap", ID="ID-rep1-structMap", TYPE="PHYSICAL", LABEL="CSIP")
    top = _el(smap, METS_NS, "div", ID="ID-rep1-div", LABEL=f"{ho_so.ma_ho_so}/rep1")
    data = _el(top, METS_NS, "div", ID="ID-rep1-div-data", LABEL="Data")
    for (file_name, _), file_id in zip(pdfs, ids, strict=True):
        div = _el(
            data, METS_NS, "div", ID=_ncname(f"div-{file_name}"), LABEL=file_name, TYPE="van-ban"
        )
        _el(div, METS_NS, "fptr", FILEID=file_id)
    return mets


def root_mets(ho_so: HoSoOut, root: Path, objid: str, created: str) -> Any:
    mets = _mets_root(objid, ho_so.tieu_de, created, "AIP")
    dmd = _el(mets, METS_NS, "dmdSec", ID="ID-dmd-ead", CREATED=created, STATUS="CURRENT")
    _md_ref(dmd, root, root / "metadata" / "descriptive" / "EAD.xml", "EAD", created)
    amd = _el(mets, METS_NS, "amdSec", ID="ID-amd")
    prov = _el(
        amd, METS_NS, "digiprovMD", ID="ID-digiprov-premis", CREATED=created, STATUS="CURRENT"
    )
    _md_ref(prov, root, root / "metadata" / "preservation" / "PREMIS.xml", "PREMIS", created)
    file_sec = _el(mets, METS_NS, "fileSec", ID="ID-fileSec")
    doc_grp = _el(file_sec, METS_NS, "fileGrp", ID="ID-grp-documentation", USE="Documentation")
    for path in sorted((root / "documentation").iterdir()):
        _file(doc_grp, root, path, "text/plain", created)
    schemas = sorted((root / "schemas").glob("*.xsd")) if (root / "schemas").is_dir() else []
    if schemas:
        schema_grp = _el(file_sec, METS_NS, "fileGrp", ID="ID-grp-schemas", USE="Schemas")
        for path in schemas:
            _file(schema_grp, root, path, "application/xml", created)
    rep_grp = _el(file_sec, METS_NS, "fileGrp", ID="ID-grp-rep1", USE="Representations/rep1")
    rep_grp.set(f"{{{CSIP_NS}}}CONTENTINFORMATIONTYPE", "OTHER")
    rep_grp.set(f"{{{CSIP_NS}}}OTHERCONTENTINFORMATIONTYPE", CONTENT_INFORMATION_TYPE)
    _file(rep_grp, root, root / "representations" / "rep1" / "METS.xml", "application/xml", created)
    smap = _el(mets, METS_NS, "structMap", ID="ID-structMap", TYPE="PHYSICAL", LABEL="CSIP")
    top = _el(smap, METS_NS, "div", ID="ID-div-package", LABEL=ho_so.ma_ho_so)
    _el(
        top,
        METS_NS,
        "div",
        ID="ID-div-metadata",
        LABEL="Metadata",
        DMDID="ID-dmd-ead",
        ADMID="ID-digiprov-premis",
    )
    doc_div = _el(top, METS_NS, "div", ID="ID-div-documentation", LABEL="Documentation")
    _el(doc_div, METS_NS, "fptr", FILEID="ID-grp-documentation")
    if schemas:
        schema_div = _el(top, METS_NS, "div", ID="ID-div-schemas", LABEL="Schemas")
        _el(schema_div, METS_NS, "fptr", FILEID="ID-grp-schemas")
    rep_div = _el(top, METS_NS, "div", ID="ID-div-rep1", LABEL="Representations/rep1")
    _el(
        rep_div,
        METS_NS,
        "mptr",
        LOCTYPE="URL",
        **{
            f"{{{XLINK_NS}}}type": "simple",
            f"{{{XLINK_NS}}}href": "representations/rep1/METS.xml",
            f"{{{XLINK_NS}}}title": "ID-grp-rep1",
        },
    )
    return mets


# -- validation ----------------------------------------------------------------------------------


class _LocalSchemas(etree.Resolver):  # type: ignore[misc]
    """Resolve every schema import (http URLs included) to the archive's local copies by
    file name: validation never reaches the network."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def resolve(self, url: str, pubid: str, context: Any) -> Any:
        local = self.directory / url.rsplit("/", 1)[-1]
        if local.is_file():
            return self.resolve_filename(str(local), context)
        raise etree.XMLSchemaParseError(f"schema {url} is not held locally in {self.directory}")


def _schema(namespaces: list[str], directory: Path) -> Any:
    imports = "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{(directory / SCHEMA_FILES[ns]).as_uri()}"/>'
        for ns in namespaces
    )
    driver = f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{imports}</xs:schema>'
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_LocalSchemas(directory))
    return etree.XMLSchema(
        etree.fromstring(driver.encode(), parser, base_url=directory.as_uri() + "/")
    )


def validate(package: Path, directory: Path | None = None) -> dict[str, list[str]]:
    """Check every METS, EAD and PREMIS file of a package against the schemas; the errors per
    file (empty lists: valid)."""
    directory = directory or schema_dir()
    missing = missing_schemas(directory)
    if missing:
        raise FileNotFoundError(f"schemas not held in {directory}: {', '.join(missing)}")
    mets_schema = _schema([METS_NS, CSIP_NS], directory)
    checks = {
        "METS.xml": mets_schema,
        "representations/rep1/METS.xml": mets_schema,
        "metadata/descriptive/EAD.xml": _schema([EAD_NS], directory),
        "metadata/preservation/PREMIS.xml": _schema([PREMIS_NS], directory),
    }
    out = {}
    for rel, schema in checks.items():
        doc = etree.parse(
            str(package / rel), etree.XMLParser(no_network=True, resolve_entities=False)
        )
        ok = schema.validate(doc)
        out[rel] = [] if ok else [f"line {e.line}: {e.message}" for e in schema.error_log]
    return out
