"""Uplink: pages leave the station, over MQTT or on a USB disk, with the same rules.

Owns: the broker link (`mqtt_link`, the agent's only paho user), sync rounds (`sync`:
manifests, missing chunks, receipts), what a receipt or reject does to the outbox (`transfer`,
shared by the link and the disk), USB bundles (`bundle`), and the fonds the archive assigned
this station, verified and kept (`assignment`).
Must not: capture, run pipeline stages, or delete anything without a verified receipt. May import
`agent.outbox` only.
"""
