"""The archive's own words: Vietnamese first, NFC, the terms of Luật Lưu trữ 2024 and
TT 05/2025, Vietnamese numbers, and no setting or developer hint in an operator line."""

from __future__ import annotations

import re
import unicodedata

import pytest

from agent import messages
from server.web import i18n

# Lines a technician reads at a terminal may name what they typed (a USB folder, a file),
# and the start-up refusals (agent/preflight.py: the service does not start at all, so no
# clerk sees them) name what to install or fix.
MAY_NAME_INPUT = {"coversheet_invalid": {"detail"}, "startup_broker_invalid": {"detail"}}
TECHNICIAN_LINES = {"startup_ocr_missing", "startup_sane_missing", "startup_broker_invalid"}
# Enrolment is done by the technician at the station (issue 14): its lines name the host,
# the station and the command to type on purpose.
TECHNICIAN_LINES |= {"broker_untrusted", "enrol_bad_code", "enrol_bad_reply", "enrol_done",
                     "enrol_plain_refused", "export_not_enrolled", "enrol_usb_done"}  # fmt: skip
SETTINGS = {"scanner", "broker", "detail", "reason", "device"}
DEVELOPER_WORDS = re.compile(r"tesseract|\.toml|SOHOA_|mqtt|sha256|traceback|errno", re.I)


@pytest.mark.parametrize("key", sorted(messages.CATALOG))
def test_operator_lines_carry_no_setting_and_no_developer_hint(key: str) -> None:
    for text in messages.CATALOG[key]:
        assert unicodedata.is_normalized("NFC", text)
        fields = set(re.findall(r"\{([a-z_]+)\}", text))
        if key not in TECHNICIAN_LINES:
            assert not (fields & SETTINGS) - MAY_NAME_INPUT.get(key, set()), (key, text)
        if key not in TECHNICIAN_LINES:
            assert not DEVELOPER_WORDS.search(text), (key, text)


def test_numbers_are_written_the_readers_way() -> None:
    assert messages.number(1234.56, "vi") == "1.234,6"
    assert messages.number(1234.56, "en") == "1,234.6"
    assert messages.number(12000, "vi") == "12.000"
    line = messages.t("export_done", "vi", pages=3, batches=1, mb=12.34, path="/media/usb/x")
    assert "12,3 MB" in line
    assert "12.3 MB" in messages.t("export_done", "en", pages=3, batches=1, mb=12.34, path="x")


def test_staff_texts_use_the_archival_terms() -> None:
    vi = {key: pair[0] for key, pair in i18n.TEXT.items()}
    for text in vi.values():
        assert unicodedata.is_normalized("NFC", text)
    # The raw scan is the "ảnh quét gốc"; "bản gốc" is the paper original.
    assert vi["original"] == "Ảnh quét gốc"
    assert not any(t.startswith("Bản gốc") for t in vi.values())
    assert vi["audit"] == "Nhật ký hoạt động"
    assert vi["export_xlsx"].startswith("Mục lục hồ sơ nộp lưu")
    assert "phường" in vi["commune"] and "đặc khu" in vi["commune"]
    # (The login page may name `sohoa-server login-link`: the administrator's way in.)
