"""Enrolment of a station: the one-time code, the exchange over the broker, sealing. No I/O.

An archive admin adds a station (``sohoa-server device add``); the server makes a one-time
secret, keeps only its sha256, and creates a broker identity that can do nothing but this
exchange: ``enrol-<device>`` may publish :func:`request_topic` and read :func:`reply_topic`
of its own device, nothing else. The code handed to the station (typed, scanned from the
sheet's QR code, or read from a file on a USB disk) is an MQTT URL::

    mqtts://xa-tan-phu-01:K7QF2MZXB4HAT3GJ6WDLNPYRVU@archive.example.vn:8883/5c0f…(32 hex)

user = the device id, password = the one-time secret, path = the first 16 bytes (hex) of the
sha256 of the archive's receipt key (:func:`key_fingerprint`). The station:

1. generates its Ed25519 key pair (signs its manifests and bundles) and an X25519 key pair
   for this exchange only;
2. connects as ``enrol-<device>`` and publishes an :class:`EnrolRequest` with both public
   halves and the secret;
3. gets an :class:`EnrolReply`: the archive's receipt key (which must match the code's
   fingerprint: the reply is authentic without trusting the link), the broker password of
   its own identity *sealed* to its X25519 key (:func:`seal`: whoever else reads the reply
   topic learns nothing), the broker's CA, signed by the archive's key.

The secret is single use (the server refuses a second station key) and expires (72 h by
default); a station that lost the reply may ask again with the SAME key pair.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field

from protocol import signing, topics

SECRET_RE = re.compile(r"^[A-Z2-7]{26}$")  # 130 bits of base32, no padding
HEX64 = r"^[0-9a-f]{64}$"
FINGERPRINT_RE = re.compile(r"^[0-9a-f]{32}$")
ENROL_USER_PREFIX = "enrol-"
MAX_MESSAGE = 64 * 1024
_SEAL_INFO = b"sohoa enrolment v1"


class EnrolmentError(ValueError):
    """A code or a message this protocol version does not accept."""


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")


def secret_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_fingerprint(public_key_hex: str) -> str:
    """What a person compares and what the code pins: 16 bytes of sha256, hex."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:32]


def enrol_user(device_id: str) -> str:
    """The broker user (and client id) that may only run this device's exchange."""
    return ENROL_USER_PREFIX + topics.check_device_id(device_id)


@dataclass(frozen=True)
class EnrolCode:
    device_id: str
    secret: str
    host: str
    port: int
    tls: bool
    key_fingerprint: str

    def text(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"{scheme}://{self.device_id}:{quote(self.secret)}@{host}:{self.port}/"
            f"{self.key_fingerprint}"
        )

    @classmethod
    def parse(cls, text: str) -> EnrolCode:
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError as exc:
            raise EnrolmentError(f"not an enrolment code: {exc}") from exc
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise EnrolmentError("not an enrolment code (mqtts://station:code@host:port/key)")
        device = unquote(parts.username or "")
        secret = unquote(parts.password or "").upper()
        fingerprint = parts.path.strip("/").lower()
        try:
            topics.check_device_id(device)
        except topics.TopicError as exc:
            raise EnrolmentError(str(exc)) from exc
        if not SECRET_RE.fullmatch(secret):
            raise EnrolmentError("the code's secret is damaged (26 letters A-Z and digits 2-7)")
        if not FINGERPRINT_RE.fullmatch(fingerprint):
            raise EnrolmentError("the code's archive key fingerprint is damaged (32 hex digits)")
        tls = parts.scheme == "mqtts"
        return cls(
            device, secret, parts.hostname, port or (8883 if tls else 1883), tls, fingerprint
        )


# -- the exchange ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnrolRequest(_Model):
    kind: Literal["enrol_request"] = "enrol_request"
    device_id: str = Field(pattern=topics.DEVICE_ID_RE.pattern)
    msg_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    secret: str = Field(pattern=SECRET_RE.pattern)
    public_key: str = Field(pattern=HEX64, description="the station's Ed25519 key, raw hex")
    box_key: str = Field(pattern=HEX64, description="X25519 key the reply is sealed to")
    agent_version: str = Field(default="", max_length=40)
    signature: str = Field(
        default="", max_length=128, description="by the station's Ed25519 key: proves it"
    )

    def signed_bytes(self) -> bytes:
        data = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class EnrolReply(_Model):
    kind: Literal["enrol_reply"] = "enrol_reply"
    device_id: str = Field(pattern=topics.DEVICE_ID_RE.pattern)
    msg_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="the request's msg_id")
    ok: bool
    reason: str = Field(default="", max_length=100)
    detail: str = Field(default="", max_length=500)
    server_public_key: str = Field(pattern=HEX64)
    sealed: str = Field(default="", max_length=4096, description="seal() of the secrets, hex")
    mqtt_ca_pem: str = Field(default="", max_length=32768)
    signature: str = Field(default="", max_length=128)

    def signed_bytes(self) -> bytes:
        data = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Sealed(_Model):
    """What travels sealed to the station: its broker identity's password."""

    mqtt_username: str = Field(pattern=topics.DEVICE_ID_RE.pattern)
    mqtt_password: str = Field(min_length=16, max_length=200)


def encode(message: EnrolRequest | EnrolReply) -> bytes:
    return message.model_dump_json().encode()


def decode_request(payload: bytes) -> EnrolRequest:
    if len(payload) > MAX_MESSAGE:
        raise EnrolmentError("enrolment request too large")
    try:
        return EnrolRequest.model_validate_json(payload)
    except ValueError as exc:
        raise EnrolmentError(f"bad enrolment request: {exc}") from exc


def decode_reply(payload: bytes) -> EnrolReply:
    if len(payload) > MAX_MESSAGE:
        raise EnrolmentError("enrolment reply too large")
    try:
        return EnrolReply.model_validate_json(payload)
    except ValueError as exc:
        raise EnrolmentError(f"bad enrolment reply: {exc}") from exc


# -- sealing: X25519 + HKDF-SHA256 + ChaCha20-Poly1305 ---------------------------------------


def new_box_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def box_public_hex(key: X25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def _aead_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> ChaCha20Poly1305:
    okm = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_SEAL_INFO
    ).derive(shared)
    return ChaCha20Poly1305(okm)


def seal(data: bytes, recipient_hex: str, context: bytes) -> str:
    """Encrypt ``data`` to the holder of the X25519 key ``recipient_hex``; ``context`` (the
    device id and request id) is authenticated so a sealed box cannot be replayed elsewhere."""
    recipient = bytes.fromhex(recipient_hex)
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    nonce = secrets.token_bytes(12)
    box = _aead_key(shared, eph_pub, recipient).encrypt(nonce, data, context)
    return (eph_pub + nonce + box).hex()


def open_sealed(sealed_hex: str, key: X25519PrivateKey, context: bytes) -> bytes:
    try:
        raw = bytes.fromhex(sealed_hex)
    except ValueError as exc:
        raise EnrolmentError("sealed data is not hex") from exc
    if len(raw) < 32 + 12 + 16:
        raise EnrolmentError("sealed data too short")
    eph_pub, nonce, box = raw[:32], raw[32:44], raw[44:]
    recipient = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    shared = key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    try:
        return _aead_key(shared, eph_pub, recipient).decrypt(nonce, box, context)
    except InvalidTag as exc:
        raise EnrolmentError("sealed data does not open with this station's key") from exc


def seal_context(device_id: str, msg_id: str) -> bytes:
    return f"{device_id}\n{msg_id}".encode()


# -- enrolment by USB with the link down -----------------------------------------------------

BUNDLE_KIND = "enrol_bundle"


class BundleRefused(EnrolmentError):
    """A USB enrolment bundle that must not be used; ``reason`` names why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EnrolBundle(_Model):
    """A station's enrolment on a USB disk, for a station whose link is down
    (``sohoa-server device add --usb-file``). It carries the one-time code (which, at the
    station's first connection, registers the key the station made for itself: its private
    half never leaves it), the broker's CA and the archive's receipt key, signed by that key.

    A signature alone proves nothing against a forger who signs with a key of his own, so
    the station accepts a bundle only for an archive it already trusts: the key it has
    pinned (the province's install image, or an earlier enrolment), or the key fingerprint
    printed on the enrolment sheet, typed by the technician (:func:`check_bundle`)."""

    kind: Literal["enrol_bundle"] = "enrol_bundle"
    code: str = Field(max_length=400, description="EnrolCode.text()")
    commune: str = Field(default="", max_length=200)
    mqtt_ca_pem: str = Field(default="", max_length=32768)
    server_public_key: str = Field(pattern=HEX64)
    issued_at: float
    expires_at: float
    signature: str = Field(default="", max_length=128)

    def signed_bytes(self) -> bytes:
        data = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_bundle(payload: bytes) -> EnrolBundle:
    if len(payload) > MAX_MESSAGE:
        raise BundleRefused("damaged", "the file is too large to be an enrolment bundle")
    try:
        return EnrolBundle.model_validate_json(payload)
    except ValueError as exc:
        raise BundleRefused("damaged", f"not an enrolment bundle: {exc}") from exc


def check_bundle(
    bundle: EnrolBundle,
    *,
    pinned_key: str | None,
    fingerprint: str | None,
) -> EnrolCode:
    """The bundle's code, if the bundle is whole, signed by the archive key it names, and
    that key is the one the station trusts (``pinned_key``, else the sheet's
    ``fingerprint``). Raises
    :class:`BundleRefused`: ``forged`` (signature, or code for another archive),
    ``wrong_archive`` (not the archive the station trusts), ``unanchored`` (nothing to
    trust it by)."""
    try:
        code = EnrolCode.parse(bundle.code)
    except EnrolmentError as exc:
        raise BundleRefused("damaged", str(exc)) from exc
    if not signing.verify_bytes(bundle.signed_bytes(), bundle.signature, bundle.server_public_key):
        raise BundleRefused("forged", "its signature does not verify")
    if key_fingerprint(bundle.server_public_key) != code.key_fingerprint:
        raise BundleRefused("forged", "its code names another archive key than it is signed by")
    if pinned_key is not None:
        if bundle.server_public_key != pinned_key:
            raise BundleRefused("wrong_archive", "signed by another key than this station's")
    elif fingerprint is not None:
        wanted = "".join(fingerprint.split()).lower()
        if not hmac.compare_digest(key_fingerprint(bundle.server_public_key), wanted):
            raise BundleRefused("wrong_archive", "signed by another key than the sheet's")
    else:
        raise BundleRefused(
            "unanchored", "no archive key to check it against (the sheet's key fingerprint)"
        )
    return code
