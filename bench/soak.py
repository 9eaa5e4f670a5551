"""A season of faults: a real station, broker and server driven through kills, power cuts and
a bad link, then counted page by page.

The station's and the archive's data directories are on power-cuttable disks
(tests/powercut.py: unsynced writes are lost at a cut); the broker runs on an ordinary disk
behind tests/linkproxy.py (``--rate`` bit/s, cut every ``--cut-every`` s). The station runs
``sohoa-agent sync --wait --timeout 20`` again and again (what the service's sync loop does;
an import waits for the run in progress, as one process writes the outbox); pages
arrive as imports of small generated images (unique bytes each), masters included, so every
capture can be compared byte for byte. During the fault window faults come at random
moments (seeded): agent SIGKILLs (the run and its pipeline), broker SIGKILLs, server
SIGKILLs, power cuts (station, archive or both: processes killed, unsynced writes dropped,
everything restarted on the surviving bytes), and optionally the archive offline for a
while with a broker queue smaller than what arrives meanwhile. Then the faults stop and the
station converges.

Prints: pages lost / duplicated / corrupted (goal 0, 0, 0), bytes re-sent per interruption
(bytes the link carried up minus the payload committed, over every fault and link cut), time
to converge after the last fault, the station's disk high-water mark. Nothing here asserts a
time; the exit status is non-zero when a page is lost (on neither side), duplicated or
corrupted, or still only on the station when the convergence time runs out.

    python -m bench soak [--pages 40] [--batches 8] [--minutes 4] [--agent-kills 30]
                         [--broker-kills 4] [--server-kills 3] [--power-cuts 6]
                         [--rate 64000] [--cut-every 60] [--offline 0] [--max-queued 1000]
                         [--seed 18]

The issue's season: ``--pages 500 --batches 50 --minutes 45 --agent-kills 200
--broker-kills 20 --server-kills 10 --power-cuts 20 --offline 120 --max-queued 100``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from harness import BIN, Broker, ServerProcess, agent_env, run_agent  # noqa: E402
from linkproxy import LinkProxy  # noqa: E402
from powercut import VolatileDisk, fuse_missing  # noqa: E402

DEVICE = "xa-soak-01"


def make_page(path: Path, rng: random.Random) -> bytes:
    """A small page of random rectangles at 200 dpi (a few KB, unique)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (400, 560), "white")
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = rng.randrange(380), rng.randrange(540)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x, y, x + rng.randrange(4, 60), y + rng.randrange(2, 12)), fill=colour)
    img.save(path, dpi=(200, 200))
    return path.read_bytes()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with contextlib.suppress(ProcessLookupError):  # pipeline workers left over
        os.killpg(proc.pid, signal.SIGKILL)


def du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


@dataclass
class Season:
    work: Path
    args: argparse.Namespace
    station: VolatileDisk = field(init=False)
    archive: VolatileDisk = field(init=False)
    broker: Broker = field(init=False)
    server: ServerProcess = field(init=False)
    proxy: LinkProxy = field(init=False)
    inputs: dict[str, bytes] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    agent_runs: int = 0
    high_water: int = 0
    station_up: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    current: subprocess.Popen[bytes] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.station = VolatileDisk(self.work / "station").mount()
        self.archive = VolatileDisk(self.work / "archive").mount()
        for disk, name in ((self.station, "agent"), (self.archive, "server")):
            (disk.mnt / name).mkdir()  # provisioned before any cut (StateDirectory=)
            fd = os.open(disk.mnt, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)
        self.broker = Broker(self.work / "broker", max_queued=self.args.max_queued).start()
        self.server = ServerProcess(self.archive.mnt / "server", self.broker.url).start()
        self.key = subprocess.run(
            [BIN / "sohoa-server", "receipt-key"],
            env=self.server.env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.proxy = LinkProxy(self.broker.port, rate_bps=self.args.rate, delay_s=0.3).start()
        self.station_up.set()

    @property
    def agent_dir(self) -> Path:
        return self.station.mnt / "agent"

    def env(self) -> dict[str, str]:
        return agent_env(
            self.agent_dir,
            f"mqtt://127.0.0.1:{self.proxy.port}",
            DEVICE,
            SOHOA_SYNC_MASTERS="true",
            SOHOA_PIPELINE_WORKERS="1",
            SOHOA_SERVER_PUBLIC_KEY=self.key,
        )

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- the station's work ---------------------------------------------------------------

    def import_batch(self, n: int, rng: random.Random, no: int) -> None:
        folder = self.work / "in" / f"{no:03d}"
        folder.mkdir(parents=True)
        for i in range(n):
            data = make_page(folder / f"{i:03d}.png", rng)
            self.inputs[hashlib.sha256(data).hexdigest()] = data
        with self.lock:  # no new sync run meanwhile; not while the station's power is off
            self.station_up.wait()
            while self.current is not None and self.current.poll() is None:
                time.sleep(0.2)  # one process writes the outbox: let the run finish
            out = run_agent(self.env(), "import", str(folder), timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"import failed: {out.stdout}{out.stderr}")

    def agent_loop(self) -> None:
        """``sync --wait`` again and again, as the service's loop does."""
        while not self.stopping.is_set():
            self.station_up.wait()
            with self.lock:
                if self.stopping.is_set():
                    return
                self.agent_runs += 1
                log = self.work / "logs" / f"agent-{self.agent_runs:04d}.log"
                with open(log, "wb") as fh:
                    self.current = subprocess.Popen(
                        [BIN / "sohoa-agent", "-v", "sync", "--wait", "--timeout", "20"],
                        env=self.env(),
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            proc = self.current
            while proc.poll() is None and not self.stopping.is_set():
                time.sleep(0.2)
            kill_group(proc)
            time.sleep(1.0 if proc.returncode != 0 else 2.0)  # the service's loop waits too

    def sample_disk(self) -> None:
        while not self.stopping.wait(1.0):
            with contextlib.suppress(OSError):
                self.high_water = max(self.high_water, du(self.station.live / "agent"))

    # -- faults ---------------------------------------------------------------------------

    def kill_agent(self) -> None:
        with self.lock:
            if self.current is not None:
                kill_group(self.current)

    def power_cut(self, where: str) -> None:
        if where in ("archive", "both"):
            self.server.kill()
            self.broker.kill()  # one machine: the broker loses its unsaved state too
            self.archive.cut()
            self.broker.start()
            self.server.start()
        if where in ("station", "both"):
            with self.lock:
                self.station_up.clear()
                if self.current is not None:
                    kill_group(self.current)
                self.station.cut()
                self.station_up.set()

    def fault(self, kind: str, rng: random.Random) -> None:
        if kind == "agent":
            self.kill_agent()
        elif kind == "broker":
            self.broker.kill()
            time.sleep(rng.uniform(0.5, 3.0))
            self.broker.start()
        elif kind == "server":
            self.server.kill()
            time.sleep(rng.uniform(0.5, 3.0))
            self.server.start()
        elif kind == "power":
            where = rng.choice(["station", "station", "archive", "both"])
            self.count(f"power_{where}")
            self.power_cut(where)
        elif kind == "offline":
            self.server.stop()
            time.sleep(self.args.offline)
            self.server.start()
        self.count(kind)

    # -- the count --------------------------------------------------------------------------

    def archive_state(self) -> tuple[dict[str, list[sqlite3.Row]], int, int]:
        """Committed captures at the archive by sha256, committed payload bytes, and parts
        whose stored bytes do not hash to their record."""
        con = sqlite3.connect(self.server.data_dir / "archive.sqlite3", timeout=30)
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute(
                "SELECT p.page_id, p.capture_sha256, parts.name, parts.sha256, parts.size,"
                " parts.path, parts.state FROM parts JOIN pages p ON p.id = parts.page_pk"
                " WHERE p.device_id = ?",
                (DEVICE,),
            ).fetchall()
        finally:
            con.close()
        captures: dict[str, list[sqlite3.Row]] = {}
        payload = corrupted = 0
        for r in rows:
            if r["state"] != "committed":
                continue
            payload += r["size"]
            data = Path(r["path"]).read_bytes() if Path(r["path"]).exists() else b""
            if hashlib.sha256(data).hexdigest() != r["sha256"]:
                corrupted += 1
            if r["name"] == "capture":
                captures.setdefault(r["capture_sha256"], []).append(r)
                if data != self.inputs.get(r["capture_sha256"]):
                    corrupted += 1
        return captures, payload, corrupted

    def station_captures(self) -> set[str]:
        """The sha256 of every capture the station's outbox still holds."""
        held = set()
        for path in (self.agent_dir / "batches").glob("*/capture/*"):
            with contextlib.suppress(OSError):
                held.add(hashlib.sha256(path.read_bytes()).hexdigest())
        return held

    def converged(self) -> bool:
        """The archive has every page and the station holds every batch done."""
        try:
            captures, _, _ = self.archive_state()
            index = json.loads((self.agent_dir / "index.json").read_text())["_default"]
        except (sqlite3.Error, OSError, ValueError):
            return False
        done = all(doc["state"] == "done" for doc in index.values())
        return done and set(captures) >= set(self.inputs)

    def close(self) -> None:
        self.stopping.set()
        self.station_up.set()
        with contextlib.suppress(Exception):
            self.proxy.stop()
        self.server.kill()
        self.broker.stop()
        self.station.unmount()
        self.archive.unmount()


def run(args: argparse.Namespace) -> int:
    why = fuse_missing()
    if why is not None:
        print(f"soak needs FUSE: {why}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    lost = duplicated = corrupted = 1  # until counted
    waiting: set[str] = set()
    work = Path(tempfile.mkdtemp(prefix="sohoa-soak-"))
    (work / "logs").mkdir()
    season = Season(work, args)
    threads = [
        threading.Thread(target=season.agent_loop, daemon=True),
        threading.Thread(target=season.sample_disk, daemon=True),
    ]
    try:
        window = args.minutes * 60.0
        per_batch = max(1, args.pages // args.batches)
        sizes = [per_batch] * (args.batches - 1) + [args.pages - per_batch * (args.batches - 1)]
        events: list[tuple[float, str]] = [
            (window * i / args.batches, f"import:{i}") for i in range(args.batches)
        ]
        for kind, n in (
            ("agent", args.agent_kills),
            ("broker", args.broker_kills),
            ("server", args.server_kills),
            ("power", args.power_cuts),
        ):
            events += [(rng.uniform(5.0, window), kind) for _ in range(n)]
        if args.offline > 0:
            events.append((rng.uniform(window * 0.3, window * 0.6), "offline"))
        events.sort()
        started = time.monotonic()
        for t in threads:
            t.start()
        cutter_stop = threading.Event()

        def cutter() -> None:
            while args.cut_every > 0 and not cutter_stop.wait(args.cut_every):
                season.proxy.cut()
                season.count("link")

        link_thread = threading.Thread(target=cutter, daemon=True)
        link_thread.start()
        for at, kind in events:
            delay = at - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
            if kind.startswith("import:"):
                i = int(kind.split(":")[1])
                season.import_batch(sizes[i], rng, i)
            else:
                season.fault(kind, rng)
            print(f"  {time.monotonic() - started:7.1f} s  {kind}", flush=True)
        cutter_stop.set()
        last_fault = time.monotonic()
        deadline = last_fault + args.converge_timeout
        while not season.converged() and time.monotonic() < deadline:
            time.sleep(2.0)
        converge_s = time.monotonic() - last_fault
        season.stopping.set()
        for t in threads:
            t.join(60)
        if season.current is not None:
            kill_group(season.current)
        captures, payload, corrupted = season.archive_state()
        missing = set(season.inputs) - set(captures)
        waiting = missing & season.station_captures()
        lost = len(missing - waiting)
        duplicated = sum(len(v) - 1 for v in captures.values())
        interruptions = sum(
            season.counts.get(k, 0) for k in ("agent", "broker", "server", "power", "link")
        )
        resent = season.proxy.bytes_up - payload
        print()
        print(f"soak: {args.pages} pages in {args.batches} batches, {args.rate} bit/s, "
              f"seed {args.seed}, fault window {args.minutes} min")  # fmt: skip
        print(f"faults: {dict(sorted(season.counts.items()))}; agent runs {season.agent_runs}")
        print(f"pages lost {lost}, duplicated {duplicated}, corrupted {corrupted}"
              f"; not yet in the archive but held on the station {len(waiting)}")  # fmt: skip
        print(f"payload committed {payload} B, link carried up {season.proxy.bytes_up} B, "
              f"re-sent per interruption {resent // max(1, interruptions)} B "
              f"({interruptions} interruptions)")  # fmt: skip
        print(f"converged {converge_s:.1f} s after the last fault"
              + ("" if season.converged() else " (NOT converged: timed out)"))  # fmt: skip
        print(f"station disk high-water mark {season.high_water / 2**20:.1f} MiB")
        print(f"(logs and disks under {work})")
        bad = lost or duplicated or corrupted or waiting
        return 1 if bad else 0
    finally:
        season.close()
        if not args.keep and not (lost or duplicated or corrupted or waiting):
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the fault window")
    parser.add_argument("--agent-kills", type=int, default=30)
    parser.add_argument("--broker-kills", type=int, default=4)
    parser.add_argument("--server-kills", type=int, default=3)
    parser.add_argument("--power-cuts", type=int, default=6)
    parser.add_argument("--rate", type=int, default=64_000, help="link bit/s")
    parser.add_argument("--cut-every", type=float, default=60.0, help="link cut, s (0: none)")
    parser.add_argument("--offline", type=float, default=0.0, help="archive offline once, s")
    parser.add_argument("--max-queued", type=int, default=1000, help="broker queue per client")
    parser.add_argument("--converge-timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return run(parser.parse_args(argv))
