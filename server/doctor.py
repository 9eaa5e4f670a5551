"""``sohoa-server doctor``: check a running install and say what to fix, Vietnamese first.

Each check is independent and read-only except the store probe (one temp file, removed).
It connects to the broker with the server's own credentials under a client id of its own,
so the running ingest worker's session is never taken over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from server import config
from server.store import keys
from server.store.db import OPERATIONAL_ERRORS, Database

Level = Literal["ok", "warn", "fail"]
# Below either threshold the archive disk is reported (a 300 dpi page and its capture take
# about 1.5 MB; docs/operations.md "Sizing").
MIN_FREE_BYTES = 20 * 2**30
MIN_FREE_SHARE = 0.10


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    vi: str
    en: str

    def line(self, lang: str) -> str:
        tag = {"ok": "[ OK ]", "warn": "[CHÚ Ý]", "fail": "[LỖI]"}[self.level]
        if lang != "vi":
            tag = {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]"}[self.level]
        return f"{tag} {self.vi if lang == 'vi' else self.en}"


def run(settings: config.ServerSettings) -> list[Finding]:
    checks: list[Callable[[config.ServerSettings], Finding]] = [
        check_database,
        check_store,
        check_disk,
        check_receipt_key,
        check_broker,
        check_clock,
    ]
    if settings.store_url is not None:
        checks.insert(2, check_object_store)
    if settings.backup_store_url is not None:
        checks.insert(3, check_backup_store)
    findings = []
    for check in checks:
        try:
            findings.append(check(settings))
        except Exception as exc:  # one broken check must not hide the others
            name = check.__name__.removeprefix("check_")
            findings.append(Finding(name, "fail", f"{name}: lỗi {_short(exc)}", f"{name}: {exc}"))
    return findings


def check_database(settings: config.ServerSettings) -> Finding:
    try:
        db = Database(
            settings.database(), settings.database_password(), settings.database_pool_size
        )
    except (*OPERATIONAL_ERRORS, OSError, config.ConfigError) as exc:
        return Finding(
            "database",
            "fail",
            f"Cơ sở dữ liệu: không mở được ({_short(exc)}). Kiểm tra PostgreSQL đang chạy "
            "(systemctl status postgresql), mật khẩu trong /etc/sohoa/credentials/"
            "database-password và database_url trong /etc/sohoa/server.toml.",
            f"Database: cannot open it ({_short(exc)}). Check that PostgreSQL runs "
            "(systemctl status postgresql), the password in /etc/sohoa/credentials/"
            "database-password and database_url in /etc/sohoa/server.toml.",
        )
    db.close()
    return Finding("database", "ok", "Cơ sở dữ liệu: kết nối được.", "Database: reachable.")


def check_store(settings: config.ServerSettings) -> Finding:
    store = settings.data_dir / "store"
    probe = store / f".doctor-{uuid.uuid4().hex}"
    try:
        store.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"sohoa doctor")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        return Finding(
            "store",
            "fail",
            f"Kho tệp {store}: không ghi được ({exc.strerror}). Thư mục phải thuộc người dùng "
            "sohoa (chown -R sohoa:sohoa) và ổ đĩa phải còn chỗ.",
            f"File store {store}: not writable ({exc.strerror}). It must belong to the sohoa "
            "user (chown -R sohoa:sohoa) and the disk must have room.",
        )
    return Finding("store", "ok", f"Kho tệp {store}: ghi được.", f"File store {store}: writable.")


def check_object_store(settings: config.ServerSettings) -> Finding:
    """With ``store_url``: the keys are there, the bucket answers and takes a small object
    (put, then deleted: a bucket over its quota still answers reads)."""
    if settings.store_url is None:
        return Finding(
            "object_store",
            "ok",
            "Tệp lưu trên đĩa máy chủ (không dùng kho đối tượng S3).",
            "Files on the server's disk (no S3 object store).",
        )
    from server.store import objects

    try:
        where = objects.probe(settings, write=True)  # a bucket over its quota still lists
        delay = objects.read_delay(settings)  # and reads it back: how long a GET waits
    except objects.ObjectStoreError as exc:
        if exc.cause != "other":  # a known cause: what it is and what to do
            return Finding(
                "object_store",
                "fail",
                f"{exc.vi} ({_short(exc)})",
                f"{exc.en} ({exc})",
            )
        return _object_store_unusable(exc)
    except ValueError as exc:
        return _object_store_unusable(exc)
    if delay > objects.READ_DELAY_WARN_S:
        ms = round(delay * 1000)
        return Finding(
            "object_store",
            "warn",
            f"Kho đối tượng {where}: trả lời, nhưng mỗi lần đọc (GET) chậm hơn ~{ms} ms so với"
            " HEAD. Với Ceph RADOS Gateway: đặt tcp_nodelay=1 cho frontend (rgw frontends ="
            " beast ... tcp_nodelay=1) rồi khởi động lại gateway (docs/operations.md).",
            f"Object store {where}: answers, but every read (GET) comes ~{ms} ms later than a"
            " HEAD. On a Ceph RADOS Gateway set tcp_nodelay=1 on its frontend (rgw frontends ="
            " beast ... tcp_nodelay=1) and restart the gateway (docs/operations.md).",
        )
    return Finding(
        "object_store", "ok", f"Kho đối tượng {where}: trả lời.", f"Object store {where}: answers."
    )


def check_backup_store(settings: config.ServerSettings) -> Finding:
    """With ``backup_store_url``: the backup store answers with its keys and takes a small
    object (else the nightly backup fails at night, unseen until the next doctor run)."""
    from server.store import objects

    try:
        where = objects.backup_store_for(settings).check(write=True)
    except (objects.ObjectStoreError, ValueError) as exc:
        cause = getattr(exc, "cause", "other")
        vi, en = objects.CAUSES[cause]
        if cause == "keys":  # the backup store's own keys, not the archive's
            vi = (
                "khóa S3 không đúng hoặc đã bị thu hồi (InvalidAccessKeyId / SignatureDoesNotMatch)"
            )
            en = "the S3 keys are wrong or revoked (InvalidAccessKeyId / SignatureDoesNotMatch)"
        return Finding(
            "backup_store",
            "fail",
            f"Kho sao lưu S3 (backup_store_url): {vi} ({_short(exc)}). Khóa của kho sao lưu:"
            " /etc/sohoa/credentials/backup-s3-access-key-id và backup-s3-secret-access-key.",
            f"Backup object store (backup_store_url): {en} ({exc}). Its keys:"
            " /etc/sohoa/credentials/backup-s3-access-key-id and backup-s3-secret-access-key.",
        )
    return Finding(
        "backup_store", "ok", f"Kho sao lưu {where}: trả lời.", f"Backup store {where}: answers."
    )


def _object_store_unusable(exc: Exception) -> Finding:
    return Finding(
        "object_store",
        "fail",
        f"Kho đối tượng S3 không dùng được: {_short(exc)}. Kiểm tra store_url, khóa "
        "s3-access-key-id / s3-secret-access-key và mạng tới máy chủ S3.",
        f"The S3 object store is unusable: {exc}. Check store_url, the s3-access-key-id / "
        "s3-secret-access-key credentials and the network to the S3 server.",
    )


def check_disk(settings: config.ServerSettings) -> Finding:
    where = settings.data_dir if settings.data_dir.exists() else settings.data_dir.parent
    usage = shutil.disk_usage(where)
    free_gb = usage.free / 2**30
    share = usage.free / usage.total if usage.total else 0.0
    free = f"{_vi_number(free_gb)} GiB ({_vi_number(share * 100, 0)} %)"
    free_en = f"{free_gb:.1f} GiB ({share * 100:.0f} %)"
    if usage.free < MIN_FREE_BYTES or share < MIN_FREE_SHARE:
        return Finding(
            "disk",
            "fail",
            f"Ổ đĩa lưu trữ chỉ còn trống {free}. Thêm dung lượng trước khi đầy: khi đầy, "
            "máy chủ ngừng nhận và các trạm giữ trang lại (xem docs/operations.md, "
            "“Ổ đĩa kho lưu trữ đầy”).",
            f"Archive disk has only {free_en} free. Add space before it fills: when full, the "
            "server stops taking pages and the stations keep them (docs/operations.md, "
            "“Archive disk full”).",
        )
    return Finding(
        "disk", "ok", f"Ổ đĩa lưu trữ: còn trống {free}.", f"Archive disk: {free_en} free."
    )


def check_receipt_key(settings: config.ServerSettings) -> Finding:
    path = settings.data_dir / keys.KEY_FILE
    if not path.exists():
        return Finding(
            "receipt_key",
            "fail",
            f"Chưa có khóa ký biên nhận ({path}). Chạy dịch vụ một lần "
            "(systemctl start sohoa-server) hoặc sohoa-server receipt-key để tạo, rồi sao lưu.",
            f"No receipt-signing key yet ({path}). Start the service once "
            "(systemctl start sohoa-server) or run sohoa-server receipt-key, then back it up.",
        )
    try:
        keys.load_or_create(settings.data_dir)
    except (OSError, ValueError) as exc:
        return Finding(
            "receipt_key",
            "fail",
            f"Không đọc được khóa ký biên nhận {path} ({_short(exc)}). Khôi phục từ bản sao "
            "lưu; tệp phải thuộc người dùng sohoa, quyền 0600.",
            f"Cannot read the receipt-signing key {path} ({_short(exc)}). Restore it from "
            "the backup; it must belong to the sohoa user, mode 0600.",
        )
    return Finding(
        "receipt_key",
        "warn",
        f"Khóa ký biên nhận có tại {path}. Nhớ sao lưu tệp này ra nơi an toàn (ngoài máy "
        "chủ): mất khóa thì mọi trạm phải đăng ký lại.",
        f"Receipt-signing key present at {path}. Keep a backup of this file off the server: "
        "without it every station must be enrolled again.",
    )


def check_broker(settings: config.ServerSettings, timeout: float = 10.0) -> Finding:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(settings.mqtt_url)
    user = unquote(parts.username) if parts.username else "sohoa-server"
    where = f"{parts.scheme}://{user}@{parts.hostname}:{parts.port or 1883}"
    try:
        password = settings.broker_password()
    except config.ConfigError as exc:
        return _broker_fail(where, str(exc), str(exc))
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{settings.mqtt_client_id}-doctor",  # never the ingest worker's id
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(user, password)
    if parts.scheme == "mqtts":
        ca = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
        client.tls_set(ca_certs=ca)
    answered = threading.Event()
    code: list[int] = []

    def on_connect(c: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
        code.append(int(getattr(rc, "value", 0)))
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(parts.hostname or "localhost", parts.port or 1883, keepalive=10)
        client.loop_start()
        answered.wait(timeout)
    except OSError as exc:
        return _broker_fail(
            where,
            f"không kết nối được ({exc.strerror or exc}); kiểm tra systemctl status mosquitto",
            f"cannot connect ({exc.strerror or exc}); check systemctl status mosquitto",
        )
    finally:
        client.loop_stop()
        client.disconnect()
    if not code:
        return _broker_fail(where, "không trả lời", "no answer")
    if code[0] != 0:
        return _broker_fail(
            where,
            "từ chối đăng nhập: mật khẩu trong /etc/sohoa/credentials/mqtt-password phải khớp "
            "với người dùng sohoa-server trong /etc/mosquitto/sohoa.passwd",
            "login refused: the password in /etc/sohoa/credentials/mqtt-password must match "
            "the sohoa-server user in /etc/mosquitto/sohoa.passwd",
        )
    return Finding(
        "broker",
        "ok",
        f"Máy chủ MQTT {where}: đăng nhập được.",
        f"MQTT broker {where}: login accepted.",
    )


def _broker_fail(where: str, vi: str, en: str) -> Finding:
    return Finding("broker", "fail", f"Máy chủ MQTT {where}: {vi}.", f"MQTT broker {where}: {en}.")


def check_clock(settings: config.ServerSettings) -> Finding:
    """Receipts, audit rows and the Biên bản giao nhận carry times: the clock must be set
    by NTP (systemd-timesyncd or chrony)."""
    try:
        out = subprocess.run(
            ["timedatectl", "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        synced = out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        synced = ""
    if synced == "yes":
        return Finding("clock", "ok", "Đồng hồ: đã đồng bộ NTP.", "Clock: NTP synchronised.")
    return Finding(
        "clock",
        "warn",
        "Đồng hồ chưa được xác nhận đồng bộ NTP (timedatectl). Bật systemd-timesyncd hoặc "
        "chrony: thời gian trên biên nhận và nhật ký hoạt động phải đúng.",
        "Clock not confirmed NTP-synchronised (timedatectl). Enable systemd-timesyncd or "
        "chrony: receipts and the activity log carry times.",
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _vi_number(value: float, digits: int = 1) -> str:
    """1234.5 -> "1.234,5": Vietnamese groups thousands with a dot, decimals with a comma."""
    text = f"{value:,.{digits}f}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.level == "fail" for f in findings) else 0
