"""Telling the operator what the agent is doing when there is no screen.

This module owns the meaning of the lights and beeps: one `Signal` per `AgentState` in
`STATE_SIGNALS`, and one operator sentence per state and language in `OPERATOR_TEXT`
(Vietnamese by default, English available). `docs/button-box.md` carries the same table, and a
test checks that the two agree (`signal_table_markdown`).

The rules behind the table, so that an untrained operator can learn it in one sentence each:

* green lit = you may press the button; green blinking = working, wait;
* yellow = something in the background (sending, no network) — scanning is still allowed;
* red = stop and act (error, disk full); red never lights while all is well;
* one short beep = press heard / batch done; several long beeps = look at the box.

| state      | green | yellow | red   | beeps                    |
|------------|-------|--------|-------|--------------------------|
| ready      | on    | off    | off   | —                        |
| scanning   | blink | off    | off   | 1 × 60 ms (press heard)  |
| processing | fast  | off    | off   | —                        |
| syncing    | on    | blink  | off   | —                        |
| done       | on    | off    | off   | 1 × 150 ms               |
| error      | off   | off    | fast  | 3 × 600 ms               |
| disk_full  | off   | off    | on    | 2 × 200 ms every 60 s    |
| offline    | on    | on     | off   | —                        |
| busy       | (unchanged)           | 2 × 80 ms                |

BUSY leaves the LEDs alone on purpose: it answers a press that came while a scan was running,
and the LEDs must keep showing that scan.

This module must not decide *when* a state is entered (the agent's main loop does), and it
talks to the box only through `SerialBoxButton.send`, never to the port itself.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

log = logging.getLogger(__name__)

LedColour = Literal["green", "yellow", "red"]
LedPattern = Literal["on", "off", "blink", "fast"]
Language = Literal["vi", "en"]

LED_COLOURS: tuple[LedColour, ...] = ("green", "yellow", "red")
DEFAULT_LANGUAGE: Language = "vi"


class AgentState(enum.StrEnum):
    READY = "ready"
    SCANNING = "scanning"
    PROCESSING = "processing"
    SYNCING = "syncing"
    DONE = "done"
    ERROR = "error"
    DISK_FULL = "disk_full"
    OFFLINE = "offline"
    BUSY = "busy"


@dataclass(frozen=True)
class Signal:
    """How one state looks and sounds on the box.

    `leds` gives the pattern of every lit LED (unlisted colours are switched off); None leaves
    the LEDs as they are. `beeps` × `beep_ms` sound once when the state is shown, and again
    every `repeat_s` seconds while it lasts (None: once).
    """

    leds: Mapping[LedColour, LedPattern] | None
    beeps: int = 0
    beep_ms: int = 0
    repeat_s: float | None = None

    def led_commands(self) -> list[str]:
        if self.leds is None:
            return []
        # switch off first, so two states never show lit together for a moment
        offs = [f"LED {c} off" for c in LED_COLOURS if self.leds.get(c, "off") == "off"]
        ons = [f"LED {c} {p}" for c in LED_COLOURS if (p := self.leds.get(c, "off")) != "off"]
        return offs + ons

    def beep_command(self) -> str | None:
        return f"BEEP {self.beeps} {self.beep_ms}" if self.beeps else None

    def commands(self) -> list[str]:
        beep = self.beep_command()
        return self.led_commands() + ([beep] if beep else [])


STATE_SIGNALS: Mapping[AgentState, Signal] = {
    AgentState.READY: Signal({"green": "on"}),
    AgentState.SCANNING: Signal({"green": "blink"}, beeps=1, beep_ms=60),
    AgentState.PROCESSING: Signal({"green": "fast"}),
    AgentState.SYNCING: Signal({"green": "on", "yellow": "blink"}),
    AgentState.DONE: Signal({"green": "on"}, beeps=1, beep_ms=150),
    AgentState.ERROR: Signal({"red": "fast"}, beeps=3, beep_ms=600),
    AgentState.DISK_FULL: Signal({"red": "on"}, beeps=2, beep_ms=200, repeat_s=60.0),
    # green stays on: scanning goes on offline, the outbox forwards later
    AgentState.OFFLINE: Signal({"green": "on", "yellow": "on"}),
    AgentState.BUSY: Signal(None, beeps=2, beep_ms=80),
}

OPERATOR_TEXT: Mapping[Language, Mapping[AgentState, str]] = {
    "vi": {
        AgentState.READY: "Sẵn sàng — nạp giấy và bấm nút",
        AgentState.SCANNING: "Đang quét — không kéo giấy ra",
        AgentState.PROCESSING: "Đang xử lý bản quét — vui lòng chờ",
        AgentState.SYNCING: "Đang gửi bản quét lên lưu trữ tỉnh — vẫn có thể quét tiếp",
        AgentState.DONE: "Xong — có thể nạp tập hồ sơ tiếp theo",
        AgentState.ERROR: (
            "Có lỗi — kiểm tra máy quét (kẹt giấy, nắp mở) rồi bấm lại. "
            "Nếu vẫn lỗi, gọi kỹ thuật viên."
        ),
        AgentState.DISK_FULL: (
            "Ổ đĩa sắp đầy — không nhận bản quét mới. Hãy đồng bộ hoặc gọi kỹ thuật viên."
        ),
        AgentState.OFFLINE: (
            "Mất kết nối mạng — vẫn quét được, bản quét sẽ được gửi khi có mạng lại"
        ),
        AgentState.BUSY: "Máy đang bận — chờ xong việc hiện tại rồi bấm lại",
    },
    "en": {
        AgentState.READY: "Ready — load paper and press the button",
        AgentState.SCANNING: "Scanning — do not pull the paper out",
        AgentState.PROCESSING: "Processing the scans — please wait",
        AgentState.SYNCING: "Sending scans to the provincial archive — you can keep scanning",
        AgentState.DONE: "Done — you can load the next file",
        AgentState.ERROR: (
            "Error — check the scanner (paper jam, cover open) and press again. "
            "If it persists, call the technician."
        ),
        AgentState.DISK_FULL: (
            "Disk almost full — no new scans accepted. Sync or call the technician."
        ),
        AgentState.OFFLINE: (
            "No network — you can still scan; scans are sent when the network is back"
        ),
        AgentState.BUSY: "Busy — wait for the current job to finish, then press again",
    },
}


def operator_text(state: AgentState, lang: str = DEFAULT_LANGUAGE) -> str:
    """The operator sentence for `state`; an unknown language falls back to Vietnamese."""
    for code, texts in OPERATOR_TEXT.items():
        if code == lang:
            return texts[state]
    return OPERATOR_TEXT[DEFAULT_LANGUAGE][state]


def signal_table_markdown() -> str:
    """The state table as it appears in docs/button-box.md (a test keeps the two equal)."""
    rows = [
        "| state | green | yellow | red | beeps | operator text (vi) | operator text (en) |",
        "|---|---|---|---|---|---|---|",
    ]
    for state, sig in STATE_SIGNALS.items():
        if sig.leds is None:
            leds = ["(unchanged)"] * 3
        else:
            leds = [sig.leds.get(c, "off") for c in LED_COLOURS]
        if sig.beeps:
            beeps = f"{sig.beeps} × {sig.beep_ms} ms"
            if sig.repeat_s:
                beeps += f", every {sig.repeat_s:g} s"
        else:
            beeps = "—"
        vi, en = operator_text(state, "vi"), operator_text(state, "en")
        rows.append(f"| `{state}` | {' | '.join(leds)} | {beeps} | {vi} | {en} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Feedback devices


class Feedback(Protocol):
    """Shows a state to the operator. MUST NOT raise for a device problem (log it instead)."""

    def show(self, state: AgentState, detail: str = "") -> None: ...


class BoxCommands(Protocol):
    """What feedback needs of the box: `SerialBoxButton.send`."""

    def send(self, line: str) -> bool: ...


class SerialBoxFeedback:
    """Lights and beeps on the serial button box, over the same port as its buttons.

    Writes go through `SerialBoxButton.send`, which serialises them with a lock (the button
    reader thread and the agent's state changes share the port) and remembers LED state to
    replay after a USB reconnect. A state with `repeat_s` (DISK_FULL) keeps beeping from a
    small background thread until another state is shown or `close` is called.
    """

    def __init__(
        self,
        box: BoxCommands,
        *,
        signals: Mapping[AgentState, Signal] = STATE_SIGNALS,
    ) -> None:
        self._box = box
        self._signals = signals
        self._cond = threading.Condition()
        self._state: AgentState | None = None
        self._generation = 0
        self._closed = False
        self._repeater: threading.Thread | None = None

    def show(self, state: AgentState, detail: str = "") -> None:
        signal = self._signals[state]
        log.debug("box feedback state=%s detail=%s", state, detail)
        with self._cond:
            if self._closed:
                return
            for line in signal.commands():
                self._box.send(line)
            self._state = state
            self._generation += 1
            if signal.repeat_s is not None and self._repeater is None:
                self._repeater = threading.Thread(
                    target=self._repeat, name="box-beeper", daemon=True
                )
                self._repeater.start()
            self._cond.notify_all()

    def _repeat(self) -> None:
        with self._cond:
            while not self._closed:
                signal = self._signals[self._state] if self._state is not None else None
                if signal is None or signal.repeat_s is None:
                    self._cond.wait()
                    continue
                generation = self._generation
                self._cond.wait(signal.repeat_s)
                beep = signal.beep_command()
                if not self._closed and generation == self._generation and beep:
                    self._box.send(beep)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._repeater is not None:
            self._repeater.join(timeout=2.0)


class LogFeedback:
    """Logs each state with its operator text (English by default: logs are for technicians)."""

    _LEVELS: Mapping[AgentState, int] = {
        AgentState.ERROR: logging.ERROR,
        AgentState.DISK_FULL: logging.ERROR,
        AgentState.OFFLINE: logging.WARNING,
    }

    def __init__(self, lang: str = "en", logger: logging.Logger | None = None) -> None:
        self.lang = lang
        self._log = logger or log

    def show(self, state: AgentState, detail: str = "") -> None:
        level = self._LEVELS.get(state, logging.INFO)
        text = operator_text(state, self.lang)
        if detail:
            self._log.log(level, "state=%s %s detail=%s", state, text, detail)
        else:
            self._log.log(level, "state=%s %s", state, text)


class MultiFeedback:
    """Shows every state on several devices; one failing device never silences the others."""

    def __init__(self, *targets: Feedback) -> None:
        self.targets = targets

    def show(self, state: AgentState, detail: str = "") -> None:
        for target in self.targets:
            try:
                target.show(state, detail)
            except Exception:
                log.exception("feedback failed target=%s state=%s", type(target).__name__, state)
