"""Full disks. On the station at every step: capture, pipeline output, outbox write, receipt.
The station's data directory is a size-limited tmpfs (mounted by the test, as root), filled
by a file the test controls. Each time: the operator gets the disk-full message, the outbox
stays readable (``status --json``), nothing already stored is lost or degraded, and once
space returns the station carries on by itself to an archive holding every page once. On the
archive: a retryable reject, an alert, recovery by itself."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from harness import BIN, Broker, ServerProcess, agent_env, run_agent
from linkproxy import LinkProxy
from PIL import Image

pytestmark = [pytest.mark.smalldisk, pytest.mark.mqtt, pytest.mark.tesseract, pytest.mark.slow]

DEVICE = "xa-fulldisk-01"
DISK_FULL_VI = "Ổ đĩa sắp đầy"  # agent.messages "disk_full"


@dataclass
class SmallDisk:
    """A tmpfs of ``size_mb`` at ``path`` and a filler file to take its space away."""

    path: Path
    size_mb: int
    mounted: bool = False

    def mount(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "tmpfs", self.path],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            why = f"cannot mount a size-limited tmpfs (needs root): {out.stderr.strip()}"
            if os.environ.get("CI") == "true":
                pytest.fail(why)
            pytest.skip(why)
        self.mounted = True
        return self

    @property
    def filler(self) -> Path:
        return self.path / "filler"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Take all space but ``leave`` bytes (grows the filler; tmpfs counts whole pages)."""
        want = max(0, self.free_bytes() - leave)
        have = self.filler.stat().st_size if self.filler.exists() else 0
        with open(self.filler, "ab") as fh, contextlib.suppress(OSError):
            os.posix_fallocate(fh.fileno(), have, want)
        with contextlib.suppress(OSError), open(self.filler, "ab") as fh:
            block = b"\0" * 4096  # what fallocate could not take, page by page
            while self.free_bytes() > leave + 4096:
                fh.write(block)
                fh.flush()

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], check=False)
            self.mounted = False


@dataclass
class Station:
    tmp: Path
    disk: SmallDisk
    broker: Broker
    server: ServerProcess
    inputs: dict[str, bytes] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.disk.path / "agent"

    def env(self, **extra: str) -> dict[str, str]:
        return agent_env(
            self.data_dir,
            self.broker.url,
            DEVICE,
            SOHOA_SYNC_MASTERS="true",
            SOHOA_DPI="200",
            SOHOA_MIN_FREE_MB="10",
            SOHOA_PAGE_BUDGET_MB="1",
            SOHOA_PIPELINE_WORKERS="1",
            **extra,
        )

    def agent(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_agent(self.env(), *args, timeout=timeout)

    def import_pages(self, n: int, seed: int) -> subprocess.CompletedProcess[str]:
        folder = self.tmp / "in" / str(seed)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for i in range(n):
            path = folder / f"{i:02d}.png"
            pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path, dpi=(200, 200))
            self.inputs[hashlib.sha256(path.read_bytes()).hexdigest()] = path.read_bytes()
        return self.agent("import", str(folder))

    def status(self) -> dict:  # type: ignore[type-arg]
        out = self.agent("status", "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def outbox_pages(self) -> dict[str, dict]:  # type: ignore[type-arg]
        """Every page the outbox holds, read from its files (each must parse)."""
        index = json.loads((self.data_dir / "index.json").read_text())["_default"]
        pages = {}
        for doc in index.values():
            path = self.data_dir / "batches" / doc["batch_id"] / "batch.json"
            for page in json.loads(path.read_text()).get("pages", {}).values():
                pages[page["page_id"]] = {**page, "batch_id": doc["batch_id"]}
        return pages

    def assert_all_archived_once(self) -> int:
        pages = self.outbox_pages()
        archived = {}
        for batch in self.server.get_json("/api/v1/batches?limit=1000"):
            detail = self.server.get_json(f"/api/v1/batches/{batch['id']}")
            for page in detail["pages"]:
                assert page["page_id"] not in archived, "a page twice at the archive"
                archived[page["page_id"]] = page
        assert set(archived) == set(pages)
        for page_id, page in pages.items():
            assert page["state"] == "processed", (page_id, page["state"], page.get("error"))
            assert archived[page_id]["capture_sha256"] == page["capture_sha256"]
            status, body, _ = self.server.get(f"/api/v1/pages/{archived[page_id]['id']}/original")
            assert status == 200 and hashlib.sha256(body).hexdigest() == page["capture_sha256"]
        return len(pages)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    disk = SmallDisk(tmp_path / "disk", 48).mount()
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(tmp_path / "server", broker.url)
    try:
        server.start()
        yield Station(tmp_path, disk, broker, server)
    finally:
        server.stop()
        broker.stop()
        disk.unmount()
        shutil.rmtree(tmp_path / "disk", ignore_errors=True)


def recover_and_sync(station: Station) -> int:
    station.disk.release()
    out = station.agent("sync", "--wait", "--timeout", "120")
    assert out.returncode == 0, out.stdout + out.stderr
    return station.assert_all_archived_once()


@pytest.mark.sane
def test_disk_full_at_capture_keeps_the_pages_scanned(station: Station) -> None:
    """The disk fills (another program, a log) while the feeder runs: the pages saved so far
    stay, the operator is told the disk is full, the next scan is refused until space
    returns."""
    env = station.env(SOHOA_SOURCE="adf")
    with open(station.tmp / "scan.log", "wb") as log:
        proc = subprocess.Popen(
            [BIN / "sohoa-agent", "scan", "--new"], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def fill_after_page_two() -> None:
        while "Đã lưu trang 2" not in (station.tmp / "scan.log").read_text(errors="replace"):
            if proc.poll() is not None:
                return
            time.sleep(0.02)
        station.disk.fill()

    filler = threading.Thread(target=fill_after_page_two)
    filler.start()
    rc = proc.wait(120)
    filler.join()
    out = (station.tmp / "scan.log").read_text(errors="replace")
    told = out.count("Đã lưu trang")
    assert rc != 0 and DISK_FULL_VI in out, out
    assert 2 <= told < 10, out
    assert len(station.outbox_pages()) >= told
    assert sum(b["pages"] for b in station.status()["pending"]) >= told

    refused = run_agent(env, "scan", "--new")
    assert refused.returncode != 0 and DISK_FULL_VI in refused.stderr, refused.stderr
    assert recover_and_sync(station) >= told


def test_disk_full_in_the_pipeline_leaves_pages_to_process_later(station: Station) -> None:
    """Processing that fails for want of space is not a page that failed: it stays captured
    (never sent as a failed page without its archival copy) and is processed once space
    returns."""
    assert station.import_pages(3, seed=1).returncode == 0
    station.disk.fill(leave=64 * 1024)
    out = station.agent("process")
    assert out.returncode != 0 and DISK_FULL_VI in out.stderr, out.stdout + out.stderr
    pages = station.outbox_pages()
    assert len(pages) == 3
    assert all(p["state"] in ("captured", "processed") for p in pages.values()), pages
    station.status()
    assert recover_and_sync(station) == 3


def test_disk_full_at_outbox_write_and_receipt(station: Station) -> None:
    """Processed pages, then no space: the receipts that come back cannot be recorded. The
    outbox stays readable and the sync finishes once space returns, nothing sent twice into
    the archive."""
    assert station.import_pages(3, seed=2).returncode == 0
    assert station.agent("process").returncode == 0
    station.disk.fill(leave=0)
    out = station.agent("sync", "--wait", "--timeout", "30")
    assert out.returncode != 0, out.stdout + out.stderr
    assert DISK_FULL_VI in out.stderr, out.stdout + out.stderr
    station.status()
    assert len(station.outbox_pages()) == 3
    assert recover_and_sync(station) == 3


# -- the archive's disk fills ------------------------------------------------------------------


def test_archive_disk_full_is_a_retryable_reject_then_recovers_by_itself(tmp_path: Path) -> None:
    """A full disk at the archive: nothing committed, each device told to wait (a signed
    Reject ``retry_later``) — it stops sending instead of re-sending whole parts round after
    round —, the trouble shown to staff (/healthz, an alert), and once space returns the same
    station finishes with every page archived once."""
    disk = SmallDisk(tmp_path / "archive-disk", 48).mount()
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(disk.path / "server", broker.url, settings={"SOHOA_RETRY_AFTER_S": "60"})
    proxy = LinkProxy(broker.port, rate_bps=4_000_000).start()
    try:
        server.start()
        env = agent_env(
            tmp_path / "agent",
            f"mqtt://127.0.0.1:{proxy.port}",
            DEVICE,
            SOHOA_SYNC_MASTERS="true",
            SOHOA_PIPELINE_WORKERS="1",
        )
        station_dir = tmp_path / "agent"
        folder = tmp_path / "in"
        folder.mkdir()
        rng = np.random.default_rng(9)
        for i in range(3):
            pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png", dpi=(200, 200))
        run_agent(env, "import", str(folder), check=True)
        run_agent(env, "process", check=True)
        disk.fill(leave=0)

        log = tmp_path / "sync-full.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [BIN / "sohoa-agent", "-v", "sync", "--wait", "--timeout", "25"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        while "the archive asks to wait" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            time.sleep(0.05)
        sent_at_reject = proxy.bytes_up
        rc = proc.wait(120)
        out = log.read_text(errors="replace")
        assert rc == 75, out[-3000:]  # timed out waiting, as told; nothing lost
        assert "retry_later" in out
        resent = proxy.bytes_up - sent_at_reject
        # What was in flight when the reject came (a window of chunks), never another round.
        assert resent < 512 * 1024, f"{resent} bytes sent after the archive said wait"
        health = server.get_json("/healthz", auth=False)
        assert health["ingest_trouble"], health
        index = json.loads((station_dir / "index.json").read_text())["_default"]
        assert [b["state"] for b in index.values()] == ["ready"]

        disk.release()
        out2 = run_agent(env, "-v", "sync", "--wait", "--timeout", "120")
        assert out2.returncode == 0, out2.stdout + out2.stderr[-3000:]
        archived = {
            p["capture_sha256"]
            for b in server.get_json("/api/v1/batches")
            for p in server.get_json(f"/api/v1/batches/{b['id']}")["pages"]
        }
        assert len(archived) == 3
        assert server.get_json("/healthz", auth=False)["ingest_trouble"] is None
        con = sqlite3.connect(server.data_dir / "archive.sqlite3")
        kinds = [r[0] for r in con.execute("SELECT kind FROM alerts ORDER BY id")]
        con.close()
        assert "archive_stores_again" in kinds, kinds
    finally:
        proxy.stop()
        server.stop()
        broker.stop()
        disk.unmount()
