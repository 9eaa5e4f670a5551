"""docs/operations.md: every runbook the issue asks for, and the table of every error a
station can report, generated from agent/messages.py and kept complete."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from agent import messages

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "operations.md"
# f-string keys: profiles.py raises f"profile.{kind}_unsupported" for these kinds.
PROFILE_KINDS = ("source", "mode")
RUNBOOKS = [
    "Stolen station",
    "Broken station",
    "Station disk full",
    "Archive disk full",
    "Broker down",
    "Database down",
    "Restoring the archive",
    "Upgrade",
    "Rotating the receipt key",
    "Errors a station reports",
]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "error_table", REPO / "scripts" / "error_table.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raised_keys() -> set[str]:
    """Every message key the agent's code gives an error it raises, read from the source:
    the first argument of a call to an exception class, plus the scanner's status table."""
    keys: set[str] = set()
    for path in (REPO / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if not (name.endswith(("Error", "Refused")) or name == "WrongUser"):
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", first.value):
                    keys.add(first.value)
            elif isinstance(first, ast.JoinedStr):
                pattern = "".join(
                    v.value if isinstance(v, ast.Constant) else "{}" for v in first.values
                )
                if re.fullmatch(r"[a-z_]+\.[a-z_]*\{\}[a-z_]*", pattern):
                    keys |= {pattern.format(kind) for kind in PROFILE_KINDS}
        if path.name == "sane_device.py":  # SANE status -> key, in a table
            text = path.read_text(encoding="utf-8")
            keys |= {k for k in messages.CATALOG if f'"{k}"' in text}
    return keys


def test_every_error_the_agent_raises_has_a_message_and_an_action() -> None:
    keys = raised_keys()
    assert {"disk_full", "broker_refused", "device_not_enrolled", "button.port_missing"} <= keys
    assert "profile.source_unavailable" in keys  # the f-string ones are found
    missing = sorted(k for k in keys if k not in messages.ACTIONS)
    assert not missing, f"add to agent/messages.py ACTIONS: {missing}"
    untranslated = sorted(k for k in messages.ACTIONS if k not in messages.CATALOG)
    assert not untranslated, f"no operator message for {untranslated}"


def test_the_error_table_in_the_doc_is_the_generated_one() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert _generator().updated(text) == text, "run scripts/error_table.py --write"
    for key in messages.ACTIONS:
        assert f"| `{key}` |" in text


def test_the_staff_apps_copy_of_the_station_lines_is_the_generated_one() -> None:
    path = REPO / "server" / "web" / "station_errors.py"
    assert path.read_text(encoding="utf-8") == _generator().station_errors_module(), (
        "run scripts/error_table.py --write"
    )


def test_every_runbook_is_there_in_both_languages() -> None:
    text = DOC.read_text(encoding="utf-8")
    headings = re.findall(r"^### (R\d+)\. (.+)$", text, flags=re.M)
    titles = {title.split(" / ")[-1] for _, title in headings}
    assert set(RUNBOOKS) <= titles, set(RUNBOOKS) - titles
    for _, title in headings:
        assert " / " in title, f"{title}: Vietnamese / English"
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        title = section.splitlines()[0]
        if "Upgrade" in title:
            continue  # points at section 9, which is bilingual
        assert "**Tiếng Việt.**" in section or "Mỗi lỗi" in section, title
        assert "**English.**" in section or "Each error" in section, title
