"""Hardware profiles: load them, pick one for a device, turn a scan request into SANE options.

This package owns the *meaning* of the TOML files under `hw_profiles/` (scanners, boards,
button boxes) and the translation from our logical scan request ("ADF duplex, grey, 300 dpi,
A4") into the exact option values one SANE backend wants ("ADF Duplex", "Gray", 300, ...).
Hardware quirks are data (docs/architecture.md, docs/style.md): when a backend spells something
differently, fix the profile, not this code. Its rooms:

* `models` — what a profile file may contain (strict pydantic models), shared types;
* `loading` — reading the packaged and the site's profile files;
* `matching` — the scanner profile for a device SANE lists;
* `sane_options` — what a device offers, from python-sane or a captured `scanimage -A` dump;
* `planning` — a scan request → the exact settings, with every adjustment explained.

It must not import `sane` or touch a device: `agent/sane_device.py` owns python-sane and
hands us what the device reports, either converted with `options_from_sane()` or, in tests,
parsed from a captured `scanimage -A` dump with `parse_scanimage_dump()`. Import the public
names from here (`from agent.profiles import ScanRequest`); the modules are its layout.
"""

from __future__ import annotations

from agent.profiles.loading import (
    SITE_PROFILE_DIR,
    load_board_profiles,
    load_button_profiles,
    load_scanner_profiles,
)
from agent.profiles.matching import (
    SaneDeviceInfo,
    match_scanner,
)
from agent.profiles.models import (
    A4_MM,
    BoardProfile,
    ButtonProfile,
    Choices,
    LogicalMode,
    LogicalSource,
    ModeMap,
    OptionChoice,
    OptionNames,
    OptionValue,
    PaperSize,
    ProfileError,
    Quirk,
    ScannerCiteKey,
    ScannerMatch,
    ScannerProfile,
    Sensors,
    SettingValue,
    SourceMap,
    UsbId,
)
from agent.profiles.planning import (
    Adjustment,
    ResolvedScan,
    ScanRequest,
    plan_scan,
    resolve_options,
)
from agent.profiles.sane_options import (
    Constraint,
    OptionInfo,
    OptionRange,
    OptionType,
    OptionUnit,
    options_from_sane,
    parse_scanimage_dump,
)

__all__ = [
    "A4_MM",
    "SITE_PROFILE_DIR",
    "Adjustment",
    "BoardProfile",
    "ButtonProfile",
    "Choices",
    "Constraint",
    "LogicalMode",
    "LogicalSource",
    "ModeMap",
    "OptionChoice",
    "OptionInfo",
    "OptionNames",
    "OptionRange",
    "OptionType",
    "OptionUnit",
    "OptionValue",
    "PaperSize",
    "ProfileError",
    "Quirk",
    "ResolvedScan",
    "SaneDeviceInfo",
    "ScanRequest",
    "ScannerCiteKey",
    "ScannerMatch",
    "ScannerProfile",
    "Sensors",
    "SettingValue",
    "SourceMap",
    "UsbId",
    "load_board_profiles",
    "load_button_profiles",
    "load_scanner_profiles",
    "match_scanner",
    "options_from_sane",
    "parse_scanimage_dump",
    "plan_scan",
    "resolve_options",
]
