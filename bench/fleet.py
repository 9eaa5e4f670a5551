"""Benchmark: a province's fleet — 1,000 stations connected at once (issue 19).

    python -m bench fleet [--stations 1000] [--procs 4] [--interval 6] [--rounds 5]
                          [--requests 20] [--chromium]

A throwaway PostgreSQL (tests/pgcluster.py), a real Mosquitto (embedded.Broker, no dynamic
security: the stations are not enrolled over MQTT here) and the real server process
(``sohoa-server run``). ``--stations`` simulated stations are paho clients (MQTT 5, one
network thread each) spread over ``--procs`` processes; each does what the agent does on the
wire: a retained ``offline`` Status as its last will, a retained ``online`` Status on connect
(QoS 1), and a Telemetry message (QoS 0) every minute — compressed here to every
``--interval`` seconds (default 6 s: ten times faster than the agent), each station at its own
offset in the interval, so 1,000 stations send 1,000 / ``--interval`` messages a second.

Measured:

- connect: from the first connect to every station ``online`` in the server's ``devices``
  table (the registry of what the stations say about themselves), and to every CONNACK;
- each telemetry round: when the last station published it, and when the server had recorded
  all of them (polling the table every 50 ms); the lag of the slowest station;
- the server process's CPU (``/proc``) over the rounds, per message;
- the fleet pages with ``--stations`` stations, over HTTP from the running server, logged in
  as an admin: ``/`` (the dashboard with the fleet table: status, last seen, backlog, disk,
  last error per station) and ``/stations`` (the registry: 1,000 entries made with
  ``registry.issue_code`` and marked enrolled), ``--requests`` times each, beside the login
  page as the baseline (same server, same session machinery, no fleet);
- with ``--chromium``, once: Debian's Chromium (Playwright) loading ``/`` to the ``load``
  event, and the same for the login page.

The machine is shared: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "mật khẩu benchmark đội trạm"
CHROMIUM = Path("/usr/bin/chromium")


def _device(n: int) -> str:
    return f"xa-{n:04d}"


def _station_proc(
    port: int, first: int, count: int, interval: float, rounds: int, start_at: float,
    ready: Any, done: Any, go: Any,
) -> None:  # fmt: skip
    """``count`` stations from ``first``: connect, status, ``rounds`` telemetry rounds."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import envelope, topics
    from protocol.messages import Status, Telemetry

    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[::-1])
    clients: list[mqtt.Client] = []
    connected = {"n": 0}

    def status(device: str, state: str) -> bytes:
        msg = Status(
            device_id=device, msg_id=uuid.uuid4().hex, sent_at=time.time(), state=state,
            agent_version="bench", boot_id=uuid.uuid4().hex,
        )  # fmt: skip
        return envelope.encode(msg)

    def on_connect(client: mqtt.Client, device: Any, flags: Any, rc: Any, props: Any) -> None:
        client.publish(topics.status(device), status(device, "online"), qos=1, retain=True)
        connected["n"] += 1

    for n in range(first, first + count):
        device = _device(n)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=device,
            protocol=mqtt.MQTTv5, userdata=device,
        )  # fmt: skip
        client.will_set(topics.status(device), status(device, "offline"), qos=1, retain=True)
        client.on_connect = on_connect
        clients.append(client)
    while time.time() < start_at:
        time.sleep(0.01)
    for client in clients:
        client.connect_async("127.0.0.1", port, keepalive=60)
        client.loop_start()
    while connected["n"] < count:
        time.sleep(0.01)
    ready.put((first, time.time()))
    go.wait()  # the rounds start together, once the server has every station online
    rng = random.Random(first)
    offsets = sorted((rng.uniform(0, interval), i) for i in range(count))
    begin = time.time()
    for r in range(1, rounds + 1):
        base = begin + (r - 1) * interval
        for offset, i in offsets:
            wait = base + offset - time.time()
            if wait > 0:
                time.sleep(wait)
            device = _device(first + i)
            msg = Telemetry(
                device_id=device, msg_id=uuid.uuid4().hex, sent_at=time.time(), queue_pages=r,
                queue_bytes=r * 70_000, disk_free_bytes=20_000_000_000 - r, agent_state="idle",
                last_error="" if (first + i) % 50 else "scanner_not_found: no SANE device",
            )  # fmt: skip
            clients[i].publish(topics.up(device, "telemetry"), envelope.encode(msg), qos=0)
        done.put((first, r, time.time()))
    time.sleep(3600)  # connected until the parent kills us (the pages are read meanwhile)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _login(base: str) -> Any:
    import httpx

    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf, "no CSRF field on the login page"
    r = client.post(
        "/login", data={"username": "boss", "password": PASSWORD, "csrf": csrf.group(1)},
        follow_redirects=True,
    )  # fmt: skip
    r.raise_for_status()
    assert "/login" not in str(r.url), "login failed"
    return client


def _time_get(client: Any, path: str, n: int, pid: int) -> tuple[list[float], int, float]:
    """Wall times (ms), the page's bytes, and the server process's CPU per request (ms: the
    figure a loaded machine does not inflate)."""
    times, size = [], 0
    cpu = _cpu_seconds(pid)
    for _ in range(n):
        started = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
        size = len(r.content)
    return times, size, (_cpu_seconds(pid) - cpu) / n * 1000


def _chromium(base: str, paths: list[str]) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out = {}
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="vi-VN")
        page.goto(base + "/login")
        page.fill("#username", "boss")
        page.fill("#password", PASSWORD)
        page.click("form.grid button[type=submit]")
        page.wait_for_url(base + "/")
        for path in paths:
            page.goto(base + path, wait_until="load")  # warm (fonts, CSS cached)
            page.goto(base + path, wait_until="load")
            timing = page.evaluate(
                "() => { const t = performance.getEntriesByType('navigation')[0];"
                " return [t.responseEnd - t.requestStart, t.loadEventEnd - t.startTime]; }"
            )
            out[path] = (float(timing[0]), float(timing[1]))  # type: ignore[assignment]
        browser.close()
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fleet", description=__doc__)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4, help="processes of simulated stations")
    parser.add_argument("--interval", type=float, default=6.0, help="telemetry every (s)")
    parser.add_argument("--rounds", type=int, default=5, help="telemetry rounds")
    parser.add_argument("--requests", type=int, default=20, help="per page")
    parser.add_argument("--chromium", action="store_true", help="load / once in Chromium")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests"))
    from harness import Broker, ServerProcess
    from pgcluster import PostgresCluster

    from protocol import signing
    from server.archive import auth
    from server.fleet import registry
    from server.store.db import Database

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it
    work = Path(tempfile.mkdtemp(prefix="sohoa-bench-fleet-"))
    cluster = PostgresCluster().start()
    broker = Broker(work / "broker", persistence=False).start()
    url = cluster.create_database("fleet")
    server = ServerProcess(work / "server", broker.url, database_url=url).start()
    procs: list[multiprocessing.Process] = []
    load = [os.getloadavg()[0]]
    try:
        db = Database(url)
        auth.add_user(db, "boss", "admin", PASSWORD)
        # The registry: every station registered and enrolled (a key of its own).
        t = time.perf_counter()
        for n in range(args.stations):
            registry.issue_code(db, _device(n), f"Xã {n:04d}", f"Huyện {n // 100}", 72)
        keys = [
            (signing.public_key_hex(signing.new_key()), _device(n)) for n in range(args.stations)
        ]
        with db.tx() as con:
            for key, device in keys:
                con.execute(
                    "UPDATE stations SET state = 'active', public_key = ?, enrolled_at = ?,"
                    " code_used_at = ? WHERE device_id = ?",
                    (key, time.time(), time.time(), device),
                )
        registered = time.perf_counter() - t

        ctx = multiprocessing.get_context("spawn")
        ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        per = -(-args.stations // args.procs)
        start_at = time.time() + 3.0
        for first in range(0, args.stations, per):
            p = ctx.Process(
                target=_station_proc,
                args=(broker.port, first, min(per, args.stations - first), args.interval,
                      args.rounds, start_at, ready, done, go),
                daemon=True,
            )  # fmt: skip
            p.start()
            procs.append(p)
        con = db.read()

        def online() -> int:
            sql = "SELECT count(*) FROM devices WHERE status = 'online'"
            return int(con.execute(sql).fetchone()[0])

        while online() < args.stations:
            assert time.time() < start_at + 120, f"only {online()} stations online after 120 s"
            time.sleep(0.05)
        all_online = time.time() - start_at
        connacks = max(ready.get(timeout=60)[1] for _ in procs) - start_at
        load.append(os.getloadavg()[0])

        go.set()
        cpu0, wall0 = _cpu_seconds(server.proc.pid), time.time()  # type: ignore[union-attr]
        lags: list[float] = []
        sent: dict[int, list[float]] = {}
        for r in range(1, args.rounds + 1):
            while len(sent.get(r, [])) < len(procs):
                _, n, at = done.get(timeout=args.interval * 4)
                sent.setdefault(n, []).append(at)
            last_sent = max(sent[r])
            while True:
                rows = con.execute("SELECT telemetry FROM devices").fetchall()
                have = sum(1 for row in rows if json.loads(row[0]).get("queue_pages", 0) >= r)
                if have >= args.stations:
                    break
                assert time.time() < last_sent + 60, f"round {r}: {have} recorded after 60 s"
                time.sleep(0.05)
            lags.append(time.time() - last_sent)
            load.append(os.getloadavg()[0])
        cpu = _cpu_seconds(server.proc.pid) - cpu0  # type: ignore[union-attr]
        wall = time.time() - wall0
        messages = args.stations * args.rounds

        client = _login(server.url)
        pages = {}
        for path in ("/login", "/", "/stations"):
            c = client if path != "/login" else __import__("httpx").Client(base_url=server.url)
            pid = server.proc.pid  # type: ignore[union-attr]
            _time_get(c, path, 2, pid)  # warm
            pages[path] = _time_get(c, path, args.requests, pid)
            load.append(os.getloadavg()[0])
        browser = _chromium(server.url, ["/login", "/", "/stations"]) if args.chromium else {}
        engine = str(con.execute("SELECT version()").fetchone()[0]).split(" on ")[0]
        db.close()
    finally:
        for p in procs:
            p.kill()
        server.stop()
        broker.stop()
        cluster.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{args.stations} stations in {args.procs} processes, telemetry every"
        f" {args.interval:g} s (the agent: every 60 s), {args.rounds} rounds; {engine};"
        f" {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        f" load average (1 min) {min(load):.1f}–{max(load):.1f}\n"
    )
    print(f"registry: {args.stations} stations registered and enrolled in {registered:.1f} s")
    print(f"every CONNACK after {connacks:.1f} s; every station online in the server's table"
          f" after {all_online:.1f} s")  # fmt: skip
    print(
        f"telemetry: {messages} messages ({args.stations / args.interval:.0f}/s); the server had"
        f" recorded each round {statistics.median(lags) * 1000:.0f} ms (median) /"
        f" {max(lags) * 1000:.0f} ms (max) after its last message; server CPU"
        f" {cpu:.1f} s over {wall:.0f} s ({cpu / wall * 100:.0f} % of a core,"
        f" {cpu / messages * 1000:.2f} ms per message)\n"
    )
    print("| page | bytes | p50 (ms) | p95 (ms) | max (ms) | server CPU per request (ms) |")
    print("|---|---|---|---|---|---|")
    for path, (times, size, cpu_ms) in pages.items():
        print(f"| `{path}` | {size:,} | {statistics.median(times):.1f} | {_pct(times, 95):.1f} |"
              f" {max(times):.1f} | {cpu_ms:.1f} |")  # fmt: skip
    for path, (server_ms, load_ms) in browser.items():
        print(f"Chromium {path}: response {server_ms:.0f} ms, load event {load_ms:.0f} ms")
    return 0
