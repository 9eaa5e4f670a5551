"""Store: what the archive keeps on disk — the files, the catalogue database, the archive's key.

Owns: the file store (`files`: write, fsync, rename, verify by sha256), the database engines
behind one connection API (`db`: SQLite; `pg`: PostgreSQL), and the receipt-signing key (`keys`).
Must not: import any other room (ingest, archive and web use it), hold domain rules, or render.
"""
