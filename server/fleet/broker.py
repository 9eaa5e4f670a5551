"""The fleet: which stations may send, and their identities on the broker.

Owns three things, and nothing about pages:

* the **registry** (table ``stations``): commune, state (pending → active → revoked), the
  station's Ed25519 public key, the one-time enrolment code kept as its sha256 only;
* the broker's **dynamic security** (Mosquitto's ``mosquitto_dynamic_security.so``),
  administered over ``$CONTROL/dynamic-security/v1`` (:class:`BrokerAdmin`): one client per
  station whose client id is bound to its user name, one role per station with literal
  topics (no ``%u`` patterns to get wrong), the ingest's role, and one-time enrolment
  identities; :func:`dynsec_config` writes the broker's first configuration;
* the server side of **enrolment** (:class:`EnrolmentDesk`, run by :class:`FleetWorker`).

Why each ACL is what it is (tried against Mosquitto 2.0.11, tests/test_fleet.py):

* a station subscribes with ``subscribeLiteral`` on exactly its own down filter. Mosquitto
  2.0 with an ACL file checks subscriptions only on delivery, so a thief's
  ``$share/sohoa-ingest/sohoa/v1/up/+/+`` joined the ingest's group and silently ate half
  of another station's messages; dynamic security checks the subscription itself, with the
  ``$share/<group>/`` prefix as part of the literal, and refuses it (SUBACK 0x87);
* the client id is bound (``clientid``): a station connecting under the server's or another
  station's client id is refused at CONNECT, before Mosquitto would take the session over;
* default access denies publishing, receiving and subscribing: what a role does not name,
  nobody may do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from protocol import enrolment, signing, topics
from protocol.enrolment import EnrolRequest
from server.config import ServerSettings
from server.fleet.registry import AuditHook, FleetError, expired_enrolments, redeem, revoke
from server.store.db import Database

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ADMIN_ROLE = "sohoa-admin"
INGEST_ROLE = "sohoa-ingest"
STATION_ROLE_PREFIX = "station-"
DYNSEC_ITERATIONS = 101  # what mosquitto_ctrl writes; the broker re-hashes on setClientPassword
COMMAND_TIMEOUT = 10.0
SWEEP_SECONDS = 3600.0

ACL = dict[str, Any]


def find_plugin() -> Path:
    """Debian's plugin (package mosquitto), wherever the architecture puts it."""
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    found += [p for p in (Path("/usr/lib/mosquitto_dynamic_security.so"),) if p.exists()]
    if not found:
        raise BrokerError(
            "mosquitto_dynamic_security.so not found: apt install mosquitto (2.0 or later)"
        )
    return found[0]


def _acl(acltype: str, topic: str, allow: bool = True) -> ACL:
    return {"acltype": acltype, "topic": topic, "allow": allow}


def station_role(device_id: str) -> str:
    return STATION_ROLE_PREFIX + topics.check_device_id(device_id)


def station_acls(device_id: str) -> list[ACL]:
    """Write its own up-topics and status; subscribe exactly its own down filter."""
    return [
        _acl("publishClientSend", topics.up_all(device_id)),
        _acl("publishClientSend", topics.status(device_id)),
        _acl("subscribeLiteral", topics.down_filter(device_id)),
        _acl("publishClientReceive", topics.down_all(device_id)),
        _acl("unsubscribeLiteral", topics.down_filter(device_id)),
    ]


def ingest_acls() -> list[ACL]:
    """The archive's ingest workers: read every station's up-topics and status (the shared
    subscription literally, so only this role can join the group), write every down-topic."""
    shared, status = topics.ingest_filters(shared=True)
    plain = topics.ingest_filters(shared=False)[0]
    return [
        _acl("subscribeLiteral", shared),
        _acl("subscribeLiteral", plain),
        _acl("subscribeLiteral", status),
        _acl("unsubscribeLiteral", shared),
        _acl("unsubscribeLiteral", plain),
        _acl("unsubscribeLiteral", status),
        _acl("publishClientReceive", f"{topics.PREFIX}/up/#"),
        _acl("publishClientReceive", f"{topics.PREFIX}/status/#"),
        _acl("publishClientSend", topics.down_all()),
    ]


def admin_acls() -> list[ACL]:
    """The server's administration identity: the plugin's API and the enrolment desk."""
    return [
        _acl("publishClientSend", f"{CONTROL_TOPIC}/#"),
        _acl("publishClientReceive", f"{CONTROL_TOPIC}/#"),
        _acl("subscribeLiteral", RESPONSE_TOPIC),
        _acl("subscribeLiteral", topics.ENROL_REQUEST_FILTER),
        _acl("publishClientReceive", topics.ENROL_REQUEST_FILTER),
        _acl("publishClientSend", topics.ENROL_REPLY_ALL),
    ]


def enrol_role(device_id: str) -> str:
    return enrolment.enrol_user(device_id)


def enrol_acls(device_id: str) -> list[ACL]:
    return [
        _acl("publishClientSend", topics.enrol_request(device_id)),
        _acl("subscribeLiteral", topics.enrol_reply(device_id)),
        _acl("publishClientReceive", topics.enrol_reply(device_id)),
    ]


def _hashed(password: str) -> dict[str, Any]:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, DYNSEC_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": DYNSEC_ITERATIONS,
    }


def dynsec_config(
    admin_user: str, admin_password: str, ingest_user: str, ingest_password: str
) -> dict[str, Any]:
    """The broker's first dynamic-security file: the admin and ingest identities, their
    roles, and default access that denies everything but unsubscribing."""
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            {
                "username": admin_user,
                "textName": "sohoa archive server: administration",
                "roles": [{"rolename": ADMIN_ROLE}],
                **_hashed(admin_password),
            },
            {
                # Not bound to a client id: several ingest workers share this identity, each
                # with its own id (SOHOA_MQTT_CLIENT_ID). Stations are bound to theirs, so
                # none of them can connect under a worker's id.
                "username": ingest_user,
                "textName": "sohoa archive server: ingest",
                "roles": [{"rolename": INGEST_ROLE}],
                **_hashed(ingest_password),
            },
        ],
        "roles": [
            {"rolename": ADMIN_ROLE, "acls": admin_acls()},
            {"rolename": INGEST_ROLE, "acls": ingest_acls()},
        ],
        "groups": [],
    }


def write_private(path: Path, data: bytes) -> None:
    """Write a secret (mode 0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def new_password() -> str:
    return secrets.token_urlsafe(24)


# -- the broker's administration API -------------------------------------------------------


class BrokerError(Exception):
    """The broker could not be reached or refused an administration command."""


class BrokerAdmin:
    """A connection as the dynamic-security admin: commands and their answers.

    Commands carry a ``correlationData`` the plugin echoes; :meth:`run` waits for every
    answer of one request (one publish may carry several commands)."""

    def __init__(
        self, host: str, port: int, username: str, password: str, *,
        tls: bool = False, ca_file: Path | None = None, client_id: str | None = None,
    ) -> None:  # fmt: skip
        self.host, self.port = host, port
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sohoa-admin-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        if tls:
            import ssl

            self._client.tls_set(
                ca_certs=str(ca_file) if ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()
        self._refused: str | None = None
        self._lock = threading.Lock()
        self._waiting: dict[str, queue.SimpleQueue[dict[str, Any]]] = {}
        self.on_enrol_request: Any = None  # callable(topic, payload) from paho's thread
        self._subscribed = threading.Event()
        self._sub_mids: set[int] = set()
        self._client.on_subscribe = self._on_subscribe

    @classmethod
    def from_settings(cls, settings: ServerSettings, client_id: str | None = None) -> BrokerAdmin:
        from urllib.parse import urlsplit

        password = settings.broker_admin_password()
        if password is None:
            raise BrokerError(
                "no broker admin password: run `sohoa-server broker init` or set"
                " broker_admin_password_file"
            )
        url = urlsplit(settings.mqtt_url)
        tls = url.scheme == "mqtts"
        return cls(
            url.hostname or "localhost",
            url.port or (8883 if tls else 1883),
            settings.broker_admin_user,
            password,
            tls=tls,
            ca_file=settings.mqtt_ca_file,
            client_id=client_id,
        )

    # -- connection ---------------------------------------------------------------------------

    def connect(self, timeout: float = COMMAND_TIMEOUT, background: bool = False) -> None:
        """Connect and subscribe. ``background``: keep reconnecting (the fleet worker)."""
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        try:
            if background:
                self._client.connect_async(self.host, self.port, keepalive=60)
            else:
                self._client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise BrokerError(f"cannot reach the broker at {self.host}:{self.port}: {exc}") from exc
        self._client.loop_start()
        if background:
            return
        if not self._subscribed.wait(timeout):
            self.close()
            raise BrokerError(
                f"the broker at {self.host}:{self.port} refused the admin: "
                f"{self._refused or 'no answer'}"
            )

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> BrokerAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
        reason_code: ReasonCode, properties: object,
    ) -> None:  # fmt: skip
        if reason_code.is_failure:
            self._refused = str(reason_code)
            log.error("broker refused the admin identity: %s", reason_code)
            client.disconnect()
            return
        self.connected.set()
        filters = [(RESPONSE_TOPIC, 1)]
        if self.on_enrol_request is not None:
            filters.append((topics.ENROL_REQUEST_FILTER, 1))
        result, mid = client.subscribe(filters)
        if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._sub_mids.add(mid)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int,
        reason_codes: list[ReasonCode], properties: object,
    ) -> None:  # fmt: skip
        if mid in self._sub_mids:
            refused = [str(rc) for rc in reason_codes if rc.is_failure]
            if refused:
                self._refused = f"subscription refused: {', '.join(refused)}"
                log.error("admin %s", self._refused)
            else:
                self._subscribed.set()

    def _on_disconnect(self, *args: object) -> None:
        self.connected.clear()
        self._subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == RESPONSE_TOPIC:
            try:
                answers = json.loads(msg.payload).get("responses", [])
            except (ValueError, AttributeError):
                log.error("unreadable dynamic-security response")
                return
            for answer in answers:
                with self._lock:
                    waiter = self._waiting.get(str(answer.get("correlationData", "")))
                if waiter is not None:
                    waiter.put(answer)
        elif self.on_enrol_request is not None:
            self.on_enrol_request(msg.topic, bytes(msg.payload))

    def publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    # -- commands -----------------------------------------------------------------------------

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands, return each one's answer (``error`` set when it failed)."""
        if not self._subscribed.wait(COMMAND_TIMEOUT):
            raise BrokerError(f"not connected to the broker at {self.host}:{self.port}")
        answers: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        ids = []
        for command in commands:
            cid = uuid.uuid4().hex
            command["correlationData"] = cid
            ids.append(cid)
        with self._lock:
            for cid in ids:
                self._waiting[cid] = answers
        try:
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerError(f"cannot publish to the broker: {mqtt.error_string(info.rc)}")
            got: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + COMMAND_TIMEOUT
            while len(got) < len(ids):
                try:
                    answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty as exc:
                    raise BrokerError("the broker did not answer (is the plugin loaded?)") from exc
                got[str(answer["correlationData"])] = answer
        finally:
            with self._lock:
                for cid in ids:
                    self._waiting.pop(cid, None)
        return [got[cid] for cid in ids]

    def must(self, commands: list[dict[str, Any]], tolerate: tuple[str, ...] = ()) -> None:
        for command, answer in zip(commands, self.run(commands), strict=True):
            error = answer.get("error")
            if error and not any(t in str(error).lower() for t in tolerate):
                raise BrokerError(f"{command['command']}: {error}")

    def replace_client(
        self, username: str, password: str, role: str, acls: list[ACL], text: str
    ) -> None:
        """(Re)create a client bound to client id = user name, with its own role."""
        self.must(
            [{"command": "deleteClient", "username": username},
             {"command": "deleteRole", "rolename": role}],
            tolerate=("not found",),
        )  # fmt: skip
        self.must(
            [
                {"command": "createRole", "rolename": role, "acls": acls},
                {
                    "command": "createClient",
                    "username": username,
                    "clientid": username,
                    "password": password,
                    "textname": text,
                    "roles": [{"rolename": role}],
                },
            ]
        )

    def remove_client(self, username: str, role: str) -> None:
        """Disconnect it at once (disableClient kicks a connected client), then forget it."""
        self.must(
            [
                {"command": "disableClient", "username": username},
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": role},
            ],
            tolerate=("not found",),
        )

    def add_station(self, device_id: str, password: str, commune: str) -> None:
        self.replace_client(
            device_id, password, station_role(device_id), station_acls(device_id), commune
        )

    def remove_station(self, device_id: str) -> None:
        self.remove_client(device_id, station_role(device_id))

    def add_enrolment(self, device_id: str, secret: str) -> None:
        user = enrolment.enrol_user(device_id)
        self.replace_client(user, secret, enrol_role(device_id), enrol_acls(device_id), "enrol")

    def remove_enrolment(self, device_id: str) -> None:
        user = enrolment.enrol_user(device_id)
        self.remove_client(user, enrol_role(device_id))

    def client_names(self) -> list[str]:
        answer = self.run([{"command": "listClients", "verbose": False, "count": -1}])[0]
        if answer.get("error"):
            raise BrokerError(f"listClients: {answer['error']}")
        return [str(c) for c in answer.get("data", {}).get("clients", [])]


# -- the enrolment desk ------------------------------------------------------------------------


class EnrolmentDesk:
    """Answers enrolment requests: check the code, record the key, create the station's
    broker identity, send its password sealed to the station.

    A station sends its request again until it hears an answer (the desk may have been
    reconnecting to the broker when the first one came: it is lost then). The same request
    bytes get the same answer bytes (:attr:`_answered`), so a repeat never makes a second
    password that would leave the station with a stale one."""

    ANSWERED_MAX = 1024

    def __init__(
        self, db: Database, admin: BrokerAdmin, signing_key: Ed25519PrivateKey, ca_pem: str = ""
    ) -> None:
        self.db = db
        self.admin = admin
        self.signing_key = signing_key
        self.public_key = signing.public_key_hex(signing_key)
        self.ca_pem = ca_pem
        self._answered: dict[str, tuple[str, bytes]] = {}  # sha256(request) -> answer

    def handle(self, topic: str, payload: bytes) -> tuple[str, bytes] | None:
        digest = hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()
        if digest in self._answered:
            return self._answered[digest]
        answer, done = self._handle(topic, payload)
        if done and answer is not None:  # a refusal is decided again (the broker may be up)
            self._answered[digest] = answer
            while len(self._answered) > self.ANSWERED_MAX:
                del self._answered[next(iter(self._answered))]
        return answer

    def _handle(self, topic: str, payload: bytes) -> tuple[tuple[str, bytes] | None, bool]:
        try:
            device_id = topics.parse_enrol_request(topic)
            request = enrolment.decode_request(payload)
        except (topics.TopicError, enrolment.EnrolmentError) as exc:
            log.warning("enrolment request on %s refused: %s", topic, exc)
            return None, False
        if request.device_id != device_id:
            log.warning("enrolment request on %s names %s: refused", topic, request.device_id)
            return None, False
        reply_topic = topics.enrol_reply(device_id)
        try:
            station = redeem(self.db, request)
            password = new_password()
            self.admin.add_station(device_id, password, station.commune)
        except FleetError as exc:
            log.warning("enrolment of %s refused: %s", device_id, exc)
            refusal = self._reply(request, ok=False, reason=exc.reason, detail=exc.detail)
            return (reply_topic, refusal), False
        except BrokerError as exc:
            log.error("enrolment of %s: broker: %s", device_id, exc)
            refusal = self._reply(
                request, ok=False, reason="broker", detail="the broker is not ready; try again"
            )
            return (reply_topic, refusal), False
        sealed = enrolment.Sealed(mqtt_username=device_id, mqtt_password=password)
        box = enrolment.seal(
            sealed.model_dump_json().encode(),
            request.box_key,
            enrolment.seal_context(device_id, request.msg_id),
        )
        log.info(
            "station %s (%s) enrolled, key %s", device_id, station.commune, station.fingerprint
        )
        return (reply_topic, self._reply(request, ok=True, sealed=box)), True

    def _reply(self, request: EnrolRequest, *, ok: bool, **fields: str) -> bytes:
        reply = enrolment.EnrolReply(
            device_id=request.device_id,
            msg_id=request.msg_id,
            ok=ok,
            server_public_key=self.public_key,
            mqtt_ca_pem=self.ca_pem if ok else "",
            **fields,
        )
        signature = signing.sign_bytes(reply.signed_bytes(), self.signing_key)
        return enrolment.encode(reply.model_copy(update={"signature": signature}))

    def sweep(self) -> None:
        """Remove the broker identities of expired codes (the registry keeps the row)."""
        for device_id in expired_enrolments(self.db):
            try:
                self.admin.remove_enrolment(device_id)
                with self.db.tx() as con:
                    con.execute(
                        "UPDATE stations SET code_sha256 = NULL WHERE device_id = ?", (device_id,)
                    )
                log.info("enrolment code of %s expired; its broker identity removed", device_id)
            except BrokerError as exc:
                log.warning("could not remove the expired enrolment of %s: %s", device_id, exc)


class FleetWorker:
    """Inside ``sohoa-server run``: the admin connection and the enrolment desk's thread
    (requests are answered off paho's thread: answering issues admin commands and waits)."""

    def __init__(self, settings: ServerSettings, db: Database, signing_key: Ed25519PrivateKey):
        ca_pem = ""
        if settings.station_ca_file is not None:
            ca_pem = settings.station_ca_file.read_text(encoding="utf-8")
        self.admin = BrokerAdmin.from_settings(
            settings, client_id=f"{settings.broker_admin_user}-{settings.mqtt_client_id}"
        )
        self.desk = EnrolmentDesk(db, self.admin, signing_key, ca_pem)
        self._queue: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self.admin.on_enrol_request = lambda topic, payload: self._queue.put((topic, payload))
        self._thread = threading.Thread(target=self._run, name="sohoa-fleet", daemon=True)

    def start(self) -> None:
        self.admin.connect(background=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=15)
        self.admin.close()

    def _run(self) -> None:
        next_sweep = time.monotonic() + 5
        while True:
            try:
                item = self._queue.get(timeout=max(0.1, next_sweep - time.monotonic()))
            except queue.Empty:
                item = ("", b"")
            if item is None:
                return
            try:
                if item[0]:
                    answer = self.desk.handle(*item)
                    if answer is not None:
                        self.admin.publish(*answer)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    if self.admin.connected.is_set():
                        self.desk.sweep()
            except Exception:  # the desk must outlive one bad request
                log.exception("enrolment desk failed on %s", item[0])


def revoke_station(
    settings: ServerSettings,
    db: Database,
    device_id: str,
    *,
    audit: AuditHook | None = None,
    admin: BrokerAdmin | None = None,
) -> str | None:
    """Revoke a station: the registry first (the archive refuses its key at once, even
    when the broker cannot be reached), then the broker (disconnects it now, refuses it
    from then on). Returns what went wrong with the broker, or None."""
    if audit is None:
        revoke(db, device_id)
    else:
        revoke(db, device_id, audit=audit)
    try:
        if admin is not None and admin.connected.is_set():
            admin.remove_station(device_id)
            admin.remove_enrolment(device_id)
        else:
            with admin_session(settings) as session:
                session.remove_station(device_id)
                session.remove_enrolment(device_id)
    except BrokerError as exc:
        log.error("station %s revoked in the archive, not on the broker: %s", device_id, exc)
        return str(exc)
    log.info("station %s revoked", device_id)
    return None


@contextmanager
def admin_session(settings: ServerSettings) -> Iterator[BrokerAdmin]:
    admin = BrokerAdmin.from_settings(settings)
    admin.connect()
    try:
        yield admin
    finally:
        admin.close()
