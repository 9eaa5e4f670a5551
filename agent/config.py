"""Agent settings: a strict, described schema read from a TOML file, then the environment.

Order (later wins): built-in defaults → TOML file (``--config``, default
``/etc/sohoa/agent.toml`` when it exists) → ``SOHOA_*`` environment variables. The user's
file is never rewritten. The broker password has one place on a station: the file
``<data_dir>/enrolment/mqtt-password`` (0600, the service user's) that ``sohoa-agent enrol``
writes and names as ``mqtt_password_file``; a test may put it in the URL. Never in the
repository, and no systemd credential (the unit would not start before enrolment).
"""

from __future__ import annotations

import ipaddress
import os
import re
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
# The station's broker password lives with its enrolment (agent/uplink/enrol.py), in the
# state directory the unit gives the service; it loads no systemd credential (issue #16: the
# unit's LoadCredential=mqtt-password and enrolment's file disagreed, and a LoadCredential=
# whose file is missing stops the unit). The docs-truth tests hold the unit to this.
CREDENTIALS: tuple[str, ...] = ()
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
    fonds: list[str] = Field(
        default_factory=list,
        description="The phông lưu trữ codes this station scans for until the archive tells "
        "it the ones its admin assigned (`sohoa-server fonds assign`; a signed, retained "
        "message, docs/fonds.md): the archive's list wins once received, this is the fallback "
        "for a station never told. The first is the default. With several (a merged commune: "
        "the closed fonds of a former commune and the new one) the technician chooses on the "
        "screen which one the next batches are for.",
    )
    long_press: Literal["alternate_source", "next_fonds"] = Field(
        default="alternate_source",
        description="What a long press of button 1 does: scan from the alternate paper source, "
        "or (next_fonds) choose the next of the station's fonds for the next batches without "
        "scanning (the screen and the log say which).",
    )
    mqtt_url: str = Field(
        default="mqtt://localhost:1883",
        description="Broker: mqtt://user:pass@host:port, or mqtts:// for TLS.",
    )
    mqtt_password_file: Path | None = Field(
        default=None,
        description="File holding the broker password (enrolment sets it to "
        "<data_dir>/enrolment/mqtt-password).",
    )
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle for mqtts://.")
    mqtt_keepalive: int = Field(default=60, ge=10, le=600, description="MQTT keepalive, seconds.")
    scanner: str = Field(
        default="auto",
        description="SANE device name (e.g. test:0); or a stable USB identity as `sohoa-agent "
        "devices` prints it (usb:04c5:132e:SERIAL, or usb:04c5:132e@1-1.3 for the port), "
        "which survives re-plugging; or auto for the first found.",
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
        default=300,
        ge=200,
        le=1200,
        description="Capture resolution; never below 200 (law). 600 costs a page about 3x "
        "the time and 2x the memory of 300 (docs/benchmarks.md): keep 300 on a Raspberry Pi.",
    )
    language: Literal["vi", "en"] = Field(
        default="vi", description="Language of operator messages."
    )
    ocr_languages: str = Field(
        default="vie", pattern=r"^[a-z_]+(\+[a-z_]+)*$", description="Tesseract languages."
    )
    pipeline_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="OCR processes, each single-threaded; unset: the board profile's count "
        "(capped by its memory budget), or one per core without a board.",
    )
    sync_masters: bool = Field(
        default=False, description="Also send the captured bytes (sites with a good link)."
    )
    masters_hours: str = Field(
        default="",
        pattern=r"^$|^([01]?[0-9]|2[0-3])-([01]?[0-9]|2[0-4])$",
        description="With sync_masters: local hours the captures may be sent in, e.g. 22-6 "
        "(the link is idle at night); empty: any hour. Archival pages and text go any time.",
    )
    masters_min_kbps: int = Field(
        default=0,
        ge=0,
        description="With sync_masters: send captures only while the link carried at least "
        "this many kbit/s lately (0: any rate). max_upload_kbps caps every sending.",
    )
    keep_captures: Literal["until_archived", "until_page_receipted"] = Field(
        default="until_archived",
        description="until_archived: a capture (lossless master) is deleted only once the "
        "archive receipted its own verified copy. until_page_receipted: once the archival "
        "page and its text are receipted, the capture is deleted without ever travelling — "
        "the disk never fills with masters, but the archive can never redo that page's "
        "cleanup or OCR, and a damaged archival page can only be re-scanned from paper.",
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
    scan_stall_s: float = Field(
        default=300.0,
        gt=0,
        description="A scan whose scanner sends nothing for this long mid-page (a stalled "
        "USB link, a driver stuck) is reported to the technician, and the service stops "
        "pinging systemd's watchdog so that systemd restarts it; the pages already scanned "
        "are kept.",
    )
    disk_warn_days: int = Field(
        default=7,
        ge=1,
        le=90,
        description="Warn (status, box, screen) when the data disk holds fewer days of "
        "scanning than this at the station's measured rate (agent/retention.py).",
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
    # Hardware from its profiles (agent/hardware.py): each unset value comes from the profile.
    board: str = Field(
        default="auto",
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Board profile id (hw_profiles/boards, e.g. raspberry-pi-4); auto: the one "
        "matching /proc/device-tree/model; none: no profile (one worker per core).",
    )
    memory_budget_mb: int | None = Field(
        default=None, ge=100, description="Memory the page workers may use; unset: the board's."
    )
    button_key_codes: tuple[str, ...] | None = Field(
        default=None,
        description="usb-key: Linux key names that start a scan (KEY_F13,KEY_ENTER); unset: "
        "the button profile's.",
    )
    button_long_press_ms: int | None = Field(
        default=None, ge=100, le=10000, description="Long press, ms; unset: the button profile's."
    )
    button_debounce_ms: int | None = Field(
        default=None, ge=0, le=1000, description="Debounce, ms; unset: the button profile's."
    )
    screen_host: str = Field(
        default="127.0.0.1",
        description="Address of the technician's screen (agent/screen); loopback: only a "
        "browser on the station itself (a touchscreen) can open it.",
    )
    screen_port: int = Field(
        default=8765, ge=0, le=65535, description="Port of the technician's screen; 0: none."
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

    @field_validator("button_key_codes", mode="before")
    @classmethod
    def _key_list(cls, value: object) -> object:
        # SOHOA_BUTTON_KEY_CODES=KEY_F13,KEY_ENTER from the environment
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("fonds", mode="before")
    @classmethod
    def _fonds_list(cls, value: object) -> object:
        # SOHOA_FONDS=BK-NL,BK-XL from the environment (the manifest's pattern, each)
        if isinstance(value, str):
            value = [c.strip() for c in value.split(",") if c.strip()]
        if isinstance(value, list):
            for code in value:
                if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", str(code)):
                    raise ValueError(f"fonds code {code!r}: letters, digits, '.', '_', '-'")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("use mqtt://[user[:pass]@]host[:port] or mqtts://...")
        return value

    @model_validator(mode="after")
    def _captures_policy(self) -> AgentSettings:
        if self.sync_masters and self.keep_captures == "until_page_receipted":
            raise ValueError(
                "sync_masters = true sends the captures, keep_captures = until_page_receipted "
                "deletes them unsent: choose one"
            )
        return self

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
        if password is None and self.mqtt_password_file is not None:
            password = _read_secret(self.mqtt_password_file)
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


def _read_secret(path: Path) -> str:
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
