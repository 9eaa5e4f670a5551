"""Fast checks of the staff app's markup and helpers, no archive needed: the templates keep
to the Content-Security-Policy (no inline script or style, which the browser would refuse),
and the package ships the static files the pages load."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from server.web.render import TEMPLATES
from server.web.security import CSP

REPO = Path(__file__).resolve().parent.parent
STATIC = TEMPLATES.parent / "static"


def test_csp_allows_no_inline_script_or_style() -> None:
    for directive in ("script-src", "style-src"):
        found = re.search(directive + r" ([^;]*)", CSP)
        assert found and found.group(1).split() == ["'self'"], directive


def test_templates_carry_no_inline_style_or_script() -> None:
    # Each of these the strict policy refuses: a page that had one would render unstyled
    # or lose its script (the Chromium test loads every staff page and watches for that).
    inline = re.compile(
        r"""<style\b|\sstyle\s*=|<script(?![^>]*\ssrc=)[^>]*>|\son[a-z]+\s*=|javascript:""",
        re.IGNORECASE,
    )
    names = sorted(TEMPLATES.glob("*.html"))
    assert len(names) >= 10
    for name in names:
        found = inline.search(name.read_text(encoding="utf-8"))
        assert found is None, f"{name.name}: {found.group() if found else ''}"


def test_every_static_file_a_template_loads_exists_and_is_packaged() -> None:
    loaded: set[str] = set()
    for name in TEMPLATES.glob("*.html"):
        loaded |= set(re.findall(r'"/static/([^"]+)"', name.read_text(encoding="utf-8")))
    assert {"staff.css", "viewer.js", "confirm.js"} <= loaded
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["server"]
    for file in loaded:
        assert (STATIC / file).is_file(), file
        assert any(Path("web/static", file).match(g) for g in globs), file


def test_numbers_in_vietnamese_and_english() -> None:
    from server.web.i18n import number
    from server.web.render import _bytes

    assert number(1234567, "vi") == "1.234.567" and number(1234567, "en") == "1,234,567"
    assert number(1234.5, "vi", 1) == "1.234,5" and number(1234.5, "en", 1) == "1,234.5"
    assert number(-1000, "vi") == "-1.000" and number(999, "vi") == "999"
    assert number(87.6, "vi") == "88" and number(0.25, "vi", 2) == "0,25"
    assert number(None) == "—" and number(float("nan")) == "—" and number(True) == "—"
    assert _bytes(3 * 1024**3 // 2, "vi") == "1,5 GB" and _bytes(3 * 1024**3 // 2, "en") == "1.5 GB"


def test_every_flag_and_review_reason_a_station_sends_reads_in_both_languages() -> None:
    """The page viewer and the review queue show a page's flags and the reasons of its text's
    review by key (``flag_…``, ``reason_…``); a key missing shows staff the key itself — as
    "flag_not_colour" was shown on every grey page until the sixteenth sitting."""
    from agent.messages import REVIEW_REASONS
    from agent.pipeline.process import FLAGS
    from server.archive.review import REVIEW_FLAGS
    from server.web.i18n import TEXT

    keys = [f"flag_{f}" for f in FLAGS | set(REVIEW_FLAGS)]
    # "failed" is the station's own word for a page it could not process (agent/status.py);
    # the archive gets it as the flag processing_failed.
    keys += [f"reason_{r}" for r in REVIEW_REASONS if r != "failed"]
    missing = [k for k in keys if k not in TEXT]
    assert not missing, missing
    for key in keys:
        vi, en = TEXT[key]
        assert vi and en and vi != en, key


def test_a_flag_or_reason_the_server_has_no_words_for_is_named_as_one() -> None:
    """A newer station may send a review reason this server does not know yet: staff read
    that it is one, with its key — not the bare key as if it were text."""
    from server.web.i18n import t

    assert t("reason_glued_words") == "lý do chưa có tên: glued_words"
    assert t("reason_glued_words", "en") == "unnamed reason: glued_words"
    assert t("flag_new_check") == "dấu hiệu chưa có tên: new_check"
    assert t("flag_new_check", "en") == "unnamed flag: new_check"
    assert t("reason_low_score") == "điểm chữ thấp"  # known keys as before
    assert t("no_such_key") == "no_such_key"


def test_the_staff_guide_to_review_names_every_flag_and_reason_as_staff_see_it() -> None:
    """docs/review.md explains each flag and reason by the words the app shows (both
    languages): a flag or reason added without its line there fails here."""
    from agent.messages import REVIEW_REASONS
    from agent.pipeline.process import FLAGS
    from server.archive.review import REVIEW_FLAGS
    from server.web.i18n import TEXT

    guide = (REPO / "docs" / "review.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(): line for line in guide.splitlines() if line.startswith("| ")
    }
    keys = [f"flag_{f}" for f in FLAGS | set(REVIEW_FLAGS)]
    keys += [f"reason_{r}" for r in REVIEW_REASONS if r != "failed"]
    for key in keys:
        vi, en = TEXT[key]
        assert vi in rows, (key, vi)
        assert f"| {en} |" in rows[vi], (key, en)
