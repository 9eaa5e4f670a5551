"""Fleet: which scan stations may send, and their identities on the broker.

Owns: the registry of stations (`registry`: commune, the fonds each scans for, state
pending → active → revoked, the
station's Ed25519 key, one-time enrolment codes kept as their sha256 only), the broker's
dynamic-security identities and roles administered over ``$CONTROL/dynamic-security/v1``
and the enrolment desk answering stations in ``sohoa-server run`` (`broker`, the server's
second paho user: it speaks as the broker's admin, never as the ingest), and the printed
enrolment sheet (`sheet`).
Must not: touch pages, batches or files (ingest does), render (web does), or import
`server.ingest`, `server.archive` or `server.web`; changes the audit log must record are
handed to a hook the caller gives. May import `server.store`. `registry` imports no broker
client: the USB import (no broker at all) asks it which key a bundle must carry.
"""
