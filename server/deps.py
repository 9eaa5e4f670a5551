"""Shared FastAPI dependencies: the archive's objects and the authenticated staff user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from server import auth
from server.catalog import Catalog
from server.db import Database


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(auth.COOKIE)


def require_user(request: Request, db: Annotated[Database, Depends(get_db)]) -> str:
    user = auth.user_for(db, _token(request))
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


User = Annotated[str, Depends(require_user)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
