"""``sohoa-server db migrate-to-postgresql``, ``sohoa-server backup``, ``sohoa-server restore``.

Backups (docs/operations.md §8, runbook R7): the catalogue first — ``pg_dump -Fc`` of the
PostgreSQL database, or SQLite's online backup of the embedded file — written into
``<data_dir>/backup/``, then ONE restic snapshot of ``data_dir`` (the store, the receipt
key, that catalogue copy; not the live SQLite file nor the render cache). restic
deduplicates and encrypts: a nightly snapshot costs the new pages only. The store never
deletes a file, so every row of the catalogue copy has its file in the same snapshot.

``restore`` takes a snapshot back into the configured ``data_dir`` (the same path: the
catalogue records absolute file paths) and the configured database, which must be empty (a
fresh ``createdb``, or a new SQLite path) unless ``--force``. It then clears the fixity
check's resume position, so that the next ``sohoa-server fixity check`` re-hashes every part.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from server.config import ServerSettings
    from server.store.db import Database
    from server.store.objects import ObjectStore
    from server.store.offsite import Copy

BACKUP_DIR = "backup"  # under data_dir: the catalogue copy restic takes with the files
PG_DUMP = "catalogue.pgdump"
SQLITE_COPY = "catalogue.sqlite3"
_T = TypeVar("_T")


def _refused(code: int, line: str) -> Exception:
    from server.cli import Refused

    return Refused(code, line)


# -- db migrate-to-postgresql -------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    """Exit 0: copied and verified; 1: not verified (nothing committed); 2: the target holds
    data (give --replace); 69: a database cannot be opened; 78: the source is not SQLite."""
    import psycopg

    from server.cli import _settings
    from server.store import migrate
    from server.store.db import OPERATIONAL_ERRORS, Database, is_postgres_url

    settings = _settings(args)
    try:
        source = settings.sqlite_path()
    except Exception as exc:
        raise _refused(78, f"the configured catalogue is not SQLite: {exc}") from exc
    if not is_postgres_url(args.to):
        raise _refused(2, "--to must be a postgresql:// URL")
    password = None
    if args.password_file is not None:
        password = args.password_file.read_text(encoding="utf-8").strip()
    try:
        target = Database(args.to, password, pool_size=2)
    except OPERATIONAL_ERRORS as exc:
        raise _refused(69, f"cannot open the database {_redacted(args.to)}: {exc}") from exc
    try:
        report = migrate.migrate(
            source, target, replace=args.replace, say=lambda line: print(line, flush=True)
        )
    except migrate.MigrationError as exc:
        code = 2 if "already holds data" in str(exc) else 1
        raise _refused(code, str(exc)) from exc
    except (psycopg.Error, sqlite3.Error) as exc:  # a row PostgreSQL refuses, a lost link
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _refused(1, f"copy failed, nothing committed: {line}") from exc
    finally:
        target.close()
    print(
        f"migrated and verified: {report.pages} page(s), {report.parts} part(s), "
        f"{report.texts} text(s) indexed, {sum(report.rows.values())} row(s) in "
        f'{report.seconds:.1f} s. Now set database_url = "{_redacted(args.to)}" and '
        "restart sohoa-server; keep the SQLite file until the first backup of PostgreSQL."
    )
    return 0


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


# -- backup and restore ---------------------------------------------------------------------------


def _pg_env(settings: ServerSettings) -> tuple[str, dict[str, str]]:
    """The database URL without its password, and an environment with PGPASSWORD: the
    password stays out of the process list."""
    url = str(settings.database())
    parts = urlsplit(url)
    env = dict(os.environ)
    password = parts.password or settings.database_password()
    if parts.password:
        url = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@")))
    if password:
        env["PGPASSWORD"] = password
    return url, env


def _restic_env(args: argparse.Namespace, settings: ServerSettings) -> tuple[str, dict[str, str]]:
    from server.archive.repair import RepairRefused, restic_env

    try:
        return restic_env(settings, args.repository)
    except ValueError as exc:
        hint = ", or give --repository" if "no backup repository" in str(exc) else ""
        raise _refused(78, f"{exc}{hint}") from exc
    except RepairRefused as exc:
        raise _refused(exc.code, str(exc)) from exc


def _run(cmd: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise _refused(69, f"{what}: cannot run {cmd[0]}: {exc}") from exc
    if out.returncode != 0:
        last = (out.stderr or out.stdout).strip().splitlines()
        raise _refused(74, f"{what} failed: {last[-1] if last else out.returncode}")
    return out


def _dump_catalogue(settings: ServerSettings) -> Path:
    """The catalogue's consistent copy under data_dir/backup (replaced atomically)."""
    from server.store.migrate import readonly_uri

    folder = settings.data_dir / BACKUP_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = settings.database()
    if isinstance(target, Path):
        final, partial = folder / SQLITE_COPY, folder / (SQLITE_COPY + ".partial")
        (folder / PG_DUMP).unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        src = sqlite3.connect(readonly_uri(target), uri=True, timeout=30)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # online: a consistent copy while the server writes
        finally:
            dst.close()
            src.close()
    else:
        final, partial = folder / PG_DUMP, folder / (PG_DUMP + ".partial")
        (folder / SQLITE_COPY).unlink(missing_ok=True)
        url, env = _pg_env(settings)
        _run(["pg_dump", "-Fc", "-f", str(partial), "-d", url], env, "pg_dump")
    with partial.open("rb") as fh:
        os.fsync(fh.fileno())
    partial.replace(final)
    return final


def cmd_backup(args: argparse.Namespace) -> int:
    """Exit 0: snapshot written; 69: restic or the database cannot be reached; 74: a step
    failed; 78: no repository or password configured."""
    from server.cli import _settings

    settings = _settings(args)
    repo, env = _restic_env(args, settings)
    probe = subprocess.run(["restic", "cat", "config"], env=env, capture_output=True, text=True)
    if probe.returncode:
        if "wrong password" in probe.stderr:
            raise _refused(78, f"the backup password does not open the repository {repo}")
        _run(["restic", "init"], env, "restic init")
        print(f"initialised the restic repository {repo}")
    offsite = _backup_store(settings)  # refused before anything is written
    dump = _dump_catalogue(settings)  # the catalogue first, then the files it names
    print(f"catalogue copied to {dump} ({dump.stat().st_size} bytes)")
    reread = check_group(args.check_days) if args.check_days else None
    copied = None if offsite is None else _backup_objects(settings, offsite, reread)
    data = settings.data_dir.resolve()
    cmd = ["restic", "backup", "--json", "--tag", "sohoa", str(data), *map(str, args.also)]
    excludes = [data / BACKUP_DIR / ".restic-cache", data / "render-cache"]
    # Chunks staged for the object store are no part of the archive until uploaded.
    excludes += [data / "store-staging", data / BACKUP_DIR / "objects-staging"]
    live = settings.database()
    if isinstance(live, Path):
        excludes += [Path(f"{live.resolve()}{end}") for end in ("", "-wal", "-shm", "-journal")]
    for path in excludes:
        cmd += ["--exclude", str(path)]
    out = _run(cmd, env, "restic backup")
    summary = next(
        (m for m in map(_json, out.stdout.splitlines()) if m.get("message_type") == "summary"),
        {},
    )
    print(
        f"snapshot {str(summary.get('snapshot_id', '?'))[:8]} in {repo}: "
        f"{summary.get('total_files_processed', '?')} file(s), "
        f"{summary.get('data_added', '?')} byte(s) new"
    )
    keep = [
        f"--keep-{span}={n}"
        for span, n in (("daily", args.keep_daily), ("weekly", args.keep_weekly),
                        ("monthly", args.keep_monthly))
        if n
    ]  # fmt: skip
    if keep:
        _run(["restic", "forget", "--tag", "sohoa", "--prune", *keep], env, "restic forget")
        print("old snapshots forgotten: " + " ".join(keep))
    if args.check_days:
        _check_repository(settings, repo, env, args.check_days)
    return 0 if copied is None or copied.whole else 1


def check_group(days: int, now: float | None = None) -> tuple[int, int]:
    """Today's group ``(n, days)``: ``n`` moves on by one each day, so that each of the
    ``days`` groups (of restic's packs, of the backup store's copies) is read once in
    ``days`` days."""
    day = int((time.time() if now is None else now) // 86400)
    return day % days + 1, days


def check_subset(days: int, now: float | None = None) -> str:
    """restic's ``--read-data-subset`` for today's group (:func:`check_group`)."""
    n, t = check_group(days, now)
    return f"{n}/{t}"


def _check_repository(settings: ServerSettings, repo: str, env: dict[str, str], days: int) -> None:
    """``restic check``: the repository's structure (indexes, snapshots, trees), and today's
    group of its packs downloaded and verified (:func:`check_subset`). A repository that
    fails is an alert for staff and exit 74: a backup that cannot be read is found on the
    night it breaks, not on the day it is needed."""
    subset = check_subset(days)
    cmd = ["restic", "check", f"--read-data-subset={subset}"]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise _refused(69, f"restic check: cannot run restic: {exc}") from exc
    if out.returncode == 0:
        print(
            f"repository checked: its structure, and pack group {subset} read back and"
            f" verified (every pack once in {days} days)"
        )
        return
    said = [
        line.strip()
        for line in (out.stdout + "\n" + out.stderr).splitlines()
        if line.strip()
        and not line.lstrip().startswith("[")  # not progress bars
        and not line.startswith(
            ("using temporary cache", "create exclusive lock", "load ", "check ", "read group")
        )
    ]
    found = "; ".join(said[-6:]) or f"exit {out.returncode}"
    detail = f"restic check {repo} (packs {subset}): {found}"
    from server.cli import _open

    try:
        db = _open(settings)
        try:
            db.alert("backup_damaged", detail)
        finally:
            db.close()
    except Exception as exc:  # the database away: the refusal below still says it all
        print(f"the alert could not be recorded: {exc}", file=sys.stderr)
    raise _refused(
        74,
        f"the backup repository {repo} is damaged: {detail}. The snapshots may not restore:"
        " runbook R7, 'Kho sao lưu hỏng / A damaged backup repository'",
    )


def _backup_store(settings: ServerSettings) -> ObjectStore | None:
    """With an object store, the backup store its objects go to (refused, 78, if unset)."""
    if settings.store_url is None:
        return None
    from server.store import objects

    try:
        return objects.backup_store_for(settings)
    except (ValueError, objects.ObjectStoreError) as exc:
        raise _refused(78, f"backup: {exc}") from exc


def _backup_objects(
    settings: ServerSettings, to: ObjectStore, reread: tuple[int, int] | None
) -> Copy:
    """Every object the catalogue names, copied to the backup store before the snapshot
    that holds the catalogue copy is taken (server.store.offsite)."""
    from server.cli import _open, store_trouble
    from server.store import objects, offsite

    db = _open(settings)  # after the dump: it names every object the dump names, and more
    try:
        report = offsite.backup(db, to, reread=reread)
    except objects.ObjectStoreError as exc:
        raise _refused(
            69,
            f"objects not all copied, no snapshot taken: {store_trouble(exc)}; run the same"
            " command again (what was copied stays, verified)",
        ) from exc
    finally:
        db.close()
    print(
        offsite.summary(report, f"objects backed up to s3://{to.target.bucket}/{to.target.prefix}")
    )
    if not report.whole:
        print(
            f"{len(report.damaged) + len(report.missing)} object(s) NOT COPIED (named above):"
            " sohoa-server fixity check flags their parts",
            file=sys.stderr,
        )
    return report


def _json(line: str) -> dict[str, object]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _catalogue_holds_pages(settings: ServerSettings) -> bool:
    from server.store.migrate import readonly_uri

    target = settings.database()
    if isinstance(target, Path):
        if not target.exists():
            return False
        with sqlite3.connect(readonly_uri(target), uri=True) as con:
            found = con.execute("SELECT name FROM sqlite_master WHERE name = 'pages'")
            if found.fetchone() is None:
                return False
            return bool(con.execute("SELECT EXISTS (SELECT 1 FROM pages)").fetchone()[0])
    from server.store import pg

    link = pg.connect(target, settings.database_password())
    try:
        table = link.execute("SELECT to_regclass('pages')").fetchone()
        if table is None or table[0] is None:
            return False
        row = link.execute("SELECT EXISTS (SELECT 1 FROM pages)").fetchone()
        return bool(row and row[0])
    finally:
        link.close()


def cmd_restore(args: argparse.Namespace) -> int:
    """Exit 0: restored; 2: the catalogue or the store is not empty (give --force); 69: the
    database or restic cannot be reached; 74: a step failed; 78: nothing configured."""
    from server.archive import fixity
    from server.cli import _settings
    from server.store.db import OPERATIONAL_ERRORS, Database

    settings = _settings(args)
    repo, env = _restic_env(args, settings)
    _backup_store(settings)  # with an object store: refused now if the backup store is unset
    data = settings.data_dir.resolve()
    try:
        holds = _catalogue_holds_pages(settings)
    except OPERATIONAL_ERRORS as exc:
        raise _refused(69, f"cannot open the database: {exc}") from exc
    store = data / "store"
    if not args.force and (holds or (store.exists() and any(store.iterdir()))):
        raise _refused(
            2,
            "the archive is not empty (pages in the catalogue or files in the store): "
            "restore onto an empty one, or give --force to overwrite",
        )
    _run(
        ["restic", "restore", args.snapshot, "--target", "/", "--include", str(data)],
        env,
        "restic restore",
    )
    print(f"files of snapshot {args.snapshot} from {repo} restored into {data}")
    target = settings.database()
    if isinstance(target, Path):
        copy = data / BACKUP_DIR / SQLITE_COPY
        if not copy.exists():
            raise _refused(74, f"the snapshot holds no SQLite catalogue ({copy})")
        for end in ("-wal", "-shm", "-journal"):
            Path(f"{target}{end}").unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".restoring")
        shutil.copyfile(copy, partial)
        partial.replace(target)
    else:
        dump = data / BACKUP_DIR / PG_DUMP
        if not dump.exists():
            raise _refused(74, f"the snapshot holds no PostgreSQL dump ({dump})")
        url, pg_env = _pg_env(settings)
        _run(
            ["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
             "-d", url, str(dump)],
            pg_env,
            "pg_restore",
        )  # fmt: skip
    print(f"catalogue restored into {_redacted(str(target))}")
    try:
        db = Database(target, settings.database_password(), pool_size=2)
    except OPERATIONAL_ERRORS as exc:
        raise _refused(69, f"cannot open the restored database: {exc}") from exc
    try:
        with db.tx() as con:  # the next fixity check re-hashes everything restored
            con.execute("DELETE FROM meta WHERE key = ?", (fixity.CURSOR_KEY,))
        pages = db.read().execute("SELECT count(*) FROM pages").fetchone()[0]
    finally:
        db.close()
    print(f"{pages} page(s) in the catalogue.")
    code = 0
    if settings.store_url is not None:  # the objects, from the backup store
        from server.cli import restore_objects

        code = restore_objects(settings)
        if code == 69:
            return code  # said: run `sohoa-server store restore` to go on
    print(
        "Next: sohoa-server fixity check --rate-mb 0, sohoa-server audit verify, "
        "sohoa-server doctor (runbook R7)"
    )
    return code


def cmd_search_pairs(args: argparse.Namespace) -> int:
    """Exit 0: every page has its pair vectors (the archive is marked ready); 75: pages were
    indexed meanwhile by an older release (run again); 69: the database cannot be opened."""
    from server.cli import _open, _settings
    from server.store import pairs

    db = _open(_settings(args))
    try:
        if db.dialect != "postgresql":
            print("SQLite: no pair tables (FTS5 finds phrases itself); nothing to do")
            return 0
        started = time.monotonic()
        written = pairs.backfill(db, every=args.every, say=print)
        ready = pairs.state(db) == "ready"
    finally:
        db.close()
    print(
        f"{written} page(s) given their pairs in {time.monotonic() - started:.0f} s;"
        f" search {'uses them now' if ready else 'does not use them yet'}"
    )
    return 0 if ready else 75


def cmd_search_epochs(args: argparse.Namespace) -> int:
    """Exit 0: the newest epochs' indexes are there (or nothing to do); 75: another process
    is building them; 69: the database cannot be opened."""
    from server.store import epochs

    ran = _on_postgresql(args, lambda db: epochs.ensure(db, say=print))
    if ran is None:
        return 0
    done, seconds = ran
    if done is None:
        print("another process is building them now; nothing done")
        return 75
    print(f"{len(done[0])} index(es) built, {len(done[1])} dropped in {seconds:.0f} s")
    return 0


def cmd_search_vectors(args: argparse.Namespace) -> int:
    """Exit 0: every word vector table is stored plain; 69: the database cannot be opened."""
    from server.store import vectors

    ran = _on_postgresql(args, lambda db: vectors.rewrite(db, say=print))
    if ran is not None:
        print(f"{len(ran[0])} table(s) rewritten in {ran[1]:.0f} s")
    return 0


def _on_postgresql(
    args: argparse.Namespace, work: Callable[[Database], _T]
) -> tuple[_T, float] | None:
    """``work`` on the archive's database and how long it took; None on SQLite, which has no
    word vector tables (said on stdout). The database is closed after."""
    from server.cli import _open, _settings

    db = _open(_settings(args))
    try:
        if db.dialect != "postgresql":
            print("SQLite: no word vector tables (FTS5); nothing to do")
            return None
        started = time.monotonic()
        return work(db), time.monotonic() - started
    finally:
        db.close()


# -- parsers ----------------------------------------------------------------------------------


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="the catalogue database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    mig = db_sub.add_parser(
        "migrate-to-postgresql",
        help="copy the embedded SQLite catalogue into PostgreSQL, verified page for page",
        description="Stop sohoa-server first. Every row goes over in one PostgreSQL "
        "transaction and is checked before it commits (row counts, each page's checksums, "
        "parts and text, the audit chain): all or nothing, so a failed run can simply be "
        "run again. The files stay where they are. Exit 0: done; 1: not verified, nothing "
        "committed; 2: the target holds data; 69: a database cannot be opened.",
    )
    mig.add_argument("--to", required=True, help="postgresql://user@host:port/dbname")
    mig.add_argument(
        "--password-file", type=Path, help="the PostgreSQL password (else the URL or libpq's)"
    )
    mig.add_argument(
        "--replace", action="store_true", help="empty a target that already holds data"
    )
    mig.set_defaults(func=cmd_migrate)

    pairs = db_sub.add_parser(
        "search-pairs",
        help="fill the adjacent-syllable pair index of pages indexed before it (PostgreSQL)",
        description="Search finds names and quoted phrases through an index of adjacent "
        "syllable pairs, which ingest fills for every new page. An archive indexed before "
        "it needs this once after the upgrade; until it has finished, search uses the word "
        "index alone (correct, slower). Safe while the server runs; stopped, it resumes "
        "where it was. Exit 0: done, search uses it; 75: pages indexed meanwhile by an older "
        "release, run again; 69: the database cannot be opened.",
    )
    pairs.add_argument(
        "--every", action="store_true", help="recompute every page's pairs, not just missing ones"
    )
    pairs.set_defaults(func=cmd_search_pairs)

    ep = db_sub.add_parser(
        "search-epochs",
        help="build the search indexes of the newest pages now (PostgreSQL)",
        description="Search reads the newest pages through an index per block of 32,768 "
        "page ids (an epoch) besides the archive's whole index. The server builds them "
        "itself as the archive grows (every minute it looks); this builds the missing ones "
        "now, e.g. after an upgrade or a bulk load. Safe while the server runs (built "
        "CONCURRENTLY). Exit 0: done or nothing to do; 75: another process is building "
        "them; 69: the database cannot be opened.",
    )
    ep.set_defaults(func=cmd_search_epochs)

    vec = db_sub.add_parser(
        "search-vectors",
        help="rewrite the word vectors of pages indexed before they were kept uncompressed "
        "(PostgreSQL)",
        description="Search reads thousands of word vectors per query; ingest now stores "
        "them uncompressed (they were lz4-compressed, ~3 %% smaller, decompressed at every "
        "use). This rewrites the older ones, one table at a time with its indexes: search "
        "and ingest wait meanwhile (minutes per million pages). Stopped, nothing is lost; "
        "run it again. Exit 0: done (or nothing to do); 69: the database cannot be opened.",
    )
    vec.set_defaults(func=cmd_search_vectors)

    back = sub.add_parser(
        "backup",
        help="copy the catalogue, then snapshot it with the files into the restic repository",
        description="The catalogue first (pg_dump -Fc, or SQLite's online backup) into "
        "<data_dir>/backup/; with an object store, then every object the catalogue names "
        "that backup_store_url lacks, copied and verified; then one restic snapshot of "
        "data_dir. Safe while the server runs. Exit 0: snapshot written; 1: written, but "
        "objects that do not hash as recorded were not copied (named); 69: a store or the "
        "database failed, no snapshot (run again: it goes on); 74: a step failed, or the "
        "repository failed its check (an alert for staff); 78: no repository, password or "
        "backup store.",
    )
    back.add_argument("--repository", help="restic repository (default: backup_repository)")
    back.add_argument(
        "--also", type=Path, action="append", default=[], help="another path to include"
    )
    back.add_argument("--keep-daily", type=int, help="then forget all but N daily snapshots")
    back.add_argument("--keep-weekly", type=int, help="… and N weekly")
    back.add_argument("--keep-monthly", type=int, help="… and N monthly")
    back.add_argument(
        "--check-days",
        type=int,
        default=30,
        metavar="N",
        help="then restic check: the repository's structure, and one Nth of its packs read"
        " back and verified, another each day (every pack in N days; default 30; 0: no check)",
    )
    back.set_defaults(func=cmd_backup)

    rest = sub.add_parser(
        "restore",
        help="bring the files and the catalogue back from a restic snapshot",
        description="Stop sohoa-server first. Restores data_dir (the same path) and the "
        "catalogue into the configured database (PostgreSQL: an empty database made with "
        "createdb); with an object store, then the objects from backup_store_url (as "
        "`store restore`). Then run `fixity check --rate-mb 0` and `audit verify`. Exit 0: "
        "restored; 1: some objects in neither store (named); 2: the archive is not empty "
        "(--force overwrites); 69: a store failed (run `store restore` to go on).",
    )
    rest.add_argument("--repository", help="restic repository (default: backup_repository)")
    rest.add_argument("--snapshot", default="latest", help="snapshot id (default: latest)")
    rest.add_argument(
        "--force", action="store_true", help="overwrite a catalogue or store that holds data"
    )
    rest.set_defaults(func=cmd_restore)
