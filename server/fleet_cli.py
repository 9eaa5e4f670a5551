"""``sohoa-server broker init`` and ``sohoa-server device add|list|revoke``.

What a provincial IT officer types. Each command prints one clear line on failure (exit 69
when the broker or the database cannot be reached, 65 for a refusal such as an unknown
station) and never a traceback. ``device add`` prints the one-time enrolment code as its
LAST line, so scripts can take it with ``tail -n 1``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from protocol import enrolment, signing, topics

if TYPE_CHECKING:
    from server.fleet.registry import AuditHook
    from server.store.db import Connection

EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_CANTCREAT = 73


def _fail(code: int, line: str) -> int:
    print(f"sohoa-server: {line}", file=sys.stderr)
    return code


def _audit(actor: str) -> AuditHook:
    """Fleet changes made from the command line go into the audit log, as ``actor``."""
    from server.archive import audit

    def append(con: Connection, action: str, target: str, detail: dict[str, Any]) -> None:
        audit.append(con, actor, action, target, detail, "")

    return append


def cmd_broker_init(args: argparse.Namespace) -> int:
    """Write the broker's first dynamic-security file and the server's two passwords."""
    from server.cli import _settings
    from server.fleet import broker as fleet

    settings = _settings(args)
    target: Path = args.dynsec_file
    if target.exists() and not args.force:
        return _fail(
            EX_CANTCREAT,
            f"{target} exists: the broker already has its identities (use --force to start "
            "over, which forgets every enrolled station on the broker)",
        )
    admin_password = secrets.token_urlsafe(24)
    ingest_password = secrets.token_urlsafe(24)
    ingest_user = urlsplit(settings.mqtt_url).username or "sohoa-server"
    config = fleet.dynsec_config(
        settings.broker_admin_user, admin_password, ingest_user, ingest_password
    )
    fleet.write_private(target, json.dumps(config, indent=1).encode())
    admin_file = args.admin_password_file or settings.data_dir / "broker-admin-password"
    ingest_file = args.ingest_password_file or settings.data_dir / "mqtt-password"
    fleet.write_private(admin_file, admin_password.encode())
    fleet.write_private(ingest_file, ingest_password.encode())
    print(f"dynamic security: {target} (owner: the mosquitto user, mode 0600)")
    print(f"admin identity {settings.broker_admin_user}: password in {admin_file}")
    print(f"ingest identity {ingest_user}: password in {ingest_file} (mqtt_password_file)")
    print("mosquitto.conf:")
    try:
        plugin = fleet.find_plugin()
    except fleet.BrokerError as exc:
        return _fail(EX_UNAVAILABLE, str(exc))
    print(f"  plugin {plugin}")
    print(f"  plugin_opt_config_file {target}")
    return 0


def cmd_device_add(args: argparse.Namespace) -> int:
    from server.cli import _open, _settings
    from server.fleet import broker as fleet
    from server.fleet import registry as stations
    from server.fleet import sheet as enrolsheet
    from server.store import keys

    settings = _settings(args)
    try:
        topics.check_device_id(args.name)
    except topics.TopicError as exc:
        return _fail(EX_DATAERR, str(exc))
    commune = args.commune.strip()
    if not commune:
        return _fail(EX_DATAERR, '--commune is required (e.g. "Xã Tân Phú")')
    hours = args.hours if args.hours is not None else settings.enrol_code_hours
    db = _open(settings)
    try:
        try:
            secret = stations.issue_code(
                db, args.name, commune, args.district, hours, replace=args.replace,
                audit=_audit("cli"),
            )  # fmt: skip
        except stations.FleetError as exc:
            return _fail(EX_DATAERR, exc.detail)
        station = stations.get(db, args.name)
    finally:
        db.close()
    assert station is not None
    assert station.code_expires_at is not None
    try:
        with fleet.admin_session(settings) as admin:
            admin.add_enrolment(args.name, secret)
    except fleet.BrokerError as exc:
        return _fail(EX_UNAVAILABLE, f"the code was not activated on the broker: {exc}")
    host, port, tls = settings.station_broker()
    archive_key = keys.current(settings.data_dir)
    key = signing.public_key_hex(archive_key)
    code = enrolment.EnrolCode(args.name, secret, host, port, tls, enrolment.key_fingerprint(key))
    sheet = args.sheet or Path(f"enrol-{args.name}.pdf")
    enrolsheet.write_pdf(code, commune, station.code_expires_at, sheet)
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(station.code_expires_at))
    print(f"station {args.name} ({commune}): enrolment sheet {sheet}")
    if args.usb_file is not None:
        ca_pem = ""
        if settings.station_ca_file is not None:
            ca_pem = settings.station_ca_file.read_text(encoding="utf-8")
        bundle = enrolment.EnrolBundle(
            code=code.text(), commune=commune, mqtt_ca_pem=ca_pem, server_public_key=key,
            issued_at=time.time(), expires_at=station.code_expires_at,
        )  # fmt: skip
        signature = signing.sign_bytes(bundle.signed_bytes(), archive_key)
        bundle = bundle.model_copy(update={"signature": signature})
        fleet.write_private(args.usb_file, bundle.model_dump_json(indent=1).encode())
        fp = " ".join(code.key_fingerprint[i : i + 4] for i in range(0, 32, 4))
        print(f"USB enrolment file {args.usb_file}: at the station run")
        print(f"  sohoa-agent enrol --usb FILE --fingerprint '{fp}'")
    print(f"one-time code, valid until {expires}:")
    print(code.text())
    return 0


def cmd_device_list(args: argparse.Namespace) -> int:
    from server.cli import _open, _settings
    from server.fleet import registry as stations

    db = _open(_settings(args))
    try:
        rows = stations.stations(db)
    finally:
        db.close()
    if args.json:
        print(json.dumps([s.as_dict() for s in rows], ensure_ascii=False, indent=1))
        return 0

    def when(ts: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"

    print(f"{'station':<24} {'state':<8} {'enrolled (UTC)':<17} {'key fingerprint':<32} commune")
    for s in rows:
        print(
            f"{s.device_id:<24} {s.state:<8} {when(s.enrolled_at):<17}"
            f" {s.fingerprint or '-':<32} {s.commune}"
        )
    return 0


def cmd_device_revoke(args: argparse.Namespace) -> int:
    """The registry first (the archive refuses the station's key at once, even if the
    broker cannot be reached), then the broker (disconnects it now, refuses it after)."""
    from server.cli import _open, _settings
    from server.fleet import broker as fleet
    from server.fleet import registry as stations

    settings = _settings(args)
    db = _open(settings)
    try:
        broker_error = fleet.revoke_station(settings, db, args.name, audit=_audit("cli"))
    except stations.FleetError as exc:
        return _fail(EX_DATAERR, exc.detail)
    finally:
        db.close()
    if broker_error is not None:
        return _fail(
            EX_UNAVAILABLE,
            f"{args.name} is revoked in the archive, but the broker was not told:"
            f" {broker_error}. Run this command again when the broker is reachable.",
        )
    print(f"station {args.name} revoked: disconnected from the broker; its key is refused")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    broker = sub.add_parser("broker", help="the broker's identities (dynamic security)")
    broker_sub = broker.add_subparsers(dest="broker_command", required=True)
    init = broker_sub.add_parser(
        "init",
        help="write the broker's first dynamic-security file and the server's passwords",
    )
    init.add_argument("--dynsec-file", type=Path, required=True,
                      help="e.g. /var/lib/mosquitto/dynamic-security.json")  # fmt: skip
    init.add_argument("--admin-password-file", type=Path,
                      help="default <data_dir>/broker-admin-password")  # fmt: skip
    init.add_argument("--ingest-password-file", type=Path,
                      help="default <data_dir>/mqtt-password")  # fmt: skip
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_broker_init)

    device = sub.add_parser("device", help="scan stations: enrol, list, revoke")
    dsub = device.add_subparsers(dest="device_command", required=True)
    add = dsub.add_parser(
        "add",
        help="register a station; print its one-time enrolment code (last line) and sheet",
    )
    add.add_argument("name", help="station id, e.g. xa-tan-phu-01 (a-z 0-9 - _)")
    add.add_argument("--commune", required=True, help='e.g. "Xã Tân Phú"')
    add.add_argument("--district", default="", help="district (huyện), optional")
    add.add_argument("--hours", type=float, help="code validity (default 72)")
    add.add_argument("--sheet", type=Path, help="where to write the PDF sheet")
    add.add_argument(
        "--usb-file", type=Path, metavar="FILE",
        help="also write a signed enrolment file for a station whose link is down (USB disk)",
    )  # fmt: skip
    add.add_argument(
        "--replace",
        action="store_true",
        help="a replacement for an enrolled (or revoked) station: same id, new key",
    )
    add.set_defaults(func=cmd_device_add)
    lst = dsub.add_parser("list", help="every station: state, enrolment, key fingerprint")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_device_list)
    rev = dsub.add_parser("revoke", help="cut a station off now (stolen, retired)")
    rev.add_argument("name")
    rev.set_defaults(func=cmd_device_revoke)
