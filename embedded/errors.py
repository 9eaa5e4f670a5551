"""Typed errors of the launcher; each message says what to do, in one paragraph."""

from __future__ import annotations


class EmbeddedError(RuntimeError):
    """Something the launcher cannot start or keep running; the message is for a person."""


class ComponentMissing(EmbeddedError):
    """A program the launcher needs is not installed (the message carries the install hint)."""


class PortBusy(EmbeddedError):
    """The port a child should listen on is taken by another process."""


class ChildDied(EmbeddedError):
    """A child process exited when it should be running; the message ends with its last log
    lines."""

    def __init__(self, name: str, returncode: int | None, tail: str, while_: str = "") -> None:
        self.name = name
        self.returncode = returncode
        self.tail = tail
        when = f" {while_}" if while_ else ""
        lines = f"; its last log lines:\n{tail}" if tail.strip() else " (it logged nothing)"
        super().__init__(f"{name} exited{when} with code {returncode}{lines}")
