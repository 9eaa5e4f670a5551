"""The archive's catalogue: SQLite (WAL, synchronous=FULL) by default, PostgreSQL when
``database_url`` names one (server.store.pg adapts it to the same connection API).

Keys that make ingest idempotent are UNIQUE constraints, never check-then-insert
(KoboToolbox shipped duplicates for years that way; docs/research/reliability.md §3.4):
``batches(device_id, batch_id)``, ``pages(device_id, page_id)``, ``parts(page_pk, name)``,
``chunks(part_pk, offset, length)``. ``synchronous=FULL``: in WAL mode NORMAL "might roll
back following a power loss" (docs/research/reliability.md §1.4) and a receipt promises durability
(PostgreSQL: ``synchronous_commit`` stays on, its default). SQLite: one connection per
thread. PostgreSQL: a bounded pool per process (``database_pool_size``, server.store.pg.Pool):
a write transaction holds a connection, a read borrows one per statement. Several ingest
workers and web processes (on several hosts) may share a database.

Writers serialize on both engines: SQLite's ``BEGIN IMMEDIATE`` takes the database's write
lock, and on PostgreSQL every write transaction first takes one transaction-level advisory
lock. Code written against SQLite's semantics (claim-by-UPDATE, the audit chain reading its
last row, "max + 1") therefore stays correct on PostgreSQL without a second review of each
transaction; ingest commits groups of messages (server.ingest), so one writer at a time still
gives 500+ pages/s (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg

from server.store import pg
from server.store.pg import PgConnection, Pool

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- The fleet (server/fleet.py): who may send. A station's broker identity and its Ed25519
-- key come from its enrolment; the one-time code is kept only as its sha256.
CREATE TABLE IF NOT EXISTS stations (
    device_id TEXT PRIMARY KEY,
    commune TEXT NOT NULL,
    district TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked')),
    public_key TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    enrolled_at REAL,
    revoked_at REAL,
    code_sha256 TEXT,
    code_expires_at REAL,
    code_used_at REAL,
    code_key TEXT
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'unknown',
    agent_version TEXT NOT NULL DEFAULT '',
    boot_id TEXT NOT NULL DEFAULT '',
    telemetry TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    received_at REAL NOT NULL,
    page_count INTEGER NOT NULL,
    source TEXT NOT NULL,
    scanner TEXT,
    profile TEXT,
    agent_version TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    complete_at REAL,
    UNIQUE (device_id, batch_id)
);
-- The newest complete batch, read on every plan page load (server.archive.progress)
CREATE INDEX IF NOT EXISTS batches_complete ON batches(complete_at);
CREATE TABLE IF NOT EXISTS pages (
    id INTEGER PRIMARY KEY,
    batch_pk INTEGER NOT NULL REFERENCES batches(id),
    device_id TEXT NOT NULL,
    page_id TEXT NOT NULL,
    page_no INTEGER NOT NULL,
    capture_sha256 TEXT NOT NULL,
    capture_size INTEGER NOT NULL,
    dpi INTEGER NOT NULL,
    width_px INTEGER NOT NULL,
    height_px INTEGER NOT NULL,
    colour INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '[]',
    ocr_confidence REAL,
    decisions TEXT NOT NULL DEFAULT '{}',
    source_name TEXT,
    UNIQUE (device_id, page_id)
);
CREATE INDEX IF NOT EXISTS pages_batch ON pages(batch_pk, page_no);
CREATE TABLE IF NOT EXISTS parts (
    id INTEGER PRIMARY KEY,
    page_pk INTEGER NOT NULL REFERENCES pages(id),
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'receiving',  -- receiving | verifying | committed
    claimed_at REAL,
    path TEXT,
    committed_at REAL,
    UNIQUE (page_pk, name)
);
-- The newest commit, read on every dashboard load (server.archive.progress: whether anything moved)
CREATE INDEX IF NOT EXISTS parts_committed ON parts(committed_at);
CREATE TABLE IF NOT EXISTS chunks (
    part_pk INTEGER NOT NULL REFERENCES parts(id),
    "offset" INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (part_pk, "offset", length)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS page_text (
    page_pk INTEGER PRIMARY KEY REFERENCES pages(id),
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    device_id TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
-- Fixity checks (server.archive.fixity): one row per re-hash of a stored part against the sha256
-- ingest recorded, a PREMIS "fixity check" event; outcome pass | fail | missing.
CREATE TABLE IF NOT EXISTS fixity_events (
    id INTEGER PRIMARY KEY,
    part_pk INTEGER NOT NULL REFERENCES parts(id),
    at REAL NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('pass', 'fail', 'missing')),
    expected_sha256 TEXT NOT NULL,
    actual_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    agent TEXT NOT NULL,
    context TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fixity_events_part ON fixity_events(part_pk, id);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created_at REAL NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
"""

# Staff side (issue 6): users, sessions, the audit chain, hồ sơ / văn bản, page reviews.
STAFF_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'archivist', 'admin')),
    password TEXT NOT NULL,  -- scrypt$n$r$p$salt$hash; '' = no web login (token only)
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    key TEXT PRIMARY KEY,  -- 'user:NAME' or 'ip:ADDR'
    failures INTEGER NOT NULL,
    last_at REAL NOT NULL
);
-- Where a staff member may read (server.archive.access): commune labels, districts, OrganIds.
-- No row: everywhere.
CREATE TABLE IF NOT EXISTS user_places (
    user_name TEXT NOT NULL REFERENCES users(name),
    place TEXT NOT NULL,
    PRIMARY KEY (user_name, place)
);
-- One-time login links (the demo prints one): only the sha256 of the code is kept; used
-- once (deleted on use), valid for minutes.
CREATE TABLE IF NOT EXISTS login_links (
    code_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    ip TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
-- The last action of a kind (server.archive.progress asks on every dashboard load).
CREATE INDEX IF NOT EXISTS audit_action ON audit(action, id);
-- Phông lưu trữ (server.archive.fonds): the archival fonds of one organisation. Every hồ sơ
-- belongs to one (ho_so.fonds_code); a commune merged in the 2025 reorganisation has its fonds
-- closed, merged_into the new commune's, and handed over (fonds_handovers). Dates are ISO
-- 'YYYY-MM-DD'; unit_code names the administrative unit in server.archive.units.
CREATE TABLE IF NOT EXISTS fonds (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    organ_id TEXT NOT NULL DEFAULT '',  -- mã định danh of the organisation
    level TEXT NOT NULL DEFAULT 'xa',  -- xa | phuong | dac_khu | huyen | tinh | so | ...
    unit_code TEXT NOT NULL DEFAULT '',
    opened DATE,
    closed DATE,
    status TEXT NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'closing', 'closed', 'handed_over')),
    merged_into TEXT REFERENCES fonds(code),
    deadline DATE,  -- handover due
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- One organisation, one fonds: mã hồ sơ's organ part finds its fonds without guessing.
CREATE UNIQUE INDEX IF NOT EXISTS fonds_organ ON fonds(organ_id) WHERE organ_id <> '';
-- The nộp lưu of a fonds: prepared (package, checklist), then confirmed by the receiving
-- archive (who, when, reference). One row per preparation; the last one counts.
CREATE TABLE IF NOT EXISTS fonds_handovers (
    id INTEGER PRIMARY KEY,
    fonds_code TEXT NOT NULL REFERENCES fonds(code),
    prepared_at REAL NOT NULL,
    prepared_by TEXT NOT NULL,
    package TEXT NOT NULL DEFAULT '',  -- the package folder, as written
    checklist TEXT NOT NULL DEFAULT '{}',  -- what is missing (JSON)
    confirmed_at REAL,
    confirmed_by TEXT,  -- the staff member who recorded the confirmation
    receiver TEXT,  -- who signed for the receiving archive
    reference TEXT,  -- the receiving archive's reference (biên bản giao nhận số ...)
    received_on DATE
);
CREATE INDEX IF NOT EXISTS fonds_handovers_fonds ON fonds_handovers(fonds_code);
CREATE TABLE IF NOT EXISTS ho_so (
    ma_ho_so TEXT PRIMARY KEY,
    organ_id TEXT NOT NULL,
    nam INTEGER NOT NULL,
    ky_hieu TEXT NOT NULL,
    data TEXT NOT NULL,  -- the validated model (server.archive.records.HoSo) as JSON
    batch_pk INTEGER REFERENCES batches(id),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS van_ban (
    id INTEGER PRIMARY KEY,
    ma_ho_so TEXT NOT NULL REFERENCES ho_so(ma_ho_so),
    stt INTEGER NOT NULL,
    data TEXT NOT NULL,  -- server.archive.records.VanBan as JSON
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (ma_ho_so, stt)
);
CREATE TABLE IF NOT EXISTS van_ban_pages (
    van_ban_id INTEGER NOT NULL REFERENCES van_ban(id),
    seq INTEGER NOT NULL,
    page_pk INTEGER NOT NULL REFERENCES pages(id),
    PRIMARY KEY (van_ban_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    page_pk INTEGER NOT NULL REFERENCES pages(id),
    action TEXT NOT NULL,  -- accept | rotate | rescan
    actor TEXT NOT NULL,
    at REAL NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS reviews_page ON reviews(page_pk);
-- A re-scan asked of the commune (server.archive.rescan): the page stays as it is; a Command
-- goes to
-- the device. requested = not yet handed to the broker (or the broker had no subscriber);
-- sent = published, PUBACK awaited; acknowledged = the broker PUBACKed it for the device's
-- persistent session (protocol v1 has no device-to-server acknowledgement of a command).
CREATE TABLE IF NOT EXISTS rescan_requests (
    id INTEGER PRIMARY KEY,
    page_pk INTEGER NOT NULL REFERENCES pages(id),
    device_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    page_id TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    requested_by TEXT NOT NULL,
    requested_at REAL NOT NULL,
    msg_id TEXT NOT NULL,  -- the Command's msg_id, the same on every re-send
    state TEXT NOT NULL DEFAULT 'requested'
        CHECK (state IN ('requested', 'sent', 'acknowledged')),
    sends INTEGER NOT NULL DEFAULT 0,
    sent_at REAL,
    acknowledged_at REAL
);
CREATE INDEX IF NOT EXISTS rescan_requests_state ON rescan_requests(state, device_id);
-- Batches split at their QR cover sheets (server.archive.coversheets): once each.
CREATE TABLE IF NOT EXISTS cover_sheet_splits (
    batch_pk INTEGER PRIMARY KEY REFERENCES batches(id),
    at REAL NOT NULL,
    result TEXT NOT NULL  -- what was made (JSON)
);
-- A page scanned again, placed where the page it replaces was (server.archive.replacements):
-- both pages are kept; a văn bản that held the old page now holds the new one at its seq.
-- replaces_pk NULL: the batch named a page the archive does not hold (``problem`` says what).
CREATE TABLE IF NOT EXISTS page_replacements (
    page_pk INTEGER PRIMARY KEY REFERENCES pages(id),
    replaces_pk INTEGER REFERENCES pages(id),
    request_id INTEGER REFERENCES rescan_requests(id),
    placed_at REAL NOT NULL,
    van_ban TEXT NOT NULL DEFAULT '[]',  -- the van_ban ids whose page it took (JSON)
    problem TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS page_replacements_old ON page_replacements(replaces_pk);
-- A redone result (server.archive.redo) chosen by staff over the station's, or the old kept:
-- the decision and the files it names (by sha256); the stored parts are not changed.
CREATE TABLE IF NOT EXISTS redo_choices (
    id INTEGER PRIMARY KEY,
    page_pk INTEGER NOT NULL REFERENCES pages(id),
    stamp TEXT NOT NULL,  -- the result's folder under reprocessed/page-<id>/
    choice TEXT NOT NULL CHECK (choice IN ('new', 'old')),
    archival_sha256 TEXT NOT NULL,  -- of the redone archival page compared
    text_sha256 TEXT NOT NULL,
    chosen_by TEXT NOT NULL,
    chosen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS redo_choices_page ON redo_choices(page_pk, id);
-- The public lookup address of a hồ sơ (server.archive.public): a random token, one live per
-- hồ sơ; rotating it replaces the row (the old address then answers like an unknown one).
CREATE TABLE IF NOT EXISTS public_links (
    ma_ho_so TEXT PRIMARY KEY REFERENCES ho_so(ma_ho_so),
    token TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL
);
-- Views of the public page, counted per day and hồ sơ ('' = an address that shows nothing:
-- unknown, rotated away or Mật). No client data is kept.
CREATE TABLE IF NOT EXISTS public_views (
    day TEXT NOT NULL,
    ma_ho_so TEXT NOT NULL,
    views INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, ma_ho_so)
);
-- Turned archival versions of a page (server.archive.rotation): each row one turn from the
-- original, its parts row (the original's own for 0), and its provenance.
CREATE TABLE IF NOT EXISTS page_versions (
    id INTEGER PRIMARY KEY,
    page_pk INTEGER NOT NULL REFERENCES pages(id),
    part_pk INTEGER NOT NULL REFERENCES parts(id),
    degrees INTEGER NOT NULL CHECK (degrees IN (0, 90, 180, 270)),
    from_sha256 TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    actor TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS page_versions_page ON page_versions(page_pk, id);
-- How the viewer shows a page without an archival PDF (a CSS transform); a page with one is
-- turned in a new archival version instead (page_versions).
CREATE TABLE IF NOT EXISTS page_views (
    page_pk INTEGER PRIMARY KEY REFERENCES pages(id),
    rotation INTEGER NOT NULL DEFAULT 0 CHECK (rotation IN (0, 90, 180, 270)),
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL
);
"""

# The plan (issue 21, server.archive.inventory): the hồ sơ each fonds' paper inventory lists,
# and batches staff matched by hand to one of them (a cover sheet's code matches by itself).
PLAN_SCHEMA = """
CREATE TABLE IF NOT EXISTS planned_ho_so (
    fonds_code TEXT NOT NULL,
    code TEXT NOT NULL,  -- the full mã hồ sơ
    ky_hieu TEXT NOT NULL,
    nam INTEGER NOT NULL,
    tieu_de TEXT NOT NULL,
    so_tt INTEGER,
    bat_dau TEXT,  -- ISO dates
    ket_thuc TEXT,
    thoi_han TEXT NOT NULL DEFAULT '',
    so_trang INTEGER,
    so_to INTEGER,
    so_van_ban INTEGER,
    ghi_chu TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,  -- the inventory file's name
    line INTEGER NOT NULL,  -- its line there
    imported_at REAL NOT NULL,
    imported_by TEXT NOT NULL,
    PRIMARY KEY (fonds_code, code)
);
CREATE INDEX IF NOT EXISTS planned_ho_so_code ON planned_ho_so(code);
CREATE TABLE IF NOT EXISTS plan_matches (
    batch_pk INTEGER PRIMARY KEY REFERENCES batches(id),
    fonds_code TEXT NOT NULL,
    code TEXT NOT NULL,
    matched_by TEXT NOT NULL,
    matched_at REAL NOT NULL,
    FOREIGN KEY (fonds_code, code) REFERENCES planned_ho_so(fonds_code, code)
);
"""

# Columns added after a table first shipped: (table, column, definition). ``CREATE TABLE IF
# NOT EXISTS`` does not add them to an existing archive, so they are added at start-up.
ADDED_COLUMNS = (
    # The commune a scan station serves (a label an admin sets; see server.archive.progress).
    ("devices", "commune", "TEXT NOT NULL DEFAULT ''"),
    # Issue 13: tokens expire (NULL: made before expiry existed; created_at + 90 days).
    ("tokens", "expires_at", "REAL"),
    # The login brake's bursts: when one began and how many attempts it refused unheard.
    ("login_failures", "first_at", "REAL NOT NULL DEFAULT 0"),
    ("login_failures", "refused", "INTEGER NOT NULL DEFAULT 0"),
    # Issue 21: the fonds a hồ sơ belongs to (NULL until a fonds claims its organ_id), and the
    # fonds a station may scan for (a JSON list of codes; the first is its default).
    ("ho_so", "fonds_code", "TEXT REFERENCES fonds(code)"),
    ("stations", "fonds_codes", "TEXT NOT NULL DEFAULT '[]'"),
    # The fonds a batch was scanned for: the manifest's (checked against the station's), else
    # the station's default; NULL when neither names one.
    ("batches", "fonds_code", "TEXT"),
)

# Full-text search and the audit log's append-only guard, per engine. SQLite: FTS5 tables
# (contentless; rowid = page id), text tokenized by unicode61 without its diacritic removal —
# folding is done in Python (fold()) so both engines fold the same way. PostgreSQL: tsvector
# columns built from the same Python tokens (server.store.pg.tsvector) with GIN indexes.
SQLITE_SEARCH = """
CREATE VIRTUAL TABLE IF NOT EXISTS page_fts USING fts5(
    folded, content='', tokenize='unicode61 remove_diacritics 0'
);
CREATE VIRTUAL TABLE IF NOT EXISTS page_fts_exact USING fts5(
    text, content='', tokenize='unicode61 remove_diacritics 0'
);
-- Metadata search, separate from page_fts: one row per hồ sơ or văn bản, with the text both
-- folded (diacritic-free queries) and exact; ``ref`` is 'ho_so:<mã>' or 'van_ban:<id>'.
CREATE VIRTUAL TABLE IF NOT EXISTS meta_fts USING fts5(
    ref UNINDEXED, folded, exact, tokenize='unicode61 remove_diacritics 0'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""

PG_SEARCH = """
-- One table per index, a tsvector per row, kept inline: search reads the vectors of thousands
-- of candidates per query, and a pglz-compressed vector stored out of line (the default above
-- ~2 KB) costs 3-4x more to read (bench/search.py). Not compressed either below ~8 KB
-- (toast_tuple_target): a compressed vector is decompressed at every use (the match, the
-- phrase tier, each word's ts_rank), lz4 saves ~3 % of a page's vector and cost ~40 % of a
-- search's window (docs/benchmarks.md, seventh sitting). Only past ~8 KB (a huge page) is a
-- vector lz4-compressed, to stay inline. Vectors written before: ``sohoa-server db
-- search-vectors`` (server.store.vectors).
CREATE TABLE IF NOT EXISTS page_search_folded (
    page_pk BIGINT PRIMARY KEY REFERENCES pages(id),
    vec tsvector COMPRESSION lz4 NOT NULL
);
CREATE TABLE IF NOT EXISTS page_search_exact (
    page_pk BIGINT PRIMARY KEY REFERENCES pages(id),
    vec tsvector COMPRESSION lz4 NOT NULL
);
ALTER TABLE page_search_folded ALTER COLUMN vec SET STORAGE MAIN;
ALTER TABLE page_search_exact ALTER COLUMN vec SET STORAGE MAIN;
ALTER TABLE page_search_folded SET (toast_tuple_target = 8160);
ALTER TABLE page_search_exact SET (toast_tuple_target = 8160);
CREATE INDEX IF NOT EXISTS page_search_folded_vec ON page_search_folded USING gin (vec);
CREATE INDEX IF NOT EXISTS page_search_exact_vec ON page_search_exact USING gin (vec);
-- Adjacent syllable pairs per page, folded ('uy ban', 'ban nhan', …; server.store.pg
-- .pairs_tsvector), no positions, with their own GIN index: only to find a phrase's pages (a
-- pair's posting list is the pages with those two syllables together, a tiny fraction of
-- either syllable's). Folded only: a phrase with diacritics is found by its folded pairs and
-- checked on the exact word vector (one table instead of two: half the ingest cost). The
-- vector is never read by a query, so it is kept out of line (toast_tuple_target): the heap
-- rows a bitmap visits for their page_pk stay ~40 bytes each.
CREATE TABLE IF NOT EXISTS page_pairs (
    page_pk BIGINT PRIMARY KEY REFERENCES pages(id),
    vec tsvector COMPRESSION lz4 NOT NULL
) WITH (toast_tuple_target = 128);
CREATE INDEX IF NOT EXISTS page_pairs_vec ON page_pairs USING gin (vec);
-- ANALYZE keeps the 10,000 most common pairs (10 x the default): with 1,000, the least of
-- them was on 5.3 % of 1,000,000 pages, and every pair below (a quoted phrase on 4.9 % of
-- them) was estimated at 0.5 %, so its window took the whole index's bitmap instead of the
-- newest epochs' (docs/benchmarks.md, twenty-first sitting). ANALYZE of the table: ~13 s
-- at 1,000,000 pages instead of ~2 s.
ALTER TABLE page_pairs ALTER COLUMN vec SET STATISTICS 1000;
CREATE TABLE IF NOT EXISTS meta_search (
    ref TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    folded tsvector NOT NULL,
    exact tsvector NOT NULL
);
CREATE INDEX IF NOT EXISTS meta_search_folded ON meta_search USING gin (folded);
CREATE INDEX IF NOT EXISTS meta_search_exact ON meta_search USING gin (exact);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
"""

# meta key: 'ready' once every page's adjacent-pair vectors exist (search uses them then),
# 'backfill' while an archive indexed before them is being filled.
PAIRS_META_KEY = "search_pairs"

# Any transaction-level advisory lock key will do, as long as every writer uses the same one.
_PG_WRITE_LOCK = 0x50_48_4F_41  # "SOHA"


class _StripCombining(dict[int, int | None]):
    """A ``str.translate`` table dropping combining marks, filled per new character (the
    per-character generator it replaced cost ~1 ms per 2 KB page at ingest)."""

    def __missing__(self, cp: int) -> int | None:
        value = None if unicodedata.combining(chr(cp)) else cp
        self[cp] = value
        return value


_STRIP_COMBINING = _StripCombining()


def fold(text: str) -> str:
    """Vietnamese without diacritics, lower-case: "Khoáng sản Đà Nẵng" → "khoang san da nang".
    đ/Đ is a letter of its own (no Unicode decomposition), so it is mapped by hand."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return decomposed.translate(_STRIP_COMBINING).lower()


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class Cursor(Protocol):
    """What the server uses of a cursor, on either engine."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the server uses of a connection: ``sqlite3.Connection`` or server.store.pg's adapter.
    Rows answer ``row[i]`` and ``row["name"]`` on both."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, seq: Iterable[Sequence[Any]], /) -> Cursor: ...


# A row of either engine (sqlite3.Row or server.store.pg.PgRow).
Row = Any


class SchemaTooNew(sqlite3.OperationalError):
    """The catalogue was written by a newer release. An OperationalError so that every caller
    that reports "cannot open the database" reports this too, on either engine."""


# Errors callers distinguish, whatever the engine.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)
OPERATIONAL_ERRORS = (sqlite3.OperationalError, psycopg.OperationalError)


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class Database:
    """The catalogue. ``Database(path)`` opens (creating) a SQLite file;
    ``Database("postgresql://…")`` a PostgreSQL database whose schema it creates."""

    def __init__(
        self,
        target: Path | str,
        password: str | None = None,
        pool_size: int = pg.DEFAULT_POOL_SIZE,
        pool_timeout: float = pg.POOL_TIMEOUT_S,
    ) -> None:
        self.dialect: Literal["sqlite", "postgresql"]
        self._local = threading.local()
        self._password = password
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self._pool: Pool | None = None
        self._pool_lock = threading.Lock()
        if is_postgres_url(target):
            self.dialect = "postgresql"
            self.url = str(target)
            self.path: Path | None = None
            # One direct connection first: a wrong password or an absent server is reported
            # as libpq words it, not as a pool that timed out waiting.
            pg.connect(self.url, self._password).close()
            self._create_postgres()
        else:
            self.dialect = "sqlite"
            self.path = Path(target)
            self.url = f"sqlite:///{self.path}"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create_sqlite()

    # -- schema ------------------------------------------------------------------------------

    def _create_sqlite(self) -> None:
        con = self._sqlite()
        # DDL is idempotent (IF NOT EXISTS); executescript commits.
        con.executescript(SCHEMA + STAFF_SCHEMA + PLAN_SCHEMA + SQLITE_SEARCH)
        for table, column, definition in ADDED_COLUMNS:
            have = {r["name"] for r in con.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                try:  # constants above, never user input
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise
        self._schema_version()

    def _create_postgres(self) -> None:
        """Create or update the schema, once: DDL takes strong locks (ALTER TABLE takes an
        ACCESS EXCLUSIVE one), so a server starting beside running ones must not repeat it.
        The DDL's digest is kept in ``meta``; when it matches, nothing is locked."""
        scripts = [*_statements(pg.ddl(SCHEMA + STAFF_SCHEMA + PLAN_SCHEMA))]
        scripts += [
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {pg.ddl(definition)}"
            for table, column, definition in ADDED_COLUMNS
        ]
        scripts.append(PG_SEARCH)  # one simple-protocol script ($$ bodies inside)
        digest = hashlib.sha256("\n;\n".join(scripts).encode()).hexdigest()
        if self._pg_ddl_digest() == digest:
            return
        # Several processes may start at once: one creates, the others wait on the lock (DDL
        # racing on IF NOT EXISTS can fail in PostgreSQL), then find it done.
        with self.tx() as con:
            if self._pg_ddl_digest() == digest:
                return
            for statement in scripts:
                con.execute(statement)
            # The pair tables (issue 19) are filled by index_texts from now on; an archive
            # that already has pages needs them backfilled before search uses them
            # (server.store.pairs, ``sohoa-server search-pairs``).
            # (Again after a restore of an older dump or a spell on an older release: any
            # page without them sends search back to the word vectors until filled.)
            con.execute(
                "INSERT INTO meta(key, value) SELECT ?, CASE WHEN EXISTS (SELECT 1 FROM"
                " page_text t WHERE NOT EXISTS (SELECT 1 FROM page_pairs p"
                " WHERE p.page_pk = t.page_pk)) THEN 'backfill' ELSE 'ready' END"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                " WHERE excluded.value = 'backfill'",
                (PAIRS_META_KEY,),
            )
            con.execute(
                "INSERT INTO meta(key, value) VALUES ('pg_ddl', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (digest,),
            )
        self._schema_version()

    def _pg_ddl_digest(self) -> str | None:
        con = self.connect()
        if con.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
            return None
        row = con.execute("SELECT value FROM meta WHERE key = 'pg_ddl'").fetchone()
        return None if row is None else str(row[0])

    def _schema_version(self) -> None:
        with self.tx() as con:
            con.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                (str(SCHEMA_VERSION),),
            )
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        found = int(row[0])
        if found > SCHEMA_VERSION:  # a rollback onto a database a newer release wrote
            raise SchemaTooNew(
                f"its schema is {found}, newer than this release's {SCHEMA_VERSION}: restore "
                "the dump taken before the upgrade, or run the newer release "
                "(docs/operations.md, upgrade and rollback)"
            )

    # -- connections and transactions --------------------------------------------------------

    def _sqlite(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            assert self.path is not None
            con = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
        return con

    def pool(self) -> Pool:
        """PostgreSQL: this process's pool (opened on first use, again after close())."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = Pool(self.url, self._password, self.pool_size, self.pool_timeout)
            return self._pool

    def connect(self) -> Connection:
        """SQLite: this thread's connection (made on first use). PostgreSQL: statements run
        on the connection this thread holds for a transaction, else each on a pooled one."""
        return self._sqlite() if self.dialect == "sqlite" else self.pool().connection()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One write transaction; writers queue on a lock instead of failing mid-way
        (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-level advisory lock)."""
        if self.dialect == "sqlite":
            con: Connection = self.connect()
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                self._rollback(con)
                raise
            con.execute("COMMIT")
            return
        with self.pool().hold() as held:
            held.execute("BEGIN")
            try:
                held.execute("SELECT pg_advisory_xact_lock(?)", (_PG_WRITE_LOCK,))
                yield held
            except BaseException:
                self._rollback(held)
                raise
            held.execute("COMMIT")

    def _rollback(self, con: Connection) -> None:
        try:
            con.execute("ROLLBACK")
        except OPERATIONAL_ERRORS:  # the connection itself broke: start afresh next time
            if isinstance(con, PgConnection):
                con.close()  # the pool discards it
            else:
                self.close()

    def read(self) -> Connection:
        return self.connect()

    def alert(self, kind: str, detail: str, device_id: str | None = None) -> None:
        with self.tx() as con:
            con.execute(
                "INSERT INTO alerts(at, device_id, kind, detail) VALUES (?, ?, ?, ?)",
                (time.time(), device_id, kind, detail[:2000]),
            )

    # -- full-text indexing (search itself: server.archive.catalog and .records) -------------

    def index_text(self, con: Connection, page_pk: int, text: str) -> None:
        self.index_texts(con, [(page_pk, text)])

    def index_texts(self, con: Connection, pages: list[tuple[int, str]]) -> None:
        """Store and index the OCR text of pages (page id, text): NFC, folded and exact."""
        upsert_text = (
            "INSERT INTO page_text(page_pk, text) VALUES (?, ?)"
            " ON CONFLICT(page_pk) DO UPDATE SET text = excluded.text"
        )
        if self.dialect == "sqlite":
            for page_pk, raw in pages:
                text = nfc(raw)
                con.execute(upsert_text, (page_pk, text))
                con.execute(
                    "INSERT INTO page_fts(rowid, folded) VALUES (?, ?)", (page_pk, fold(text))
                )
                con.execute(
                    "INSERT INTO page_fts_exact(rowid, text) VALUES (?, ?)", (page_pk, text)
                )
            return
        # PostgreSQL: one statement per page, all pages in one pipelined batch.
        rows = []
        for page_pk, raw in pages:
            text = nfc(raw)
            folded, folded_pairs = pg.tsvectors(fold(text))
            rows.append(
                (page_pk, text, page_pk, folded, page_pk, pg.tsvector(text.lower()),
                 page_pk, folded_pairs)
            )  # fmt: skip
        con.executemany(
            f"WITH t AS ({upsert_text} RETURNING page_pk), f AS ("  # noqa: S608 (constants)
            "INSERT INTO page_search_folded(page_pk, vec) VALUES (?, ?::tsvector)"
            " ON CONFLICT(page_pk) DO UPDATE SET vec = excluded.vec RETURNING page_pk), e AS ("
            " INSERT INTO page_search_exact(page_pk, vec) VALUES (?, ?::tsvector)"
            " ON CONFLICT(page_pk) DO UPDATE SET vec = excluded.vec RETURNING page_pk)"
            " INSERT INTO page_pairs(page_pk, vec) VALUES (?, ?::tsvector)"
            " ON CONFLICT(page_pk) DO UPDATE SET vec = excluded.vec",
            rows,
        )

    def index_meta(self, con: Connection, ref: str, text: str) -> None:
        """(Re-)index a hồ sơ or văn bản's metadata text under ``ref``."""
        text = nfc(text)
        if self.dialect == "sqlite":
            con.execute("DELETE FROM meta_fts WHERE ref = ?", (ref,))
            con.execute(
                "INSERT INTO meta_fts(ref, folded, exact) VALUES (?, ?, ?)",
                (ref, fold(text), text),
            )
        else:
            con.execute(
                "INSERT INTO meta_search(ref, text, folded, exact)"
                " VALUES (?, ?, ?::tsvector, ?::tsvector) ON CONFLICT(ref) DO UPDATE"
                " SET text = excluded.text, folded = excluded.folded, exact = excluded.exact",
                (ref, text, pg.tsvector(fold(text)), pg.tsvector(text.lower())),
            )

    def close(self) -> None:
        """SQLite: this thread's connection. PostgreSQL: the pool, every connection of it."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None:
            try:
                con.close()
            finally:
                self._local.con = None


def _statements(script: str) -> list[str]:
    """A DDL script without ``$$`` bodies, one statement each (psycopg sends a parameterless
    script fine too, but one at a time names the statement that failed)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]  # no "--" in literals
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
