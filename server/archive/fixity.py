"""Fixity, proven rather than assumed: a stored part is re-hashed and compared with the sha256
that ingest verified and recorded when it committed the part (``parts.sha256``).

Two callers:

* an export (:func:`read_verified`): every file that enters a bag or a package is read once,
  hashed as read, and only those very bytes are used — a mismatch raises
  :class:`FixityError` naming the file, records the failed check and raises an alert, so that
  bit rot can never enter a handover under a fresh, valid manifest;
* ``sohoa-server fixity check`` (:func:`check_store`), run by a systemd timer: walks every
  committed part in id order, rate-limited (bytes per second) so it does not starve ingest,
  resumable (the position is kept in ``meta`` after every group of checks, so a stopped run
  goes on where it stopped), and records each check.

Each check is one row of ``fixity_events``: a PREMIS 3 event of type "fixity check" (the
object is the part, the outcome ``pass`` / ``fail`` / ``missing``, the agent the program and
its version). The damage a staff member must see is every part whose latest check did not
pass (:func:`damaged`); a later passing check (the part re-sent, or restored from backup)
clears it.

Owns: ``fixity_events`` and the ``fixity_cursor`` key of ``meta``. Must not: repair or
delete anything (server.archive.repair does, and records its checks here), or change a part's
record (what was recorded at ingest is the reference).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

from server.store import objects
from server.store.db import Connection, Database

HASH_BLOCK = 1024 * 1024
CURSOR_KEY = "fixity_cursor"
Outcome = Literal["pass", "fail", "missing"]


def agent_name(role: str) -> str:
    """The PREMIS agent of a check: the program and its version."""
    try:
        version = metadata.version("sohoa")
    except metadata.PackageNotFoundError:  # run from a tree that is not installed
        version = "unknown"
    return f"sohoa-server {version} ({role})"


@dataclass(frozen=True)
class Check:
    """One fixity check of one stored part."""

    part_pk: int
    path: str  # the part's location (server.store.objects)
    expected: str  # sha256 recorded at ingest
    actual: str  # '' when the file is missing or unreadable
    outcome: Outcome
    size: int  # bytes read
    at: float

    @property
    def ok(self) -> bool:
        return self.outcome == "pass"


class FixityError(Exception):
    """A file about to be exported does not hash to the sha256 recorded at ingest."""

    def __init__(self, check: Check, label: str) -> None:
        self.check = check
        self.label = label
        found = "missing" if check.outcome == "missing" else f"sha256 {check.actual}"
        super().__init__(
            f"fixity failure in {label}: stored file {check.path} is {found}; "
            f"ingest recorded sha256 {check.expected}. Export refused."
        )


class Throttle:
    """At most ``bytes_per_s`` bytes hashed per second, averaged over the run (0 = no limit)."""

    def __init__(
        self,
        bytes_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = bytes_per_s
        self.clock, self.sleep = clock, sleep
        self.start = clock()
        self.done = 0

    def __call__(self, nbytes: int) -> None:
        self.done += nbytes
        if self.rate <= 0:
            return
        ahead = self.done / self.rate - (self.clock() - self.start)
        if ahead > 0:
            self.sleep(ahead)


def _read_and_hash(path: str, keep: bool, throttle: Throttle | None) -> tuple[str, int, bytes]:
    """Re-read the part from whichever store holds it (an object store's own checksums
    are not trusted: the bytes are fetched and hashed here)."""
    digest = hashlib.sha256()
    kept = bytearray()
    size = 0
    for block in objects.stream(path, HASH_BLOCK):
        digest.update(block)
        size += len(block)
        if keep:
            kept += block
        if throttle is not None:
            throttle(len(block))
    return digest.hexdigest(), size, bytes(kept)


def check_file(
    part_pk: int, path: str, expected: str, throttle: Throttle | None = None
) -> tuple[Check, bytes]:
    """Hash ``path`` and compare; the check and the bytes that were hashed."""
    return _check(part_pk, path, expected, keep=True, throttle=throttle)


def _check(
    part_pk: int, path: str, expected: str, *, keep: bool, throttle: Throttle | None
) -> tuple[Check, bytes]:
    at = time.time()
    try:
        actual, size, data = _read_and_hash(path, keep, throttle)
    except OSError:
        return Check(part_pk, path, expected, "", "missing", 0, at), b""
    outcome: Outcome = "pass" if actual == expected else "fail"
    return Check(part_pk, path, expected, actual, outcome, size, at), data


def _insert(con: Connection, checks: list[Check], agent: str, context: str) -> None:
    con.executemany(
        "INSERT INTO fixity_events(part_pk, at, outcome, expected_sha256, actual_sha256,"
        " size, agent, context) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (c.part_pk, c.at, c.outcome, c.expected, c.actual, c.size, agent, context)
            for c in checks
        ],
    )


def _alert(con: Connection, check: Check, label: str) -> None:
    con.execute(
        "INSERT INTO alerts(at, device_id, kind, detail) VALUES (?, NULL, 'fixity', ?)",
        (check.at, f"{label}: {check.path} {check.outcome} (expected sha256 {check.expected})"),
    )


def record(db: Database, checks: list[Check], agent: str, context: str, label: str) -> None:
    """Record checks made elsewhere (``fixity repair``'s check of what it put back); one
    that did not pass raises an alert, as the check's own do."""
    with db.tx() as con:
        _insert(con, checks, agent, context)
        for c in checks:
            if not c.ok:
                _alert(con, c, label)


def read_verified(
    db: Database, part_pk: int, path: str, sha256: str, label: str, context: str
) -> bytes:
    """The bytes of a stored part, hashed as they were read; records the check. Raises
    :class:`FixityError` (after recording the failure and an alert) when they do not hash to
    the ``sha256`` recorded at ingest. ``label`` names the file for people ("<mã>.001 page
    2"), ``context`` says what read it ("export.bag <mã>")."""
    check, data = check_file(part_pk, path, sha256)
    with db.tx() as con:
        _insert(con, [check], agent_name("export"), context)
        if not check.ok:
            _alert(con, check, label)
    if not check.ok:
        raise FixityError(check, label)
    return data


# -- the walk of the store ----------------------------------------------------------------------


@dataclass
class Report:
    """What one ``fixity check`` run did."""

    checked: int = 0
    bytes: int = 0
    resumed_after: int | None = None  # the part id a stopped run had reached
    finished: bool = False  # False: stopped by ``limit``; the next run goes on
    damaged: list[Check] = field(default_factory=list)


def _cursor(con: Connection) -> dict[str, Any] | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", (CURSOR_KEY,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _set_cursor(con: Connection, value: dict[str, Any] | None) -> None:
    if value is None:
        con.execute("DELETE FROM meta WHERE key = ?", (CURSOR_KEY,))
        return
    con.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (CURSOR_KEY, json.dumps(value)),
    )


def check_store(
    db: Database,
    *,
    since: float | None = None,
    bytes_per_s: float = 0,
    limit: int | None = None,
    group: int = 100,
    throttle: Throttle | None = None,
) -> Report:
    """Re-hash every committed part (``since``: only those committed at or after that Unix
    time) in id order and record each check. A run stopped part-way (``limit`` parts, a
    crash, a kill) left its position in ``meta``; the next run with the same ``since`` goes on
    from there, and a finished run clears it. Each group of ``group`` checks is committed in
    one short write transaction, so ingest is never blocked for long."""
    agent = agent_name("fixity check")
    throttle = throttle or Throttle(bytes_per_s)
    report = Report()
    read = db.read()
    cursor = _cursor(read)
    after = 0
    if cursor is not None and cursor.get("since") == since:
        after = int(cursor["after"])
        report.resumed_after = after
    while True:
        want = group if limit is None else min(group, limit - report.checked)
        if want <= 0:
            return report
        where = "state = 'committed' AND path IS NOT NULL AND id > ?"
        args: list[object] = [after]
        if since is not None:
            where += " AND committed_at >= ?"
            args.append(since)
        rows = read.execute(
            f"SELECT id, path, sha256 FROM parts WHERE {where} ORDER BY id LIMIT ?",  # noqa: S608
            (*args, want),
        ).fetchall()
        if not rows:
            with db.tx() as con:
                _set_cursor(con, None)
            report.finished = True
            return report
        checks = [
            _check(r["id"], str(r["path"]), r["sha256"], keep=False, throttle=throttle)[0]
            for r in rows
        ]
        after = checks[-1].part_pk
        with db.tx() as con:
            _insert(con, checks, agent, "fixity check")
            for c in checks:
                if not c.ok:
                    _alert(con, c, f"part {c.part_pk}")
            _set_cursor(con, {"since": since, "after": after, "at": time.time()})
        report.checked += len(checks)
        report.bytes += sum(c.size for c in checks)
        report.damaged += [c for c in checks if not c.ok]


# -- what staff see -------------------------------------------------------------------------------


def damaged(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    """Parts whose latest check did not pass, newest first, with where they belong: device,
    batch, page and, when the page is in a văn bản, its hồ sơ and number."""
    rows = (
        db.read()
        .execute(
            "SELECT f.part_pk, f.at, f.outcome, f.expected_sha256, f.actual_sha256, f.context,"
            " p.name AS part, p.path, pg.id AS page_pk, pg.device_id, pg.page_no,"
            " b.batch_id, v.ma_ho_so, v.stt"
            " FROM fixity_events f"
            " JOIN (SELECT part_pk, MAX(id) AS id FROM fixity_events GROUP BY part_pk) last"
            "   ON last.id = f.id"
            " JOIN parts p ON p.id = f.part_pk"
            " JOIN pages pg ON pg.id = p.page_pk"
            " JOIN batches b ON b.id = pg.batch_pk"
            " LEFT JOIN van_ban_pages vp ON vp.page_pk = pg.id"
            " LEFT JOIN van_ban v ON v.id = vp.van_ban_id"
            " WHERE f.outcome <> 'pass' ORDER BY f.id DESC LIMIT ?",
            (limit,),
        )
        .fetchall()
    )
    return [{k: r[k] for k in r.keys()} for r in rows]  # noqa: SIM118 (rows are not dicts)


def events(db: Database, part_pks: list[int]) -> list[dict[str, Any]]:
    """Every recorded check of these parts, oldest first (the PREMIS events of a package)."""
    if not part_pks:
        return []
    marks = ", ".join("?" * len(part_pks))  # placeholders only: the ids are parameters
    columns = "id, part_pk, at, outcome, expected_sha256, actual_sha256, size, agent, context"
    sql = f"SELECT {columns} FROM fixity_events WHERE part_pk IN ({marks}) ORDER BY id"  # noqa: S608
    rows = db.read().execute(sql, part_pks).fetchall()
    return [{k: r[k] for k in r.keys()} for r in rows]  # noqa: SIM118
