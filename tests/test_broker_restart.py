"""A broker restart while a station sends: the archive gets everything without waiting on the
station's re-query. With one ingest worker the server uses a plain subscription, which the
broker keeps in the server's persistent session across its restart (Mosquitto 2.0 does not
restore a shared one: what devices send before the server subscribes again is dropped, and
only the devices' re-query brings it back). Measured with the archive away while the broker
restarts (the case that loses messages: checked by hand here, Mosquitto 2.0.11 answered 10 of
10 publishes "No matching subscribers" for a restored shared subscription and delivered 0,
a plain one 10): seconds from the server's return to every page ingested, both ways
(printed and recorded; nothing asserts a time)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from harness import BIN, Broker, ServerProcess, agent_env
from linkproxy import LinkProxy
from PIL import Image

pytestmark = [pytest.mark.mqtt, pytest.mark.tesseract, pytest.mark.slow]

DEVICE = "xa-restart-01"
AWAY_SECONDS = 8.0  # the station reconnects and sends while the archive is still away


def committed(server: ServerProcess) -> tuple[int, int]:
    try:
        con = sqlite3.connect(server.data_dir / "archive.sqlite3", timeout=30)
        try:
            row = con.execute(
                "SELECT COUNT(*), SUM(CASE WHEN state = 'committed' THEN 1 ELSE 0 END) FROM parts"
            ).fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0, 0
    return int(row[0] or 0), int(row[1] or 0)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
def test_broker_restart_mid_sync(tmp_path: Path, shared: bool, record_property: object) -> None:
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(
        tmp_path / "server",
        broker.url,
        settings={"SOHOA_SHARED_SUBSCRIPTION": "true" if shared else "false"},
    )
    proxy = LinkProxy(broker.port, rate_bps=2_000_000).start()
    try:
        server.start()
        env = agent_env(
            tmp_path / "agent",
            f"mqtt://127.0.0.1:{proxy.port}",
            DEVICE,
            SOHOA_SYNC_MASTERS="true",
            SOHOA_CHUNK_SIZE="16384",
        )
        folder = tmp_path / "in"
        folder.mkdir()
        rng = np.random.default_rng(5)
        shas = set()
        for i in range(4):
            pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png", dpi=(200, 200))
            shas.add(hashlib.sha256((folder / f"{i}.png").read_bytes()).hexdigest())
        subprocess.run([BIN / "sohoa-agent", "import", str(folder)], env=env, check=True)
        subprocess.run([BIN / "sohoa-agent", "process"], env=env, check=True)
        log = tmp_path / "sync.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [BIN / "sohoa-agent", "-v", "sync", "--wait", "--timeout", "150"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: committed(server)[1] >= 4, 60, "the texts committed")
        # The worst case for a shared subscription: the archive is away (its persistent
        # session stays) while the broker restarts, and the station sends meanwhile.
        server.stop()
        broker.kill()
        time.sleep(1.0)
        broker.start()
        time.sleep(AWAY_SECONDS)
        server.start()
        restarted = time.monotonic()
        wait_for(lambda: committed(server)[1] == committed(server)[0] == 16, 180, "every part")
        seconds = time.monotonic() - restarted
        rc = proc.wait(60)
        assert rc == 0, log.read_text(errors="replace")[-3000:]
        con = sqlite3.connect(server.data_dir / "archive.sqlite3")
        stored = {r[0] for r in con.execute("SELECT capture_sha256 FROM pages")}
        con.close()
        assert stored == shas
        kind = "shared" if shared else "plain"
        print(f"\n[broker restart, {kind}] {seconds:.1f} s from the server's return to ingested")
        record_property("seconds_return_to_ingested", round(seconds, 1))  # type: ignore[operator]
    finally:
        proxy.stop()
        server.stop()
        broker.stop()
