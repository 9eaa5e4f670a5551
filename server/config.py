"""Server settings: strict schema, TOML file then ``SOHOA_*`` environment (see agent/config.py
for the same rules). Secrets come from the URL, a file, or ``$CREDENTIALS_DIRECTORY``."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG = Path("/etc/sohoa/server.toml")
# Secrets: systemd hands the service each file of this directory as a credential of the same
# name (LoadCredential=NAME:/etc/sohoa/credentials/NAME in systemd/sohoa-server.service);
# administration commands run from a shell (as the service user) read the files directly.
CREDENTIALS_DIR = Path("/etc/sohoa/credentials")
CREDENTIALS = (
    "mqtt-password",
    "database-password",
    "broker-admin-password",
    "backup-password",
)
# The object store's keys (store_url = s3://...): made by whoever runs the store, put in the
# same directory by hand (root:sohoa 0640), read directly; not made by the install script.
OBJECT_STORE_CREDENTIALS = ("s3-access-key-id", "s3-secret-access-key")
# The backup object store's (backup_store_url: another site's S3) are read the same way
# (server.store.objects.credentials_from, which="backup-s3").
BACKUP_STORE_CREDENTIALS = ("backup-s3-access-key-id", "backup-s3-secret-access-key")
ENV_PREFIX = "SOHOA_"
POSTGRES_SCHEMES = ("postgresql", "postgres")


class ConfigError(Exception):
    pass


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(
        default=Path("/var/lib/sohoa-server"), description="Archive files and the SQLite database."
    )
    database_url: str | None = Field(
        default=None,
        description="sqlite:///path (default: <data_dir>/archive.sqlite3) or"
        " postgresql://user@host:port/dbname.",
    )
    store_url: str | None = Field(
        default=None,
        description="Where the archive's files go: unset for the local store under"
        " <data_dir>/store, or an S3 object store s3://bucket/prefix?endpoint=https://host:port"
        " (keys: the credentials s3-access-key-id and s3-secret-access-key; docs/operations.md).",
    )
    database_password_file: Path | None = Field(
        default=None, description="PostgreSQL password file (when the URL has none)."
    )
    database_pool_size: int = Field(
        default=8,
        ge=1,
        le=200,
        description="PostgreSQL connections one server process holds at most (web threads and"
        " ingest share them; requests beyond wait in the process). Keep the sum over all"
        " processes below the server's max_connections.",
    )
    database_pool_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Seconds a request waits for a free PostgreSQL connection of its process"
        " before it is refused with 503 and Retry-After (the ingest retries later).",
    )
    backup_repository: str | None = Field(
        default=None,
        description="restic repository `sohoa-server backup` writes to and `restore` reads:"
        " a path on another disk, sftp:user@host:/path, s3:https://host/bucket, rest:https://….",
    )
    backup_password_file: Path | None = Field(
        default=None,
        description="The repository's password (default: the credential backup-password)."
        " Without it the backups cannot be read: keep a copy offline.",
    )
    backup_store_url: str | None = Field(
        default=None,
        description="With an object store (store_url): the second S3 store `sohoa-server"
        " backup` copies every part's object into (verified, only what it lacks) and"
        " `restore` / `store restore` bring them back from: s3://bucket/prefix?endpoint=…"
        " (keys: the credentials backup-s3-access-key-id and backup-s3-secret-access-key).",
    )
    mqtt_url: str = Field(
        default="mqtt://localhost:1883",
        description="Broker for ingest: mqtt://user:pass@host:port or mqtts://.",
    )
    mqtt_password_file: Path | None = Field(default=None, description="Broker password file.")
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle for mqtts://.")
    mqtt_client_id: str = Field(
        default="sohoa-server-1",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="Unique per ingest worker; workers share the subscription.",
    )
    ingest: bool = Field(default=True, description="Run the MQTT ingest worker in `run`.")
    accept_unenrolled_devices: bool = Field(
        default=False,
        description="Tests and a lab broker only: store messages from devices that are not"
        " enrolled, active stations. Off, they are refused whatever the broker lets in.",
    )
    broker_admin_user: str = Field(
        default="sohoa-admin",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="The broker's dynamic-security admin (stations are enrolled and revoked"
        " through it).",
    )
    broker_admin_password_file: Path | None = Field(
        default=None,
        description="Its password (default: the credential broker-admin-password, else"
        " <data_dir>/broker-admin-password as written by `sohoa-server broker init`).",
    )
    station_broker_url: str | None = Field(
        default=None,
        description="The broker address stations use, put in enrolment codes, e.g."
        " mqtts://archive.example.vn:8883 (default: the host and port of mqtt_url).",
    )
    station_ca_file: Path | None = Field(
        default=None,
        description="CA certificate stations check the broker with (sent at enrolment).",
    )
    enrol_code_hours: float = Field(
        default=72, gt=0, le=24 * 30, description="How long an enrolment code stays valid."
    )
    host: str = Field(default="127.0.0.1", description="HTTP listen address.")
    port: int = Field(default=8080, ge=1, le=65535, description="HTTP port.")
    language: Literal["vi", "en"] = Field(default="vi", description="Default staff language.")
    max_part_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="Largest single file a page may carry."
    )
    shared_subscription: bool = Field(
        default=False,
        description="Subscribe through $share/sohoa-ingest/... so that several ingest workers "
        "split the devices' messages (DESIGN §7). Leave off with one worker: a plain "
        "subscription survives a broker restart in the persistent session, a shared one "
        "does not in Mosquitto 2.0 (messages sent before the server re-subscribes are lost "
        "and wait for the devices' re-query).",
    )
    retry_after_s: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        description="When the archive cannot store a message (disk full, fsync error), devices "
        "are told to wait this long before sending again.",
    )

    max_archival_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest archival PDF a station may send."
    )
    max_capture_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="Largest capture (scanned master)."
    )
    max_thumb_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest thumbnail a station may send."
    )
    max_text_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest OCR text of one page."
    )
    max_pages_per_batch: int = Field(
        default=5000, ge=1, description="Most pages in one batch (one press of the button)."
    )
    max_bytes_per_day: int = Field(
        default=20 * 1024**3,
        ge=1024,
        description="Most bytes one station may announce in 24 hours.",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Where citizens reach the archive's public lookup (the address printed in"
        " the labels' QR codes), e.g. https://luutru.example.gov.vn; no trailing path.",
    )
    public_requests_per_minute: int = Field(
        default=30,
        ge=1,
        le=6000,
        description="Public lookup pages one client (IP) may ask for in any minute.",
    )
    public_access_note: str = Field(
        default="Liên hệ Phòng đọc của Lưu trữ lịch sử tỉnh, mang theo giấy tờ tùy thân và mã"
        " hồ sơ này.",
        max_length=500,
        description="How a citizen asks to see a hồ sơ whose chế độ sử dụng is conditional"
        " (shown on its public page, Vietnamese).",
    )
    trusted_proxies: list[str] = Field(
        default=[],
        description="Reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For and"
        " X-Forwarded-Proto are believed; none by default.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: "127.0.0.1, 10.0.0.0/8"
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
        except ValueError:
            raise ValueError("the port is not a number from 1 to 65535") from None
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("use mqtt://[user[:pass]@]host[:port] or mqtts://...")
        return value

    @field_validator("station_broker_url")
    @classmethod
    def _station_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.password:
                raise ValueError("use mqtts://host:port (no user or password)")
        return value

    @field_validator("store_url", "backup_store_url")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme != "s3" or not parts.hostname:
            raise ValueError("use s3://bucket/prefix?endpoint=https://host:port")
        if parts.username or parts.password:
            raise ValueError("no keys in the store URL: use the s3-access-key-id credential")
        return value

    @model_validator(mode="after")
    def _backup_elsewhere(self) -> ServerSettings:
        if self.backup_store_url is not None and self.store_url is not None:
            a, b = urlsplit(self.store_url), urlsplit(self.backup_store_url)
            if (a.hostname, a.query) == (b.hostname, b.query):
                raise ValueError(
                    "backup_store_url names the archive's own bucket: a backup must live in"
                    " another bucket, on another site's S3"
                )
        return self

    @field_validator("public_base_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError("use https://host[:port] (the public lookup's address)")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("sqlite", *POSTGRES_SCHEMES):
            raise ValueError("use sqlite:///path or postgresql://user@host:port/dbname")
        return value

    def database(self) -> Path | str:
        """What server.store.db.Database opens: a SQLite file's path or a PostgreSQL URL."""
        if self.database_url is None:
            return self.data_dir / "archive.sqlite3"
        parts = urlsplit(self.database_url)
        if parts.scheme in POSTGRES_SCHEMES:
            return self.database_url
        return Path(unquote(parts.path))

    def sqlite_path(self) -> Path:
        target = self.database()
        if not isinstance(target, Path):
            raise ConfigError("the database is PostgreSQL, not a SQLite file")
        return target

    def database_password(self) -> str | None:
        """PostgreSQL's password: in the URL, else this file, else the systemd credential
        ``database-password``; None lets libpq look (~/.pgpass, PGPASSWORD, peer auth)."""
        if self.database_url and urlsplit(self.database_url).password:
            return None  # libpq reads it from the URL
        return _secret(self.database_password_file, "database-password")

    def backup_password(self) -> str | None:
        return _secret(self.backup_password_file, "backup-password")

    def broker_password(self) -> str | None:
        parts = urlsplit(self.mqtt_url)
        if parts.password:
            return unquote(parts.password)
        return _secret(self.mqtt_password_file, "mqtt-password")

    def broker_admin_password(self) -> str | None:
        found = _secret(self.broker_admin_password_file, "broker-admin-password")
        if found is None and (self.data_dir / "broker-admin-password").exists():
            found = (self.data_dir / "broker-admin-password").read_text(encoding="utf-8").strip()
        return found

    def secret(self, credential: str) -> str | None:
        """A credential by name (systemd's credentials directory, /etc/sohoa/credentials)."""
        return _secret(None, credential)

    def station_broker(self) -> tuple[str, int, bool]:
        """(host, port, tls) of the broker as stations reach it."""
        parts = urlsplit(self.station_broker_url or self.mqtt_url)
        tls = parts.scheme == "mqtts"
        return parts.hostname or "localhost", parts.port or (8883 if tls else 1883), tls


def _secret(path: Path | None, credential: str) -> str | None:
    """A secret from ``path``, else systemd's ``$CREDENTIALS_DIRECTORY/<credential>``, else
    ``/etc/sohoa/credentials/<credential>`` (a shell has no credentials directory)."""
    if path is None:
        for where in (os.environ.get("CREDENTIALS_DIRECTORY"), CREDENTIALS_DIR):
            if where and (Path(where) / credential).exists():
                path = Path(where) / credential
                break
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path} ({exc.strerror}): run as the service user "
            "(sudo -u sohoa sohoa-server ...)"
        ) from exc


def load(config_file: Path | None = None, environ: dict[str, str] | None = None) -> ServerSettings:
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    path = config_file or (
        Path(env["SOHOA_SERVER_CONFIG"]) if "SOHOA_SERVER_CONFIG" in env else None
    )
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    if path is not None:
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    for name in ServerSettings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = env[key]
    # The agent's SOHOA_DATA_DIR must not leak into the server when both run in one shell.
    if "SOHOA_SERVER_DATA_DIR" in env:
        values["data_dir"] = env["SOHOA_SERVER_DATA_DIR"]
    try:
        return ServerSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from exc
