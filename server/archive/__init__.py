"""Archive: the archive's own work on what ingest committed.

Owns: search (`catalog` the engines' full-text index, `search` the one search used by the staff
page and the API), hồ sơ and văn bản (`records`), review and re-scan requests (`review`,
`rescan`), progress per commune (`progress`), exports for handover (`export`), staff accounts
(`auth`) and the append-only audit log (`audit`).
Must not: return HTML or SVG (it returns data; `server.web` renders), talk to the broker directly
(re-scan commands leave through a publisher the app injects), or import `server.ingest` /
`server.web`. May import `server.store`.
"""
