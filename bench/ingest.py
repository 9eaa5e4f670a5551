"""Benchmark: archive ingest throughput, pages per second (issue 6: ≥ 500 pages/s, 2 cores).

    python -m bench ingest [--pages 400] [--batch 50] [--mqtt-pages 400] [--no-mqtt]

Realistic pages (text 2 KB of Vietnamese, thumbnail 15 KB, archival image 50 KB; random bytes
for the images, which do not compress) go through ``server.ingest.Ingest.handle_many`` in
groups, as ``server.ingest.mqtt`` feeds it (a group = the messages queued while the previous
group was flushed: up to 256; under a steady load the queue is always full) — manifest, then
chunks — into a real SQLite archive and file store under a temporary directory on the same
disk as the data would be. In the same run:

- groups of 1 (``Ingest.handle``: one message at a time, the pre-group-commit behaviour's
  shape), of 20 and of 256 messages; default 32 KiB chunks (the agent's default) and one
  chunk per part (the fewest messages: 3 per page);
- 2 workers over the same archive, as threads and as processes (each worker its own batches,
  like a shared subscription splits devices);
- where the time goes: fsync/fdatasync calls and SQLite commits per page, counted, and the
  same 1-worker run with durability switched off *in this process only* (``os.fsync`` and
  ``os.fdatasync`` made no-ops, ``PRAGMA synchronous=OFF``) as the upper bound;
- end to end through a real Mosquitto: the server as a process (``sohoa-server run``) and a
  fast publisher standing in for a device (paho, MQTT 5, QoS 1, 1,000 in flight) that
  publishes the manifests, asks (``query``) until the server knows every batch, then
  publishes every chunk; timed from the first chunk published to the last part receipted.
  Beside it, in the same run, the same publisher against a bare subscriber that acknowledges
  at once (no server): what the broker and paho cost alone.

``--engine postgresql`` runs the same on a throwaway PostgreSQL server (tests/pgcluster.py;
a fresh database per run), without the SQLite-only rows (fsync/commit counts, durability off).

Nothing of server/ is changed by this benchmark.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import platform
import pstats
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the message builders live with the ingest tests

from harness import Broker, ServerProcess  # noqa: E402
from test_ingest import DEVICE, BatchSrc, PageSrc  # noqa: E402

from bench import proc_cpu  # noqa: E402
from bench.search import _vocabulary, page_text  # noqa: E402
from protocol import envelope, topics  # noqa: E402
from protocol.messages import BatchState, Query, Receipt, Reject  # noqa: E402
from server.ingest import Ingest  # noqa: E402
from server.store.db import Database  # noqa: E402
from server.store.files import Store  # noqa: E402

SIZES = {"text": 2048, "thumb": 15 * 1024, "archival": 50 * 1024}
DEFAULT_CHUNK = 32 * 1024
ONE_CHUNK = 1 << 20  # ChunkHeader.length max: every part here is one chunk
GROUP = 256  # server.ingest.mqtt.GROUP_MAX_MESSAGES


def make_batches(pages: int, per_batch: int, seed: int = 7) -> list[BatchSrc]:
    rng = random.Random(seed)
    words, weights = _vocabulary(seed)
    out = []
    for first in range(0, pages, per_batch):
        batch_pages = []
        for n in range(min(per_batch, pages - first)):
            text = page_text(rng, words, weights).encode()[: SIZES["text"]]
            text = text.decode("utf-8", errors="ignore").encode()
            parts = {
                "text": text,
                "thumb": rng.randbytes(SIZES["thumb"]),
                "archival": rng.randbytes(SIZES["archival"]),
            }
            batch_pages.append(PageSrc(page_no=n + 1, parts=parts))
        out.append(BatchSrc(pages=batch_pages, device=DEVICE))
    return out


def messages(batch: BatchSrc, chunk_size: int) -> list[tuple[str, bytes]]:
    out = [(topics.up(batch.device, "manifest"), batch.manifest())]
    out += [(topics.up(batch.device, "chunk"), p) for p in batch.all_chunks(chunk_size)]
    return out


# Where each run's catalogue lives: a SQLite file in the run's directory, or (--engine
# postgresql) a fresh database on the benchmark's PostgreSQL server.
CLUSTER = None
CPU: dict[str, dict[str, float]] = {}  # end-to-end runs: CPU ms per page, by part
SPY: Path | None = None  # --spy: py-spy (a dev tool, not a dependency) samples the server


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample the server process (all threads, without pausing it) until SIGINT."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy not found: pip install py-spy (a dev tool)", file=sys.stderr)
        return None
    cmd = [exe, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", "250",
           "--nonblocking", "--threads"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _children(parent: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_by_part(servers: list[int], broker: int | None) -> dict[str, float]:
    """CPU seconds so far of each part of the end-to-end run: the server processes, the
    PostgreSQL server (every child of its postmaster), Mosquitto, and this process (the
    publisher standing in for the station)."""
    out = {"server": sum(proc_cpu(p) for p in servers), "publisher": time.process_time()}
    out["mosquitto"] = proc_cpu(broker) if broker else 0.0
    if CLUSTER is not None:
        postmaster = int((CLUSTER.data / "postmaster.pid").read_text().split()[0])
        out["postgresql"] = proc_cpu(postmaster) + sum(proc_cpu(p) for p in _children(postmaster))
    return out


def spy_report(raw: Path, n: int = 25) -> list[str]:
    """Per thread: its share of the samples, then the frames with the most samples under
    them (inclusive) and where the time is spent (self), our code's frames named."""
    from collections import Counter

    threads: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        k = int(count)
        total += k
        threads[frames[0]] += k
        for f in set(frames[1:]):
            incl[f] += k
        own[frames[-1]] += k
    out = [f"{total} samples at 250 Hz"]
    out += [f"  thread {t}: {k / total:.0%}" for t, k in threads.most_common(6)]
    out += ["inclusive:"] + [f"  {k / total:5.1%}  {f}" for f, k in incl.most_common(n)]
    out += ["self:"] + [f"  {k / total:5.1%}  {f}" for f, k in own.most_common(n)]
    return out


def new_database(work: Path) -> Path | str:
    if CLUSTER is None:
        return work / "archive.sqlite3"
    return str(CLUSTER.create_database("bench"))


def feed(
    data_dir: Path, target: Path | str, streams: list[list[tuple[str, bytes]]], group: int = GROUP
) -> int:
    """One worker: its own Database connection and Ingest, as a server process has; its
    messages in groups of ``group`` (1: ``Ingest.handle``, one at a time)."""
    db = Database(target)
    ingest = Ingest(db, Store(data_dir / "store"), accept_unenrolled=True)
    replies = 0
    for stream in streams:
        for start in range(0, len(stream), group):
            for result in ingest.handle_many(stream[start : start + group]):
                assert result.error is None, result.error
                replies += len(result.replies)
    db.close()
    return replies


@dataclass
class Run:
    name: str
    pages: int
    messages: int
    seconds: float
    fsyncs: int = 0
    commits: int = 0

    @property
    def rate(self) -> float:
        return self.pages / self.seconds


def run(
    name: str,
    batches: list[BatchSrc],
    chunk_size: int,
    workers: int = 1,
    mode: str = "thread",
    profile: Path | None = None,
    group: int = GROUP,
) -> Run:
    work = Path(tempfile.mkdtemp(prefix="sohoa-bench-ingest-", dir=ROOT / ".bench-tmp"))
    target = new_database(work)
    Database(target).close()  # schema made before the clock starts
    streams = [messages(b, chunk_size) for b in batches]
    shares = [streams[i::workers] for i in range(workers)]
    count = sum(len(s) for s in streams)
    pages = sum(len(b.pages) for b in batches)
    started = time.perf_counter()
    if workers == 1 and profile is not None:
        prof = cProfile.Profile()
        prof.runcall(feed, work, target, shares[0], group)
        prof.dump_stats(profile)
    elif workers == 1:
        feed(work, target, shares[0], group)
    elif mode == "thread":
        threads = [
            threading.Thread(target=feed, args=(work, target, share, group)) for share in shares
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=feed, args=(work, target, share, group)) for share in shares]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0
    seconds = time.perf_counter() - started
    db = Database(target)
    committed = db.read().execute("SELECT COUNT(*) FROM parts WHERE state = 'committed'")
    assert committed.fetchone()[0] == pages * len(SIZES), "not every part was committed"
    db.close()
    shutil.rmtree(work, ignore_errors=True)
    return Run(name, pages, count, seconds)


def count_syncs(batches: list[BatchSrc], chunk_size: int, group: int) -> tuple[int, int]:
    """(fsync + fdatasync calls, SQLite COMMITs) for ingesting ``batches`` once."""
    calls = {"sync": 0, "commit": 0}
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def counted(real: Callable[[int], None]) -> Callable[[int], None]:
        def wrapper(fd: int) -> None:
            calls["sync"] += 1
            real(fd)

        return wrapper

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            calls["commit"] += 1

    real_connect = Database.connect

    def connect(self: Database) -> sqlite3.Connection:
        con = real_connect(self)
        con.set_trace_callback(trace)
        return con

    os.fsync, os.fdatasync = counted(real_fsync), counted(real_fdatasync)  # type: ignore[assignment]
    Database.connect = connect  # type: ignore[method-assign]
    try:
        run("count", batches, chunk_size, group=group)
    finally:
        os.fsync, os.fdatasync = real_fsync, real_fdatasync
        Database.connect = real_connect  # type: ignore[method-assign]
    return calls["sync"], calls["commit"]


def without_durability(batches: list[BatchSrc], chunk_size: int) -> Run:
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    real_connect = Database.connect

    def connect(self: Database) -> sqlite3.Connection:
        con = real_connect(self)
        con.execute("PRAGMA synchronous=OFF")
        return con

    os.fsync = os.fdatasync = lambda fd: None  # type: ignore[assignment]
    Database.connect = connect  # type: ignore[method-assign]
    try:
        return run(
            f"1 worker, 32 KiB, groups of {GROUP}, no fsync (upper bound)", batches, chunk_size
        )
    finally:
        os.fsync, os.fdatasync = real_fsync, real_fdatasync
        Database.connect = real_connect  # type: ignore[method-assign]


def top_costs(profile: Path, n: int = 8) -> list[tuple[str, float, int]]:
    stats = pstats.Stats(str(profile))
    rows = []
    for (file, line, func), (_cc, calls, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = func if file == "~" else f"{Path(file).name}:{line}({func})"
        rows.append((where, tottime, calls))
    rows.sort(key=lambda r: r[1], reverse=True)
    return rows[:n]


# -- end to end through a real Mosquitto ---------------------------------------------------------


def _mqtt_client(client_id: str, port: int, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    return client


def mqtt_run(batches: list[BatchSrc], chunk_size: int, servers: int) -> Run:
    """Publish ``batches`` as a device would, as fast as paho goes, to a real Mosquitto and
    either ``servers`` server processes on the shared subscription (until every part is
    receipted) or, with 0, a bare subscriber that acknowledges each message at once (until
    it has them all)."""
    with_server = servers > 0
    work = Path(tempfile.mkdtemp(prefix="sohoa-bench-mqtt-", dir=ROOT / ".bench-tmp"))
    broker = Broker(work / "broker").start()
    running: list[ServerProcess] = []
    clients: list[mqtt.Client] = []
    manifests = [(topics.up(DEVICE, "manifest"), b.manifest()) for b in batches]
    chunks = [(topics.up(DEVICE, "chunk"), p) for b in batches for p in b.all_chunks(chunk_size)]
    parts = sum(len(p.parts) for b in batches for p in b.pages)
    pages = sum(len(b.pages) for b in batches)
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    try:
        if with_server:
            target = new_database(work / "server")
            url = f"sqlite:///{target}" if isinstance(target, Path) else target
            first = ServerProcess(work / "server", broker.url, database_url=url).start()
            running.append(first)
            for n in range(
                2, servers + 1
            ):  # the same archive, its own client id (docs/design.md §7)
                more = ServerProcess(
                    first.data_dir,
                    broker.url,
                    client_id=f"sohoa-server-{n}",
                    token="unused",
                    database_url=url,
                )
                running.append(more.start())
        else:
            seen = {"n": 0}
            total = len(manifests) + len(chunks)

            def on_bare(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
                client.ack(msg.mid, msg.qos)
                seen["n"] += 1
                if seen["n"] == total:
                    events.put("all")

            bare = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id="bench-bare-subscriber",
                protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
            bare.on_message = on_bare
            bare.connect("127.0.0.1", broker.port)
            bare.loop_start()
            clients.append(bare)
            bare.subscribe(topics.ingest_filters(shared=True)[0], qos=1)
            time.sleep(0.5)
        device = _mqtt_client(DEVICE, broker.port)
        clients.append(device)

        def on_down(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            events.put(envelope.decode(bytes(msg.payload)).message)

        device.on_message = on_down
        device.subscribe(topics.down_filter(DEVICE), qos=1)
        time.sleep(0.5)
        if with_server:
            for topic, payload in manifests:
                device.publish(topic, payload, qos=1)
            known: set[str] = set()
            want = {b.batch_id for b in batches}
            deadline = time.monotonic() + 60
            while known != want:
                assert time.monotonic() < deadline, "the server never knew every batch"
                q = Query(
                    device_id=DEVICE,
                    msg_id=uuid.uuid4().hex,
                    sent_at=time.time(),
                    batch_ids=tuple(sorted(want - known)),
                )
                device.publish(topics.up(DEVICE, "query"), envelope.encode(q), qos=1)
                try:
                    while True:
                        ev = events.get(timeout=1.0)
                        if isinstance(ev, BatchState) and ev.known:
                            known.add(ev.batch_id)
                except queue.Empty:
                    pass
            stream = chunks
        else:
            stream = manifests + chunks
        spy = _spy(running[0].proc.pid, SPY / f"server-{servers}.raw") if SPY and running else None  # type: ignore[union-attr]
        pids = [r.proc.pid for r in running if r.proc is not None]
        broker_pid = broker.proc.pid if broker.proc is not None else None
        cpu0 = cpu_by_part(pids, broker_pid)
        started = time.perf_counter()
        for topic, payload in stream:
            device.publish(topic, payload, qos=1)
        receipted: set[tuple[str, str]] = set()
        rejects = 0
        deadline = time.monotonic() + 600
        while True:
            ev = events.get(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(ev, Receipt):
                receipted |= {(p.page_id, p.part) for p in ev.committed}
                if len(receipted) == parts:
                    break
            elif isinstance(ev, Reject):
                rejects += 1
            elif ev == "all":
                break
        seconds = time.perf_counter() - started
        cpu1 = cpu_by_part(pids, broker_pid)
        CPU[f"{servers}"] = {k: (cpu1[k] - cpu0[k]) / pages * 1000 for k in cpu0}
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        assert rejects == 0, f"{rejects} rejects"
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()
        for server in running:
            server.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    label = "32 KiB" if chunk_size == DEFAULT_CHUNK else "one chunk per part"
    name = (
        f"Mosquitto + {servers} server process{'es' if servers > 1 else ''}, {label},"
        " first chunk to last receipt"
        if with_server
        else f"Mosquitto + bare subscriber (no server), {label}"
    )
    return Run(name, pages, len(stream), seconds)


def print_runs(args: argparse.Namespace, engine: str, runs: list[Run]) -> None:
    print(
        f"\n{args.pages} pages (text {SIZES['text']} B, thumb {SIZES['thumb']} B, archival"
        f" {SIZES['archival']} B), batches of {args.batch}; {platform.machine()},"
        f" {os.cpu_count()} cores, {engine}, Python {platform.python_version()}\n"
    )
    print("| run | pages | messages | seconds | pages/s | messages/s |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r.name} | {r.pages} | {r.messages:,} | {r.seconds:.2f} | {r.rate:.0f} |"
            f" {r.messages / r.seconds:,.0f} |"
        )


def in_process_runs(batches: list[BatchSrc]) -> list[Run]:
    """The in-process rows both engines share: group sizes, chunking, 2 workers."""
    return [
        run("1 worker, 32 KiB, one message at a time", batches, DEFAULT_CHUNK, group=1),
        run("1 worker, 32 KiB, groups of 20", batches, DEFAULT_CHUNK, group=20),
        run(f"1 worker, 32 KiB, groups of {GROUP}", batches, DEFAULT_CHUNK),
        run(f"1 worker, one chunk per part, groups of {GROUP}", batches, ONE_CHUNK),
        run(f"2 workers (threads), 32 KiB, groups of {GROUP}", batches, DEFAULT_CHUNK, 2, "thread"),
        run(
            f"2 workers (processes), 32 KiB, groups of {GROUP}",
            batches,
            DEFAULT_CHUNK,
            2,
            "process",
        ),
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__)
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--batch", type=int, default=50, help="pages per batch")
    parser.add_argument("--mqtt-pages", type=int, default=400)
    parser.add_argument("--no-mqtt", action="store_true", help="skip the Mosquitto runs")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--spy", type=Path, help="py-spy the first server process, raw here")
    parser.add_argument("--mqtt-only", action="store_true", help="only the Mosquitto rows")
    args = parser.parse_args(argv)
    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    if args.spy:
        global SPY
        SPY = args.spy
        SPY.mkdir(parents=True, exist_ok=True)
    if args.engine == "postgresql":
        global CLUSTER
        from pgcluster import PostgresCluster

        CLUSTER = PostgresCluster().start()
        try:
            return postgres_main(args)
        finally:
            CLUSTER.stop()
    batches = make_batches(args.pages, args.batch)
    profile = ROOT / ".bench-tmp" / "ingest.prof"
    runs = [*in_process_runs(batches), without_durability(batches, DEFAULT_CHUNK)]
    if not args.no_mqtt:
        mqtt_batches = make_batches(args.mqtt_pages, args.batch, seed=8)
        for servers in (0, 1, 2):
            runs.append(mqtt_run(mqtt_batches, DEFAULT_CHUNK, servers))
    profiled = run("profiled", batches, DEFAULT_CHUNK, profile=profile)
    sample = sum(len(b.pages) for b in batches[:2])
    syncs = {
        (c, g): count_syncs(batches[:2], c, g)
        for c, g in ((DEFAULT_CHUNK, 1), (DEFAULT_CHUNK, GROUP), (ONE_CHUNK, GROUP))
    }

    print_runs(args, f"SQLite {sqlite3.sqlite_version}", runs)
    print(f"\nper page ({sample} pages):")
    for (c, g), (s, k) in syncs.items():
        label = "32 KiB" if c == DEFAULT_CHUNK else "one chunk per part"
        print(
            f"  {label}, groups of {g}: {s / sample:.2f} fsync/fdatasync (issued in parallel),"
            f" {k / sample:.3f} SQLite commits"
        )
    print(f"\nprofile of the 1-worker 32 KiB run ({profiled.seconds:.2f} s), top self time:")
    for where, tottime, calls in top_costs(profile):
        print(f"  {tottime:6.2f} s {calls:>8,}  {where}")
    shutil.rmtree(ROOT / ".bench-tmp", ignore_errors=True)
    return 0


def postgres_main(args: argparse.Namespace) -> int:
    batches = make_batches(args.pages, args.batch)
    runs = [] if args.mqtt_only else in_process_runs(batches)
    if not args.no_mqtt:
        mqtt_batches = make_batches(args.mqtt_pages, args.batch, seed=8)
        for servers in (1, 2):
            runs.append(mqtt_run(mqtt_batches, DEFAULT_CHUNK, servers))
    assert CLUSTER is not None
    version = CLUSTER._run(str(CLUSTER.bin / "postgres"), "--version").stdout.strip()
    print_runs(args, f"{version} (same machine, loopback)", runs)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    for servers, parts in CPU.items():
        total = sum(parts.values())
        shares = ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
        print(
            f"end to end with {servers} server process(es): CPU per page {total:.2f} ms"
            f" ({shares}); on 2 cores of their own at most {2000 / total:.0f} pages/s"
        )
    for raw in sorted(SPY.glob("server-*.raw")) if SPY else []:
        print(f"\npy-spy of the first server process, {raw.stem}:")
        print("\n".join(spy_report(raw)))
    return 0
