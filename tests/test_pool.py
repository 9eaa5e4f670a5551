"""Many server processes on one PostgreSQL (issue 19): a process holds at most its pool of
connections however many requests it serves; web processes keep nothing of a login in
memory, so two behind a proxy are one; N ingest workers share the broker's subscription and
archive every page exactly once. Real PostgreSQL (tests/pgcluster.py), real Mosquitto,
``sohoa-server run`` processes."""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from harness import Broker, ServerProcess
from paho.mqtt.enums import CallbackAPIVersion
from pgcluster import PostgresCluster
from test_ingest import DEVICE, BatchSrc, make_batch, sha
from test_staff import csrf_of

from protocol import envelope, topics
from protocol.messages import BatchState, Query, Receipt, Reject

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]

SHARED = {"SOHOA_SHARED_SUBSCRIPTION": "true"}


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _backends(watch: psycopg.Connection[tuple[int]], dbname: str, extra: str = "") -> int:
    """The server's connections to the test's database (its application_name)."""
    row = watch.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        f" AND application_name = 'sohoa-server' {extra}",
        (dbname,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_server_process_holds_at_most_its_pool(
    tmp_path: Path, pg_cluster: PostgresCluster, broker: Broker
) -> None:
    """Twelve API requests at once, each stuck on a lock in PostgreSQL: three of them hold
    the pool's three connections, the other nine wait in the process, not in PostgreSQL;
    when the lock goes, all twelve are answered. (One connection per thread, as before the
    pool, shows twelve.)"""
    size, requests = 3, 12
    url = pg_cluster.create_database("pool")
    server = ServerProcess(
        tmp_path / "server",
        broker.url,
        database_url=url,
        settings={"SOHOA_DATABASE_POOL_SIZE": str(size)},
    ).start()
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: statuses.append(server.request("GET", "/api/v1/devices")[0])
        )
        for _ in range(requests)
    ]
    try:
        with psycopg.connect(url, autocommit=True) as watch, psycopg.connect(url) as locker:
            # Every API request reads `tokens` first (its bearer token).
            locker.execute("LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE")
            for t in threads:
                t.start()
            peak = 0
            deadline = time.monotonic() + 60
            while _backends(watch, _dbname(url), "AND wait_event_type = 'Lock'") < size:
                peak = max(peak, _backends(watch, _dbname(url)))
                assert time.monotonic() < deadline, watch.execute(
                    "SELECT application_name, state, wait_event_type, wait_event, query"
                    " FROM pg_stat_activity WHERE datname = %s",
                    (_dbname(url),),
                ).fetchall()
                time.sleep(0.05)
            for _ in range(30):  # the other requests had every chance to connect too
                peak = max(peak, _backends(watch, _dbname(url)))
                time.sleep(0.05)
            assert statuses == []  # all still waiting: three in PostgreSQL, nine in the pool
            locker.rollback()  # the lock goes
        for t in threads:
            t.join(timeout=120)
        assert statuses == [200] * requests
        assert peak == size, f"{peak} connections for a pool of {size}"
    finally:
        server.stop()


def _login_form(client: httpx.Client, base: str) -> str:
    """GET /login: the login CSRF value (a double-submit cookie, the same in the form)."""
    page = client.get(f"{base}/login")
    assert page.status_code == 200
    return str(client.cookies.get("sohoa_login_csrf"))


def _login(client: httpx.Client, base: str, user: str, password: str, csrf: str) -> int:
    return client.post(
        f"{base}/login",
        data={"username": user, "password": password, "csrf": csrf, "next": "/"},
    ).status_code


def test_two_web_processes_are_one_behind_a_proxy(
    tmp_path: Path, pg_cluster: PostgresCluster, broker: Broker
) -> None:
    """A login form from one process is accepted by the other, the session it opens works on
    both and ends on both, and the login brake counts the failures both processes heard."""
    url = pg_cluster.create_database("web")
    data = tmp_path / "server"
    a = ServerProcess(data, broker.url, database_url=url, settings=SHARED).start()
    b = ServerProcess(
        data, broker.url, client_id="sohoa-server-2", token="unused", database_url=url,
        settings=SHARED,
    ).start()  # fmt: skip
    try:
        for user in ("thu", "lan"):
            secret = tmp_path / f"{user}.pw"
            secret.write_text(f"mật-khẩu-của-{user}-2024\n")
            a.cli("user", "add", user, "--role", "viewer", "--password-file", str(secret))
        with httpx.Client(follow_redirects=False, timeout=60) as client:
            csrf = _login_form(client, a.url)
            assert _login(client, b.url, "thu", "mật-khẩu-của-thu-2024", csrf) == 303
            sid = client.cookies.get("sohoa_session")
            assert sid
            for server in (a, b):  # the session works on both
                assert client.get(f"{server.url}/").status_code == 200
            # Logged out on B with the session's CSRF value, read from a page A served.
            session_csrf = csrf_of(client.get(f"{a.url}/").text)
            out = client.post(f"{b.url}/logout", data={"csrf": session_csrf})
            assert out.status_code == 303 and out.headers["location"] == "/login"
            client.cookies.clear()
            client.cookies.set("sohoa_session", sid)  # the old session id, presented again
            ended = client.get(f"{a.url}/")  # ended on B: gone on A
            assert ended.status_code in (302, 303) and "/login" in ended.headers["location"]

        # The brake: five wrong passwords for one user from one address, heard by A three
        # times and by B twice, are five in the one count both read.
        with httpx.Client(follow_redirects=False, timeout=60) as client:
            csrf = _login_form(client, a.url)
            for server in (a, a, a, b, b):
                assert _login(client, server.url, "lan", "sai", csrf) == 401
            with psycopg.connect(url) as con:
                row = con.execute(
                    "SELECT failures FROM login_failures WHERE key LIKE 'pair:lan%'"
                ).fetchone()
            assert row is not None and row[0] == 5
            # B alone heard two, yet it locks now: the lock is 2 s after the fifth failure
            # and doubles with each failure heard after it, so within a few more attempts
            # (however slow this machine) B refuses one unheard. (That the lock refuses even
            # the right password is tests/test_auth.py's.)
            codes = []
            while 429 not in codes and len(codes) < 6:
                codes.append(_login(client, b.url, "lan", "sai", csrf))
            assert codes[-1] == 429 and set(codes) <= {401, 429}, codes
            # A brake of B's own would have heard three more before locking.
            assert codes.count(401) < 3, codes
    finally:
        b.stop()
        a.stop()


def _device(port: int, events: queue.SimpleQueue[object]) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(200)

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        events.put(envelope.decode(bytes(msg.payload)).message)

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    client.subscribe(topics.down_filter(DEVICE), qos=1)
    assert subscribed.wait(30)
    return client


@pytest.mark.slow
@pytest.mark.parametrize("workers", [3])
def test_n_ingest_workers_archive_every_page_exactly_once(
    tmp_path: Path, pg_cluster: PostgresCluster, broker: Broker, workers: int
) -> None:
    """N ``sohoa-server run`` processes (as on N hosts: one database, one store, one broker)
    on the shared subscription; a station publishes its batches at once. Every part is
    receipted, every page is in the catalogue once with each part committed once, and every
    worker took a share."""
    rng = random.Random(19)
    batches: list[BatchSrc] = [
        make_batch(4, rng, sizes={"text": 300, "thumb": 2000, "archival": 12_000}) for _ in range(4)
    ]
    url = pg_cluster.create_database("workers")
    data = tmp_path / "server"
    servers = [ServerProcess(data, broker.url, database_url=url, settings=SHARED).start()]
    for n in range(2, workers + 1):
        more = ServerProcess(
            data, broker.url, client_id=f"sohoa-server-{n}", token="unused", database_url=url,
            settings=SHARED,
        )  # fmt: skip
        servers.append(more.start())
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    device = _device(broker.port, events)
    try:
        for batch in batches:
            device.publish(topics.up(DEVICE, "manifest"), batch.manifest(), qos=1)
        want, known = {b.batch_id for b in batches}, set[str]()
        deadline = time.monotonic() + 120
        while known != want:  # as the agent does: ask until the archive knows every batch
            assert time.monotonic() < deadline, f"unknown batches: {want - known}"
            ask = Query(device_id=DEVICE, msg_id=uuid.uuid4().hex, sent_at=time.time(),
                        batch_ids=tuple(sorted(want - known)))  # fmt: skip
            device.publish(topics.up(DEVICE, "query"), envelope.encode(ask), qos=1)
            try:
                while True:
                    ev = events.get(timeout=1.0)
                    if isinstance(ev, BatchState) and ev.known:
                        known.add(ev.batch_id)
            except queue.Empty:
                pass
        chunks = [p for b in batches for p in b.all_chunks(4096)]
        rng.shuffle(chunks)
        for payload in chunks:
            device.publish(topics.up(DEVICE, "chunk"), payload, qos=1)
        parts = {(p.page_id, name) for b in batches for p in b.pages for name in p.parts}
        receipted: Counter[tuple[str, str]] = Counter()
        deadline = time.monotonic() + 300
        while set(receipted) != parts:
            ev = events.get(timeout=max(0.1, deadline - time.monotonic()))
            assert not isinstance(ev, Reject), ev
            if isinstance(ev, Receipt):
                receipted.update((p.page_id, p.part) for p in ev.committed)
        handled = [s.get_json("/healthz", auth=False)["messages"] for s in servers]
    finally:
        device.disconnect()
        device.loop_stop()
        for s in servers:
            s.stop()
    assert all(n > 0 for n in handled), f"a worker got nothing: {handled}"
    with psycopg.connect(url) as con:
        pages = con.execute("SELECT page_id, count(*) FROM pages GROUP BY page_id").fetchall()
        committed = con.execute(
            "SELECT p.page_id, parts.name, parts.sha256, parts.state FROM parts"
            " JOIN pages p ON p.id = parts.page_pk"
        ).fetchall()
    assert sorted(pages) == sorted((p.page_id, 1) for b in batches for p in b.pages)
    expected = {
        (p.page_id, name, sha(data))
        for b in batches
        for p in b.pages
        for name, data in p.parts.items()
    }
    assert len(committed) == len(expected)
    assert {(r[0], r[1], r[2]) for r in committed} == expected
    assert {r[3] for r in committed} == {"committed"}
