"""The CI rule for skips (tests/no_skips.py), tried on a small suite run by a real pytest:
every kind of skip fails under ``CI=true`` and stays a skip without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SUITE = {
    "conftest.py": "from no_skips import pytest_make_collect_report, pytest_runtest_makereport\n",
    "test_kinds.py": """
import pytest

@pytest.mark.skipif(True, reason="chromium missing (a mark)")
def test_marked() -> None:
    pass

def test_called() -> None:
    pytest.skip("tesseract missing (a call)")

def test_imported() -> None:
    pytest.importorskip("a_module_nobody_has")

@pytest.fixture
def component() -> None:
    pytest.skip("broker missing (a fixture)")

def test_fixture(component: None) -> None:
    pass

@pytest.mark.xfail(reason="known")
def test_expected_to_fail() -> None:
    raise AssertionError

def test_runs() -> None:
    assert True
""",
    "test_module.py": 'import pytest\n\nsane = pytest.importorskip("another_missing_module")\n\n'
    "def test_never() -> None:\n    pass\n",
}


def _run(tmp_path: Path, ci: bool, test_file: str) -> subprocess.CompletedProcess[str]:
    for name in ("conftest.py", test_file):
        (tmp_path / name).write_text(SUITE[name])
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(TESTS)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rA",
         "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / test_file)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def test_under_ci_every_kind_of_skip_in_a_test_fails_with_its_reason(tmp_path: Path) -> None:
    run = _run(tmp_path, ci=True, test_file="test_kinds.py")
    out = run.stdout
    assert run.returncode == 1, out
    summary = out.splitlines()[-1]
    # A skip in a test's setup (a mark, a fixture) is an error there, in its call a failure.
    assert "2 failed, 1 passed, 1 xfailed, 2 errors" in summary, out
    for reason in (
        "chromium missing (a mark)",
        "tesseract missing (a call)",
        "could not import 'a_module_nobody_has'",
        "broker missing (a fixture)",
    ):
        assert f"fails the run); it skipped: {reason}" in out, (reason, out)


def test_under_ci_a_module_skipped_at_import_is_a_collection_error(tmp_path: Path) -> None:
    run = _run(tmp_path, ci=True, test_file="test_module.py")
    out = run.stdout
    assert run.returncode == 2, out  # pytest's "interrupted": nothing else runs
    assert "ERROR test_module.py - under CI=true nothing may skip" in out, out
    assert "could not import 'another_missing_module'" in out, out


def test_without_ci_skips_stay_skips(tmp_path: Path) -> None:
    for test_file, summary, code in (
        ("test_kinds.py", "1 passed, 4 skipped, 1 xfailed", 0),
        ("test_module.py", "1 skipped", 5),  # 5: pytest ran no test
    ):
        run = _run(tmp_path, ci=False, test_file=test_file)
        assert run.returncode == code, run.stdout
        assert summary in run.stdout.splitlines()[-1], run.stdout
        assert "nothing may skip" not in run.stdout, run.stdout
