"""agent.pipeline.quality: the syllable inventory against Debian's list, and the page judgement."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

from agent.pipeline import quality

HUNSPELL_VI = Path("/usr/share/hunspell/vi_VN.dic")
# Entries of hunspell-vi that are not Vietnamese syllables: abbreviations and loan words the
# dictionary carries for spell-checking (gen, gram, tivi, web...). Listed so that a rule
# change that rejects a real syllable shows up as a new failure, not as a shrug.
_LOANS = (
    "ABC ASCII GIF HCM HK HTML HĐND JPEG LHQ PDF PNG TCVN TV Telex Tp UBND URL Unicode VIQR "
    "VISCII VN VNI basoi email gen gip gram internet intranet ka palăng ping tivi tout têt v "
    "web xit"
)
NOT_SYLLABLES = frozenset(_LOANS.split())


def _hunspell_words() -> list[str]:
    if not HUNSPELL_VI.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{HUNSPELL_VI} missing (apt install hunspell-vi)")
        pytest.skip("hunspell-vi not installed (apt install hunspell-vi)")
    lines = HUNSPELL_VI.read_text(encoding="utf-8").splitlines()[1:]
    return [w.split("/")[0] for w in lines if w.strip()]


def test_every_vietnamese_syllable_of_hunspell_vi_is_valid() -> None:
    words = _hunspell_words()
    assert len(words) > 6000
    rejected = {w for w in words if not quality.syllable_ok(w)}
    assert rejected <= NOT_SYLLABLES, sorted(rejected - NOT_SYLLABLES)


def test_rules_reject_what_ocr_makes_of_vietnamese() -> None:
    # Seen in this project's OCR output (issue 15) and classic LSTM confusions.
    for misread in ["1ưu", "Viêc", "tàl", "ngiệp", "Tnanh", "ĐỊnh", "đjều"]:
        assert quality.token_kind(misread) == "invalid", misread
    # Two tones on one syllable, a stop coda with a level tone, c/k before a front vowel.
    for word in ["hoắàng", "mât", "ci", "kan", "ghá", "ngé"]:
        assert not quality.syllable_ok(word), word


def test_numbers_codes_and_abbreviations_count_as_valid() -> None:
    for token, kind in [
        ("127-KL/TW", "code"),
        ("123/QĐ-UBND", "code"),
        ("30/2020/NĐ-CP", "code"),
        ("05/2025/TT-BNV", "code"),
        ("14/03/2024", "number"),
        ("1.250", "number"),
        ("59,0%", "number"),
        ("V/v", "abbreviation"),
        ("TM.", "abbreviation"),
        ("UBND", "abbreviation"),
        ("(bà)", "syllable"),
        ("Nghĩa-Đàn", "syllable"),
        ("./.", "punctuation"),
        ("-", "punctuation"),
    ]:
        assert quality.token_kind(token) == kind, token


def test_highland_place_names_are_valid_in_a_names_spelling() -> None:
    # A commune's records name its places and people in the highland peoples' spelling:
    # bench/foreign.py's "HỘI ĐỒNG NHÂN DÂN XÃ ĐĂK RƠ WA" read without an error counted two
    # invalid tokens, and such a line is judged as a misread against its re-readings.
    heading = ["HỘI", "ĐỒNG", "NHÂN", "DÂN", "XÃ", "ĐĂK", "RƠ", "WA"]
    assert quality.plausibility(heading).share == 1.0
    for name in ["Đắk", "Lắk", "Đăk", "Wa", "Krông", "Plông", "Rơ", "Pục", "Páo"]:
        assert quality.token_kind(name) == "syllable", name
    # Only as a name is written: lower case, and the onsets tesseract's garbage has (Ji, Fam).
    for misread in ["wa", "đăk", "Ji", "JÃ", "Fam", "HLẬN", "Viêc"]:
        assert quality.token_kind(misread) == "invalid", misread


def test_a_date_that_cannot_be_is_invalid_other_numbers_stay_valid() -> None:
    """Dotted or faded digits go 0 → 8 or 9 ("19/64/1977", "12/98/2998": dot_matrix pages);
    a number is otherwise always a valid token, so only a date's shape can tell."""
    for misread in ["19/64/1977", "12/98/2998", "62/10/2098", "00/05/1977", "05.13.2001"]:
        assert quality.token_kind(misread) == "invalid", misread
    for token in ["05/11/1977", "5-1-2024", "31.12.1899", "10/04/1977,", "85/88", "1.234.567"]:
        assert quality.token_kind(token) == "number", token
    assert quality.plausibility(["ngày", "19/64/1977"]).share < 0.5


def test_share_is_nfc_and_nfd_alike() -> None:
    text = "Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;"
    nfd = unicodedata.normalize("NFD", text)
    assert quality.plausibility(text.split()).share == 1.0
    assert quality.plausibility(nfd.split()).share == 1.0


def test_good_reading_is_not_sent_for_review() -> None:
    line = "Điều 1. Phê duyệt kế hoạch số hóa sổ hộ tịch năm 2024"
    words = [(w, 93.0) for w in line.split()]
    judged = quality.assess(words, expect_text=True)
    assert not judged.review, judged
    assert judged.score > 90


def test_confident_garbage_is_sent_for_review() -> None:
    # Tesseract's confidence says 90 %: the syllable check says otherwise.
    garbage = "Dlều 1. Phe duyêt kê hoach sô hóa sô hô tich năm 2O24 tàl liêu điên tủ Vlêc"
    judged = quality.assess([(w, 90.0) for w in garbage.split()], expect_text=True)
    assert judged.review
    assert "implausible_text" in judged.reasons
    assert judged.invalid_examples


def test_a_reading_near_every_cut_at_once_is_sent_for_review() -> None:
    # Shaped as a faxed foreign page read at 7.2 % CER (bench/foreign.py faxify seed 0):
    # share 0.94, mean confidence 88.6, 7 % unsure words — each under its own cut.
    words = [("làm", 91.5)] * 87 + [("làm", 50.0)] * 7 + [("z»x", 91.5)] * 6
    judged = quality.assess(words, expect_text=True)
    assert judged.syllable_share >= quality.REVIEW_SHARE_BELOW
    assert judged.mean_confidence >= quality.REVIEW_CONFIDENCE_BELOW
    assert judged.unsure_share <= quality.REVIEW_UNSURE_SHARE
    assert judged.review and judged.reasons == ("low_score",)


def test_a_line_of_marks_read_as_text_sends_the_page_for_review() -> None:
    # bench foreign faxify seed 0 as the pipeline read it (5.0 % CER, score 88.6, unflagged):
    # its fax header's specks as a line of 16 one- or two-character tokens, the text fine.
    specks = str.split("z ~.» Ẩ °» -x z / » rx »Ấ z» , ^ ^ ^ » °")
    read = [
        "HƯƠNG DẦN SỐ HOA SỔ SÁCH TẠI BỘ PHAN MỘT CƯ:",
        "Tài liệu này đành cho công chức văn phòng - thống kê khi dược giao",
        "quét các số, tập hồ sơ cũ của xã. Trước khi quét, cần tháo phim, vuốt phẳng",
    ]
    text = [line.split() for line in read] * 8
    lines = [specks, *text]
    words = [(t, 91.0) for line in lines for t in line]
    judged = quality.assess(words, expect_text=True, lines=lines)
    assert judged.review and "junk_line" in judged.reasons, judged
    assert quality.junk_lines(lines) == [" ".join(specks)]
    # Not a line of punctuation ("./.", a table's "|", list dashes), nor one word among marks.
    fine = [["-", "-", "./."], ["|", "1.250", "|"], ["`", "Lưu:", "VT"], *text]
    judged = quality.assess([(t, 95.0) for line in fine for t in line], True, fine)
    assert not judged.review, judged


def test_a_lone_speck_read_as_a_token_is_not_a_line_of_marks() -> None:
    # tests/records photocopy_2gen-8 (0.70 % CER) and bench foreign bad_photocopy-7 (0.75 %)
    # as the pipeline read them, seeds 6-11: one speck read as "=ẵg" or ".AZ" on its own line
    # (confidence 35 and 0) beside a text read right.
    text = [line.split() for line in _READ_RIGHT] * 8
    for speck in ("=ẵg", ".AZ"):
        lines = [[speck], *text]
        judged = quality.assess([(t, 95.0) for line in lines for t in line], True, lines)
        assert not judged.review, judged
    # two marks on a line of their own are a line of marks
    lines = [["=ẵg", ".AZ"], *text]
    judged = quality.assess([(t, 95.0) for line in lines for t in line], True, lines)
    assert judged.reasons == ("junk_line",), judged


_READ_RIGHT = (
    "Tài liệu này dành cho công chức văn phòng - thống kê khi được giao",
    "quét các sổ, tập hồ sơ cũ của xã. Trước khi quét, cần tháo ghim, vuốt phẳng",
)


def test_page_with_marks_and_no_text_is_sent_for_review_blank_is_not() -> None:
    assert quality.assess([], expect_text=True).reasons == ("no_text",)
    assert not quality.assess([], expect_text=False).review


def test_a_line_more_marks_than_words_sends_the_page_for_review() -> None:
    # bench foreign shadow_cast seed 3 as the pipeline read it (5.1 % CER, score 88.2,
    # unflagged): the fax header's specks with one valid token among them ("Tư»").
    specks = str.split("z Tư» Ẩ °» z Zz / » ~x >Áz> , ^ ^ ^ » °")
    read = [
        "HƯƠNG DAN SỐ HO SO SÁCH TẠI BỘ PHAX MỘT CƯ.",
        "Tài liệu này đành cho công chức văn phòng - thống kê khi được giao",
        "quét các sổ, tập hồ sơ cũ của xã. Trước khi quét, cần tháo phim, vuốt phẳng",
    ]
    text = [line.split() for line in read] * 8
    lines = [specks, *text]
    judged = quality.assess([(t, 91.0) for line in lines for t in line], True, lines)
    assert judged.review and "junk_line" in judged.reasons, judged
    assert quality.junk_lines(lines) == [" ".join(specks)]
    # A short line misread is what a page under 1 % CER may have (plain tesseract on
    # tests/records dejavu-1: "=ÌƯU: VÌ; V2" for "- Lưu: VT, VP."), and so is a stray mark
    # beside words.
    fine = [["=ÌƯU:", "VÌ;", "V2"], ["Chi", "đầu", "tư", "[", "1.118.000.000", "43,0%"], *text]
    judged = quality.assess([(t, 95.0) for line in fine for t in line], True, fine)
    assert not judged.review, judged


# Readings recorded by the pipeline (tesseract 5.3.0 `vie`, docs/benchmarks.md ninth sitting),
# each word at its page's mean confidence: bench foreign dot_matrix seed 1 (augraphy's dots,
# 0.95 % CER, score 95.1) and tests/records dot_matrix seed 9 (a 9-pin grid, 4.8 % CER, score
# 89.3: its misreads "lích", "nhãn", "thảng", "sứa" are all valid syllables).
_DOTS_READ_RIGHT = """HỘI ĐỒNG NHÂN DÂN XÃ ĐĂK RƠ WA
BÁO CÁO
Tình hình thu, chi ngân sách sáu tháng đấu năm
Sáu tháng đấu năm, tống thu ngân sách trên địa bàn đạt năm mươi tám
phần trăm dự toán được giao, tăng so với cùng kỳ năm trước chủ yếu nhờ
khoản thu tiến sử dụng đất của hai dự án khu dân cư. Chỉ thường xuyên bảo
Thu thuế, phí, lệ phí 1.240.000.000 731.500.000 59,0%
Chi đầu tư phát triển 2.600.000.000 1.118.000.000 43,0%"""
_DOTS_MISREAD = """V/V thông báo lích tiếp công dân
3. Đề nghị Ủy ban nhãn đãn huyện xem xét, hỗ trợ kinh phi đế xây dựng lại
Thực hiện Công vần số 637/UBND-NC ngày 1 thảng 4 nắm 2013 của Ủy ban nhân
dân huyện về việc sứa chữa trường mẫu giáo, Ủy ban nhân đân xã Tân Phú báo
1. Trong tháng 4, xã đã tiến nhận 44 hồ sơ, giải quyết đúng hạn 9 hỗ sơ;
việc Lưu trữ tài Liệu điện tử được thực hiện theo đúng quy định hiện hành.
2. Tại tố dân phố 3, ưa lớn kéo đài làm hư hỏng 31 mét kênh ương và một"""


def test_a_page_printed_in_dots_is_reviewed_unless_it_reads_as_type_read_right() -> None:
    def judge(text: str, confidence: float) -> quality.PageQuality:
        lines = [line.split() for line in text.splitlines()]
        words = [(t, confidence) for line in lines for t in line]
        return quality.assess(words, expect_text=True, lines=lines)

    right = judge(_DOTS_READ_RIGHT, 95.13)
    assert right.score >= quality.DOTTED_TRUSTED_SCORE and not right.review, right
    assert quality.review_dotted(right) == right  # sitting 6 reviewed it: every page in dots
    misread = judge(_DOTS_MISREAD, 91.67)
    # As type, the page passes every cut: its misreads are valid syllables.
    assert not misread.review, misread
    assert misread.score < quality.DOTTED_TRUSTED_SCORE
    dotted = quality.review_dotted(misread)
    assert dotted.review and dotted.reasons == ("dot_matrix",), dotted
