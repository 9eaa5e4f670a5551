"""Hardware profiles: files validate, matching picks the right one, requests resolve
against real `scanimage -A` captures (tests/fixtures/scanimage/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.profiles import (
    OptionChoice,
    OptionInfo,
    OptionRange,
    ProfileError,
    SaneDeviceInfo,
    ScannerProfile,
    ScanRequest,
    load_board_profiles,
    load_button_profiles,
    load_scanner_profiles,
    match_scanner,
    options_from_sane,
    parse_scanimage_dump,
    plan_scan,
    resolve_options,
)

DUMPS = Path(__file__).parent / "fixtures" / "scanimage"
DUMP_FILES = sorted(DUMPS.glob("*.txt"))
SCANNERS = load_scanner_profiles()
BY_ID = {p.id: p for p in SCANNERS}


def _dump_backend(path: Path) -> str:
    text = path.read_text()
    found = re.search(r"All options specific to device `([^']+)'", text)
    assert found, path
    return SaneDeviceInfo(name=found.group(1)).backend


def _dump(name: str) -> dict[str, OptionInfo]:
    return parse_scanimage_dump((DUMPS / name).read_text())


# --- files ---------------------------------------------------------------------------


def test_every_profile_file_validates_and_ids_are_unique() -> None:
    boards, buttons = load_board_profiles(), load_button_profiles()
    ids = [p.id for p in SCANNERS] + [b.id for b in boards] + [b.id for b in buttons]
    assert len(ids) == len(set(ids))
    assert len([p for p in SCANNERS if p.status != "fallback"]) >= 8
    assert {"generic", "test"} <= set(BY_ID)
    assert {b.id for b in boards} >= {"raspberry-pi-4", "raspberry-pi-5", "x86-workstation"}
    assert {b.id for b in buttons} >= {"serial-box", "modem-line", "usb-key", "scanner-button"}
    for board in boards:
        assert board.default_button in {b.id for b in buttons}


def test_every_quirk_and_citation_has_a_source() -> None:
    profiles = [*SCANNERS, *load_board_profiles(), *load_button_profiles()]
    for profile in profiles:
        for quirk in profile.quirks:
            assert quirk.source.strip(), (profile.id, quirk.what)
        for key, text in profile.cite.items():
            assert text.strip(), (profile.id, key)


def test_uncited_figure_is_refused() -> None:
    raw = BY_ID["fujitsu-fi-7160"].model_dump()
    del raw["cite"]["speed_ppm"]
    with pytest.raises(ValueError, match="speed_ppm"):
        ScannerProfile.model_validate(raw)


def test_site_directory_overrides_and_adds(tmp_path: Path) -> None:
    (tmp_path / "scanners").mkdir()
    text = (Path(__file__).parents[1] / "hw_profiles/scanners/test.toml").read_text()
    (tmp_path / "scanners" / "test.toml").write_text(text.replace("frontend tester", "site"))
    profiles = {p.id: p for p in load_scanner_profiles(tmp_path)}
    assert "site" in profiles["test"].name
    (tmp_path / "scanners" / "broken.toml").write_text('id = "broken"\nkind = "scanner"\n')
    with pytest.raises(ProfileError) as err:
        load_scanner_profiles(tmp_path)
    assert err.value.key == "profile.invalid"


# --- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize("path", DUMP_FILES, ids=lambda p: p.name)
def test_parser_handles_every_dump(path: Path) -> None:
    options = parse_scanimage_dump(path.read_text())
    assert "resolution" in options
    assert options["resolution"].unit == "dpi"
    geometry = [n for n in ("tl-x", "tl-y", "br-x", "br-y") if n in options]
    assert geometry, "every capture shows at least one of -l/-t/-x/-y"
    for name in geometry:
        assert isinstance(options[name].constraint, OptionRange), name
        assert options[name].unit == "mm"


def test_parser_details() -> None:
    fi = _dump("scanimage-a12-flatbed.txt")
    assert fi["source"].constraint == ("Flatbed", "ADF Front", "ADF Back", "ADF Duplex")
    assert fi["resolution"].constraint == OptionRange(50, 600, 1)
    assert fi["page-width"].active is False
    assert fi["br-x"].constraint == OptionRange(0, 227.809, 0.0211639)
    assert fi["scan"].hardware
    assert not fi["scan"].settable
    assert fi["scan"].type == "bool"
    assert fi["function"].type == "int"
    assert fi["function"].hardware
    assert fi["side"].settable is False  # [read-only]
    brother = _dump("scanimage-a6.txt")
    assert brother["mode"].constraint == (
        "Black & White",
        "Gray[Error Diffusion]",
        "True Gray",
        "24bit Color[Fast]",
    )
    pixma = _dump("scanimage-a5.txt")
    assert pixma["resolution"].constraint == (75, 150, 300, 600, 1200)
    assert pixma["button-update"].type == "button"
    assert pixma["br-x"].constraint == OptionRange(0, 216.069, 0)
    plustek = _dump("scanimage-a1.txt")
    assert plustek["button 0"].hardware
    assert plustek["source"].active is False
    assert plustek["depth"].constraint == (8, 16)
    assert plustek["depth"].unit == "bit"
    test = _dump("test-backend.txt")
    assert test["read-delay-duration"].constraint == OptionRange(1000, 200000, 1000)
    assert test["read-delay-duration"].unit == "microsecond"
    assert test["fixed-constraint-word-list"].constraint == (-32.7, 12.1, 42, 129.5)
    assert test["fixed-constraint-word-list"].type == "fixed"
    assert test["string"].type == "string"
    assert test["string"].constraint is None
    epson = _dump("scanimage-a7.txt")
    assert epson["bay"].constraint == (1, 2, 3, 4, 5, 6)


def test_options_from_sane_converts_python_sane_tuples() -> None:
    tuples = [
        (0, "", "Number of options", "", 1, 0, 4, 4, None),
        (1, "", "Scan Mode", "", 5, 0, 0, 0, None),
        (2, "mode", "Scan mode", "", 3, 0, 6, 5, ["Gray", "Color"]),
        (3, "depth", "Bit depth", "", 1, 0, 4, 5, [1, 8, 16]),
        (5, "three-pass", "", "", 0, 0, 4, 37, None),
        (7, "resolution", "", "", 2, 4, 4, 5, (1.0, 1200.0, 1.0)),
        (26, "br-x", "", "", 2, 3, 4, 5, (0.0, 200.0, 1.0)),
        (30, "bool-hard-select-soft-detect", "", "", 0, 0, 4, 102, None),
    ]
    options = options_from_sane(tuples)
    assert set(options) == {"mode", "depth", "three-pass", "resolution", "br-x",
                            "bool-hard-select-soft-detect"}  # fmt: skip
    assert options["mode"].constraint == ("Gray", "Color")
    assert options["depth"].constraint == (1, 8, 16)  # a 3-item word list, not a range
    assert options["resolution"] == OptionInfo(
        "resolution", "fixed", "dpi", OptionRange(1, 1200, 1), True, True, False
    )
    assert options["three-pass"].active is False
    assert options["bool-hard-select-soft-detect"].hardware
    assert not options["bool-hard-select-soft-detect"].settable


# --- matching ------------------------------------------------------------------------


D = SaneDeviceInfo
MATCH_CASES = [
    (D("fujitsu:fi-7160:12345", "FUJITSU", "fi-7160", "scanner"), "fujitsu-fi-7160"),
    (D("fujitsu:libusb:001:004", "FUJITSU", "fi-8170", usb_id="04c5:15ff"), "fujitsu-fi-8170"),
    (D("net:10.0.0.5:fujitsu:fi-7160:1", "FUJITSU", "fi-7160"), "fujitsu-fi-7160"),
    (D("fujitsu:ScanSnap iX1600:77", "FUJITSU", "ScanSnap iX1600"), "fujitsu-scansnap-ix1600"),
    (D("canon_dr:libusb:001:005", "CANON", "DR-C225", usb_id="1083:1658"), "canon-dr-c225-ii"),
    (D("canon_dr:libusb:001:006", "CANON", "DR-M260"), "canon-dr-m260"),
    (D("epsonds:libusb:001:007", "Epson", "DS-530II"), "epson-ds-530-ii"),
    (D("epson2:net:192.168.1.141", "Epson", "WF-4830"), "epson2-family"),
    (D("brother4:bus9;dev1", "Brother", "ADS-2200"), "brother-ads-2200"),
    (
        D("hpaio:/usb/ScanJet_Pro_2000_s2?serial=X", "Hewlett-Packard", "ScanJet_Pro_2000_s2"),
        "hp-scanjet-pro-2000-s2",
    ),
    (D("test:0", "Noname", "frontend-tester", "virtual device"), "test"),
    (D("net:[::1]:test:1", "Noname", "frontend-tester"), "test"),
    # A model regex still matches when the USB id is unknown or different.
    (D("canon_dr:libusb:001:005", "CANON", "DR-C225", usb_id="1083:9999"), "canon-dr-c225-ii"),
    # Unknown model of a known backend, and unknown backends: generic.
    (D("fujitsu:fi-7260:1208958", "FUJITSU", "fi-7260"), "generic"),
    (D("xerox_mfp:libusb:001:003", "Xerox", "WorkCentre 3025"), "generic"),
    (D("airscan:e0:Canon TR8500 series", "Canon", "TR8500 series"), "generic"),
]


@pytest.mark.parametrize(("device", "expected"), MATCH_CASES, ids=[d.name for d, _ in MATCH_CASES])
def test_match_scanner(device: SaneDeviceInfo, expected: str) -> None:
    assert match_scanner(device, SCANNERS).id == expected


def test_more_specific_profile_wins_over_family() -> None:
    generic_fujitsu = BY_ID["test"].model_copy(
        update={"id": "a-fujitsu-family", "match": BY_ID["test"].match.model_copy(
            update={"backend": "fujitsu"})}
    )  # fmt: skip
    device = SaneDeviceInfo("fujitsu:fi-7160:1", "FUJITSU", "fi-7160", usb_id="04c5:132e")
    assert match_scanner(device, [*SCANNERS, generic_fujitsu]).id == "fujitsu-fi-7160"
    other = SaneDeviceInfo("fujitsu:fi-7260:1", "FUJITSU", "fi-7260")
    assert match_scanner(other, [*SCANNERS, generic_fujitsu]).id == "a-fujitsu-family"


# --- resolving against captures --------------------------------------------------------

LOGICAL_SOURCES = ("flatbed", "adf", "adf_duplex")


def _offered_sources(profile: ScannerProfile, options: dict[str, OptionInfo]) -> list[str]:
    """Logical sources of the profile whose first-listed values the dump offers."""
    source = options.get(profile.options.source)
    offered = set(source.constraint) if source and isinstance(source.constraint, tuple) else set()
    usable = source is not None and source.active and source.settable
    result = []
    for logical in LOGICAL_SOURCES:
        choices = profile.sources.get(logical)  # type: ignore[arg-type]
        if choices is None:
            continue
        device_has_it = usable and any(c.value in offered for c in choices)
        if device_has_it or (not usable and logical == "flatbed"):
            result.append(logical)
    return result


PAIRS = [
    (profile, path)
    for profile in SCANNERS
    for path in DUMP_FILES
    if profile.match.backend is not None and profile.match.backend == _dump_backend(path)
]


def test_profiles_with_captures_exist() -> None:
    covered = {p.id for p, _ in PAIRS}
    assert {"fujitsu-fi-7160", "epson2-family", "plustek-family", "test"} <= covered


@pytest.mark.parametrize(("profile", "path"), PAIRS, ids=[f"{p.id}-{d.stem}" for p, d in PAIRS])
def test_profile_resolves_against_capture_of_its_backend(
    profile: ScannerProfile, path: Path
) -> None:
    options = parse_scanimage_dump(path.read_text())
    sources = _offered_sources(profile, options)
    unsupported = [s for s in LOGICAL_SOURCES if s not in sources]
    for source in sources:
        for mode in ("color", "gray"):
            request = ScanRequest(source=source, mode=mode, dpi=300)  # type: ignore[arg-type]
            settings = resolve_options(profile, request, options)
            _assert_valid(settings, options)
            assert settings["resolution"] == 300
            mode_choices = profile.modes.get(mode)  # type: ignore[arg-type]
            assert mode_choices is not None
            assert settings[profile.options.mode] in {c.value for c in mode_choices}
    for source in unsupported:
        with pytest.raises(ProfileError) as err:
            resolve_options(profile, ScanRequest(source=source), options)  # type: ignore[arg-type]
        assert err.value.key.startswith("profile.source_")


def _assert_valid(settings: dict[str, str | int | float], options: dict[str, OptionInfo]) -> None:
    for name, value in settings.items():
        info = options[name]
        assert info.active, name
        assert info.settable, name
        if isinstance(info.constraint, OptionRange):
            assert info.constraint.min <= float(value) <= info.constraint.max, name
        elif isinstance(info.constraint, tuple):
            assert value in info.constraint, (name, value)


# The captures whose scanner chooses colour by a ``--mode`` option: every one but the
# UMAX 1220U's, which selects grey with a boolean ``--gray``.
WITH_MODE = [p for p in DUMP_FILES if "mode" in parse_scanimage_dump(p.read_text())]


def test_only_the_umax_capture_has_no_mode_option() -> None:
    without = [p for p in DUMP_FILES if p not in WITH_MODE]
    assert [parse_scanimage_dump(p.read_text()).get("gray") is not None for p in without] == [
        True
    ], [p.name for p in without]
    assert len(WITH_MODE) == len(DUMP_FILES) - 1 >= 10


@pytest.mark.parametrize("path", WITH_MODE, ids=lambda p: p.name)
def test_generic_resolves_colour_300_on_every_capture_with_a_mode_option(path: Path) -> None:
    options = parse_scanimage_dump(path.read_text())
    generic = BY_ID["generic"]
    sources = _offered_sources(generic, options)
    assert sources, path.name
    settings = resolve_options(generic, ScanRequest(source=sources[0], mode="color"), options)  # type: ignore[arg-type]
    _assert_valid(settings, options)
    assert settings["resolution"] == 300


def test_epson2_duplex_is_source_plus_adf_mode() -> None:
    request = ScanRequest(source="adf_duplex", mode="gray")
    settings = resolve_options(BY_ID["epson2-family"], request, _dump("scanimage-a11.txt"))
    assert settings["source"] == "Automatic Document Feeder"
    assert settings["adf-mode"] == "Duplex"
    assert list(settings)[:2] == ["source", "adf-mode"]


def test_flatbed_only_epson2_raises_naming_what_is_offered() -> None:
    options = _dump("scanimage-a2.txt")  # source option inactive: a plain flatbed
    settings = resolve_options(BY_ID["epson2-family"], ScanRequest(source="flatbed"), options)
    assert "source" not in settings
    with pytest.raises(ProfileError) as err:
        resolve_options(BY_ID["epson2-family"], ScanRequest(source="adf"), options)
    assert err.value.key == "profile.source_unavailable"


def test_scansnap_flatbed_request_names_supported_sources() -> None:
    profile = BY_ID["fujitsu-scansnap-ix1600"]
    with pytest.raises(ProfileError) as err:
        resolve_options(profile, ScanRequest(source="flatbed"), _dump("scanimage-a14.txt"))
    assert err.value.key == "profile.source_unsupported"
    assert "adf, adf_duplex" in err.value.detail


def test_unavailable_mode_names_what_the_device_offers() -> None:
    options = _dump("scanimage-a12-adf.txt")
    profile = BY_ID["fujitsu-fi-7160"]
    grey = OptionChoice(value="Grey")  # a typo in a profile: not what fujitsu offers
    broken = profile.model_copy(
        update={"modes": profile.modes.model_copy(update={"gray": (grey,)})}
    )
    with pytest.raises(ProfileError) as err:
        resolve_options(broken, ScanRequest(source="adf", mode="gray"), options)
    assert err.value.key == "profile.mode_unavailable"
    assert "Lineart, Halftone, Gray, Color" in err.value.detail


def test_fujitsu_adf_sets_page_size_before_area_and_flatbed_skips_it() -> None:
    profile = BY_ID["fujitsu-fi-7160"]
    adf = resolve_options(profile, ScanRequest(source="adf_duplex"), _dump("scanimage-a12-adf.txt"))
    keys = list(adf)
    assert adf["page-width"] == 210
    assert adf["page-height"] == 297
    assert keys.index("page-width") < keys.index("br-x")
    plan = plan_scan(
        BY_ID["generic"], ScanRequest(source="adf"), _dump("scanimage-a12-flatbed.txt")
    )
    assert "page-width" not in plan.settings
    assert any(a.option == "page-width" and a.applied is None for a in plan.adjustments)


def test_resolution_choice() -> None:
    epson = _dump("scanimage-a2.txt")  # 75|300|600|1200
    generic = BY_ID["generic"]
    assert (
        resolve_options(generic, ScanRequest(source="flatbed", dpi=200), epson)["resolution"] == 300
    )
    plan = plan_scan(generic, ScanRequest(source="flatbed", dpi=2400), epson)
    assert plan.settings["resolution"] == 1200
    assert plan.adjustments[-1].reason.startswith("device maximum") or any(
        a.option == "resolution" for a in plan.adjustments
    )
    fi = _dump("scanimage-a12-adf.txt")  # 50..600 step 1, profile prefers 150/200/300/400/600
    fi7160 = BY_ID["fujitsu-fi-7160"]
    assert resolve_options(fi7160, ScanRequest(source="adf", dpi=250), fi)["resolution"] == 300
    assert resolve_options(generic, ScanRequest(source="adf", dpi=250), fi)["resolution"] == 250
    assert resolve_options(generic, ScanRequest(source="adf", dpi=900), fi)["resolution"] == 600


def test_test_backend_resolves_and_reports_the_200_mm_clamp() -> None:
    options = _dump("test-backend.txt")
    profile = BY_ID["test"]
    plan = plan_scan(profile, ScanRequest(source="adf", mode="gray", dpi=300), options)
    assert plan.settings == {
        "source": "Automatic Document Feeder",
        "mode": "Gray",
        "resolution": 300,
        "tl-x": 0.0,
        "tl-y": 0.0,
        "br-x": 200.0,
        "br-y": 200.0,
        "select-fd": 1,  # the data pipe, read to its end after an error (sane_device._Frame)
    }
    clamps = {a.option: (a.requested, a.applied) for a in plan.adjustments}
    assert clamps == {"br-x": (210.0, 200.0), "br-y": (297.0, 200.0)}
    lineart = resolve_options(profile, ScanRequest(source="flatbed", mode="lineart"), options)
    assert lineart["mode"] == "Gray"
    assert lineart["depth"] == 1
    assert profile.has_flag("geometry_below_a4")
