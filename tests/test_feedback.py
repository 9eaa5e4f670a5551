"""Tests of agent/buttons/feedback.py: the state table, its documentation, the box over a pty."""

from __future__ import annotations

import logging
import os
import re
import select
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent.buttons.feedback
from agent.buttons import SerialBoxButton
from agent.buttons.feedback import (
    LED_COLOURS,
    OPERATOR_TEXT,
    STATE_SIGNALS,
    AgentState,
    LogFeedback,
    MultiFeedback,
    SerialBoxFeedback,
    Signal,
    operator_text,
    signal_table_markdown,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "button-box.md"
WAIT_S = 2.0


# --------------------------------------------------------------------------------------------
# The table itself


def test_every_state_has_a_signal_and_both_languages() -> None:
    assert set(STATE_SIGNALS) == set(AgentState)
    for lang in ("vi", "en"):
        assert set(OPERATOR_TEXT[lang]) == set(AgentState)
        assert all(text.strip() for text in OPERATOR_TEXT[lang].values())
    assert OPERATOR_TEXT["vi"][AgentState.READY] == "Sẵn sàng — nạp giấy và bấm nút"
    assert OPERATOR_TEXT["en"][AgentState.READY] == "Ready — load paper and press the button"


def test_table_follows_its_own_rules() -> None:
    def lit(state: AgentState, colour: str) -> str:
        leds = STATE_SIGNALS[state].leds
        assert leds is not None
        return str(dict(leds).get(colour, "off"))  # type: ignore[call-overload]

    # red only for states the operator must act on
    for state, sig in STATE_SIGNALS.items():
        if sig.leds is not None and lit(state, "red") != "off":
            assert state in (AgentState.ERROR, AgentState.DISK_FULL)
    # offline still allows scanning, so "you may press" (green steady) stays
    assert lit(AgentState.OFFLINE, "green") == "on"
    assert lit(AgentState.OFFLINE, "yellow") == "on"
    assert lit(AgentState.READY, "green") == "on"
    assert lit(AgentState.SCANNING, "green") == "blink"
    assert STATE_SIGNALS[AgentState.DONE].commands()[-1] == "BEEP 1 150"
    assert STATE_SIGNALS[AgentState.ERROR].commands()[-1] == "BEEP 3 600"
    assert STATE_SIGNALS[AgentState.DISK_FULL].repeat_s == 60.0
    assert STATE_SIGNALS[AgentState.BUSY].led_commands() == []  # leaves the scan's LEDs alone


def test_signal_commands_switch_off_before_on() -> None:
    sig = Signal({"yellow": "blink", "green": "on"}, beeps=2, beep_ms=80)
    assert sig.commands() == ["LED red off", "LED green on", "LED yellow blink", "BEEP 2 80"]


def test_operator_text_languages() -> None:
    assert operator_text(AgentState.DISK_FULL) == (
        "Ổ đĩa sắp đầy — không nhận bản quét mới. Hãy đồng bộ hoặc gọi kỹ thuật viên."
    )
    assert operator_text(AgentState.DISK_FULL, "en").startswith("Disk almost full")
    assert operator_text(AgentState.BUSY, "fr") == OPERATOR_TEXT["vi"][AgentState.BUSY]


def test_docs_carry_the_generated_table() -> None:
    assert signal_table_markdown() in DOCS.read_text(encoding="utf-8"), (
        "docs/button-box.md is out of date: paste agent.buttons.feedback.signal_table_markdown()"
    )


def test_module_docstring_table_agrees() -> None:
    doc = agent.buttons.feedback.__doc__ or ""
    rows = re.findall(r"^\| (\w+)\s+\|(.*)\|\s*$", doc, flags=re.MULTILINE)
    seen = set()
    for name, rest in rows:
        if name == "state":
            continue
        state = AgentState(name)
        seen.add(state)
        cells = [c.strip() for c in rest.split("|")]
        sig = STATE_SIGNALS[state]
        if sig.leds is None:
            assert cells[0] == "(unchanged)"
        else:
            leds = dict(sig.leds)
            assert cells[:3] == [leds.get(c, "off") for c in LED_COLOURS], name
        beeps = cells[-1]
        if sig.beeps:
            assert beeps.startswith(f"{sig.beeps} × {sig.beep_ms} ms"), name
        else:
            assert beeps == "—", name
    assert seen == set(AgentState)


# --------------------------------------------------------------------------------------------
# Log and multi feedback


def test_log_feedback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.buttons.feedback")
    LogFeedback().show(AgentState.ERROR, "sane: jammed")
    LogFeedback(lang="vi").show(AgentState.READY)
    error, ready = caplog.records
    assert error.levelno == logging.ERROR
    assert "state=error" in error.getMessage()
    assert "detail=sane: jammed" in error.getMessage()
    assert "check the scanner" in error.getMessage()
    assert "Sẵn sàng" in ready.getMessage()


class RecordingFeedback:
    def __init__(self) -> None:
        self.shown: list[tuple[AgentState, str]] = []

    def show(self, state: AgentState, detail: str = "") -> None:
        self.shown.append((state, detail))


class BrokenFeedback:
    def show(self, state: AgentState, detail: str = "") -> None:
        raise OSError("box gone")


def test_multi_feedback_keeps_going_when_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    first, last = RecordingFeedback(), RecordingFeedback()
    MultiFeedback(first, BrokenFeedback(), last).show(AgentState.DONE, "batch 7")
    assert first.shown == last.shown == [(AgentState.DONE, "batch 7")]
    assert "feedback failed target=BrokenFeedback" in caplog.text


# --------------------------------------------------------------------------------------------
# The box, over a real pty


class FakeBox:
    """Records command lines; the seam SerialBoxFeedback uses is `send`."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.beeped = threading.Condition()

    def send(self, line: str) -> bool:
        with self.beeped:
            self.lines.append(line)
            self.beeped.notify_all()
        return True


def test_disk_full_beeps_again_until_the_state_changes() -> None:
    signals = dict(STATE_SIGNALS)
    signals[AgentState.DISK_FULL] = Signal({"red": "on"}, beeps=2, beep_ms=200, repeat_s=0.03)
    box = FakeBox()
    feedback = SerialBoxFeedback(box, signals=signals)
    feedback.show(AgentState.DISK_FULL)
    with box.beeped:
        assert box.beeped.wait_for(lambda: box.lines.count("BEEP 2 200") >= 3, WAIT_S)
    feedback.show(AgentState.READY)
    with box.beeped:
        count = box.lines.count("BEEP 2 200")
    time.sleep(0.1)  # three repeat periods: no more beeps may come
    assert box.lines.count("BEEP 2 200") == count
    assert box.lines[-3:] == ["LED yellow off", "LED red off", "LED green on"]
    feedback.close()


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def _read_lines(master: int, count: int) -> list[str]:
    data = b""
    deadline = time.monotonic() + WAIT_S
    while data.count(b"\n") < count and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            data += os.read(master, 4096)
    return data.decode("ascii").splitlines()


@pytest.mark.serial
def test_box_receives_led_and_beep_lines_for_each_state(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    box = SerialBoxButton(path)
    feedback = SerialBoxFeedback(box)
    try:
        for state in AgentState:
            feedback.show(state, "detail is for logs, not for the box")
            expected = STATE_SIGNALS[state].commands()
            assert _read_lines(master, len(expected)) == expected, state
    finally:
        feedback.close()
        box.close()


@pytest.mark.serial
def test_box_writes_from_many_threads_never_interleave(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    box = SerialBoxButton(path)
    feedback = SerialBoxFeedback(box)
    states = [AgentState.SCANNING, AgentState.ERROR, AgentState.SYNCING, AgentState.DONE]
    expected_count = sum(len(STATE_SIGNALS[s].commands()) for s in states) * 10

    def hammer(state: AgentState) -> None:
        for _ in range(10):
            feedback.show(state)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in states]
    for t in threads:
        t.start()
    lines = _read_lines(master, expected_count)
    for t in threads:
        t.join(WAIT_S)
    feedback.close()
    box.close()
    assert len(lines) == expected_count
    valid = {line for s in states for line in STATE_SIGNALS[s].commands()}
    assert set(lines) <= valid
