"""``sohoa-server``: run the archive service and administer it.

No traceback reaches an administrator: every expected failure is one line on stderr and an
exit code from this table (also in docs/operations.md and ``--help``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from protocol.version import PROTOCOL_VERSION, TOPIC_LEVEL
from server import __version__, config, db_cli, fleet_cli, fonds_cli
from server.archive import audit, auth
from server.store.db import OPERATIONAL_ERRORS, SCHEMA_VERSION, Database

if TYPE_CHECKING:
    from server.store.objects import ObjectStore

VERSION = (
    f"sohoa-server {__version__} (protocol {PROTOCOL_VERSION}, topics {TOPIC_LEVEL}, "
    f"schema {SCHEMA_VERSION})"
)


# Exit codes (sysexits.h where one fits).
EXIT_CODES = {
    0: "done",
    1: "a check failed (doctor, fixity check), the audit log is broken (audit verify),"
    " damaged files were not moved (store migrate), or objects that do not hash as recorded"
    " or are gone were not copied (backup, restore, store restore), or parts with no good"
    " copy in the backups (fixity repair)",
    2: "bad command line or input refused (user name, password, token)",
    3: "bundle refused as a whole, nothing imported (import-bundle)",
    4: "some frames of a bundle refused, the rest imported (import-bundle)",
    65: "refused: an unknown or revoked station (device, broker)",
    69: "the database, the broker or an object store cannot be reached (backup, restore,"
    " store restore, store migrate, fixity repair: run the same command again, it goes on)",
    70: "unexpected error (run again with -v for the details)",
    73: "the file store cannot be written (run), or the broker file exists (broker init)",
    74: "a file cannot be read or written, or the backup repository failed its check (backup)",
    75: "not finished: stopped by --limit, run the same command again (fixity check, store"
    " migrate), or pages came in meanwhile without their pairs (db search-pairs)",
    77: "wrong user: run as the service user (sudo -u sohoa sohoa-server ...)",
    78: "bad configuration",
    130: "interrupted",
}


class Refused(Exception):
    """One line for the administrator and an exit code from EXIT_CODES."""

    def __init__(self, code: int, line: str) -> None:
        super().__init__(line)
        self.code = code


def _settings(args: argparse.Namespace) -> config.ServerSettings:
    try:
        settings = config.load(args.config)
    except config.ConfigError as exc:
        raise Refused(78, f"invalid configuration: {exc}") from exc
    if not _writes_nothing_in_data_dir(args):
        _check_user(settings.data_dir)
    return settings


def _writes_nothing_in_data_dir(args: argparse.Namespace) -> bool:
    """`broker init` with both password files named writes only where it is told (root's
    job at install: /var/lib/mosquitto, /etc/sohoa/credentials)."""
    return bool(
        getattr(args, "command", None) == "broker"
        and getattr(args, "admin_password_file", None)
        and getattr(args, "ingest_password_file", None)
    )


def _check_user(data_dir: Path) -> None:
    """Root must not create files the service cannot read (a receipt key, a SQLite journal,
    an audit row's WAL): refuse when the archive belongs to another user."""
    try:
        owner = data_dir.stat().st_uid
    except OSError:
        return  # not created yet (or unreachable: the command says so when it opens it)
    if os.geteuid() == 0 and owner != 0:
        try:
            import pwd

            name = pwd.getpwuid(owner).pw_name
        except (KeyError, ImportError):
            name = str(owner)
        raise Refused(
            77,
            f"{data_dir} belongs to {name}: run this as that user "
            f"(sudo -u {name} sohoa-server ...), not as root, so that the service can still "
            "read what it writes",
        )


def _open(settings: config.ServerSettings) -> Database:
    """The catalogue, or one clear line and exit 69 (EX_UNAVAILABLE) when it cannot open."""
    if settings.store_url is not None:  # readers of s3:// parts need its connection
        from server.store.objects import ObjectStoreError, connect

        try:
            connect(settings)
        except ObjectStoreError as exc:
            raise Refused(78, str(exc)) from exc
    try:
        return Database(
            settings.database(),
            settings.database_password(),
            settings.database_pool_size,
            settings.database_pool_timeout_s,
        )
    except (*OPERATIONAL_ERRORS, OSError) as exc:
        where = _redacted(settings.database_url) if settings.database_url else settings.database()
        raise Refused(69, f"cannot open the database {where}: {exc}".strip()) from exc


def _preflight(settings: config.ServerSettings) -> None:
    """What ``run`` checks before the service says it is ready (READY=1 to systemd): one
    clear line on stderr and a sysexits code instead of a traceback from the app's start.

    * broker (when ingesting): the URL is well-formed (also checked when the settings load)
      and its password file, if named, is readable — exit 78 (EX_CONFIG);
    * store: ``<data_dir>/store`` (``store-staging`` with an object store) exists or can be
      made, and a file can be written, synced and removed in it — exit 73 (EX_CANTCREAT);
    * object store (``store_url``): its keys are there (78) and its bucket answers (69);
    * database: it opens — exit 69 (EX_UNAVAILABLE).
    The broker itself may be down: the worker reconnects, and the watchdog tells systemd."""
    if settings.ingest:
        try:
            config.ServerSettings.model_validate({"mqtt_url": settings.mqtt_url})
            settings.broker_password()
        except (ValueError, OSError) as exc:
            reason = str(exc).splitlines()[-1] if isinstance(exc, ValueError) else str(exc)
            print(f"sohoa-server: broker settings unusable: {reason}", file=sys.stderr)
            raise SystemExit(78) from exc
    # With the object store, chunks are staged on local disk: that must be writable too.
    store = settings.data_dir / ("store" if settings.store_url is None else "store-staging")
    try:
        store.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=store, prefix=".probe-") as probe:
            probe.write(b"sohoa")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        print(f"sohoa-server: cannot write to the store {store}: {exc}", file=sys.stderr)
        raise SystemExit(73) from exc
    if settings.store_url is not None:
        from server.store import objects

        try:
            objects.probe(settings)
        except objects.ObjectStoreError as exc:
            print(f"sohoa-server: {store_trouble(exc)}", file=sys.stderr)
            raise SystemExit(69) from exc
    _open(settings).close()


def store_trouble(exc: Exception) -> str:
    """An object store's refusal for an administrator: what to do (its cause), then the
    error itself."""
    from server.store.objects import ObjectStoreError

    if isinstance(exc, ObjectStoreError) and exc.cause != "other":
        return f"{exc.en} ({exc})"
    return str(exc)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    settings = _settings(args)
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if args.no_ingest:
        updates["ingest"] = False
    settings = settings.model_copy(update=updates)
    _preflight(settings)  # a clear line now rather than a traceback from the app's start
    logging.getLogger(__name__).info(
        "serving on http://%s:%d (data in %s, catalogue %s)",
        settings.host,
        settings.port,
        settings.data_dir,
        _redacted(settings.database_url) if settings.database_url else "SQLite",
    )
    # Proxy headers are handled by the app for `trusted_proxies` only (server.web.security).
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_config=None,
        proxy_headers=False,
    )  # fmt: skip
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    db = _open(settings)
    try:
        token = auth.create_token(db, args.user, args.note or "", args.days)
    except auth.AuthError as exc:
        print(f"sohoa-server: {exc}", file=sys.stderr)
        return 2
    audit.record(
        db, "cli", "token.create", args.user,
        {"note": args.note or "", "id": auth.token_id(token), "days": args.days},
    )  # fmt: skip
    print(token)
    return 0


def _when(ts: object) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")  # type: ignore[arg-type]


def cmd_token_list(args: argparse.Namespace) -> int:
    db = _open(_settings(args))
    print("id\tuser\tcreated\texpires\tnote")
    for t in auth.tokens(db):
        if args.user and t["user"] != args.user:
            continue
        print(
            f"{t['id']}\t{t['user']}\t{_when(t['created_at'])}\t{_when(t['expires_at'])}"
            f"\t{t['note']}"
        )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    db = _open(_settings(args))
    which = args.token
    if which == "-":  # the token itself from stdin: it stays out of argv (ps, history)
        which = sys.stdin.readline().strip()
    try:
        token_id, user = auth.revoke_token(db, which)
    except auth.AuthError as exc:
        print(f"sohoa-server: {exc}", file=sys.stderr)
        return 2
    audit.record(db, "cli", "token.revoke", user, {"id": token_id})
    print(f"revoked {token_id} ({user})")
    return 0


def cmd_login_link(args: argparse.Namespace) -> int:
    settings = _settings(args)
    db = _open(settings)
    try:
        code = auth.create_login_link(db, args.user, args.minutes)
    except auth.AuthError as exc:
        print(f"sohoa-server: {exc}", file=sys.stderr)
        return 2
    audit.record(db, "cli", "login_link.create", args.user, {"minutes": args.minutes})
    base = args.base_url or f"http://{settings.host}:{settings.port}"
    print(f"{base.rstrip('/')}/login/link?code={code}")
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    """From --password-file (first line; ``-`` = standard input), else asked twice on the
    terminal; never argv."""
    if args.no_password:
        return None
    if args.password_file is not None:
        try:
            if str(args.password_file) == "-":
                text = sys.stdin.read()
            else:
                text = args.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise Refused(74, f"cannot read the password file {args.password_file}: {exc}") from exc
        lines = text.splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        raise Refused(
            2,
            "no terminal to ask the password on: use --password-file FILE "
            "(or --password-file - to read it from standard input)",
        )
    import getpass

    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != first:
        raise auth.AuthError("the two passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    db = _open(settings)
    try:
        auth.add_user(db, args.name, args.role, _read_password(args))
    except (auth.AuthError, OSError) as exc:
        print(f"sohoa-server: {exc}", file=sys.stderr)
        return 2
    audit.record(db, "cli", "user.add", args.name, {"role": args.role})
    print(f"{args.name}: {args.role}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    db = _open(_settings(args))
    for u in auth.users(db):
        state = " (disabled)" if u["disabled"] else ""
        where = "; ".join(u["places"]) if u["places"] else "every place"  # type: ignore[arg-type]
        print(f"{u['name']}\t{u['role']}\ttokens={u['tokens']}\t{where}{state}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    db = _open(_settings(args))
    disabled = args.user_command == "disable"
    try:
        auth.set_disabled(db, args.name, disabled)
    except auth.AuthError as exc:
        print(f"sohoa-server: {exc}", file=sys.stderr)
        return 2
    audit.record(db, "cli", "user.disable" if disabled else "user.enable", args.name, {})
    if disabled:
        print(f"{args.name}: disabled; sessions and tokens ended")
    else:
        print(f"{args.name}: enabled (make new tokens: sohoa-server token create)")
    return 0


def cmd_user_places(args: argparse.Namespace) -> int:
    db = _open(_settings(args))
    try:
        places = auth.set_places(db, args.name, args.places)
    except auth.AuthError as exc:
        print(f"sohoa-server: {exc}", file=sys.stderr)
        return 2
    audit.record(db, "cli", "user.places", args.name, {"places": list(places)})
    print(f"{args.name}: {', '.join(places) if places else 'every place'}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    db = _open(_settings(args))
    count, broken = audit.verify(db)
    if broken is not None:
        print(f"audit log BROKEN at row {broken.row_id}: {broken.reason}", file=sys.stderr)
        return 1
    print(f"audit log intact: {count} rows")
    return 0


# Operator lines of import-bundle: (Vietnamese, English), chosen by the `language` setting.
_BUNDLE_TEXT: dict[str, tuple[str, str]] = {
    "refused": (
        "Không nhập được gói “{bundle}”: {detail}",
        "Bundle “{bundle}” refused: {detail}",
    ),
    "frame_refused": (
        "  Từ chối tệp {file}: {reason} ({detail})",
        "  Refused {file}: {reason} ({detail})",
    ),
    "done": (
        "Đã nhập gói “{bundle}” của thiết bị {device}: {imported}/{total} tệp, "
        "{parts} phần mới được lưu; {complete}/{batches} lô đã đủ.",
        "Imported bundle “{bundle}” from device {device}: {imported}/{total} frame(s), "
        "{parts} part(s) newly committed; {complete}/{batches} batch(es) complete.",
    ),
    "receipts": (
        "Biên nhận đã ghi vào {path} — cắm USB lại vào máy quét (sohoa-agent import-receipts).",
        "Receipts written to {path} — take the disk back to the scan station "
        "(sohoa-agent import-receipts).",
    ),
    "receipts_failed": (
        "Đã lưu vào kho nhưng KHÔNG ghi được biên nhận ({detail}). Chạy lại với "
        "--receipts-to <thư mục khác>; máy quét cũng sẽ biết khi có kết nối mạng.",
        "Archived, but the receipts could NOT be written ({detail}). Run again with "
        "--receipts-to <another folder>; the station also learns it over any link.",
    ),
}


def _say(lang: str, key: str, **params: object) -> str:
    vi, en = _BUNDLE_TEXT[key]
    return (vi if lang == "vi" else en).format(**params)


def cmd_import_bundle(args: argparse.Namespace) -> int:
    """Exit 0: every frame imported; 4: some frames refused (the rest imported);
    3: the bundle refused as a whole (nothing imported); 74: receipts not written."""
    from server.ingest import Ingest, bundle
    from server.ingest.limits import StationLimits
    from server.store import keys
    from server.store.objects import store_for

    settings = _settings(args)
    lang = settings.language
    db = _open(settings)
    # Built as create_app builds it: the same signing key, so that USB receipts verify on the
    # device exactly like those that come over the link.
    ingest = Ingest(
        db,
        store_for(settings),
        settings.max_part_bytes,
        signing_key=keys.current(settings.data_dir),
        station_limits=StationLimits.from_settings(settings),
        accept_unenrolled=settings.accept_unenrolled_devices,
        key_dir=settings.data_dir,
    )
    try:
        report = bundle.import_bundle(ingest, args.path, args.receipts_to)
        _split_cover_sheets(db)
    except bundle.BundleRefused as exc:
        print(_say(lang, "refused", bundle=args.path, detail=exc.detail), file=sys.stderr)
        return 3
    finally:
        db.close()
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    for r in report.refused:
        line = _say(lang, "frame_refused", file=r.file, reason=r.reason, detail=r.detail)
        print(line, file=sys.stderr)
    complete = sum(1 for _, _, done in report.batches.values() if done)
    done = _say(
        lang,
        "done",
        bundle=args.path.name,
        device=report.device_id,
        imported=report.frames_imported,
        total=report.frames_total,
        parts=report.parts_committed,
        complete=complete,
        batches=len(report.batches),
    )
    print(done, file=sys.stderr if args.json else sys.stdout)
    if report.receipts_error:
        print(_say(lang, "receipts_failed", detail=report.receipts_error), file=sys.stderr)
        return 74
    receipts = _say(lang, "receipts", path=report.receipts_dir)
    print(receipts, file=sys.stderr if args.json else sys.stdout)
    if report.refused:
        return 3 if report.frames_imported == 0 else 4
    return 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    from server.archive import redo

    settings = _settings(args)
    db = _open(settings)
    try:
        done = redo.reprocess(db, settings.data_dir, args.page, actor=args.actor)
    except redo.RedoError as exc:
        print(f"sohoa-server: {exc}", file=sys.stderr)
        return 1
    flags = ", ".join(done.result.get("flags", [])) or "-"
    print(f"page {done.page}: new result in {done.folder} (flags: {flags})")
    return 0


def _split_cover_sheets(db: Database) -> None:
    """Batches now complete are split at their QR cover sheets and re-scanned pages placed,
    as the running server does."""
    from server.archive import coversheets
    from server.archive.records import Records

    for split in coversheets.split_new_batches(Records(db)):
        if split.van_ban or split.problems:
            made = ", ".join(split.van_ban) or "-"
            print(f"cover sheets of batch {split.batch_pk}: {made}", file=sys.stderr)
        for problem in split.problems:
            print(f"  cover sheet: {problem}", file=sys.stderr)
    from server.archive import replacements

    for placed in replacements.place_new(db):
        for new, old in placed.pages:
            where = f"in place of page {old}" if old is not None else "not placed"
            print(f"re-scanned page {new}: {where}", file=sys.stderr)
        for problem in placed.problems:
            print(f"  re-scan: {problem}", file=sys.stderr)


def cmd_receipt_key(args: argparse.Namespace) -> int:
    """Print the key stations pin; ``--rotate DAYS`` announces the next one (signed by the
    current, which signs on until the cut-over: no station re-enrols); ``--cut-over`` puts
    the announced key in place now (stations trust it from the announcement on)."""
    import time

    from protocol import enrolment, signing
    from server.store import keys

    settings = _settings(args)
    if args.rotate is not None:
        try:
            announced = keys.rotate(settings.data_dir, args.rotate * 86400)
        except keys.RotationPending as exc:
            print(f"sohoa-server: {exc}; use --cut-over to end it now", file=sys.stderr)
            return 65
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(announced.cutover_at))
        fp = enrolment.key_fingerprint(announced.new_key)
        print(f"next receipt key {fp} announced; the current one signs until {when}.")
        print("Restart the server (systemctl restart sohoa-server) so that stations hear it.")
    elif args.cut_over:
        if not keys.cut_over(settings.data_dir):
            print(
                "sohoa-server: no announced key is waiting (--rotate DAYS first)", file=sys.stderr
            )
            return 65
        print("the announced key signs from now on; restart the server (systemctl restart"
              " sohoa-server).")  # fmt: skip
    print(signing.public_key_hex(keys.current(settings.data_dir)))
    return 0


def _since(text: str) -> float:
    """``--since``: an ISO date or date-time (local time when no zone is given)."""
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r}") from exc


def cmd_fixity_check(args: argparse.Namespace) -> int:
    """Exit 0: every part checked hashes as recorded; 1: damage found (named on stderr and
    raised as alerts in the staff app); 75 (EX_TEMPFAIL): stopped by --limit, not finished."""
    from server.archive import fixity
    from server.store.files import StoreError

    db = _open(_settings(args))
    try:
        report = fixity.check_store(
            db, since=args.since, bytes_per_s=args.rate_mb * 1_000_000, limit=args.limit
        )
    except StoreError as exc:  # the object store did not answer: not damage; run again
        print(f"fixity check stopped: {exc}", file=sys.stderr)
        return 69
    finally:
        db.close()
    for c in report.damaged:
        found = "MISSING" if c.outcome == "missing" else f"sha256 {c.actual}"
        print(
            f"DAMAGED part {c.part_pk}: {c.path}: {found}, recorded {c.expected}", file=sys.stderr
        )
    resumed = "" if report.resumed_after is None else f", resumed after part {report.resumed_after}"
    state = "finished" if report.finished else "stopped at --limit (the next run goes on)"
    print(
        f"fixity check {state}: {report.checked} part(s), {report.bytes} bytes, "
        f"{len(report.damaged)} damaged{resumed}"
    )
    if report.damaged:
        return 1
    return 0 if report.finished else 75


def cmd_fixity_repair(args: argparse.Namespace) -> int:
    """Exit 0: every part the last checks found damaged is back, verified (or none was);
    1: some could not be (named on stderr, with why); 69: a store or restic cannot be
    reached (run again); 78: the backup they need is not configured."""
    from server.archive import repair

    settings = _settings(args)
    db = _open(settings)
    try:
        report = repair.repair(
            db, settings, only=args.part or None, say=lambda line: _say_repair(line)
        )
    except repair.RepairRefused as exc:
        print(f"fixity repair stopped: {exc}; run it again", file=sys.stderr)
        return exc.code
    except ValueError as exc:
        print(f"fixity repair: {exc}", file=sys.stderr)
        return 78
    finally:
        db.close()
    if not report.repaired and not report.not_repaired:
        print("fixity repair: nothing to repair (every part's latest check passed)")
        return 0
    print(
        f"fixity repair: {len(report.repaired)} part(s) repaired from the backups,"
        f" {len(report.not_repaired)} not"
    )
    if report.not_repaired:
        print(
            "parts NOT REPAIRED have no good copy in the backups: ask the station to send the"
            " page again, or re-scan it from the paper",
            file=sys.stderr,
        )
        return 1
    return 0


def _say_repair(line: str) -> None:
    print(line, file=sys.stderr if line.startswith("NOT ") else sys.stdout)


def cmd_export_aip(args: argparse.Namespace) -> int:
    """Exit 0: package written (and valid against the schemas, when the archive holds them);
    1: refused (a file failed its fixity check, a page missing, schema errors); 2: no such
    hồ sơ."""
    from server.archive import aip, export, fixity
    from server.archive.catalog import Catalog
    from server.archive.records import Records

    db = _open(_settings(args))
    try:
        try:
            package = aip.write_aip(Records(db), Catalog(db), args.ma, args.out)
        except KeyError:
            print(f"sohoa-server: no such hồ sơ {args.ma}", file=sys.stderr)
            return 2
        except (export.ExportError, fixity.FixityError, FileExistsError) as exc:
            print(f"sohoa-server: package refused: {exc}", file=sys.stderr)
            return 1
        audit.record(db, "cli", "export.aip", args.ma, {"objid": package.objid}, "")
    finally:
        db.close()
    print(f"{package.root} ({package.objid}): {len(package.files) + 1} files")
    if aip.missing_schemas():
        print(f"not validated: XSDs not held in {aip.schema_dir()}", file=sys.stderr)
        return 0
    errors = {name: errs for name, errs in aip.validate(package.root).items() if errs}
    for name, errs in errors.items():
        for err in errs:
            print(f"INVALID {name}: {err}", file=sys.stderr)
    if errors:
        return 1
    print("valid: METS + CSIP extension, EAD3, PREMIS 3")
    return 0


def _fixity_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fix = sub.add_parser("fixity", help="re-verify the store against the sha256 of ingest")
    fix_sub = fix.add_subparsers(dest="fixity_command", required=True)
    check = fix_sub.add_parser(
        "check",
        help="re-hash stored parts, record each check (PREMIS event), report damage",
        description="Walk the committed parts in order, re-hash each and compare it with the "
        "sha256 recorded at ingest; each check is recorded, damage raises an alert in the "
        "staff app. Resumable: a stopped run goes on where it stopped. Exit 0: all intact; "
        "1: damage found; 75: stopped by --limit.",
    )
    check.add_argument(
        "--since", type=_since, help="only parts committed at or after this ISO date/time"
    )
    check.add_argument(
        "--rate-mb",
        type=float,
        default=20.0,
        help="read at most this many MB per second (default 20; 0 = no limit)",
    )
    check.add_argument("--limit", type=int, help="stop after this many parts (resume later)")
    check.set_defaults(func=cmd_fixity_check)
    mend = fix_sub.add_parser(
        "repair",
        help="bring parts the check found damaged or missing back from the backups",
        description="Every part whose latest fixity check did not pass: its good copy is "
        "fetched from the backups (the backup store's object for a part on the object "
        "store, the latest restic snapshot's file for a part on local disk), re-hashed "
        "against the sha256 of ingest, put in place of the damaged one, checked again and "
        "recorded (the dashboard's damage clears; one audit row each). Exit 0: all back; "
        "1: some have no good copy (named); 69: a store or restic cannot be reached; 78: "
        "the backup they need is not configured.",
    )
    mend.add_argument(
        "--part", type=int, action="append", help="only this part id (repeat for more)"
    )
    mend.set_defaults(func=cmd_fixity_repair)


def cmd_store_migrate(args: argparse.Namespace) -> int:
    """Exit 0: every local part is in the object store, verified; 1: some local files do
    not hash as recorded (named, not moved); 75: stopped by --limit (run again); 69: the
    object store failed (run again: it goes on)."""
    from server.store import objects

    settings = _settings(args)
    try:
        target = objects.Target.parse(args.to)
        credentials = objects.credentials_from(dict(os.environ), settings.secret)
    except (ValueError, objects.ObjectStoreError) as exc:
        raise Refused(78, f"store migrate --to: {exc}") from exc
    db = _open(settings)
    store = objects.ObjectStore(
        settings.data_dir / "store-staging", target, objects.make_client(target, credentials)
    )
    try:
        report = objects.migrate(db, store, limit=args.limit)
    except objects.ObjectStoreError as exc:
        print(f"the object store failed: {exc}; run the same command again", file=sys.stderr)
        return 69
    finally:
        db.close()
    print(
        f"store migrate: {report.moved} part(s) moved ({report.bytes} bytes), "
        f"{report.left} still local, {len(report.damaged or [])} damaged"
    )
    damaged = len(report.damaged or [])
    if report.left > damaged:
        return 75  # stopped before the end
    if damaged:
        return 1
    if settings.store_url != args.to:
        print(
            "every part is in the object store: set store_url to the same URL in"
            " /etc/sohoa/server.toml (or SOHOA_STORE_URL) and restart the server"
            " (docs/operations.md, object store)"
        )
    return 0


def _object_store(settings: config.ServerSettings, command: str) -> ObjectStore:
    """The configured object store, or exit 78 (no ``store_url``, or keys/URL unusable)."""
    from server.store import objects

    if settings.store_url is None:
        raise Refused(78, f"{command}: no object store (store_url) is configured")
    try:
        store = objects.store_for(settings)
    except (ValueError, objects.ObjectStoreError) as exc:
        raise Refused(78, f"{command}: {exc}") from exc
    assert isinstance(store, objects.ObjectStore)
    return store


def restore_objects(settings: config.ServerSettings) -> int:
    """Bring back from ``backup_store_url`` every object the catalogue names that the store
    lacks (server.store.offsite); the exit code of ``store restore``."""
    from server.store import objects, offsite

    store = _object_store(settings, "store restore")
    try:
        source = objects.backup_store_for(settings)
    except (ValueError, objects.ObjectStoreError) as exc:
        raise Refused(78, f"store restore: {exc}") from exc
    db = _open(settings)
    try:
        report = offsite.restore(db, store, source)
    except objects.ObjectStoreError as exc:
        print(
            f"the object store failed: {store_trouble(exc)}; run `sohoa-server store restore`"
            " again (it goes on)",
            file=sys.stderr,
        )
        return 69
    finally:
        db.close()
    print(offsite.summary(report, f"objects restored into s3://{store.target.bucket}"))
    if not report.whole:
        print(
            f"{len(report.damaged) + len(report.missing)} object(s) NOT RESTORED (named above):"
            " sohoa-server fixity check flags their parts",
            file=sys.stderr,
        )
    return 0 if report.whole else 1


def cmd_store_restore(args: argparse.Namespace) -> int:
    """Exit 0: every object the catalogue names is in the store, verified; 1: some are in
    neither the store nor the backup (named); 69: a store failed (run again); 78: no object
    store or backup store configured."""
    return restore_objects(_settings(args))


def cmd_store_gc(args: argparse.Namespace) -> int:
    """Exit 0: listed (``--dry-run``) or removed; 69: the object store failed (run again);
    78: no object store is configured."""
    from server.store import hygiene

    settings = _settings(args)
    store = _object_store(settings, "store gc")
    db = _open(settings)
    try:
        try:
            found = hygiene.collect(
                db, store, older_than_s=args.older_than * 3600, delete=not args.dry_run
            )
        except Exception as exc:  # botocore's errors: the store did not answer
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            print(f"the object store failed: {exc}; run the same command again", file=sys.stderr)
            return 69
        detail = {
            "older_than_hours": args.older_than, "dry_run": args.dry_run,
            "orphans": len(found.orphans), "uploads": len(found.uploads),
            "deleted": found.deleted, "aborted": found.aborted, "bytes": found.bytes,
            "keys": [k for k, _, _ in found.orphans][:100],
        }  # fmt: skip
        audit.record(db, "cli", "store.gc", str(settings.store_url).split("?")[0], detail)
    finally:
        db.close()
    if args.dry_run:
        gone = f"would delete {len(found.orphans)}, would abort {len(found.uploads)}"
    else:
        gone = f"deleted {found.deleted} ({found.bytes} bytes), aborted {found.aborted}"
    print(
        f"store gc: {found.referenced} object(s) named by the catalogue;"
        f" {len(found.orphans)} orphan(s) and {len(found.uploads)} incomplete multipart"
        f" upload(s) older than {args.older_than:g} h: {gone};"
        f" {found.young} unnamed but younger (in flight, kept)"
    )
    for key in found.kept_at_delete:
        print(f"kept {key}: a part was committed at it meanwhile")
    return 0


def _store_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = sub.add_parser("store", help="the archive's file store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    mig = store_sub.add_parser(
        "migrate",
        help="move the local store's parts into an S3 object store (resumable, verified)",
        description="Re-hash each committed part on local disk, upload it, verify the object "
        "(size, ETag, sha256) and only then point the catalogue at it. Resumable: run again "
        "after a stop. Local files are never deleted. Exit 0: all moved; 1: damaged local "
        "files (not moved); 75: stopped by --limit; 69: the object store failed.",
    )
    mig.add_argument("--to", required=True, help="s3://bucket/prefix?endpoint=https://host:port")
    mig.add_argument("--limit", type=int, help="stop after this many parts (resume later)")
    mig.set_defaults(func=cmd_store_migrate)
    rest = store_sub.add_parser(
        "restore",
        help="bring back from backup_store_url every object the catalogue names that the"
        " object store lacks (resumable, verified)",
        description="After `sohoa-server restore` (which runs it), or to go on after it "
        "stopped: for each committed part on the object store, an object held with its size "
        "and sha256 is kept; any other is fetched from the backup store, re-hashed against "
        "the sha256 recorded at ingest, uploaded and verified. Locations in another bucket "
        "are first pointed at the configured one. Exit 0: all there; 1: some in neither "
        "store (named); 69: a store failed (run again); 78: not configured.",
    )
    rest.set_defaults(func=cmd_store_restore)
    gc = store_sub.add_parser(
        "gc",
        help="remove objects no catalogue row names and abort stale multipart uploads",
        description="List the objects under the archive's prefix that no part in the "
        "catalogue names, and the incomplete multipart uploads, older than the grace period "
        "(in-flight uploads are younger); then delete those objects (each re-checked against "
        "the catalogue inside its write transaction) and abort those uploads. Every removal "
        "is printed and logged, and the run is one audit row (store.gc). A committed part's "
        "object is never touched. Exit 0: done; 69: the object store failed (run again); "
        "78: no object store configured.",
    )
    gc.add_argument(
        "--dry-run", action="store_true", help="list what would go; delete and abort nothing"
    )
    gc.add_argument(
        "--older-than",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="grace period: only what is older than this many hours (default 24)",
    )
    gc.set_defaults(func=cmd_store_gc)


def cmd_doctor(args: argparse.Namespace) -> int:
    from server import doctor

    settings = _settings(args)
    findings = doctor.run(settings)
    for finding in findings:
        print(finding.line(settings.language))
    return doctor.exit_code(findings)


def cmd_handover(args: argparse.Namespace) -> int:
    from server.archive import handover
    from server.archive.records import Records

    settings = _settings(args)
    db = _open(settings)
    try:
        h = handover.collect(Records(db), args.organ_id, args.ben_giao, args.ben_nhan)
        written = handover.write(h, args.out)
        audit.record(db, "cli", "handover", args.organ_id, {"ho_so": len(h.ho_so)})
    except handover.HandoverError as exc:
        raise Refused(2, str(exc)) from exc
    finally:
        db.close()
    for path in written:
        print(path)
    return 0


def cmd_inventory_import(args: argparse.Namespace) -> int:
    """Read a fonds' inventory; print what it holds and the refused lines; store it all or
    nothing unless ``--preview``. Exit 2 when any line is refused (nothing stored)."""
    from server.archive import inventory

    settings = _settings(args)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise Refused(74, f"cannot read {args.file}: {exc.strerror}") from exc
    db = _open(settings)
    try:
        override = inventory.parse_override(args.column or [])
        preview = inventory.read_for_fonds(
            db, args.fonds, data, args.file.name, override, args.year
        )
        mapping = ", ".join(f"{k}={inventory.column_letter(v)}" for k, v in preview.mapping.items())
        print(f"header line(s) {preview.header_lines}; columns {mapping}")
        print(f"{len(preview.rows)} hồ sơ, {preview.pages} pages; "
              f"{len(preview.skipped)} lines skipped, {len(preview.problems)} refused")  # fmt: skip
        for p in preview.skipped:
            print(f"  skipped line {p.line}: {p.vi} / {p.en}")
        if args.preview:
            for r in preview.rows:
                print(f"  line {r.line}: {r.code}  {r.tieu_de}  {r.so_trang or '—'} trang")
        for p in preview.problems:
            print(f"line {p.line}: {p.vi} / {p.en}", file=sys.stderr)
        if preview.problems:
            raise Refused(2, f"{len(preview.problems)} lines refused: nothing imported")
        if args.preview:
            return 0
        done = inventory.import_plan(db, args.fonds, preview, "cli", args.file.name)
    except inventory.ImportRefused as exc:
        for p in exc.problems:
            print(f"line {p.line}: {p.vi} / {p.en}", file=sys.stderr)
        raise Refused(2, "nothing imported") from exc
    except inventory.InventoryError as exc:
        raise Refused(2, str(exc)) from exc
    finally:
        db.close()
    print(f"imported {done.rows} hồ sơ ({done.pages} pages) into the plan of {done.fonds_code}")
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """A4 sheets of box and folder labels with each hồ sơ's public-lookup QR code."""
    from server.archive import labels
    from server.archive.records import Records

    settings = _settings(args)
    db = _open(settings)
    try:
        try:
            made = labels.labels_for(db, Records(db), args.ma, settings.public_base_url, "cli")
        except labels.LabelError as exc:
            raise Refused(2, str(exc)) from exc
        data = labels.pdf(made)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(data)
        audit.record(db, "cli", "labels.print", ",".join(args.ma)[:500], {"count": len(made)})
    finally:
        db.close()
    sheets = -(-len(made) // labels.PER_SHEET)
    print(f"{args.out}: {len(made)} labels on {sheets} A4 sheet(s)")
    return 0


def cmd_public_address(args: argparse.Namespace) -> int:
    """Print a hồ sơ's public lookup address; ``--rotate`` draws a new one (the old stops)."""
    from server.archive import public

    settings = _settings(args)
    db = _open(settings)
    try:
        if args.rotate:
            token = public.rotate(db, args.ma, "cli")
        else:
            token = public.address(db, args.ma, "cli")
    finally:
        db.close()
    if token is None:
        raise Refused(2, f"no such hồ sơ {args.ma}")
    print(public.url(settings.public_base_url, token))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sohoa-server",
        description="Central archive: ingest, store, staff web app and API.",
        epilog="Exit codes: "
        + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())
        + ".",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=VERSION)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run ingest + web app + API")
    run.add_argument("--host", help="listen address (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="listen port (default 8080)")
    run.add_argument("--no-ingest", action="store_true", help="serve only; no MQTT ingest")
    run.set_defaults(func=cmd_run)
    rkey = sub.add_parser(
        "receipt-key",
        help="print the public key agents use to check receipts (SOHOA_SERVER_PUBLIC_KEY)",
    )
    rkey_do = rkey.add_mutually_exclusive_group()
    rkey_do.add_argument(
        "--rotate", type=float, metavar="DAYS",
        help="announce a new key; stations accept both for DAYS, then only the new one",
    )  # fmt: skip
    rkey_do.add_argument(
        "--cut-over", action="store_true", help="sign with the announced key from now on"
    )
    rkey.set_defaults(func=cmd_receipt_key)
    doc = sub.add_parser(
        "doctor",
        help="check a running install: database, store, disk, receipt key, broker, clock",
        description='Check this install and say in Vietnamese (language = "en": English) '
        "what to fix. Exit 0: nothing failed (warnings allowed); 1: a check failed.",
    )
    doc.set_defaults(func=cmd_doctor)
    token = sub.add_parser("token", help="API / web access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--user", required=True, help="who the token is for")
    create.add_argument("--note", help="what it is for")
    create.add_argument(
        "--days", type=float, default=auth.TOKEN_DAYS,
        help=f"valid for this many days (default {auth.TOKEN_DAYS})",
    )  # fmt: skip
    create.set_defaults(func=cmd_token_create)
    tlist = token_sub.add_parser("list", help="tokens that still work: id, user, expiry")
    tlist.add_argument("--user", help="only this user's")
    tlist.set_defaults(func=cmd_token_list)
    revoke = token_sub.add_parser(
        "revoke",
        help="end a token now",
        description="TOKEN is the id `token list` shows, or the token itself ('-' reads it "
        "from standard input, keeping it out of the command line).",
    )
    revoke.add_argument("token", help="an id from `token list`, the token, or '-'")
    revoke.set_defaults(func=cmd_token_revoke)
    link = sub.add_parser(
        "login-link",
        help="print a one-time login link for a user (valid for minutes)",
        description="The link logs its user in once; it is refused after use or after "
        "--minutes. Nothing long-lived is in it.",
    )
    link.add_argument("--user", required=True, help="who the link logs in")
    link.add_argument("--minutes", type=float, default=auth.LINK_MINUTES, help="valid for")
    link.add_argument("--base-url", help="the address staff open (default: host and port)")
    link.set_defaults(func=cmd_login_link)
    user = sub.add_parser("user", help="staff accounts (roles: viewer, archivist, admin)")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser(
        "add",
        help="create a user or change their role and password",
        description="The password is asked on the terminal or read from --password-file; "
        "it is never taken from the command line (shell history, ps).",
    )
    add.add_argument("name", help="user name (lower-case letters, digits, . _ -)")
    add.add_argument("--role", required=True, choices=auth.ROLES, help="what the user may do")
    add.add_argument(
        "--password-file",
        type=Path,
        help="read the password from this file's first line (- for standard input)",
    )
    add.add_argument("--no-password", action="store_true", help="no web login: API tokens only")
    add.set_defaults(func=cmd_user_add)
    ulist = user_sub.add_parser("list", help="list users, roles and token counts")
    ulist.set_defaults(func=cmd_user_list)
    places = user_sub.add_parser(
        "places",
        help="the communes or districts a user reads (none: every place)",
        description="Scope a user to places: a commune label as the dashboard shows it "
        "(an admin sets it per station), a district that prefixes labels written "
        "'Huyện X / Xã Y', or a hồ sơ OrganId. The list replaces the old one; give none to "
        "lift the scope. Admins read every place whatever is listed.",
    )
    places.add_argument("name", help="user name")
    places.add_argument("places", nargs="*", help="places (quote names with spaces)")
    places.set_defaults(func=cmd_user_places)
    for action, what in (
        ("disable", "refuse the user's logins; end their sessions and tokens now"),
        ("enable", "let a disabled user log in again (old tokens stay ended)"),
    ):
        onoff = user_sub.add_parser(action, help=what)
        onoff.add_argument("name", help="user name")
        onoff.set_defaults(func=cmd_user_disable)
    redo = sub.add_parser(
        "reprocess",
        help="redo a page's cleanup and OCR from its capture (the station's code, run as "
        "`sohoa-agent reprocess`); the new result is kept beside the old",
    )
    redo.add_argument("page", type=int, help="the page id (as in /api/v1/batches/{id})")
    redo.add_argument("--actor", default="cli", help="who asks, for the audit log")
    redo.set_defaults(func=cmd_reprocess)
    aud = sub.add_parser("audit", help="the append-only audit log")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    verify = aud_sub.add_parser(
        "verify", help="check the hash chain; exit 1 naming the first broken row"
    )
    verify.set_defaults(func=cmd_audit_verify)
    hand = sub.add_parser(
        "handover",
        help="print the Mục lục hồ sơ nộp lưu (XLSX, PDF) and a Biên bản giao nhận (PDF)",
        description="The paper side of a handover (nộp lưu) of one organisation's hồ sơ: "
        "muc-luc-ho-so-nop-luu.xlsx and .pdf, bien-ban-giao-nhan.pdf to print and sign.",
    )
    hand.add_argument("organ_id", help="the organisation's mã định danh (e.g. 000.00.00.H53)")
    hand.add_argument("--out", type=Path, default=Path("."), help="folder to write to")
    hand.add_argument("--ben-giao", default="", help="name of the handing-over organisation")
    hand.add_argument("--ben-nhan", default="", help="name of the receiving archive")
    hand.set_defaults(func=cmd_handover)
    inv = sub.add_parser("inventory", help="the plan: a fonds' Danh mục / Mục lục hồ sơ")
    inv_sub = inv.add_subparsers(dest="inventory_command", required=True)
    inv_imp = inv_sub.add_parser(
        "import",
        help="import a fonds' inventory (.xlsx, .csv) as its planned hồ sơ",
        description="Read the inventory the office keeps (Vietnamese headers, merged cells, "
        "title and totals lines), map its columns, and store every line as a planned hồ sơ "
        "of the fonds in one transaction — or, if any line is refused, none (exit 2, each "
        "refused line printed with its reason).",
    )
    inv_imp.add_argument("file", type=Path, help="the inventory (.xlsx or .csv)")
    inv_imp.add_argument("--fonds", required=True, help="the fonds' code")
    inv_imp.add_argument("--preview", action="store_true", help="show what it holds; store nothing")
    inv_imp.add_argument(
        "--year", type=int, help="the inventory's year, for lines that give none (Mục lục năm …)"
    )
    inv_imp.add_argument(
        "--column", action="append", metavar="FIELD=LETTER",
        help="map a field to a column the header does not name (code=B), or ignore one (note=)",
    )  # fmt: skip
    inv_imp.set_defaults(func=cmd_inventory_import)
    imp = sub.add_parser(
        "import-bundle",
        help="take in a USB bundle written by `sohoa-agent export` (no broker needed)",
        description="Verify a USB bundle and ingest its frames exactly as if they came over "
        "MQTT, then write the receipts back for the scan station. Never connects to MQTT. "
        "Exit 0: all imported; 4: some frames refused; 3: bundle refused; 74: receipts "
        "not written.",
    )
    imp.add_argument("path", type=Path, help="the bundle folder (sohoa-bundle-<device>-<time>)")
    imp.add_argument(
        "--receipts-to",
        type=Path,
        help="write receipts under this folder (<folder>/<bundle>/receipts) instead of the bundle",
    )
    imp.add_argument("--json", action="store_true", help="print the import report as JSON")
    imp.set_defaults(func=cmd_import_bundle)
    _fixity_parser(sub)
    _store_parser(sub)
    exp = sub.add_parser("export", help="handover packages")
    exp_sub = exp.add_subparsers(dest="export_command", required=True)
    aip_p = exp_sub.add_parser(
        "aip",
        help="write the TT 05/2025 package (E-ARK CSIP/AIP: METS, EAD3, PREMIS 3) of a hồ sơ",
        description="Write DIR/<mã hồ sơ>/ with METS.xml, metadata/descriptive/EAD.xml, "
        "metadata/preservation/PREMIS.xml and representations/rep1/. Every stored file is "
        "re-hashed against the sha256 recorded at ingest first. Exit 0: written (and valid, "
        "when the XSDs are held); 1: refused or invalid; 2: no such hồ sơ.",
    )
    aip_p.add_argument("ma", help="mã hồ sơ")
    aip_p.add_argument("out", type=Path, help="folder to write the package into")
    aip_p.set_defaults(func=cmd_export_aip)
    lab = sub.add_parser(
        "labels",
        help="print A4 sheets of box/folder labels with the public-lookup QR code (PDF)",
        description="Eight labels a sheet (99.1 x 67.7 mm, e.g. Avery L7165): mã hồ sơ, "
        "title and the QR code of each hồ sơ's public address (public_base_url + /p/<token>, "
        "made on first use). Exit 2: no such hồ sơ.",
    )
    lab.add_argument("ma", nargs="+", help="mã hồ sơ, one label each, in this order")
    lab.add_argument("--out", type=Path, required=True, help="the PDF to write")
    lab.set_defaults(func=cmd_labels)
    pub = sub.add_parser(
        "public-address",
        help="print a hồ sơ's public lookup address (--rotate: a new one; the old stops)",
    )
    pub.add_argument("ma", help="mã hồ sơ")
    pub.add_argument("--rotate", action="store_true", help="draw a new address")
    pub.set_defaults(func=cmd_public_address)
    fleet_cli.add_parsers(sub)
    db_cli.add_parsers(sub)
    fonds_cli.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except Refused as exc:
        print(f"sohoa-server: {exc}", file=sys.stderr)
        return exc.code
    except config.ConfigError as exc:  # a secret file that cannot be read, …
        print(f"sohoa-server: invalid configuration: {exc}", file=sys.stderr)
        return 78
    except PermissionError as exc:
        print(
            f"sohoa-server: permission denied: {exc.filename or exc}: run as the service user "
            "(sudo -u sohoa sohoa-server ...)",
            file=sys.stderr,
        )
        return 77
    except OSError as exc:
        print(f"sohoa-server: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 74
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(
            f"sohoa-server: unexpected error in {args.command}: {type(exc).__name__}: {exc} "
            "(run again with -v for the details)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
