"""`make test`'s scheduler (tests/xdist_recovery.py) ends a run in which a worker dies.

Each case runs a real pytest with two workers (or one) and `--dist loadgroup` on a small
suite where one test kills its interpreter, as a worker that pytest-timeout ends does. With
pytest-xdist's own scheduler each case waits for ever (seen: all three still waiting after
40 s); here each must end, report that one test failed, and run every other test once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CRASH_IN_A_GROUP = """
import os, pytest

@pytest.mark.xdist_group("g")
def test_g1(): pass

@pytest.mark.xdist_group("g")
def test_g2_crash(): os._exit(1)

@pytest.mark.xdist_group("g")
def test_g3_after_the_crash(): pass

def test_a(): pass
def test_b(): pass
def test_c(): pass
def test_d(): pass
def test_e(): pass
"""

# The replacement worker is given the one test left: it must be told that it is the last.
CRASH_FIRST_OF_TWO = """
import os

def test_1_crash(): os._exit(1)
def test_2(): pass
"""

# A worker that has finished many tests dies near the end: what it finished must not come back.
CRASH_LATE = "import os, time\n" + "".join(
    f"def test_{i:02d}():\n    time.sleep(0.02)\n" + ("    os._exit(1)\n" if i == 25 else "")
    for i in range(30)
)


@pytest.mark.parametrize(
    ("source", "workers", "passed"),
    [(CRASH_IN_A_GROUP, 2, 7), (CRASH_FIRST_OF_TWO, 1, 1), (CRASH_LATE, 2, 29)],
    ids=["crash-in-a-group", "crash-first-of-two", "crash-late"],
)
def test_a_run_whose_worker_dies_ends(
    tmp_path: Path, source: str, workers: int, passed: int
) -> None:
    (tmp_path / "conftest.py").write_text(
        "from xdist_recovery import pytest_xdist_make_scheduler  # noqa: F401\n"
    )
    (tmp_path / "test_suite.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    env.pop("PYTEST_XDIST_WORKER", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", str(workers), "--dist", "loadgroup",
         "-p", "no:cacheprovider", "-rf", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(rf"\b1 failed, {passed} passed\b", summary), run.stdout[-3000:]
    assert run.stdout.count("node down: Not properly terminated") == 1, run.stdout[-3000:]
    assert run.returncode == 1
