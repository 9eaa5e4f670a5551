"""Under ``CI=true`` nothing may skip: hooks that report every skip as a failure.

The brief: under CI a missing real component fails the run; it never turns into a silent
skip. Each test file used to decide that for itself, and five of them still skipped when
Chromium or Playwright was missing. These hooks (imported by tests/conftest.py) turn every
skip, whatever raised it — a ``skipif`` mark, ``pytest.skip``, ``importorskip`` in a test or
at a module's import —, into a failure that gives the skip's reason. A test with nothing to
do on some parameter is not parametrized with it (tests/test_public.py,
tests/test_profiles.py), so a green CI run has no skip at all. Outside CI skips stay skips:
a developer's machine may lack Chromium.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

NO_SKIPS = "under CI=true nothing may skip (a missing real component fails the run)"


def _ci() -> bool:
    return os.environ.get("CI") == "true"


def _reason(longrepr: Any) -> str:
    text = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")  # (path, line, "Skipped: why")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if _ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{NO_SKIPS}; it skipped: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if _ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{NO_SKIPS}; {collector.nodeid} skipped: {_reason(report.longrepr)}"
