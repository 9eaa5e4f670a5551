"""The database on a host of its own that loses its power mid-query (issue 19: several hosts).

A host that dies says nothing: no RST, its packets simply stop. Here the host is a network
namespace of this test's own with a real PostgreSQL in it, reached over a veth pair (two
link-local addresses that exist only between the two ends); its power cut is its end of the
link set down (every packet to it dropped), then the server stopped as a power cut stops it,
started again, and the link brought back up — the host rebooted.

Before libpq was told to watch its connections (server.store.pg.LIBPQ_LIVENESS), a query
in flight when the host died waited for ever: its bytes had been acknowledged, nothing was
in flight, so TCP never noticed, and the thread kept its pool connection.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pgcluster import PostgresCluster

from server.app import create_app
from server.archive import auth
from server.config import ServerSettings
from server.store.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.netns, pytest.mark.slow]


class Host:
    """A network namespace reached from here over a veth pair: ``ours`` is this side's
    address, ``address`` the host's."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100_000}"
        self.name = f"sohoa-db-{tag}"
        self.here, self.there = f"sdh{tag}", f"sdt{tag}"  # interface names: 15 chars at most
        net = os.getpid() % 250 + 1
        self.ours, self.address = f"169.254.{net}.1", f"169.254.{net}.2"

    def _ip(self, *args: str, inside: bool = False) -> None:
        cmd = ["ip", *(("netns", "exec", self.name, "ip") if inside else ()), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")

    def make(self) -> Host:
        self._ip("netns", "add", self.name)
        self._ip("link", "add", self.here, "type", "veth", "peer", "name", self.there)
        self._ip("link", "set", self.there, "netns", self.name)
        self._ip("addr", "add", f"{self.ours}/30", "dev", self.here)
        self._ip("link", "set", self.here, "up")
        self._ip("addr", "add", f"{self.address}/30", "dev", self.there, inside=True)
        self._ip("link", "set", self.there, "up", inside=True)
        self._ip("link", "set", "lo", "up", inside=True)
        return self

    def power(self, on: bool) -> None:
        """Its end of the link up or down: down, every packet to it is lost."""
        self._ip("link", "set", self.there, "up" if on else "down", inside=True)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.here], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


@pytest.fixture
def host() -> Iterator[Host]:
    made = Host()
    try:
        made.make()
    except (RuntimeError, FileNotFoundError) as exc:
        made.remove()
        # under CI=true this skip fails the run (tests/no_skips.py)
        pytest.skip(f"cannot make a network namespace here (iproute2, root): {exc}")
    try:
        yield made
    finally:
        made.remove()


def test_a_database_host_that_dies_mid_query_is_noticed_and_taken_back(
    tmp_path: Path, host: Host
) -> None:
    cluster = PostgresCluster(host=host.address, netns=host.name).start()
    try:
        settings = ServerSettings(
            data_dir=tmp_path / "server",
            ingest=False,
            database_url=cluster.create_database("host"),
            database_pool_size=2,
            database_pool_timeout_s=5.0,
        )
        with TestClient(create_app(settings)) as client:
            db: Database = client.app.state.db  # type: ignore[attr-defined]
            auth.add_user(db, "boss", "admin", "mật khẩu đủ dài cho thử")
            bearer = {"Authorization": f"Bearer {auth.create_token(db, 'boss')}"}
            assert client.get("/api/v1/batches", headers=bearer).status_code == 200

            ended: list[BaseException | None] = []

            def a_long_query() -> None:  # as a search or an ingest group on its statement
                try:
                    db.read().execute("SELECT pg_sleep(20)")
                    ended.append(None)
                except BaseException as exc:
                    ended.append(exc)

            query = threading.Thread(target=a_long_query, daemon=True)
            query.start()
            time.sleep(1.5)  # the query is on the host now
            host.power(False)
            cluster.stop_now()  # the host's power is gone: its server with it
            query.join(timeout=120)  # ~30 s with the liveness settings; for ever without
            assert not query.is_alive(), "a query to a dead database host waited for ever"
            assert ended and ended[0] is not None, "the query answered from a dead host"

            # The host comes back (rebooted: the same server, started again).
            cluster.start_again()
            host.power(True)
            deadline = time.monotonic() + 60
            while True:  # the pool drops the dead connections and makes new ones
                status = client.get("/api/v1/batches", headers=bearer).status_code
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert status == 200
            assert [client.get("/api/v1/batches", headers=bearer).status_code for _ in "abc"] == [
                200
            ] * 3
    finally:
        cluster.stop()
