"""Pages this project did not make: `python -m bench cer --corpus foreign` (issue #15).

Every other corpus here comes from tests/records or tests/corpus: our texts, our layouts, our
renderer (Pillow), our fonts and our defect models. This one shares none of them:

- text: written for this module, not from tests/records/texts.py's templates (a notice with a
  schedule table, minutes of a hamlet meeting, a citizen's letter, scanning instructions, a
  budget report, a field list after NĐ 30/2020 Phụ lục VI), NFC;
- rendering: Chromium (`chromium --headless --print-to-pdf` of an HTML page: its own shaping,
  hinting, justification and table layout), then rasterised with pdfium (pypdfium2) at the
  class's dpi; fonts our corpora do not use (Noto Sans, Noto Serif Display, DejaVu Sans
  Condensed) or do not render this way (Noto Serif), 10-13 pt, bold headings, justified text,
  a bordered table;
- the truth: the text pdfium reads back from the PDF Chromium wrote, line by line (table rows
  are single lines: cells do not wrap);
- defects: augraphy (https://github.com/sparkfish/augraphy), one class per effect or a small
  named combination, its parameters fixed in CLASSES below and seeded per page.

augraphy is a benchmark-only dependency, installed without its own dependency on
opencv-python (the GUI build): that wheel and our opencv-python-headless both own the `cv2`
package, and installing it replaces our cv2 in place (pyproject.toml's `bench` extra and
scripts/bootstrap.sh say how it is installed).
"""

from __future__ import annotations

import hashlib
import html
import random
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = "chromium"

# ---------------------------------------------------------------------------------------------
# Text. Blocks: ("h", heading, bold and centred), ("c", centred line), ("p", justified
# paragraph), ("r", right-aligned line), ("t", table rows, the first one the header).

Block = tuple[str, object]

DOCUMENTS: dict[str, list[Block]] = {
    "thong_bao_tiem_phong": [
        ("c", "ỦY BAN NHÂN DÂN XÃ PHÚ MỸ"),
        ("h", "THÔNG BÁO"),
        ("c", "Về lịch tiêm phòng vắc-xin cho gia súc, gia cầm đợt hai"),
        (
            "p",
            "Thực hiện kế hoạch phòng chống dịch bệnh trên đàn vật nuôi của huyện, Ủy ban nhân "
            "dân xã thông báo tới các hộ chăn nuôi trên địa bàn lịch tiêm phòng như sau. Các hộ "
            "có trâu, bò, lợn, chó, mèo và gia cầm chưa được tiêm trong đợt một phải đưa vật "
            "nuôi đến đúng điểm tiêm, đúng ngày của thôn mình; hộ nào vắng mặt báo trước cho "
            "trưởng thôn để được bố trí tiêm bổ sung.",
        ),
        (
            "t",
            [
                ["STT", "Thôn", "Ngày tiêm", "Địa điểm"],
                ["1", "Thôn Gò Mít", "14/3", "Nhà văn hóa thôn"],
                ["2", "Thôn Bến Đò", "15/3", "Sân kho hợp tác xã cũ"],
                ["3", "Thôn Cây Sung", "16/3", "Nhà ông Lường Văn Khiêm"],
                ["4", "Thôn Đồng Chằm", "17/3", "Trạm thú y xã"],
            ],
        ),
        (
            "p",
            "Vắc-xin do ngân sách nhà nước hỗ trợ, người chăn nuôi không phải trả tiền. Cán bộ "
            "thú y sẽ ghi sổ theo dõi và cấp giấy chứng nhận tiêm phòng cho từng hộ. Đề nghị "
            "các trưởng thôn thông báo rộng rãi trên loa truyền thanh vào sáng và chiều các "
            "ngày trước khi tiêm.",
        ),
        ("r", "TM. ỦY BAN NHÂN DÂN"),
        ("r", "KT. CHỦ TỊCH"),
    ],
    "bien_ban_hop_thon": [
        ("h", "BIÊN BẢN HỌP THÔN"),
        ("c", "Bàn việc làm đường bê tông liên xóm năm 2026"),
        (
            "p",
            "Hôm nay, vào hồi mười chín giờ ba mươi phút, tại hội trường thôn Khe Sanh, thôn tổ "
            "chức cuộc họp toàn thể các hộ gia đình để bàn về việc làm tuyến đường bê tông từ "
            "ngã ba chợ cũ vào xóm Rẫy. Có mặt bảy mươi tám trên tổng số chín mươi hai hộ; vắng "
            "mười bốn hộ, trong đó có sáu hộ đi làm ăn xa.",
        ),
        ("h", "Nội dung cuộc họp"),
        (
            "p",
            "Ông trưởng thôn trình bày dự kiến: tuyến đường dài khoảng một nghìn hai trăm mét, "
            "rộng ba mét rưỡi, nhà nước hỗ trợ xi măng, nhân dân góp cát, sỏi và ngày công. Mỗi "
            "khẩu đóng góp tương đương hai ngày công lao động; hộ khó khăn, gia đình chính sách "
            "được miễn giảm theo mức do hội nghị quyết định.",
        ),
        (
            "p",
            "Các ý kiến phát biểu: bà Hà Thị Nguyệt đề nghị làm rãnh thoát nước hai bên để mùa "
            "mưa không ngập; ông Lò Văn Páo đề nghị hiến thêm đất ở đoạn cua gần suối cho xe "
            "tải quay đầu; anh Quàng Đức Toàn đề nghị công khai sổ thu chi hằng tháng tại nhà "
            "văn hóa. Hội nghị biểu quyết nhất trí với tỷ lệ chín mươi sáu phần trăm.",
        ),
        (
            "p",
            "Cuộc họp kết thúc vào hồi hai mươi mốt giờ cùng ngày. Biên bản được đọc lại cho "
            "mọi người cùng nghe và không ai có ý kiến khác.",
        ),
        ("r", "Thư ký                    Chủ trì"),
    ],
    "don_de_nghi": [
        ("c", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"),
        ("c", "Độc lập - Tự do - Hạnh phúc"),
        ("h", "ĐƠN ĐỀ NGHỊ"),
        ("c", "Xác nhận hoàn cảnh gia đình để con được miễn học phí"),
        ("p", "Kính gửi: Ủy ban nhân dân xã Thạch Khê."),
        (
            "p",
            "Tôi tên là Triệu Thị Mẩy, sinh năm 1984, thường trú tại xóm Nà Pục. Chồng tôi mất "
            "năm 2022 vì tai nạn lao động, một mình tôi nuôi hai con nhỏ và mẹ chồng đã già yếu. "
            "Gia đình chỉ có nửa mẫu ruộng bậc thang và một đàn dê mười hai con, thu nhập bình "
            "quân không đủ chi tiêu, thường phải vay mượn hàng xóm vào những tháng giáp hạt.",
        ),
        (
            "p",
            "Con gái lớn của tôi là Nông Thị Diệu Linh đang học lớp mười một tại trường trung "
            "học phổ thông của huyện. Để cháu được xét miễn học phí và hỗ trợ tiền ăn, ở bán "
            "trú theo chính sách hiện hành, tôi làm đơn này kính đề nghị Ủy ban nhân dân xã "
            "xem xét, xác nhận hoàn cảnh gia đình tôi như đã trình bày.",
        ),
        (
            "p",
            "Tôi xin cam đoan những lời khai trên là đúng sự thật, nếu sai tôi xin hoàn toàn "
            "chịu trách nhiệm trước pháp luật. Tôi xin chân thành cảm ơn.",
        ),
        ("r", "Người làm đơn"),
        ("r", "Triệu Thị Mẩy"),
    ],
    "huong_dan_quet": [
        ("h", "HƯỚNG DẪN SỐ HÓA SỔ SÁCH TẠI BỘ PHẬN MỘT CỬA"),
        (
            "p",
            "Tài liệu này dành cho công chức văn phòng - thống kê khi được giao quét các sổ, "
            "tập hồ sơ cũ của xã. Trước khi quét, cần tháo ghim, vuốt phẳng các trang bị gấp "
            "mép và xếp tờ theo đúng thứ tự. Những tờ bị rách phải được dán lại bằng băng "
            "giấy chuyên dụng, không dùng băng dính trong.",
        ),
        ("h", "Các bước thực hiện"),
        (
            "p",
            "Bước một: đặt tờ bìa có mã hồ sơ lên đầu tập giấy để máy nhận biết hồ sơ mới. Bước "
            "hai: chọn độ phân giải ba trăm điểm ảnh trên mỗi inch và chế độ màu xám cho văn "
            "bản thường; với trang có dấu đỏ hoặc chữ ký màu thì chọn chế độ màu. Bước ba: bấm "
            "nút quét và chờ đèn xanh. Nếu màn hình báo giấy kẹt, mở nắp máy, rút tờ giấy ra "
            "nhẹ nhàng và quét lại từ tờ đó.",
        ),
        (
            "p",
            "Sau mỗi buổi, kiểm tra danh sách trang bị đánh dấu cần xem lại: chữ mờ, trang "
            "nghiêng quá mức, trang trắng hay trang bị cắt mép. Chỉ quét lại những trang này, "
            "không cần quét lại cả tập. Các bản quét được lưu tạm trên máy và tự động gửi về "
            "kho lưu trữ của huyện khi có mạng.",
        ),
        (
            "p",
            "Lưu ý: không để sổ sách gần cửa sổ, nơi có ánh nắng chiếu trực tiếp hoặc mưa hắt; "
            "sau khi quét xong phải trả tài liệu về kho và ghi vào sổ theo dõi mượn trả.",
        ),
    ],
    "bao_cao_thu_chi": [
        ("c", "HỘI ĐỒNG NHÂN DÂN XÃ ĐĂK RƠ WA"),
        ("h", "BÁO CÁO"),
        ("c", "Tình hình thu, chi ngân sách sáu tháng đầu năm"),
        (
            "p",
            "Sáu tháng đầu năm, tổng thu ngân sách trên địa bàn đạt năm mươi tám phần trăm dự "
            "toán được giao, tăng so với cùng kỳ năm trước chủ yếu nhờ khoản thu tiền sử dụng "
            "đất của hai dự án khu dân cư. Chi thường xuyên bảo đảm lương, phụ cấp và hoạt động "
            "của các đoàn thể; chi đầu tư tập trung cho trường mầm non và kênh mương nội đồng.",
        ),
        (
            "t",
            [
                ["Khoản mục", "Dự toán", "Thực hiện", "Tỷ lệ"],
                ["Thu thuế, phí, lệ phí", "1.240.000.000", "731.500.000", "59,0%"],
                ["Thu tiền sử dụng đất", "3.500.000.000", "2.065.000.000", "59,0%"],
                ["Thu bổ sung từ cấp trên", "6.870.000.000", "3.712.400.000", "54,0%"],
                ["Chi thường xuyên", "7.915.000.000", "3.880.250.000", "49,0%"],
                ["Chi đầu tư phát triển", "2.600.000.000", "1.118.000.000", "43,0%"],
            ],
        ),
        (
            "p",
            "Tồn tại: một số khoản thu phí chợ còn thấp do tiểu thương nghỉ bán kéo dài sau mùa "
            "mưa lũ; tiến độ giải ngân vốn đầu tư chậm vì vướng mặt bằng ở hai hộ. Sáu tháng "
            "cuối năm cần đôn đốc thu nợ đọng và hoàn tất thủ tục bồi thường.",
        ),
    ],
    "truong_thong_tin": [
        ("h", "DANH MỤC TRƯỜNG THÔNG TIN ĐẦU VÀO CỦA HỒ SƠ"),
        ("c", "(theo Phụ lục VI, Nghị định số 30/2020/NĐ-CP)"),
        (
            "t",
            [
                ["STT", "Trường thông tin", "Kiểu dữ liệu", "Độ dài"],
                ["1", "Mã hồ sơ", "Chuỗi ký tự", "37"],
                ["2", "Tiêu đề hồ sơ", "Chuỗi ký tự", "500"],
                ["3", "Thời hạn bảo quản", "Chuỗi ký tự", "30"],
                ["4", "Chế độ sử dụng", "Chuỗi ký tự", "30"],
                ["5", "Người lập hồ sơ", "Chuỗi ký tự", "30"],
                ["6", "Ngôn ngữ", "Chuỗi ký tự", "50"],
                ["7", "Thời gian bắt đầu", "Ngày tháng", "10"],
                ["8", "Thời gian kết thúc", "Ngày tháng", "10"],
                ["9", "Tổng số văn bản trong hồ sơ", "Số", "4"],
                ["10", "Tổng số trang của hồ sơ", "Số", "4"],
                ["11", "Ghi chú", "Chuỗi ký tự", "100"],
            ],
        ),
        (
            "p",
            "Ghi chú: mã hồ sơ gồm mã định danh của cơ quan, tổ chức lập danh mục hồ sơ, năm "
            "hình thành hồ sơ và số, ký hiệu của hồ sơ, các thành phần cách nhau bằng dấu chấm. "
            "Trường hợp hồ sơ có nhiều tập thì ghi số tập sau ký hiệu.",
        ),
    ],
}

# Fonts Chromium finds through fontconfig; none is a font tests/records uses.
FONTS = ("Noto Serif", "Noto Sans", "Noto Serif Display", "DejaVu Sans Condensed")
SIZES_PT = (10.0, 11.0, 12.0, 13.0)


def _html(blocks: list[Block], font: str, size_pt: float) -> str:
    parts = []
    for kind, content in blocks:
        if kind == "t":
            rows = content if isinstance(content, list) else []
            cells = [
                "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row) + "</tr>"
                for i, row in enumerate(rows)
                for tag in ("th" if i == 0 else "td",)
            ]
            parts.append("<table>" + "".join(cells) + "</table>")
        else:
            tag = {"h": "h2", "c": "p class=c", "p": "p", "r": "p class=r"}[kind]
            parts.append(f"<{tag}>{html.escape(str(content))}</{tag.split()[0]}>")
    style = (
        "@page { size: A4; margin: 22mm 20mm 20mm 25mm; }"
        f"body {{ font-family: '{font}'; font-size: {size_pt}pt; line-height: 1.35; }}"
        "h2 { font-size: 1.2em; font-weight: bold; text-align: center; margin: 0.6em 0 0.3em; }"
        "p { text-align: justify; margin: 0.4em 0; text-indent: 1.5em; }"
        "p.c { text-align: center; text-indent: 0; } p.r { text-align: right; }"
        "table { border-collapse: collapse; margin: 0.6em auto; }"
        "th, td { border: 1px solid black; padding: 0.15em 0.6em; white-space: nowrap; }"
        "th { font-weight: bold; }"
    )
    body = "\n".join(parts)
    return (
        f'<!doctype html><html lang="vi"><head><meta charset="utf-8"><style>{style}</style>'
        f"</head><body>{body}</body></html>"
    )


def _print_pdf(page_html: str, pdf: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="sohoa-foreign-") as tmp:
        source = Path(tmp) / "page.html"
        source.write_text(page_html, encoding="utf-8")
        cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--no-pdf-header-footer", f"--user-data-dir={tmp}/profile",
               f"--print-to-pdf={pdf}", source.as_uri()]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _rasterise(pdf: Path, dpi: int) -> tuple[np.ndarray, str]:
    """Page 1 of the PDF as RGB at `dpi`, and the text pdfium reads from it (NFC)."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    try:
        page = document[0]
        image = page.render(scale=dpi / 72).to_pil().convert("RGB")
        text = page.get_textpage().get_text_range()
    finally:
        document.close()
    lines = [" ".join(line.split()) for line in text.replace("\r", "").split("\n")]
    truth = "\n".join(line for line in lines if line)
    return np.asarray(image), unicodedata.normalize("NFC", truth)


# ---------------------------------------------------------------------------------------------
# Defect classes: augraphy augmentations with their parameters, applied in order.

Effect = tuple[str, dict[str, object]]


@dataclass(frozen=True)
class ForeignClass:
    name: str
    effects: tuple[Effect, ...]
    dpi: int = 300
    grey: bool = False


def _c(name: str, *effects: Effect, dpi: int = 300, grey: bool = False) -> ForeignClass:
    return ForeignClass(name, tuple(effects), dpi, grey)


CLASSES: dict[str, ForeignClass] = {
    c.name: c
    for c in (
        _c("clean"),
        _c("ink_bleed", ("InkBleed", {"intensity_range": (0.5, 0.7), "severity": (0.4, 0.6)})),
        _c(
            "low_ink",
            ("LowInkRandomLines", {"count_range": (30, 60), "use_consistent_lines": False}),
            ("LowInkPeriodicLines", {"count_range": (4, 8), "period_range": (16, 32)}),
        ),
        _c(
            "dirty_drum",
            (
                "DirtyDrum",
                {
                    "line_width_range": (1, 4),
                    "line_concentration": 0.1,
                    "direction": 0,
                    "noise_intensity": 0.5,
                },
            ),
        ),
        _c("dirty_rollers", ("DirtyRollers", {"line_width_range": (8, 16), "scanline_type": 0})),
        _c("bad_photocopy", ("BadPhotoCopy", {"noise_iteration": (2, 3), "noise_size": (2, 4)})),
        _c("letterpress", ("Letterpress", {"n_samples": (300, 800), "n_clusters": (300, 800)})),
        _c(
            "paper_texture",
            ("ColorPaper", {"hue_range": (28, 45), "saturation_range": (20, 50)}),
            ("NoiseTexturize", {"sigma_range": (6, 12), "turbulence_range": (3, 5)}),
            ("SubtleNoise", {"subtle_range": 20}),
        ),
        _c("bleed_through", ("BleedThrough", {"intensity_range": (0.3, 0.6), "alpha": 0.35})),
        _c(
            "faxify",
            (
                "Faxify",
                {
                    "scale_range": (1.0, 1.0),
                    "monochrome": 1,
                    "monochrome_method": "threshold_otsu",
                    "halftone": 0,
                },
            ),
        ),
        _c("markup", ("Markup", {"num_lines_range": (4, 8), "markup_type": "highlight"})),
        _c("folding", ("Folding", {"fold_count": 3, "fold_noise": 0.02})),
        _c("shadow_cast", ("ShadowCast", {"shadow_opacity_range": (0.4, 0.8)})),
        _c(
            "lighting_gradient",
            ("LightingGradient", {"max_brightness": 255, "min_brightness": 40, "mode": "gaussian"}),
        ),
        _c("dithering", ("Dithering", {"dither": "ordered", "order": (2, 3)})),
        # Letters filled with round dots on a grid (augraphy's own dot-matrix rendition of
        # the foreign fonts: no dotted zero, a 5-px pitch, 60 dpi, where tests/records
        # strikes a 72-dpi grid of 9-pin glyphs).
        _c(
            "dot_matrix",
            (
                "DotMatrix",
                {
                    "dot_matrix_shape": "circle",
                    "dot_matrix_dot_width_range": (5, 5),
                    "dot_matrix_dot_height_range": (5, 5),
                    # the dots' colour from a 3-px median of the page (augraphy's default,
                    # 128-255 px, takes the paper's: dots barely darker than the paper)
                    "dot_matrix_median_kernel_value_range": (3, 3),
                },
            ),
        ),
        _c(
            "copier_200_grey",
            ("BadPhotoCopy", {"noise_iteration": (1, 2), "noise_size": (1, 2)}),
            ("DirtyDrum", {"line_concentration": 0.05, "direction": 1, "noise_intensity": 0.3}),
            ("Jpeg", {"quality_range": (30, 50)}),
            dpi=200,
            grey=True,
        ),
        _c(
            "jpeg_200_grey",
            ("SubtleNoise", {"subtle_range": 15}),
            ("Jpeg", {"quality_range": (20, 35)}),
            dpi=200,
            grey=True,
        ),
    )
}


def augraphy_version() -> str:
    import augraphy

    return str(augraphy.__version__)


def _degrade(image: np.ndarray, cls: ForeignClass, seed: int) -> np.ndarray:
    if not cls.effects:
        return image  # the clean class needs no augraphy (tests/test_ocr_foreign.py uses it)
    import augraphy

    random.seed(seed)  # augraphy draws from both module-level generators
    np.random.seed(seed % 2**32)
    out = image
    for name, params in cls.effects:
        effect: Callable[..., object] = getattr(augraphy, name)(**params, p=1)
        result = effect(out, force=True)
        out = np.asarray(result[0] if isinstance(result, tuple) else result)
    if out.ndim == 3 and out.shape[2] == 4:
        out = out[:, :, :3]
    return out


def _choice(seed: int, name: str, options: tuple[object, ...]) -> object:
    digest = hashlib.sha256(f"{name}:{seed}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def page_style(name: str, seed: int) -> tuple[str, str, float]:
    """The document, font and size of page `seed` of class `name` (deterministic)."""
    offset = list(CLASSES).index(name) if name in CLASSES else 0  # classes vary documents
    document = list(DOCUMENTS)[(seed + offset) % len(DOCUMENTS)]
    font = str(_choice(seed, name + ":font", FONTS))
    size = float(str(_choice(seed, name + ":size", SIZES_PT)))
    return document, font, size


def render(name: str, seed: int, path: Path, cls: ForeignClass | None = None) -> str:
    """Write page `seed` of class `name` (or of `cls`, a class of the caller's) as a PNG at
    `path`; return its truth text."""
    cls = cls or CLASSES[name]
    document, font, size = page_style(name, seed)
    pdf = path.with_suffix(".pdf")
    _print_pdf(_html(DOCUMENTS[document], font, size), pdf)
    image, truth = _rasterise(pdf, cls.dpi)
    digest = hashlib.sha256(f"{name}/{seed}".encode()).digest()
    degraded = _degrade(image, cls, int.from_bytes(digest[:4], "big"))
    if cls.grey and degraded.ndim == 3:
        degraded = np.asarray(Image.fromarray(degraded).convert("L"))
    Image.fromarray(degraded).save(path, dpi=(cls.dpi, cls.dpi), compress_level=1)
    return truth


def describe() -> str:
    """Markdown: every class with its dpi and augraphy effects, for docs/benchmarks.md."""
    lines = [f"augraphy {augraphy_version()}; fonts {', '.join(FONTS)}; sizes {SIZES_PT} pt", ""]
    for cls in CLASSES.values():
        effects = "; ".join(f"{n}({', '.join(f'{k}={v!r}' for k, v in p.items())})"
                            for n, p in cls.effects) or "none"  # fmt: skip
        colour = "grey" if cls.grey else "RGB"
        lines.append(f"- `{cls.name}` ({cls.dpi} dpi {colour}): {effects}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`python -m bench foreign [ARGS]`: `python -m bench cer --corpus foreign [ARGS]`."""
    from bench import cer

    return cer.main(["--corpus", "foreign", *argv])
