# ruff: noqa: E501 (the pages are HTML, a paragraph a line)
"""Pages in layouts no corpus here has: `python -m bench layouts [--work DIR]` (issue #15).

tests/records stacks a record's header lines one under the other, and bench foreign centres
them; neither has the layout NĐ 30/2020 (Phụ lục I) prescribes for every administrative
document — the issuing body and the number on the left, the national motto and the place and
date on the right, on the same lines; "Nơi nhận" on the left and the signer on the right at
the foot — nor a citizen's form with dotted leaders ("Họ và tên: ........"), nor a bulletin in
two columns. These pages are printed by Chromium (bench/foreign.py's `_print_pdf`, its
`_rasterise` for the image and the truth: the text pdfium reads back, in the document's order)
in fonts no corpus uses (URW's Nimbus Roman, C059, Nimbus Sans Narrow; DejaVu Serif;
Liberation Sans at 11 pt), one at 200 dpi in grey. Each is read by the pipeline and by plain
`tesseract -l vie`; CER is given on the whole truth and with the leader dots left out of both
sides (a form's dots are not its text, and the pipeline may drop them).

The truth reads a two-column header column by column (the left column's lines, then the
right's), as the document is written; tesseract reads it row by row. Neither order is wrong
for a reader, but it costs the header pages ~6 % CER on both sides, so read their CER with
that in mind.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench import foreign

HEADER = """<div class=hd><div class=l><b>ỦY BAN NHÂN DÂN<br>XÃ TÂN LẬP</b><br><span class=u>&nbsp;</span><br>Số: 125/QĐ-UBND</div>
<div class=r><b>CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM</b><br><b>Độc lập - Tự do - Hạnh phúc</b><br><span class=u>&nbsp;</span><br><i>Tân Lập, ngày 12 tháng 3 năm 2019</i></div></div>"""
BODY = """<h2>QUYẾT ĐỊNH</h2><p class=c><b>Về việc công nhận kết quả bầu cử trưởng thôn Nà Hẩu nhiệm kỳ 2019 - 2021</b></p>
<p class=c><b>CHỦ TỊCH ỦY BAN NHÂN DÂN XÃ TÂN LẬP</b></p>
<p><i>Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;</i></p>
<p><i>Căn cứ Thông tư số 04/2012/TT-BNV ngày 31 tháng 8 năm 2012 của Bộ Nội vụ hướng dẫn về tổ chức và hoạt động của thôn, tổ dân phố;</i></p>
<p><i>Xét đề nghị của Trưởng ban công tác Mặt trận thôn Nà Hẩu tại Tờ trình số 07/TTr-BCT ngày 08 tháng 3 năm 2019,</i></p>
<h2>QUYẾT ĐỊNH:</h2>
<p><b>Điều 1.</b> Công nhận ông Lường Văn Thưởng, sinh năm 1978, trú tại thôn Nà Hẩu, đã trúng cử chức danh Trưởng thôn Nà Hẩu nhiệm kỳ 2019 - 2021 với số phiếu bầu đạt 86,4% tổng số cử tri đại diện hộ gia đình của thôn.</p>
<p><b>Điều 2.</b> Trưởng thôn có trách nhiệm thực hiện đúng chức năng, nhiệm vụ, quyền hạn theo quy định của pháp luật; được hưởng phụ cấp hằng tháng theo quy định của Ủy ban nhân dân tỉnh.</p>
<p><b>Điều 3.</b> Quyết định này có hiệu lực kể từ ngày ký. Văn phòng Ủy ban nhân dân xã, Trưởng ban công tác Mặt trận thôn Nà Hẩu và ông Lường Văn Thưởng chịu trách nhiệm thi hành Quyết định này./.</p>"""
FOOTER = """<div class=ft><div class=l><b><i>Nơi nhận:</i></b><br>- Như Điều 3;<br>- TT Đảng ủy, HĐND xã;<br>- Lưu: VT, VP.</div>
<div class=r><b>CHỦ TỊCH</b><br><br><br><br><b>Hoàng Thị Duyên</b></div></div>"""
FORM = """<h2>PHIẾU ĐĂNG KÝ HỘ KINH DOANH</h2>
<p class=f>Họ và tên chủ hộ: Nguyễn Thị Hường ........................................................</p>
<p class=f>Ngày sinh: 04/11/1969 ........ Dân tộc: Tày ........ Quốc tịch: Việt Nam ...........</p>
<p class=f>Số định danh cá nhân: 008169004512 ........................................................</p>
<p class=f>Nơi thường trú: thôn Khuổi Xỏm, xã Đồng Phúc, tỉnh Thái Nguyên .............................</p>
<p class=f>Ngành, nghề kinh doanh: bán lẻ hàng tạp hóa, nước giải khát ...................................</p>
<p class=f>Vốn kinh doanh: 45.000.000 đồng (Bằng chữ: Bốn mươi lăm triệu đồng) ..........................</p>
<p class=f>Số lao động: 02 người ........ Địa điểm kinh doanh: chợ trung tâm xã, ki-ốt số 14 ...........</p>
<p class=f>Tôi xin cam đoan nội dung kê khai trên là đúng sự thật và chịu trách nhiệm trước pháp luật về những nội dung đã kê khai.</p>"""
COLS = """<h2>BẢN TIN NÔNG THÔN MỚI XÃ PHÚ THƯỢNG</h2><div class=cols>
<p>Trong quý I năm 2020, xã Phú Thượng đã hoàn thành bê tông hóa 3,2 km đường trục thôn, nâng tổng chiều dài đường giao thông nông thôn được cứng hóa lên 41,7 km. Nhân dân đã hiến hơn 2.100 mét vuông đất và đóng góp trên 380 ngày công lao động.</p>
<p>Phong trào xây dựng khu dân cư kiểu mẫu tiếp tục được các thôn hưởng ứng. Thôn Bản Chang và thôn Nà Đon đã trồng mới 1.200 cây xanh dọc các tuyến đường, lắp đặt 46 bóng đèn chiếu sáng bằng năng lượng mặt trời.</p>
<p>Về phát triển sản xuất, hợp tác xã Quyết Tiến đã liên kết với doanh nghiệp bao tiêu sản phẩm chè xanh cho 112 hộ gia đình, giá thu mua ổn định ở mức 85.000 đồng mỗi ki-lô-gam chè khô loại một.</p>
<p>Công tác vệ sinh môi trường có chuyển biến rõ nét: 100% thôn đã thành lập tổ thu gom rác thải, mỗi tuần thu gom hai lần; các hộ chăn nuôi được hướng dẫn làm hầm biogas và đệm lót sinh học.</p>
<p>Trong thời gian tới, Ban chỉ đạo xã tập trung hoàn thiện các tiêu chí còn thiếu về trường học, cơ sở vật chất văn hóa và thu nhập bình quân đầu người, phấn đấu đạt chuẩn nông thôn mới nâng cao vào cuối năm 2021.</p></div>"""
STYLE = """@page { size: A4; margin: 20mm 20mm 20mm 30mm; }
body { font-family: '%s'; font-size: %spt; line-height: 1.3; }
.hd, .ft { display: flex; justify-content: space-between; } .hd .l, .hd .r, .ft .r { text-align: center; }
.u { display: inline-block; border-top: 1px solid black; width: 4cm; height: 2px; }
h2 { font-size: 1.15em; text-align: center; margin: 0.7em 0 0.2em; }
p { text-align: justify; text-indent: 1.2em; margin: 0.3em 0; } p.c { text-align: center; text-indent: 0; margin: 0.1em; }
p.f { text-indent: 0; margin: 0.55em 0; } .cols { column-count: 2; column-gap: 1.2cm; }"""


@dataclass(frozen=True)
class LayoutPage:
    body: str
    font: str
    size_pt: float
    dpi: int = 300
    grey: bool = False


PAGES = {
    "qd_nimbus_roman_13": LayoutPage(HEADER + BODY + FOOTER, "Nimbus Roman", 13),
    "qd_c059_12_200grey": LayoutPage(HEADER + BODY + FOOTER, "C059", 12, 200, True),
    "qd_liberation_sans_11": LayoutPage(HEADER + BODY + FOOTER, "Liberation Sans", 11),
    "form_dejavu_serif_12": LayoutPage(FORM, "DejaVu Serif", 12),
    "cols_nimbus_narrow_11": LayoutPage(COLS, "Nimbus Sans Narrow", 11),
}


def render(name: str, path: Path) -> str:
    """Write page `name` as a PNG at `path`; return its truth text."""
    page = PAGES[name]
    document = (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8">'
        f"<style>{STYLE % (page.font, page.size_pt)}</style></head>"
        f"<body>{page.body}</body></html>"
    )
    pdf = path.with_suffix(".pdf")
    foreign._print_pdf(document, pdf)
    image, truth = foreign._rasterise(pdf, page.dpi)
    if page.grey:
        image = np.asarray(Image.fromarray(image).convert("L"))
    Image.fromarray(image).save(path, dpi=(page.dpi, page.dpi))
    return truth


def without_leaders(text: str) -> str:
    """`text` without dotted leaders: tokens made only of dots, and lines left empty."""
    lines = (" ".join(t for t in line.split() if set(t) - set(".…")) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def main(argv: list[str]) -> int:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from corpus import cer

    from agent.pipeline.process import PipelineSettings, process_page

    ap = argparse.ArgumentParser(prog="python -m bench layouts", description=__doc__)
    ap.add_argument("--work", type=Path, help="keep the pages and the pipeline's outputs here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sohoa-layouts-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print("| page | CER sohoa | CER tesseract | without leader dots: sohoa | tesseract"
              " | review | read as one block | blocks moved | NĐ 30 lines split |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for name, page in PAGES.items():
            png = work / f"{name}.png"
            truth = render(name, png)
            result = process_page(png, work / name, PipelineSettings(dpi=page.dpi))
            ours = result.text.read_text(encoding="utf-8")
            plain = subprocess.run(
                ["tesseract", str(png), "-", "-l", "vie", "--dpi", str(page.dpi)],
                capture_output=True, text=True, check=True,
                env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"},
            ).stdout  # fmt: skip
            plain = unicodedata.normalize("NFC", plain)
            quality = result.decisions["quality"]
            block = result.decisions.get("ocr_single_block") or {}
            moved = result.decisions.get("reading_order") or {}
            assert isinstance(quality, dict)
            assert isinstance(block, dict)
            assert isinstance(moved, dict)
            print(
                f"| {name} | {cer(truth, ours):.2%} | {cer(truth, plain):.2%}"
                f" | {cer(without_leaders(truth), without_leaders(ours)):.2%}"
                f" | {cer(without_leaders(truth), without_leaders(plain)):.2%}"
                f" | {'yes' if quality['review'] else 'no'} ({quality['score']})"
                f" | {'kept' if block.get('kept') else 'read, not kept' if block else '—'}"
                f" | {moved.get('blocks_moved', 0)} | {moved.get('nd30_lines_split', 0)} |",
                flush=True,
            )
    return 0
