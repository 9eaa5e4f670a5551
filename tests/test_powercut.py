"""The power-cut layer itself (tests/powercut.py): what survives a cut is exactly what was
made durable, by the rules of fsync on files and directories. Each test first shows the
unsafe way losing data, so that the layer is known to cut, then the safe way keeping it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import BIN, Broker, ServerProcess, agent_env
from PIL import Image
from powercut import VolatileDisk, fuse_missing

from agent.outbox import storage
from protocol import signing
from server.store import keys
from server.store.files import Store

pytestmark = [pytest.mark.powercut]


def require_fuse() -> None:
    """Under CI a missing FUSE fails the run; elsewhere it skips with the install hint."""
    why = fuse_missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"power-cut tests need FUSE: {why}")
        pytest.skip(f"power-cut tests need FUSE: {why}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[VolatileDisk]:
    require_fuse()
    d = VolatileDisk(tmp_path / "disk").mount()
    try:
        yield d
    finally:
        d.unmount()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, sync: bool = False) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def test_a_write_never_synced_is_lost_and_a_synced_one_kept(disk: VolatileDisk) -> None:
    f = disk.mnt / "f"
    write(f, b"one", sync=True)
    fsync_path(disk.mnt)
    write(f, b"two, not synced")  # O_TRUNC then write: both volatile
    assert f.read_bytes() == b"two, not synced"
    disk.cut()
    assert f.read_bytes() == b"one"
    with open(f, "r+b") as fh:  # an overwrite in place, synced this time
        fh.write(b"ONE")
        fh.flush()
        os.fsync(fh.fileno())
    disk.cut()
    assert f.read_bytes() == b"ONE"


def test_a_file_synced_but_not_its_directory_is_lost(disk: VolatileDisk) -> None:
    write(disk.mnt / "new", b"data", sync=True)
    disk.cut()
    assert not (disk.mnt / "new").exists()
    write(disk.mnt / "new", b"data", sync=True)
    fsync_path(disk.mnt)
    disk.cut()
    assert (disk.mnt / "new").read_bytes() == b"data"


def test_a_name_made_durable_without_its_data_comes_back_empty(disk: VolatileDisk) -> None:
    write(disk.mnt / "named", b"never synced")
    fsync_path(disk.mnt)
    counts = disk.cut()
    assert (disk.mnt / "named").read_bytes() == b""
    assert counts["empty_files"] == 1


def test_a_rename_without_a_directory_fsync_leaves_the_old_name(disk: VolatileDisk) -> None:
    target = disk.mnt / "state.json"
    write(target, b"old", sync=True)
    fsync_path(disk.mnt)
    tmp = disk.mnt / ".tmp-state.json"
    write(tmp, b"new", sync=True)
    os.replace(tmp, target)
    assert target.read_bytes() == b"new"
    disk.cut()
    assert target.read_bytes() == b"old"
    assert not tmp.exists()
    # The whole recipe: temp, fsync, rename, fsync the directory.
    write(tmp, b"new", sync=True)
    os.replace(tmp, target)
    fsync_path(disk.mnt)
    disk.cut()
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in disk.mnt.iterdir()) == ["state.json"]


def test_an_unlink_without_a_directory_fsync_comes_back(disk: VolatileDisk) -> None:
    write(disk.mnt / "keep", b"k", sync=True)
    fsync_path(disk.mnt)
    (disk.mnt / "keep").unlink()
    disk.cut()
    assert (disk.mnt / "keep").read_bytes() == b"k"


def test_a_new_directory_needs_its_parent_synced(disk: VolatileDisk) -> None:
    sub = disk.mnt / "a" / "b"
    sub.mkdir(parents=True)
    write(sub / "f", b"x", sync=True)
    fsync_path(sub)
    disk.cut()
    assert not (disk.mnt / "a").exists(), "a directory entry no one fsynced survived"
    sub.mkdir(parents=True)
    write(sub / "f", b"x", sync=True)
    for d in (sub, sub.parent, disk.mnt):
        fsync_path(d)
    disk.cut()
    assert (sub / "f").read_bytes() == b"x"


def test_files_present_at_mount_are_durable_and_copied_before_a_change(
    disk: VolatileDisk,
) -> None:
    write(disk.mnt / "f", b"base", sync=True)
    fsync_path(disk.mnt)
    disk.cut()  # now "f" is adopted at mount time (its durable bytes share the live file)
    with open(disk.mnt / "f", "ab") as fh:
        fh.write(b" + appended")
    assert (disk.mnt / "f").read_bytes() == b"base + appended"
    disk.cut()
    assert (disk.mnt / "f").read_bytes() == b"base"


def test_sqlite_keeps_what_it_committed_and_nothing_else(disk: VolatileDisk) -> None:
    db = disk.mnt / "db.sqlite3"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (n INTEGER)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    con.execute("COMMIT")
    con.execute("BEGIN")
    con.execute("INSERT INTO t VALUES (-1)")  # never committed
    disk.cut()  # the connection is on the old mount: it dies with the power
    con2 = sqlite3.connect(db)
    assert con2.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con2.execute("SELECT COUNT(*), MIN(n) FROM t").fetchone() == (100, 0)
    con2.close()
    con.close()


def test_server_receipt_key_survives_a_power_cut(disk: VolatileDisk) -> None:
    """Stations pin the archive's receipt key at enrolment: a key made again after a power
    cut would make every station ignore every receipt."""
    data_dir = disk.mnt / "server"
    data_dir.mkdir()
    fsync_path(disk.mnt)
    made = signing.public_key_hex(keys.load_or_create(data_dir))
    disk.cut()
    assert signing.public_key_hex(keys.load_or_create(data_dir)) == made


def test_server_store_keeps_a_flushed_part_in_a_new_store(disk: VolatileDisk) -> None:
    """A part the store flushed (then committed and receipted) survives, directories the
    store had to create included — its root too."""
    data_dir = disk.mnt / "server"
    data_dir.mkdir()
    fsync_path(disk.mnt)
    store = Store(data_dir / "store")
    final = store.part_path("xa-01", "b" * 32, 1, "c" * 32, "text", "text/plain; charset=utf-8")
    data = "trang một".encode()
    store.write_at(final, 0, data, len(data))
    sha = hashlib.sha256(data).hexdigest()
    assert store.finalize(final, sha, len(data))
    disk.cut()
    assert final.read_bytes() == data


def test_agent_storage_write_survives_a_power_cut(disk: VolatileDisk) -> None:
    """agent.storage is what every durable file on the station goes through: a file it says
    is written must survive, directories it had to create included."""
    target = disk.mnt / "batches" / "b1" / "capture" / "0001.png"
    storage.write_bytes(target, b"page one")
    storage.copy_file(target, disk.mnt / "batches" / "b2" / "capture" / "0001.png")
    disk.cut()
    assert target.read_bytes() == b"page one"
    assert (disk.mnt / "batches" / "b2" / "capture" / "0001.png").read_bytes() == b"page one"


# -- power cuts on a whole station and archive ------------------------------------------------
#
# The station's data directory and the archive's both live on a power-cuttable disk; the
# broker runs on an ordinary one (it is not the product, and SIGKILLs of it are
# tests/test_faults.py's subject). Each round starts one step of a station's day — a scan
# (SANE's test backend), an import, or a sync (process, send, ingest, receipt) — and cuts
# power at a random moment on the station, the archive or both. Everything is restarted on
# the surviving bytes; then the next round. At the end one clean sync, and the invariant.

DEVICE = "xa-powercut-01"
TOLD = re.compile(r"^Đã lưu trang (\d+)$", re.M)  # agent.messages "scan_page", said per page


@dataclass
class Site:
    """A station and an archive on cuttable disks, a broker between them."""

    tmp: Path
    station: VolatileDisk
    archive: VolatileDisk
    broker: Broker
    server: ServerProcess
    inputs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes imported
    told: dict[str, set[int]] = field(default_factory=dict)  # batch -> page_nos said saved
    runs: int = 0
    receipt_key: str = ""

    @property
    def agent_dir(self) -> Path:
        return self.station.mnt / "agent"

    @property
    def env(self) -> dict[str, str]:
        return agent_env(
            self.agent_dir,
            self.broker.url,
            DEVICE,
            SOHOA_SYNC_MASTERS="true",
            SOHOA_DPI="200",
            SOHOA_SOURCE="flatbed",
            SOHOA_PIPELINE_WORKERS="1",
            SOHOA_SERVER_PUBLIC_KEY=self.receipt_key,  # pinned at enrolment
        )

    def start(self, *args: str, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.runs += 1
        log = self.tmp / f"agent-{self.runs:03d}-{args[0]}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [BIN / "sohoa-agent", *args],
                env={**self.env, **env},
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return proc, log

    def batches(self) -> dict[str, dict[str, Any]]:
        """The station's outbox as on its disk (every file must parse: a state file left
        unreadable by a cut fails here)."""
        index = self.agent_dir / "index.json"
        if not index.exists():
            return {}
        out = {}
        for doc in json.loads(index.read_text())["_default"].values():
            path = self.agent_dir / "batches" / doc["batch_id"] / "batch.json"
            pages = json.loads(path.read_text()).get("pages", {}) if path.exists() else {}
            out[doc["batch_id"]] = {**doc, "pages": {p["page_no"]: p for p in pages.values()}}
        return out

    def db(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.server.data_dir / "archive.sqlite3", timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def archived(self) -> dict[tuple[str, int], list[sqlite3.Row]]:
        """Committed capture parts at the archive by (batch, page_no)."""
        out: dict[tuple[str, int], list[sqlite3.Row]] = {}
        with contextlib.closing(self.db()) as con:
            rows = con.execute(
                "SELECT b.batch_id, p.page_no, p.page_id, p.capture_sha256, parts.sha256,"
                " parts.path, parts.state FROM pages p JOIN batches b ON b.id = p.batch_pk"
                " JOIN parts ON parts.page_pk = p.id AND parts.name = 'capture'"
                " WHERE p.device_id = ?",
                (DEVICE,),
            ).fetchall()
        for r in rows:
            out.setdefault((r["batch_id"], r["page_no"]), []).append(r)
        return out

    def check_state_files(self) -> None:
        self.batches()  # parses every TinyDB file of the station
        db = self.server.data_dir / "archive.sqlite3"
        if db.exists():
            with contextlib.closing(self.db()) as con:
                assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def check_told_pages_kept(self) -> None:
        """Every page the station said it saved is on the station or committed at the
        archive (with the capture's sha256 the station recorded)."""
        held = self.batches()
        archived = self.archived()
        for batch_id, page_nos in self.told.items():
            for no in page_nos:
                page = held.get(batch_id, {}).get("pages", {}).get(no)
                rows = [dict(r) for r in archived.get((batch_id, no), [])]
                at_archive = [r for r in rows if r["state"] == "committed"]
                if page is not None:
                    capture = self.agent_dir / "batches" / batch_id / page["capture_file"]
                    ok = capture.exists() and sha256_file(capture) == page["capture_sha256"]
                    assert ok or at_archive, (
                        f"page {no} of {batch_id}: capture lost ({capture} exists:"
                        f" {capture.exists()}; {page}; at the archive: {rows})"
                    )
                else:
                    assert at_archive, f"page {no} of {batch_id} told saved, now nowhere"

    def cut_station(self, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None:
            kill_group(proc)
        self.station.cut()

    def cut_archive(self) -> None:
        self.server.kill()
        self.archive.cut()
        self.server.start()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with contextlib.suppress(ProcessLookupError):  # pipeline workers or tesseract left over
        os.killpg(proc.pid, signal.SIGKILL)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def noise_pngs(folder: Path, n: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        path = folder / f"{seed:03d}-{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(
            path, dpi=(200, 200)
        )
        out.append(path)
    return out


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    require_fuse()
    station = VolatileDisk(tmp_path / "station").mount()
    archive = VolatileDisk(tmp_path / "archive").mount()
    broker = Broker(tmp_path / "broker").start()
    # The data directories exist before the first cut, as an installation leaves them
    # (systemd's StateDirectory=): their own names are not what is under test.
    for disk, name in ((station, "agent"), (archive, "server")):
        (disk.mnt / name).mkdir()
        fsync_path(disk.mnt)
    server = ServerProcess(archive.mnt / "server", broker.url)
    try:
        server.start()
        key = subprocess.run(
            [BIN / "sohoa-server", "receipt-key"],
            env=server.env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        yield Site(tmp_path, station, archive, broker, server, receipt_key=key)
    finally:
        server.kill()
        broker.stop()
        station.unmount()
        archive.unmount()


@pytest.mark.mqtt
@pytest.mark.sane
@pytest.mark.tesseract
@pytest.mark.slow
@pytest.mark.timeout(900)  # ~2 min: a power cut at every stage
def test_power_cuts_from_scan_to_receipt(site: Site, record_property: Any) -> None:
    rng = random.Random(int(os.environ.get("SOHOA_POWERCUT_SEED", "18")))
    rounds = int(os.environ.get("SOHOA_POWERCUT_ROUNDS", "14"))
    cuts = {"station": 0, "archive": 0}
    for n in range(rounds):
        step = rng.choice(["scan", "scan", "import", "sync", "sync"])
        before = set(site.batches())
        if step == "scan":  # one sheet on the flatbed, or the feeder's ten
            source = rng.choice(["flatbed", "adf"])
            proc, log = site.start("scan", "--new", SOHOA_SOURCE=source)
        elif step == "import":
            files = noise_pngs(site.tmp / "in" / str(n), 2, seed=n)
            for f in files:
                data = f.read_bytes()
                site.inputs[hashlib.sha256(data).hexdigest()] = data
            proc, log = site.start("import", str(files[0].parent))
        else:
            proc, log = site.start("-v", "sync", "--wait", "--timeout", "60")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(rng.uniform(0.3, 8.0))
        where = rng.choice(["station", "station", "archive", "both"])
        if where in ("archive", "both"):
            site.cut_archive()
            cuts["archive"] += 1
        if where in ("station", "both"):
            site.cut_station(proc)
            cuts["station"] += 1
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(90)
            kill_group(proc)
        said = {int(m) for m in TOLD.findall(log.read_text(errors="replace"))}
        if step == "scan" and said:
            new = set(site.batches()) - before
            assert new, f"round {n}: pages {sorted(said)} told saved, their batch is gone"
            (batch_id,) = new
            site.told.setdefault(batch_id, set()).update(said)
        site.check_state_files()
        site.check_told_pages_kept()

    # The power stays on: one sync carries everything, then the invariant.
    proc, log = site.start("-v", "sync", "--wait", "--timeout", "240")
    rc = proc.wait(300)
    assert rc == 0, log.read_text(errors="replace")[-3000:]
    counts = assert_everything_archived_once(site)
    report = {**counts, "station_cuts": cuts["station"], "archive_cuts": cuts["archive"]}
    print(f"\n[power cuts] {report}")
    for key, value in report.items():
        record_property(key, value)
    assert cuts["station"] >= 5 and cuts["archive"] >= 3, cuts


def assert_everything_archived_once(site: Site) -> dict[str, int]:
    held = site.batches()
    site.check_told_pages_kept()
    with contextlib.closing(site.db()) as con:
        dup = con.execute(
            "SELECT b.batch_id, p.page_no, COUNT(*) FROM pages p"
            " JOIN batches b ON b.id = p.batch_pk GROUP BY b.batch_id, p.page_no"
            " HAVING COUNT(*) > 1"
        ).fetchall()
        assert not dup, [tuple(r) for r in dup]
        parts = con.execute(
            "SELECT parts.name, parts.sha256, parts.size, parts.state, parts.path, p.page_id"
            " FROM parts JOIN pages p ON p.id = parts.page_pk"
        ).fetchall()
    for part in parts:  # every SHA-256 equal: the archive's bytes hash to the record
        assert part["state"] == "committed", dict(part)
        assert sha256_file(Path(part["path"])) == part["sha256"], dict(part)
    archived = site.archived()
    pages = 0
    for batch_id, batch in held.items():
        assert batch["state"] == "done", (batch_id, batch["state"], batch["last_error"])
        for no, page in batch["pages"].items():
            rows = archived.get((batch_id, no), [])
            assert len(rows) == 1, (batch_id, no, rows)
            assert rows[0]["capture_sha256"] == page["capture_sha256"]
            pages += 1
            if batch["source"] == "import":
                data = Path(rows[0]["path"]).read_bytes()
                assert data == site.inputs[page["capture_sha256"]]
    assert len(archived) == pages, "the archive has pages the station never had"
    return {
        "pages": pages,
        "told_pages": sum(len(v) for v in site.told.values()),
        "parts": len(parts),
        "batches": len(held),
    }
