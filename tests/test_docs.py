"""The docs point at files that exist: `docs/….md` named anywhere in the docs or the
deployment files, and relative links in Markdown."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = [
    REPO / "README.md",
    REPO / "protocol" / "README.md",
    REPO / "hw_profiles" / "README.md",
    REPO / "embedded" / "samples" / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted(p for p in (REPO / "systemd").rglob("*") if p.is_file()),
]
DOC_PATH = re.compile(r"\bdocs/[\w.-]+\.md\b")
MD_LINK = re.compile(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)")


def _pointers(path: Path) -> list[Path]:
    text = path.read_text(encoding="utf-8")
    found = [REPO / m for m in DOC_PATH.findall(text)]
    if path.suffix == ".md":
        found += [path.parent / m for m in MD_LINK.findall(text)]
    return found


def test_every_doc_pointer_names_an_existing_file() -> None:
    missing = [
        f"{src.relative_to(REPO)} -> {target}"
        for src in SOURCES
        for target in _pointers(src)
        if not target.resolve().exists()
    ]
    assert not missing, missing


def test_a_missing_pointer_is_caught(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("see docs/no-such-page.md and [this](nowhere.md)")
    assert [p for p in _pointers(doc) if not p.exists()] != []
    assert len(_pointers(doc)) == 2
