"""The words on the corpus pages: five kinds of commune record, varied by a seed.

Each kind is laid out as blocks (`Block`): a heading, a paragraph, or a table of rows.
The texts follow the shapes NĐ 30/2020 prescribes (header, số/ký hiệu, trích yếu, body,
nơi nhận, signer) but are written here, with names, dates, places and numbers drawn from the
seed, so two seeds of one kind share the layout and differ in the words. ASCII hyphens on
purpose: the corpus measures OCR, not dash typography. Everything is NFC.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

KINDS = ("quyet_dinh", "cong_van", "bien_ban", "so_dang_ky", "danh_muc")

_FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ")
_MIDDLE = ("Văn", "Thị", "Hữu", "Đức", "Minh", "Ngọc", "Thanh", "Quang", "Xuân", "Kim")
_GIVEN = (
    "Hùng",
    "Lan",
    "Dũng",
    "Hương",
    "Tuấn",
    "Mai",
    "Khánh",
    "Phượng",
    "Thắng",
    "Yến",
    "Nghĩa",
    "Hạnh",
    "Quý",
    "Trường",
    "Liễu",
    "Đạt",
    "Thủy",
    "Lộc",
    "Ánh",
    "Sơn",
)
_COMMUNES = ("Tân Phú", "Hòa Bình", "Quỳnh Lưu", "Nghĩa Đàn", "Yên Thế", "Đông Sơn", "Mỹ Lộc")
_HAMLETS = ("thôn Đông", "thôn Thượng", "xóm Bãi", "ấp Mỹ Hòa", "bản Nà Lừa", "tổ dân phố 3")
_TOPICS = (
    "chỉnh lý tài liệu lưu trữ",
    "số hóa sổ hộ tịch",
    "kiểm kê đất đai",
    "phòng chống lụt bão",
    "tiêm chủng mở rộng",
    "xây dựng nông thôn mới",
    "sửa chữa trường mẫu giáo",
    "cấp giấy chứng nhận quyền sử dụng đất",
)
_SUBJECTS = (
    "Báo cáo kết quả rà soát hộ nghèo",
    "Tờ trình xin kinh phí sửa cầu tràn",
    "Quyết định thành lập tổ công tác",
    "Kế hoạch tuyên truyền pháp luật",
    "Biên bản bàn giao hồ sơ địa chính",
    "Thông báo lịch tiếp công dân",
    "Công văn đề nghị hỗ trợ giống lúa",
    "Danh sách hộ được cấp thẻ bảo hiểm",
)


@dataclass(frozen=True)
class Block:
    """One piece of a page: a heading, a paragraph, or a table.

    `style`: "heading" (bold, centred), "title" (bold, centred, may be larger), "line"
    (left, not wrapped), "para" (wrapped to the text width), "right" (right half, e.g. the
    place and date), "table" (`rows` of cells, first row the column heads, ruled).
    """

    style: str
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"


def _date(rng: random.Random, year: int) -> tuple[int, int, int]:
    return rng.randint(1, 28), rng.randint(1, 12), year


def _header(rng: random.Random, commune: str) -> list[Block]:
    return [
        Block("heading", f"ỦY BAN NHÂN DÂN XÃ {commune.upper()}"),
        Block("heading", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"),
        Block("heading", "Độc lập - Tự do - Hạnh phúc"),
    ]


def _signature(rng: random.Random, role: str) -> list[Block]:
    return [
        Block("para", "Nơi nhận:"),
        Block("line", "- Như trên;"),
        Block("line", f"- Lưu: VT, {rng.choice(('VP', 'ĐC', 'TP', 'VHXH'))}."),
        Block("heading", f"TM. ỦY BAN NHÂN DÂN {role}"),
        Block("heading", _person(rng)),
    ]


def _quyet_dinh(rng: random.Random) -> list[Block]:
    commune, topic = rng.choice(_COMMUNES), rng.choice(_TOPICS)
    year = rng.randint(1988, 2024)
    d, m, y = _date(rng, year)
    number = rng.randint(12, 399)
    return [
        *_header(rng, commune),
        Block("right", f"Số: {number}/QĐ-UBND, {commune}, ngày {d} tháng {m} năm {y}"),
        Block("title", "QUYẾT ĐỊNH"),
        Block("heading", f"Về việc {topic} năm {year}"),
        Block("heading", f"CHỦ TỊCH ỦY BAN NHÂN DÂN XÃ {commune.upper()}"),
        Block("para", "Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;"),
        Block(
            "para",
            f"Căn cứ Nghị định số {rng.randint(10, 99)}/{year - rng.randint(1, 5)}/NĐ-CP "
            "của Chính phủ về công tác văn thư;",
        ),
        Block("para", f"Xét đề nghị của công chức Văn phòng - Thống kê xã {commune},"),
        Block("title", "QUYẾT ĐỊNH:"),
        Block(
            "para",
            f"Điều 1. Phê duyệt kế hoạch {topic} của Ủy ban nhân dân xã năm {year}, "
            f"với tổng kinh phí {rng.randint(12, 480)} triệu đồng, do ông {_person(rng)} "
            "làm tổ trưởng tổ công tác.",
        ),
        Block(
            "para",
            f"Điều 2. Giao công chức Địa chính - Xây dựng phối hợp với trưởng "
            f"{rng.choice(_HAMLETS)} tổ chức thực hiện, báo cáo kết quả trước ngày "
            f"{rng.randint(1, 28)} tháng {rng.randint(1, 12)}.",
        ),
        Block(
            "para",
            "Điều 3. Quyết định này có hiệu lực kể từ ngày ký. Văn phòng Ủy ban nhân dân xã, "
            "các ban, ngành, đoàn thể và cá nhân có tên tại Điều 1 chịu trách nhiệm thi hành "
            "Quyết định này./.",
        ),
        *_signature(rng, "CHỦ TỊCH"),
    ]


def _cong_van(rng: random.Random) -> list[Block]:
    commune = rng.choice(_COMMUNES)
    year = rng.randint(1988, 2024)
    d, m, y = _date(rng, year)
    subject = rng.choice(_SUBJECTS)
    hamlet = rng.choice(_HAMLETS)
    return [
        *_header(rng, commune),
        Block("line", f"Số: {rng.randint(5, 250)}/UBND-VP"),
        Block("line", f"V/v {subject.lower()}"),
        Block("right", f"{commune}, ngày {d} tháng {m} năm {y}"),
        Block("heading", f"Kính gửi: Ủy ban nhân dân huyện {rng.choice(_COMMUNES)}"),
        Block(
            "para",
            f"Thực hiện Công văn số {rng.randint(100, 999)}/UBND-NC ngày {d} tháng {m} năm "
            f"{y} của Ủy ban nhân dân huyện về việc {rng.choice(_TOPICS)}, Ủy ban nhân dân "
            f"xã {commune} báo cáo như sau:",
        ),
        Block(
            "para",
            f"1. Trong tháng {m}, xã đã tiếp nhận {rng.randint(11, 95)} hồ sơ, giải quyết "
            f"đúng hạn {rng.randint(8, 11)} hồ sơ; việc lưu trữ tài liệu điện tử được thực "
            "hiện theo đúng quy định hiện hành.",
        ),
        Block(
            "para",
            f"2. Tại {hamlet}, mưa lớn kéo dài làm hư hỏng {rng.randint(2, 40)} mét kênh "
            "mương và một đoạn đường liên thôn; nhân dân đã góp công sửa chữa tạm thời.",
        ),
        Block(
            "para",
            "3. Đề nghị Ủy ban nhân dân huyện xem xét, hỗ trợ kinh phí để xây dựng lại công "
            "trình trước mùa mưa bão năm sau.",
        ),
        Block(
            "para", "Ủy ban nhân dân xã kính đề nghị Ủy ban nhân dân huyện quan tâm giải quyết./."
        ),
        *_signature(rng, "KT. CHỦ TỊCH"),
    ]


def _bien_ban(rng: random.Random) -> list[Block]:
    commune = rng.choice(_COMMUNES)
    year = rng.randint(1985, 2024)
    d, m, y = _date(rng, year)
    chair, clerk = _person(rng), _person(rng)
    return [
        *_header(rng, commune),
        Block("title", "BIÊN BẢN"),
        Block("heading", f"Họp bàn về việc {rng.choice(_TOPICS)}"),
        Block(
            "para",
            f"Hôm nay, vào lúc {rng.randint(7, 16)} giờ ngày {d} tháng {m} năm {y}, tại hội "
            f"trường Ủy ban nhân dân xã {commune}, chúng tôi gồm có:",
        ),
        Block("line", f"1. Ông (bà) {chair} - Chủ tịch Ủy ban nhân dân xã, chủ trì;"),
        Block("line", f"2. Ông (bà) {clerk} - công chức Văn phòng - Thống kê, thư ký;"),
        Block("line", f"3. Đại diện {rng.choice(_HAMLETS)} và {rng.randint(12, 60)} hộ dân."),
        Block(
            "para",
            "Nội dung: các đại biểu thống nhất việc kiểm tra hiện trạng, lập danh sách các hộ "
            f"bị ảnh hưởng và đề xuất mức hỗ trợ {rng.randint(2, 9)} triệu đồng mỗi hộ.",
        ),
        Block(
            "para",
            f"Biên bản kết thúc vào lúc {rng.randint(9, 18)} giờ cùng ngày, đã đọc lại cho mọi "
            "người cùng nghe và nhất trí ký tên dưới đây.",
        ),
        Block("heading", "THƯ KÝ                    CHỦ TRÌ"),
        Block("heading", f"{clerk}          {chair}"),
    ]


def _so_dang_ky(rng: random.Random) -> list[Block]:
    commune = rng.choice(_COMMUNES)
    year = rng.randint(1976, 2010)
    rows: list[tuple[str, ...]] = [("Số", "Họ và tên", "Ngày sinh", "Nơi sinh", "Ghi chú")]
    for n in range(1, 11):
        d, m, y = _date(rng, year)
        rows.append(
            (
                str(rng.randint(1, 300) + n * 3),
                _person(rng),
                f"{d:02d}/{m:02d}/{y}",
                rng.choice(_HAMLETS).capitalize(),
                rng.choice(("", "", "Con thứ hai", "Đăng ký lại", "Mẹ tự khai")),
            )
        )
    return [
        Block("title", "SỔ ĐĂNG KÝ KHAI SINH"),
        Block("heading", f"Xã {commune} - Năm {year}"),
        Block("table", rows=tuple(rows)),
        Block("line", f"Sổ này có {rng.randint(40, 200)} trang, đánh số từ 01 đến hết."),
    ]


def _danh_muc(rng: random.Random) -> list[Block]:
    commune = rng.choice(_COMMUNES)
    year = rng.randint(1995, 2024)
    rows: list[tuple[str, ...]] = [("TT", "Số, ký hiệu", "Ngày", "Trích yếu nội dung", "Tờ")]
    kinds = ("QĐ-UBND", "BC-UBND", "TTr-UBND", "KH-UBND", "TB-UBND", "UBND-VP")
    for n in range(1, 11):
        d, m, _ = _date(rng, year)
        rows.append(
            (
                str(n),
                f"{rng.randint(3, 450)}/{rng.choice(kinds)}",
                f"{d:02d}/{m:02d}",
                rng.choice(_SUBJECTS),
                str(rng.randint(1, 24)),
            )
        )
    return [
        Block("title", "DANH MỤC VĂN BẢN TRONG HỒ SƠ"),
        Block("heading", f"Hồ sơ số {rng.randint(1, 99):02d} - Ủy ban nhân dân xã {commune}"),
        Block("table", rows=tuple(rows)),
        Block("line", f"Người lập: {_person(rng)}"),
    ]


_MAKERS = {
    "quyet_dinh": _quyet_dinh,
    "cong_van": _cong_van,
    "bien_ban": _bien_ban,
    "so_dang_ky": _so_dang_ky,
    "danh_muc": _danh_muc,
}


def record(kind: str, seed: int) -> list[Block]:
    """The blocks of one record of `kind` (one of KINDS), the same for the same seed."""
    blocks = _MAKERS[kind](random.Random(f"{kind}:{seed}"))
    return [
        Block(b.style, _nfc(b.text), tuple(tuple(_nfc(c) for c in row) for row in b.rows))
        for b in blocks
    ]
