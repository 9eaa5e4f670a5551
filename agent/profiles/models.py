"""What a hardware profile file may contain: strict models, shared types, ProfileError.

This module owns the schema of the TOML files under `hw_profiles/` (scanners, boards, button
boxes): pydantic models with `extra="forbid"` (an unknown key is an error), a description on
every field, and the cross-field checks. It also holds the small types the other modules of
`agent.profiles` share (logical source and mode, option values).

It must not read files (`loading`), look at a device (`matching`, `sane_options`) or decide
option values (`planning`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.errors import SohoaError

log = logging.getLogger(__name__)

LogicalSource = Literal["flatbed", "adf", "adf_duplex"]
LogicalMode = Literal["color", "gray", "lineart"]
OptionValue = str | bool | int | float
SettingValue = str | int | float

A4_MM = (210.0, 297.0)


class ProfileError(SohoaError):
    """A profile file is invalid, or a request cannot be met by the profile or the device."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quirk(_Strict):
    """One known oddity of a device or backend, with the evidence for it."""

    what: str = Field(description="What the device or backend does that a frontend must know.")
    why: str = Field(description="Why it matters for us and what we do about it.")
    source: str = Field(
        min_length=3,
        description=(
            "Evidence: a URL, a man page such as `sane-fujitsu(5)`, a fixture path, "
            "or text starting with 'unverified' when it is an expectation not yet checked."
        ),
    )
    flag: (
        Literal[
            "set_source_first",
            "params_unreliable_after_start",
            "geometry_below_a4",
            "vendor_backend_required",
            "no_network_scanning",
            "limited_sane_support",
        ]
        | None
    ) = Field(
        default=None,
        description=(
            "Optional machine-readable name for the quirk, so code can act on it without "
            "testing vendor names (see hw_profiles/README.md for what each flag means)."
        ),
    )


class OptionChoice(_Strict):
    """One way to select a logical source or mode on a backend."""

    value: str = Field(description="Exact string the backend expects for its source/mode option.")
    set: dict[str, OptionValue] = Field(
        default_factory=dict,
        description=(
            "Further option settings this choice needs, e.g. epson2 duplex is "
            "source='Automatic Document Feeder' plus {'adf-mode' = 'Duplex'}."
        ),
    )


def _choices(raw: object) -> object:
    """Accept "X", ["X", "Y"], {value=...}, or a list mixing strings and tables."""
    if isinstance(raw, str):
        return [{"value": raw}]
    if isinstance(raw, Mapping):
        return [raw]
    if isinstance(raw, list):
        return [{"value": item} if isinstance(item, str) else item for item in raw]
    return raw


Choices = Annotated[
    tuple[OptionChoice, ...],
    Field(
        min_length=1,
        description="Candidates in order of preference; the first one the device offers wins.",
    ),
]


class SourceMap(_Strict):
    """Logical sources mapped to backend choices; a missing key means 'not supported'."""

    flatbed: Choices | None = Field(default=None, description="Scanning from the glass.")
    adf: Choices | None = Field(default=None, description="Feeder, front side only.")
    adf_duplex: Choices | None = Field(default=None, description="Feeder, both sides.")

    @field_validator("flatbed", "adf", "adf_duplex", mode="before")
    @classmethod
    def _normalise(cls, raw: object) -> object:
        return _choices(raw)

    def get(self, source: LogicalSource) -> tuple[OptionChoice, ...] | None:
        value: tuple[OptionChoice, ...] | None = getattr(self, source)
        return value

    def supported(self) -> list[str]:
        return [s for s in ("flatbed", "adf", "adf_duplex") if getattr(self, s) is not None]


class ModeMap(_Strict):
    """Logical colour modes mapped to backend choices; a missing key means 'not supported'."""

    color: Choices | None = Field(default=None, description="24-bit colour.")
    gray: Choices | None = Field(default=None, description="8-bit grey.")
    lineart: Choices | None = Field(default=None, description="1-bit black and white.")

    @field_validator("color", "gray", "lineart", mode="before")
    @classmethod
    def _normalise(cls, raw: object) -> object:
        return _choices(raw)

    def get(self, mode: LogicalMode) -> tuple[OptionChoice, ...] | None:
        value: tuple[OptionChoice, ...] | None = getattr(self, mode)
        return value

    def supported(self) -> list[str]:
        return [m for m in ("color", "gray", "lineart") if getattr(self, m) is not None]


class OptionNames(_Strict):
    """SANE option names (python-sane spelling, with '-') where a backend differs."""

    source: str = Field(default="source", description="Option selecting the document source.")
    mode: str = Field(default="mode", description="Option selecting colour/grey/lineart.")
    resolution: str = Field(default="resolution", description="Option for dots per inch.")
    tl_x: str = Field(default="tl-x", description="Scan area, top-left x (mm); scanimage -l.")
    tl_y: str = Field(default="tl-y", description="Scan area, top-left y (mm); scanimage -t.")
    br_x: str = Field(default="br-x", description="Scan area, bottom-right x (mm); scanimage -x.")
    br_y: str = Field(default="br-y", description="Scan area, bottom-right y (mm); scanimage -y.")
    page_width: str = Field(
        default="page-width", description="Paper width (mm) for sheet-fed centring, if any."
    )
    page_height: str = Field(
        default="page-height", description="Paper height (mm) for sheet-fed scans, if any."
    )


class Sensors(_Strict):
    """Names of SANE button/sensor options (capability 'hardware') a backend exposes."""

    scan: str | None = Field(default=None, description="The scanner's start/scan button.")
    stop: str | None = Field(default=None, description="A stop/cancel button.")
    email: str | None = Field(default=None, description="A second button (often 'email').")
    function: str | None = Field(
        default=None, description="Integer function-number display/selector, if any."
    )
    page_loaded: str | None = Field(default=None, description="Paper present in the feeder.")
    cover_open: str | None = Field(default=None, description="Feeder/cover open.")
    double_feed: str | None = Field(default=None, description="Double feed detected.")


class ScannerMatch(_Strict):
    """How a SANE device is recognised; every given criterion must hold."""

    backend: str | None = Field(
        default=None,
        description="SANE backend name, the first part of the device name ('fujitsu', 'test'); "
        "a 'net:<host>:' prefix is ignored.",
    )
    vendor: str | None = Field(
        default=None, description="Regex (case-insensitive, search) on the vendor SANE reports."
    )
    model: str | None = Field(
        default=None, description="Regex (case-insensitive, search) on the model SANE reports."
    )
    usb_ids: tuple[str, ...] = Field(
        default=(),
        description="Verified USB 'vvvv:pppp' ids (lower-case hex); any one matching suffices.",
    )
    usb_ids_unverified: tuple[str, ...] = Field(
        default=(),
        description="USB ids seen in secondary sources only; documented, never used to match.",
    )

    @field_validator("vendor", "model")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    @field_validator("usb_ids", "usb_ids_unverified")
    @classmethod
    def _usb_id_form(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for usb_id in value:
            if not re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", usb_id):
                raise ValueError(f"USB id {usb_id!r} is not lower-case 'vvvv:pppp'")
        return value


class PaperSize(_Strict):
    """A paper size in millimetres."""

    width_mm: float = Field(gt=0, description="Width across the feed direction, mm.")
    height_mm: float = Field(gt=0, description="Length along the feed direction, mm.")


ScannerCiteKey = Literal[
    "match",
    "usb_ids",
    "sources",
    "modes",
    "options",
    "resolutions",
    "max_paper",
    "duplex",
    "adf_capacity",
    "speed_ppm",
    "sensors",
]


class ScannerProfile(_Strict):
    """One scanner model (or backend family) and how to drive it through SANE."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Unique id, the file stem.")
    name: str = Field(description="Human name as sold, e.g. 'Fujitsu fi-7160'.")
    kind: Literal["scanner"] = Field(description="Always 'scanner' for this profile type.")
    status: Literal["tested", "documented", "expected", "fallback"] = Field(
        description="'tested': run by us on the device; 'documented': backend docs/dump say it "
        "works; 'expected': plausible but unverified; 'fallback': generic/test profiles.",
    )
    match: ScannerMatch = Field(description="How SANE devices are recognised.")
    options: OptionNames = Field(
        default_factory=OptionNames, description="Option names where they differ."
    )
    sources: SourceMap = Field(description="Logical sources to backend option values.")
    modes: ModeMap = Field(description="Logical modes to backend option values.")
    resolutions: tuple[int, ...] = Field(
        default=(),
        description="Preferred (optical) resolutions; the nearest one >= the request is used "
        "when the device accepts it. Empty: use whatever the device offers.",
    )
    default_dpi: int = Field(
        default=300,
        gt=0,
        description="Capture dpi when the site does not say; 300 dpi is what tesseract wants "
        "(tessdoc ImproveQuality) and above the 200 dpi legal floor (NĐ 30/2020 Phụ lục I).",
    )
    max_paper: PaperSize | None = Field(default=None, description="Largest sheet, mm.")
    duplex: bool = Field(default=False, description="Can scan both sides in one pass.")
    adf_capacity: int | None = Field(default=None, ge=1, description="Feeder capacity, sheets.")
    speed_ppm: int | None = Field(default=None, ge=1, description="Rated speed, pages/min A4.")
    sensors: Sensors = Field(default_factory=Sensors, description="Button/sensor option names.")
    quirks: tuple[Quirk, ...] = Field(default=(), description="Known oddities, each with evidence.")
    cite: dict[ScannerCiteKey, str] = Field(
        default_factory=dict,
        description="Where each stated field comes from (URL, man page, fixture, 'unverified').",
    )

    @model_validator(mode="after")
    def _checks(self) -> ScannerProfile:
        needed: list[ScannerCiteKey] = ["sources", "modes"]
        if self.match.model or self.match.vendor:
            needed.append("match")
        if self.match.usb_ids or self.match.usb_ids_unverified:
            needed.append("usb_ids")
        if self.resolutions:
            needed.append("resolutions")
        if self.max_paper is not None:
            needed.append("max_paper")
        if self.duplex:
            needed.append("duplex")
        if self.adf_capacity is not None:
            needed.append("adf_capacity")
        if self.speed_ppm is not None:
            needed.append("speed_ppm")
        if self.sensors != Sensors():
            needed.append("sensors")
        missing = [key for key in needed if not self.cite.get(key, "").strip()]
        if missing:
            raise ValueError(f"profile {self.id}: no [cite] entry for {', '.join(missing)}")
        if self.duplex != (self.sources.adf_duplex is not None):
            raise ValueError(
                f"profile {self.id}: duplex must be true iff sources.adf_duplex is set"
            )
        if self.adf_capacity is not None and self.sources.adf is None:
            raise ValueError(f"profile {self.id}: adf_capacity given but no sources.adf")
        return self

    def has_flag(self, flag: str) -> bool:
        """True when one of the quirks carries this flag."""
        return any(q.flag == flag for q in self.quirks)


class BoardProfile(_Strict):
    """A computer the agent runs on, with sizing advice for the pipeline."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Unique id, the file stem.")
    name: str = Field(description="Human name.")
    kind: Literal["board"] = Field(description="Always 'board'.")
    match_model: str | None = Field(
        default=None,
        description="Regex on /proc/device-tree/model (Raspberry Pi); None for x86 machines.",
    )
    cpu_cores: int = Field(ge=1, description="CPU cores of the typical unit.")
    ram_gb_min: float = Field(gt=0, description="Least RAM we support on this board, GiB.")
    ram_gb_recommended: float = Field(gt=0, description="RAM we recommend, GiB.")
    pipeline_workers: int = Field(
        ge=1, description="Default page-processing worker processes (OCR runs one per worker)."
    )
    omp_thread_limit: int = Field(
        default=1,
        ge=1,
        description="OMP_THREAD_LIMIT for tesseract; 1 (docs/design.md §8: OpenMP is 5x slower).",
    )
    storage: str = Field(description="Storage advice for the data directory.")
    default_button: str = Field(description="Id of the button profile to use when none is set.")
    notes: tuple[str, ...] = Field(default=(), description="Further advice.")
    quirks: tuple[Quirk, ...] = Field(default=(), description="Known oddities with evidence.")
    cite: dict[str, str] = Field(default_factory=dict, description="Sources for the figures.")

    @model_validator(mode="after")
    def _checks(self) -> BoardProfile:
        if self.ram_gb_recommended < self.ram_gb_min:
            raise ValueError(f"board {self.id}: ram_gb_recommended < ram_gb_min")
        if "cpu_cores" not in self.cite:
            raise ValueError(f"board {self.id}: no [cite] entry for cpu_cores")
        return self


class UsbId(_Strict):
    """A USB id with what it is."""

    id: str = Field(pattern=r"^[0-9a-f]{4}:[0-9a-f]{4}$", description="'vvvv:pppp', lower-case.")
    chip: str = Field(description="Chip or device family behind the id.")
    source: str = Field(description="Where the id is documented.")


class ButtonProfile(_Strict):
    """A way for the operator to say 'scan' / 'done' without a screen."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Unique id, the file stem.")
    name: str = Field(description="Human name.")
    kind: Literal["button"] = Field(description="Always 'button'.")
    transport: Literal["serial-line", "modem-lines", "input-event", "sane-sensor"] = Field(
        description="How presses reach us: text lines on a serial port, modem status lines "
        "(CTS/DSR) of a serial adapter, Linux input events, or polled SANE sensor options.",
    )
    usb_ids: tuple[UsbId, ...] = Field(default=(), description="USB ids of suitable adapters.")
    baud: int | None = Field(default=None, description="Serial speed for 'serial-line'.")
    debounce_ms: int = Field(ge=0, description="Ignore edges closer together than this.")
    long_press_ms: int = Field(ge=0, description="A press at least this long is a long press.")
    poll_ms: int | None = Field(
        default=None, ge=1, description="Polling period for transports that must be polled."
    )
    key_codes: tuple[str, ...] = Field(
        default=(), description="Linux input key names accepted as 'scan' (input-event)."
    )
    protocol: str = Field(description="The line protocol or signal convention, in words.")
    quirks: tuple[Quirk, ...] = Field(default=(), description="Known oddities with evidence.")
    cite: dict[str, str] = Field(default_factory=dict, description="Sources.")

    @model_validator(mode="after")
    def _checks(self) -> ButtonProfile:
        if self.transport == "serial-line" and self.baud is None:
            raise ValueError(f"button {self.id}: serial-line needs a baud rate")
        if self.transport == "input-event" and not self.key_codes:
            raise ValueError(f"button {self.id}: input-event needs key_codes")
        if self.transport in ("modem-lines", "sane-sensor") and self.poll_ms is None:
            raise ValueError(f"button {self.id}: {self.transport} is polled; give poll_ms")
        return self
