"""Sync over an emulated 2G/3G link: ours (chunks, resume, text first) beside a naive baseline.

Every run starts a private Mosquitto, puts tests/linkproxy.py in front of it and sends the
same pages through the proxy:

* **ours**: ``sohoa-agent -v sync --wait`` as a subprocess, against a real server process,
  from a copy of one outbox built once (``Outbox.add_capture`` + ``record_processed`` with
  random bytes of realistic part sizes; the capture itself stays on the device);
* **naive**: a paho publisher subprocess (QoS 1, MQTT 5, paho's default window of 20), one
  publish per page holding all its parts, no resume: a page cut mid-way is published again
  from its first byte (paho re-sends un-acknowledged messages after reconnecting). A paho
  subscriber on the broker side stands in for the server.

Each scenario also sends the same data once through an unthrottled, uncut proxy (a few
seconds): its ``bytes_up`` is what the data costs on the wire without cuts, so
``(bytes_up - bytes_up_uncut) / cuts`` is what one cut costs (resends plus reconnecting).

* **daemon**: ``sohoa-agent -v run`` (the service) started while the link is down
  (``--daemon-down`` seconds: it is up, retrying), then the link comes up; timed from link up
  until the agent's outbox holds the batch receipted (the last receipt), with the same cuts
  counted from link up. An extra column, not a replacement for the launch-to-exit measure.

Numbers: wall time from the sender's launch to its exit (ours: every part receipted;
naive: every page PUBACKed; daemon: link up to last receipt); goodput = payload bits /
wall / link rate; overhead = bytes the proxy delivered to the broker / payload - 1;
"searchable" = seconds from launch (daemon: from link up) until the server's search API
finds the text of every page (naive: until the subscriber has every page). Benchmarks
print ratios against the baseline measured in the same run; nothing here asserts a time.

    python -m bench sync [--pages 20] [--rate 64000] [--cut-every 60]
                         [--slow-pages 5] [--slow-rate 20000] [--delay 0.3]
                         [--daemon-down 20] [--no-daemon]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from harness import BIN, Broker, ServerProcess, agent_env  # noqa: E402
from linkproxy import LinkProxy  # noqa: E402

DEVICE = "xa-bench-01"
WORD = "sohoabench"  # in every page's text: what the search polls for
NAIVE_TOPIC = "bench/naive/page"
PART_MEDIA_TYPES = {
    "archival": "application/pdf",
    "text": "text/plain; charset=utf-8",
    "thumb": "image/jpeg",
}
TEXT_SIZE = 2_000
THUMB_SIZE = 15_000
ARCHIVAL_SIZES = (60_000, 100_000)
VOCAB_TEXT = (
    "ủy ban nhân dân xã quyết định về việc phê duyệt kế hoạch sử dụng đất năm căn cứ "
    "luật tổ chức chính quyền địa phương theo đề nghị của công chức điều này có hiệu lực"
)
VOCAB = VOCAB_TEXT.split()


# -- the data ---------------------------------------------------------------------------------


def page_token(n: int) -> str:
    return f"sohoap{n:05d}"


def build_outbox(data_dir: Path, pages: int, seed: int) -> int:
    """A real agent outbox with one ready batch of ``pages`` processed pages. Returns the
    payload: the sum of the sizes of the parts that travel."""
    from agent.outbox import outbox as ob

    rng = random.Random(seed)
    payload = 0
    work = data_dir.parent / f"{data_dir.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    with ob.Outbox(data_dir) as box:
        batch = box.new_batch(source="import", metadata={"bench": "sync"})
        for n in range(1, pages + 1):
            page = box.add_capture(
                batch.batch_id,
                rng.randbytes(64),
                extension="png",
                media_type="image/png",
                dpi=300,
                width_px=2480,
                height_px=3508,
                colour=False,
                source_name=f"bench-{n:04d}.png",
            )
            words = [WORD, page_token(n)]
            while sum(len(w) + 1 for w in words) < TEXT_SIZE:
                words.append(rng.choice(VOCAB))
            text = " ".join(words).encode()[:TEXT_SIZE]
            text = text.decode("utf-8", errors="ignore").encode()
            files = {
                "text": (work / f"{n:04d}.txt", text),
                "thumb": (work / f"{n:04d}.jpg", rng.randbytes(THUMB_SIZE)),
                "archival": (work / f"{n:04d}.pdf", rng.randbytes(rng.randint(*ARCHIVAL_SIZES))),
            }
            for path, data in files.values():
                path.write_bytes(data)
                payload += len(data)
            box.record_processed(
                batch.batch_id,
                page.page_id,
                parts={name: path for name, (path, _) in files.items()},
                media_types=PART_MEDIA_TYPES,
                flags=(),
                decisions={},
                ocr_confidence=90.0,
            )
        box.close_batch(batch.batch_id)
        box.update_batch(batch.batch_id, state=ob.READY, page_count=pages)
    shutil.rmtree(work)
    return payload


def page_blobs(data_dir: Path) -> list[bytes]:
    """What the naive sender publishes: per page, its travelling parts back to back."""
    from agent.outbox import outbox as ob

    out = []
    with ob.Outbox(data_dir, read_only=True) as box:
        for batch in box.batches():
            for page in box.pages(batch.batch_id):
                blob = b"".join(
                    (box.batch_dir(batch.batch_id) / page.parts[name].file).read_bytes()
                    for name in ("text", "thumb", "archival")
                )
                out.append(blob)
    return out


# -- one run ---------------------------------------------------------------------------------


@dataclass
class Run:
    who: str
    rate: int | None
    payload: int
    wall: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    cuts: int = 0
    connections: int = 0
    searchable: float | None = None
    ok: bool = False
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def goodput(self) -> float | None:
        if not self.rate or not self.wall:
            return None
        return self.payload * 8 / self.wall / self.rate

    @property
    def overhead(self) -> float:
        return self.bytes_up / self.payload - 1


class _Cutter:
    """Cuts every open connection of the proxy every ``every`` seconds from ``start``."""

    def __init__(self, proxy: LinkProxy, every: float, start: float) -> None:
        self.proxy = proxy
        self.every = every
        self.next = start + every if every else float("inf")

    def tick(self, now: float) -> None:
        if now >= self.next:
            self.proxy.cut()
            self.next += self.every


def run_ours(
    tmp: Path, outbox_src: Path, payload: int, pages: int, rate: int | None, cut_every: float,
    delay: float, timeout: float, label: str,
) -> Run:  # fmt: skip
    work = tmp / f"ours-{label}"
    broker = Broker(work / "broker").start()
    server = start_server(work / "server", broker.url)
    proxy = LinkProxy(broker.port, rate_bps=rate, delay_s=delay).start()
    run = Run("ours", rate, payload)
    try:
        shutil.copytree(outbox_src, work / "agent")
        env = agent_env(work / "agent", f"mqtt://127.0.0.1:{proxy.port}", device_id=DEVICE)
        log_path = work / "agent.log"
        with open(log_path, "wb") as log:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [str(BIN / "sohoa-agent"), "-v", "sync", "--wait", "--timeout", str(timeout)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            cutter = _Cutter(proxy, cut_every, t0)
            while proc.poll() is None:
                now = time.monotonic()
                cutter.tick(now)
                if run.searchable is None and _searchable(server, pages):
                    run.searchable = time.monotonic() - t0
                time.sleep(0.2)
            run.wall = time.monotonic() - t0
        if run.searchable is None and _searchable(server, pages):
            run.searchable = run.wall
        run.bytes_up, run.bytes_down = proxy.bytes_up, proxy.bytes_down
        run.cuts, run.connections = proxy.cuts, proxy.connections
        batches = server.get_json("/api/v1/batches")
        run.ok = proc.returncode == 0 and len(batches) == 1 and bool(batches[0]["complete"])
        text = log_path.read_text(errors="replace")
        m = re.search(r"sync: \d+ batch\(es\) done, (\d+) part receipts, (\d+) chunks "
                      r"\((\d+) bytes\) sent, (\d+) rounds", text)  # fmt: skip
        if m:
            run.notes.update(
                receipts=int(m[1]), chunks=int(m[2]), chunk_bytes=int(m[3]), rounds=int(m[4])
            )
        run.notes.update(_chunk_notes(text))
        run.notes["rc"] = proc.returncode
        run.notes["log"] = str(log_path)
    finally:
        proxy.stop()
        server.stop()
        broker.stop()
    return run


def _chunk_notes(log_text: str) -> dict[str, object]:
    """Chunk body sizes the syncer used (it logs them per run): they follow the link."""
    runs = re.findall(r"sync run: (\d+) chunks, bodies (\d+)-(\d+) bytes \(median (\d+)\)",
                      log_text)  # fmt: skip
    if not runs:
        return {}
    return {
        "chunk_bodies_min_median_max": [(int(lo), int(med), int(hi)) for _, lo, hi, med in runs]
    }


def run_daemon(
    tmp: Path, outbox_src: Path, payload: int, pages: int, rate: int | None, cut_every: float,
    delay: float, timeout: float, label: str, down_for: float,
) -> Run:  # fmt: skip
    """The service, already running when the link comes up: link up -> last receipt."""
    from agent.outbox import outbox as ob

    work = tmp / f"daemon-{label}"
    broker = Broker(work / "broker").start()
    server = start_server(work / "server", broker.url)
    proxy = LinkProxy(broker.port, rate_bps=rate, delay_s=delay).start()
    proxy.set_down(True)
    run = Run("daemon", rate, payload)
    proc: subprocess.Popen[bytes] | None = None
    try:
        shutil.copytree(outbox_src, work / "agent")
        env = agent_env(work / "agent", f"mqtt://127.0.0.1:{proxy.port}", device_id=DEVICE)
        log_path = work / "agent.log"
        with open(log_path, "wb") as log, ob.Outbox(work / "agent", read_only=True) as box:
            proc = subprocess.Popen(
                [str(BIN / "sohoa-agent"), "-v", "run"], env=env, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            time.sleep(down_for)  # the service is up and cannot reach the broker
            t_up, wall_up = time.monotonic(), time.time()
            proxy.set_down(False)
            cutter = _Cutter(proxy, cut_every, t_up)
            done = False
            while not done and proc.poll() is None and time.monotonic() - t_up < timeout:
                cutter.tick(time.monotonic())
                if run.searchable is None and _searchable(server, pages):
                    run.searchable = time.monotonic() - t_up
                done = all(b.state == ob.DONE for b in box.batches())
                time.sleep(0.2)
            run.wall = time.monotonic() - t_up
        if run.searchable is None and _searchable(server, pages):
            run.searchable = run.wall
        run.bytes_up, run.bytes_down = proxy.bytes_up, proxy.bytes_down
        run.cuts, run.connections = proxy.cuts, proxy.connections
        batches = server.get_json("/api/v1/batches")
        run.ok = done and len(batches) == 1 and bool(batches[0]["complete"])
        text = log_path.read_text(errors="replace")
        first = re.search(r"^(\S+ \S+) INFO agent\.mqtt_link: connected to", text, re.M)
        if first:
            at = time.mktime(time.strptime(first[1].split(",")[0], "%Y-%m-%d %H:%M:%S"))
            at += int(first[1].split(",")[1]) / 1000
            run.notes["link_up_to_connack_s"] = round(at - wall_up, 2)
        run.notes["link_down_before_s"] = down_for
        run.notes.update(_chunk_notes(text))
        run.notes["log"] = str(log_path)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        proxy.stop()
        server.stop()
        broker.stop()
    return run


def start_server(data_dir: Path, mqtt_url: str) -> ServerProcess:
    """The server with an API token for a viewer (newer servers want the user to exist)."""
    server = ServerProcess(data_dir, mqtt_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    cli = str(BIN / "sohoa-server")
    env = server.env()
    # Older servers have no users; newer ones refuse a token for an unknown user.
    subprocess.run(
        [cli, "user", "add", "bench", "--role", "viewer", "--no-password"],
        env=env,
        capture_output=True,
    )
    out = subprocess.run(
        [cli, "token", "create", "--user", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    server.token = out.stdout.strip()
    return server.start()


def _searchable(server: ServerProcess, pages: int) -> bool:
    """Every page's text is found: all of them by the common word (the API returns at most
    50 hits) and the last page by its own token (text travels in page order)."""
    try:
        hits = server.get_json(f"/api/v1/search?q={WORD}")
        if len(hits) < min(pages, 50):
            return False
        return bool(server.get_json(f"/api/v1/search?q={page_token(pages)}"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_naive(
    tmp: Path, outbox_src: Path, payload: int, pages: int, rate: int | None, cut_every: float,
    delay: float, timeout: float, label: str,
) -> Run:  # fmt: skip
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    work = tmp / f"naive-{label}"
    broker = Broker(work / "broker").start()
    proxy = LinkProxy(broker.port, rate_bps=rate, delay_s=delay).start()
    run = Run("naive", rate, payload)
    received: dict[int, float] = {}
    duplicates = 0
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal duplicates
        n = int(msg.topic.rsplit("/", 1)[1])
        with lock:
            if n in received:
                duplicates += 1
            else:
                received[n] = time.monotonic()

    sub = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="naive-consumer",
        protocol=mqtt.MQTTv5,
    )
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(f"{NAIVE_TOPIC}/+", qos=1)
    sub.loop_start()
    try:
        subscribed.wait(10)
        log_path = work / "naive.log"
        with open(log_path, "wb") as log:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.sync", "--naive-publisher",
                 str(proxy.port), str(outbox_src), str(timeout)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            cutter = _Cutter(proxy, cut_every, t0)
            while proc.poll() is None:
                cutter.tick(time.monotonic())
                time.sleep(0.2)
            run.wall = time.monotonic() - t0
        deadline = time.monotonic() + 10
        while len(received) < pages and time.monotonic() < deadline:
            time.sleep(0.05)
        with lock:
            if len(received) >= pages:
                run.searchable = max(received.values()) - t0
            run.notes["duplicates_at_subscriber"] = duplicates
        run.bytes_up, run.bytes_down = proxy.bytes_up, proxy.bytes_down
        run.cuts, run.connections = proxy.cuts, proxy.connections
        run.ok = proc.returncode == 0 and len(received) == pages
        run.notes["rc"] = proc.returncode
        run.notes["log"] = str(log_path)
    finally:
        sub.loop_stop()
        sub.disconnect()
        proxy.stop()
        broker.stop()
    return run


def naive_publisher(port: int, outbox_dir: Path, timeout: float) -> int:
    """The baseline sender (a subprocess, like the agent): paho defaults, one QoS 1 publish
    per page, reconnect like the agent (1 s, doubling); paho re-sends every unacknowledged
    page from its first byte after a reconnect."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    blobs = page_blobs(outbox_dir)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="naive-publisher",
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=True,
    )
    client.reconnect_delay_set(min_delay=1, max_delay=60)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    infos = [client.publish(f"{NAIVE_TOPIC}/{n}", blob, qos=1) for n, blob in enumerate(blobs, 1)]
    deadline = time.monotonic() + timeout
    while not all(i.is_published() for i in infos) and time.monotonic() < deadline:
        time.sleep(0.05)
    done = sum(i.is_published() for i in infos)
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"published": done, "pages": len(blobs)}))
    return 0 if done == len(blobs) else 1


# -- the report -------------------------------------------------------------------------------


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU, {model}, Python {platform.python_version()}"


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def scenario_table(
    title: str, ours: Run, naive: Run, ours_ref: Run, naive_ref: Run, chunk: int,
    daemon: Run | None = None,
) -> str:  # fmt: skip
    def resent(run: Run | None, ref: Run) -> float | None:
        if run is None or not run.cuts:
            return None
        return (run.bytes_up - ref.bytes_up) / run.cuts

    d = daemon
    rows = [
        ("wall time, s", ours.wall, naive.wall, d and d.wall, ".1f"),
        ("goodput, % of link rate", _pct(ours.goodput), _pct(naive.goodput),
         d and _pct(d.goodput), ".1f"),
        ("wire bytes up / payload byte", 1 + ours.overhead, 1 + naive.overhead,
         d and 1 + d.overhead, ".4f"),
        ("overhead, % (this run)", ours.overhead * 100, naive.overhead * 100,
         d and d.overhead * 100, ".2f"),
        ("overhead, % (same data, uncut)", ours_ref.overhead * 100, naive_ref.overhead * 100,
         None, ".2f"),
        ("cuts", ours.cuts, naive.cuts, d and d.cuts, "d"),
        ("bytes re-sent per cut", resent(ours, ours_ref), resent(naive, naive_ref),
         resent(d, ours_ref), ",.0f"),
        ("seconds until the text is searchable", ours.searchable, naive.searchable,
         d and d.searchable, ".1f"),
    ]  # fmt: skip
    completed = f"ours {'yes' if ours.ok else 'NO'}, naive {'yes' if naive.ok else 'NO'}"
    if d is not None:
        completed += f", daemon {'yes' if d.ok else 'NO'}"
    out = [
        f"#### {title}",
        "",
        f"payload {ours.payload:,} B; chunk size up to {chunk // 1024} KiB (ours); completed: "
        + completed,
        "",
        "| | ours | naive | ours / naive |" + (" daemon (link up → last receipt) |" if d else ""),
        "|---|---:|---:|---:|" + ("---:|" if d else ""),
    ]
    for name, a, b, c, spec in rows:
        line = f"| {name} | {_fmt(a, spec)} | {_fmt(b, spec)} | {_ratio(a, b)} |"
        if d is not None:
            line += f" {_fmt(c, spec)} |"
        out.append(line)
    if ours.cuts:
        per_chunk = resent(ours, ours_ref)
        out += ["", f"ours: re-sent per cut = {_fmt(per_chunk and per_chunk / chunk, '.2f')} "
                f"chunk(s) of {chunk // 1024} KiB"]  # fmt: skip
    if d is not None and d.cuts:
        per_chunk = resent(d, ours_ref)
        out += ["", f"daemon: re-sent per cut = {_fmt(per_chunk and per_chunk / chunk, '.2f')} "
                "chunk(s) (against the one-shot uncut run: includes its telemetry)"]  # fmt: skip
    out += ["", f"ours: {ours.notes}; naive: {naive.notes}"]
    if d is not None:
        out += ["", f"daemon: {d.notes}"]
    return "\n".join(out)


def _pct(x: float | None) -> float | None:
    return None if x is None else x * 100


def scenario(
    tmp: Path, name: str, pages: int, rate: int, cut_every: float, delay: float, seed: int,
    daemon_down: float | None = None,
) -> str:  # fmt: skip
    src = tmp / f"outbox-{name}"
    payload = build_outbox(src, pages, seed)
    timeout = max(600.0, payload * 8 / rate * 6)
    print(f"[{name}] {pages} pages, {payload:,} B payload, {rate} bit/s, cut every "
          f"{cut_every or '-'} s, one-way delay {delay} s", flush=True)  # fmt: skip
    runs = {}
    for who, fn in (("ours", run_ours), ("naive", run_naive)):
        for kind, r, cut in (("ref", None, 0.0), ("link", rate, cut_every)):
            t = time.monotonic()
            run = fn(tmp, src, payload, pages, r, cut, delay, timeout, f"{name}-{kind}")
            runs[who, kind] = run
            print(f"  {who:5} {kind:4}: {time.monotonic() - t:6.1f} s, ok={run.ok}, "
                  f"bytes_up={run.bytes_up:,}, cuts={run.cuts}, searchable={run.searchable}",
                  flush=True)  # fmt: skip
    daemon = None
    if daemon_down is not None:
        t = time.monotonic()
        daemon = run_daemon(tmp, src, payload, pages, rate, cut_every, delay, timeout,
                            f"{name}-link", daemon_down)  # fmt: skip
        print(f"  daemon link: {time.monotonic() - t:6.1f} s, ok={daemon.ok}, "
              f"bytes_up={daemon.bytes_up:,}, cuts={daemon.cuts}, wall={daemon.wall:.1f}, "
              f"searchable={daemon.searchable}, {daemon.notes}", flush=True)  # fmt: skip
    chunk = 32 * 1024
    title = f"{rate / 1000:g} kbit/s, " + (
        f"a cut every {cut_every:g} s" if cut_every else "no cuts"
    )
    title += f", {pages} pages, one-way delay {delay:g} s"
    return scenario_table(
        title, runs["ours", "link"], runs["naive", "link"], runs["ours", "ref"],
        runs["naive", "ref"], chunk, daemon,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--naive-publisher":
        return naive_publisher(int(argv[1]), Path(argv[2]), float(argv[3]))
    parser = argparse.ArgumentParser(
        prog="python -m bench sync", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pages", type=int, default=20, help="pages in the cut scenario")
    parser.add_argument("--rate", type=int, default=64_000, help="bit/s, cut scenario")
    parser.add_argument("--cut-every", type=float, default=60.0, help="seconds (0: no cuts)")
    parser.add_argument(
        "--slow-pages", type=int, default=5, help="pages at the slow rate (0: skip)"
    )
    parser.add_argument("--slow-rate", type=int, default=20_000, help="bit/s, no cuts")
    parser.add_argument("--delay", type=float, default=0.3, help="one-way delay, s (RTT/2)")
    parser.add_argument(
        "--daemon-down",
        type=float,
        default=20.0,
        help="daemon column: seconds the link is down after the service starts",
    )
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon column")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="sohoa-bench-sync-"))
    print(f"machine: {machine()}; work dir {tmp}", flush=True)
    tables = []
    try:
        down = None if args.no_daemon else args.daemon_down
        tables.append(
            scenario(tmp, "cut", args.pages, args.rate, args.cut_every, args.delay, args.seed,
                     down)
        )  # fmt: skip
        if args.slow_pages:
            tables.append(
                scenario(tmp, "slow", args.slow_pages, args.slow_rate, 0.0, args.delay, args.seed,
                         down)
            )  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
