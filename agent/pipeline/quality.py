"""How plausible an OCR reading is as Vietnamese: a check that does not trust tesseract alone.

Tesseract's confidence is not a quality measure (DESIGN.md §4: 83–95 % reported for text
26–50 % wrong). Written Vietnamese is a closed inventory of syllables: an onset, a rhyme
(medial + nucleus + coda) and one tone, with spelling and tone rules regular enough to check
by rule. A misread rarely stays inside that inventory ("1ưu", "Viêc" — a stop coda needs a
sắc or nặng tone —, "tàl", "ngiệp"), so the share of tokens that are valid syllables,
numbers, document codes (`127-KL/TW`, `123/QĐ-UBND`) or known abbreviations is a garbage
detector; combined with the word confidences it gives the page score the pipeline records
(`decisions["quality"]`) and the `review` flag staff filter on.

This module owns that judgement and nothing else: pure functions over text and
(text, confidence) pairs; no image, no tesseract, no file. The syllable rules are checked
against Debian's hunspell-vi list (tests/test_quality.py): every syllable there that is
Vietnamese (not a loan word or an abbreviation) passes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

# Tones as combining marks once a syllable is decomposed (NFD): huyền, sắc, hỏi, ngã, nặng.
_TONES = {"\u0300": "huyen", "\u0301": "sac", "\u0309": "hoi", "\u0303": "nga", "\u0323": "nang"}
_ONSETS = (
    "ngh", "ng", "nh", "ch", "gh", "gi", "kh", "ph", "qu", "th", "tr",
    "b", "c", "d", "đ", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "x",
)  # fmt: skip
# Rhymes without their tone, vowel letters with circumflex, breve and horn kept (NFC).
_RHYME_LIST = """
    a ac ach ai am an ang anh ao ap at au ay
    ăc ăm ăn ăng ăp ăt
    âc âm ân âng âp ât âu ây
    e ec em en eng eo ep et
    ê êch êm ên êng ênh êp êt êu
    i ia ich iêc iêm iên iêng iêp iêt iêu im in inh ip it iu
    o oa oac oach oai oam oan oang oanh oao oap oat oay oăc oăm oăn oăng oăt oc oe oem oen
    oeo oet oi om on ong ooc oong op ot
    ô ôc ôi ôm ôn ông ôp ôt
    ơ ơi ơm ơn ơp ơt
    u ua uân uâng uât uây uc uê uêch uênh uêt ui um un ung uơ uôc uôi uôm uôn uông uôt up ut
    uy uya uych uyên uyêt uyn uynh uyp uyt uyu
    ư ưa ưc ưi ưm ưn ưng ươc ươi ươm ươn ương ươp ươt ươu ưt ưu
    y yêm yên yêng yêt yêu
"""
_RHYMES = frozenset(_RHYME_LIST.split())
_STOP_CODAS = ("c", "ch", "p", "t")  # only sắc or nặng on these (a closed, checked syllable)
_FRONT = ("i", "e", "ê", "y")  # k, gh, ngh before these; c, g, ng never

# Abbreviations a commune record uses beside the document kinds (agent.ocr.ADMIN_WORDS, the
# NĐ 30/2020 list, is checked too): signing marks, places, units.
_ABBREVIATION_LIST = """
    V/v TM KT TL TUQ Q UBND HĐND MTTQ NĐ-CP TT TT-BNV STT TP Tp TX H X P Ô Bà Ông VT VP ĐC TP
    VHXH CP TW KL BCH ĐU ĐB HTX THCS THPT TNHH CMND CCCD GCN QSD QSDĐ BHYT BHXH ĐT ĐVT
"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_LIST.split())
# A trailing % is a number too: a report's "59,0%" (bench/foreign.py's budget table: every
# share in it counted invalid, 5 of 195 tokens on a page read without an error).
_NUMBER = re.compile(r"^[0-9]+([.,:/-][0-9]+)*%?$")
# A date as records write it (ngày 05/11/1977, 05-11-1977, 05.11.1977): a day and a month
# that cannot be, or a year no record of a commune carries, are a misread — dotted and faded
# digits go 0 → 8 or 9 ("19/64/1977", "12/98/2998" on dot-matrix pages), and a number that
# is wrong is otherwise invisible to a plausibility check.
_DATE = re.compile(r"^([0-9]{1,2})([/.-])([0-9]{1,2})\2([0-9]{4})$")
DATE_YEARS = (1800, 2099)
# A document code: digit groups and upper-case groups joined by / or -, at least one of each
# (123/QĐ-UBND, 127-KL/TW, 30/2020/NĐ-CP, 05/2025/TT-BNV).
_CODE_PART = r"(?:[0-9]+|[A-ZĐ][A-ZĐa-z]*)"
_CODE = re.compile(rf"^{_CODE_PART}(?:[/-]{_CODE_PART})+$")
_EDGE_PUNCT = "\"'“”‘’()[]{}«»<>.,;:!?…*/-–"
# Punctuation a record writes standing alone: dashes of lists and "Độc lập - Tự do", the
# "./." that ends a document, "…", a table's "|" (ruled cells). Any other lone symbol
# ("`", "}", "^", "@", "©", "⁄") is what OCR makes of a stroke, a stamp or a smudge.
_LONE_PUNCT = frozenset(["-", "–", "—", "+", "./.", "/.", "…", "|", "*", ":", ";", ",", "."])


def _strip(token: str) -> str:
    return token.strip(_EDGE_PUNCT)


def _plain(token: str) -> bool:
    """Only sentence punctuation: "...", ",", ";" and the like."""
    return all(ch in ".,;:!?…" for ch in token)


def syllable_ok(word: str) -> bool:
    """Whether `word` (one syllable, any case, NFC or not) is a valid Vietnamese syllable."""
    decomposed = unicodedata.normalize("NFD", word.lower())
    tones = [ch for ch in decomposed if ch in _TONES]
    if len(tones) > 1:
        return False
    bare = unicodedata.normalize("NFC", "".join(ch for ch in decomposed if ch not in _TONES))
    if not bare or not bare.isalpha():
        return False
    tone = _TONES[tones[0]] if tones else "ngang"
    for onset in (*_ONSETS, ""):
        if not bare.startswith(onset):
            continue
        rhyme = bare[len(onset) :]
        if onset == "gi" and (rhyme == "" or rhyme[0] not in "iy"):
            # gi + a rhyme (gia, giữa, giếng: the i of "iê" is gi's own), or g + i (gì).
            rhyme = rhyme or "i"
            if rhyme not in _RHYMES and "i" + rhyme not in _RHYMES:
                continue
        elif onset == "qu":
            # qu's u is the medial: quê, quyển, quốc keep their rhyme after it.
            if rhyme not in _RHYMES and "u" + rhyme not in _RHYMES:
                continue
        elif rhyme not in _RHYMES:
            continue
        if not _spelling_ok(onset, rhyme):
            continue
        if any(rhyme.endswith(c) for c in _STOP_CODAS) and tone not in ("sac", "nang"):
            continue
        return True
    return False


# Names of the highland peoples' places and people (Ê Đê, Gia Rai, Ba Na, Mnông, Xơ Đăng…) are
# written in Vietnamese letters with sounds the national syllable lacks: a k coda (Đắk Lắk, Đăk
# Rơ Wa — bench/foreign.py's "HỘI ĐỒNG NHÂN DÂN XÃ ĐĂK RƠ WA" counted two invalid tokens on a
# page read without an error), a w onset (Wa) and a consonant before r or l (Krông, Kon Plông).
# Accepted only in a name's spelling, Capitalised or UPPER (`name_ok`): lower-case "wa" is
# still a misread. Not f, j, z (Jrai, Ja): in our readings of both corpora they were
# tesseract's garbage ("Ji", "JÃ", "Fam") 17 times and a name never.
_NAME_ONSETS = ("w", *(c + liquid for c in "bdgkp" for liquid in "rl"))
_NAME_RHYMES = frozenset(r[:-1] + "k" for r in _RHYMES if r.endswith("c") and not r.endswith("ch"))


def name_ok(word: str) -> bool:
    """Whether `word` (one syllable, Capitalised or UPPER) is a valid syllable or one of a highland
    name's (`_NAME_ONSETS`, `_NAME_RHYMES`): Đăk, Lắk, Wa, Krông."""
    if syllable_ok(word):
        return True
    if not (word.isupper() or (word[:1].isupper() and word[1:].islower())):
        return False
    decomposed = unicodedata.normalize("NFD", word.lower())
    tones = [ch for ch in decomposed if ch in _TONES]
    bare = unicodedata.normalize("NFC", "".join(ch for ch in decomposed if ch not in _TONES))
    if len(tones) > 1 or not bare.isalpha():
        return False
    for onset in (*_NAME_ONSETS, *_ONSETS, ""):
        if bare.startswith(onset):
            rhyme = bare[len(onset) :]
            if rhyme in _NAME_RHYMES or (onset in _NAME_ONSETS and rhyme in _RHYMES):
                return True
    return False


def _spelling_ok(onset: str, rhyme: str) -> bool:
    front = rhyme[:1] in _FRONT
    if onset in ("k", "gh", "ngh"):
        return front
    if onset in ("c", "ng") or (onset == "g" and rhyme[:1] != "i"):
        return not front
    return True


def date_ok(token: str) -> bool:
    """False for a token shaped as a date (day, month, four-digit year) that cannot be one;
    True for any other token."""
    match = _DATE.match(token)
    if not match:
        return True
    day, month, year = int(match[1]), int(match[3]), int(match[4])
    return 1 <= day <= 31 and 1 <= month <= 12 and DATE_YEARS[0] <= year <= DATE_YEARS[1]


def _cased(word: str) -> bool:
    """lower, Capitalised or UPPER: OCR's "ĐỊnh" or "tHanh" is none of them."""
    return word.islower() or word.isupper() or (word[:1].isupper() and word[1:].islower())


def token_kind(token: str) -> str:
    """ "syllable", "number", "code", "abbreviation", "punctuation" or "invalid"."""
    bare = _strip(token)
    if not bare or not any(ch.isalnum() for ch in bare):
        return "punctuation" if token in _LONE_PUNCT or (not bare and _plain(token)) else "junk"
    if _NUMBER.match(bare):
        return "number" if date_ok(bare) else "invalid"
    if bare in _ABBREVIATIONS or (bare.upper() in _ABBREVIATIONS and bare.isupper()):
        return "abbreviation"
    if _CODE.match(bare) and any(c.isdigit() for c in bare):
        return "code"
    if re.fullmatch(r"[0-9]+[a-zđ]?", bare):  # 3a, 12b: sub-item numbers
        return "number"
    parts = re.split(r"[-/]", bare)
    if all(p and _cased(p) and name_ok(p) for p in parts):
        return "syllable"
    if len(parts) > 1 and all(
        p and (p in _ABBREVIATIONS or _NUMBER.match(p) or (_cased(p) and syllable_ok(p)))
        for p in parts
    ):
        return "code"  # a hyphenated name of a unit with an abbreviation in it
    return "invalid"


@dataclass(frozen=True)
class Plausibility:
    tokens: int  # tokens that count (punctuation does not)
    valid: int  # of those: syllables, numbers, codes, abbreviations
    share: float  # valid / tokens, by characters (a long garbage token weighs more), 0..1
    invalid_examples: tuple[str, ...]  # up to 8, for the decisions record


def plausibility(tokens: Iterable[str]) -> Plausibility:
    """How much of a reading is written Vietnamese (plus numbers, codes, abbreviations)."""
    counted = valid = 0
    weight_all = weight_valid = 0
    bad: list[str] = []
    for token in tokens:
        kind = token_kind(token)
        if kind == "punctuation":
            continue
        weight = max(1, len(_strip(token)))
        counted += 1
        weight_all += weight
        if kind in ("invalid", "junk"):
            if len(bad) < 8:
                bad.append(token)
        else:
            valid += 1
            weight_valid += weight
    share = weight_valid / weight_all if weight_all else 0.0
    return Plausibility(counted, valid, round(share, 4), tuple(bad))


def text_tokens(text: str) -> list[str]:
    return unicodedata.normalize("NFC", text).split()


# ----------------------------------------------------------------------------- page score

# A page is sent for review when any of these holds (calibrated on the records corpus,
# docs/benchmarks.md "OCR per class"; every page over 5 % CER must trip one, no page under
# 1 % may). On its 45 pages (seeds 0–2): pages under 1 % CER had a share ≥ 0.985, a mean
# confidence ≥ 93.6 and ≤ 1.2 % unsure words; pages over 5 % a share ≤ 0.85, a confidence
# ≤ 85.7 and ≥ 11 % unsure words. The cuts sit between, nearer the bad side for the share
# (a page of names and codes may hold a few loan words).
REVIEW_SHARE_BELOW = 0.93  # under this share of valid tokens the text is likely wrong
REVIEW_CONFIDENCE_BELOW = 85.0  # mean word confidence (0–100)
REVIEW_UNSURE_SHARE = 0.1  # share of words tesseract itself rated under UNSURE_WORD
UNSURE_WORD = 60.0
MIN_TOKENS = 8  # fewer tokens than this on a page with marks: OCR found (almost) no text
# The score (share × confidence) under this: each signal near its own cut, together they
# say the text is wrong. Pages this project did not make (bench/foreign.py, docs/benchmarks.md
# seventh sitting) read 7.2 % and 9.3 % CER with share 0.94–0.95, confidence 88–90, unsure
# 7 % — every cut above missed them — and scores 83.1 and 85.7; the lowest score of a page
# under 1 % CER was 90.0 there and 92.2 on the records corpus (share 0.985 × confidence 93.6).
REVIEW_SCORE_BELOW = 88.0
_VALID_KINDS = ("syllable", "number", "code", "abbreviation")
# A line with this many tokens that are not valid, more than its valid ones, is marks read as
# text (`junk_lines`). Fewer is what a page read right may have: one stray token beside a word
# ("[ 59,0%" beside a figure, "tỶ" in a sentence), or a short line misread ("=ÌƯU: VÌ; V2" for
# "Lưu: VT, VP" in plain tesseract's reading of pages at 0.96 % CER, tests/records dejavu-1
# and yellowed-1). On the readings kept from the seventh to the ninth sitting (ours, plain
# tesseract's and OCRmyPDF's: 156 readings of pages under 1 % CER) none had a line of three.
JUNK_LINE_MARKS = 3
# A line of one token is not judged: it is a speck read as a letter or two beside the text of a
# page read right ("=ẵg" on tests/records photocopy_2gen-8 at 0.70 % CER, ".AZ" on bench
# foreign bad_photocopy-7 at 0.75 %, each at confidence 0–35: seeds 6–11, fifteenth sitting).
# The lines of marks this rule is for hold 6–17 tokens (faxify-0, shadow_cast-3, low_ink-8).
JUNK_LINE_MIN_TOKENS = 2
# A page printed in dots (imaging.DotMatrix.printed_in_dots) is misread into valid tokens:
# a tone mark for another ("SỔ" → "SỐ", a hook of three dots read as an acute), 0 → 8 or 9
# in a number. The share cannot see those misreads, so the score that sends type for review
# (REVIEW_SCORE_BELOW) is too lenient on dots; a dotted page is left out of review only when
# its reading scores as high as type read right: the lowest score of a tests/records page
# under 1 % CER was 92.2 (the calibration above). tests/records dot_matrix seeds 0–11 read
# 3.0–5.2 % at scores 82.1–89.3; the pages of bench foreign's dot_matrix told as dots (seeds
# 1 and 3 of 0–5: augraphy's dots, 0.95 % and 0.53 %) 95.1 and 95.5 (docs/benchmarks.md,
# tenth sitting).
DOTTED_TRUSTED_SCORE = 92.0
# Word-shaped ink that no word of the reading covers (`agent.pipeline.imaging.unread_text`),
# summed, in text heights (a syllable is 1.5–2.5 wide): at least this much and the reading
# left text out — two or three syllables. On both corpora's seeds 0–11 (396 pages) pages under
# 1 % CER had at most 3.1 (bench foreign bad_photocopy-11: clumps on a noise field's sparse
# fringe), and the one page over 5 % CER that no other reason flagged 9.5 (letterpress-5: a
# table's faint cells left out); docs/benchmarks.md, fifteenth sitting.
UNREAD_TEXT_EM = 5.0


def junk_lines(lines: Iterable[Sequence[str]], min_tokens: int = JUNK_LINE_MIN_TOKENS) -> list[str]:
    """The lines of a reading that are more marks than words: a line of type is mostly words,
    so such a line is marks read as text (a fax header's specks, a shadow's edge), or a line
    read as nothing. A line of `min_tokens` or more counts when it has no valid token and
    some that is not punctuation, or when its tokens that are not valid (nor punctuation) are
    at least JUNK_LINE_MARKS and outnumber its valid ones.

    bench foreign faxify seed 0 (docs/benchmarks.md, eighth sitting) read its fax header's
    specks as "z ~.» Ẩ °» -x z / » rx »Ấ z» , ^ ^ ^ » °": 40 characters of 1,135, weighed as
    16 tokens of one or two characters, the page 5.0 % CER at score 88.6. shadow_cast seed 3
    read the same header with one valid token among fourteen specks ("z Tư» Ẩ °» z Zz / » ~x
    >Áz> , ^ ^ ^ » °", 5.1 %, score 88.2): no longer a line without a word, still a line of
    marks (tenth sitting)."""
    found = []
    for tokens in lines:
        if len(tokens) < min_tokens:
            continue
        kinds = [token_kind(t) for t in tokens]
        marks = sum(k in ("invalid", "junk") for k in kinds)
        words = sum(k in _VALID_KINDS for k in kinds)
        if (marks and not words) or (marks >= JUNK_LINE_MARKS and marks > words):
            found.append(" ".join(tokens))
    return found


@dataclass(frozen=True)
class PageQuality:
    score: float  # 0–100: plausibility share × confidence, the one number shown to people
    syllable_share: float  # 0–1, see `plausibility`
    mean_confidence: float  # 0–100, tesseract's
    unsure_share: float  # 0–1, words under UNSURE_WORD
    tokens: int
    invalid_examples: tuple[str, ...]
    review: bool
    reasons: tuple[str, ...]  # why review: no_text, implausible_text, low_confidence, low_score…

    def as_record(self) -> dict[str, object]:
        record = asdict(self)
        record["invalid_examples"] = list(self.invalid_examples)
        record["reasons"] = list(self.reasons)
        return record


def assess(
    words: Sequence[tuple[str, float]],
    expect_text: bool,
    lines: Iterable[Sequence[str]] = (),
    junk_min_tokens: int = JUNK_LINE_MIN_TOKENS,
) -> PageQuality:
    """The page's quality from its OCR words (text, confidence 0–100).

    `expect_text`: the page has marks (not judged blank). A page with marks and no readable
    text is sent for review too (a photo, handwriting, noise): OCR failed, staff must know.
    `lines`: the same words as lines of tokens, for `junk_lines` (a `junk_line` review),
    judged from `junk_min_tokens` tokens.
    """
    tokens = [w for w, _ in words]
    judged = plausibility(tokens)
    confs = [c for _, c in words]
    mean = sum(confs) / len(confs) if confs else 0.0
    unsure = sum(c < UNSURE_WORD for c in confs) / len(confs) if confs else 0.0
    reasons: list[str] = []
    if expect_text:
        if judged.tokens < MIN_TOKENS:
            reasons.append("no_text")
        else:
            if judged.share < REVIEW_SHARE_BELOW:
                reasons.append("implausible_text")
            if mean < REVIEW_CONFIDENCE_BELOW:
                reasons.append("low_confidence")
            if unsure > REVIEW_UNSURE_SHARE:
                reasons.append("unsure_words")
    score = 100.0 * judged.share * (mean / 100.0) if judged.tokens else 0.0
    if expect_text and judged.tokens >= MIN_TOKENS and not reasons and score < REVIEW_SCORE_BELOW:
        reasons.append("low_score")
    if expect_text and judged.tokens >= MIN_TOKENS and junk_lines(lines, junk_min_tokens):
        reasons.append("junk_line")
    return PageQuality(
        score=round(score, 1),
        syllable_share=judged.share,
        mean_confidence=round(mean, 2),
        unsure_share=round(unsure, 4),
        tokens=judged.tokens,
        invalid_examples=judged.invalid_examples,
        review=bool(reasons),
        reasons=tuple(reasons),
    )


def review_unread(judged: PageQuality, unread_em: float) -> PageQuality:
    """`judged` for a page with `unread_em` text heights of word-shaped ink that its reading
    has no word over (`imaging.unread_text`): sent for review (`unread_text`) from
    UNREAD_TEXT_EM. The words tesseract did read may all be right, so no check of the text
    sees the ones it left out. A page with no text is already reviewed for that."""
    if judged.tokens < MIN_TOKENS or unread_em < UNREAD_TEXT_EM:
        return judged
    return replace(judged, review=True, reasons=(*judged.reasons, "unread_text"))


def review_dotted(judged: PageQuality) -> PageQuality:
    """`judged` for a page printed in dots: sent for review (`dot_matrix`) unless its reading
    scores as type read right does (DOTTED_TRUSTED_SCORE). A page with no text is already
    reviewed for that."""
    if judged.tokens < MIN_TOKENS or judged.score >= DOTTED_TRUSTED_SCORE:
        return judged
    return replace(judged, review=True, reasons=(*judged.reasons, "dot_matrix"))
