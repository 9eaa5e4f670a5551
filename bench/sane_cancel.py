"""Reliability, not speed: how often ending a jammed frame hangs, with and without the drain.

    python -m bench sane_cancel [--frames 3000] [--dpi 200] [--wait 20]

A frame that ends in an error status leaves SANE's test backend's reader thread writing, and
cancelling a running reader can deadlock it in glibc's free() and the cancel with it
(agent/capture/sane_device.py, ``_Frame``). Two child processes each read up to ``--frames``
jammed colour frames from ``test:0`` through ``Scanner.pages`` (the agent's own path), with
three threads allocating memory beside them as the agent's other threads do: one as the agent
does (the data pipe read to its end before the cancel), one with that drain turned off
(``DRAIN_MAX_S = 0``, python-sane's behaviour). A frame whose scan has not ended after
``--wait`` seconds is a hang: the child says after how many frames and exits (a hung
process cannot be used again). The frames must be larger than the pipe (64 KiB) for the
reader to still be running at the error: 200 dpi colour is 7.4 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time

CHILD = "--child"


def _child(frames: int, dpi: int, wait: float, drain: bool) -> int:
    from agent import profiles
    from agent.capture import sane_device
    from agent.errors import ScannerError

    if not drain:
        sane_device.DRAIN_MAX_S = 0.0
    known = profiles.load_scanner_profiles()
    request = profiles.ScanRequest(source="flatbed", mode="color", dpi=dpi)

    def churn() -> None:
        while True:
            _ = [bytes(1000) for _ in range(100)], bytearray(200_000)
            time.sleep(0.0002)

    for _ in range(3):
        threading.Thread(target=churn, daemon=True).start()
    started = time.perf_counter()
    with sane_device.open_scanner("test:0", known) as scanner:
        scanner.device.read_return_value = "SANE_STATUS_JAMMED"

        def one() -> None:
            with contextlib.suppress(ScannerError):  # the jam, as expected
                list(scanner.pages(request))

        for done in range(frames):
            scan = threading.Thread(target=one, daemon=True)
            scan.start()
            scan.join(wait)
            if scan.is_alive():
                print(f"hung {done} {time.perf_counter() - started:.0f}", flush=True)
                os._exit(0)  # the reader holds a lock for good: nothing here can end cleanly
        scanner.device.read_return_value = "Default"
    print(f"ok {frames} {time.perf_counter() - started:.0f}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench sane_cancel")
    parser.add_argument("--frames", type=int, default=3000, help="jammed frames per mode")
    parser.add_argument("--dpi", type=int, default=200)
    parser.add_argument("--wait", type=float, default=20.0, help="seconds before a hang")
    parser.add_argument(CHILD, choices=["drain", "no-drain"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.frames, args.dpi, args.wait, args.child == "drain")

    print(f"jammed {args.dpi}-dpi colour frames from SANE's test backend, up to {args.frames}"
          f" per mode; a scan not ended after {args.wait:g} s is a hang; load average"
          f" {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| mode | frames read | hung | seconds |")
    print("|---|---|---|---|")
    for mode, label in (("drain", "pipe read to its end, then cancel (the agent)"),
                        ("no-drain", "cancel at once (python-sane's way)")):  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "bench", "sane_cancel", "--frames", str(args.frames),
             "--dpi", str(args.dpi), "--wait", str(args.wait), CHILD, mode],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        words = (out.stdout.strip().splitlines() or ["error"])[-1].split()
        if words[0] not in ("ok", "hung"):
            print(out.stdout + out.stderr, file=sys.stderr)
            return 1
        hung = "yes" if words[0] == "hung" else "no"
        print(f"| {label} | {words[1]} | {hung} | {words[2]} |", flush=True)
    return 0
