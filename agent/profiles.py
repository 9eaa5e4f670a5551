"""Hardware profiles: load them, pick one for a device, turn a scan request into SANE options.

This module owns the *meaning* of the TOML files under `hw_profiles/` (scanners, boards,
button boxes) and the translation from our logical scan request ("ADF duplex, grey, 300 dpi,
A4") into the exact option values one SANE backend wants ("ADF Duplex", "Gray", 300, ...).
Hardware quirks are data (docs/architecture.md, STYLE.md): when a backend spells something
differently, fix the profile, not this code.

It must not import `sane` or touch a device: `agent/sane_device.py` owns python-sane and
hands us what the device reports, either converted with `options_from_sane()` or, in tests,
parsed from a captured `scanimage -A` dump with `parse_scanimage_dump()`.
"""

from __future__ import annotations

import logging
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.errors import SohoaError

log = logging.getLogger(__name__)

LogicalSource = Literal["flatbed", "adf", "adf_duplex"]
LogicalMode = Literal["color", "gray", "lineart"]
OptionValue = str | bool | int | float
SettingValue = str | int | float

# Site profiles live here and are read after the packaged ones (same id: the site wins).
SITE_PROFILE_DIR = Path("/etc/sohoa/hw_profiles")

A4_MM = (210.0, 297.0)


class ProfileError(SohoaError):
    """A profile file is invalid, or a request cannot be met by the profile or the device."""


# --------------------------------------------------------------------------------------
# Models: what a profile file may contain. Strict: unknown keys are errors.
# --------------------------------------------------------------------------------------


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
        description="OMP_THREAD_LIMIT for tesseract; 1 (DESIGN.md §8: OpenMP is 5x slower).",
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


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

_P = TypeVar("_P", ScannerProfile, BoardProfile, ButtonProfile)


def _toml_files(folder: Traversable | Path) -> list[tuple[str, bytes]]:
    if not folder.is_dir():
        return []
    found = [(entry.name, entry.read_bytes()) for entry in folder.iterdir()]
    return sorted((name, data) for name, data in found if name.endswith(".toml"))


def _packaged_dirs(subdir: str) -> list[Traversable | Path]:
    try:
        return [resources.files("hw_profiles").joinpath(subdir)]
    except NotADirectoryError:
        # An editable install made while hw_profiles/ had no __init__.py maps it as a namespace
        # package whose __path__ holds a non-directory hook entry, and importlib.resources
        # refuses that. Fall back to the real directories on __path__.
        import hw_profiles

        return [Path(p) / subdir for p in hw_profiles.__path__ if Path(p).is_dir()]


def _load(model: type[_P], subdir: str, extra_dir: Path | None) -> list[_P]:
    folders: list[tuple[str, Traversable | Path]] = [
        (f"hw_profiles/{subdir}", folder) for folder in _packaged_dirs(subdir)
    ]
    if extra_dir is not None:
        folders.append((str(extra_dir / subdir), extra_dir / subdir))
    by_id: dict[str, _P] = {}
    for label, folder in folders:
        seen_here: set[str] = set()
        for filename, data in _toml_files(folder):
            where = f"{label}/{filename}"
            try:
                raw = tomllib.loads(data.decode("utf-8"))
                profile = model.model_validate(raw)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValidationError) as exc:
                raise ProfileError("profile.invalid", f"{where}: {exc}") from exc
            if profile.id != filename.removesuffix(".toml"):
                raise ProfileError("profile.invalid", f"{where}: id {profile.id!r} != file name")
            if profile.id in seen_here:  # pragma: no cover - file names are unique per folder
                raise ProfileError("profile.duplicate", where)
            seen_here.add(profile.id)
            if profile.id in by_id:
                log.info("profile %s from %s overrides the packaged one", profile.id, where)
            by_id[profile.id] = profile
    return list(by_id.values())


def load_scanner_profiles(extra_dir: Path | None = None) -> list[ScannerProfile]:
    """Packaged scanner profiles, then those in `extra_dir/scanners` (same id: site wins)."""
    profiles = _load(ScannerProfile, "scanners", extra_dir)
    if not any(p.id == "generic" for p in profiles):
        raise ProfileError("profile.invalid", "no 'generic' scanner profile")
    return profiles


def load_board_profiles(extra_dir: Path | None = None) -> list[BoardProfile]:
    """Packaged board profiles, then those in `extra_dir/boards`."""
    return _load(BoardProfile, "boards", extra_dir)


def load_button_profiles(extra_dir: Path | None = None) -> list[ButtonProfile]:
    """Packaged button profiles, then those in `extra_dir/buttons`."""
    return _load(ButtonProfile, "buttons", extra_dir)


# --------------------------------------------------------------------------------------
# Matching a device to a profile
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaneDeviceInfo:
    """What `sane.get_devices()` says about one device, plus the USB id when known."""

    name: str  # "fujitsu:fi-7160:12345", "net:10.0.0.5:fujitsu:fi-7260:1", "test:0"
    vendor: str = ""
    model: str = ""
    type: str = ""
    usb_id: str | None = None  # "04c5:132e"

    @property
    def backend(self) -> str:
        """Backend part of the name; a saned 'net:<host>:' prefix is skipped."""
        name = self.name
        if name.startswith("net:"):
            rest = name[4:]
            # An IPv6 host is bracketed: net:[::1]:backend:...
            name = rest.partition("]:")[2] if rest.startswith("[") else rest.partition(":")[2]
        return name.split(":", 1)[0]


# Weights: a USB id names one product; a model string nearly so; vendor and backend are broad.
_WEIGHT_BACKEND, _WEIGHT_VENDOR, _WEIGHT_MODEL, _WEIGHT_USB = 1, 2, 4, 8


def _score(profile: ScannerProfile, device: SaneDeviceInfo) -> int | None:
    """Match strength, or None when any given criterion fails. 0: no criteria at all."""
    m = profile.match
    score = 0
    if m.backend is not None:
        if m.backend != device.backend:
            return None
        score += _WEIGHT_BACKEND
    if m.vendor is not None:
        if not re.search(m.vendor, device.vendor, re.IGNORECASE):
            return None
        score += _WEIGHT_VENDOR
    if m.model is not None:
        if not re.search(m.model, device.model, re.IGNORECASE):
            return None
        score += _WEIGHT_MODEL
    if m.usb_ids:
        usb = (device.usb_id or "").lower()
        if usb in m.usb_ids:
            score += _WEIGHT_USB
        elif m.model is None and m.vendor is None:
            return None  # the USB id was the only product criterion and it failed
    return score


def match_scanner(device: SaneDeviceInfo, profiles: Sequence[ScannerProfile]) -> ScannerProfile:
    """The most specific profile whose criteria all hold; `generic` when none does.

    Ties are broken by profile id so the choice never depends on file order.
    """
    best: tuple[int, str] | None = None
    chosen: ScannerProfile | None = None
    generic: ScannerProfile | None = None
    for profile in profiles:
        if profile.id == "generic":
            generic = profile
            continue
        score = _score(profile, device)
        if score is None or score == 0:
            continue
        key = (score, profile.id)
        if best is None or key[0] > best[0] or (key[0] == best[0] and key[1] < best[1]):
            best, chosen = key, profile
    if chosen is not None:
        return chosen
    if generic is None:
        raise ProfileError("profile.no_generic", "no 'generic' scanner profile loaded")
    return generic


# --------------------------------------------------------------------------------------
# What a device offers
# --------------------------------------------------------------------------------------

OptionType = Literal["bool", "int", "fixed", "string", "button", "group"]
OptionUnit = Literal["none", "pixel", "bit", "mm", "dpi", "percent", "microsecond"]


@dataclass(frozen=True)
class OptionRange:
    """A SANE range constraint; step 0 means any value in [min, max]."""

    min: float
    max: float
    step: float = 0.0


Constraint = tuple[str, ...] | tuple[float, ...] | OptionRange | None


@dataclass(frozen=True)
class OptionInfo:
    """One SANE option as the device reports it right now.

    `constraint` is a tuple of strings (string list), a tuple of numbers (word list),
    an `OptionRange`, or None. Ranges are a named type, not a 3-tuple, so that a word list
    of three resolutions (75|150|300) cannot be mistaken for a range.
    """

    name: str
    type: OptionType
    unit: OptionUnit = "none"
    constraint: Constraint = None
    active: bool = True
    settable: bool = True
    hardware: bool = False  # a button or sensor, changed by the user at the device


def _strings(constraint: Constraint) -> tuple[str, ...] | None:
    if isinstance(constraint, tuple) and all(isinstance(v, str) for v in constraint):
        return tuple(str(v) for v in constraint)
    return None


def _numbers(constraint: Constraint) -> tuple[float, ...] | None:
    if isinstance(constraint, tuple) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in constraint
    ):
        return tuple(float(v) for v in constraint)
    return None


# python-sane constants (sane.h): types, units, capability bits.
_SANE_TYPES: dict[int, OptionType] = {
    0: "bool",
    1: "int",
    2: "fixed",
    3: "string",
    4: "button",
    5: "group",
}
_SANE_UNITS: dict[int, OptionUnit] = {
    0: "none",
    1: "pixel",
    2: "bit",
    3: "mm",
    4: "dpi",
    5: "percent",
    6: "microsecond",
}
_CAP_SOFT_SELECT, _CAP_HARD_SELECT, _CAP_INACTIVE = 1, 2, 32


def options_from_sane(option_tuples: Iterable[Sequence[Any]]) -> dict[str, OptionInfo]:
    """Convert python-sane `SaneDev.get_options()` tuples to OptionInfo, keyed by SANE name.

    Each tuple is (index, name, title, desc, type, unit, size, cap, constraint). Names keep
    SANE's '-' spelling ('br-x'); python-sane's attributes use '_' (`dev.br_x`). Groups and
    the nameless option 0 are dropped.
    """
    result: dict[str, OptionInfo] = {}
    for item in option_tuples:
        _index, name, _title, _desc, type_code, unit_code, _size, cap, raw = tuple(item)[:9]
        opt_type = _SANE_TYPES.get(int(type_code), "group")
        if not name or opt_type == "group":
            continue
        constraint: Constraint
        if raw is None:
            constraint = None
        elif isinstance(raw, tuple) and len(raw) == 3:  # python-sane: ranges are 3-tuples
            constraint = OptionRange(float(raw[0]), float(raw[1]), float(raw[2]))
        elif all(isinstance(v, str) for v in raw):
            constraint = tuple(str(v) for v in raw)
        else:
            constraint = tuple(float(v) for v in raw)
        cap = int(cap)
        result[str(name)] = OptionInfo(
            name=str(name),
            type=opt_type,
            unit=_SANE_UNITS.get(int(unit_code), "none"),
            constraint=constraint,
            active=not cap & _CAP_INACTIVE,
            settable=bool(cap & _CAP_SOFT_SELECT),
            hardware=bool(cap & _CAP_HARD_SELECT),
        )
    return result


# scanimage prints four geometry options under short names.
_SHORT_NAMES = {"l": "tl-x", "t": "tl-y", "x": "br-x", "y": "br-y"}
_UNIT_SUFFIXES: tuple[tuple[str, OptionUnit], ...] = (
    ("dpi", "dpi"),
    ("mm", "mm"),
    ("us", "microsecond"),
    ("pel", "pixel"),
    ("bit", "bit"),
    ("%", "percent"),
)
_OPTION_LINE = re.compile(r"^ {4}(--?)(\S.*)$")
_BOOL_OPTION = re.compile(r"^(?P<name>.+?)\[=\((?P<values>[^)]*)\)\](?P<rest>.*)$")
_NUMBER = r"-?\d+(?:\.\d+)?"
_RANGE = re.compile(
    rf"^(?P<min>{_NUMBER})\.\.(?P<max>{_NUMBER})(?P<unit>[a-z%]*)(?P<array>,\.\.\.)?$"
)
_STEPS = re.compile(rf"\s*\(in steps of (?P<step>{_NUMBER})\)")


def _split_trailing_brackets(text: str) -> tuple[str, list[str]]:
    """Split 'A|B [A] [inactive]' into ('A|B', ['A', 'inactive']).

    Only groups that begin after a space count, and brackets nest, so brother4's
    '24bit Color[Fast] [24bit Color[Fast]]' keeps 'Color[Fast]' in the value list.
    """
    groups: list[str] = []
    text = text.rstrip()
    while text.endswith("]"):
        depth = 0
        for pos in range(len(text) - 1, -1, -1):
            if text[pos] == "]":
                depth += 1
            elif text[pos] == "[":
                depth -= 1
                if depth == 0:
                    break
        else:
            break
        if pos > 0 and text[pos - 1] != " ":
            break
        groups.insert(0, text[pos + 1 : -1])
        text = text[:pos].rstrip()
    return text, groups


def _unit_of(text: str) -> tuple[str, OptionUnit]:
    for suffix, unit in _UNIT_SUFFIXES:
        if text.endswith(suffix):
            return text[: -len(suffix)], unit
    return text, "none"


def _parse_option(flag: str, body: str) -> OptionInfo:
    """One `scanimage -A` option line (without its description)."""
    steps = _STEPS.search(body)
    step = float(steps.group("step")) if steps else 0.0
    body = _STEPS.sub("", body)

    bool_match = _BOOL_OPTION.match(body)
    if bool_match:
        name = bool_match.group("name").strip()
        _, flags = _split_trailing_brackets(bool_match.group("rest"))
        return _option(flag, name, "bool", "none", None, flags)

    name, _, rest = body.partition(" ")
    rest = rest.strip()
    spec, flags = _split_trailing_brackets(rest)
    spec = spec.strip()
    if spec.startswith("auto|"):  # the option also accepts 'auto' (SANE_CAP_AUTOMATIC)
        spec = spec[len("auto|") :].lstrip("|")
    if not spec:  # a button ('--print-options') or '--eject []'
        return _option(flag, name, "button", "none", None, flags)
    placeholder = {"<int>": "int", "<float>": "fixed", "<string>": "string"}
    bare = spec.removesuffix(",...")
    if bare in placeholder:
        return _option(flag, name, placeholder[bare], "none", None, flags)  # type: ignore[arg-type]

    range_match = _RANGE.match(spec)
    if range_match:
        unit: OptionUnit = dict(_UNIT_SUFFIXES).get(range_match.group("unit"), "none")
        low, high = float(range_match.group("min")), float(range_match.group("max"))
        numeric_type: OptionType = "int" if _all_integral((low, high, step)) else "fixed"
        if unit == "mm":
            numeric_type = "fixed"
        return _option(flag, name, numeric_type, unit, OptionRange(low, high, step), flags)

    items = [item.strip() for item in bare.split("|")]
    last, unit = _unit_of(items[-1])
    numbers = [*items[:-1], last]
    if all(re.fullmatch(_NUMBER, n) for n in numbers):
        values = tuple(float(n) for n in numbers)
        numeric_type = "int" if _all_integral(values) else "fixed"
        return _option(flag, name, numeric_type, unit, values, flags)
    return _option(flag, name, "string", "none", tuple(items), flags)


def _all_integral(values: Iterable[float]) -> bool:
    return all(float(v).is_integer() for v in values)


def _option(
    flag: str,
    name: str,
    opt_type: OptionType,
    unit: OptionUnit,
    constraint: Constraint,
    flags: list[str],
) -> OptionInfo:
    if flag == "-":
        name = _SHORT_NAMES.get(name, name)
    return OptionInfo(
        name=name,
        type=opt_type,
        unit=unit,
        constraint=constraint,
        active="inactive" not in flags,
        settable="read-only" not in flags and "hardware" not in flags,
        hardware="hardware" in flags,
    )


def parse_scanimage_dump(text: str) -> dict[str, OptionInfo]:
    """Options from `scanimage -A` (or `--help -d dev`) output, keyed by SANE option name.

    Handles string lists ('Flatbed|ADF Front|ADF Duplex [Flatbed]'), ranges ('50..600dpi
    (in steps of 1)'), number lists ('75|150|300dpi'), 'auto|' prefixes, booleans
    ('--preview[=(yes|no)] [no]'), placeholders ('<int>'), the short geometry names
    (-l/-t/-x/-y become tl-x/tl-y/br-x/br-y) and the [inactive]/[read-only]/[hardware] flags.
    Text is only a snapshot: int versus fixed is inferred from the numbers shown.
    """
    options: dict[str, OptionInfo] = {}
    for line in text.splitlines():
        match = _OPTION_LINE.match(line)
        if not match:
            continue  # headers, group titles, descriptions (8 spaces), scanimage warnings
        option = _parse_option(match.group(1), match.group(2))
        options.setdefault(option.name, option)
    return options


# --------------------------------------------------------------------------------------
# Turning a request into settings
# --------------------------------------------------------------------------------------


class ScanRequest(_Strict):
    """What the operator asked for, in our words."""

    source: LogicalSource = Field(description="Where the paper is.")
    mode: LogicalMode = Field(default="color", description="Colour mode.")
    dpi: int = Field(default=300, gt=0, le=9600, description="Wanted resolution, dots per inch.")
    page_width_mm: float = Field(
        default=A4_MM[0], gt=0, description="Paper width, mm; A4 unless told otherwise."
    )
    page_height_mm: float = Field(
        default=A4_MM[1], gt=0, description="Paper height, mm; A4 unless told otherwise."
    )


@dataclass(frozen=True)
class Adjustment:
    """A place where the settings differ from the request, and why."""

    option: str
    requested: OptionValue
    applied: OptionValue | None  # None: option left alone
    reason: str


@dataclass(frozen=True)
class ResolvedScan:
    """Exact settings, in the order to apply them, and what had to be adjusted."""

    settings: dict[str, SettingValue]
    adjustments: tuple[Adjustment, ...]


def _usable(available: Mapping[str, OptionInfo], name: str) -> OptionInfo | None:
    info = available.get(name)
    if info is None or not info.active or not info.settable:
        return None
    return info


def _accepts(info: OptionInfo, value: OptionValue) -> bool:
    strings = _strings(info.constraint)
    if strings is not None:
        return isinstance(value, str) and value in strings
    if isinstance(value, str):
        return info.type == "string" and info.constraint is None
    numbers = _numbers(info.constraint)
    if numbers is not None:
        return any(math.isclose(float(value), n) for n in numbers)
    if isinstance(info.constraint, OptionRange):
        return info.constraint.min <= float(value) <= info.constraint.max
    return True


def _pick_choice(
    kind: str,
    logical: str,
    choices: tuple[OptionChoice, ...] | None,
    option_name: str,
    available: Mapping[str, OptionInfo],
    supported: list[str],
) -> OptionChoice | None:
    """First profile choice the device offers; None when the device has no such option."""
    if choices is None:
        raise ProfileError(
            f"profile.{kind}_unsupported",
            f"{kind} {logical!r} is not supported by this scanner profile; "
            f"it supports: {', '.join(supported) or 'nothing'}",
            wanted=logical,
            supported=supported,
        )
    info = _usable(available, option_name)
    if info is None:
        return None
    for choice in choices:
        if _accepts(info, choice.value) and all(
            (opt := _usable(available, k)) is not None and _accepts(opt, v)
            for k, v in choice.set.items()
        ):
            return choice
    offered = list(_strings(info.constraint) or ())
    raise ProfileError(
        f"profile.{kind}_unavailable",
        f"{kind} {logical!r} (tried {', '.join(repr(c.value) for c in choices)}) is not offered "
        f"by the device; its {option_name!r} offers: {', '.join(offered) or 'nothing'}",
        wanted=logical,
        offered=offered,
    )


def _pick_resolution(
    profile: ScannerProfile, dpi: int, info: OptionInfo
) -> tuple[SettingValue, str | None]:
    for preferred in sorted(profile.resolutions):
        if preferred >= dpi and _accepts(info, preferred):
            return preferred, None if preferred == dpi else "nearest optical resolution above"
    numbers = _numbers(info.constraint)
    if numbers is not None:
        ints = sorted(int(n) if n.is_integer() else n for n in numbers)
        above = [n for n in ints if n >= dpi]
        if above:
            return above[0], None if above[0] == dpi else "nearest offered resolution above"
        return ints[-1], "device maximum is below the request"
    if isinstance(info.constraint, OptionRange):
        rng = info.constraint
        if dpi <= rng.min:
            value = rng.min
        elif dpi >= rng.max:
            value = rng.max
        elif rng.step > 0:
            value = rng.min + math.ceil((dpi - rng.min) / rng.step - 1e-9) * rng.step
        else:
            value = float(dpi)
        value = min(value, rng.max)
        chosen: SettingValue = int(value) if float(value).is_integer() else value
        if chosen == dpi:
            return chosen, None
        return chosen, "clamped to the device range" if value in (rng.min, rng.max) else "step"
    return dpi, None


def _clamp(
    name: str,
    wanted: float,
    info: OptionInfo,
    adjustments: list[Adjustment],
) -> float:
    if isinstance(info.constraint, OptionRange):
        low, high = info.constraint.min, info.constraint.max
        value = min(max(wanted, low), high)
        if value != wanted:
            adjustments.append(
                Adjustment(name, wanted, value, f"device range is {low:g}..{high:g} mm")
            )
        return value
    return wanted


def plan_scan(
    profile: ScannerProfile, request: ScanRequest, available: Mapping[str, OptionInfo]
) -> ResolvedScan:
    """Exact backend settings for `request`, checked against what the device offers now.

    Settings come in the order to apply them: source first (some backends reset mode and
    resolution or change geometry limits when the source changes, e.g. pixma's help text
    and the two fi-7260 dumps), then the options the source's choice needs, mode, resolution,
    paper size, scan area. Options the device reports inactive are left alone and reported;
    a caller that changes the source should read the options again and plan once more.
    Raises ProfileError when the source or mode is unsupported, naming what is offered.
    """
    names = profile.options
    settings: dict[str, SettingValue] = {}
    adjustments: list[Adjustment] = []

    source = _pick_choice(
        "source",
        request.source,
        profile.sources.get(request.source),
        names.source,
        available,
        profile.sources.supported(),
    )
    if source is None:
        # No settable source option (umax1220u, plustek, epson2 without feeder): a flatbed.
        if request.source != "flatbed":
            raise ProfileError(
                "profile.source_unavailable",
                f"source {request.source!r} needs a {names.source!r} option; the device has "
                "none that can be set (flatbed only)",
                wanted=request.source,
                offered=[],
            )
        adjustments.append(
            Adjustment(names.source, request.source, None, "no settable source option")
        )
    else:
        settings[names.source] = source.value
        settings.update(_setting_values(source.set))

    mode = _pick_choice(
        "mode",
        request.mode,
        profile.modes.get(request.mode),
        names.mode,
        available,
        profile.modes.supported(),
    )
    if mode is None:
        raise ProfileError(
            "profile.mode_unavailable",
            f"mode {request.mode!r} needs a settable {names.mode!r} option; the device has none",
            wanted=request.mode,
            offered=[],
        )
    settings[names.mode] = mode.value
    settings.update(_setting_values(mode.set))

    resolution = _usable(available, names.resolution)
    if resolution is None:
        raise ProfileError(
            "profile.option_missing",
            f"the device has no settable {names.resolution!r} option",
        )
    dpi, why = _pick_resolution(profile, request.dpi, resolution)
    settings[names.resolution] = dpi
    if why is not None:
        adjustments.append(Adjustment(names.resolution, request.dpi, dpi, why))

    width, height = request.page_width_mm, request.page_height_mm
    if request.source != "flatbed":
        for name, wanted in ((names.page_width, width), (names.page_height, height)):
            info = available.get(name)
            if info is None:
                continue
            if not info.active:
                adjustments.append(Adjustment(name, wanted, None, "option inactive now"))
                continue
            settings[name] = _clamp(name, wanted, info, adjustments)

    area = ((names.tl_x, 0.0), (names.tl_y, 0.0), (names.br_x, width), (names.br_y, height))
    for name, wanted in area:
        info = available.get(name)
        if info is None:
            continue
        if not info.active or not info.settable:
            adjustments.append(Adjustment(name, wanted, None, "option inactive now"))
            continue
        settings[name] = _clamp(name, wanted, info, adjustments)

    return ResolvedScan(settings=settings, adjustments=tuple(adjustments))


def _setting_values(values: Mapping[str, OptionValue]) -> dict[str, SettingValue]:
    return {k: (int(v) if isinstance(v, bool) else v) for k, v in values.items()}


def resolve_options(
    profile: ScannerProfile, request: ScanRequest, available: Mapping[str, OptionInfo]
) -> dict[str, SettingValue]:
    """`plan_scan(...).settings`, logging each adjustment (e.g. the test backend's 200 mm)."""
    plan = plan_scan(profile, request, available)
    for adj in plan.adjustments:
        log.info(
            "scan option adjusted profile=%s option=%s requested=%r applied=%r reason=%s",
            profile.id,
            adj.option,
            adj.requested,
            adj.applied,
            adj.reason,
        )
    return plan.settings
