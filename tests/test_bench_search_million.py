"""`python -m bench search_million --copy-of URL --shared-buffers SIZE`: the same database
measured under another server configuration, side by side with the running one (which is
read online and keeps running)."""

from __future__ import annotations

import psycopg
import pytest
from pgcluster import PostgresCluster

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
