"""The agent's only door to the broker (paho-mqtt 2.x, MQTT 5).

What it guarantees and what it does not: a publish returns once paho accepted it into a
bounded window; PUBACK only frees a window slot, it never means "archived" (docs/design.md §2).
Subscriptions are made in ``on_connect`` so that reconnects restore them; a failed CONNACK
is never taken as connected; a PUBACK whose reason code is a failure (e.g. 0x87 Not
authorized, which the ACL gives for a foreign topic) is counted and reported.
The session is persistent (``clean_start=False`` + a session expiry): paho's default
``MQTT_CLEAN_START_FIRST_ONLY`` without an expiry wipes it on every restart (docs/design.md §8).
Incoming messages are acknowledged on arrival, except commands (``down/{device}/command``):
they are acknowledged by :meth:`MqttLink.ack` once recorded durably, so that a command this
process dies holding is redelivered by the broker at the next connect (paho ``manual_ack``).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import AgentSettings, require_device_id
from agent.errors import SyncError
from protocol import envelope, topics
from protocol.messages import Status

log = logging.getLogger(__name__)

SESSION_EXPIRY = 7 * 24 * 3600  # a week offline keeps the broker session (and our receipts)
WINDOW_AIRTIME = 10.0  # seconds of link time the in-flight window may hold


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int = 0  # non-zero: not acknowledged to the broker yet (see MqttLink.ack)
    qos: int = 0


class MqttLink:
    def __init__(self, settings: AgentSettings, boot_id: str, agent_version: str) -> None:
        self.settings = settings
        self.device_id = require_device_id(settings)
        self.broker = settings.broker()
        self.boot_id = boot_id
        self.agent_version = agent_version
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.connected = threading.Event()
        self.refused: str | None = None  # CONNACK failure reason, if the broker said no
        self.publish_failures = 0
        self.last_publish_error = ""
        self._window = threading.BoundedSemaphore(settings.max_inflight)
        self._pending: set[int] = set()
        self._acked_early: set[int] = set()
        self._sent: dict[int, tuple[int, float]] = {}  # mid -> (bytes, monotonic time sent)
        self._last_ack = 0.0
        self._rate: float | None = None  # bytes/s the link has been carrying (EWMA)
        self.acked_bytes = 0
        self.max_packet: int | None = None  # what the broker announced in CONNACK
        # Cuts: connections lost without our asking, and the time spent connected, so that
        # the syncer can size chunks for the link's mean time between cuts.
        self.cuts = 0
        self._connected_at: float | None = None
        self._connected_total = 0.0
        self._closing = False
        self._bucket = _TokenBucket(settings.max_upload_kbps * 1000 // 8)
        self._pending_lock = threading.Lock()
        self._client = self._make_client()

    # -- set-up -----------------------------------------------------------------------------

    def _status_payload(self, state: str) -> bytes:
        msg = Status(
            device_id=self.device_id,
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            state="online" if state == "online" else "offline",
            agent_version=self.agent_version,
            boot_id=self.boot_id,
        )
        return envelope.encode(msg)

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=True,
            manual_ack=True,
        )
        client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            ca = str(self.broker.ca_file) if self.broker.ca_file else None
            client.tls_set(ca_certs=ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(
            topics.status(self.device_id), self._status_payload("offline"), qos=1, retain=True
        )
        client.max_inflight_messages_set(self.settings.max_inflight)
        # A 2G cut is usually short: the first reconnect comes after 0.3 s (paho's 1 s default
        # cost ~1.5 points of goodput at 64 kbit/s with a cut a minute, docs/benchmarks.md),
        # then doubling to a minute. paho types the delays as int; it works with seconds.
        client.reconnect_delay_set(min_delay=0.3, max_delay=60)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def connect(self, timeout: float = 15.0) -> None:
        """Connect and wait for a CONNACK. Raises SyncError when the broker cannot be reached
        or refuses us; afterwards paho reconnects by itself."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY
        try:
            self._client.connect(
                self.broker.host,
                self.broker.port,
                keepalive=self.settings.mqtt_keepalive,
                clean_start=False,
                properties=props,
            )
        except (OSError, ssl.SSLError) as exc:
            raise SyncError(
                "broker_unreachable", f"{self.broker}: {exc}", broker=str(self.broker)
            ) from exc
        self._client.loop_start()
        deadline = time.monotonic() + timeout
        while not self.connected.wait(0.1):
            if self.refused is not None:
                self.close(graceful=False)
                raise SyncError(
                    "broker_refused", f"{self.broker}: {self.refused}", device=self.device_id
                )
            if time.monotonic() > deadline:
                self.close(graceful=False)
                raise SyncError(
                    "broker_unreachable", f"{self.broker}: no CONNACK", broker=str(self.broker)
                )

    def close(self, graceful: bool = True) -> None:
        """Disconnect. A graceful close asks the broker to publish our last will (the
        retained ``offline`` status) as it takes the DISCONNECT (MQTT 5 reason code 0x04):
        one packet and no wait, where publishing the status and waiting for its PUBACK cost
        a round trip (0.6 s on 2G) at the end of every ``sohoa-agent sync``."""
        self._closing = True
        if graceful and self.connected.is_set():
            reason = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
            self._client.disconnect(reasoncode=reason)
        else:
            self._client.disconnect()
        self._client.loop_stop()

    # -- callbacks (paho's network thread) ---------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused connection: %s", reason_code)
            self.refused = str(reason_code)
            # Bad credentials will not get better by retrying every second.
            client.disconnect()
            return
        log.info("connected to %s (session present: %s)", self.broker, flags.session_present)
        announced = getattr(properties, "MaximumPacketSize", None) if properties else None
        self.max_packet = int(announced) if announced else None
        client.subscribe(topics.down_filter(self.device_id), qos=1)
        client.publish(
            topics.status(self.device_id), self._status_payload("online"), qos=1, retain=True
        )
        with self._pending_lock:
            self._connected_at = time.monotonic()
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.connected.is_set():
            log.warning("disconnected from %s: %s", self.broker, reason_code)
            with self._pending_lock:
                if self._connected_at is not None:
                    self._connected_total += time.monotonic() - self._connected_at
                    self._connected_at = None
                if not self._closing:
                    self.cuts += 1
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.qos > 0 and msg.topic.endswith("/command"):
            self.inbox.put(Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos))
            return
        # Receipts and states need no durable hand-over: reconciliation asks again.
        self.inbox.put(Incoming(msg.topic, bytes(msg.payload)))
        client.ack(msg.mid, msg.qos)

    def ack(self, item: Incoming) -> None:
        """Acknowledge a command to the broker once it is recorded (or refused for good).
        Only valid on the connection it arrived on; after a reconnect the broker sends it
        again, which the recording side takes as a duplicate."""
        if item.mid and item.qos:
            self._client.ack(item.mid, item.qos)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # 0x10 "No matching subscribers" is not a failure for us: reconciliation decides.
        if reason_code.is_failure:
            self.publish_failures += 1
            self.last_publish_error = str(reason_code)
            log.error("broker refused publish mid=%d: %s", mid, reason_code)
        now = time.monotonic()
        with self._pending_lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self._window.release()
            else:  # the PUBACK beat publish() to recording the mid (fast links)
                self._acked_early.add(mid)
            sent = self._sent.pop(mid, None)
            if sent is not None:
                size, at = sent
                self.acked_bytes += size
                # With a window in flight, PUBACKs arrive one transmission time apart: the
                # gap since the previous ack (or since sending, if later) measures the link.
                gap = now - max(at, self._last_ack)
                if gap > 0.002 and size >= 1024:
                    sample = size / gap
                    self._rate = sample if self._rate is None else 0.8 * self._rate + 0.2 * sample
            self._last_ack = now

    # -- publishing --------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 60.0) -> bool:
        """Queue one message, waiting while the window is full. False when no slot freed up
        within ``timeout`` (the link is down or too slow); the caller retries later."""
        if qos == 0:
            self._client.publish(topic, payload, qos=0)
            return True
        deadline = time.monotonic() + timeout
        # Keep at most ~WINDOW_AIRTIME seconds of data queued on the link: a count-based
        # window of 16 x 32 KiB is a minute of 2G, and queries and receipts wait behind it.
        while self.in_flight >= self.window_limit(len(payload)):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        if not self._window.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        self._bucket.take(len(payload))
        # Never hold our lock while calling into paho: its network thread holds paho's
        # callback lock when it calls _on_publish, which takes ours (lock-order deadlock).
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            self._window.release()
            log.error("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return False
        with self._pending_lock:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
                self._window.release()
            else:
                self._pending.add(info.mid)
                self._sent[info.mid] = (len(payload), time.monotonic())
        return True

    def window_limit(self, size: int) -> int:
        """How many publishes of ``size`` bytes may be in flight: the configured window, and
        no more than WINDOW_AIRTIME seconds of data at the measured rate (at least 2, so
        one round trip is always covered)."""
        rate = self.upload_rate()
        if not rate:
            return self.settings.max_inflight
        return max(2, min(self.settings.max_inflight, int(rate * WINDOW_AIRTIME / max(size, 1))))

    def upload_rate(self) -> float | None:
        """Bytes per second the link carried lately (None until measured)."""
        with self._pending_lock:
            return self._rate

    def mean_time_between_cuts(self) -> float | None:
        """Seconds connected per cut so far (None before the first cut). It grows again
        while the link holds, so one early cut does not shrink chunks for good."""
        with self._pending_lock:
            if not self.cuts:
                return None
            total = self._connected_total
            if self._connected_at is not None:
                total += time.monotonic() - self._connected_at
            return total / self.cuts

    def drain(self, timeout: float) -> bool:
        """Wait until every publish has its PUBACK. False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._pending_lock:
                if not self._pending:
                    return True
            time.sleep(0.05)
        return False

    @property
    def in_flight(self) -> int:
        with self._pending_lock:
            return len(self._pending)


class _TokenBucket:
    """The bandwidth cap (``max_upload_kbps``): a commune may share its link with the office."""

    def __init__(self, rate_bytes: int) -> None:
        self.rate = rate_bytes
        self.tokens = float(rate_bytes)
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            self.tokens = min(float(self.rate), self.tokens + (now - self.at) * self.rate)
            self.at = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


# -- one request, one reply (enrolment) ----------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """A one-off request/reply over the broker with a throw-away identity (enrolment)."""

    host: str
    port: int
    tls: bool
    ca_file: str | None
    username: str
    password: str
    request_topic: str
    reply_topic: str


def exchange(
    ex: Exchange,
    payload: bytes,
    wanted: Callable[[bytes], bool],
    timeout: float = 60.0,
    resend_every: float = 10.0,
) -> bytes:
    """Connect (clean session, client id = user name), subscribe to the reply topic, publish
    the request, and return the first reply ``wanted`` accepts (others are stale answers).
    The request goes again every ``resend_every`` seconds without an answer: a request
    published while the archive's side was still reconnecting to the broker (just
    restarted, the link just back) reaches nobody; the archive answers a repeat of the same
    bytes with the same answer. Raises SyncError when the broker refuses or nothing answers
    in ``timeout`` seconds."""
    replies: queue.Queue[bytes] = queue.Queue()
    connack: queue.Queue[ReasonCode] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=ex.username,
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(ex.username, ex.password)
    if ex.tls:
        client.tls_set(ca_certs=ex.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.on_connect = lambda c, u, f, rc, p: connack.put(rc)
    client.on_subscribe = lambda c, u, mid, rcs, p: (
        subscribed.set() if rcs and not rcs[0].is_failure else None
    )
    client.on_message = lambda c, u, m: replies.put(bytes(m.payload))
    where = f"{ex.host}:{ex.port}"
    try:
        client.connect(ex.host, ex.port, keepalive=30)
    except ssl.SSLCertVerificationError as exc:
        raise SyncError("broker_untrusted", f"{where}: {exc}", broker=where) from exc
    except (OSError, ssl.SSLError) as exc:
        raise SyncError("broker_unreachable", f"{where}: {exc}", broker=where) from exc
    client.loop_start()
    try:
        try:
            rc = connack.get(timeout=timeout)
        except queue.Empty as exc:
            raise SyncError("broker_unreachable", f"{where}: no CONNACK", broker=where) from exc
        if rc.is_failure:
            raise SyncError("enrol_refused_by_broker", f"{where}: {rc}", broker=where)
        client.subscribe(ex.reply_topic, qos=1)
        if not subscribed.wait(timeout):
            raise SyncError("enrol_refused_by_broker", f"{where}: subscription refused")
        info = client.publish(ex.request_topic, payload, qos=1)
        info.wait_for_publish(timeout)
        deadline = time.monotonic() + timeout
        resend_at = time.monotonic() + resend_every
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise SyncError("enrol_no_answer", f"no reply on {ex.reply_topic}")
            if now >= resend_at:
                client.publish(ex.request_topic, payload, qos=1)
                resend_at = now + resend_every
            try:
                reply = replies.get(timeout=max(0.0, min(deadline, resend_at) - now))
            except queue.Empty:
                continue
            if wanted(reply):
                return reply
    finally:
        client.disconnect()
        client.loop_stop()
