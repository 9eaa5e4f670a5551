"""Staff authentication: users with roles, passwords, API tokens and web sessions.

- Passwords: ``hashlib.scrypt`` (n=2**14, r=8, p=1) with a random per-user salt, compared in
  constant time. An unknown user name costs the same hash, so timing does not tell names.
- API tokens (``sohoa-server token create --user NAME``) belong to an existing user and carry
  that user's role; only their sha256 is stored.
- Web sessions: a random id in an HttpOnly, SameSite=Lax cookie; the table keeps its sha256,
  the user, an expiry and the session's CSRF token (a hidden field in every POST form).
- Brute-force brake: failures are counted per user name and per client address; after
  ``FREE_FAILURES`` each further failure doubles a lock-out (capped at ``MAX_LOCK`` seconds)
  during which even the right password is refused.

This module owns those tables and must not render pages or raise HTTP errors.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from server.store.db import Connection, Database

Role = Literal["viewer", "archivist", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "archivist", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
SESSION_COOKIE = "sohoa_session"
SESSION_SECONDS = 12 * 3600
FREE_FAILURES = 5
MAX_LOCK = 15 * 60.0
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 8


class AuthError(Exception):
    """A refused administrative change (unknown user, bad name, weak password)."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def can(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


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
        con.execute(
            "INSERT INTO users(name, role, password, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET role = excluded.role,"
            " password = CASE WHEN excluded.password = '' THEN users.password"
            " ELSE excluded.password END, disabled = 0",
            (name, role, stored, time.time()),
        )
    return Principal(name, role)


def get_user(con: Connection, name: str) -> Principal | None:
    row = con.execute(
        "SELECT name, role FROM users WHERE name = ? AND disabled = 0", (name,)
    ).fetchone()
    return Principal(row["name"], row["role"]) if row else None


def users(db: Database) -> list[dict[str, object]]:
    rows = db.read().execute(
        "SELECT u.name, u.role, u.created_at, u.disabled, u.password != '' AS has_password,"
        " (SELECT COUNT(*) FROM tokens t WHERE t.user_name = u.name) AS tokens"
        " FROM users u ORDER BY u.name"
    )
    return [dict(r) for r in rows]


# -- tokens -----------------------------------------------------------------------------------


def create_token(db: Database, user: str, note: str = "") -> str:
    token = "sh_" + secrets.token_urlsafe(32)
    with db.tx() as con:
        if get_user(con, user) is None:
            raise AuthError(f"no such user {user!r} (sohoa-server user add {user} --role ...)")
        con.execute(
            "INSERT INTO tokens(token_sha256, user_name, created_at, note) VALUES (?, ?, ?, ?)",
            (_digest(token), user, time.time(), note),
        )
    return token


def principal_for_token(db: Database, token: str | None) -> Principal | None:
    if not token:
        return None
    row = (
        db.read()
        .execute(
            "SELECT u.name, u.role FROM tokens t JOIN users u ON u.name = t.user_name"
            " WHERE t.token_sha256 = ? AND u.disabled = 0",
            (_digest(token),),
        )
        .fetchone()
    )
    return Principal(row["name"], row["role"]) if row else None


def user_for(db: Database, token: str | None) -> str | None:
    """The user name a token belongs to (kept for callers of the first version)."""
    found = principal_for_token(db, token)
    return found.name if found else None


# -- login and its brake ----------------------------------------------------------------------


def _lock_left(con: Connection, key: str, now: float) -> float:
    row = con.execute(
        "SELECT failures, last_at FROM login_failures WHERE key = ?", (key,)
    ).fetchone()
    if row is None or row["failures"] < FREE_FAILURES:
        return 0.0
    lock: float = min(MAX_LOCK, 2.0 ** (int(row["failures"]) - FREE_FAILURES + 1))
    return max(0.0, float(row["last_at"]) + lock - now)


def locked_for(db: Database, name: str, ip: str) -> float:
    """Seconds before another login attempt for this user or from this address is heard."""
    con, now = db.read(), time.time()
    return max(_lock_left(con, f"user:{name}", now), _lock_left(con, f"ip:{ip}", now))


def authenticate(db: Database, name: str, password: str, ip: str) -> Principal | None:
    """Check a password, counting failures. Callers check :func:`locked_for` first."""
    row = (
        db.read()
        .execute("SELECT name, role, password FROM users WHERE name = ? AND disabled = 0", (name,))
        .fetchone()
    )
    stored = row["password"] if row is not None and row["password"] else _DUMMY
    ok = check_password(password, stored) and row is not None and bool(row["password"])
    now = time.time()
    with db.tx() as con:
        if ok:
            con.execute(
                "DELETE FROM login_failures WHERE key IN (?, ?)", (f"user:{name}", f"ip:{ip}")
            )
        else:
            for key in (f"user:{name}", f"ip:{ip}"):
                con.execute(
                    "INSERT INTO login_failures(key, failures, last_at) VALUES (?, 1, ?)"
                    " ON CONFLICT(key) DO UPDATE"
                    " SET failures = login_failures.failures + 1, last_at = ?",
                    (key, now, now),
                )
    return Principal(row["name"], row["role"]) if ok and row is not None else None


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
    row = (
        db.read()
        .execute(
            "SELECT u.name, u.role, s.csrf, s.expires_at FROM sessions s"
            " JOIN users u ON u.name = s.user_name"
            " WHERE s.id_sha256 = ? AND s.expires_at > ? AND u.disabled = 0",
            (_digest(sid), time.time()),
        )
        .fetchone()
    )
    if row is None:
        return None
    return Session(Principal(row["name"], row["role"]), row["csrf"], row["expires_at"])


def end_session(db: Database, sid: str | None) -> None:
    if sid:
        with db.tx() as con:
            con.execute("DELETE FROM sessions WHERE id_sha256 = ?", (_digest(sid),))


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted or "")
