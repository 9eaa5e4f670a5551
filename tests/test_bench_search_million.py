"""`python -m bench search_million`: ``--copy-of URL --shared-buffers SIZE`` (the same
database measured under another server configuration, side by side with the running one,
which is read online and keeps running), and the real server it asks over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from pgcluster import PostgresCluster

from bench import search_million
from server.archive import auth, search
from server.archive.catalog import Catalog
from server.archive.records import Records
from server.store.db import Database
from server.web.api import SearchHit

pytestmark = pytest.mark.postgres


def _show(url: str, setting: str) -> str:
    with psycopg.connect(url) as con:
        row = con.execute(f"SHOW {setting}").fetchone()
        assert row is not None
        return str(row[0])


def test_a_copy_holds_the_running_server_s_rows_under_its_own_settings(
    pg_cluster: PostgresCluster,
) -> None:
    url = pg_cluster.create_database("source")
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE pages (id int PRIMARY KEY, text text)")
        con.execute("INSERT INTO pages SELECT g, 'trang ' || g FROM generate_series(1, 500) g")
    copy = PostgresCluster({"shared_buffers": "32MB", "effective_cache_size": "1GB"})
    try:
        copy.start_copy_of(url)
        copied = copy.url(url.rsplit("/", 1)[1])
        with psycopg.connect(copied) as con:
            row = con.execute("SELECT count(*), max(text) FROM pages").fetchone()
        assert row == (500, "trang 99")
        assert (_show(copied, "shared_buffers"), _show(copied, "effective_cache_size")) == (
            "32MB",
            "1GB",
        )
        assert _show(url, "shared_buffers") == "64MB"  # the source as it was, still running
        with psycopg.connect(url) as con:
            assert con.execute("SELECT count(*) FROM pages").fetchone() == (500,)
    finally:
        copy.stop()


def test_the_real_server_answers_each_class_s_queries_as_search_does(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    """The benchmark's third column: ``sohoa-server run`` in a subprocess, asked over HTTP,
    answers with the hits, scores, snippets, total and estimate flag of ``search()``."""
    url = pg_cluster.create_database("served")
    search_million.build(url, 600, 1)
    db = Database(url)
    try:
        catalog, records = Catalog(db), Records(db)
        reader = auth.add_user(db, "bench", "viewer", None)
        token = auth.create_token(db, "bench")
        asked = [q for items in search_million.queries(2).values() for q in items]
        with search_million.served(url, tmp_path / "served") as server:
            server.wait(token, warm=False)
            assert server.process.poll() is None
            answered = 0
            for q in asked:
                found = search.search(catalog, records, q, reader)
                expected = [
                    SearchHit.model_validate(hit).model_dump(mode="json")
                    for hit in [{"kind": "page", **h} for h in found.pages] + found.records
                ]
                assert server.search(q, token) == (expected, found.total, found.estimated), q
                answered += bool(found.pages)
            assert answered >= len(asked) // 2  # most queries find pages: a real comparison
            time.sleep(5.5)  # uvicorn closes a connection idle for 5 s: opened again
            assert server.search(asked[0], token)[0]
            with pytest.raises(RuntimeError, match="401"):
                server.search("xã", "not-a-token")
    finally:
        db.close()
