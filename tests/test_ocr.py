"""agent.pipeline.ocr against the real tesseract (and fakes plugged in through its `binary` seam).

Assertions tolerate version drift: CER bounds and ordered substrings, never exact text.
"""

from __future__ import annotations

import dataclasses
import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from corpus import A5_LANDSCAPE_MM, FONT_REGULAR, PageSpec, cer, render_page, save_png
from PIL import Image, ImageDraw, ImageFont

from agent.pipeline import imaging, ocr
from agent.pipeline.process import PipelineSettings, _line_key, process_page

pytestmark = pytest.mark.tesseract

HALF = {"n_lines": 12, "paper_mm": A5_LANDSCAPE_MM}
NOISY = {"paper": "gradient", "blur_sigma": 0.9, "speckles": 4350, "noise_sigma": 6.0}


@pytest.fixture(scope="module", autouse=True)
def tesseract_version() -> ocr.TesseractInfo:
    if shutil.which("tesseract") is None:
        pytest.skip(f"tesseract not installed ({ocr.INSTALL_HINT})")
    info = ocr.require("vie")
    # The log names the engine every OCR number below was measured with.
    print(f"\n{info.version_text}, languages {sorted(info.languages)}, openmp={info.openmp}")
    return info


def fake_tesseract(tmp_path: Path, body: str) -> str:
    """A tesseract stand-in: answers --version/--list-langs like the real one, then `body`."""
    real = shutil.which("tesseract")
    script = tmp_path / "fake-tesseract"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --version|--list-langs) exec {real} "$@";; esac\n'
        f"REAL={real}\n{body}\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    ocr.tesseract_info.cache_clear()
    return str(script)


def assert_in_order(text: str, parts: list[str]) -> None:
    position = 0
    for part in parts:
        found = text.find(part, position)
        assert found >= 0, f"{part!r} missing after position {position} in {text!r}"
        position = found + len(part)


def test_clean_page_reads_almost_perfectly(tmp_path: Path) -> None:
    page = render_page(PageSpec(**HALF))
    result = ocr.recognize(save_png(page, tmp_path / "clean.png"), dpi=300)
    error = cer(page.text, result.text)
    print(
        f"clean half page: CER {error:.2%}, {result.seconds:.2f} s, conf {result.mean_confidence}"
    )
    assert error <= 0.02
    assert_in_order(
        result.text,
        ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập", "QUYẾT ĐỊNH", "Căn cứ Luật"],
    )
    assert result.attempts == (3,)
    assert result.psm == 3
    assert result.mean_confidence > 80
    height, width = page.image.shape[:2]
    for word in result.words:
        left, top, w, h = word.box
        assert left >= 0
        assert left + w <= width
        assert top >= 0
        assert top + h <= height
        assert 0 <= word.conf <= 100
    assert " ".join(w.text for w in result.words[:3]).startswith("ỦY BAN")


def test_pipeline_cleanup_brings_a_skewed_noisy_sealed_page_back(tmp_path: Path) -> None:
    page = render_page(PageSpec(skew_deg=2.5, seal=True, **NOISY, **HALF))
    capture = save_png(page, tmp_path / "noisy.png")
    raw = ocr.recognize(capture, dpi=300)
    processed = process_page(capture, tmp_path / "work", PipelineSettings())
    cleaned = cer(page.text, processed.text.read_text(encoding="utf-8"))
    raw_error = cer(page.text, raw.text)
    print(f"noisy half page: CER raw {raw_error:.2%} → after pipeline {cleaned:.2%}")
    # Measured on tesseract 5.3.0: raw 34 %, after the pipeline 0–0.6 %. The brief asked
    # for ≤ 5 %; 2 % still leaves room for version drift and catches a broken stage.
    assert cleaned <= 0.02
    assert cleaned < raw_error


def test_empty_result_on_a_page_with_text_is_retried_with_other_segmentation(
    tmp_path: Path,
) -> None:
    # One title line at ~75 dpi: psm 3 finds no text block at all on tesseract 5.3, psm 6
    # reads it. This pins the real behaviour the retry exists for.
    page = render_page(PageSpec(dpi=300, n_lines=1, **{"paper_mm": A5_LANDSCAPE_MM}))
    grey = cv2.cvtColor(page.image, cv2.COLOR_RGB2GRAY)
    rows = np.flatnonzero(grey.min(axis=1) < 128)
    cols = np.flatnonzero(grey.min(axis=0) < 128)
    line = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    tiny = cv2.resize(line, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "tiny.png"), tiny)
    result = ocr.recognize(tmp_path / "tiny.png", dpi=300)
    assert result.attempts[:2] == (3, 6)
    assert result.retried
    assert "BAN" in result.text


def test_retry_order_and_blank_pages_are_not_retried(tmp_path: Path) -> None:
    # Fake: nothing found with psm 3 or 6, the real engine for psm 11.
    binary = fake_tesseract(
        tmp_path,
        'case "$*" in *"--psm 3"*|*"--psm 6"*)\n'
        '  printf "level\\tpage_num\\tblock_num\\tpar_num\\tline_num\\tword_num\\tleft\\ttop'
        '\\twidth\\theight\\tconf\\ttext\\n" > "$2.tsv"; : > "$2.txt"; exit 0;;\n'
        'esac\nexec "$REAL" "$@"',
    )
    page = render_page(PageSpec(n_lines=3, **{"paper_mm": A5_LANDSCAPE_MM}))
    capture = save_png(page, tmp_path / "page.png")
    result = ocr.recognize(capture, dpi=300, binary=binary)
    assert result.attempts == (3, 6, 11)
    assert result.psm == 11
    assert "QUYẾT" not in result.text
    assert "NAM" in result.text
    blank = ocr.recognize(capture, dpi=300, binary=binary, expect_text=False)
    assert blank.attempts == (3,)
    assert blank.text == ""
    assert blank.mean_confidence == 0.0


def test_tesseract_runs_single_threaded(tmp_path: Path) -> None:
    # docs/research/perf.md B2a: without OMP_THREAD_LIMIT=1 a page takes 5× longer on 2 cores.
    binary = fake_tesseract(
        tmp_path,
        'printf "level\\n" > "$2.tsv"; echo "OMP=$OMP_THREAD_LIMIT" > "$2.txt"',
    )
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((10, 10), 255, np.uint8))
    assert ocr.recognize(image, binary=binary).text == "OMP=1"


def test_vietnamese_runs_get_the_administrative_abbreviations_as_user_words(
    tmp_path: Path,
) -> None:
    # Fake: write the --user-words file it was given as the page text.
    binary = fake_tesseract(
        tmp_path,
        'printf "level\\n" > "$2.tsv"; words=""\n'
        'prev=""; for a in "$@"; do [ "$prev" = "--user-words" ] && words="$a"; prev="$a"; done\n'
        'if [ -n "$words" ]; then cat "$words" > "$2.txt"; else : > "$2.txt"; fi',
    )
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((10, 10), 255, np.uint8))
    result = ocr.recognize(image, binary=binary)
    assert result.text.split() == list(ocr.ADMIN_WORDS)
    assert {"VT", "UBND", "QĐ", "NĐ-CP"} <= set(result.text.split())
    assert result.user_words == len(ocr.ADMIN_WORDS)
    english = ocr.recognize(image, languages="eng", binary=binary)
    assert english.text == "" and english.user_words == 0


def _line_image(text: str, path: Path, dpi: int = 200) -> Path:
    """One line of Noto Serif, 12 pt at `dpi`, cut as `imaging.line_crop` cuts a line."""
    font = ImageFont.truetype(str(FONT_REGULAR), round(12 * dpi / 72))
    _, _, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right + 40, bottom + 40), 255)
    ImageDraw.Draw(canvas).text((20, 20), text, font=font, fill=35)
    page = np.asarray(canvas, np.uint8)
    rows, cols = np.flatnonzero(page.min(axis=1) < 128), np.flatnonzero(page.min(axis=0) < 128)
    box = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    cv2.imwrite(str(path), imaging.line_crop(page, box)[0])
    return path


def test_lines_are_read_in_one_run_each_with_its_own_words(tmp_path: Path) -> None:
    real = shutil.which("tesseract")
    runs = tmp_path / "runs.txt"
    binary = fake_tesseract(tmp_path, f'echo run >> {runs}\nexec "$REAL" "$@"')
    assert real
    texts = ["Căn cứ Luật Lưu trữ ngày 11 tháng 11 năm 2011;", "QUYẾT ĐỊNH", "Nơi nhận:"]
    images = [_line_image(t, tmp_path / f"line{i}.png") for i, t in enumerate(texts)]
    images.insert(2, tmp_path / "empty.png")
    cv2.imwrite(str(images[2]), np.full((40, 300), 255, np.uint8))  # a line with nothing

    lines = ocr.recognize_lines(images, dpi=200, binary=binary)

    assert runs.read_text().split() == ["run"]  # one tesseract for every line
    assert len(lines) == 4
    # psm 7 insists there is a line: on a white image it guesses, but never with confidence.
    assert all(w.conf < 50 for w in lines[2])
    read = [" ".join(w.text for w in words) for words in lines]
    assert cer(texts[0], read[0]) <= 0.05
    assert "QUYẾT" in read[1] and "nhận" in read[3]
    assert all(0 <= w.conf <= 100 and w.box[0] >= 0 for words in lines for w in words)
    assert ocr.recognize_lines([], binary=binary) == []


def test_a_comma_kerned_under_a_capital_is_read_once_moved_clear(tmp_path: Path) -> None:
    # "- Lưu: VT, VP." ends every administrative document. At 200 dpi tesseract 5.3's
    # `vie` reads the kerned line as "VT; VP." or "VT; VE." on every bench page (and so does
    # OCRmyPDF); moved clear, the marks are read as what they are.
    path = _line_image("- Lưu: VT, VP.", tmp_path / "luu.png")
    line = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    moved, insertions = imaging.dekern_punctuation(line)
    assert insertions
    cv2.imwrite(str(tmp_path / "moved.png"), moved)
    [words] = ocr.recognize_lines([tmp_path / "moved.png"], dpi=200)
    assert " ".join(w.text for w in words) == "- Lưu: VT, VP."


def test_missing_language_says_what_to_install(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((10, 10), 255, np.uint8))
    with pytest.raises(ocr.OcrUnavailable) as err:
        ocr.recognize(image, languages="xyz")
    assert err.value.key == "ocr_language_missing"
    assert err.value.install_hint == "apt install tesseract-ocr-xyz"
    assert "apt install tesseract-ocr-xyz" in str(err.value)
    with pytest.raises(ocr.OcrUnavailable) as err:
        ocr.require("vie+chi_sim")
    assert err.value.install_hint == "apt install tesseract-ocr-chi-sim"


def test_missing_binary_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ocr.OcrUnavailable) as err:
        ocr.require("vie", binary=str(tmp_path / "no-such-tesseract"))
    assert err.value.key == "ocr_unavailable"
    assert "apt install tesseract-ocr tesseract-ocr-vie" in str(err.value)


def test_crash_and_hang_are_typed_failures(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((10, 10), 255, np.uint8))
    crash = fake_tesseract(tmp_path, 'echo "Error in pixReadStream" >&2; exit 1')
    with pytest.raises(ocr.OcrFailed) as err:
        ocr.recognize(image, binary=crash)
    assert err.value.key == "ocr_failed"
    assert "pixReadStream" in err.value.detail
    hang = fake_tesseract(tmp_path, "exec sleep 30")
    with pytest.raises(ocr.OcrFailed) as err:
        ocr.recognize(image, binary=hang, timeout_s=0.5)
    assert err.value.key == "ocr_timeout"


def test_osd_finds_an_upside_down_page(tmp_path: Path) -> None:
    if not ocr.has_osd():
        pytest.skip("no osd data (apt install tesseract-ocr-osd)")
    page = render_page(PageSpec(turned_cw=180, **HALF))
    grey = cv2.cvtColor(page.image, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "upside.png"), grey)
    result = ocr.detect_orientation(tmp_path / "upside.png", dpi=300)
    assert result.turn_cw == 180
    assert result.confidence > 2


def test_nfc_is_enforced_on_tsv_words() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight"
    tsv = f"{header}\tconf\ttext\n5\t1\t1\t1\t1\t1\t10\t20\t30\t40\t91.5\tQuye\u0302\u0301t\n"
    (word,) = ocr.parse_tsv(tsv)
    assert word.text == "Quyết"
    assert word.box == (10, 20, 30, 40)
    assert word.line == (1, 1, 1)


def test_the_eth_tesseract_writes_for_d_with_stroke_becomes_vietnamese() -> None:
    """tesseract `vie` reads a Đ as "ĐÐ" now and then (the second an Icelandic eth, U+00D0:
    "63/QĐÐ-UBND" on three tests/records pages, plain tesseract alike): one Đ; a lone eth is
    a Đ; text without one is untouched."""
    assert ocr.vietnamese_letters("63/QĐÐ-UBND") == "63/QĐ-UBND"
    assert ocr.vietnamese_letters("Ðồng ý, đðiều") == "Đồng ý, điều"
    assert ocr.vietnamese_letters("QĐ-UBND đi") == "QĐ-UBND đi"
    header = "\t".join(["level", "page", "block", "par", "line", "word", "l", "t", "w", "h"])
    header += "\tconf\ttext"
    row = "5\t1\t1\t1\t1\t1\t10\t10\t90\t30\t91.5\t63/QĐÐ-UBND,"
    (word,) = ocr.parse_tsv(f"{header}\n{row}")
    assert word.text == "63/QĐ-UBND,"


def test_the_fraction_slash_tesseract_writes_for_a_solidus_becomes_one() -> None:
    """tesseract `vie` reads the "/" of a date or a number now and then as the fraction slash
    (U+2044: "18⁄11", "05/11⁄1977" on tests/records dot_matrix and margin_notes, plain
    tesseract and OCRmyPDF alike): records write "/", and a search for "18/11" must find it."""
    assert ocr.vietnamese_letters("18\u204411 và 05/11\u20441977") == "18/11 và 05/11/1977"
    assert ocr.vietnamese_letters("Số 12/UBND") == "Số 12/UBND"
    header = "\t".join(["level", "page", "block", "par", "line", "word", "l", "t", "w", "h"])
    header += "\tconf\ttext"
    row = "5\t1\t1\t1\t1\t1\t10\t10\t90\t30\t91.5\t25\u204404/1977"
    (word,) = ocr.parse_tsv(f"{header}\n{row}")
    assert word.text == "25/04/1977"
    assert ocr._clean_text("ngày 18\u204411\n") == "ngày 18/11"


def _reading(
    blocks: list[tuple[int, tuple[int, int, int, int], list[str]]], psm: int = 3
) -> ocr.OcrResult:
    """A reading of blocks given as (block number, its box, its lines' texts), in that order;
    the lines of a block stacked in its box, one paragraph each, their words across it."""
    words: list[ocr.Word] = []
    text: list[str] = []
    for block, (left, top, right, bottom), lines in blocks:
        step = (bottom - top) // len(lines)
        for n, line in enumerate(lines):
            tokens = line.split()
            width = (right - left) // len(tokens)
            for k, token in enumerate(tokens):
                box = (left + k * width, top + n * step, width - 5, step - 2)
                words.append(ocr.Word(token, 95.0, box, (block, n + 1, 1)))
            if text:
                text.append("")
            text.append(line)
    return ocr.OcrResult("\n".join(text), tuple(words), 95.0, "vie", psm, (psm,), 0.1, "5.3.0")


def test_a_block_tesseract_gave_after_one_below_it_is_read_first() -> None:
    """bench foreign clean-4: tesseract's layout gave the centred heading and its subtitle
    after the first paragraph lying under them (11.8 % CER with every letter right)."""
    page = _reading([
        (1, (100, 50, 900, 90), ["HỘI ĐỒNG NHÂN DÂN XÃ"]),
        (2, (100, 300, 900, 500), ["Sáu tháng đầu năm", "tổng thu ngân sách"]),
        (3, (400, 150, 600, 190), ["BÁO CÁO"]),
        (4, (250, 220, 750, 260), ["Tình hình thu chi"]),
        (5, (100, 600, 900, 700), ["Tồn tại"]),
    ])  # fmt: skip
    mended, moved = ocr.reading_order(page)
    assert moved == 3  # blocks 3 and 4 go up, 2 after them
    assert mended.text.split("\n\n") == [
        "HỘI ĐỒNG NHÂN DÂN XÃ", "BÁO CÁO", "Tình hình thu chi", "Sáu tháng đầu năm",
        "tổng thu ngân sách", "Tồn tại",
    ]  # fmt: skip
    assert list(dict.fromkeys(w.line[0] for w in mended.words)) == [1, 3, 4, 2, 5]
    assert sorted(mended.words, key=repr) == sorted(page.words, key=repr)


def test_blocks_side_by_side_keep_tesseract_s_order() -> None:
    """A record's two-column header (the body below both), a margin note beside the body, table
    columns as blocks: none lies above another in a shared column, so nothing moves — even
    where tesseract gave the right-hand one first."""
    page = _reading([
        (1, (500, 40, 950, 120), ["CỘNG HÒA XÃ HỘI", "Độc lập"]),
        (2, (50, 40, 400, 120), ["ỦY BAN NHÂN DÂN", "XÃ PHÚ MỸ"]),
        (3, (150, 200, 950, 600), ["Căn cứ Luật", "Xét đề nghị"]),
        (4, (10, 250, 120, 400), ["đã xem"]),
    ])  # fmt: skip
    mended, moved = ocr.reading_order(page)
    assert (mended, moved) == (page, 0)
    # A retry's reading (psm 11: scattered words, each its own block) is not laid out again.
    scattered = _reading(
        [(1, (100, 500, 300, 540), ["dưới"]), (2, (100, 50, 300, 90), ["trên"])], psm=11
    )
    assert ocr.reading_order(scattered) == (scattered, 0)


def _row(line: int, parts: list[tuple[int, str]], top: int, block: int = 1) -> list[ocr.Word]:
    """The words of one line: each part (its left edge, its text) laid out from that edge,
    30 px a letter, 10 px between words, 40 px high."""
    words = []
    for left, text in parts:
        x = left
        for token in text.split():
            words.append(ocr.Word(token, 95.0, (x, top, 30 * len(token), 40), (block, 1, line)))
            x += 30 * len(token) + 10
    return words


def _page(rows: list[list[ocr.Word]]) -> ocr.OcrResult:
    words = tuple(w for row in rows for w in row)
    text = "\n".join(" ".join(w.text for w in row) for row in rows)
    return ocr.OcrResult(text, words, 95.0, "vie", 3, (3,), 0.1, "5.3.0")


def test_a_document_head_and_foot_in_nd30_s_two_columns_are_read_column_by_column() -> None:
    """NĐ 30/2020's head: the issuing body and number left, the national motto and the date
    right, on the same lines; its foot: "Nơi nhận" left, the signer right. Tesseract reads
    each line across both columns."""
    page = _page([
        _row(1, [(100, "ỦY BAN NHÂN DÂN"), (1200, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM")], 100),
        _row(2, [(150, "XÃ TÂN LẬP"), (1300, "Độc lập - Tự do - Hạnh phúc")], 150),
        _row(3, [(100, "Số: 125/QĐ-UBND"), (1300, "Tân Lập, ngày 12 tháng 3")], 200),
        _row(4, [(500, "QUYẾT ĐỊNH CÔNG NHẬN TRƯỞNG THÔN NÀ HẨU NHIỆM KỲ MỚI")], 300),
        _row(5, [(100, "Điều 1. Công nhận ông Lường Văn Thưởng trúng cử trưởng thôn")], 350),
        _row(6, [(100, "Nơi nhận:"), (1500, "CHỦ TỊCH")], 500),
        _row(7, [(100, "- Như Điều 3;")], 550),
        _row(8, [(100, "- Lưu: VT, VP.")], 600),
        _row(9, [(1450, "Hoàng Thị Duyên")], 700),
    ])  # fmt: skip
    mended, split = ocr.nd30_columns(page)
    assert split == 4
    assert [line for line in mended.text.split("\n") if line] == [
        "ỦY BAN NHÂN DÂN", "XÃ TÂN LẬP", "Số: 125/QĐ-UBND",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
        "Tân Lập, ngày 12 tháng 3",
        "QUYẾT ĐỊNH CÔNG NHẬN TRƯỞNG THÔN NÀ HẨU NHIỆM KỲ MỚI",
        "Điều 1. Công nhận ông Lường Văn Thưởng trúng cử trưởng thôn",
        "Nơi nhận:", "- Như Điều 3;", "- Lưu: VT, VP.", "CHỦ TỊCH", "Hoàng Thị Duyên",
    ]  # fmt: skip
    assert sorted(w.text for w in mended.words) == sorted(w.text for w in page.words)
    assert [w.text for w in mended.words][:4] == ["ỦY", "BAN", "NHÂN", "DÂN"]


def test_a_head_whose_body_ends_close_to_the_motto_is_split_too() -> None:
    """The embedded sample quyet-dinh-125 as tesseract read it: "ỦY BAN NHÂN DÂN" ends 148 px
    before "CỘNG HÒA" under 52-px capitals (2.85 heights, under COLUMN_GAP), so its first
    line stayed whole and the body's name was cut from its commune ("... NHÂN DÂN CỘNG HÒA
    ... VIỆT NAM / XÃ TÂN PHÚ"). A gap that narrow with prose beside it stays a line."""

    def line(n: int, parts: list[tuple[str, tuple[int, int, int, int]]]) -> list[ocr.Word]:
        return [ocr.Word(t, 95.0, box, (1, 1, n)) for t, box in parts]

    head = line(1, [("ỦY", (534, 257, 73, 55)), ("BAN", (622, 272, 111, 40)),
                    ("NHÂN", (749, 260, 160, 52)), ("DÂN", (927, 260, 114, 52)),
                    ("CỘNG", (1189, 260, 159, 63)), ("HÒA", (1365, 260, 124, 52)),
                    ("XÃ", (1504, 260, 81, 52)), ("HỘI", (1599, 260, 106, 63)),
                    ("CHỦ", (1723, 257, 117, 55)), ("NGHĨA", (1856, 260, 189, 52)),
                    ("VIỆT", (2059, 260, 130, 63)), ("NAM", (2205, 272, 132, 40))])  # fmt: skip
    second = line(2, [("XÃ", (617, 339, 80, 52)), ("TÂN", (711, 339, 114, 52)),
                      ("PHÚ", (842, 339, 116, 52)), ("Độc", (1389, 348, 99, 54)),
                      ("lập", (1505, 348, 83, 56)), ("-", (1606, 372, 14, 7)),
                      ("Tự", (1636, 351, 76, 51)), ("do", (1729, 348, 63, 43)),
                      ("-", (1810, 372, 14, 7)), ("Hạnh", (1841, 348, 146, 53)),
                      ("phúc", (2003, 348, 132, 56))])  # fmt: skip
    third = line(3, [("Số:", (567, 425, 70, 45)), ("125/QĐ-UBND", (658, 430, 351, 40)),
                     ("Tân", (1319, 466, 90, 43)), ("Phú,", (1422, 466, 108, 50)),
                     ("ngày", (1552, 466, 118, 56)), ("14", (1687, 469, 56, 40))])  # fmt: skip
    title = line(4, [("QUYẾT", (1000, 600, 200, 50)), ("ĐỊNH", (1220, 600, 160, 50))])
    page = _page([head, second, third, title])
    mended, split = ocr.nd30_columns(page)
    assert split == 3
    assert [x for x in mended.text.split("\n") if x] == [
        "ỦY BAN NHÂN DÂN", "XÃ TÂN PHÚ", "Số: 125/QĐ-UBND",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", "Tân Phú, ngày 14",
        "QUYẾT ĐỊNH",
    ]  # fmt: skip
    # The same gap, the motto's words replaced by prose: one line, as tesseract read it.
    words = ["ỦY", "BAN", "NHÂN", "DÂN", "ĐÃ", "HỌP", "VÀ", "THỐNG", "NHẤT", "NỘI", "DUNG", "SAU"]
    prose = [dataclasses.replace(w, text=t) for w, t in zip(head, words, strict=True)]
    plain = _page([prose, title])
    assert ocr.nd30_columns(plain) == (plain, 0)


def test_rows_with_wide_gaps_that_are_not_nd30_s_head_or_foot_stay_rows() -> None:
    """A form's "label    value" lines and a table's rows read row by row; so does a head
    whose right part is not the national motto."""
    form = _page([
        _row(1, [(100, "Họ và tên:"), (900, "Nguyễn Thị Hường")], 100),
        _row(2, [(100, "Ngày sinh:"), (900, "04/11/1969")], 150),
        _row(3, [(100, "STT"), (400, "Thôn"), (900, "Ngày tiêm")], 200),
        _row(4, [(100, "ỦY BAN NHÂN DÂN"), (1200, "BAN CHỈ ĐẠO XÃ")], 250),
    ])  # fmt: skip
    assert ocr.nd30_columns(form) == (form, 0)


def _recorded(lines: list[tuple[tuple[int, int, int], str, list[float]]]) -> ocr.OcrResult:
    """A reading from lines recorded by the pipeline: (tesseract's line key, its words, and
    for each word its box's left edge, top, width, height and confidence, flattened)."""
    words = []
    for key, text, numbers in lines:
        for n, token in enumerate(text.split()):
            left, top, width, height, conf = numbers[5 * n : 5 * n + 5]
            words.append(ocr.Word(token, conf, (int(left), int(top), int(width), int(height)), key))
    mean = sum(w.conf for w in words) / len(words)
    return ocr.OcrResult("", tuple(words), mean, "vie", 3, (3,), 0.1, "5.3.0")


# bench foreign low_ink-7 (augraphy's low ink; seeds 6-11, fifteenth sitting) as the pipeline
# read its second line: once in block 2, and again, worse, in a block 3 over the same words.
_LOW_INK_7 = [
    ((2, 1, 1), "Tài liệu này dành cho công chức văn phòng - thống kê khi được giao quét các", [
        395, 409, 71, 38, 96.8, 481, 409, 88, 47, 96.5, 585, 409, 86, 50, 96.6,
        687, 409, 119, 63, 96.9, 823, 409, 80, 38, 96.9, 921, 409, 110, 50, 95.9,
        1047, 409, 110, 38, 96.1, 1172, 410, 88, 37, 96.5, 1275, 409, 150, 50, 93.3,
        1439, 431, 14, 4, 93.2, 1468, 406, 136, 53, 89.5, 1618, 409, 52, 38, 96.8,
        1686, 409, 76, 38, 96.4, 1778, 409, 115, 63, 96.1, 1909, 409, 97, 50, 96.7,
        2024, 409, 103, 50, 96.6, 2144, 409, 73, 38, 96.8]),
    ((3, 1, 1), "1 nay danh cho công chức van phong - thong kê km dược Ø1ao quét các", [
        534, 420, 35, 27, 75.8, 585, 410, 86, 49, 63.6, 687, 410, 119, 63, 84.0,
        823, 410, 80, 37, 96.3, 921, 410, 110, 49, 96.5, 1047, 410, 110, 37, 91.1,
        1172, 410, 88, 37, 91.6, 1275, 410, 150, 63, 95.5, 1439, 431, 14, 4, 92.9,
        1468, 410, 136, 49, 93.0, 1618, 410, 52, 37, 64.6, 1686, 410, 76, 63, 95.6,
        1778, 410, 115, 63, 76.0, 1909, 410, 97, 49, 43.2, 2024, 410, 103, 49, 24.6,
        2144, 410, 73, 37, 57.8]),
    ((3, 2, 1), "sổ, tập hồ sơ cũ của xã.", [
        395, 480, 60, 38, 96.0, 470, 480, 70, 47, 96.0, 555, 480, 50, 38, 96.0,
        620, 480, 50, 38, 96.0, 685, 480, 40, 38, 96.0, 740, 480, 60, 38, 96.0,
        815, 480, 40, 38, 96.0]),
]  # fmt: skip
# bench foreign low_ink-8: two lines of ink pressed together, their boxes overlapping.
_LOW_INK_8 = [
    ((16, 1, 1), ".„ Tôn tại: một số khoản thu phí chợ còn thấp do tiểu thương nghỉ bán kéo dài "
     "sau mùa mưa lũ;", [
        337, 1304, 27, 25, 64.8, 371, 1247, 83, 82, 80.2, 460, 1240, 64, 89, 92.6,
        549, 1240, 60, 89, 96.0, 630, 1247, 41, 82, 96.3, 675, 1246, 129, 83, 96.7,
        816, 1249, 66, 80, 76.4, 897, 1240, 60, 89, 96.8, 979, 1249, 60, 80, 96.1,
        1060, 1249, 61, 80, 96.9, 1135, 1247, 82, 82, 97.0, 1238, 1249, 46, 80, 97.0,
        1298, 1244, 75, 85, 96.0, 1390, 1247, 387, 82, 97.0, 1550, 1240, 82, 89, 96.9,
        1654, 1240, 60, 89, 95.8, 1735, 1240, 61, 89, 91.5, 1817, 1249, 56, 80, 96.9,
        1931, 1259, 32, 70, 96.8, 1972, 1249, 81, 80, 96.4, 2076, 1240, 61, 89, 96.9,
        2165, 1251, 52, 78, 79.4]),
    ((16, 1, 2), "n độ giải ngân vốn đầu tư châm vì vướng mặt bằng ở hai hô. Sáu tháng cuối "
     "năm cân đôn đốc", [
        371, 1315, 14, 23, 93.3, 408, 1299, 35, 53, 96.6, 470, 1303, 65, 45, 96.5,
        554, 1306, 93, 63, 97.0, 663, 1304, 68, 34, 96.2, 749, 1306, 69, 32, 96.1,
        834, 1312, 43, 26, 96.8, 890, 1306, 103, 32, 96.4, 1008, 1306, 29, 32, 96.9,
        1041, 1306, 133, 69, 19.7, 1193, 1307, 73, 38, 96.1, 1282, 1304, 93, 44, 96.1,
        1393, 1303, 25, 35, 96.7, 1432, 1306, 53, 32, 96.7, 1503, 1306, 56, 32, 96.5,
        1576, 1306, 66, 32, 96.1, 1658, 1306, 112, 42, 96.8, 1787, 1304, 76, 34, 96.2,
        1882, 1307, 81, 31, 96.7, 1981, 1306, 63, 32, 89.3, 2062, 1306, 70, 32, 96.8,
        2150, 1306, 67, 32, 96.0]),
]  # fmt: skip


def test_a_line_of_ink_read_twice_keeps_its_better_reading() -> None:
    page = _recorded(_LOW_INK_7)
    mended, dropped = ocr.drop_lines_read_twice(page, _line_key)
    assert dropped == 1
    assert mended.text.split("\n") == [
        "Tài liệu này dành cho công chức văn phòng - thống kê khi được giao quét các",
        "",
        "sổ, tập hồ sơ cũ của xã.",
    ]
    assert {w.line for w in mended.words} == {(2, 1, 1), (3, 2, 1)}
    assert mended.mean_confidence > page.mean_confidence


def test_lines_of_ink_pressed_together_are_both_kept() -> None:
    """Their boxes overlap as much as a line read twice does, their letters do not match."""
    page = _recorded(_LOW_INK_8)
    lines = {w.line: [] for w in page.words}  # type: dict[tuple[int, int, int], list[ocr.Word]]
    for w in page.words:
        lines[w.line].append(w)
    first, second = lines.values()
    shared = sum(ocr._shared_area(a.box, b.box) for a in first for b in second)
    smaller = min(sum(w.box[2] * w.box[3] for w in ws) for ws in (first, second))
    assert shared > ocr.READ_TWICE_OVERLAP * smaller  # the boxes alone would call it twice read
    assert ocr.drop_lines_read_twice(page, _line_key) == (page, 0)


def test_a_word_read_again_joins_the_line_it_lies_on_in_order() -> None:
    """A cell read again alone ("Ngôn ngữ", bench foreign letterpress-5) goes between the
    words beside it; a word over ink already read, or on no line's rows, is left out — a tall
    mark read into a line (a clump of noise) does not stretch that line's rows (bench foreign
    bad_photocopy-13's left-out heading went into the line under it before)."""
    row = [ocr.Word("6", 95.0, (677, 907, 18, 31), (1, 1, 7)),
           ocr.Word("Chuỗi", 96.0, (1418, 900, 171, 47), (1, 1, 7)),
           ocr.Word("50", 96.0, (1730, 907, 43, 31), (1, 1, 7))]  # fmt: skip
    below = [ocr.Word("Thời", 96.0, (805, 975, 91, 36), (1, 1, 8)),
             ocr.Word("§#", 20.0, (1000, 700, 60, 330), (1, 1, 8)),  # a clump, 330 px tall
             ocr.Word("gian", 96.0, (1100, 976, 85, 44), (1, 1, 8))]  # fmt: skip
    page = ocr.OcrResult("", (*row, *below), 90.0, "vie", 3, (3,), 0.1, "5.3.0")
    found = [
        ocr.Word("Ngôn", 96.0, (808, 902, 105, 46), (0, 0, 0)),
        ocr.Word("ngữ", 96.0, (924, 904, 80, 44), (0, 0, 0)),
        ocr.Word("Chuỗi", 90.0, (1420, 902, 170, 45), (0, 0, 0)),  # read already
        ocr.Word("Về", 96.0, (820, 760, 60, 40), (0, 0, 0)),  # on no line's rows
    ]
    mended, put = ocr.insert_words(page, found)
    assert put == 2
    assert mended.text.split("\n") == ["6 Ngôn ngữ Chuỗi 50", "Thời §# gian"]
