"""Protocol version: the level in every topic and the number in every envelope."""

from __future__ import annotations

PROTOCOL_VERSION = 1
TOPIC_LEVEL = f"v{PROTOCOL_VERSION}"
