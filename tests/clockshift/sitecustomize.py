"""Shift this process's wall clock by ``CLOCKSHIFT_SECONDS`` (tests/test_clockskew.py).

Put this folder on ``PYTHONPATH`` of a station process and its ``time.time()`` (and
``time.time_ns()``, which ``datetime.now()`` does not use: the agent reads the clock through
``time``) is that many seconds off, like a Raspberry Pi without an RTC that booted without
network time. Monotonic time is untouched, as on that Pi. libfaketime would shift the C
library's clock instead, but with monotonic time left alone its ``clock_nanosleep`` makes
every ``time.sleep`` fail with EINVAL (libfaketime 0.9.10), and with it faked Python hangs.
"""

import os
import time

_offset = float(os.environ.get("CLOCKSHIFT_SECONDS", "0") or 0)
if _offset:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _offset
    time.time_ns = lambda: _time_ns() + int(_offset * 1e9)
