"""OCR on every class of commune record (tests/records), with the real tesseract.

Per class: our pipeline's CER stays under a tolerant bound (tesseract versions drift), is
never clearly worse than plain `tesseract -l vie` on the same capture, and a page whose text
is bad is flagged `review`. Bad input (noise, a photo, handwriting) is kept, flagged with
its reason, and shown to the operator by `sohoa-agent status`. The per-class means with
OCRmyPDF beside them are `python -m bench cer` (docs/benchmarks.md, "OCR per class").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
import records
from corpus import cer
from harness import agent_env, free_port, run_agent

from agent.pipeline.process import PipelineSettings, process_page

pytestmark = [pytest.mark.tesseract, pytest.mark.slow]

# Loose bounds (measured means are in docs/benchmarks.md): a wrong tone mark per line is
# ~1 %; these catch a class that breaks, not a drift of a few characters.
MAX_CER = {name: 0.03 for name in records.CLASSES} | {
    "dot_matrix": 0.15,  # not solved: 4.0 ± 0.9 % (plain tesseract 11.7 ± 2.7 %)
    "stamps_colour": 0.10,
    "photocopy_2gen": 0.05,
    "typewriter_faded": 0.05,
}
WORSE_THAN_PLAIN = 0.005  # ours may trail plain tesseract by at most this on one page
# No class has a wider allowance any more (docs/benchmarks.md, "OCR per class"): seed 2 of
# the 200-dpi faded typewriter read 1.84 % against plain tesseract's 1.30 % while line
# re-reads could win by letter case ("vào Lúc") or by an unsure crop's confidence, and now
# reads 1.30 %; dot matrix read 15.0 % against 13.6 % before its dots were joined, 10.8 %
# after, 8.7 % since the "|" read beside a rule is dropped.
WORSE_THAN_PLAIN_BY_CLASS: dict[str, float] = {}
SEED = 2  # not a page the thresholds were tuned on (bench cer uses seeds 0 and 1 first)


def _plain_tesseract(capture: Path, dpi: int) -> str:
    if shutil.which("tesseract") is None:
        pytest.fail("tesseract missing (apt install tesseract-ocr tesseract-ocr-vie)")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    run = subprocess.run(
        ["tesseract", str(capture), "-", "-l", "vie", "--dpi", str(dpi)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return run.stdout.replace("\f", "")


def test_a_dot_matrix_page_reads_its_dotted_zeros_as_zeros_and_not_its_plain_page(
    tmp_path: Path,
) -> None:
    """The font's zero holds a dot, struck one empty pin inside the ring: joined, it ran into
    the ring and tesseract read 8 or 9 ("12/98/2998" for "12/06/2006"; 12 of this page's 36
    zeros read 0). The dot standing free in the counter is erased before the dots are
    joined (`imaging.erase_enclosed_marks`): measured 33 of 36."""
    page = records.render("dot_matrix", SEED)
    capture = records.save(page, tmp_path / f"{page.name}.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings(dpi=page.dpi))
    text = result.text.read_text(encoding="utf-8")
    zeros = page.text.count("0")
    assert zeros >= 30
    assert text.count("0") >= 0.75 * zeros, text
    # and not by reading other digits as 0
    assert text.count("0") <= zeros
    # Its plain page (the dots unjoined) is not read again whole: on seeds 0-11 it was read
    # on 9 pages, 1.8-3.2 s each, and never kept.
    assert result.decisions["ocr_plain_page"] == {"read": False, "skipped": "printed_in_dots"}


@pytest.mark.parametrize("name", list(records.CLASSES))
def test_each_class_reads_and_is_never_clearly_worse_than_plain_tesseract(
    tmp_path: Path, name: str
) -> None:
    page = records.render(name, SEED)
    capture = records.save(page, tmp_path / f"{page.name}.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings(dpi=page.dpi))
    ours = cer(page.text, result.text.read_text(encoding="utf-8"))
    plain = cer(page.text, _plain_tesseract(capture, page.dpi))
    print(f"{name}: ours {ours:.3%}, plain tesseract {plain:.3%}, flags {result.flags}")
    assert "blank" not in result.flags
    assert ours <= MAX_CER[name], (ours, result.decisions["quality"])
    assert ours <= plain + WORSE_THAN_PLAIN_BY_CLASS.get(name, WORSE_THAN_PLAIN), (ours, plain)
    if ours > 0.05:
        assert "review" in result.flags, result.decisions["quality"]
    # Dotted digits misread are valid numbers to the plausibility check: a dot-matrix page
    # of tests/records (3-5 % CER, scores under quality.DOTTED_TRUSTED_SCORE) is reviewed,
    # and no page of another class is said to be in dots.
    reasons = result.decisions["quality"]["reasons"]  # type: ignore[index]
    assert ("dot_matrix" in reasons) == (name == "dot_matrix"), reasons
    # No page of tests/records is reviewed for word-shaped ink left unread
    # (`imaging.unread_text`: at most 3.3 text heights of it on seeds 0-11 of every class,
    # ruled_table-5; reviewed from 5; docs/benchmarks.md fifteenth sitting).
    assert "unread_text" not in reasons, result.decisions["unread_text"]
    if name == "dot_matrix":
        assert "review" in result.flags


@pytest.mark.mqtt
@pytest.mark.timeout(900)  # ~1-3.5 min: noise, a photo, handwriting and a good page, whole pipeline
def test_bad_input_is_kept_flagged_with_its_reason_and_shown_to_the_operator(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for n, kind in enumerate(records.BAD_KINDS, start=1):
        records.save(records.bad_page(kind, 0), folder / f"{n:02d}-{kind}.png")
    records.save(records.render("serif_clean", 3), folder / "04-good.png")
    env = agent_env(tmp_path / "agent", f"mqtt://127.0.0.1:{free_port()}")
    run_agent(env, "import", str(folder), check=True)
    processed = run_agent(env, "process", check=True)
    assert "Traceback" not in processed.stderr

    st = json.loads(run_agent(env, "status", "--json", check=True).stdout)
    assert st["pending"][0]["pages"] == 4  # nothing dropped
    flagged = {r["page_no"]: r for r in st["review"]}
    for page_no in (1, 2, 3):  # noise, photo, handwriting: OCR fails, staff must see why
        assert page_no in flagged, st["review"]
        assert flagged[page_no]["reasons"], flagged[page_no]
    assert 4 not in flagged  # the good page is not

    text = run_agent(env, "status", check=True).stdout
    assert "Cần xem lại: 3 trang" in text
    for r in flagged.values():  # each with its score to one decimal, in Vietnamese form
        score = "–" if r["score"] is None else f"{r['score']:.1f}".replace(".", ",")
        assert re.search(rf"trang +{r['page_no']} +điểm +{re.escape(score)} ", text), text


def test_a_line_its_two_crops_read_differently_is_decided_by_an_enlarged_third(
    tmp_path: Path,
) -> None:
    # bleed_through seed 0: the cleaned page and its line crop read "sổ" (a hỏi hook, there
    # in both images) as "số" at 80.6, the plain crop "sổ" at 70.8; the surer was kept.
    page = records.render("bleed_through", 0)
    capture = records.save(page, tmp_path / f"{page.name}.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings(dpi=page.dpi))
    text = result.text.read_text(encoding="utf-8")
    assert "số hóa sổ hộ tịch" in page.text
    assert "số hóa sổ hộ tịch" in text
    second = result.decisions["ocr_second_pass"]
    assert second["enlarged"] >= 1  # type: ignore[index]
    agreed = [r for r in second["replaced"] if "enlarged" in r["from"]]  # type: ignore[index]
    assert [r["after"] for r in agreed] == [next(x for x in text.splitlines() if "sổ hộ" in x)]


def test_notes_written_in_dark_ink_are_not_read_and_stay_on_the_archival_page(
    tmp_path: Path,
) -> None:
    """margin_notes seed 3: the notes are in near-black ink, which no colour separation takes
    away. Tesseract read them as lines of garbage ("\\wq@W", "@ÑNŒ", "10028. Ø4 G26 227")
    and lost "Quyết định này./." beside them: 8.5 % CER, flagged. They are left out of what
    tesseract reads (`imaging.not_type_marks`) and kept on the archival page."""
    page = records.render("margin_notes", 3)
    capture = records.save(page, tmp_path / f"{page.name}.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings(dpi=page.dpi))
    text = result.text.read_text(encoding="utf-8")
    found = result.decisions["not_type"]
    assert found["handwriting"] >= 10, found  # type: ignore[index]
    assert cer(page.text, text) < 0.01, text
    assert "Quyết định này./." in text
    assert "review" not in result.flags, result.decisions["quality"]

    # The archival page still shows every note where it was written.
    pdf = pdfium.PdfDocument(result.archival)
    try:
        shown = np.asarray(pdf[0].render(scale=page.dpi / 72).to_pil().convert("L"))
    finally:
        pdf.close()
    for x, y, w, h in found["boxes"]:  # type: ignore[index]
        assert (shown[y : y + h, x : x + w] < 128).mean() > 0.1, (x, y, w, h)


def test_a_copiers_dark_band_along_the_top_is_not_read_as_a_line(tmp_path: Path) -> None:
    """photocopy_2gen seed 4: the copier's lid left a black band along the top edge, which
    tesseract read as a line of marks ("_ERENNNNWGNGNECNNRNGNNGIGIGGNRENmUCO -———"): 6.4 %
    CER, flagged. The band is left out of what tesseract reads."""
    page = records.render("photocopy_2gen", 4)
    capture = records.save(page, tmp_path / f"{page.name}.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings(dpi=page.dpi))
    found = result.decisions["not_type"]
    assert found["edge_bands"] >= 1 and found["handwriting"] == 0, found  # type: ignore[index]
    assert cer(page.text, result.text.read_text(encoding="utf-8")) < 0.01
    assert "review" not in result.flags, result.decisions["quality"]
