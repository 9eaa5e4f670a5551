"""The server's only door to the broker: one ingest worker on the shared subscription.

The MQTT acknowledgement of a device message is sent only after :meth:`Ingest.handle`
returned, i.e. after the data is fsynced and committed (paho ``manual_ack=True``): if this
process dies mid-way, the broker redelivers the message to a live worker. The session is
persistent (``clean_start=False``, long expiry) so that messages queued while the server is
down are not lost with it; what the broker drops anyway is recovered by the agents'
reconciliation.
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
from server.config import ServerSettings
from server.ingest import Ingest

log = logging.getLogger(__name__)

SESSION_EXPIRY = 30 * 24 * 3600


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
