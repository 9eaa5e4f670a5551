"""Protocol versions: the frame version in every envelope and the level in every topic.

They are two numbers on purpose. ``PROTOCOL_VERSION`` is the byte every frame carries
(protocol/envelope.py): it changes when the bytes of a payload change. ``TOPIC_LEVEL`` is the
``v1`` in every topic: it changes when the topic layout or the broker's rights (the
dynamic-security roles of server/fleet/broker.py) change, which would need every broker
reconfigured.

Version 2 (this one) gave chunks a compact binary header; everything else is as in
version 1, and a decoder still reads version 1 frames (USB bundles written before the
change, an agent not yet upgraded). The topic layout did not change, so the level stays v1.
"""

from __future__ import annotations

PROTOCOL_VERSION = 2
# Frame versions this code decodes: 1 (JSON headers only) and 2 (binary chunk headers).
DECODABLE_VERSIONS = (1, 2)
TOPIC_LEVEL = "v1"
