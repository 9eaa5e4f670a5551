"""`python -m bench pipeline --write` adds a run to docs/benchmarks.md; it never replaces
the figures recorded before it (the house rule: add dated runs, do not overwrite)."""

from __future__ import annotations

from pathlib import Path

from bench.pipeline import write_section

DOC = """# Benchmarks

## Pipeline

Intro.

### Before (01e3b0d)

| pages/min | 40 |

## OCR per class

Kept.
"""


def test_a_run_is_added_under_the_pipeline_section_and_nothing_is_lost(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    write_section(doc, "| pages/min | 44 |\n", "Run of 2026-12-06 12:00 UTC at abc1234")
    text = doc.read_text()
    assert "### Before (01e3b0d)\n\n| pages/min | 40 |" in text  # earlier figures kept
    assert text.index("| pages/min | 40 |") < text.index("### Run of 2026-12-06 12:00 UTC")
    assert text.index("| pages/min | 44 |") < text.index("## OCR per class")
    assert text.endswith("## OCR per class\n\nKept.\n")
    write_section(doc, "| pages/min | 45 |\n", "Run of 2026-12-07 09:00 UTC")
    text = doc.read_text()
    assert text.index("| 44 |") < text.index("| 45 |") < text.index("## OCR per class")


def test_a_file_without_the_section_gets_it(tmp_path: Path) -> None:
    doc = tmp_path / "new.md"
    write_section(doc, "| pages/min | 44 |\n", "Run of today")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n## Pipeline\n\n")
    assert "### Run of today\n\n| pages/min | 44 |\n" in text
