"""Turning our scan request into the exact SANE settings one backend wants.

This module owns `plan_scan` and `resolve_options`: from a logical request ("ADF duplex,
grey, 300 dpi, A4"), the device's profile and the options it offers now, the option values
to set in order ("ADF Duplex", "Gray", 300, ...) and every adjustment with its reason. When a
backend spells something differently, fix the profile, not this code. It must not touch a
device or read files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field

from agent.profiles.models import (
    A4_MM,
    LogicalMode,
    LogicalSource,
    OptionChoice,
    OptionValue,
    ProfileError,
    ScannerProfile,
    SettingValue,
    _Strict,
)
from agent.profiles.sane_options import OptionInfo, OptionRange, _numbers, _strings

log = logging.getLogger(__name__)


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
