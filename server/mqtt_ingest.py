"""The server's only door to the broker: one ingest worker on the shared subscription.

The MQTT acknowledgement of a device message is sent only after :meth:`Ingest.handle`
returned, i.e. after the data is fsynced and committed (paho ``manual_ack=True``): if this
process dies mid-way, the broker redelivers the message to a live worker. The session is
persistent (``clean_start=False``, long expiry) so that messages queued while the server is
down are not lost with it; what the broker drops anyway is recovered by the agents'
reconciliation.

It is also the server's only publisher of commands to devices (:meth:`IngestWorker.publish`,
used by :mod:`server.rescan`): re-scan requests still waiting are (re)sent on every connect
and whenever a device announces itself online.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol import topics
from server import rescan
from server.config import ServerSettings
from server.ingest import Ingest

log = logging.getLogger(__name__)

SESSION_EXPIRY = 30 * 24 * 3600
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK: accepted, but nobody will receive it
EARLY_ACK_SECONDS = 5.0
PubackCallback = rescan.PubackCallback


class IngestWorker:
    def __init__(self, settings: ServerSettings, ingest: Ingest) -> None:
        self.settings = settings
        self.ingest = ingest
        self.connected = threading.Event()
        self.last_message_at = 0.0
        self.messages = 0
        self.errors = 0
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
        self._client.connect_async(
            self.host, self.port, keepalive=60, clean_start=False, properties=props
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def alive(self) -> bool:
        return self.connected.is_set()

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
        for flt in topics.ingest_filters(shared=True):
            client.subscribe(flt, qos=1)
        self.connected.set()
        self._send_commands(None, rescan.RESEND_ON_CONNECT)

    def _send_commands(self, device_id: str | None, states: tuple[str, ...]) -> None:
        try:
            rescan.send_pending(self.ingest.db, self, device_id, states)
        except Exception:  # an exception here would kill paho's network thread
            log.exception("could not send the pending re-scan requests")

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
        try:
            replies = self.ingest.handle(msg.topic, bytes(msg.payload))
        except Exception:
            # Unexpected (a bug, a full disk). Nothing was committed for this message, so no
            # receipt went out and the agent's reconciliation will send it again. Acking it
            # keeps one poison message from holding a broker in-flight slot for ever.
            self.errors += 1
            log.exception("ingest failed on %s; dropped, the device will resend", msg.topic)
            client.ack(msg.mid, msg.qos)
            return
        for reply in replies:
            client.publish(reply.topic, reply.payload, qos=reply.qos, retain=reply.retain)
        self.messages += 1
        self.last_message_at = time.time()
        client.ack(msg.mid, msg.qos)
        if msg.topic.startswith(f"{topics.PREFIX}/status/"):
            # A device came online (or the retained statuses arrived after our connect): its
            # session now exists at the broker, so a request it could not get before can go.
            device = msg.topic.rsplit("/", 1)[-1]
            if rescan.device_online(self.ingest.db, device):
                self._send_commands(device, ("requested",))
