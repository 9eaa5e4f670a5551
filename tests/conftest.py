"""Fixtures that start real components: Mosquitto, the server, the agent CLI."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hang_report import (  # noqa: F401 (hooks: pytest finds them by name here)
    pytest_configure,
    pytest_runtest_protocol,
    pytest_terminal_summary,
)
from harness import Broker, ServerProcess, tool_version
from no_skips import (  # noqa: F401 (hooks: pytest finds them by name here)
    pytest_make_collect_report,
    pytest_runtest_makereport,
)
from pgcluster import PostgresCluster
from real_archive import RealArchive
from real_archive import build as build_real_archive
from s3server import CephS3
from s3server import require as require_s3
from xdist_recovery import pytest_xdist_make_scheduler  # noqa: F401 (the controller's hook)


@pytest.fixture(autouse=True)
def _python_signal_dispositions() -> Iterator[None]:
    # Tests that call python-sane directly let sane_start() reset SIGPIPE/SIGTERM to their
    # default actions for the whole pytest process (agent/sane_device.py restores them in
    # production); a later write to a reset socket would then kill pytest with SIGPIPE.
    yield
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pytest_report_header(config: pytest.Config) -> list[str]:
    # The versions of the real components the tests ran against (OCRmyPDF CI does the same).
    return [
        f"tesseract: {tool_version(['tesseract', '--version'])}",
        f"sane: {tool_version(['scanimage', '--version'])}",
        f"mosquitto: {tool_version(['mosquitto', '-h'])}",
        f"ceph radosgw: {tool_version(['radosgw', '--version'])}",
    ]


# Under pytest-xdist (make test: two workers, --dist loadgroup) every worker builds its own
# session fixtures. The tests of the one real archive (built by the real pipeline, minutes)
# and of the Ceph cluster (tests/test_objstore.py uses both) therefore run on one worker
# instead of building them twice.
_SHARED_BUILDS = ("real_archive", "s3_server")


# The tests of a serial line (marker `serial`) unplug a pty and let the code under test open
# the same /dev/pts path again. Pty numbers are machine-wide and reused at once: a pty another
# worker opens in between gets the number, and the reconnecting code opens that worker's pty
# (CI saw it: a box "came back" that was never plugged in, another's port was locked). They
# therefore run on one worker, one after another.
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        shared = any(name in getattr(item, "fixturenames", ()) for name in _SHARED_BUILDS)
        serial = item.get_closest_marker("serial") is not None
        if shared and serial:
            raise pytest.UsageError(f"{item.nodeid}: uses a pty and a shared build; split it")
        if shared:
            item.add_marker(pytest.mark.xdist_group("shared-builds"))
        elif serial:
            item.add_marker(pytest.mark.xdist_group("serial-ptys"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def server(tmp_path: Path, broker: Broker) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "server", broker.url).start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One real PostgreSQL server for the session (started only if a test asks for it);
    each test gets a database of its own (``database`` fixture)."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[CephS3]:
    """One real S3 server for the session (Ceph's RADOS Gateway on a one-node cluster,
    tests/s3server.py), started only if a test asks for it; each test makes its buckets."""
    require_s3()
    server = CephS3().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The catalogue a test runs against, once per engine: a SQLite file's path, or the URL
    of a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return tmp_path / "db" / "archive.sqlite"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


_REAL: dict[str, RealArchive] = {}


@pytest.fixture
def real_archive(
    request: pytest.FixtureRequest, database: Path | str, tmp_path_factory: pytest.TempPathFactory
) -> RealArchive:
    """The archive the real pipeline built (tests/real_archive.py) on the ``database``
    fixture's engine: built on first use in the session, reused after. Tests that use it
    need the markers of what it starts (sane-free: tesseract, mqtt, slow)."""
    engine = "sqlite" if isinstance(database, Path) else "postgresql"
    if engine not in _REAL:
        cluster = request.getfixturevalue("pg_cluster") if engine == "postgresql" else None
        _REAL[engine] = build_real_archive(
            tmp_path_factory.mktemp(f"real-archive-{engine}"), engine, cluster
        )
    return _REAL[engine]
