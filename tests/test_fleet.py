"""One identity per station on a real Mosquitto with the dynamic security plugin.

Each test plays the thief first — a station with its own valid credentials trying what
issue 14 found possible with the ACL file — then checks the invariant: nothing lost (the
victim got all of it), nothing let through (the thief got none of it)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from harness import Broker
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol import topics
from server.fleet import broker as fleet

pytestmark = [pytest.mark.mqtt, pytest.mark.dynsec]

WAIT = 10.0


class Peer:
    """A paho client that records what happens to it."""

    def __init__(self, broker: Broker, user: str, password: str, client_id: str) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.connack: queue.SimpleQueue[ReasonCode] = queue.SimpleQueue()
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self.disconnected = threading.Event()
        self._acked = threading.Condition()
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.broker = broker

    def connect(self) -> ReasonCode:
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30)
        self.client.loop_start()
        rc = self.connack.get(timeout=WAIT)
        if rc.is_failure:
            self.client.loop_stop()
        return rc

    def _on_subscribe(
        self, c: mqtt.Client, u: object, mid: int, rcs: list[ReasonCode], p: Properties | None
    ) -> None:
        with self._acked:
            self.subacks[mid] = rcs
            self._acked.notify_all()

    def _on_publish(
        self, c: mqtt.Client, u: object, mid: int, rc: ReasonCode, p: Properties | None
    ) -> None:
        with self._acked:
            self.pubacks[mid] = rc
            self._acked.notify_all()

    def subscribe(self, topic_filter: str) -> ReasonCode:
        _, mid = self.client.subscribe(topic_filter, qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self.subacks, WAIT)
            return self.subacks[mid][0]

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.pubacks, WAIT)
            return self.pubacks[info.mid]

    def drain(self) -> list[tuple[str, bytes]]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker", dynsec=True).start()
    yield broker
    broker.stop()


@pytest.fixture
def admin(dynsec_broker: Broker) -> Iterator[fleet.BrokerAdmin]:
    a = fleet.BrokerAdmin("127.0.0.1", dynsec_broker.port, "sohoa-admin",
                          dynsec_broker.admin_password)  # fmt: skip
    a.connect()
    yield a
    a.close()


def _stations(admin: fleet.BrokerAdmin) -> dict[str, str]:
    passwords = {"xa-a": fleet.new_password(), "xa-b": fleet.new_password()}
    for device, password in passwords.items():
        admin.add_station(device, password, f"Xã {device}")
    return passwords


def _ingest(broker: Broker, client_id: str = "sohoa-server-1") -> Peer:
    peer = Peer(broker, "sohoa-server", broker.ingest_password, client_id)
    assert not peer.connect().is_failure
    for flt in topics.ingest_filters(shared=True):
        assert not peer.subscribe(flt).is_failure
    return peer


def _quiet_then_collect(peer: Peer, want: int) -> list[tuple[str, bytes]]:
    got = []
    while len(got) < want:
        got.append(peer.messages.get(timeout=WAIT))
    return got


def test_share_subscription_by_a_station_gets_nothing(
    dynsec_broker: Broker, admin: fleet.BrokerAdmin
) -> None:
    pw = _stations(admin)
    ingest = _ingest(dynsec_broker)
    thief = Peer(dynsec_broker, "xa-b", pw["xa-b"], "xa-b")
    victim = Peer(dynsec_broker, "xa-a", pw["xa-a"], "xa-a")
    try:
        assert not thief.connect().is_failure
        assert not victim.connect().is_failure
        # The attack of issue 14: join the ingest's share group (and plain wildcards).
        for flt in (
            f"$share/{topics.SHARED_GROUP}/{topics.PREFIX}/up/+/+",
            f"$share/thieves/{topics.PREFIX}/up/+/+",
            f"{topics.PREFIX}/up/+/+",
            f"{topics.PREFIX}/up/xa-a/#",
            f"{topics.PREFIX}/down/+/+",
            f"{topics.PREFIX}/down/xa-a/+",
            f"{topics.PREFIX}/status/+",
            "#",
        ):
            rc = thief.subscribe(flt)
            assert rc.is_failure, f"{flt} was granted to another station"
        # Its own down filter is granted (the role is not simply "deny everything").
        assert not thief.subscribe(topics.down_filter("xa-b")).is_failure
        sent = [f"page-{i}".encode() for i in range(20)]
        for payload in sent:
            assert not victim.publish(topics.up("xa-a", "chunk"), payload).is_failure
        got = _quiet_then_collect(ingest, 20)
        assert sorted(p for _, p in got) == sorted(sent)  # nothing lost
        # Nothing reached the thief: a status publish after the chunks is a barrier (same
        # broker, in order) telling us every earlier delivery is done.
        assert not victim.publish(topics.status("xa-a"), b"online").is_failure
        assert ingest.messages.get(timeout=WAIT)[0] == topics.status("xa-a")
        assert thief.drain() == []
    finally:
        for peer in (thief, victim, ingest):
            peer.close()


def test_client_id_takeover_is_refused_and_the_victim_stays(
    dynsec_broker: Broker, admin: fleet.BrokerAdmin
) -> None:
    pw = _stations(admin)
    ingest = _ingest(dynsec_broker)
    victim = Peer(dynsec_broker, "xa-a", pw["xa-a"], "xa-a")
    assert not victim.connect().is_failure
    assert not victim.subscribe(topics.down_filter("xa-a")).is_failure
    try:
        for target in ("sohoa-server-1", "xa-a"):
            thief = Peer(dynsec_broker, "xa-b", pw["xa-b"], target)
            rc = thief.connect()
            assert rc.is_failure and rc.value == 0x87, f"took over {target}: {rc}"
            thief.client.loop_stop()
        # Both victims are still connected and still work.
        assert not ingest.disconnected.is_set() and not victim.disconnected.is_set()
        assert not victim.publish(topics.up("xa-a", "query"), b"q").is_failure
        assert ingest.messages.get(timeout=WAIT) == (topics.up("xa-a", "query"), b"q")
        assert not ingest.publish(topics.down("xa-a", "receipt"), b"r").is_failure
        assert victim.messages.get(timeout=WAIT) == (topics.down("xa-a", "receipt"), b"r")
    finally:
        victim.close()
        ingest.close()


def test_publishing_across_stations_is_refused(
    dynsec_broker: Broker, admin: fleet.BrokerAdmin
) -> None:
    pw = _stations(admin)
    ingest = _ingest(dynsec_broker)
    thief = Peer(dynsec_broker, "xa-b", pw["xa-b"], "xa-b")
    victim = Peer(dynsec_broker, "xa-a", pw["xa-a"], "xa-a")
    try:
        assert not thief.connect().is_failure
        assert not victim.connect().is_failure
        assert not victim.subscribe(topics.down_filter("xa-a")).is_failure
        for topic in (
            topics.up("xa-a", "manifest"),  # pages in another commune's name
            topics.status("xa-a"),  # a forged "offline"
            topics.down("xa-a", "receipt"),  # a forged receipt: data loss
            topics.down("xa-a", "reject"),
            topics.down("xa-b", "receipt"),  # even to itself: only the archive writes down/
            topics.enrol_reply("xa-a"),
            "$CONTROL/dynamic-security/v1",
        ):
            rc = thief.publish(topic, b'{"forged": true}')
            assert rc.is_failure, f"{topic} accepted from another station: {rc}"
        # Barrier: the victim's own message arrives, nothing forged before it.
        assert not victim.publish(topics.up("xa-a", "query"), b"mine").is_failure
        assert ingest.messages.get(timeout=WAIT) == (topics.up("xa-a", "query"), b"mine")
        assert ingest.drain() == []
        assert not ingest.publish(topics.down("xa-a", "state"), b"s").is_failure
        assert victim.messages.get(timeout=WAIT) == (topics.down("xa-a", "state"), b"s")
        assert victim.drain() == []
    finally:
        for peer in (thief, victim, ingest):
            peer.close()


def test_removed_station_is_disconnected_at_once_and_refused(
    dynsec_broker: Broker, admin: fleet.BrokerAdmin
) -> None:
    pw = _stations(admin)
    station = Peer(dynsec_broker, "xa-a", pw["xa-a"], "xa-a")
    assert not station.connect().is_failure
    other = Peer(dynsec_broker, "xa-b", pw["xa-b"], "xa-b")
    assert not other.connect().is_failure
    try:
        admin.remove_station("xa-a")
        assert station.disconnected.wait(WAIT)
        station.client.loop_stop()
        again = Peer(dynsec_broker, "xa-a", pw["xa-a"], "xa-a")
        assert again.connect().is_failure
        assert "xa-a" not in admin.client_names()
        assert not other.disconnected.is_set()  # the rest of the fleet is untouched
    finally:
        other.close()


def test_broker_init_as_the_operations_chapter_says(tmp_path: Path) -> None:
    """`sohoa-server broker init` writes what a real broker boots with: the admin can
    administer, the ingest identity can subscribe, nobody else gets in."""
    import os
    import subprocess

    from harness import BIN, free_port, wait_port

    data = tmp_path / "server"
    dyn = tmp_path / "mosquitto" / "dynamic-security.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data), SOHOA_MQTT_URL="mqtt://sohoa-server@127.0.0.1:1883")
    out = subprocess.run(
        [str(BIN / "sohoa-server"), "broker", "init", "--dynsec-file", str(dyn)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert dyn.stat().st_mode & 0o077 == 0
    again = subprocess.run(
        [str(BIN / "sohoa-server"), "broker", "init", "--dynsec-file", str(dyn)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode != 0 and "exists" in again.stderr  # never silently reset
    port = free_port()
    conf = tmp_path / "mosquitto" / "m.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous false"]
    lines += [line.strip() for line in out.stdout.splitlines() if line.startswith("  ")]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        admin_pw = (data / "broker-admin-password").read_text()
        with fleet.BrokerAdmin("127.0.0.1", port, "sohoa-admin", admin_pw) as admin:
            admin.connect()
            admin.add_station("xa-a", "station-password-123", "Xã A")
            assert set(admin.client_names()) == {"sohoa-admin", "sohoa-server", "xa-a"}
        broker = Broker(tmp_path / "unused", port=port)
        ingest = Peer(broker, "sohoa-server", (data / "mqtt-password").read_text(), "w1")
        assert not ingest.connect().is_failure
        assert not ingest.subscribe(topics.ingest_filters()[0]).is_failure
        ingest.close()
        stranger = Peer(broker, "sohoa-server", "guess", "w2")
        assert stranger.connect().is_failure
    finally:
        proc.terminate()
        proc.wait(10)


def test_expired_enrolment_identities_are_swept_from_the_broker(
    tmp_path: Path, dynsec_broker: Broker, admin: fleet.BrokerAdmin
) -> None:
    from protocol import enrolment, signing
    from server.fleet import registry as stations
    from server.store.db import Database

    db = Database(tmp_path / "a.sqlite3")
    old = stations.issue_code(db, "xa-old", "Xã Cũ", "", hours=1, now=0.0)  # long expired
    fresh = stations.issue_code(db, "xa-new", "Xã Mới", "", hours=72)
    admin.add_enrolment("xa-old", old)
    admin.add_enrolment("xa-new", fresh)
    desk = fleet.EnrolmentDesk(db, admin, signing.new_key())
    desk.sweep()
    names = admin.client_names()
    assert enrolment.enrol_user("xa-old") not in names
    assert enrolment.enrol_user("xa-new") in names
    # Its code is gone from the registry too: asking with it is refused there as well.
    sql = "SELECT code_sha256 FROM stations WHERE device_id = ?"
    assert db.read().execute(sql, ("xa-old",)).fetchone()[0] is None
    assert db.read().execute(sql, ("xa-new",)).fetchone()[0] is not None
    old_peer = Peer(dynsec_broker, enrolment.enrol_user("xa-old"), old, "enrol-xa-old")
    assert old_peer.connect().is_failure
    db.close()
