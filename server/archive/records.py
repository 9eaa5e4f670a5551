"""Hồ sơ (archival file) and văn bản (document) metadata, as the law names them.

Fields and maximum lengths: NĐ 30/2020 Phụ lục VI (hồ sơ mục III, văn bản mục I/II) plus the
TT 05/2025/TT-BNV additions (docs/design.md §5, docs/research/mission.md §3.3). The TT 05 additions
have
no published lengths in the material we hold; the bounds below for them are ours and say so.

- Mã hồ sơ = mã định danh cơ quan (OrganId, ≤13) "." năm (4 digits) "." số và ký hiệu hồ sơ
  (FileNotation, ≤20), e.g. ``000.00.00.H53.2024.01``.
- A văn bản is an ordered list of archived pages; its legal file name (TT 02/2019) is
  ``<mã hồ sơ>.<số thứ tự văn bản>``, the ordinal zero-padded to its legal width (3).
- Every write re-indexes the record's text in ``meta_fts`` (folded + exact), separate from
  ``page_fts``, so search finds hồ sơ by title, keywords, issuer… with or without diacritics.

This module validates and stores; it renders nothing and knows nothing of HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from server.archive import audit, fonds
from server.store import pg
from server.store.db import INTEGRITY_ERRORS, Connection, Database, Row, fold

ORDINAL_WIDTH = 3  # Số thứ tự văn bản trong hồ sơ: Number(3) in Phụ lục VI

# -- code lists -------------------------------------------------------------------------------

# Thời hạn bảo quản: "Vĩnh viễn" or a number of years (NĐ 30 String 30).
THOI_HAN = re.compile(r"^(Vĩnh viễn|[1-9][0-9]? năm)$")
THOI_HAN_CHOICES = ("Vĩnh viễn", "70 năm", "50 năm", "20 năm", "10 năm", "5 năm")
# Chế độ sử dụng; codes 01/02/03 as in the TT 05/2025 implementation we read (mission §3.3.4).
CHE_DO_SU_DUNG = ("Công khai", "Sử dụng có điều kiện", "Mật")
# Mức độ tin cậy (TT 05/2025): 01 gốc điện tử, 02 số hóa, 03 hỗn hợp.
MUC_DO_TIN_CAY = {"01": "Gốc điện tử", "02": "Số hóa", "03": "Hỗn hợp"}
NGON_NGU = (
    "Tiếng Việt",
    "Tiếng Anh",
    "Tiếng Pháp",
    "Tiếng Nga",
    "Tiếng Trung",
    "Việt - Anh",
    "Việt - Nga",
    "Việt - Pháp",
    "Hán Nôm",
    "Việt - Trung",
)
# Tên loại văn bản hành chính (NĐ 30/2020 Điều 7) — suggestions, not a closed list: commune
# registers ("Sổ hộ tịch", "Giấy khai sinh"…) are văn bản too.
TEN_LOAI = (
    "Nghị quyết", "Quyết định", "Chỉ thị", "Quy chế", "Quy định", "Thông cáo", "Thông báo",
    "Hướng dẫn", "Chương trình", "Kế hoạch", "Phương án", "Đề án", "Dự án", "Báo cáo",
    "Biên bản", "Tờ trình", "Hợp đồng", "Công văn", "Công điện", "Bản ghi nhớ",
    "Bản thỏa thuận", "Giấy ủy quyền", "Giấy mời", "Giấy giới thiệu", "Giấy nghỉ phép",
    "Phiếu gửi", "Phiếu chuyển", "Phiếu báo", "Thư công", "Sổ", "Khác",
)  # fmt: skip

ORGAN_ID = re.compile(r"^[0-9A-Za-z.]{1,13}$")
# No "/" or spaces: the code is a URL path segment and, with the ordinal, a file name.
NOTATION = re.compile(r"^[0-9A-Za-zĐđ._-]{1,20}$")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = unicodedata.normalize("NFC", value).strip()
    return value


# String(n) of the law: at most n characters (after NFC and trimming).
Str11 = Annotated[str, StringConstraints(max_length=11)]
Str30 = Annotated[str, StringConstraints(max_length=30)]
Str50 = Annotated[str, StringConstraints(max_length=50)]
Str100 = Annotated[str, StringConstraints(max_length=100)]
Str200 = Annotated[str, StringConstraints(max_length=200)]
Str500 = Annotated[str, StringConstraints(max_length=500)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _nfc(cls, value: Any) -> Any:
        return _clean(value)


class HoSo(_Record):
    """One hồ sơ. Field names are the law's, without diacritics; labels live in FIELDS."""

    organ_id: str = Field(description="Mã định danh của cơ quan, tổ chức (OrganId, ≤13)")
    nam: int = Field(ge=1000, le=9999, description="Năm hình thành hồ sơ (FileCatalog)")
    ky_hieu: str = Field(description="Số và ký hiệu hồ sơ (FileNotation, ≤20)")
    tieu_de: Str500 = Field(min_length=1, description="Tiêu đề hồ sơ (Title)")
    thoi_han_bao_quan: Str30 = Field(description="Thời hạn bảo quản (Maintenance)")
    che_do_su_dung: Str30 = Field(default="Công khai", description="Chế độ sử dụng (Rights)")
    nguoi_lap: Str30 = Field(default="", description="Người lập hồ sơ (Creator)")
    ngon_ngu: Str50 = Field(default="Tiếng Việt", description="Ngôn ngữ (Language)")
    thoi_gian_bat_dau: dt.date | None = Field(default=None, description="Thời gian bắt đầu")
    thoi_gian_ket_thuc: dt.date | None = Field(default=None, description="Thời gian kết thúc")
    ghi_chu: Str500 = Field(default="", description="Ghi chú (Description)")
    # TT 05/2025 additions (lengths ours: no published bound in the material we hold).
    muc_do_tiep_can: Str30 = Field(default="", description="Mức độ tiếp cận (TT 05/2025)")
    tu_khoa: Str500 = Field(default="", description="Từ khóa (TT 05/2025)")
    so_luong_to: int | None = Field(
        default=None, ge=0, le=9999, description="Số lượng tờ (hồ sơ số hóa)"
    )
    tinh_trang_vat_ly: Str200 = Field(default="", description="Tình trạng vật lý (hồ sơ số hóa)")
    ky_hieu_thong_tin: Str30 = Field(default="", description="Ký hiệu thông tin (TT 05/2025)")
    muc_do_tin_cay: Literal["01", "02", "03"] = Field(
        default="02", description="Mức độ tin cậy: 01 gốc điện tử, 02 số hóa, 03 hỗn hợp"
    )
    ma_ho_so_goc_giay: Str50 = Field(default="", description="Mã hồ sơ gốc giấy (hồ sơ số hóa)")

    @field_validator("organ_id")
    @classmethod
    def _organ(cls, value: str) -> str:
        if not ORGAN_ID.match(value):
            raise ValueError("mã định danh: at most 13 letters, digits or dots")
        return value

    @field_validator("ky_hieu")
    @classmethod
    def _notation(cls, value: str) -> str:
        if not NOTATION.match(value):
            raise ValueError("số và ký hiệu hồ sơ: 1–20 letters, digits, '.', '_', '-'")
        return value

    @field_validator("thoi_han_bao_quan")
    @classmethod
    def _keep(cls, value: str) -> str:
        if not THOI_HAN.match(value):
            raise ValueError("thời hạn bảo quản: 'Vĩnh viễn' or 'N năm'")
        return value

    @field_validator("che_do_su_dung")
    @classmethod
    def _rights(cls, value: str) -> str:
        if value not in CHE_DO_SU_DUNG:
            raise ValueError(f"chế độ sử dụng: one of {', '.join(CHE_DO_SU_DUNG)}")
        return value

    @field_validator("ngon_ngu")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in NGON_NGU:
            raise ValueError(f"ngôn ngữ: one of {', '.join(NGON_NGU)}")
        return value

    @model_validator(mode="after")
    def _dates(self) -> HoSo:
        start, end = self.thoi_gian_bat_dau, self.thoi_gian_ket_thuc
        if start and end and start > end:
            raise ValueError("thời gian bắt đầu is after thời gian kết thúc")
        return self

    def code(self) -> str:
        """Mã hồ sơ: OrganId.FileCatalog.FileNotation."""
        return f"{self.organ_id}.{self.nam:04d}.{self.ky_hieu}"


class VanBanIn(_Record):
    """A văn bản as staff enter it: the law's fields and the pages it is made of."""

    stt: int | None = Field(
        default=None, ge=1, le=999, description="Số thứ tự văn bản trong hồ sơ (None: next)"
    )
    ten_loai: Str100 = Field(default="", description="Tên loại văn bản (TypeName)")
    so: Str11 = Field(default="", description="Số của văn bản (CodeNumber)")
    ky_hieu: Str30 = Field(default="", description="Ký hiệu của văn bản (CodeNotation)")
    ngay: dt.date | None = Field(default=None, description="Ngày, tháng, năm văn bản")
    co_quan_ban_hanh: Str200 = Field(default="", description="Tên cơ quan, tổ chức ban hành")
    trich_yeu: Str500 = Field(default="", description="Trích yếu nội dung (Subject)")
    ngon_ngu: Str30 = Field(default="Tiếng Việt", description="Ngôn ngữ (Language)")
    ghi_chu: Str500 = Field(default="", description="Ghi chú (Description)")
    pages: list[int] = Field(
        min_length=1, max_length=999, description="Archived page ids, in reading order"
    )

    @field_validator("ngon_ngu")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in NGON_NGU:
            raise ValueError(f"ngôn ngữ: one of {', '.join(NGON_NGU)}")
        return value


class VanBan(VanBanIn):
    id: int
    stt: int
    ma_ho_so: str
    so_trang: int = Field(description="Số trang của văn bản (PageAmount)")
    file_name: str = Field(description="Legal file name: <mã hồ sơ>.<số thứ tự> (TT 02/2019)")


class HoSoOut(HoSo):
    ma_ho_so: str
    tong_so_van_ban: int = Field(description="Tổng số văn bản trong hồ sơ (DocTotal)")
    tong_so_trang: int = Field(description="Tổng số trang của hồ sơ (PageTotal)")
    batch_pk: int | None = None
    fonds_code: str | None = Field(default=None, description="Phông lưu trữ (server.archive.fonds)")
    updated_at: float
    updated_by: str
    van_ban: list[VanBan] = Field(default_factory=list)


# Labels as the law words them (vi) with English beside; the order is Phụ lục VI's, then TT 05.
HO_SO_LABELS: tuple[tuple[str, str, str], ...] = (
    ("ma_ho_so", "Mã hồ sơ", "File code"),
    ("organ_id", "Mã định danh của cơ quan, tổ chức lập danh mục hồ sơ", "Organisation id"),
    ("nam", "Năm hình thành hồ sơ", "Year the file was formed"),
    ("ky_hieu", "Số và ký hiệu hồ sơ", "File number and notation"),
    ("tieu_de", "Tiêu đề hồ sơ", "Title"),
    ("thoi_han_bao_quan", "Thời hạn bảo quản", "Retention period"),
    ("che_do_su_dung", "Chế độ sử dụng", "Access rights"),
    ("nguoi_lap", "Người lập hồ sơ", "Creator"),
    ("ngon_ngu", "Ngôn ngữ", "Language"),
    ("thoi_gian_bat_dau", "Thời gian bắt đầu", "Start date"),
    ("thoi_gian_ket_thuc", "Thời gian kết thúc", "End date"),
    ("tong_so_van_ban", "Tổng số văn bản trong hồ sơ", "Number of documents"),
    ("tong_so_trang", "Tổng số trang của hồ sơ", "Number of pages"),
    ("ghi_chu", "Ghi chú", "Notes"),
    ("muc_do_tiep_can", "Mức độ tiếp cận", "Access level"),
    ("tu_khoa", "Từ khóa", "Keywords"),
    ("so_luong_to", "Số lượng tờ", "Number of sheets"),
    ("tinh_trang_vat_ly", "Tình trạng vật lý", "Physical condition"),
    ("ky_hieu_thong_tin", "Ký hiệu thông tin", "Information code"),
    ("muc_do_tin_cay", "Mức độ tin cậy", "Reliability"),
    ("ma_ho_so_goc_giay", "Mã hồ sơ gốc giấy", "Paper original's file code"),
)
VAN_BAN_LABELS: tuple[tuple[str, str, str], ...] = (
    ("stt", "Số thứ tự văn bản trong hồ sơ", "Order in the file"),
    ("ten_loai", "Tên loại văn bản", "Document type"),
    ("so", "Số của văn bản", "Document number"),
    ("ky_hieu", "Ký hiệu của văn bản", "Document notation"),
    ("ngay", "Ngày, tháng, năm văn bản", "Date"),
    ("co_quan_ban_hanh", "Tên cơ quan, tổ chức ban hành văn bản", "Issuing body"),
    ("trich_yeu", "Trích yếu nội dung", "Subject"),
    ("ngon_ngu", "Ngôn ngữ", "Language"),
    ("so_trang", "Số trang của văn bản", "Number of pages"),
    ("ghi_chu", "Ghi chú", "Notes"),
)


def label(labels: tuple[tuple[str, str, str], ...], key: str, lang: str) -> str:
    for k, vi, en in labels:
        if k == key:
            return vi if lang == "vi" else en
    return key


def file_name(ma_ho_so: str, stt: int) -> str:
    return f"{ma_ho_so}.{stt:0{ORDINAL_WIDTH}d}"


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


# -- store ------------------------------------------------------------------------------------


class Records:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save_ho_so(
        self, ho_so: HoSo, actor: str, ip: str = "", batch_pk: int | None = None
    ) -> HoSoOut:
        """Create or replace a hồ sơ; the audit row records the fields that changed."""
        ma = ho_so.code()
        data = ho_so.model_dump(mode="json")
        now = time.time()
        with self.db.tx() as con:
            old = con.execute("SELECT data FROM ho_so WHERE ma_ho_so = ?", (ma,)).fetchone()
            before = json.loads(old["data"]) if old else {}
            # mã hồ sơ's organ part names the fonds (one organisation, one fonds); none
            # claims it yet: the hồ sơ waits without one (never a guess).
            fonds_code = fonds.fonds_code_for_organ(con, ho_so.organ_id)
            con.execute(
                "INSERT INTO ho_so(ma_ho_so, organ_id, nam, ky_hieu, data, batch_pk, created_at,"
                " updated_at, updated_by, fonds_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(ma_ho_so) DO UPDATE SET data = excluded.data,"
                " batch_pk = COALESCE(excluded.batch_pk, ho_so.batch_pk),"
                " fonds_code = COALESCE(ho_so.fonds_code, excluded.fonds_code),"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (ma, ho_so.organ_id, ho_so.nam, ho_so.ky_hieu, json.dumps(data), batch_pk, now,
                 now, actor, fonds_code),
            )  # fmt: skip
            changed = {k: [before.get(k), v] for k, v in data.items() if before.get(k) != v}
            audit.append(
                con, actor, "ho_so.edit" if old else "ho_so.create", ma, {"changed": changed}, ip
            )
            code_row = con.execute(
                "SELECT fonds_code FROM ho_so WHERE ma_ho_so = ?", (ma,)
            ).fetchone()
            names = fonds.search_names(self.db, code_row[0]) if code_row[0] else []
            self._index(con, f"ho_so:{ma}", ho_so_text(data, names))
        found = self.ho_so(ma)
        assert found is not None
        return found

    def add_van_ban(self, ma: str, doc: VanBanIn, actor: str, ip: str = "") -> VanBan:
        now = time.time()
        with self.db.tx() as con:
            if con.execute("SELECT 1 FROM ho_so WHERE ma_ho_so = ?", (ma,)).fetchone() is None:
                raise NotFound(ma)
            known = {
                r[0]
                for r in con.execute(
                    f"SELECT id FROM pages WHERE id IN ({','.join('?' * len(doc.pages))})",  # noqa: S608 - placeholders only
                    doc.pages,
                )
            }
            missing = [p for p in doc.pages if p not in known]
            if missing:
                raise NotFound(f"pages {missing}")
            if len(set(doc.pages)) != len(doc.pages):
                raise Conflict("a page is listed twice")
            stt = doc.stt
            if stt is None:
                top = con.execute(
                    "SELECT COALESCE(MAX(stt), 0) FROM van_ban WHERE ma_ho_so = ?", (ma,)
                ).fetchone()[0]
                stt = int(top) + 1
            data = doc.model_dump(mode="json", exclude={"pages", "stt"})
            try:
                cur = con.execute(
                    "INSERT INTO van_ban(ma_ho_so, stt, data, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (ma, stt, json.dumps(data), now, now),
                )
            except INTEGRITY_ERRORS as exc:
                raise Conflict(f"số thứ tự {stt} is taken in {ma}") from exc
            vb_id = int(cur.fetchall()[0][0])
            con.executemany(
                "INSERT INTO van_ban_pages(van_ban_id, seq, page_pk) VALUES (?, ?, ?)",
                [(vb_id, i, p) for i, p in enumerate(doc.pages, 1)],
            )
            con.execute(
                "UPDATE ho_so SET updated_at = ?, updated_by = ? WHERE ma_ho_so = ?",
                (now, actor, ma),
            )
            audit.append(
                con, actor, "van_ban.create", file_name(ma, stt), {**data, "pages": doc.pages}, ip
            )
            self._index(con, f"van_ban:{vb_id}", _van_ban_text(data))
        found = self.van_ban(vb_id)
        assert found is not None
        return found

    def set_pages(self, ma: str, stt: int, pages: list[int], actor: str, ip: str = "") -> VanBan:
        """Replace the pages of văn bản ``<ma>.<stt>`` (staff correcting a split made at cover
        sheets, or by hand); the audit row keeps the pages before and after."""
        if not pages or len(set(pages)) != len(pages):
            raise Conflict("a văn bản needs its pages, each once")
        with self.db.tx() as con:
            row = con.execute(
                "SELECT id FROM van_ban WHERE ma_ho_so = ? AND stt = ?", (ma, stt)
            ).fetchone()
            if row is None:
                raise NotFound(file_name(ma, stt))
            marks = ",".join("?" * len(pages))  # placeholders only
            known = {
                r[0]
                for r in con.execute(f"SELECT id FROM pages WHERE id IN ({marks})", pages)  # noqa: S608
            }
            if missing := [p for p in pages if p not in known]:
                raise NotFound(f"pages {missing}")
            before = [
                r[0]
                for r in con.execute(
                    "SELECT page_pk FROM van_ban_pages WHERE van_ban_id = ? ORDER BY seq",
                    (row["id"],),
                )
            ]
            con.execute("DELETE FROM van_ban_pages WHERE van_ban_id = ?", (row["id"],))
            con.executemany(
                "INSERT INTO van_ban_pages(van_ban_id, seq, page_pk) VALUES (?, ?, ?)",
                [(row["id"], i, p) for i, p in enumerate(pages, 1)],
            )
            now = time.time()
            con.execute("UPDATE van_ban SET updated_at = ? WHERE id = ?", (now, row["id"]))
            con.execute(
                "UPDATE ho_so SET updated_at = ?, updated_by = ? WHERE ma_ho_so = ?",
                (now, actor, ma),
            )
            audit.append(
                con, actor, "van_ban.pages", file_name(ma, stt), {"before": before, "after": pages},
                ip,
            )  # fmt: skip
        found = self.van_ban(int(row["id"]))
        assert found is not None
        return found

    def _index(self, con: Connection, ref: str, text: str) -> None:
        self.db.index_meta(con, ref, text)

    # -- reads ------------------------------------------------------------------------------

    def van_ban(self, vb_id: int) -> VanBan | None:
        con = self.db.read()
        row = con.execute("SELECT * FROM van_ban WHERE id = ?", (vb_id,)).fetchone()
        return None if row is None else self._van_ban(con, row)

    def _van_ban(self, con: Connection, row: Row) -> VanBan:
        pages = [
            r[0]
            for r in con.execute(
                "SELECT page_pk FROM van_ban_pages WHERE van_ban_id = ? ORDER BY seq", (row["id"],)
            )
        ]
        return VanBan(
            **json.loads(row["data"]),
            id=row["id"],
            stt=row["stt"],
            ma_ho_so=row["ma_ho_so"],
            pages=pages,
            so_trang=len(pages),
            file_name=file_name(row["ma_ho_so"], row["stt"]),
        )

    def ho_so(self, ma: str) -> HoSoOut | None:
        con = self.db.read()
        row = con.execute("SELECT * FROM ho_so WHERE ma_ho_so = ?", (ma,)).fetchone()
        return None if row is None else self._ho_so(con, row)

    def _ho_so(self, con: Connection, row: Row) -> HoSoOut:
        docs = [
            self._van_ban(con, r)
            for r in con.execute(
                "SELECT * FROM van_ban WHERE ma_ho_so = ? ORDER BY stt", (row["ma_ho_so"],)
            )
        ]
        return HoSoOut(
            **json.loads(row["data"]),
            ma_ho_so=row["ma_ho_so"],
            tong_so_van_ban=len(docs),
            tong_so_trang=sum(d.so_trang for d in docs),
            batch_pk=row["batch_pk"],
            fonds_code=row["fonds_code"],
            updated_at=row["updated_at"],
            updated_by=row["updated_by"],
            van_ban=docs,
        )

    def list_ho_so(self, limit: int = 1000, offset: int = 0) -> list[HoSoOut]:
        con = self.db.read()
        rows = con.execute(
            "SELECT * FROM ho_so ORDER BY nam, organ_id, ky_hieu LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        return [self._ho_so(con, r) for r in rows]

    def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Hồ sơ and văn bản whose metadata match, best first (same rules as page search:
        a query without diacritics ignores them, one with diacritics matches exactly)."""
        query = unicodedata.normalize("NFC", query).strip()
        words = re.findall(r"\w+", query)
        if not words:
            return []
        exact = fold(query) != query.lower()
        column = "exact" if exact else "folded"
        terms = [w.lower() if exact else fold(w) for w in words]
        con = self.db.read()
        if self.db.dialect == "sqlite":
            match = f"{column} : (" + " ".join('"' + t.replace('"', '""') + '"' for t in terms)
            rows = con.execute(
                "SELECT ref, exact, bm25(meta_fts) AS score FROM meta_fts WHERE meta_fts MATCH ?"
                " ORDER BY score LIMIT ?",
                (match + ")", limit),
            ).fetchall()
        else:  # scores as bm25's: lower is better
            rows = con.execute(
                f"SELECT ref, text AS exact, -ts_rank({column}, q, 1) AS score"  # noqa: S608
                f" FROM meta_search, CAST(? AS tsquery) q WHERE {column} @@ q"  # (constants)
                " ORDER BY score, ref LIMIT ?",
                (pg.tsquery([[t] for t in terms]), limit),
            ).fetchall()
        out: list[dict[str, Any]] = []
        for r in rows:
            kind, _, key = r["ref"].partition(":")
            if kind == "ho_so":
                out.append({"kind": kind, "ma_ho_so": key, "title": key, "text": r["exact"],
                            "score": r["score"], "terms": terms, "exact": exact})  # fmt: skip
            else:
                vb = self.van_ban(int(key))
                if vb is not None:
                    out.append({"kind": kind, "ma_ho_so": vb.ma_ho_so, "title": vb.file_name,
                                "text": r["exact"], "score": r["score"], "terms": terms,
                                "exact": exact})  # fmt: skip
        return out


def ho_so_text(data: dict[str, Any], fonds_names: list[str]) -> str:
    """What a hồ sơ is found by: its metadata, and the names of its fonds before and after
    the 2025 reorganisation ("xã Nghiên Loan", "huyện Pác Nặm" find a merged commune's)."""
    keys = ("tieu_de", "tu_khoa", "nguoi_lap", "ghi_chu", "ky_hieu", "tinh_trang_vat_ly")
    text = "\n".join(str(data.get(k) or "") for k in keys)
    return "\n".join([text, *fonds_names])


def _van_ban_text(data: dict[str, Any]) -> str:
    keys = ("ten_loai", "so", "ky_hieu", "co_quan_ban_hanh", "trich_yeu", "ghi_chu")
    return "\n".join(str(data.get(k) or "") for k in keys)


def parse_pages(spec: str, page_ids_by_no: dict[int, int]) -> list[int]:
    """'1-3, 5' (page numbers within a batch) → page ids, in that order."""
    out: list[int] = []
    for piece in re.split(r"[,\s]+", spec.strip()):
        if not piece:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", piece)
        if m is None:
            raise ValueError(f"not a page range: {piece!r}")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if hi < lo or hi - lo > 999:
            raise ValueError(f"not a page range: {piece!r}")
        for n in range(lo, hi + 1):
            if n not in page_ids_by_no:
                raise ValueError(f"no page {n} in this batch")
            out.append(page_ids_by_no[n])
    if not out:
        raise ValueError("no pages given")
    return out
