"""Render the sample pages `make demo` imports (embedded/samples/*.png), once.

Five pages of a commune's records in three hồ sơ, each in another font (Liberation Serif is
metric-compatible with Times New Roman, the font NĐ 30/2020 prescribes; Noto Serif, DejaVu
Serif, Liberation Sans): a decision and a plan, a birth registration form and its extract, a
meeting record. A4 at 300 dpi, slightly crooked, on tinted paper, red seals where the real
documents carry them; saved as palette PNG (32 colours) so the five stay near 1 MB.

The people, numbers and dates are invented. Run again only to change the samples:
``.venv/bin/python scripts/make_samples.py`` (needs fonts-liberation2, fonts-noto-core,
fonts-dejavu-core), then commit the PNG files. embedded/samples/README.md lists the pages and
the hồ sơ the demo files them under (scripts/demo.py's CATALOGUE).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent.parent / "embedded" / "samples"
FONTS = Path("/usr/share/fonts/truetype")
DPI = 300
A4 = (round(210 / 25.4 * DPI), round(297 / 25.4 * DPI))
INK = (30, 30, 38)
SEAL = (200, 40, 48)

FAMILIES = {
    "liberation-serif": ("liberation2/LiberationSerif-Regular.ttf",
                         "liberation2/LiberationSerif-Bold.ttf",
                         "liberation2/LiberationSerif-Italic.ttf"),
    "noto-serif": ("noto/NotoSerif-Regular.ttf", "noto/NotoSerif-Bold.ttf",
                   "noto/NotoSerif-Italic.ttf"),
    "dejavu-serif": ("dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSerif-Bold.ttf",
                     "dejavu/DejaVuSerif-Italic.ttf"),
    "liberation-sans": ("liberation2/LiberationSans-Regular.ttf",
                        "liberation2/LiberationSans-Bold.ttf",
                        "liberation2/LiberationSans-Italic.ttf"),
}  # fmt: skip

COMMUNE = ("ỦY BAN NHÂN DÂN", "XÃ TÂN PHÚ")
NATION = ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc")


@dataclass
class Doc:
    name: str
    family: str
    left: tuple[str, ...]  # header, left column (issuer), centred in its half
    right: tuple[str, ...]  # header, right column (national motto, place and date)
    title: tuple[str, ...]
    body: tuple[str, ...]  # paragraphs; "**" prefix = bold heading
    signature: tuple[tuple[str, ...], ...]  # one or two columns of lines, bold
    seal: bool = False
    skew_deg: float = 0.0
    paper: tuple[int, int, int] = (244, 241, 232)
    size_pt: float = 13.0
    notes: list[str] = field(default_factory=list)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


DOCS = (
    Doc(
        "quyet-dinh-125.png", "noto-serif",
        (*COMMUNE, "Số: 125/QĐ-UBND"),
        (*NATION, "Tân Phú, ngày 14 tháng 3 năm 2024"),
        ("QUYẾT ĐỊNH", "Về việc phê duyệt kế hoạch chỉnh lý tài liệu lưu trữ năm 2024",
         "CHỦ TỊCH ỦY BAN NHÂN DÂN XÃ TÂN PHÚ"),
        ("Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;",
         "Căn cứ Luật Lưu trữ ngày 11 tháng 11 năm 2011;",
         "Căn cứ Nghị định số 30/2020/NĐ-CP ngày 05 tháng 3 năm 2020 của Chính phủ về công tác "
         "văn thư;",
         "Xét đề nghị của công chức Văn phòng - Thống kê xã,",
         "**QUYẾT ĐỊNH:",
         "Điều 1. Phê duyệt kế hoạch chỉnh lý tài liệu lưu trữ của Ủy ban nhân dân xã năm 2024: "
         "thu thập, phân loại và lập hồ sơ đối với tài liệu hình thành từ năm 2010 đến năm 2020; "
         "số hóa toàn bộ sổ hộ tịch, sổ địa chính và hồ sơ đất đai của các thôn.",
         "Điều 2. Giao công chức Văn phòng - Thống kê chủ trì, phối hợp với công chức Địa chính "
         "- Xây dựng tổ chức thực hiện; kinh phí do ngân sách xã bảo đảm.",
         "Điều 3. Quyết định này có hiệu lực kể từ ngày ký. Văn phòng Ủy ban nhân dân xã và "
         "trưởng các thôn chịu trách nhiệm thi hành Quyết định này./."),
        (("TM. ỦY BAN NHÂN DÂN", "CHỦ TỊCH", "", "", "Nguyễn Văn Hùng"),),
        seal=True, skew_deg=0.8,
    ),
    Doc(
        "ke-hoach-18.png", "liberation-serif",
        (*COMMUNE, "Số: 18/KH-UBND"),
        (*NATION, "Tân Phú, ngày 20 tháng 3 năm 2024"),
        ("KẾ HOẠCH", "Chỉnh lý và số hóa tài liệu lưu trữ năm 2024"),
        ("Thực hiện Quyết định số 125/QĐ-UBND ngày 14 tháng 3 năm 2024 của Ủy ban nhân dân xã, "
         "Ủy ban nhân dân xã Tân Phú xây dựng kế hoạch thực hiện như sau:",
         "**I. MỤC ĐÍCH, YÊU CẦU",
         "1. Sắp xếp, phân loại khoa học toàn bộ tài liệu tồn đọng tại kho lưu trữ của xã, bảo "
         "đảm an toàn và thuận tiện cho việc tra cứu, khai thác.",
         "2. Số hóa sổ hộ tịch, sổ địa chính và hồ sơ đất đai để phục vụ người dân.",
         "**II. NỘI DUNG THỰC HIỆN",
         "1. Thời gian: từ tháng 4 đến tháng 10 năm 2024.",
         "2. Khối lượng: khoảng 25 mét giá tài liệu, trong đó có 120 quyển sổ hộ tịch.",
         "3. Kinh phí: từ nguồn ngân sách xã năm 2024.",
         "**III. TỔ CHỨC THỰC HIỆN",
         "Công chức Văn phòng - Thống kê chủ trì, phối hợp với công chức Tư pháp - Hộ tịch và "
         "công chức Địa chính - Xây dựng tổ chức thực hiện kế hoạch này./."),
        (("TM. ỦY BAN NHÂN DÂN", "KT. CHỦ TỊCH", "PHÓ CHỦ TỊCH", "", "", "Trần Thị Mai"),),
        seal=True, skew_deg=-0.6, paper=(247, 246, 242),
    ),
    Doc(
        "to-khai-khai-sinh.png", "dejavu-serif",
        (),
        NATION,
        ("TỜ KHAI ĐĂNG KÝ KHAI SINH", "Kính gửi: Ủy ban nhân dân xã Tân Phú"),
        ("Họ, chữ đệm, tên người yêu cầu: Lê Văn Bình",
         "Nơi cư trú: thôn Đông Hòa, xã Tân Phú",
         "Giấy tờ tùy thân: Căn cước công dân số 001089012345",
         "Quan hệ với người được khai sinh: cha",
         "Đề nghị cơ quan đăng ký khai sinh cho người dưới đây:",
         "Họ, chữ đệm, tên: Lê Minh Khoa",
         "Ngày, tháng, năm sinh: 02/11/2023",
         "Giới tính: Nam. Dân tộc: Kinh. Quốc tịch: Việt Nam",
         "Nơi sinh: Trạm y tế xã Tân Phú",
         "Họ, chữ đệm, tên người mẹ: Phạm Thị Hoa",
         "Họ, chữ đệm, tên người cha: Lê Văn Bình",
         "Tôi cam đoan nội dung đề nghị đăng ký khai sinh trên đây là đúng sự thật và chịu "
         "trách nhiệm trước pháp luật về cam đoan của mình."),
        (("Làm tại xã Tân Phú, ngày 10 tháng 11 năm 2023", "Người yêu cầu", "", "",
          "Lê Văn Bình"),),
        skew_deg=1.1, paper=(240, 236, 222), size_pt=12.0,
    ),
    Doc(
        "trich-luc-khai-sinh-215.png", "liberation-serif",
        (*COMMUNE, "Số: 215/TLKS-BS"),
        (*NATION, "Tân Phú, ngày 10 tháng 11 năm 2023"),
        ("TRÍCH LỤC KHAI SINH",),
        ("Họ, chữ đệm, tên: LÊ MINH KHOA",
         "Ngày, tháng, năm sinh: 02/11/2023, ghi bằng chữ: ngày hai tháng mười một năm hai "
         "nghìn không trăm hai mươi ba",
         "Giới tính: Nam. Dân tộc: Kinh. Quốc tịch: Việt Nam",
         "Nơi sinh: Trạm y tế xã Tân Phú",
         "Quê quán: xã Tân Phú",
         "Họ, chữ đệm, tên người mẹ: PHẠM THỊ HOA",
         "Họ, chữ đệm, tên người cha: LÊ VĂN BÌNH",
         "Nơi đăng ký khai sinh: Ủy ban nhân dân xã Tân Phú",
         "Ngày, tháng, năm đăng ký: 10/11/2023"),
        (("NGƯỜI KÝ TRÍCH LỤC", "Công chức Tư pháp - Hộ tịch", "", "", "Đỗ Văn Nam"),),
        seal=True, skew_deg=0.4, paper=(246, 244, 236),
    ),
    Doc(
        "bien-ban-hop-dat-dai.png", "liberation-sans",
        COMMUNE,
        (*NATION, "Tân Phú, ngày 28 tháng 3 năm 2024"),
        ("BIÊN BẢN", "Họp về công tác quản lý đất đai, khoáng sản quý I năm 2024"),
        ("Thời gian: 8 giờ 00 ngày 28 tháng 3 năm 2024.",
         "Địa điểm: Hội trường Ủy ban nhân dân xã Tân Phú.",
         "Chủ trì: ông Nguyễn Văn Hùng, Chủ tịch Ủy ban nhân dân xã.",
         "Thư ký: bà Trần Thị Mai, công chức Văn phòng - Thống kê.",
         "**NỘI DUNG CUỘC HỌP",
         "1. Công chức Địa chính - Xây dựng báo cáo tình hình quản lý đất đai, khoáng sản trên "
         "địa bàn xã: trong quý I đã phát hiện 02 trường hợp khai thác cát trái phép tại bãi "
         "sông thôn Tây Hòa.",
         "2. Ý kiến của các thành viên: đề nghị tăng cường kiểm tra, phối hợp với công an xã xử "
         "lý nghiêm các vi phạm.",
         "3. Kết luận của chủ trì: giao công chức Địa chính - Xây dựng lập hồ sơ xử lý vi phạm, "
         "báo cáo kết quả trước ngày 15 tháng 4 năm 2024.",
         "Cuộc họp kết thúc lúc 10 giờ 30 cùng ngày./."),
        (("THƯ KÝ", "", "", "Trần Thị Mai"), ("CHỦ TRÌ", "", "", "Nguyễn Văn Hùng")),
        skew_deg=-1.0, paper=(243, 243, 238), size_pt=12.0,
    ),
)  # fmt: skip


def font(family: str, style: int, pt: float) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / FAMILIES[family][style]), round(pt * DPI / 72))


def wrap(text: str, f: ImageFont.FreeTypeFont, width: float) -> list[str]:
    lines, current = [], ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and f.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current]


def seal(draw: ImageDraw.ImageDraw, cx: float, cy: float, family: str) -> None:
    r = 19 * DPI / 25.4
    ring = round(0.9 * DPI / 25.4)
    for radius in (r, r * 0.72):
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=SEAL, width=ring)
    star = [
        (cx + (0.25 * r if k % 2 == 0 else 0.1 * r) * math.sin(k * math.pi / 5),
         cy - (0.25 * r if k % 2 == 0 else 0.1 * r) * math.cos(k * math.pi / 5))
        for k in range(10)
    ]  # fmt: skip
    draw.polygon(star, fill=SEAL)
    f = ImageFont.truetype(str(FONTS / FAMILIES[family][1]), round(0.12 * r))
    for i, ch in enumerate("ỦY BAN NHÂN DÂN XÃ TÂN PHÚ"):
        a = math.radians(-115 + i * 9.2)
        draw.text((cx + 0.86 * r * math.sin(a), cy - 0.86 * r * math.cos(a)), ch, font=f,
                  fill=SEAL, anchor="mm")  # fmt: skip


def render(doc: Doc) -> Image.Image:
    page = Image.new("RGB", A4, doc.paper)
    draw = ImageDraw.Draw(page)
    mm = DPI / 25.4
    left, right, top = 30 * mm, A4[0] - 15 * mm, 20 * mm  # NĐ 30/2020 margins
    width = right - left
    regular, bold, italic = (font(doc.family, s, doc.size_pt) for s in (0, 1, 2))
    pitch = round(doc.size_pt * DPI / 72 * 1.45)

    def centred(text: str, f: ImageFont.FreeTypeFont, x0: float, x1: float, y: float) -> None:
        draw.text(((x0 + x1 - f.getlength(text)) / 2, y), nfc(text), font=f, fill=INK)

    # Header: issuer on the left (bold second line), motto on the right, place/date italic.
    half = left + width * 0.42
    for i, text in enumerate(doc.left):
        centred(text, bold if i == 1 or not doc.right else regular, left, half, top + i * pitch)
    x0 = half if doc.left else left
    for i, text in enumerate(doc.right):
        f = bold if i < 2 else italic
        centred(text, f, x0, right, top + i * pitch + (pitch // 2 if i == 2 else 0))
    y = top + max(len(doc.left), len(doc.right)) * pitch + 2 * pitch
    for text in doc.title:
        centred(text, bold, left, right, y)
        y += pitch
    y += pitch // 2
    for para in doc.body:
        f = bold if para.startswith("**") else regular
        text = nfc(para.removeprefix("**"))
        for j, line in enumerate(wrap(text, f, width - 12 * mm)):  # first line indented
            draw.text((left + (12 * mm if j == 0 else 0), y), line, font=f, fill=INK)
            y += pitch
    y += pitch
    columns = len(doc.signature)
    for c, block in enumerate(doc.signature):
        x0 = left + width * (0.5 if columns == 1 else c * 0.5)
        x1 = x0 + width * 0.5
        for i, text in enumerate(block):
            centred(text, italic if "ngày" in text else bold, x0, x1, y + i * pitch)
    if doc.seal:
        seal(draw, left + width * 0.62, y + 2.2 * pitch, doc.family)
    if doc.skew_deg:
        page = page.rotate(doc.skew_deg, Image.Resampling.BICUBIC, fillcolor=(205, 205, 205))
    return page


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for doc in DOCS:
        image = render(doc).quantize(32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        image.save(OUT / doc.name, dpi=(DPI, DPI), optimize=True)
        print(f"{doc.name}: {(OUT / doc.name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
