"""Staff authentication: bearer tokens (API) and the same token in a session cookie (web).

Only the sha256 of a token is stored; ``sohoa-server token create --user NAME`` prints the
token once. Users, roles and passwords come with the staff app (issue 6).
"""

from __future__ import annotations

import hashlib
import secrets
import time

from server.db import Database

COOKIE = "sohoa_token"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Database, user: str, note: str = "") -> str:
    token = "sh_" + secrets.token_urlsafe(32)
    with db.tx() as con:
        con.execute(
            "INSERT INTO tokens(token_sha256, user_name, created_at, note) VALUES (?, ?, ?, ?)",
            (_digest(token), user, time.time(), note),
        )
    return token


def user_for(db: Database, token: str | None) -> str | None:
    if not token:
        return None
    row = (
        db.read()
        .execute("SELECT user_name FROM tokens WHERE token_sha256 = ?", (_digest(token),))
        .fetchone()
    )
    return str(row[0]) if row else None
