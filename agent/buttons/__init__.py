"""The one scan button, whatever it is wired to, and what the station shows back.

This package owns every way an operator can say "scan now" without a screen, and it is the
only package that imports pyserial (`serial`). Four sources sit behind one interface,
`ButtonSource.events(stop)`, which yields `ButtonEvent`s (`events`):

* `serial_box.SerialBoxButton` — a small Arduino/CH340-class box speaking the text protocol
  in `docs/button-box.md`; it also carries the LED and buzzer commands of `feedback`.
* `modem_line.ModemLineButton` — a bare push button across DTR and CTS (or DSR) of a
  USB–RS-232 adapter.
* `usb_key.InputKeyButton` — a USB key or foot pedal that Linux sees as an input device.
* `scanner_button.SaneSensorButton` — the scanner's own button, read through a callable from
  `agent.capture.sane_device` (this package never touches SANE).

`events.PressTracker` (durations → short/long) is shared by all four, `events.Debouncer` by
the two polled ones; `serial_port` opens serial ports. `trigger.Trigger` turns events into at
most one running scan at a time and picks the profile (`ScanChoice`): button 1 short →
"primary"; a long press or button 2 → "alternate". `factory.open_button` opens the kind the
configuration names with the settings its `hw_profiles/buttons` profile states. `feedback`
owns what the LEDs, buzzer and log show for each state of the station.

This package must not: run a scan itself, talk to SANE, or decide what the LEDs mean outside
`feedback`. It never lets a USB unplug crash the agent: the serial and input sources
reconnect with backoff; only a port that cannot be opened at start-up raises `ButtonError`
(unless `wait_for_port=True`). Import the public names from here
(`from agent.buttons import Trigger`); feedback from `agent.buttons.feedback`.
"""

from __future__ import annotations

from agent.buttons.events import (
    DEFAULT_LONG_S,
    STOP_CHECK_S,
    ButtonError,
    ButtonEvent,
    ButtonSource,
    Debouncer,
    NoButton,
    PressKind,
    PressTracker,
    ScanChoice,
)
from agent.buttons.factory import (
    BUTTON_KINDS,
    open_button,
    profile_settings,
)
from agent.buttons.modem_line import (
    ModemInput,
    ModemLineButton,
)
from agent.buttons.scanner_button import (
    SaneSensorButton,
)
from agent.buttons.serial_box import (
    BOX_PROTOCOL,
    MAX_LINE_BYTES,
    BoxHello,
    BoxLineReader,
    SerialBoxButton,
)
from agent.buttons.serial_port import (
    PYSERIAL_MIN,
    ModemLines,
    SerialPort,
    check_pyserial,
)
from agent.buttons.trigger import (
    Trigger,
    choose_profile,
)
from agent.buttons.usb_key import (
    EV_KEY,
    EVIOCGRAB,
    INPUT_EVENT,
    InputKeyButton,
    key_code,
    pack_input_event,
)

__all__ = [
    "BOX_PROTOCOL",
    "BUTTON_KINDS",
    "DEFAULT_LONG_S",
    "EVIOCGRAB",
    "EV_KEY",
    "INPUT_EVENT",
    "MAX_LINE_BYTES",
    "PYSERIAL_MIN",
    "STOP_CHECK_S",
    "BoxHello",
    "BoxLineReader",
    "ButtonError",
    "ButtonEvent",
    "ButtonSource",
    "Debouncer",
    "InputKeyButton",
    "ModemInput",
    "ModemLineButton",
    "ModemLines",
    "NoButton",
    "PressKind",
    "PressTracker",
    "SaneSensorButton",
    "ScanChoice",
    "SerialBoxButton",
    "SerialPort",
    "Trigger",
    "check_pyserial",
    "choose_profile",
    "key_code",
    "open_button",
    "pack_input_event",
    "profile_settings",
]
