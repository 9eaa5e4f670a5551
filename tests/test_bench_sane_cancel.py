"""`python -m bench sane_cancel` (docs/benchmarks.md): both modes run and report in its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.sane


def test_the_cancel_benchmark_reads_every_drained_frame_and_reports_both_modes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "sane_cancel", "--frames", "40", "--wait", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| mode | frames read | hung | seconds |"
    drained, at_once = rows[1].split(" | "), rows[2].split(" | ")
    assert drained[0] == "| pipe read to its end, then cancel (the agent)"
    assert drained[1:3] == ["40", "no"]  # the agent's way never hung (31,500 frames)
    assert at_once[0] == "| cancel at once (python-sane's way)"
    assert at_once[2] in ("yes", "no") and 0 <= int(at_once[1]) <= 40
