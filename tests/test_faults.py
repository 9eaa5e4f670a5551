"""Faults on the way from the edge to the archive, with real processes: the agent CLI, a real
Mosquitto, the server, and a bad link in between (tests/linkproxy.py). Every scenario ends
with the same global invariant (docs/research/reliability.md §7): every page the agent captured is
at the
server exactly once with the right bytes, and the agent let go of nothing the archive had not
receipted.

Pages are imported PNGs of noise (noise does not compress: real byte volume on the wire),
masters included (SOHOA_SYNC_MASTERS=true) so that the captures can be compared byte for
byte with what the test wrote. Numbers are printed (``-s``) and recorded as properties.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from harness import BIN, Broker, ServerProcess, agent_env, run_agent
from linkproxy import LinkProxy
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from protocol import envelope, topics
from protocol.messages import Manifest, PageEntry, PartRef, PartState, Receipt

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

DEVICE = "xa-test-01"
RecordProperty = Callable[[str, object], None]


# -- the world: inputs, agent runs, what each side holds ------------------------------------


def make_pngs(folder: Path, n: int, seed: int, size: tuple[int, int] = (300, 400)) -> list[Path]:
    """``n`` noise PNGs at 200 dpi (~360 KB each, incompressible; the pipeline takes ~0.4 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        path = folder / f"{seed:03d}-{i:02d}.png"
        Image.fromarray(pixels).save(path, dpi=(200, 200))
        out.append(path)
    return out


@dataclass
class World:
    tmp: Path
    broker: Broker
    server: ServerProcess
    device: str = DEVICE
    agent_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes the test wrote
    runs: int = 0

    @property
    def agent_dir(self) -> Path:
        return self.tmp / "agent"

    @property
    def env(self) -> dict[str, str]:
        return agent_env(
            self.agent_dir,
            self.agent_url or self.broker.url,
            self.device,
            SOHOA_SYNC_MASTERS="true",
            **self.extra_env,
        )

    def import_batch(self, pages: int, seed: int) -> None:
        files = make_pngs(self.tmp / "in" / str(seed), pages, seed)
        for f in files:
            data = f.read_bytes()
            self.inputs[hashlib.sha256(data).hexdigest()] = data
        run_agent(self.env, "import", str(files[0].parent), check=True)

    def start_sync(self, *args: str, timeout: float = 300) -> subprocess.Popen[bytes]:
        """``sohoa-agent -v sync --wait`` in a process group of its own (pipeline workers
        included), logging to agent-<n>.log."""
        self.runs += 1
        log = open(self.tmp / f"agent-{self.runs:03d}.log", "wb")  # noqa: SIM115
        try:
            return subprocess.Popen(
                [BIN / "sohoa-agent", "-v", "sync", "--wait", "--timeout", str(timeout), *args],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()

    def sync(self, timeout: float = 120) -> int:
        proc = self.start_sync(timeout=timeout)
        try:
            return proc.wait(timeout + 90)
        finally:
            kill_group(proc)

    def agent_log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.tmp.glob("agent-*.log"))
        )

    def last_log(self) -> str:
        return (self.tmp / f"agent-{self.runs:03d}.log").read_text(errors="replace")

    def db(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.server.data_dir / "archive.sqlite3", timeout=30)
        con.row_factory = sqlite3.Row
        return con


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL an agent run and every process it started (what systemd does to the unit's
    cgroup after a crash; a power cut does the same). Only processes this test started."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def agent_outbox(data_dir: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    """The agent's outbox as the test sees it on disk (TinyDB files, written atomically)."""
    index = json.loads((data_dir / "index.json").read_text())["_default"]
    out = {}
    for doc in index.values():
        path = data_dir / "batches" / doc["batch_id"] / "batch.json"
        pages = json.loads(path.read_text()).get("pages", {}) if path.exists() else {}
        out[doc["batch_id"]] = {**doc, "pages": list(pages.values())}
    return out


def server_parts(world: World) -> dict[tuple[str, str], sqlite3.Row]:
    with world.db() as con:
        rows = con.execute(
            "SELECT pages.page_id, parts.name, parts.sha256, parts.size, parts.state, parts.path"
            " FROM parts JOIN pages ON pages.id = parts.page_pk WHERE pages.device_id = ?",
            (world.device,),
        ).fetchall()
    return {(r["page_id"], r["name"]): r for r in rows}


def committed_fraction(world: World) -> float:
    """Bytes committed at the server / bytes announced (0 before the first manifest)."""
    try:
        with world.db() as con:
            row = con.execute(
                "SELECT SUM(size), SUM(CASE WHEN state = 'committed' THEN size ELSE 0 END)"
                " FROM parts"
            ).fetchone()
    except sqlite3.OperationalError:  # the server has not created its schema yet
        return 0.0
    return (row[1] or 0) / row[0] if row[0] else 0.0


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# -- the invariants -------------------------------------------------------------------------


def assert_nothing_released_early(world: World) -> int:
    """While the server has NOT committed a part, the agent still has its file (and has not
    marked it acknowledged). Read the agent first: a commit always precedes the deletion it
    allows, so this order has no race. Returns how many parts the agent already released."""
    holds = agent_outbox(world.agent_dir)
    checks = []
    for batch_id, batch in holds.items():
        for page in batch["pages"]:
            parts = dict(page.get("parts", {}))
            if "capture" not in parts:  # before sync adds it, the capture is the page itself
                parts["capture"] = {
                    "file": page["capture_file"],
                    "sha256": page["capture_sha256"],
                    "acked": False,
                }
            for name, part in parts.items():
                gone = not (world.agent_dir / "batches" / batch_id / part["file"]).exists()
                if gone or part["acked"]:
                    checks.append((page["page_id"], name, part["sha256"], gone, part["acked"]))
    have = server_parts(world) if checks else {}
    for page_id, name, sha, gone, _acked in checks:
        row = have.get((page_id, name))
        assert row is not None and row["state"] == "committed" and row["sha256"] == sha, (
            f"agent {'deleted' if gone else 'acked'} {page_id}/{name} the server has not "
            f"committed ({dict(row) if row else None})"
        )
    return sum(1 for c in checks if c[3])


def assert_global_invariant(world: World) -> dict[str, int]:
    """Every captured page is at the server exactly once, every stored part hashes to the
    agent's record, captures are byte for byte what the test wrote, every batch is done and
    its files released. Returns counts (pages, parts, payload bytes)."""
    holds = agent_outbox(world.agent_dir)
    assert holds, "the agent holds no batch"
    pages = [p for b in holds.values() for p in b["pages"]]
    parts = {(p["page_id"], n): part for p in pages for n, part in p["parts"].items()}
    for batch_id, batch in holds.items():
        assert batch["state"] == "done", (batch_id, batch["state"], batch["last_error"])
        assert len(batch["pages"]) == batch["page_count"]
        for page in batch["pages"]:
            assert set(page["parts"]) >= {"text", "thumb", "archival", "capture"}, page["parts"]
            assert page["capture_sha256"] in world.inputs, "a capture the test never wrote"
            for part in page["parts"].values():
                assert part["acked"], (page["page_id"], part)
                assert not (world.agent_dir / "batches" / batch_id / part["file"]).exists()
    assert len({p["capture_sha256"] for p in pages}) == len(world.inputs) == len(pages)

    # The database: exactly the agent's pages and parts, all committed, nothing twice.
    with world.db() as con:
        n_pages = con.execute(
            "SELECT COUNT(*) FROM pages WHERE device_id = ?", (world.device,)
        ).fetchone()[0]
        dup_pages = con.execute(
            "SELECT page_id FROM pages GROUP BY device_id, page_id HAVING COUNT(*) > 1"
        ).fetchall()
        dup_parts = con.execute(
            "SELECT page_pk, name FROM parts GROUP BY page_pk, name HAVING COUNT(*) > 1"
        ).fetchall()
        n_batches = con.execute(
            "SELECT COUNT(*) FROM batches WHERE device_id = ? AND complete_at IS NOT NULL",
            (world.device,),
        ).fetchone()[0]
        leftover_chunks = con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    assert n_pages == len(pages)
    assert not dup_pages and not dup_parts
    assert n_batches == len(holds)
    assert leftover_chunks == 0, "chunk rows of committed parts are deleted at commit"
    stored = server_parts(world)
    assert set(stored) == set(parts)
    for key, part in parts.items():
        row = stored[key]
        assert row["state"] == "committed", key
        assert row["sha256"] == part["sha256"] and row["size"] == part["size"], key
        data = Path(row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part["sha256"], f"{key}: wrong bytes stored"
        if key[1] == "capture":
            assert data == world.inputs[part["sha256"]], f"{key}: capture differs from input"

    # The API staff use agrees.
    listed = {b["batch_id"]: b for b in world.server.get_json("/api/v1/batches?limit=1000")}
    for batch_id, batch in holds.items():
        assert listed[batch_id]["complete"], batch_id
        detail = world.server.get_json(f"/api/v1/batches/{listed[batch_id]['id']}")
        assert detail["page_count"] == len(batch["pages"])
        assert sorted(p["page_id"] for p in detail["pages"]) == sorted(
            p["page_id"] for p in batch["pages"]
        )
        for page in detail["pages"]:
            for name, part in page["parts"].items():
                assert part["committed"], (page["page_id"], name)
                assert part["sha256"] == parts[(page["page_id"], name)]["sha256"]
    partials = list((world.server.data_dir / "store").rglob("*.partial"))
    return {
        "pages": len(pages),
        "parts": len(parts),
        "payload_bytes": sum(p["size"] for p in parts.values()),
        "stray_partials": len(partials),
    }


def report(record_property: RecordProperty, name: str, **numbers: object) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
    for key, value in numbers.items():
        record_property(key, value)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(tmp_path / "server", broker.url)
    try:
        server.start()
        yield World(tmp_path, broker, server)
    finally:
        server.stop()
        broker.stop()


@pytest.fixture
def proxy(world: World) -> Iterator[LinkProxy]:
    p = LinkProxy(world.broker.port).start()
    world.agent_url = f"mqtt://127.0.0.1:{p.port}"
    yield p
    p.stop()


# -- a. SIGKILL storm -------------------------------------------------------------------------


def test_sigkill_storm(world: World, proxy: LinkProxy, record_property: RecordProperty) -> None:
    kills_wanted = 50
    rng = random.Random(20241125)  # reproducible kill moments
    proxy.set_rate(256_000)
    world.extra_env["SOHOA_CHUNK_SIZE"] = "16384"
    world.import_batch(3, seed=1)
    # The storm is about the sync: the pipeline runs first (killing it is the next test's
    # subject). Under CPU contention the kills would otherwise all land in the pipeline.
    run_agent(world.env, "process", check=True)
    kills = batches = 0
    released_seen = 0
    phases: list[float] = []  # fraction of the bytes committed at each kill
    start = time.monotonic()
    while True:
        proc = world.start_sync(timeout=120)
        if kills >= kills_wanted:
            rc = proc.wait(200)
            assert rc == 0, world.last_log()[-3000:]
            break
        try:
            rc = proc.wait(rng.uniform(0.1, 1.8))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            kills += 1
            released_seen = max(released_seen, assert_nothing_released_early(world))
            phases.append(committed_fraction(world))
            continue
        assert rc == 0, world.last_log()[-3000:]
        # Everything arrived before the storm was over: give it more to carry.
        batches += 1
        world.import_batch(2, seed=10 + batches)
        run_agent(world.env, "process", check=True)
    elapsed = time.monotonic() - start
    counts = assert_global_invariant(world)
    resent = proxy.bytes_up - counts["payload_bytes"]
    report(
        record_property,
        "sigkill storm",
        kills=kills,
        extra_batches=batches,
        seconds=round(elapsed, 1),
        payload_bytes=counts["payload_bytes"],
        bytes_up=proxy.bytes_up,
        resent_per_kill=resent // kills,
        connections=proxy.connections,
        kills_before_first_commit=sum(1 for f in phases if f == 0),
        kills_mid_transfer=sum(1 for f in phases if 0 < f < 1),
        kills_after_all_committed=sum(1 for f in phases if f >= 1),
        files_released_at_a_kill=released_seen,
        **{k: v for k, v in counts.items() if k != "payload_bytes"},
    )
    # Every restart resumes: what a kill costs is bounded by the window in flight (16 chunks
    # of 16 KiB) plus a session's overhead, not by the batch.
    assert resent / kills < 16 * 16384 + 32 * 1024
    assert sum(1 for f in phases if 0 < f < 1) >= kills // 2, "kills not spread over the sync"


def test_sigkill_of_sync_alone_mid_pipeline_leaves_the_outbox_usable(
    world: World, record_property: RecordProperty
) -> None:
    """Outside systemd (cron, a technician's shell) only the main process dies: the pipeline's
    pool workers are orphaned. They must not keep the outbox locked for the next run."""
    world.import_batch(4, seed=8)
    proc = world.start_sync(timeout=60)
    wait_for(lambda: "pipeline:" in world.last_log(), 30, "the pipeline to start")
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only
    proc.wait(10)
    try:
        os.killpg(proc.pid, 0)  # the precondition: orphaned workers are still there
        rc = world.sync(timeout=60)
        assert "outbox_locked" not in world.last_log()
        assert rc == 0, world.last_log()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the orphans of the killed run
    counts = assert_global_invariant(world)
    report(record_property, "sigkill mid-pipeline", **counts)


# -- b. the broker dies ---------------------------------------------------------------------


def test_broker_killed_and_restarted_mid_batch(
    world: World, proxy: LinkProxy, record_property: RecordProperty
) -> None:
    proxy.set_rate(1_000_000)  # ~12 s for the batch: time to kill the broker three times
    world.import_batch(3, seed=2)
    proc = world.start_sync(timeout=150)
    at: list[float] = [0.0]
    for _ in range(3):
        # Each kill after some progress since the last restart (parts commit whole, so the
        # fraction moves in steps: texts, thumbnails, archival images, captures).
        wait_for(lambda: committed_fraction(world) >= at[-1] + 0.05, 120, "progress")
        at.append(committed_fraction(world))
        world.broker.kill()  # SIGKILL: whatever it had not autosaved is gone
        assert_nothing_released_early(world)
        time.sleep(1.0)
        world.broker.start()  # same port, same persistence file
    restarted = time.monotonic()
    assert proc.poll() is None, "the sync finished before the last broker kill"
    rc = proc.wait(200)
    assert rc == 0, world.last_log()[-3000:]
    counts = assert_global_invariant(world)
    report(
        record_property,
        "broker kill",
        kills=3,
        committed_at_kills=[round(f, 2) for f in at[1:]],
        seconds_after_last_restart=round(time.monotonic() - restarted, 1),
        bytes_up=proxy.bytes_up,
        connections=proxy.connections,
        **counts,
    )


# -- c. the server dies -----------------------------------------------------------------------


def test_server_killed_and_restarted_mid_batch(
    world: World, proxy: LinkProxy, record_property: RecordProperty
) -> None:
    proxy.set_rate(1_000_000)
    world.import_batch(3, seed=3)
    proc = world.start_sync(timeout=150)
    at: list[float] = []
    for k in (1, 2):
        wait_for(lambda k=k: committed_fraction(world) >= 0.3 * k, 120, f"{30 * k}% committed")
        at.append(round(committed_fraction(world), 2))
        # Asked before the kill, not after the restart: once the server is back the rest
        # of a small batch may be sent and receipted before the test looks (ci18, loaded).
        assert proc.poll() is None, f"the sync finished before server kill {k}"
        world.server.kill()  # SIGKILL, mid-chunk as likely as not
        assert_nothing_released_early(world)
        time.sleep(1.0)
        world.server.start()
    rc = proc.wait(200)
    assert rc == 0, world.last_log()[-3000:]
    # A committed part with wrong bytes would fail here; a stray .partial would not.
    counts = assert_global_invariant(world)
    report(record_property, "server kill", kills=2, committed_at_kills=at, **counts)


# -- d. more queued for the offline server than the broker keeps -------------------------------


def test_broker_drops_for_offline_server_and_reconciliation_recovers(
    tmp_path: Path, record_property: RecordProperty
) -> None:
    broker = Broker(tmp_path / "broker", max_queued=20, extra="log_type notice\n").start()
    server = ServerProcess(tmp_path / "server", broker.url).start()
    proxy = LinkProxy(broker.port, rate_bps=2_000_000).start()
    try:
        world = World(tmp_path, broker, server, agent_url=f"mqtt://127.0.0.1:{proxy.port}")
        world.extra_env["SOHOA_CHUNK_SIZE"] = "4096"  # ~230 chunks for the batch
        world.import_batch(2, seed=4)
        proc = world.start_sync(timeout=20)
        # The server answers the first query; once chunks flow it goes away (SIGTERM: its
        # persistent session stays at the broker, which queues for it — and then drops).
        wait_for(lambda: committed_fraction(world) > 0, 60, "a first commit")
        server.stop()
        rc = proc.wait(120)
        assert rc == 75, world.last_log()[-3000:]
        mosquitto_log = (broker.workdir / "mosquitto.log").read_text(errors="replace")
        assert "Outgoing messages are being dropped for client sohoa-server-1" in mosquitto_log

        server.start()  # takes what the broker kept
        last = -1.0
        while (now := committed_fraction(world)) != last:  # until the queue is consumed
            last = now
            time.sleep(1.0)
        assert last < 1.0, "nothing was lost: the test did not exercise reconciliation"
        rc = world.sync(timeout=120)
        assert rc == 0, world.last_log()[-3000:]
        resent = world.last_log()
        assert " chunks (" in resent and " 0 chunks (" not in resent
        counts = assert_global_invariant(world)
        report(
            record_property,
            "broker drops",
            committed_before_reconciliation=round(last, 2),
            **counts,
        )
    finally:
        proxy.stop()
        server.stop()
        broker.stop()


# -- e. the link is cut again and again -------------------------------------------------------


def test_link_cut_every_few_seconds(
    world: World, proxy: LinkProxy, record_property: RecordProperty
) -> None:
    proxy.set_rate(512_000)
    world.import_batch(3, seed=5)
    stop = threading.Event()
    cut_at: list[float] = []

    def cutter() -> None:
        rng = random.Random(5)
        while not stop.wait(rng.uniform(3.0, 5.0)):
            proxy.cut()
            cut_at.append(round(committed_fraction(world), 2))

    proc = world.start_sync(timeout=180)
    thread = threading.Thread(target=cutter, daemon=True)
    thread.start()
    try:
        rc = proc.wait(240)
    finally:
        stop.set()
        thread.join()
        kill_group(proc)
    assert rc == 0, world.last_log()[-3000:]
    counts = assert_global_invariant(world)
    mid = [f for f in cut_at if 0 < f < 1]
    assert len(mid) >= 3, f"too few cuts mid-transfer: {cut_at}"
    resent = proxy.bytes_up - counts["payload_bytes"]
    report(
        record_property,
        "link cuts",
        cuts=len(cut_at),
        connections_cut=proxy.cuts,
        committed_at_cuts=cut_at,
        bytes_up=proxy.bytes_up,
        resent_per_cut=resent // max(1, len(cut_at)),
        **counts,
    )


# -- f. flipped bytes on the wire -------------------------------------------------------------


def test_flipped_bytes_are_rejected_and_resent(
    world: World, proxy: LinkProxy, record_property: RecordProperty
) -> None:
    world.import_batch(2, seed=6)
    proxy.corrupt_next_up(3, min_size=8192)  # only chunk publishes are that big
    rc = world.sync(timeout=120)
    assert rc == 0, world.last_log()[-3000:]
    assert proxy.corrupted == 3
    log = world.agent_log()
    rejected = log.count("server rejected a message")
    assert rejected >= 3 and "corrupt: chunk at" in log, log[-3000:]
    assert "fails its sha256" in world.server.log_tail(200)
    counts = assert_global_invariant(world)
    report(record_property, "corruption", flipped=3, rejects=rejected, **counts)


# -- g. one device pretends to be another -----------------------------------------------------


class RawDevice:
    """A hand-driven MQTT 5 client, to do what the agent never would."""

    def __init__(self, broker: Broker, user: str, password: str) -> None:
        self.results: dict[int, object] = {}
        self.received: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=user,  # dynamic security binds the client id to the user
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.on_publish = lambda c, u, mid, rc, p: self.results.__setitem__(mid, rc)
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: rc.is_failure or self.connected.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def publish(self, topic: str, payload: bytes) -> str:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        wait_for(lambda: info.mid in self.results, 10, "a PUBACK")
        return str(self.results[info.mid])

    def subscribe(self, flt: str) -> None:
        self.client.subscribe(flt, qos=1)
        time.sleep(0.3)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _manifest(device: str) -> Manifest:
    page = PageEntry(
        page_id=uuid.uuid4().hex,
        page_no=1,
        capture_sha256="a" * 64,
        capture_size=3,
        dpi=300,
        width_px=1,
        height_px=1,
        colour=True,
        parts=(PartRef(name="text", sha256="b" * 64, size=3, media_type="text/plain"),),
    )
    return Manifest(
        device_id=device,
        msg_id=uuid.uuid4().hex,
        sent_at=time.time(),
        batch_id=uuid.uuid4().hex,
        created_at=time.time(),
        page_count=1,
        agent_version="forged",
        pages=(page,),
    )


@pytest.mark.dynsec
def test_impersonation_is_refused_by_the_broker_and_the_server(
    tmp_path: Path, record_property: RecordProperty
) -> None:
    from server.fleet import broker as fleet

    broker = Broker(tmp_path / "broker", dynsec=True).start()
    # Each station's broker identity made by the archive's admin API, as enrolment does.
    pw = {d: fleet.new_password() for d in ("xa-a", "xa-b")}
    with fleet.BrokerAdmin("127.0.0.1", broker.port, "sohoa-admin", broker.admin_password) as admin:
        admin.connect()
        for device, password in pw.items():
            admin.add_station(device, password, f"Xã {device}")
    server = ServerProcess(tmp_path / "server", broker.ingest_url).start()
    a = b = None
    try:
        url = f"mqtt://xa-a:{pw['xa-a']}@127.0.0.1:{broker.port}"
        world = World(tmp_path, broker, server, device="xa-a", agent_url=url)
        b = RawDevice(broker, "xa-b", pw["xa-b"])
        b.subscribe(topics.down_filter("xa-b"))
        a = RawDevice(broker, "xa-a", pw["xa-a"])
        a.subscribe(topics.down_filter("xa-a"))

        # xa-a writes on xa-b's topic: the broker says no (MQTT 5 tells the publisher).
        forged = a.publish(topics.up("xa-b", "manifest"), envelope.encode(_manifest("xa-b")))
        assert forged == "Not authorized"
        # xa-a forges a receipt for xa-b (it would make xa-b delete pages): refused too.
        receipt = Receipt(
            device_id="xa-b",
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            batch_id=uuid.uuid4().hex,
            committed=(
                PartState(
                    page_id=uuid.uuid4().hex, part="archival", sha256="c" * 64, committed=True
                ),
            ),
        )
        assert a.publish(topics.down("xa-b", "receipt"), envelope.encode(receipt)) == (
            "Not authorized"
        )
        # On its own topic, an envelope that names xa-b: the server refuses it and alerts.
        own = a.publish(topics.up("xa-a", "manifest"), envelope.encode(_manifest("xa-b")))
        assert own == "Success"
        wait_for(lambda: any(t.endswith("/reject") for t, _ in a.received), 10, "a Reject")
        rejects = [envelope.decode(p).message for t, p in a.received if t.endswith("/reject")]
        assert [r.reason for r in rejects] == ["wrong_device"]  # type: ignore[attr-defined]
        time.sleep(0.5)
        assert b.received == [], "xa-b got something xa-a wrote"
        with world.db() as con:
            alerts = con.execute(
                "SELECT kind, device_id FROM alerts WHERE kind = 'wrong_device'"
            ).fetchall()
            assert [tuple(r) for r in alerts] == [("wrong_device", "xa-a")]
            for table in ("batches", "pages"):
                n = con.execute(
                    f"SELECT COUNT(*) FROM {table} WHERE device_id = 'xa-b'"
                ).fetchone()[0]
                assert n == 0, f"{table} for xa-b"
            assert con.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 0

        # The real agent of xa-a, with its own credentials, still gets its page archived.
        world.import_batch(1, seed=7)
        rc = world.sync(timeout=60)
        assert rc == 0, world.last_log()[-3000:]
        counts = assert_global_invariant(world)
        report(record_property, "impersonation", refused_publishes=2, alerts=1, **counts)
    finally:
        for raw in (a, b):
            if raw is not None:
                raw.close()
        server.stop()
        broker.stop()


# -- h. two ingest workers on one shared subscription -----------------------------------------


def test_two_ingest_workers_share_the_load_without_duplicates(
    world: World, record_property: RecordProperty
) -> None:
    # A second server process on the same archive with its own client id: the broker's
    # shared subscription splits device messages between the two (docs/design.md §7). Both
    # workers are told to share (one alone subscribes plainly).
    shared = {"SOHOA_SHARED_SUBSCRIPTION": "true"}
    world.server.stop()
    world.server.settings.update(shared)
    world.server.start()
    second = ServerProcess(
        world.server.data_dir,
        world.broker.url,
        client_id="sohoa-server-2",
        token="unused",
        settings=shared,
    )
    second.start()
    try:
        world.import_batch(6, seed=8)
        assert world.sync(timeout=150) == 0, world.last_log()[-3000:]
        counts = assert_global_invariant(world)
        handled = [s.get_json("/healthz", auth=False)["messages"] for s in (world.server, second)]
    finally:
        second.stop()
    assert min(handled) > 0, f"one worker got nothing: {handled}"
    report(record_property, "two workers", messages_per_worker=handled, **counts)
