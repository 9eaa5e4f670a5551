"""Enrolment of this station from a one-time code (typed, scanned from the sheet, or read
from a USB disk). The exchange itself is in :mod:`protocol.enrolment`; this module owns the
station's side and its files, under ``<data_dir>/enrolment/``:

==================  ======  ====================================================
file                mode    what
==================  ======  ====================================================
station.key         0600    the station's Ed25519 private key (made here, never leaves)
station.key.pending 0600    a new key until the archive registered it (then it replaces it)
code.pending        0600    a USB enrolment's one-time code, until the first connection
                            registered the station's key with it (:func:`complete_pending`)
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

With the link down, :func:`enrol_from_bundle` enrols from a USB enrolment bundle
(``sohoa-server device add --usb-file``) without any connection: the bundle must be signed by
the archive key the station trusts (pinned, or the sheet's fingerprint typed by the
technician); the broker address, CA and the archive's key are installed at once, the key
pair made, and the code kept (``code.pending``). At the first connection
(:func:`complete_pending`, run by ``sync`` and the service before they connect) the usual
exchange registers the key and brings the station's broker password.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import ConfigError, SohoaError
from protocol import enrolment, keyrotation, signing, topics

log = logging.getLogger(__name__)

ENROL_DIR = "enrolment"
STATE_FILE = "enrolment.json"
KEY_FILE = "station.key"
PENDING_KEY_FILE = "station.key.pending"
PENDING_CODE_FILE = "code.pending"
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
    key = _pending_key(folder)
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


def _pending_key(folder: Path) -> Ed25519PrivateKey:
    """The key waiting to be registered. It waits beside the current one until the archive
    registered it: a failed re-enrolment (--force) leaves a working station working. Asking
    again (a lost reply) reuses the waiting key, which the archive recognises."""
    folder.mkdir(parents=True, exist_ok=True)
    pending = folder / PENDING_KEY_FILE
    try:
        return signing.private_key_from_bytes(pending.read_bytes())
    except FileNotFoundError:
        key = signing.new_key()
        _write(pending, signing.private_key_bytes(key), 0o600)
        _fsync_dir(folder)
        return key


def enrol_from_bundle(
    path: Path,
    data_dir: Path,
    *,
    pinned_key: str | None,
    fingerprint: str | None,
    allow_plain: bool = False,
    force: bool = False,
) -> Enrolment:
    """Enrol from a USB enrolment bundle, talking to nobody. Checked before anything is
    written (a refused bundle leaves the station as it was): whole, signed by the archive
    key it names, and that key the one this station trusts (``pinned_key``: its settings'
    ``server_public_key``; else ``fingerprint``, the sheet's)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnrolError("enrol_usb_unreadable", f"{path}: {exc.strerror or exc}") from exc
    try:
        bundle = enrolment.decode_bundle(data)
        code = enrolment.check_bundle(bundle, pinned_key=pinned_key, fingerprint=fingerprint)
    except enrolment.BundleRefused as exc:
        raise EnrolError(f"enrol_usb_{exc.reason}", exc.detail, reason=exc.reason) from exc
    if not code.tls and not is_loopback(code.host) and not allow_plain:
        raise EnrolError("enrol_plain_refused", f"mqtt:// to {code.host}", host=code.host)
    folder = enrol_dir(data_dir)
    if read_state(data_dir) is not None and not force:
        raise EnrolError("enrol_already", str(folder))
    key = _pending_key(folder)
    public = signing.public_key_hex(key)
    _write(folder / PENDING_CODE_FILE, code.text().encode(), 0o600)
    ca_path: Path | None = None
    if bundle.mqtt_ca_pem:
        ca_path = folder / CA_FILE
        _write(ca_path, bundle.mqtt_ca_pem.encode(), 0o644)
    _write_state(folder, code, code.device_id, bundle.server_public_key, public, ca_path,
                 registered=False)  # fmt: skip
    return Enrolment(
        device_id=code.device_id,
        mqtt_url=_url(code, code.device_id),
        server_public_key=bundle.server_public_key,
        fingerprint=enrolment.key_fingerprint(bundle.server_public_key),
        station_public_key=public,
    )


def pending_registration(data_dir: Path) -> bool:
    """A USB enrolment whose key the archive has not registered yet."""
    return (enrol_dir(data_dir) / PENDING_CODE_FILE).exists()


def complete_pending(
    data_dir: Path, *, allow_plain: bool = False, timeout: float = 60.0, agent_version: str = ""
) -> Enrolment | None:
    """At the first connection after a USB enrolment: the usual exchange with the kept
    code registers this station's key and brings its broker password. None when there is
    nothing to complete. Raises what :func:`enrol` raises (the link still down: try again
    at the next connection)."""
    folder = enrol_dir(data_dir)
    try:
        code_text = (folder / PENDING_CODE_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    ca = folder / CA_FILE
    done = enrol(
        code_text, data_dir, ca_file=ca if ca.exists() else None, allow_plain=allow_plain,
        force=True, timeout=timeout, agent_version=agent_version,
    )  # fmt: skip
    (folder / PENDING_CODE_FILE).unlink(missing_ok=True)
    _fsync_dir(folder)
    return done


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
    _write_state(folder, code, sealed.mqtt_username, reply.server_public_key, public, ca_path,
                 registered=True)  # fmt: skip
    return Enrolment(
        device_id=sealed.mqtt_username,
        mqtt_url=_url(code, sealed.mqtt_username),
        server_public_key=reply.server_public_key,
        fingerprint=enrolment.key_fingerprint(reply.server_public_key),
        station_public_key=public,
    )


def _url(code: enrolment.EnrolCode, user: str) -> str:
    scheme = "mqtts" if code.tls else "mqtt"
    host = f"[{code.host}]" if ":" in code.host else code.host
    return f"{scheme}://{user}@{host}:{code.port}"


def _write_state(
    folder: Path,
    code: enrolment.EnrolCode,
    user: str,
    server_public_key: str,
    public: str,
    ca_path: Path | None,
    *,
    registered: bool,
) -> None:
    """``enrolment.json``, last: the mark that enrolment finished (``registered`` False
    after a USB enrolment, until the first connection registered the station's key)."""
    state = {
        "format": FORMAT,
        "format_version": 1,
        "device_id": user,
        "mqtt_url": _url(code, user),
        "mqtt_password_file": str(folder / PASSWORD_FILE),
        "mqtt_ca_file": str(ca_path) if ca_path else None,
        "server_public_key": server_public_key,
        "station_public_key": public,
        "registered": registered,
        "enrolled_at": time.time(),
    }
    _write(folder / STATE_FILE, json.dumps(state, indent=1).encode(), 0o644)
    _fsync_dir(folder)


# Settings the enrolment provides when the operator's file and environment do not.
PROVIDED = ("device_id", "mqtt_url", "mqtt_password_file", "mqtt_ca_file", "server_public_key")


def provided_settings(data_dir: Path) -> dict[str, object]:
    state = read_state(data_dir)
    if state is None:
        return {}
    return {k: state[k] for k in PROVIDED if state.get(k) is not None}


# -- the archive's key rotations (protocol/keyrotation.py) ----------------------------------

ROTATIONS_FILE = "archive-keys.json"


def _rotations(data_dir: Path) -> list[keyrotation.KeyRotation]:
    path = enrol_dir(data_dir) / ROTATIONS_FILE
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.error("ignored %s: %s", path, exc)
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        try:
            found.append(keyrotation.decode(json.dumps(item)))
        except keyrotation.RotationError as exc:
            log.error("ignored an archive key announcement in %s: %s", path, exc)
    return found


def archive_keys(data_dir: Path, pinned: str | None, now: float | None = None) -> set[str]:
    """The archive keys this station accepts at ``now`` (its pinned key, and the keys the
    archive announced, each checked again here)."""
    now = time.time() if now is None else now
    return keyrotation.trusted_keys(pinned, _rotations(data_dir), now)


def record_rotation(data_dir: Path, pinned: str | None, text: str) -> bool:
    """Keep an announcement of the archive's next key if a key this station trusts now
    signed it; True when it is new. Raises EnrolError (``archive_key_refused``) for a
    forged, damaged or foreign one: nothing is written then."""
    try:
        rotation = keyrotation.decode(text)
    except keyrotation.RotationError as exc:
        raise EnrolError("archive_key_refused", str(exc)) from exc
    known = _rotations(data_dir)
    if rotation in known:
        return False
    if rotation.old_key not in archive_keys(data_dir, pinned):
        raise EnrolError(
            "archive_key_refused", "signed by a key this station does not trust (forged?)"
        )
    folder = enrol_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    items = [json.loads(r.encode()) for r in [*known, rotation]]
    _write(folder / ROTATIONS_FILE, json.dumps(items, indent=1).encode(), 0o644)
    _fsync_dir(folder)
    log.warning(
        "the archive announced its next receipt key %s (cut-over %s): both are trusted until then",
        enrolment.key_fingerprint(rotation.new_key),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(rotation.cutover_at)),
    )
    return True
