"""Staff authentication: users with roles, passwords, API tokens and web sessions.

- Passwords: ``hashlib.scrypt`` (n=2**14, r=8, p=1) with a random per-user salt, compared in
  constant time. An unknown user name costs the same hash, so timing does not tell names.
- API tokens (``sohoa-server token create --user NAME``) belong to an existing user and carry
  that user's role; only their sha256 is stored; they expire (``TOKEN_DAYS`` by default) and
  are listed and revoked by an id (the first 12 hex digits of that sha256) or by the token.
- Disabling a user or changing their password ends their sessions and tokens at once.
- One-time login links (the demo prints one): a random code valid for minutes, consumed by
  its first use; no long-lived token ever travels in a URL.
- Web sessions: a random id in an HttpOnly, SameSite=Lax cookie; the table keeps its sha256,
  the user, an expiry and the session's CSRF token (a hidden field in every POST form).
- Brute-force brake (:func:`login`): an attempt is counted — for the user at this client
  address, for the address, for the user — in the same write transaction that checks the
  lock-outs, before the password is hashed, so parallel attempts cannot all pass a check
  made before any of them counted. Past each counter's free failures (5, 20, 50) each
  further failure doubles its lock-out (capped at ``MAX_LOCK`` seconds), during which even
  the right password is refused, unheard (see :func:`_brake_keys` for why three).
- Refused logins reach the audit log once per burst: the burst's first failure, then one row
  with the count when the burst ends (the next attempt after ``BURST_GAP`` of quiet, or a
  success) — never one row per attempt with a name the attacker chose.

This module owns those tables and must not render pages or raise HTTP errors.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from server.archive import audit
from server.store.db import Connection, Database

Role = Literal["viewer", "archivist", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "archivist", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
SESSION_COOKIE = "sohoa_session"
SESSION_SECONDS = 12 * 3600
FREE_FAILURES = 5  # one user from one address
FREE_PER_ADDRESS = 20  # any users from one address
FREE_PER_USER = 50  # one user from any addresses
MAX_LOCK = 15 * 60.0
BURST_GAP = MAX_LOCK  # quiet seconds that end a burst of refused logins
FAILURE_KEEP = 24 * 3600.0  # brake rows older than this are dropped (bounded table)
TOKEN_DAYS = 90
TOKEN_ID_LEN = 12
LINK_MINUTES = 10
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 8


class AuthError(Exception):
    """A refused administrative change (unknown user, bad name, weak password)."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    # Where this user may read (commune labels, districts, OrganIds; see server.archive.access);
    # empty: everywhere. An admin reads everywhere whatever is listed.
    places: tuple[str, ...] = ()

    def can(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


def _principal(con: Connection, name: str, role: Role) -> Principal:
    rows = con.execute(
        "SELECT place FROM user_places WHERE user_name = ? ORDER BY place", (name,)
    ).fetchall()
    return Principal(name, role, tuple(r["place"] for r in rows))


def set_places(db: Database, name: str, places: list[str]) -> tuple[str, ...]:
    """Scope a user to these places (none: everywhere); the list replaces the old one."""
    cleaned = sorted({p.strip() for p in places if p.strip()})
    if any(len(p) > 200 for p in cleaned):
        raise AuthError("a place name has at most 200 characters")
    with db.tx() as con:
        if con.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
            raise AuthError(f"no such user {name!r}")
        con.execute("DELETE FROM user_places WHERE user_name = ?", (name,))
        con.executemany(
            "INSERT INTO user_places(user_name, place) VALUES (?, ?)",
            [(name, p) for p in cleaned],
        )
    return tuple(cleaned)


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: float


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- passwords --------------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), key)


# A stored hash for names that do not exist: checking against it costs the same time.
_DUMMY = hash_password(secrets.token_urlsafe(16))


# -- users ------------------------------------------------------------------------------------


def add_user(db: Database, name: str, role: str, password: str | None) -> Principal:
    """Create a user or change an existing one's role and password (``None``: token only)."""
    if not USER_NAME.match(name):
        raise AuthError("user names are lower-case letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD:
        raise AuthError(f"a password needs at least {MIN_PASSWORD} characters")
    stored = hash_password(password) if password is not None else ""
    with db.tx() as con:
        existed = con.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
        # A disabled user stays disabled (``user enable`` is the one way back).
        con.execute(
            "INSERT INTO users(name, role, password, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET role = excluded.role,"
            " password = CASE WHEN excluded.password = '' THEN users.password"
            " ELSE excluded.password END",
            (name, role, stored, time.time()),
        )
        if existed and password is not None:  # a new password: old sessions and tokens end
            _end_access(con, name)
    return Principal(name, role)


def _end_access(con: Connection, name: str) -> None:
    for table in ("sessions", "tokens", "login_links"):
        con.execute(f"DELETE FROM {table} WHERE user_name = ?", (name,))  # noqa: S608


def set_disabled(db: Database, name: str, disabled: bool) -> None:
    """Disable a user (their sessions, tokens and login links end now) or enable them again
    (with no sessions or tokens: new ones must be made)."""
    with db.tx() as con:
        row = con.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise AuthError(f"no such user {name!r}")
        con.execute("UPDATE users SET disabled = ? WHERE name = ?", (1 if disabled else 0, name))
        if disabled:
            _end_access(con, name)


def get_user(con: Connection, name: str) -> Principal | None:
    row = con.execute(
        "SELECT name, role FROM users WHERE name = ? AND disabled = 0", (name,)
    ).fetchone()
    return _principal(con, row["name"], row["role"]) if row else None


def users(db: Database) -> list[dict[str, object]]:
    con = db.read()
    places: dict[str, list[str]] = {}
    for r in con.execute("SELECT user_name, place FROM user_places ORDER BY place"):
        places.setdefault(r["user_name"], []).append(r["place"])
    rows = con.execute(
        "SELECT u.name, u.role, u.created_at, u.disabled, u.password != '' AS has_password,"
        " (SELECT COUNT(*) FROM tokens t WHERE t.user_name = u.name"
        "  AND COALESCE(t.expires_at, t.created_at + ?) > ?) AS tokens"
        " FROM users u ORDER BY u.name",
        (TOKEN_DAYS * 86400.0, time.time()),
    )
    return [{**dict(r), "places": places.get(r["name"], [])} for r in rows]


# -- tokens -----------------------------------------------------------------------------------


def create_token(db: Database, user: str, note: str = "", days: float = TOKEN_DAYS) -> str:
    if days <= 0:
        raise AuthError("a token must be valid for some days")
    token = "sh_" + secrets.token_urlsafe(32)
    now = time.time()
    with db.tx() as con:
        if get_user(con, user) is None:
            raise AuthError(f"no such user {user!r} (sohoa-server user add {user} --role ...)")
        con.execute(
            "INSERT INTO tokens(token_sha256, user_name, created_at, note, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (_digest(token), user, now, note, now + days * 86400.0),
        )
    return token


def token_id(token: str) -> str:
    """The id ``token list`` shows for a token (a prefix of its sha256; not a secret)."""
    return _digest(token)[:TOKEN_ID_LEN]


def tokens(db: Database) -> list[dict[str, object]]:
    """Every token that still works: id, user, note, created and expiry times."""
    rows = db.read().execute(
        "SELECT token_sha256, user_name, note, created_at,"
        " COALESCE(expires_at, created_at + ?) AS expires_at FROM tokens"
        " WHERE COALESCE(expires_at, created_at + ?) > ? ORDER BY user_name, created_at",
        (TOKEN_DAYS * 86400.0, TOKEN_DAYS * 86400.0, time.time()),
    )
    return [
        {
            "id": r["token_sha256"][:TOKEN_ID_LEN],
            "user": r["user_name"],
            "note": r["note"],
            "created_at": r["created_at"],
            "expires_at": r["expires_at"],
        }
        for r in rows
    ]


def revoke_token(db: Database, which: str) -> tuple[str, str]:
    """Revoke one token, named by the id ``tokens`` lists or by the token itself; its
    (id, user). AuthError when none or several match."""
    which = which.strip()
    with db.tx() as con:
        if which.startswith("sh_"):
            rows = con.execute(
                "SELECT token_sha256, user_name FROM tokens WHERE token_sha256 = ?",
                (_digest(which),),
            ).fetchall()
        elif len(which) >= 6 and all(c in "0123456789abcdef" for c in which):
            rows = con.execute(
                "SELECT token_sha256, user_name FROM tokens WHERE token_sha256 LIKE ?",
                (which + "%",),
            ).fetchall()
        else:
            raise AuthError("give a token id from `sohoa-server token list` or the token")
        if len(rows) != 1:
            raise AuthError("no such token" if not rows else "several tokens match that id")
        con.execute("DELETE FROM tokens WHERE token_sha256 = ?", (rows[0]["token_sha256"],))
    return rows[0]["token_sha256"][:TOKEN_ID_LEN], rows[0]["user_name"]


def principal_for_token(db: Database, token: str | None) -> Principal | None:
    if not token:
        return None
    # The user and their places in one statement (one row per place, one with place NULL for
    # none): every API request asks this, and on PostgreSQL each statement is a round trip.
    rows = (
        db.read()
        .execute(
            "SELECT u.name, u.role, p.place FROM tokens t JOIN users u ON u.name = t.user_name"
            " LEFT JOIN user_places p ON p.user_name = u.name"
            " WHERE t.token_sha256 = ? AND u.disabled = 0"
            " AND COALESCE(t.expires_at, t.created_at + ?) > ? ORDER BY p.place",
            (_digest(token), TOKEN_DAYS * 86400.0, time.time()),
        )
        .fetchall()
    )
    if not rows:
        return None
    places = tuple(r["place"] for r in rows if r["place"] is not None)
    return Principal(rows[0]["name"], rows[0]["role"], places)


# -- one-time login links -----------------------------------------------------------------------


def create_login_link(db: Database, user: str, minutes: float = LINK_MINUTES) -> str:
    """A one-time code that logs ``user`` in once within ``minutes`` (for /login/link)."""
    code = secrets.token_urlsafe(32)
    now = time.time()
    with db.tx() as con:
        found = con.execute(
            "SELECT password FROM users WHERE name = ? AND disabled = 0", (user,)
        ).fetchone()
        if found is None:
            raise AuthError(f"no such user {user!r}")
        con.execute("DELETE FROM login_links WHERE expires_at < ?", (now,))
        con.execute(
            "INSERT INTO login_links(code_sha256, user_name, created_at, expires_at)"
            " VALUES (?, ?, ?, ?)",
            (_digest(code), user, now, now + minutes * 60.0),
        )
    return code


def login_link_user(db: Database, code: str | None) -> str | None:
    """The user a link's code would log in, without using it (None: unknown, used, old)."""
    if not code:
        return None
    row = (
        db.read()
        .execute(
            "SELECT l.user_name FROM login_links l JOIN users u ON u.name = l.user_name"
            " WHERE l.code_sha256 = ? AND l.expires_at > ? AND u.disabled = 0",
            (_digest(code), time.time()),
        )
        .fetchone()
    )
    return None if row is None else str(row["user_name"])


def use_login_link(db: Database, code: str | None) -> Principal | None:
    """The user a link's code logs in, consuming the code; None if unknown, used or old."""
    if not code:
        return None
    with db.tx() as con:
        row = con.execute(
            "SELECT l.user_name, l.expires_at, u.role, u.disabled FROM login_links l"
            " JOIN users u ON u.name = l.user_name WHERE l.code_sha256 = ?",
            (_digest(code),),
        ).fetchone()
        if row is None:
            return None
        con.execute("DELETE FROM login_links WHERE code_sha256 = ?", (_digest(code),))
    if row["disabled"] or row["expires_at"] < time.time():
        return None
    return _principal(db.read(), row["user_name"], row["role"])


def user_for(db: Database, token: str | None) -> str | None:
    """The user name a token belongs to (kept for callers of the first version)."""
    found = principal_for_token(db, token)
    return found.name if found else None


# -- login and its brake ----------------------------------------------------------------------


def _lock_left(row: Any, now: float, free: int) -> float:
    if row is None or row["failures"] < free:
        return 0.0
    lock: float = min(MAX_LOCK, 2.0 ** (int(row["failures"]) - free + 1))
    return max(0.0, float(row["last_at"]) + lock - now)


def _brake_keys(name: str, ip: str) -> dict[str, int]:
    """The brake's counters for an attempt, each with the failures it lets through before
    locking: this user from this address (the 5 an attacker gets), this address for any
    user (credential stuffing; an office behind one NAT address shares it), this user from
    anywhere (guessing spread over many addresses). A lone attacker thus locks out the
    victim only at the attacker's own address."""
    return {f"pair:{name}\n{ip}": FREE_FAILURES, f"ip:{ip}": FREE_PER_ADDRESS,
            f"user:{name}": FREE_PER_USER}  # fmt: skip


def locked_for(db: Database, name: str, ip: str) -> float:
    """Seconds before another login attempt for this user from this address is heard."""
    con, now = db.read(), time.time()
    return max(
        _lock_left(
            con.execute(
                "SELECT failures, last_at FROM login_failures WHERE key = ?", (k,)
            ).fetchone(),
            now,
            free,
        )
        for k, free in _brake_keys(name, ip).items()
    )


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None  # None: refused
    locked_for: float  # > 0: refused without trying the password (seconds left)
    tried: bool  # the password was checked


def _audit_name(name: str) -> str:
    # The name is the attacker's text: kept only when it could be a user name.
    return name if USER_NAME.match(name) else "?"


def _close_burst(con: Connection, row: Any, ip: str) -> None:
    """One audit row for a burst of refused logins from one address that has ended."""
    count = int(row["failures"]) + int(row["refused"])
    if count > 1:  # its first failure has a row already
        audit.append(
            con, "-", "login.fail.burst", "",
            {"count": count, "tried": int(row["failures"]), "from": row["first_at"],
             "to": row["last_at"]},
            ip,
        )  # fmt: skip


def _reserve(db: Database, name: str, ip: str) -> tuple[float, bool]:
    """Count an attempt before it is tried, or refuse it: (seconds locked, 0.0 when heard;
    whether it is the first attempt of its address's burst)."""
    now = time.time()
    keys = _brake_keys(name, ip)
    ip_key = f"ip:{ip}"
    with db.tx() as con:
        con.execute("DELETE FROM login_failures WHERE last_at < ?", (now - FAILURE_KEEP,))
        rows = {
            k: con.execute("SELECT * FROM login_failures WHERE key = ?", (k,)).fetchone()
            for k in keys
        }
        ip_row = rows[ip_key]
        if ip_row is not None and now - float(ip_row["last_at"]) > BURST_GAP:
            _close_burst(con, ip_row, ip)  # an old burst ends; this attempt starts anew
            con.execute("DELETE FROM login_failures WHERE key = ?", (ip_key,))
            rows[ip_key] = None
        wait = max(_lock_left(rows[k], now, free) for k, free in keys.items())
        if wait > 0:
            for key in keys:
                con.execute("UPDATE login_failures SET refused = refused + 1 WHERE key = ?", (key,))
            return wait, False
        for key in keys:
            con.execute(
                "INSERT INTO login_failures(key, failures, last_at, first_at, refused)"
                " VALUES (?, 1, ?, ?, 0) ON CONFLICT(key) DO UPDATE"
                " SET failures = login_failures.failures + 1, last_at = excluded.last_at",
                (key, now, now),
            )
    return 0.0, rows[ip_key] is None


def login(db: Database, name: str, password: str, ip: str, via: str = "password") -> LoginResult:
    """Check a password under the brake (see the module's docstring). A success and the
    end of the address's burst are audited here; so is a burst's first failure."""
    wait, first = _reserve(db, name, ip)
    if wait > 0:
        return LoginResult(None, wait, tried=False)
    row = (
        db.read()
        .execute("SELECT name, role, password FROM users WHERE name = ? AND disabled = 0", (name,))
        .fetchone()
    )
    stored = row["password"] if row is not None and row["password"] else _DUMMY
    ok = check_password(password, stored) and row is not None and bool(row["password"])
    if not ok or row is None:
        if first:  # a burst's first failure is heard of at once; the rest when it ends
            audit.record(db, _audit_name(name), "login.fail", "", {"via": via, "count": 1}, ip)
        return LoginResult(None, 0.0, tried=True)
    pair_key, ip_key, user_key = _brake_keys(name, ip)
    with db.tx() as con:
        ip_row = con.execute("SELECT * FROM login_failures WHERE key = ?", (ip_key,)).fetchone()
        if ip_row is not None:
            # This success was counted as a failure when reserved: the burst had one less.
            burst = {**dict(ip_row), "failures": int(ip_row["failures"]) - 1}
            _close_burst(con, burst, ip)
        con.execute(
            "DELETE FROM login_failures WHERE key IN (?, ?, ?)", (pair_key, ip_key, user_key)
        )
        audit.append(con, row["name"], "login", "", {"via": via}, ip)
    return LoginResult(_principal(db.read(), row["name"], row["role"]), 0.0, tried=True)


def authenticate(db: Database, name: str, password: str, ip: str) -> Principal | None:
    """:func:`login`'s principal (the first version's name)."""
    return login(db, name, password, ip).principal


# -- sessions ---------------------------------------------------------------------------------


def create_session(db: Database, principal: Principal) -> str:
    sid = secrets.token_urlsafe(32)
    now = time.time()
    with db.tx() as con:
        con.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
        con.execute(
            "INSERT INTO sessions(id_sha256, user_name, csrf, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (_digest(sid), principal.name, secrets.token_urlsafe(24), now, now + SESSION_SECONDS),
        )
    return sid


def session_for(db: Database, sid: str | None) -> Session | None:
    if not sid:
        return None
    con = db.read()
    row = con.execute(
        "SELECT u.name, u.role, s.csrf, s.expires_at FROM sessions s"
        " JOIN users u ON u.name = s.user_name"
        " WHERE s.id_sha256 = ? AND s.expires_at > ? AND u.disabled = 0",
        (_digest(sid), time.time()),
    ).fetchone()
    if row is None:
        return None
    return Session(_principal(con, row["name"], row["role"]), row["csrf"], row["expires_at"])


def end_session(db: Database, sid: str | None) -> None:
    if sid:
        with db.tx() as con:
            con.execute("DELETE FROM sessions WHERE id_sha256 = ?", (_digest(sid),))


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted or "")
