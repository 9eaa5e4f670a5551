"""Agent settings: a strict, described schema read from a TOML file, then the environment.

Order (later wins): built-in defaults → TOML file (``--config``, default
``/etc/sohoa/agent.toml`` when it exists) → ``SOHOA_*`` environment variables. The user's
file is never rewritten. Secrets (the broker password) come from the URL, from
``mqtt_password_file``, or from ``$CREDENTIALS_DIRECTORY/mqtt-password`` (systemd
``LoadCredential=``), never from the repository.
"""

from __future__ import annotations

import ipaddress
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

from agent.errors import ConfigError
from protocol import chunking, topics

DEFAULT_CONFIG = Path("/etc/sohoa/agent.toml")
# The broker password: systemd hands it to the service as the credential "mqtt-password"
# (LoadCredential= in systemd/sohoa-agent.service); a shell reads the same file directly.
CREDENTIALS_DIR = Path("/etc/sohoa/credentials")
CREDENTIALS = ("mqtt-password",)
ENV_PREFIX = "SOHOA_"


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = Field(
        default="",
        description="This station's id, given at enrolment: MQTT client id and broker user "
        "(a-z 0-9 - _). Unset: the station scans but sends nothing.",
    )
    data_dir: Path = Field(
        default=Path("/var/lib/sohoa-agent"), description="Outbox and page files."
    )
    mqtt_url: str = Field(
        default="mqtt://localhost:1883",
        description="Broker: mqtt://user:pass@host:port, or mqtts:// for TLS.",
    )
    mqtt_password_file: Path | None = Field(
        default=None, description="File holding the broker password (instead of the URL)."
    )
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle for mqtts://.")
    mqtt_keepalive: int = Field(default=60, ge=10, le=600, description="MQTT keepalive, seconds.")
    scanner: str = Field(
        default="auto", description="SANE device name (e.g. test:0), or auto for the first found."
    )
    source: Literal["flatbed", "adf", "adf_duplex"] = Field(
        default="adf", description="Paper source for the primary button."
    )
    alternate_source: Literal["flatbed", "adf", "adf_duplex"] = Field(
        default="adf_duplex", description="Paper source for a long press / second button."
    )
    mode: Literal["color", "gray"] = Field(
        default="color", description="Colour mode; the law asks for colour (docs/design.md §4)."
    )
    dpi: int = Field(
        default=300, ge=200, le=1200, description="Capture resolution; never below 200 (law)."
    )
    language: Literal["vi", "en"] = Field(
        default="vi", description="Language of operator messages."
    )
    ocr_languages: str = Field(
        default="vie", pattern=r"^[a-z_]+(\+[a-z_]+)*$", description="Tesseract languages."
    )
    pipeline_workers: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        ge=1,
        le=64,
        description="OCR processes (one per core, each single-threaded).",
    )
    sync_masters: bool = Field(
        default=False, description="Also send the captured bytes (sites with a good link)."
    )
    chunk_size: int = Field(
        default=chunking.DEFAULT_CHUNK_SIZE,
        ge=chunking.MIN_CHUNK_SIZE,
        le=chunking.MAX_CHUNK_SIZE,
        description="Largest MQTT chunk in bytes; smaller on slow links (adapts to the rate).",
    )
    server_public_key: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The archive's receipt key, pinned by `sohoa-agent enrol`: receipts must be"
        " signed by it before anything is deleted here (none pinned: nothing is deleted).",
    )
    max_upload_kbps: int = Field(
        default=0, ge=0, description="Cap on upload bandwidth in kbit/s (0: no cap)."
    )
    max_inflight: int = Field(
        default=16, ge=1, le=100, description="Chunks in flight before waiting for PUBACKs."
    )
    min_free_mb: int = Field(
        default=500,
        ge=10,
        description="New scans are refused when less than this is free on the data disk.",
    )
    page_budget_mb: int = Field(
        default=40, ge=1, description="Disk reserved per page a scan may still bring."
    )
    button: Literal["none", "serial-box", "modem-line", "usb-key", "scanner-button"] = Field(
        default="none", description="How the scan button is wired."
    )
    button_port: str | None = Field(
        default=None,
        description="Serial port or input device of the button (scanner-button: the SANE option).",
    )
    allow_plain_mqtt: bool = Field(
        default=False,
        description="Allow mqtt:// (no TLS) to a broker that is not on this machine.",
    )
    hw_profiles_dir: Path | None = Field(
        default=None, description="Extra site hardware profiles (e.g. /etc/sohoa/hw_profiles)."
    )

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        if value == "":
            return value  # not enrolled yet: never a hostname, which stations share
        try:
            return topics.check_device_id(value)
        except topics.TopicError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("use mqtt://[user[:pass]@]host[:port] or mqtts://...")
        return value

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> AgentSettings:
        host = urlsplit(self.mqtt_url).hostname or ""
        plain = urlsplit(self.mqtt_url).scheme == "mqtt" and not self.allow_plain_mqtt
        if plain and host != "localhost" and not _loopback(host):
            raise ValueError(
                f"mqtt:// to {host} sends passwords and pages unencrypted: use mqtts://,"
                " or set allow_plain_mqtt = true (a private network only)"
            )
        return self

    def broker(self) -> BrokerAddress:
        parts = urlsplit(self.mqtt_url)
        password = unquote(parts.password) if parts.password else None
        if password is None:
            password = _read_secret(self.mqtt_password_file, "mqtt-password")
        tls = parts.scheme == "mqtts"
        return BrokerAddress(
            host=parts.hostname or "localhost",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else self.device_id,
            password=password,
            tls=tls,
            ca_file=self.mqtt_ca_file,
        )


class BrokerAddress(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    username: str
    password: str | None
    tls: bool
    ca_file: Path | None

    def __str__(self) -> str:  # never print the password
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.username}@{self.host}:{self.port}"


def require_device_id(settings: AgentSettings) -> str:
    """The station's id, or ConfigError before anything leaves the station. There is no
    default: a hostname is shared by every Raspberry Pi left as ``raspberrypi``, and two
    stations under one id would take over each other's broker session and receipts."""
    if not settings.device_id:
        raise ConfigError(
            "device_not_enrolled",
            "device_id is not set (device_id in agent.toml or SOHOA_DEVICE_ID, given at "
            "enrolment); nothing is sent until it is",
        )
    return settings.device_id


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_secret(path: Path | None, credential: str) -> str | None:
    if path is None:
        for where in (os.environ.get("CREDENTIALS_DIRECTORY"), CREDENTIALS_DIR):
            if where and (Path(where) / credential).exists():
                path = Path(where) / credential
                break
        else:
            return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("config_invalid", f"cannot read secret {path}: {exc}") from exc


def load(config_file: Path | None = None, environ: dict[str, str] | None = None) -> AgentSettings:
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    path = config_file or (Path(env["SOHOA_CONFIG"]) if "SOHOA_CONFIG" in env else None)
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    if path is not None:
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("config_invalid", f"{path}: {exc}") from exc
    for name in AgentSettings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = env[key]
    # What enrolment installed (agent/enrol.py) fills what the operator did not set.
    from agent.uplink import enrol

    data_dir = Path(values.get("data_dir", AgentSettings.model_fields["data_dir"].default))
    for name, value in enrol.provided_settings(data_dir).items():
        values.setdefault(name, value)
    try:
        return AgentSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError("config_invalid", f"{where}: {first['msg']}") from exc
