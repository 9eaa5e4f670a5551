"""Archive: the archive's own work on what ingest committed.

Owns: search (`catalog` the engines' full-text index, `search` the one search used by the staff
page and the API), hồ sơ and văn bản (`records`), review and re-scan requests (`review`,
`rescan`), progress per commune (`progress`), exports for handover (`export`), staff accounts
(`auth`), the append-only audit log (`audit`), who may read what — chế độ sử dụng and place
(`access`), page images a browser can show, rendered from the archival PDF/A (`page_images`),
and the dashboard's data (`dashboard`).
Must not: return HTML or SVG (it returns data; `server.web` renders), talk to the broker directly
(re-scan commands leave through a publisher the app injects), or import `server.ingest` /
`server.web`. May import `server.store`.
"""
