"""Say which test hung, and where, when pytest-timeout has to end a worker.

pytest-timeout's thread method dumps the stacks to the worker's stderr and ends the
worker; under pytest-xdist that dump can be lost (CI printed only "node down: Not properly
terminated"). So every test runs with faulthandler armed to write all Python threads'
stacks to a file shortly before pytest-timeout fires — faulthandler's watchdog is a C
thread, it writes even when the test is stuck inside a C call — and the controller prints
the files it finds at the end of the run, under "hung tests".

pytest-timeout's thread needs the GIL to end a worker, and a test can hang in a C call that
holds it (python-sane calls sane_cancel() without releasing it; a CI worker hung there for
good). So every test also arms an alarm(2) at its timeout plus a grace: SIGALRM with no
handler makes the kernel end the worker, GIL or not, and xdist goes on without it
(tests/xdist_recovery.py).
"""

from __future__ import annotations

import faulthandler
import math
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# Seconds before pytest-timeout's deadline at which the stacks are written (a quarter of
# the timeout when that is shorter).
LEAD = 20.0
# Seconds after pytest-timeout's deadline at which the kernel ends the worker (at most the
# timeout itself, so that a short test timeout gets a short grace).
GRACE = 30.0


def hang_dir(config: pytest.Config) -> Path:
    return config.rootpath / ".pytest-hangs"


def _timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    try:
        return float(item.config.getini("timeout") or 0)
    except ValueError:
        return 0.0


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        shutil.rmtree(hang_dir(config), ignore_errors=True)
    hang_dir(config).mkdir(exist_ok=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    timeout = _timeout(item)
    if timeout <= 0:
        yield
        return
    after = timeout - min(LEAD, timeout / 4)
    path = hang_dir(item.config) / f"{os.getpid()}-{abs(hash(item.nodeid))}.txt"
    header = f"{item.nodeid} was still running {after:.0f} s after it started:\n"
    with path.open("w") as out:
        out.write(header)
        out.flush()
        faulthandler.dump_traceback_later(after, file=out)
        armed = signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
        if armed:
            signal.alarm(math.ceil(timeout + min(GRACE, timeout)))
        try:
            yield
        finally:
            if armed:
                signal.alarm(0)
            faulthandler.cancel_dump_traceback_later()
    if path.stat().st_size == len(header.encode()):
        path.unlink()  # it finished in time: nothing to report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    if hasattr(config, "workerinput"):
        return
    reports = sorted(hang_dir(config).glob("*.txt"))
    if not reports:
        return
    terminalreporter.section("hung tests", sep="=", red=True)
    for report in reports:
        terminalreporter.write(report.read_text(errors="replace") + "\n")
