"""The only door to tesseract: version check, OCR of a page, orientation detection.

This module owns every run of the `tesseract` binary (CLI through subprocess, one process
per call) and turns its known failures into typed errors: `OcrUnavailable` (binary or
language data missing, with the apt command that fixes it) and `OcrFailed` (crash, timeout,
unreadable output). Nothing else in the project may spawn tesseract (there is no Python
binding in use).

It must not: touch page pixels (that is `agent.pipeline.imaging`), decide what a page is
(blank, low confidence: the pipeline decides), or write anywhere but a private temporary
directory.

Settings that come from measurements (docs/research/perf.md §B2, docs/design.md §8):
- `OMP_THREAD_LIMIT=1` always: Debian's build uses OpenMP and a page takes 11–12 s instead
  of 2.2 s on 2 cores without it; `OMP_NUM_THREADS` does not fix it (B2a).
- `--psm 3` (default) first: psm 6/4 are catastrophic on raw skewed pages (CER 15–22 %).
- `-c tessedit_do_invert=0`: our input is already black on white; saves ~7 % (B2).
- `vie` alone by default: `vie+eng` costs 20–50 % more time and adds errors on Vietnamese.
- `--user-words` with the abbreviations NĐ 30/2020 prescribes (`ADMIN_WORDS`) whenever `vie`
  is read: tesseract 5's LSTM decoder does use a user word list (through its word dawg).
  Measured, 8 pages per bench variant, mean CER without / with: clean 0.23 / 0.19 %,
  σ2 0.22 / 0.20, σ6 0.27 / 0.25, tinted + seal 0.19 / 0.12, rotated 0.16 / 0.08,
  200 dpi 0.16 / 0.12 (docs/benchmarks.md, Pipeline). It fixes "Lưu: VT, VP." misread as
  "VTE", "VI" — the line every document ends with.
- `recognize_lines`: images of one line each, `--psm 7`, all listed in one run (tesseract
  reads a file of image paths as pages: one process and one model load for every line).
  The pipeline's second pass reads its unsure lines this way.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from agent.errors import SohoaError

TESSERACT = "tesseract"
MIN_VERSION = (4, 1)  # LSTM engine; Debian 12 ships 5.3.0
DEFAULT_TIMEOUT_S = (
    120.0  # a dense A4 takes 2–3 s (docs/research/perf.md B2); 40× that is a hung process
)
RETRY_PSMS = (6, 11)  # tried in turn when psm 3 finds no text on a page that has marks
# NĐ 30/2020/NĐ-CP: Phụ lục III (abbreviated document kinds, as in "Số: 125/QĐ-UBND"),
# Phụ lục I (signing marks TM., KT., TL., TUQ., Q.; "Nơi nhận: ... Lưu: VT, ..."), and the
# issuing bodies every commune record names. Not the text of any test page: the words every
# Vietnamese administrative document uses. Tesseract reads them as extra dictionary words.
_ADMIN_WORDS = """
NQ QĐ CT QC QYĐ TC TB HD CTr KH PA ĐA DA BC BB TTr HĐ CĐ BGN BTT GUQ GM GGT GNP PG PC PB BSY
BTS BSL TM KT TL TUQ VT VP UBND HĐND MTTQ QĐ-UBND QĐ-CT NQ-HĐND NĐ-CP TT-BNV QĐ-TTg
"""
ADMIN_WORDS: tuple[str, ...] = tuple(_ADMIN_WORDS.split())
INSTALL_HINT = "apt install tesseract-ocr tesseract-ocr-vie"


class OcrError(SohoaError):
    """Base of the OCR errors."""


class OcrUnavailable(OcrError):
    """Tesseract or a language's data is not installed; `install_hint` says what to run."""

    def __init__(self, key: str, detail: str = "", install_hint: str = INSTALL_HINT) -> None:
        super().__init__(key, f"{detail} (install: {install_hint})", install_hint=install_hint)
        self.install_hint = install_hint


class OcrFailed(OcrError):
    """Tesseract ran but crashed, timed out or produced output we cannot read."""


# ----------------------------------------------------------------------------- start-up check


@dataclass(frozen=True)
class TesseractInfo:
    binary: str
    version: tuple[int, ...]
    version_text: str  # first line of `tesseract --version`
    languages: frozenset[str]
    openmp: bool  # the build uses OpenMP: OMP_THREAD_LIMIT=1 matters (docs/research/perf.md B2a)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_THREAD_LIMIT"] = "1"
    return env


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout_s,
            env=_env(),
            check=False,
        )
    except FileNotFoundError as exc:
        raise OcrUnavailable("ocr_unavailable", f"{args[0]} not found on PATH") from exc
    except PermissionError as exc:
        raise OcrUnavailable("ocr_unavailable", f"{args[0]} is not executable") from exc
    except subprocess.TimeoutExpired as exc:
        raise OcrFailed(
            "ocr_timeout", f"{' '.join(args[:2])} took more than {timeout_s} s"
        ) from exc


def package_for(language: str) -> str:
    """Debian package holding a tesseract language: `chi_sim` → `tesseract-ocr-chi-sim`."""
    return "tesseract-ocr-" + language.lower().replace("_", "-")


@functools.lru_cache(maxsize=8)
def tesseract_info(binary: str = TESSERACT) -> TesseractInfo:
    """Version and installed languages of `binary` (cached: start-up cost paid once)."""
    if shutil.which(binary) is None:
        raise OcrUnavailable("ocr_unavailable", f"{binary} not found on PATH")
    version_run = _run([binary, "--version"], 30)
    # tesseract 4.x printed its version on stderr, 5.x on stdout.
    version_out = version_run.stdout + version_run.stderr
    match = re.search(r"tesseract\s+v?(\d+)\.(\d+)(?:\.(\d+))?", version_out)
    if version_run.returncode != 0 or match is None:
        raise OcrUnavailable("ocr_unavailable", f"{binary} --version gave {version_out[:200]!r}")
    version = tuple(int(g) for g in match.groups() if g is not None)
    if version[:2] < MIN_VERSION:  # compare numbers, never strings
        raise OcrUnavailable(
            "ocr_unavailable", f"tesseract {match.group(0)} is older than 4.1 (no LSTM engine)"
        )
    langs_run = _run([binary, "--list-langs"], 30)
    lines = (langs_run.stdout + langs_run.stderr).splitlines()
    languages = frozenset(
        line.strip() for line in lines if line.strip() and not line.startswith("List of")
    )
    first_line = version_out.strip().splitlines()[0]
    return TesseractInfo(binary, version, first_line, languages, "OpenMP" in version_out)


def require(languages: str = "vie", binary: str = TESSERACT) -> TesseractInfo:
    """Check at start-up that tesseract and every language of `vie+eng`-style spec exist."""
    info = tesseract_info(binary)
    wanted = [lang for lang in languages.split("+") if lang]
    missing = [lang for lang in wanted if lang not in info.languages]
    if not wanted or missing:
        hint = "apt install " + " ".join(package_for(lang) for lang in missing or ["vie"])
        raise OcrUnavailable(
            "ocr_language_missing",
            f"tesseract has no data for {'+'.join(missing) or languages!r}; "
            f"installed: {', '.join(sorted(info.languages))}",
            install_hint=hint,
        )
    return info


# ----------------------------------------------------------------------------- recognition


@dataclass(frozen=True)
class Word:
    text: str  # NFC
    conf: float  # 0..100, tesseract's word confidence
    box: tuple[int, int, int, int]  # left, top, width, height in pixels of the OCR image
    line: tuple[int, int, int]  # block, paragraph, line numbers: words of one line share it


@dataclass(frozen=True)
class OcrResult:
    text: str  # UTF-8 text, NFC, lines as tesseract laid them out
    words: tuple[Word, ...]
    mean_confidence: float  # mean word confidence 0..100; 0.0 when there are no words
    languages: str
    psm: int  # the segmentation mode that produced this result
    attempts: tuple[int, ...]  # every psm tried, in order (more than one: the retry path)
    seconds: float  # wall time of all attempts
    tesseract_version: str
    user_words: int = 0  # words of ADMIN_WORDS given to tesseract (0: the language is not vie)

    @property
    def retried(self) -> bool:
        return len(self.attempts) > 1


# Letters tesseract's `vie` model writes that Vietnamese has not: the Icelandic eth (Ð ð,
# U+00D0/U+00F0) is drawn as Đ đ (U+0110/U+0111), and the model reads a Đ as "ĐÐ" now and
# then (tests/records: "63/QĐÐ-UBND" on three pages, from plain tesseract and from us alike).
# Vietnamese never writes two Đ in a row, so the doubled reading is one Đ; a lone eth is a Đ.
# Likewise the fraction slash (U+2044), which `vie` writes now and then for the "/" of a
# date or a document number ("18⁄11", "05/11⁄1977": tests/records dot_matrix, margin_notes,
# from plain tesseract and OCRmyPDF too): no keyboard types it, records write "/", and a
# search for "18/11" would not find "18⁄11". It is read as the solidus.
_ETH = str.maketrans({"Ð": "Đ", "ð": "đ", "\u2044": "/"})


def vietnamese_letters(text: str) -> str:
    """`text` with the eth tesseract writes for Đ/đ made Đ/đ, a doubled "ĐÐ" made one Đ, and
    the fraction slash made "/"."""
    if "Ð" not in text and "ð" not in text and "\u2044" not in text:
        return text
    return text.replace("ĐÐ", "Đ").replace("đð", "đ").translate(_ETH)


def parse_tsv(tsv: str) -> tuple[Word, ...]:
    """Word rows (level 5) of tesseract's TSV; empty or whitespace-only words are dropped."""
    words = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t", 11)
        if len(cols) < 12 or cols[0] != "5":
            continue
        text = vietnamese_letters(unicodedata.normalize("NFC", cols[11].strip()))
        if not text:
            continue
        try:
            conf = float(cols[10])
            left, top, width, height = (int(c) for c in cols[6:10])
            line = (int(cols[2]), int(cols[3]), int(cols[4]))
        except ValueError as exc:
            raise OcrFailed("ocr_failed", f"unreadable TSV row {row!r}") from exc
        words.append(Word(text, max(conf, 0.0), (left, top, width, height), line))
    return tuple(words)


def _clean_text(raw: str) -> str:
    text = vietnamese_letters(unicodedata.normalize("NFC", raw.replace("\f", "")))
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


def _recognize_once(
    image: Path, languages: str, psm: int, dpi: int | None, timeout_s: float, binary: str
) -> tuple[str, tuple[Word, ...]]:
    with tempfile.TemporaryDirectory(prefix="sohoa-ocr-") as tmp:
        # One run, two renderers: word boxes and confidences (tsv) and laid-out text (txt).
        tsv, txt = _tesseract(
            image, Path(tmp), languages, psm, dpi, ("tsv", "txt"), timeout_s, binary
        )
    return _clean_text(txt), parse_tsv(tsv)


def _tesseract(
    source: Path,
    tmp: Path,
    languages: str,
    psm: int,
    dpi: int | None,
    renderers: tuple[str, ...],
    timeout_s: float,
    binary: str,
) -> list[str]:
    """Run tesseract on ``source`` (an image, or a file listing images) into ``tmp``; the
    output of each renderer, in order. The administrative words go along with ``vie``."""
    base = tmp / "out"
    args = [binary, str(source), str(base), "-l", languages, "--psm", str(psm)]
    if dpi:
        args += ["--dpi", str(dpi)]
    if "vie" in languages.split("+"):
        user_words = tmp / "admin-words.txt"
        user_words.write_text("\n".join(ADMIN_WORDS) + "\n", encoding="utf-8")
        args += ["--user-words", str(user_words)]
    args += ["-c", "tessedit_do_invert=0", *renderers]
    run = _run(args, timeout_s)
    if run.returncode != 0:
        raise OcrFailed(
            "ocr_failed", f"tesseract exit {run.returncode}: {run.stderr.strip()[-500:]}"
        )
    try:
        return [base.with_suffix(f".{r}").read_text(encoding="utf-8") for r in renderers]
    except OSError as exc:
        raise OcrFailed("ocr_failed", f"tesseract wrote no output: {exc}") from exc


def recognize(
    image: Path,
    *,
    languages: str = "vie",
    dpi: int | None = None,
    expect_text: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    binary: str = TESSERACT,
    psm: int = 3,
) -> OcrResult:
    """OCR one page image with `psm` (3: tesseract's page layout); retry with psm 6, then 11,
    if it finds no text.

    `expect_text=False` (the page was judged blank) skips the retry: an empty result is then
    the right answer. `dpi` is passed on because our PNGs carry no resolution metadata.
    `psm=6, expect_text=False`: the page read once as one block of text.
    """
    info = require(languages, binary)
    started = time.perf_counter()
    attempts: list[int] = []
    text: str = ""
    words: tuple[Word, ...] = ()
    for attempt in (psm, *RETRY_PSMS):
        attempts.append(attempt)
        text, words = _recognize_once(image, languages, attempt, dpi, timeout_s, binary)
        if text.strip() or not expect_text:
            break
    mean = sum(w.conf for w in words) / len(words) if words else 0.0
    return OcrResult(
        text=text,
        words=words,
        mean_confidence=round(mean, 2),
        languages=languages,
        psm=attempts[-1],
        attempts=tuple(attempts),
        seconds=round(time.perf_counter() - started, 3),
        tesseract_version=info.version_text,
        user_words=len(ADMIN_WORDS) if "vie" in languages.split("+") else 0,
    )


def reading_order(result: OcrResult) -> tuple[OcrResult, int]:
    """`result` with its blocks in reading order, and how many blocks moved.

    Tesseract's page layout (psm 3) sometimes emits a block after one that lies below it in
    the same column: on bench foreign's clean-4 (Chromium, Noto Serif) the centred heading
    "BÁO CÁO" and its subtitle came after the first paragraph under them — every letter
    right, 11.8 % CER, and a text whose heading reads as the paragraph's last line. Here a
    block goes before every block it lies wholly above while sharing some of its width
    (a column); blocks side by side (a record's two-column header, a margin note, table
    columns) keep tesseract's order, which otherwise stands (the first block tesseract gave
    among those free to go next). Only psm 3 readings: a retry's (psm 6: one block; psm 11:
    scattered words) have no layout to mend. The text is rebuilt from the words when a block
    moves (a line per line, a blank line between paragraphs, as tesseract lays it out).
    """
    if result.psm != 3:
        return result, 0
    blocks: dict[int, list[Word]] = {}
    for w in result.words:
        blocks.setdefault(w.line[0], []).append(w)
    order = list(blocks)
    if len(order) < 2:
        return result, 0
    box = {}
    for b, words in blocks.items():
        box[b] = (min(w.box[0] for w in words), min(w.box[1] for w in words),
                  max(w.box[0] + w.box[2] for w in words),
                  max(w.box[1] + w.box[3] for w in words))  # fmt: skip

    def above(a: int, b: int) -> bool:
        left_a, _, right_a, bottom_a = box[a]
        left_b, top_b, right_b, _ = box[b]
        return bottom_a <= top_b and min(right_a, right_b) > max(left_a, left_b)

    # Kahn's sort, tesseract's order among the free: "above" implies a lower top, so there
    # is no cycle and the topmost of the blocks left is always free.
    waiting = {b: sum(above(a, b) for a in order if a != b) for b in order}
    placed: list[int] = []
    left = list(order)
    while left:
        b = next(b for b in left if waiting[b] == 0)
        left.remove(b)
        placed.append(b)
        for other in left:
            if above(b, other):
                waiting[other] -= 1
    if placed == order:
        return result, 0
    moved = sum(a != b for a, b in zip(placed, order, strict=True))
    ordered = tuple(w for b in placed for w in blocks[b])
    return replace(result, text=_laid_out(ordered), words=ordered), moved


# Two lines of a reading whose word boxes cover more than READ_TWICE_OVERLAP of the smaller
# one's, and whose letters (folded) match for at least READ_TWICE_SAME_LETTERS of the shorter
# one's, are one line of ink read twice (`drop_lines_read_twice`).
READ_TWICE_OVERLAP = 0.5
READ_TWICE_SAME_LETTERS = 0.6


def drop_lines_read_twice(
    result: OcrResult, key: Callable[[list[Word]], tuple[float, ...]]
) -> tuple[OcrResult, int]:
    """`result` without the lines that read again the ink another line of it reads, and how
    many went. Of two such lines the one `key` ranks lower goes (the caller's measure of a
    reading: readable tokens, then confidence).

    Tesseract's layout sometimes makes two blocks of one line of faint or folded type, and the
    second reads the same letters worse: bench foreign low_ink-7 (seeds 6–11, fifteenth
    sitting) gave "Tài liệu này dành cho công chức văn phòng - thống kê khi được giao quét
    các" and, over the same words, "1 nay danh cho công chức van phong - thong kê km dược
    Ø1ao quét các": 6.2 % CER with it, 0.2 % without. Lines that overlap with other letters
    are two lines of ink pressed together (low_ink-8: "Tôn tại: một số khoản thu…" over
    "… độ giải ngân vốn đầu tư…"), and both stay. On both corpora's seeds 0–11 no page under
    2 % CER had lines read twice.
    """
    lines: dict[tuple[int, int, int], list[Word]] = {}
    for w in result.words:
        lines.setdefault(w.line, []).append(w)
    keys = list(lines)
    area = {k: sum(w.box[2] * w.box[3] for w in lines[k]) or 1 for k in keys}
    span = {k: _union([w.box for w in lines[k]]) for k in keys}
    dropped: set[tuple[int, int, int]] = set()
    for n, a in enumerate(keys):
        for b in keys[n + 1 :]:
            if a in dropped or b in dropped or not _shared_area(span[a], span[b]):
                continue
            shared = sum(_shared_area(x.box, y.box) for x in lines[a] for y in lines[b])
            if shared <= READ_TWICE_OVERLAP * min(area[a], area[b]):
                continue
            if _same_letters(lines[a], lines[b]) < READ_TWICE_SAME_LETTERS:
                continue
            dropped.add(a if key(lines[a]) < key(lines[b]) else b)
    if not dropped:
        return result, 0
    kept = tuple(w for w in result.words if w.line not in dropped)
    confidence = sum(w.conf for w in kept) / len(kept) if kept else 0.0
    return replace(
        result, text=_laid_out(kept), words=kept, mean_confidence=round(confidence, 2)
    ), len(dropped)


# A word read again that covers this share of its box with a word the reading has is ink
# read already (`insert_words`), not text left out.
INSERT_OVER_READ = 0.3


def insert_words(result: OcrResult, words: list[Word]) -> tuple[OcrResult, int]:
    """`result` with `words` (boxes in its pixels; their line keys are not used) put into
    the line each lies on, in order of left edges, and how many were put. A word's line is
    one whose rows (`_core`) cover at least half of the word's height, the nearest across if
    several. A word on no line of the reading is left out (its place in the text is
    unknown), and so is one over a word the reading has (INSERT_OVER_READ of its box or
    more): ink read already."""
    lines: dict[tuple[int, int, int], list[Word]] = {}
    for w in result.words:
        lines.setdefault(w.line, []).append(w)
    span = {k: _core([w.box for w in ws]) for k, ws in lines.items()}
    put = 0
    for word in words:
        left, height = word.box[0], word.box[3]
        own = max(1, word.box[2] * height)
        if any(_shared_area(word.box, w.box) >= INSERT_OVER_READ * own for w in result.words):
            continue
        reach = {k: _reach(word.box, span[k]) for k in lines}
        near = [k for k in lines if 2 * reach[k][0] >= height]
        if not near:
            continue
        key = min(near, key=lambda k: reach[k][1])
        line = lines[key]
        at = next((n for n, w in enumerate(line) if w.box[0] > left), len(line))
        line.insert(at, replace(word, line=key))
        put += 1
    if not put:
        return result, 0
    ordered = tuple(w for ws in lines.values() for w in ws)
    confidence = sum(w.conf for w in ordered) / len(ordered)
    return replace(
        result, text=_laid_out(ordered), words=ordered, mean_confidence=round(confidence, 2)
    ), put


def _core(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """A line's box across all its words, and down its words' median top to median bottom: a
    tall mark read into the line (a stamp's edge, a clump of noise) does not stretch it."""
    left, _, width, _ = _union(boxes)
    tops = sorted(b[1] for b in boxes)
    bottoms = sorted(b[1] + b[3] for b in boxes)
    top, bottom = tops[len(tops) // 2], bottoms[len(bottoms) // 2]
    return left, top, width, max(1, bottom - top)


def _reach(word: tuple[int, int, int, int], line: tuple[int, int, int, int]) -> tuple[int, int]:
    """How many of the word's rows the line's box covers, and how far apart they are across."""
    left, top, width, height = word
    x, y, w, h = line
    rows = min(top + height, y + h) - max(top, y)
    return rows, max(0, x - (left + width), left - (x + w))


def _union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return left, top, right - left, bottom - top


def _shared_area(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, width) * max(0, height)


def _same_letters(a: list[Word], b: list[Word]) -> float:
    """The share of the shorter line's letters (folded: no marks, no case) found, in order,
    in the other."""
    first = _folded(" ".join(w.text for w in a))
    second = _folded(" ".join(w.text for w in b))
    matcher = difflib.SequenceMatcher(None, first, second, autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks())
    return same / max(1, min(len(first), len(second)))


def _laid_out(words: tuple[Word, ...]) -> str:
    """The words as tesseract lays its text out: a line per line, in order, and a blank line
    where the paragraph changes."""
    lines: dict[tuple[int, int, int], list[str]] = {}
    for w in words:
        lines.setdefault(w.line, []).append(w.text)
    keys = list(lines)
    text: list[str] = []
    for n, key in enumerate(keys):
        if n and key[:2] != keys[n - 1][:2]:
            text.append("")
        text.append(" ".join(lines[key]))
    return "\n".join(text)


# NĐ 30/2020 (Phụ lục I) lays every administrative document's head out in two columns on the
# same lines — the issuing body and the number on the left, the national motto (quốc hiệu,
# tiêu ngữ) and the place and date on the right — and its foot likewise ("Nơi nhận" on the
# left, the signer on the right). Tesseract reads such lines across the page ("ỦY BAN NHÂN
# DÂN CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Số: 125/QĐ-UBND Tân Lập, ngày 12 tháng 3 năm
# 2019"): each column's text is cut into pieces, and a search for "Ủy ban nhân dân xã Tân
# Lập" finds nothing. A line is split where the gap between two of its words is at least
# COLUMN_GAP times its height (words stand ~0.3 heights apart, justified ones up to ~1).
COLUMN_GAP = 3.0
# The line that starts a head (its right part the national motto): the issuing body's name,
# short and centred in its column, may end close to the motto. The embedded sample
# quyet-dinh-125 has 148 px between "DÂN" and "CỘNG" under 52-px capitals (2.85 heights),
# and its first line stayed "ỦY BAN NHÂN DÂN CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM". Words of
# prose stand 0.2–1 height apart; the motto in the right part is the rest of the proof.
HEAD_GAP = 2.0
_HEAD_RIGHT = ("cong hoa", "doc lap", "dan chu cong hoa")  # quốc hiệu, tiêu ngữ (folded)
_FOOT_LEFT = ("noi nhan",)


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def nd30_columns(result: OcrResult) -> tuple[OcrResult, int]:
    """`result` with a document head and foot laid out in NĐ 30's two columns read column
    by column (the left column's lines, then the right's), and how many lines were split.

    A run starts at a line with one wide gap (COLUMN_GAP; HEAD_GAP when the part after it
    holds the national motto) whose right part holds the motto, or whose left part opens
    with "Nơi nhận"; it goes on while lines have one such gap across the same gutter, or lie
    wholly on one side of it, and ends at the first line that crosses it (the document's
    title, its body). Other lines with wide gaps — a table's rows,
    a form's "label    value" — are left as tesseract read them: their rows are the reading.
    Readings by page layout (psm 3) or as one block (psm 6) have lines to
    split; a retry's scattered words (psm 11) have not.
    """
    if result.psm not in (3, 6) or not result.words:  # page layout or one block: lines
        return result, 0
    lines: dict[tuple[int, int, int], list[Word]] = {}
    for w in result.words:
        lines.setdefault(w.line, []).append(w)
    keys = list(lines)

    def split(words: list[Word], gap: float = COLUMN_GAP) -> tuple[int, int, int] | None:
        """(index of the first right word, gutter left, gutter right) of a line with one
        wide gap (``gap`` times its words' median height), else None."""
        height = sorted(w.box[3] for w in words)[len(words) // 2]
        wide = [
            i
            for i in range(1, len(words))
            if words[i].box[0] - (words[i - 1].box[0] + words[i - 1].box[2]) >= gap * height
        ]
        if len(wide) != 1:
            return None
        i = wide[0]
        return i, words[i - 1].box[0] + words[i - 1].box[2], words[i].box[0]

    def across(words: list[Word], middle: float) -> tuple[int, int, int] | None:
        """The line's cut across a run's gutter (its ``middle``): a wide gap, or in a head a
        gap of ``HEAD_GAP`` heights there."""
        for gap in (COLUMN_GAP, HEAD_GAP):
            cut = split(words, gap)
            if cut is not None and cut[1] <= middle <= cut[2]:
                return cut
        return None

    def text_of(words: list[Word]) -> str:
        return _folded(" ".join(w.text for w in words))

    order: list[tuple[tuple[int, int, int], list[Word]]] = []
    split_lines = 0
    n = 0
    while n < len(keys):
        key = keys[n]
        words = lines[key]
        cut = split(words)
        head = split(words, HEAD_GAP)
        if head is not None and any(m in text_of(words[head[0] :]) for m in _HEAD_RIGHT):
            cut = head
        starts = cut is not None and (
            any(m in text_of(words[cut[0] :]) for m in _HEAD_RIGHT)
            or text_of(words[: cut[0]]).startswith(_FOOT_LEFT)
        )
        if cut is None or not starts:
            order.append((key, words))
            n += 1
            continue
        middle = (cut[1] + cut[2]) / 2
        left: list[tuple[tuple[int, int, int], list[Word]]] = []
        right: list[tuple[tuple[int, int, int], list[Word]]] = []
        while n < len(keys):
            key = keys[n]
            words = lines[key]
            cut = across(words, middle)
            if cut is not None:
                left.append((key, words[: cut[0]]))
                right.append(((key[0], key[1] + 1000, key[2]), words[cut[0] :]))
                split_lines += 1
            elif all(w.box[0] + w.box[2] <= middle for w in words):
                left.append((key, words))
            elif all(w.box[0] >= middle for w in words):
                right.append(((key[0], key[1] + 1000, key[2]), words))
            else:
                break
            n += 1
        order += left + right
    if not split_lines:
        return result, 0
    ordered = tuple(
        w if w.line == key else replace(w, line=key) for key, words in order for w in words
    )
    return replace(result, text=_laid_out(ordered), words=ordered), split_lines


def recognize_lines(
    images: list[Path],
    *,
    languages: str = "vie",
    dpi: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    binary: str = TESSERACT,
) -> list[tuple[Word, ...]]:
    """OCR images that each hold one text line (`--psm 7`), all in one tesseract run.

    Tesseract reads a file listing image paths as a multi-page input: one process and one
    model load for every line (a process start costs ~0.1 s, a line ~50 ms). Returns the
    words of each image, in order (boxes in that image's pixels; an unread line: no words).
    """
    require(languages, binary)
    if not images:
        return []
    with tempfile.TemporaryDirectory(prefix="sohoa-ocr-") as tmp:
        listing = Path(tmp) / "lines.txt"
        listing.write_text("".join(f"{path}\n" for path in images), encoding="utf-8")
        (tsv,) = _tesseract(listing, Path(tmp), languages, 7, dpi, ("tsv",), timeout_s, binary)
    by_image: list[list[str]] = [[] for _ in images]
    header, *rows = tsv.splitlines() or [""]
    for row in rows:
        page = row.split("\t", 2)[1] if row.count("\t") >= 2 else ""
        if page.isdigit() and 1 <= int(page) <= len(images):
            by_image[int(page) - 1].append(row)
    return [parse_tsv("\n".join([header, *lines])) for lines in by_image]


# ----------------------------------------------------------------------------- orientation


@dataclass(frozen=True)
class OsdResult:
    turn_cw: int  # 0/90/180/270: clockwise turn that makes the text upright
    confidence: float  # tesseract's orientation confidence (unbounded, > 2 is usable)
    script: str


def has_osd(binary: str = TESSERACT) -> bool:
    return "osd" in tesseract_info(binary).languages


def detect_orientation(
    image: Path, *, dpi: int | None = None, timeout_s: float = 30.0, binary: str = TESSERACT
) -> OsdResult:
    """Tesseract's orientation and script detection (`--psm 0`, ~0.5 s on a half page).

    Too little text is not an error: the answer is "no turn, confidence 0".
    """
    info = tesseract_info(binary)
    if "osd" not in info.languages:
        raise OcrUnavailable(
            "ocr_language_missing", "no osd data", install_hint="apt install tesseract-ocr-osd"
        )
    args = [binary, str(image), "-", "--psm", "0"]
    if dpi:
        args += ["--dpi", str(dpi)]
    run = _run(args, timeout_s)
    out = run.stdout + run.stderr
    rotate = re.search(r"Rotate:\s*(\d+)", out)
    conf = re.search(r"Orientation confidence:\s*([\d.]+)", out)
    script = re.search(r"Script:\s*(\S+)", out)
    if rotate is None or conf is None:
        if "Too few characters" in out or run.returncode == 0:
            return OsdResult(0, 0.0, "")
        raise OcrFailed("ocr_failed", f"tesseract --psm 0 exit {run.returncode}: {out[-500:]}")
    return OsdResult(
        int(rotate.group(1)) % 360, float(conf.group(1)), script.group(1) if script else ""
    )
