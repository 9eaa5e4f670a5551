"""PostgreSQL behind the same small connection API the SQLite catalogue uses.

The server's SQL is written once, in the subset both engines share: ``?`` placeholders,
``INSERT … ON CONFLICT``, ``RETURNING``, quoted ``"offset"``, ``CASE`` instead of boolean
arithmetic. This module adapts the rest, so no caller branches on the engine except search:

- :class:`Pool` bounds the connections one process holds (``database_pool_size``): a write
  transaction holds one for its length, a read outside a transaction borrows one for one
  statement (:class:`PooledConnection`), so the number of web threads or ingest workers does
  not set the number of connections;
- :class:`PgConnection` rewrites ``?`` to psycopg's ``%s`` (cached per statement) and returns
  rows that, like ``sqlite3.Row``, answer both ``row[0]`` and ``row["name"]``;
- :func:`ddl` turns the SQLite table definitions into PostgreSQL ones (identity keys, double
  precision, no ``WITHOUT ROWID``); full-text search and the audit triggers are written for
  each engine in server.store.db;
- :func:`tsvector` / :func:`tsquery` build full-text values from the words Python found, so
  both engines see the same tokens (``\\w+`` of the NFC text, lower-cased or folded) instead
  of two tokenizers' opinions: PostgreSQL's default parser would keep "123/QĐ-UBND" whole as
  a file path, SQLite's unicode61 splits it.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

# Connections one server process holds at most (database_pool_size): web threads and the
# ingest worker share them. Requests beyond it queue in the process, not in PostgreSQL.
DEFAULT_POOL_SIZE = 8
# How long a statement waits for a free connection before failing (DatabaseBusy, a
# PoolTimeout and so an OperationalError, as when the database is down: that request is
# answered 503 with Retry-After by server.app, and ingest leaves its messages unacknowledged
# for the broker to deliver again). database_pool_timeout_s.
POOL_TIMEOUT_S = 30.0
APPLICATION_NAME = "sohoa-server"

# A database host that dies without a word (its power cut, a cable pulled: no RST, packets
# simply vanish) would leave a connection waiting for an answer for ever: a query's bytes were
# acknowledged, nothing more is in flight, so TCP never notices. Every thread waiting so holds
# its pool connection, and the ingest thread with them: the server would not resume when the
# host came back. The kernel is told to notice instead: keepalive probes after 15 s of
# silence, 3 more 5 s apart (a dead peer is known ~30 s after its last word), and data left
# unacknowledged for 30 s fails the connection too (tcp_user_timeout). A new connection waits
# at most 10 s. tests/test_dbhost.py cuts a real database host's link mid-query.
LIBPQ_LIVENESS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}

# What a row of each engine answers to: position and column name.


class PgRow:
    """One result row: ``row[0]``, ``row["name"]``, ``dict(row)``, ``a, b = row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    names = [c.name for c in cursor.description or ()]
    index = {name: i for i, name in reversed(list(enumerate(names)))}  # first wins, as SQLite

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


@lru_cache(maxsize=1024)
def placeholders(sql: str) -> bytes:
    """``?`` → ``%s`` and a literal ``%`` → ``%%``. The server's SQL has no ``?`` inside a
    string literal (tests/test_postgres.py runs every statement of the server)."""
    return sql.replace("%", "%%").replace("?", "%s").encode()


class PgConnection:
    """The part of ``sqlite3.Connection`` the server uses, over a psycopg connection in
    autocommit mode (transactions are explicit ``BEGIN``/``COMMIT``, as with SQLite's
    ``isolation_level=None``)."""

    def __init__(self, con: psycopg.Connection[PgRow]) -> None:
        self.raw = con

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[PgRow]:
        if not parameters:  # sent as is: no placeholders, and a script may hold several
            return self.raw.execute(sql.encode())
        return self.raw.execute(placeholders(sql), parameters)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]], /) -> psycopg.Cursor[PgRow]:
        cur = self.raw.cursor()
        cur.executemany(placeholders(sql), seq)
        return cur

    def fetch_with_settings(
        self, settings: dict[str, str], sql: str, parameters: Sequence[Any]
    ) -> list[PgRow]:
        """The rows of ``sql`` run with the session ``settings`` (name: value), which are
        then reset to the session's own values (``pg_settings.reset_val``), whatever they
        were. The three statements go in one round trip (libpq's pipeline mode)."""
        names = list(settings)
        setting = "SELECT " + ", ".join(["set_config(?, ?, false)"] * len(names))
        reset = (
            "SELECT set_config(name, reset_val, false) FROM pg_settings"  # noqa: S608
            f" WHERE name IN ({', '.join('?' * len(names))})"  # (placeholders)
        )
        # In autocommit each statement of the pipeline is its own sync: the reset runs
        # even when ``sql`` failed.
        with self.raw.pipeline():
            self.execute(setting, [x for item in settings.items() for x in item])
            cur = self.execute(sql, parameters)
            self.execute(reset, names)
        return cur.fetchall()

    def close(self) -> None:
        self.raw.close()


def _kwargs(password: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "row_factory": _row_factory,
        "application_name": APPLICATION_NAME,
        **LIBPQ_LIVENESS,
    }
    if password is not None:
        kwargs["password"] = password
    return kwargs


def connect(url: str, password: str | None = None) -> PgConnection:
    """One connection outside any pool (start-up checks, one-off tools)."""
    con: psycopg.Connection[PgRow] = psycopg.connect(url, **_kwargs(password))
    return PgConnection(con)


class Rows:
    """A statement's result, read whole while its connection was borrowed: what the server
    uses of a cursor (``rowcount``, ``fetchone``, ``fetchall``, iteration)."""

    __slots__ = ("_at", "_rows", "rowcount")

    def __init__(self, cursor: psycopg.Cursor[PgRow]) -> None:
        self.rowcount = cursor.rowcount
        self._rows: list[PgRow] = cursor.fetchall() if cursor.description is not None else []
        self._at = 0

    def fetchone(self) -> PgRow | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[PgRow]:
        rest, self._at = self._rows[self._at :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[PgRow]:
        while (row := self.fetchone()) is not None:
            yield row


class DatabaseBusy(PoolTimeout):
    """No connection of this process's pool came free (or could be made) within the pool's
    timeout: every one is busy, or PostgreSQL does not answer. A PoolTimeout still, so what
    handles a database that is down handles this too."""


class Pool:
    """At most ``size`` connections to one database for this process.

    A thread holds a connection for a write transaction (:meth:`hold`); any other statement
    borrows one for its own length (:meth:`connection`). Inside :meth:`hold`, every statement
    of the thread, however it reached the database, runs on the held connection: it sees the
    transaction's own writes, as with the per-thread connection this replaces."""

    def __init__(
        self, url: str, password: str | None, size: int, timeout: float = POOL_TIMEOUT_S
    ) -> None:
        self.size = size
        self.timeout = timeout
        self._local = threading.local()
        self._pool: ConnectionPool[psycopg.Connection[PgRow]] = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs=_kwargs(password),
            timeout=timeout,
            name=APPLICATION_NAME,
            open=True,
        )

    def held(self) -> PgConnection | None:
        con: PgConnection | None = getattr(self._local, "con", None)
        return con

    @contextmanager
    def hold(self) -> Iterator[PgConnection]:
        """This thread's connection until the block ends (re-entrant)."""
        held = self.held()
        if held is not None:
            yield held
            return
        try:
            raw = self._pool.getconn()
        except PoolTimeout as exc:
            stats = self._pool.get_stats()
            busy = stats.get("pool_size", 0) >= self.size and not stats.get("pool_available", 0)
            why = f"all {self.size} connections busy" if busy else "cannot connect"
            raise DatabaseBusy(f"{why} for {self.timeout:g} s ({exc})") from exc
        con = PgConnection(raw)
        self._local.con = con
        try:
            yield con
        finally:
            self._local.con = None
            self._give_back(raw)

    def _give_back(self, raw: psycopg.Connection[PgRow]) -> None:
        broken = raw.closed or raw.pgconn.status != pq.ConnStatus.OK
        self._pool.putconn(raw)  # a broken or mid-transaction one is discarded / rolled back
        if broken:  # the server restarted: the idle ones are dead too, drop them now
            self._pool.check()

    def connection(self) -> PooledConnection:
        return PooledConnection(self)

    def stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())

    def close(self) -> None:
        self._pool.close()


class PooledConnection:
    """The connection API over a :class:`Pool`: a statement runs on the thread's held
    connection, else on one borrowed for it (autocommit: its own transaction either way)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[PgRow] | Rows:
        held = self._pool.held()
        if held is not None:
            return held.execute(sql, parameters)
        with self._pool.hold() as con:
            return Rows(con.execute(sql, parameters))

    def executemany(
        self, sql: str, seq: Iterable[Sequence[Any]], /
    ) -> psycopg.Cursor[PgRow] | Rows:
        held = self._pool.held()
        if held is not None:
            return held.executemany(sql, seq)
        with self._pool.hold() as con:
            return Rows(con.executemany(sql, seq))


def ddl(sqlite_schema: str) -> str:
    """SQLite table definitions → PostgreSQL. Only the constructs server.store.db uses."""
    out = re.sub(
        r"\bid INTEGER PRIMARY KEY\b",
        "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        sqlite_schema,
    )
    out = re.sub(r"\bINTEGER\b", "BIGINT", out)
    out = re.sub(r"\bREAL\b", "DOUBLE PRECISION", out)
    return re.sub(r"\)\s*WITHOUT ROWID;", ");", out)


# tsvector positions stop at 16,383 and a lexeme keeps at most 256 positions; a lexeme is at
# most 2,047 bytes. Pages are far below all three; the caps keep a pathological one storable.
_MAX_POS = 16383
_MAX_LEXEME_CHARS = 500
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The tokens of already lower-cased or folded text, as the query parser finds them."""
    return [w[:_MAX_LEXEME_CHARS] for w in _WORD.findall(text)]


def tsvector(text: str) -> str:
    """A tsvector literal (cast with ``::tsvector``) of ``text``'s words with positions."""
    return _tsvector(_WORD.findall(text), text)


def _tsvector(found: list[str], text: str) -> str:
    if len(found) > _MAX_POS or any(len(w) > _MAX_LEXEME_CHARS for w in found):
        found = words(text)  # a pathological page: capped positions and words
    positions: dict[str, list[str]] = {}
    for i, word in enumerate(found, 1):
        at = positions.get(word)
        if at is None:
            positions[word] = [str(min(i, _MAX_POS))]
        elif len(at) < 256:
            at.append(str(min(i, _MAX_POS)))
    return " ".join([f"'{w}':{','.join(p)}" for w, p in positions.items()])


def tsvectors(text: str) -> tuple[str, str]:
    """:func:`tsvector` and :func:`pairs_tsvector` of ``text``, its words found once."""
    found = _WORD.findall(text)
    return _tsvector(found, text), _pairs_tsvector(found)


# A pair lexeme is two adjacent tokens joined by a space (a character no token holds, so a
# pair never equals a word); each side is cut to this many characters so that a pair of the
# longest words (3 bytes a character in UTF-8) stays under the 2,047-byte lexeme limit.
_PAIR_SIDE_CHARS = 250


def pair(a: str, b: str) -> str:
    """The pair lexeme of two adjacent tokens."""
    return f"{a[:_PAIR_SIDE_CHARS]} {b[:_PAIR_SIDE_CHARS]}"


def pairs_tsvector(text: str) -> str:
    """A tsvector literal of the adjacent token pairs of ``text`` (already lower-cased or
    folded), without positions: "ủy ban nhân dân" → 'ủy ban' 'ban nhân' 'nhân dân'.
    Adjacent as the word vector's positions are: consecutive tokens, whatever punctuation or
    line break lies between them. A page with a phrase has every pair of it; a page with
    every pair of a phrase of 3+ syllables may still not have the phrase (the pairs apart),
    so such a match is checked against the word vector (server.archive.catalog)."""
    return _pairs_tsvector(_WORD.findall(text))


def _pairs_tsvector(found: list[str]) -> str:
    if any(len(w) > _PAIR_SIDE_CHARS for w in found):  # a pathological page
        found = [w[:_PAIR_SIDE_CHARS] for w in found]
    distinct = set(map(" ".join, itertools.pairwise(found)))  # in C: ~0.1 ms per 2 KB page
    return "'" + "' '".join(distinct) + "'" if distinct else ""


def pairs(items: Sequence[Sequence[str]]) -> list[str]:
    """The pair lexemes of every item of 2+ words (a phrase), each once, in order."""
    out: list[str] = []
    for item in items:
        found = [w for t in item for w in words(t)]
        out += [pair(a, b) for a, b in itertools.pairwise(found)]
    return list(dict.fromkeys(out))


def pairs_tsquery(items: Sequence[Sequence[str]]) -> str:
    """A tsquery literal: every adjacent pair of every item of 2+ words (a phrase), AND;
    empty when no item has two words."""
    return " & ".join(f"'{p}'" for p in pairs(items))


def tsquery(items: Sequence[Sequence[str]]) -> str:
    """A tsquery literal: every item (a word, or the words of a phrase) must match, AND."""
    parts = []
    for item in items:
        lexemes = [f"'{w}'" for t in item for w in words(t)]
        if lexemes:
            parts.append("(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts)
