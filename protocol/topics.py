"""The one place that forms and parses MQTT topic strings.

Layout (``v1`` is the protocol level, ``{device}`` the broker user name = client id):

==============================  =========  ================================================
topic                           direction  payload
==============================  =========  ================================================
sohoa/v1/up/{device}/manifest   agent→srv  :class:`protocol.messages.Manifest`
sohoa/v1/up/{device}/chunk      agent→srv  :class:`protocol.messages.ChunkHeader` + raw bytes
sohoa/v1/up/{device}/query      agent→srv  :class:`protocol.messages.Query`
sohoa/v1/up/{device}/telemetry  agent→srv  :class:`protocol.messages.Telemetry`
sohoa/v1/status/{device}        agent→srv  :class:`protocol.messages.Status` (retained, will)
sohoa/v1/down/{device}/state    srv→agent  :class:`protocol.messages.BatchState` (query answer)
sohoa/v1/down/{device}/receipt  srv→agent  :class:`protocol.messages.Receipt`
sohoa/v1/down/{device}/reject   srv→agent  :class:`protocol.messages.Reject`
sohoa/v1/down/{device}/command  srv→agent  :class:`protocol.messages.Command`
sohoa/v1/down/{device}/fonds    srv→agent  :class:`protocol.messages.FondsAssignment` (retained)
sohoa/v1/enrol/{device}/request enrol→srv  :class:`protocol.enrolment.EnrolRequest`
sohoa/v1/enrol/{device}/reply   srv→enrol  :class:`protocol.enrolment.EnrolReply`
==============================  =========  ================================================

The broker's dynamic security roles (``server/fleet/broker.py``) let a station write only its own
``up/{device}/…`` and ``status/{device}`` and subscribe only to exactly
:func:`down_filter` of its own id (no ``$share``, no wildcard across stations); only the
server's ingest identity writes ``down/#``; a one-time enrolment identity reaches only its
own ``enrol/{device}/…`` pair.

Device ids therefore must never contain MQTT wildcards or separators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from protocol.version import TOPIC_LEVEL

ROOT = "sohoa"
PREFIX = f"{ROOT}/{TOPIC_LEVEL}"

UpKind = Literal["manifest", "chunk", "query", "telemetry"]
DownKind = Literal["state", "receipt", "reject", "command", "fonds"]
UP_KINDS: tuple[UpKind, ...] = ("manifest", "chunk", "query", "telemetry")
DOWN_KINDS: tuple[DownKind, ...] = ("state", "receipt", "reject", "command", "fonds")

# Lower-case letters, digits, '-' and '_'; starts with a letter or digit; at most 64 chars.
# Rules out '+', '#', '/', NUL and anything a shell or a file system would treat specially.
DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

SHARED_GROUP = "sohoa-ingest"


class TopicError(ValueError):
    """A topic or device id that this protocol version does not accept."""


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise TopicError(
            f"invalid device id {device_id!r}: use 1-64 of a-z 0-9 - _ (starting with a-z or 0-9)"
        )
    return device_id


def up(device_id: str, kind: UpKind) -> str:
    return f"{PREFIX}/up/{check_device_id(device_id)}/{kind}"


def down(device_id: str, kind: DownKind) -> str:
    return f"{PREFIX}/down/{check_device_id(device_id)}/{kind}"


def status(device_id: str) -> str:
    return f"{PREFIX}/status/{check_device_id(device_id)}"


def down_filter(device_id: str) -> str:
    """What an agent subscribes to."""
    return f"{PREFIX}/down/{check_device_id(device_id)}/+"


def up_all(device_id: str) -> str:
    """Every up-topic of one device (a role's publish grant)."""
    return f"{PREFIX}/up/{check_device_id(device_id)}/#"


def down_all(device_id: str | None = None) -> str:
    """Every down-topic of one device, or of all (``None``: the server's publish grant)."""
    return f"{PREFIX}/down/{'+' if device_id is None else check_device_id(device_id)}/#"


def enrol_request(device_id: str) -> str:
    return f"{PREFIX}/enrol/{check_device_id(device_id)}/request"


def enrol_reply(device_id: str) -> str:
    return f"{PREFIX}/enrol/{check_device_id(device_id)}/reply"


ENROL_REQUEST_FILTER = f"{PREFIX}/enrol/+/request"
ENROL_REPLY_ALL = f"{PREFIX}/enrol/+/reply"


def parse_enrol_request(topic: str) -> str:
    """The device id of a concrete enrolment request topic."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[:3] != [ROOT, TOPIC_LEVEL, "enrol"] or parts[4] != "request":
        raise TopicError(f"not an enrolment request topic: {topic!r}")
    return check_device_id(parts[3])


def ingest_filters(shared: bool = True) -> list[str]:
    """What the server subscribes to. Up-traffic goes through a shared subscription so that
    several ingest workers split the load; status is retained and every worker wants it."""
    up_filter = f"{PREFIX}/up/+/+"
    if shared:
        up_filter = f"$share/{SHARED_GROUP}/{up_filter}"
    return [up_filter, f"{PREFIX}/status/+"]


@dataclass(frozen=True)
class ParsedTopic:
    direction: Literal["up", "down", "status"]
    device_id: str
    kind: str


def parse(topic: str) -> ParsedTopic:
    """Parse a concrete topic (no wildcards). Raises :class:`TopicError` for anything else."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != ROOT or parts[1] != TOPIC_LEVEL:
        raise TopicError(f"not a {PREFIX} topic: {topic!r}")
    direction = parts[2]
    if direction == "status" and len(parts) == 4:
        return ParsedTopic("status", check_device_id(parts[3]), "status")
    if direction == "up" and len(parts) == 5 and parts[4] in UP_KINDS:
        return ParsedTopic("up", check_device_id(parts[3]), parts[4])
    if direction == "down" and len(parts) == 5 and parts[4] in DOWN_KINDS:
        return ParsedTopic("down", check_device_id(parts[3]), parts[4])
    raise TopicError(f"unknown topic {topic!r}")


def status_device(topic: str) -> str | None:
    """The device id of a concrete status topic (``sohoa/v1/status/{device}``); None for any
    other topic, ours or not."""
    try:
        parsed = parse(topic)
    except TopicError:
        return None
    return parsed.device_id if parsed.direction == "status" else None
