"""A test that hangs inside C under xdist is named in the run's summary, with its stack, and
ended even when it holds the GIL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

HANGING = """
import ctypes
import pytest


@pytest.mark.timeout(4)
def test_stuck_in_c():
    ctypes.CDLL(None).sleep(60)  # a C call: no Python signal handler runs meanwhile


def test_quick():
    assert True
"""

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from hang_report import pytest_configure, pytest_runtest_protocol, pytest_terminal_summary
from xdist_recovery import pytest_xdist_make_scheduler
"""


def _run(tmp_path: Path, suite: str, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(suite)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntimeout_method = thread\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "1", "-p", "no:cacheprovider", *options,
         str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_test_stuck_in_c_is_named_with_its_stack(tmp_path: Path) -> None:
    run = _run(tmp_path, HANGING)
    out = run.stdout
    assert run.returncode == 1, out
    assert "1 passed" in out and "1 failed" in out, out
    hung = out.split("hung tests", 1)[1]
    assert "test_inner.py::test_stuck_in_c was still running 3 s after it started" in hung
    assert "test_stuck_in_c" in hung.split("started:", 1)[1]  # the stuck frame itself
    assert "test_quick" not in hung  # a test that finished in time leaves nothing


# python-sane's snap() calls sane_cancel() holding the GIL; a backend stuck there froze a CI
# worker for good: pytest-timeout's thread never ran again. PyDLL calls pause() the same way.
HOLDING_THE_GIL = """
import ctypes, pytest

@pytest.mark.timeout(2)
def test_stuck_in_c():
    ctypes.PyDLL(None).pause()

def test_after(): pass
"""


def test_a_worker_hung_holding_the_gil_is_ended_and_reported(tmp_path: Path) -> None:
    run = _run(tmp_path, HOLDING_THE_GIL, "--dist", "loadgroup")
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(r"\b1 failed, 1 passed\b", summary), run.stdout[-3000:]
    # The stacks written before the end name the test and the C call it was in.
    hung = run.stdout.split("hung tests", 1)[-1]
    assert "test_inner.py::test_stuck_in_c was still running" in hung, run.stdout[-3000:]
    assert "test_stuck_in_c" in hung.split("was still running", 1)[1]
