"""A test that hangs inside C under xdist is named in the run's summary, with its stack."""

from __future__ import annotations

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
"""


def test_a_test_stuck_in_c_is_named_with_its_stack(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(HANGING)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntimeout_method = thread\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "1", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout
    assert run.returncode == 1, out
    assert "1 passed" in out and "1 failed" in out, out
    hung = out.split("hung tests", 1)[1]
    assert "test_inner.py::test_stuck_in_c was still running 3 s after it started" in hung
    assert "test_stuck_in_c" in hung.split("started:", 1)[1]  # the stuck frame itself
    assert "test_quick" not in hung  # a test that finished in time leaves nothing
