"""Archive: the archive's own work on what ingest committed.

Owns: search (`catalog` the engines' full-text index, `search` the one search used by the staff
page and the API), hồ sơ and văn bản (`records`), review and re-scan requests (`review`,
`rescan`), progress per commune (`progress`), exports for handover (`export` the BagIt bag
and catalogue, `aip` the TT 05/2025 E-ARK package), fixity checks of the store (`fixity`),
văn bản split at QR cover sheets (`coversheets`), staff accounts (`auth`), the append-only
audit log (`audit`), who may read what — chế độ sử dụng and place (`access`), page images a
browser can show, rendered from the archival PDF/A (`page_images`), the dashboard's data
(`dashboard`), phông lưu trữ and their handover (`fonds`, `fonds_handover`), and the
administrative units before and after 2025 (`units`, over `vietnamadminunits`).
Must not: return HTML or SVG (it returns data; `server.web` renders), talk to the broker directly
(re-scan commands leave through a publisher the app injects), or import `server.ingest` /
`server.web`. May import `server.store`.
"""
