"""The server's only door to the broker: one ingest worker (on the shared subscription when
several run: ``shared_subscription``).

Group commit: paho's network thread only queues each device message (``_on_message``); one
ingest thread takes what is queued — up to :data:`GROUP_MAX_MESSAGES` messages or
:data:`GROUP_MAX_BYTES`, waiting at most :data:`GROUP_LINGER` s for more once the queue is
empty — and hands it to :meth:`Ingest.handle_many` as one group: one flush round of the files
and one SQLite commit for all of it (see :mod:`server.ingest`). Under load the queue fills
while a group is being flushed, so groups grow with the load. The broker may have at most
:data:`RECEIVE_MAXIMUM` messages unacknowledged at this client (MQTT 5 Receive Maximum),
which bounds the queue and the size of a group.

The MQTT acknowledgement of a device message is sent only after ``handle_many`` returned,
i.e. after everything the group wrote is flushed and committed (paho ``manual_ack=True``),
and after its replies (receipts, states, rejects) were handed to paho: if this process dies
mid-way, the broker redelivers every message of the group to a live worker. The session is
persistent (``clean_start=False``, long expiry) so that messages queued while the server is
down are not lost with it; what the broker drops anyway is recovered by the agents'
reconciliation.

It is also the server's only publisher of commands to devices (:meth:`IngestWorker.publish`).
It knows nothing of what the commands are: it tells the archive side (a :class:`DeviceEvents`
that ``server.app`` injects, :class:`server.archive.rescan.Resender`) when it connected and when a
device announced itself online, and that side decides what to send.

It must not import archive work (re-scans, review, records): the arrows run archive → ingest.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol import envelope, signing, topics
from protocol.messages import Command, Reject, Status
from server.config import ServerSettings
from server.fleet import assignment
from server.ingest import Ingest
from server.store import keys
from server.store.objects import ObjectStoreError

log = logging.getLogger(__name__)

SESSION_EXPIRY = 30 * 24 * 3600
GROUP_MAX_MESSAGES = 256
GROUP_MAX_BYTES = 16 * 1024 * 1024
GROUP_LINGER = 0.002  # seconds to wait for more once the queue is empty (under load: never)
RECEIVE_MAXIMUM = 256  # QoS 1 messages the broker may have unacknowledged at this client
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK: accepted, but nobody will receive it
EARLY_ACK_SECONDS = 5.0
# on_puback(delivered, reason): delivered is False when the broker refused the message or had
# no subscriber for it.
PubackCallback = Callable[[bool, str], None]


class Delivery(NamedTuple):
    """A device message paho delivered, not yet acknowledged."""

    topic: str
    payload: bytes
    mid: int
    qos: int


class DeviceEvents(Protocol):
    """What the archive side hears from the broker through the worker. Called from paho's
    network thread (``connected``) or the ingest thread (``device_online``); exceptions are
    logged, never raised into the worker."""

    def connected(self, worker: IngestWorker) -> None:
        """The worker (re)connected: commands may be published again."""

    def device_online(self, worker: IngestWorker, device_id: str) -> None:
        """A device announced itself (or its retained status arrived)."""


def _cause(error: BaseException) -> str:
    """What a failure is, for logging it once: the object store's cause, else its type."""
    if isinstance(error, ObjectStoreError):
        return f"object store: {error.cause}"
    return type(error).__name__


def _trouble_text(error: BaseException) -> str:
    """What staff and administrators read (the alert, the banner, /healthz): the object
    store's cause in Vietnamese and English with what to do; else the error itself."""
    if isinstance(error, ObjectStoreError) and error.cause != "other":
        return f"{error.vi} / {error.en}"
    return f"{type(error).__name__}: {error}"


class IngestWorker:
    def __init__(
        self, settings: ServerSettings, ingest: Ingest, events: DeviceEvents | None = None
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.events = events
        self.connected = threading.Event()
        self.groups = 0
        self._queue: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_message_at = 0.0
        self.messages = 0
        self.errors = 0
        self.trouble: str | None = None  # why the last group could not be stored, until one is
        self.trouble_since = 0.0
        self._logged_cause: str | None = None  # the cause of failure logged last (_cause)
        url = urlsplit(settings.mqtt_url)
        self.host = url.hostname or "localhost"
        self.tls = url.scheme == "mqtts"
        self.port = url.port or (8883 if self.tls else 1883)
        self.username = unquote(url.username) if url.username else "sohoa-server"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._client.username_pw_set(self.username, settings.broker_password())
        if self.tls:
            ca = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
            self._client.tls_set(ca_certs=ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._acks_lock = threading.Lock()
        self._awaiting: dict[int, PubackCallback] = {}
        # PUBACKs that beat publish() to registering their mid: (delivered, reason, when).
        self._early: dict[int, tuple[bool, str, float]] = {}

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="sohoa-ingest", daemon=True)
        self._thread.start()
        self._client.connect_async(
            self.host, self.port, keepalive=60, clean_start=False, properties=props
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Finish the group in hand, then disconnect. Messages still queued are not
        acknowledged: the broker delivers them again (persistent session)."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def alive(self) -> bool:
        return self.connected.is_set() and self._thread is not None and self._thread.is_alive()

    def healthy(self) -> bool:
        """Whether this worker can still do its job: its ingest thread and paho's network
        thread both live (connected or reconnecting). False once either died: that is a
        restart case (the watchdog stops pinging systemd)."""
        ingest = self._thread is not None and self._thread.is_alive()
        network = self._client._thread  # paho has no public accessor for its loop thread
        return ingest and (network is None or network.is_alive())

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, on_puback: PubackCallback | None = None
    ) -> bool:
        """Publish a server-to-device message (a command). False when the worker is not
        connected or paho refused it: the caller keeps it and sends it again on the next
        connect. ``on_puback`` is called from paho's thread once the broker answered."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return False
        if on_puback is None or qos == 0:
            return True
        # Never call into paho holding our lock: paho holds its own while calling
        # _on_publish, which takes ours. So a PUBACK may arrive before the mid is recorded
        # here; _on_publish keeps such answers for a few seconds (16-bit mids wrap only
        # after 65,535 publishes, far more than in that time).
        with self._acks_lock:
            early = self._early.pop(info.mid, None)
            if early is None or time.monotonic() - early[2] > EARLY_ACK_SECONDS:
                self._awaiting[info.mid] = on_puback
                early = None
        if early is not None:
            on_puback(early[0], early[1])
        return True

    def publish_retained(self, topic: str, payload: bytes) -> bool:
        """Publish a retained server-to-device message (QoS 1): the broker keeps the newest
        for the station's next subscription. False when not connected or paho refused it."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return False
        return True

    def _send_fonds(self, device_id: str | None) -> None:
        """The fonds assigned to a station (or to every active one), retained and signed
        (server.fleet.assignment): the station uses them as its choice list."""
        try:
            sent = assignment.send(self.ingest.db, self, self.ingest.signing_key, device_id)
        except Exception:  # never kill paho's or the ingest thread over this
            log.exception("sending the fonds assignment failed")
            return
        if device_id is None:
            log.info("fonds assignments sent to %d station(s)", sent)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the server: %s", self.host, self.port, reason_code)
            return
        log.info(
            "ingest connected to %s:%d (session present: %s)",
            self.host,
            self.port,
            flags.session_present,
        )
        for flt in topics.ingest_filters(shared=self.settings.shared_subscription):
            client.subscribe(flt, qos=1)
        self.connected.set()
        try:
            self._announce_key(client)
        except Exception:  # an exception here would kill paho's network thread
            log.exception("announcing the next receipt key failed")
        self._send_fonds(None)
        if self.events is not None:
            try:
                self.events.connected(self)
            except Exception:  # an exception here would kill paho's network thread
                log.exception("the connect handler failed")

    def _announce_key(self, client: mqtt.Client) -> None:
        """An announced next receipt key (``sohoa-server receipt-key --rotate``) goes to
        every active station as a retained ``archive_key`` command: a station hears it at its
        next subscription, however long it was offline. The announcement is signed by the
        current key; the command is not (protocol/keyrotation.py)."""
        announced = keys.rotation(self.settings.data_dir)
        if announced is None:
            return
        rows = self.ingest.db.read().execute(
            "SELECT device_id FROM stations WHERE state = 'active'"
        )
        stations = [str(r[0]) for r in rows]
        for device in stations:
            command = Command(
                device_id=device,
                msg_id=uuid.uuid5(uuid.NAMESPACE_URL, announced.signature + device).hex,
                sent_at=announced.announced_at,
                command="archive_key",
                note=announced.encode(),
            )
            client.publish(
                topics.down(device, "command"), envelope.encode(command), qos=1, retain=True
            )
        log.info("next receipt key announced to %d station(s)", len(stations))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        delivered = not reason_code.is_failure and reason_code.value != NO_MATCHING_SUBSCRIBERS
        now = time.monotonic()
        with self._acks_lock:
            callback = self._awaiting.pop(mid, None)
            if callback is None:  # an ingest reply, or a PUBACK faster than publish()
                self._early.pop(mid, None)  # re-insert at the end: the dict stays in time order
                self._early[mid] = (delivered, str(reason_code), now)
                while self._early:
                    first = next(iter(self._early))
                    if now - self._early[first][2] <= EARLY_ACK_SECONDS:
                        break
                    del self._early[first]
        if callback is not None:
            try:
                callback(delivered, str(reason_code))
            except Exception:
                log.exception("PUBACK handler failed for mid %d", mid)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        log.warning("ingest disconnected: %s", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # paho's network thread: queue only, never block on the disk here.
        self._queue.put(Delivery(msg.topic, bytes(msg.payload), msg.mid, msg.qos))

    # -- when the archive cannot store -----------------------------------------------------

    def _retry_later(self, failed: list[tuple[Delivery, BaseException]]) -> None:
        """Tell each device whose message could not be stored to wait ``retry_after_s`` and
        send again (a signed Reject ``retry_later``: no receipt went out, so it still holds
        everything), instead of leaving it to re-send whole parts round after round; and
        raise the alert staff see (``trouble``; an alert row when the database can take
        it)."""
        told: set[tuple[str, str | None]] = set()
        for delivery, error in failed:
            try:
                parsed = topics.parse(delivery.topic)
                msg = envelope.decode(delivery.payload).message
            except (topics.TopicError, envelope.EnvelopeError):
                continue
            if parsed.direction != "up":
                continue
            batch_id = getattr(msg, "batch_id", None)
            if (parsed.device_id, batch_id) in told:
                continue
            told.add((parsed.device_id, batch_id))
            reject = Reject(
                device_id=parsed.device_id,
                msg_id=uuid.uuid4().hex,
                sent_at=time.time(),
                ref_msg_id=msg.msg_id,
                batch_id=batch_id,
                reason="retry_later",
                retry_after=self.settings.retry_after_s,
                detail=f"the archive cannot store now: {error}"[:1000],
            )
            if self.ingest.signing_key is not None:
                signature = signing.sign(reject, self.ingest.signing_key)
                reject = reject.model_copy(update={"signature": signature})
            self._client.publish(
                topics.down(parsed.device_id, "reject"), envelope.encode(reject), qos=1
            )
        detail = _trouble_text(failed[0][1])[:2000]
        if self.trouble is None:
            self.trouble_since = time.time()
            self._alert("archive_cannot_store", detail)
        self.trouble = detail

    def _trouble_over(self) -> None:
        log.warning(
            "ingest stores again (trouble since %.0f: %s)", self.trouble_since, self.trouble
        )
        self._alert("archive_stores_again", f"after: {self.trouble}")
        self.trouble = None
        self._logged_cause = None

    def _alert(self, kind: str, detail: str) -> None:
        """An alert row for staff, if the database can take one (on a full disk it may not:
        ``trouble`` still shows in /healthz)."""
        try:
            with self.ingest.db.tx() as con:
                con.execute(
                    "INSERT INTO alerts(at, device_id, kind, detail) VALUES (?, ?, ?, ?)",
                    (time.time(), None, kind, detail),
                )
        except Exception as exc:
            log.error("could not record the alert %s: %s", kind, exc)

    # -- the ingest thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            group = self._take()
            if group:
                try:
                    self._process(group)
                except Exception:  # never let the thread die: nothing would be acked again
                    self.errors += 1
                    log.exception("ingest group of %d failed", len(group))

    def _take(self) -> list[Delivery]:
        """The next group: what is queued, up to the limits, lingering briefly for more."""
        try:
            first = self._queue.get(timeout=1.0)
        except queue.Empty:
            return []
        if first is None:
            return []
        group = [first]
        size = len(first.payload)
        deadline = time.monotonic() + GROUP_LINGER
        while len(group) < GROUP_MAX_MESSAGES and size < GROUP_MAX_BYTES:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if item is None:  # stop(): finish this group first
                self._stopping.set()
                break
            group.append(item)
            size += len(item.payload)
        return group

    def _process(self, group: list[Delivery]) -> None:
        client = self._client
        started = time.monotonic()
        results = self.ingest.handle_many([(d.topic, d.payload) for d in group])
        self.groups += 1
        log.debug(
            "group of %d messages handled in %.1f ms (%d queued)",
            len(group),
            (time.monotonic() - started) * 1000,
            self._queue.qsize(),
        )
        # Everything the group committed is durable now: answer, then acknowledge.
        failed: list[tuple[Delivery, BaseException]] = []
        for delivery, result in zip(group, results, strict=True):
            if result.error is not None:
                # A full disk, an fsync error, the object store refusing, a bug. Nothing was
                # committed for this message; acking it keeps one poison message from holding
                # an in-flight slot for ever, and the device is told to wait and send again
                # (_retry_later). Logged once per cause while it lasts, not once per page.
                self.errors += 1
                failed.append((delivery, result.error))
                cause = _cause(result.error)
                if cause != self._logged_cause:
                    self._logged_cause = cause
                    log.error(
                        "ingest cannot store (%s): %s; devices are told to retry later"
                        " (logged once until it stores again or the cause changes)",
                        _trouble_text(result.error),
                        result.error,
                    )
                else:
                    log.debug("ingest failed on %s: %s", delivery.topic, result.error)
            else:
                for reply in result.replies:
                    client.publish(reply.topic, reply.payload, qos=reply.qos, retain=reply.retain)
                self.messages += 1
        if failed:
            self._retry_later(failed)
        elif self.trouble is not None:
            self._trouble_over()
        for delivery in group:
            client.ack(delivery.mid, delivery.qos)
        self.last_message_at = time.time()
        for delivery in group:
            device = topics.status_device(delivery.topic)
            if device is not None and _says_online(delivery.payload):
                self._send_fonds(device)  # a change made while it was away (or by the CLI)
        if self.events is None:
            return
        for delivery in group:
            device = topics.status_device(delivery.topic)
            if device is not None:
                # A device came online (or the retained statuses arrived after our connect).
                try:
                    self.events.device_online(self, device)
                except Exception:
                    log.exception("the online handler failed for %s", device)


def _says_online(payload: bytes) -> bool:
    try:
        msg = envelope.decode(payload).message
    except envelope.EnvelopeError:
        return False
    return isinstance(msg, Status) and msg.state == "online"
