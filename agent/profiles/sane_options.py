"""What a device offers: SANE options, from python-sane or from a captured dump.

This module owns `OptionInfo` and its two sources: `options_from_sane()` converts what
python-sane reports (called by `agent.capture.sane_device`), `parse_scanimage_dump()` reads a
captured `scanimage -A` listing (the test fixtures). It must not import `sane` or touch a
device, and must not decide which values to set (`planning`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

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
