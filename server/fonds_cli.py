"""``sohoa-server fonds …``: phông lưu trữ from the command line — list, add, close, the
administrative units to name them by (before and after 2025), which fonds a station scans
for, and the handover of a closed fonds with the receiving archive's confirmation.

Every change is audited with actor ``cli``. Exit codes are server.cli's: 2 for a refusal
(unknown fonds or station, bad input), 69 when the database cannot be reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

ACTOR = "cli"


def cmd_list(args: argparse.Namespace) -> int:
    from server.archive import fonds
    from server.cli import _open, _settings

    db = _open(_settings(args))
    try:
        for f in fonds.list(db, status=args.status):
            merged = f" → {f.merged_into}" if f.merged_into else ""
            deadline = f" hạn nộp lưu {f.deadline.isoformat()}" if f.deadline else ""
            print(f"{f.code}\t{f.name}\t{f.status}{merged}\t{f.organ_id or '-'}\t"
                  f"{fonds.places_line(fonds.lineage(db, f.code))}{deadline}")  # fmt: skip
    finally:
        db.close()
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from server.archive import fonds
    from server.cli import Refused, _open, _settings

    db = _open(_settings(args))
    try:
        made = fonds.create(
            db, args.code, args.name, organ_id=args.organ_id, level=args.level,
            unit_code=args.unit, opened=args.opened, deadline=args.deadline, actor=ACTOR,
        )  # fmt: skip
    except fonds.FondsError as exc:
        raise Refused(2, f"fonds refused: {exc.detail}") from exc
    finally:
        db.close()
    print(f"{made.code}\t{made.name}\t{made.status}")
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    from server.archive import fonds
    from server.cli import Refused, _open, _settings

    db = _open(_settings(args))
    try:
        done = fonds.close(db, args.code, closed=args.on, merged_into=args.merged_into,
                           deadline=args.deadline, actor=ACTOR)  # fmt: skip
    except fonds.FondsError as exc:
        raise Refused(2, f"fonds refused: {exc.detail}") from exc
    finally:
        db.close()
    print(f"{done.code}\t{done.status}\t{done.closed}\t{done.merged_into or '-'}")
    return 0


def cmd_units(args: argparse.Namespace) -> int:
    from server.archive import units
    from server.cli import _settings

    _settings(args)  # as every command: a bad settings file or user is refused first
    for u in units.find(args.name, era=args.era, limit=args.limit):
        after = units.successor(u.code) if u.old else None
        then = f"\t→ {after.code} {after.label}" if after else ""
        print(f"{u.code}\t{u.label}{then}")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    from server.cli import Refused, _open, _settings
    from server.fleet import registry
    from server.fleet_cli import _audit

    db = _open(_settings(args))
    try:
        station = registry.assign_fonds(db, args.device, args.codes, audit=_audit(ACTOR))
    except registry.FleetError as exc:
        raise Refused(2, f"assignment refused: {exc.detail}") from exc
    finally:
        db.close()
    print(f"{station.device_id}\t{', '.join(station.fonds_codes) or '-'}")
    return 0


def cmd_handover(args: argparse.Namespace) -> int:
    from server.archive import fonds_handover
    from server.archive.fonds import FondsError
    from server.cli import Refused, _open, _settings

    db = _open(_settings(args))
    try:
        done = fonds_handover.prepare(db, args.code, args.out, ben_giao=args.ben_giao,
                                      ben_nhan=args.ben_nhan, actor=ACTOR)  # fmt: skip
    except FondsError as exc:
        raise Refused(2, f"handover refused: {exc.detail}") from exc
    except FileExistsError as exc:
        raise Refused(2, f"handover refused: {args.out} already exists") from exc
    finally:
        db.close()
    for path in [*done.papers, *done.packages]:
        print(path)
    print(f"còn thiếu (missing): {len(done.missing)}")
    for m in done.missing:
        print(f"  {m.ma_ho_so + ': ' if m.ma_ho_so else ''}{m.what}")
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from server.archive import fonds_handover
    from server.archive.fonds import FondsError
    from server.cli import Refused, _open, _settings

    db = _open(_settings(args))
    try:
        done = fonds_handover.confirm(db, args.code, receiver=args.receiver,
                                      reference=args.reference, received_on=args.on,
                                      actor=ACTOR)  # fmt: skip
    except (FondsError, ValueError) as exc:
        raise Refused(2, f"confirmation refused: {exc}") from exc
    finally:
        db.close()
    print(f"{done.code}\t{done.status}")
    return 0


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from server.archive.fonds import LEVELS, STATUSES

    top = sub.add_parser("fonds", help="phông lưu trữ: list, add, close, assign, hand over")
    fsub = top.add_subparsers(dest="fonds_command", required=True)
    ls = fsub.add_parser("list", help="every fonds: code, name, status, organ, old/new names")
    ls.add_argument("--status", choices=list(STATUSES))
    ls.set_defaults(func=cmd_list)
    add = fsub.add_parser("add", help="make a fonds (its organisation's hồ sơ join it)")
    add.add_argument("code", help="short code (letters, digits, . _ -), e.g. BK-PN-XUANLA")
    add.add_argument("name", help='name, e.g. "UBND xã Xuân La"')
    add.add_argument("--organ-id", default="", help="the organisation's mã định danh")
    add.add_argument("--level", default="xa", choices=list(LEVELS))
    add.add_argument("--unit", default="", help="unit code (see `fonds units`), e.g. old:01873")
    add.add_argument("--opened", type=_date, help="YYYY-MM-DD")
    add.add_argument("--deadline", type=_date, help="handover due, YYYY-MM-DD")
    add.set_defaults(func=cmd_add)
    close = fsub.add_parser("close", help="end a fonds (merged or ceased)")
    close.add_argument("code")
    close.add_argument("--on", type=_date, help="closing date (default today)")
    close.add_argument("--merged-into", help="the fonds of the organisation it merged into")
    close.add_argument("--deadline", type=_date, help="handover due, YYYY-MM-DD")
    close.set_defaults(func=cmd_close)
    units = fsub.add_parser(
        "units", help="find administrative units by name (old and new, with or without dấu)"
    )
    units.add_argument("name")
    units.add_argument("--era", choices=["old", "new"], default="")
    units.add_argument("--limit", type=int, default=20)
    units.set_defaults(func=cmd_units)
    assign = fsub.add_parser("assign", help="the fonds a station scans for (first = default)")
    assign.add_argument("device")
    assign.add_argument("codes", nargs="*", help="fonds codes; none: take all away")
    assign.set_defaults(func=cmd_assign)
    hand = fsub.add_parser(
        "handover", help="the nộp lưu of a closed fonds: papers, packages, what is missing"
    )
    hand.add_argument("code")
    hand.add_argument("--out", type=Path, required=True, help="folder to write (must not exist)")
    hand.add_argument("--ben-giao", default="", help="handing-over organisation (default: name)")
    hand.add_argument("--ben-nhan", default="", help="receiving archive")
    hand.set_defaults(func=cmd_handover)
    conf = fsub.add_parser(
        "confirm", help="record the receiving archive's confirmation: fonds handed over"
    )
    conf.add_argument("code")
    conf.add_argument("--receiver", required=True, help="who signed for the receiving archive")
    conf.add_argument("--reference", required=True, help="their reference (biên bản số …)")
    conf.add_argument("--on", type=_date, help="day received (default today)")
    conf.set_defaults(func=cmd_confirm)
