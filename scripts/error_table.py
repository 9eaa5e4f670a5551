#!/usr/bin/env python3
"""Print the tables docs/operations.md carries between its ``error-table`` and
``exit-codes`` markers: every error a station can report (agent/messages.py: its key, the
Vietnamese line the operator sees, what to do) and the exit codes of both CLIs. ``--write``
also regenerates server/web/station_errors.py (the same lines for the staff app's station list).

    .venv/bin/python scripts/error_table.py            # print both tables
    .venv/bin/python scripts/error_table.py --write    # update docs/operations.md in place

tests/test_runbooks.py fails when the file and this output differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import cli as agent_cli  # noqa: E402
from agent import messages  # noqa: E402
from server import cli as server_cli  # noqa: E402

DOC = ROOT / "docs" / "operations.md"
MARKERS = ("error-table", "exit-codes")


def _cell(text: str) -> str:
    # Placeholders become "…": the table shows the sentence, not the variables.
    return re.sub(r"\{[a-z_]+\}", "…", text).replace("|", "\\|")


def error_table() -> str:
    rows = [
        "| mã lỗi / key | trạm báo (tiếng Việt) | cách xử lý | what to do |",
        "|---|---|---|---|",
    ]
    for key, (vi_do, en_do) in messages.ACTIONS.items():
        vi_says = messages.CATALOG[key][0]
        rows.append(f"| `{key}` | {_cell(vi_says)} | {_cell(vi_do)} | {_cell(en_do)} |")
    return "\n".join(rows) + "\n"


def exit_codes() -> str:
    rows = ["| exit | `sohoa-agent` | `sohoa-server` |", "|---|---|---|"]
    for code in sorted(set(agent_cli.EXIT_CODES) | set(server_cli.EXIT_CODES)):
        agent = agent_cli.EXIT_CODES.get(code, "—")
        server = server_cli.EXIT_CODES.get(code, "—")
        rows.append(f"| {code} | {_cell(agent)} | {_cell(server)} |")
    return "\n".join(rows) + "\n"


STATION_ERRORS = ROOT / "server" / "web" / "station_errors.py"


def station_errors_module() -> str:
    """server/web/station_errors.py: the station's lines for the staff app, which must not import
    the agent (the archive host installs without it)."""
    lines = [
        '"""What a station shows its operator for each error key it reports (telemetry',
        "``last_error`` is ``key: detail``). GENERATED from agent/messages.py by",
        "scripts/error_table.py --write; tests/test_runbooks.py keeps it in step. Placeholders",
        'are shown as "…"."""',
        "# ruff: noqa: E501",
        "",
        "# fmt: off",
        "STATION_ERRORS: dict[str, tuple[str, str]] = {",
    ]
    for key in messages.ACTIONS:
        vi, en = (re.sub(r"\{[a-z_]+\}", "…", x) for x in messages.CATALOG[key])
        lines.append(f"    {key!r}: ({vi!r}, {en!r}),")
    lines += ["}", "# fmt: on"]
    return "\n".join(lines) + "\n"


def blocks() -> dict[str, str]:
    return {"error-table": error_table(), "exit-codes": exit_codes()}


def updated(text: str) -> str:
    for name, body in blocks().items():
        start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
        a, b = text.index(start) + len(start), text.index(end)
        text = text[:a] + body + text[b:]
    return text


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        DOC.write_text(updated(DOC.read_text(encoding="utf-8")), encoding="utf-8")
        STATION_ERRORS.write_text(station_errors_module(), encoding="utf-8")
    else:
        for body in blocks().values():
            print(body)
