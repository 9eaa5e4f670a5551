"""Enrolment of this station from a one-time code (typed, scanned from the sheet, or read
from a USB disk). The exchange itself is in :mod:`protocol.enrolment`; this module owns the
station's side and its files, under ``<data_dir>/enrolment/``:

==================  ======  ====================================================
file                mode    what
==================  ======  ====================================================
station.key         0600    the station's Ed25519 private key (made here, never leaves)
station.key.pending 0600    a new key until the archive registered it (then it replaces it)
mqtt-password       0600    the password of its own broker identity
ca.pem              0644    the broker's CA as the archive sent it (if any)
enrolment.json      0644    device id, broker URL, the archive's pinned receipt key
==================  ======  ====================================================

``enrolment.json`` is written last: it is the mark that enrolment finished, and
:func:`agent.config.load` reads it as the settings an operator did not give (a value in the
TOML file or the environment still wins; the user's files are never rewritten).

Flow of :func:`enrol`: parse the code → refuse plain MQTT to a non-loopback host → the
station key (kept from an earlier attempt that got no answer, so asking again is allowed) →
the exchange over the broker as ``enrol-<device>`` → check the reply: signed by the key whose
fingerprint the code carries, for our request → open the sealed password → write the files.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import ConfigError, SohoaError
from protocol import enrolment, signing, topics

ENROL_DIR = "enrolment"
STATE_FILE = "enrolment.json"
KEY_FILE = "station.key"
PENDING_KEY_FILE = "station.key.pending"
PASSWORD_FILE = "mqtt-password"  # noqa: S105 - a file name
CA_FILE = "ca.pem"
FORMAT = "sohoa-enrolment"


class EnrolError(SohoaError):
    """Enrolment refused or impossible; the key names the operator message."""

    exit_code = 65


@dataclass(frozen=True)
class Enrolment:
    device_id: str
    mqtt_url: str
    server_public_key: str
    fingerprint: str
    station_public_key: str


def enrol_dir(data_dir: Path) -> Path:
    return data_dir / ENROL_DIR


def read_state(data_dir: Path) -> dict[str, object] | None:
    """The finished enrolment, or None. A damaged file is a configuration error."""
    path = enrol_dir(data_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError("config_invalid", f"{path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError("config_invalid", f"{path} is not a sohoa enrolment")
    return data


def station_key(data_dir: Path) -> Ed25519PrivateKey | None:
    path = enrol_dir(data_dir) / KEY_FILE
    try:
        return signing.private_key_from_bytes(path.read_bytes())
    except FileNotFoundError:
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def enrol(
    code_text: str,
    data_dir: Path,
    *,
    ca_file: Path | None = None,
    allow_plain: bool = False,
    force: bool = False,
    timeout: float = 60.0,
    agent_version: str = "",
) -> Enrolment:
    from agent.uplink.mqtt_link import Exchange, exchange

    try:
        code = enrolment.EnrolCode.parse(code_text)
    except enrolment.EnrolmentError as exc:
        raise EnrolError("enrol_bad_code", str(exc)) from exc
    if not code.tls and not is_loopback(code.host) and not allow_plain:
        raise EnrolError("enrol_plain_refused", f"mqtt:// to {code.host}", host=code.host)
    folder = enrol_dir(data_dir)
    if read_state(data_dir) is not None and not force:
        raise EnrolError("enrol_already", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    # The new key waits beside the current one until the archive registered it: a failed
    # re-enrolment (--force) leaves a working station working. Asking again (a lost reply)
    # reuses the waiting key, which the archive recognises.
    pending = folder / PENDING_KEY_FILE
    try:
        key = signing.private_key_from_bytes(pending.read_bytes())
    except FileNotFoundError:
        key = signing.new_key()
        _write(pending, signing.private_key_bytes(key), 0o600)
        _fsync_dir(folder)
    public = signing.public_key_hex(key)
    box = enrolment.new_box_key()
    request = enrolment.EnrolRequest(
        device_id=code.device_id,
        msg_id=uuid.uuid4().hex,
        secret=code.secret,
        public_key=public,
        box_key=enrolment.box_public_hex(box),
        agent_version=agent_version,
    )
    request = request.model_copy(
        update={"signature": signing.sign_bytes(request.signed_bytes(), key)}
    )

    def ours(payload: bytes) -> bool:
        try:
            return enrolment.decode_reply(payload).msg_id == request.msg_id
        except enrolment.EnrolmentError:
            return False

    ex = Exchange(
        host=code.host,
        port=code.port,
        tls=code.tls,
        ca_file=str(ca_file) if ca_file else None,
        username=enrolment.enrol_user(code.device_id),
        password=code.secret,
        request_topic=topics.enrol_request(code.device_id),
        reply_topic=topics.enrol_reply(code.device_id),
    )
    reply = enrolment.decode_reply(exchange(ex, enrolment.encode(request), ours, timeout))
    _check(reply, code)
    if not reply.ok:
        key_name = (
            "enrol_bad_code_server" if reply.reason == "bad_code" else f"enrol_{reply.reason}"
        )
        raise EnrolError(key_name, reply.detail, reason=reply.reason)
    context = enrolment.seal_context(code.device_id, request.msg_id)
    try:
        secrets_ = enrolment.Sealed.model_validate_json(
            enrolment.open_sealed(reply.sealed, box, context)
        )
    except (enrolment.EnrolmentError, ValueError) as exc:
        raise EnrolError("enrol_bad_reply", str(exc)) from exc
    return _install(folder, code, reply, secrets_, public, ca_file)


def _check(reply: enrolment.EnrolReply, code: enrolment.EnrolCode) -> None:
    """The reply must come from the archive the code names: its key has the code's
    fingerprint and signed the reply. Refusals are checked too (a forged "code used" would
    only stop us; still, we say what is true)."""
    if enrolment.key_fingerprint(reply.server_public_key) != code.key_fingerprint:
        raise EnrolError("enrol_wrong_archive", reply.server_public_key[:16])
    if not signing.verify_bytes(reply.signed_bytes(), reply.signature, reply.server_public_key):
        raise EnrolError("enrol_bad_reply", "the reply's signature does not verify")
    if reply.device_id != code.device_id:
        raise EnrolError("enrol_bad_reply", f"reply for {reply.device_id}")


def _install(
    folder: Path,
    code: enrolment.EnrolCode,
    reply: enrolment.EnrolReply,
    sealed: enrolment.Sealed,
    public: str,
    ca_file: Path | None,
) -> Enrolment:
    os.replace(folder / PENDING_KEY_FILE, folder / KEY_FILE)  # the archive has this key now
    _write(folder / PASSWORD_FILE, sealed.mqtt_password.encode(), 0o600)
    ca_path: Path | None = ca_file
    if reply.mqtt_ca_pem:
        ca_path = folder / CA_FILE
        _write(ca_path, reply.mqtt_ca_pem.encode(), 0o644)
    scheme = "mqtts" if code.tls else "mqtt"
    host = f"[{code.host}]" if ":" in code.host else code.host
    url = f"{scheme}://{sealed.mqtt_username}@{host}:{code.port}"
    state = {
        "format": FORMAT,
        "format_version": 1,
        "device_id": sealed.mqtt_username,
        "mqtt_url": url,
        "mqtt_password_file": str(folder / PASSWORD_FILE),
        "mqtt_ca_file": str(ca_path) if ca_path else None,
        "server_public_key": reply.server_public_key,
        "station_public_key": public,
        "enrolled_at": time.time(),
    }
    _write(folder / STATE_FILE, json.dumps(state, indent=1).encode(), 0o644)
    _fsync_dir(folder)
    return Enrolment(
        device_id=sealed.mqtt_username,
        mqtt_url=url,
        server_public_key=reply.server_public_key,
        fingerprint=enrolment.key_fingerprint(reply.server_public_key),
        station_public_key=public,
    )


# Settings the enrolment provides when the operator's file and environment do not.
PROVIDED = ("device_id", "mqtt_url", "mqtt_password_file", "mqtt_ca_file", "server_public_key")


def provided_settings(data_dir: Path) -> dict[str, object]:
    state = read_state(data_dir)
    if state is None:
        return {}
    return {k: state[k] for k in PROVIDED if state.get(k) is not None}
