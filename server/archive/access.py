"""Who may read what: chế độ sử dụng (access regime) × role, and place × the user's scope
(DESIGN.md §5, §8). Every read path — API, web pages, search results, exports — asks here.

Regime (NĐ 30/2020 Phụ lục VI "Chế độ sử dụng", server.archive.records.CHE_DO_SU_DUNG):

- Công khai (public): any staff role;
- Sử dụng có điều kiện (conditional): archivists and admins;
- Mật (secret): admins only, and never in a bulk export (a commune's zip, the catalogue).

A page carries the strictest regime of the hồ sơ that hold it (through a văn bản, or the
hồ sơ made from its batch); a page in no hồ sơ yet is public to staff (it must be seen to be
catalogued). Place: a page belongs to its station's commune (server.progress: the admin's
label, else the OrganId its pages were described under) and to the OrganId of every hồ sơ
holding it; a hồ sơ to its OrganId and its batch's commune. A user scoped to places reads
only what belongs to one of them; a scope matches a place equal to it or below it in a
"Huyện X / Xã Y" label ("Huyện X" covers every commune labelled "Huyện X / …"). Unscoped
users and admins read every place.

Refusals are written to the audit log (``access.refused``). This module decides and records;
it must not raise HTTP errors or render anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from server.archive import audit, progress, replacements
from server.archive.auth import RANK, Principal
from server.store.db import Connection, Database

PUBLIC, CONDITIONAL, SECRET = "Công khai", "Sử dụng có điều kiện", "Mật"
LEVEL = {PUBLIC: 0, CONDITIONAL: 1, SECRET: 2}  # compared with auth.RANK of the role
CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Rule:
    """What reading one thing takes."""

    level: int  # 0 public, 1 conditional, 2 secret
    places: frozenset[str]

    @property
    def secret(self) -> bool:
        return self.level >= LEVEL[SECRET]


OPEN = Rule(0, frozenset())


def _level(data: str) -> int:
    return LEVEL.get(json.loads(data).get("che_do_su_dung", PUBLIC), LEVEL[SECRET])


def _within(place: str, scope: str) -> bool:
    return place == scope or place.startswith(scope + " / ")


def may_read(principal: Principal, rule: Rule) -> bool:
    if principal.role == "admin":
        return True
    if rule.level > RANK[principal.role]:
        return False
    if not principal.places:
        return True
    return any(_within(place, scope) for place in rule.places for scope in principal.places)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _scoped(principal: Principal) -> bool:
    return principal.role != "admin" and bool(principal.places)


def page_rules(db: Database, page_ids: Iterable[int], places_too: bool = True) -> dict[int, Rule]:
    """The rule of each page that exists (without places when ``places_too`` is false: they
    cost a pass over the described pages, and only scoped users need them). The scans of
    one sheet (a page and its re-scans, server.archive.replacements) share the strictest
    rule among them."""
    ids = sorted(set(page_ids))
    # Their own rules, and whether any of them is in a replacement (in the same statement:
    # most pages are not, and a statement of its own was a round trip per search).
    own, replaced = _own_rules(db, ids, places_too)
    sheets = replacements.groups(db.read(), ids) if replaced else {}
    others = set().union(*sheets.values()) - set(ids)
    if others:
        own.update(_own_rules(db, others, places_too)[0])
    out: dict[int, Rule] = {}
    for page in ids:
        if page not in own:
            continue
        rule = own[page]
        for other in sheets.get(page, ()):
            if other in own:
                rule = Rule(max(rule.level, own[other].level), rule.places | own[other].places)
        out[page] = rule
    return out


def _own_rules(
    db: Database, page_ids: Iterable[int], places_too: bool
) -> tuple[dict[int, Rule], bool]:
    """Each existing page's own rule: its station's commune, and the regime and OrganId of
    every hồ sơ holding it (through a văn bản, or its batch); and whether any of the pages
    replaced another or was replaced. One statement per chunk of ids (four before: a round
    trip each, ~1–3 ms of a search under load)."""
    ids = sorted(set(page_ids))
    con = db.read()
    communes = progress.device_communes(db) if places_too else {}
    levels: dict[int, int] = {}
    places: dict[int, set[str]] = {}
    holders: list[tuple[int, str, str]] = []
    replaced = False
    # PostgreSQL: the ids as one array parameter (``= ANY``); five IN lists of 50 ids made
    # a statement psycopg does not cache (over 50 parameters): ~2 ms of Python to parse it
    # per search.
    array = db.dialect == "postgresql"
    for chunk in ([ids] if ids else []) if array else _chunks(ids):

        def among(column: str, chunk: Sequence[int] = chunk) -> str:
            return f"{column} = ANY(?)" if array else f"{column} IN ({_marks(len(chunk))})"

        sql = (
            "SELECT p.id AS page, p.device_id, NULL AS organ_id, NULL AS data,"  # noqa: S608
            f" CAST(NULL AS INTEGER) AS edge FROM pages p WHERE {among('p.id')}"
            " UNION ALL SELECT vp.page_pk, NULL, h.organ_id, h.data, NULL FROM van_ban_pages vp"
            " JOIN van_ban v ON v.id = vp.van_ban_id JOIN ho_so h ON h.ma_ho_so = v.ma_ho_so"
            f" WHERE {among('vp.page_pk')}"
            " UNION ALL SELECT p.id, NULL, h.organ_id, h.data, NULL FROM pages p"
            f" JOIN ho_so h ON h.batch_pk = p.batch_pk WHERE {among('p.id')}"
            " UNION ALL SELECT page_pk, NULL, NULL, NULL, 1 FROM page_replacements"
            f" WHERE replaces_pk IS NOT NULL AND ({among('page_pk')} OR {among('replaces_pk')})"
        )
        args: list[object] = []
        args += [list(chunk)] * 5 if array else list(chunk) * 5
        for r in con.execute(sql, args):
            if r["edge"] is not None:  # replacements.groups
                replaced = True
            elif r["data"] is None:  # the page itself
                levels[r["page"]] = 0
                places[r["page"]] = {communes.get(r["device_id"], "")} - {""}
            else:
                holders.append((r["page"], r["organ_id"], r["data"]))
    for page, organ, data in holders:
        if page in levels:
            levels[page] = max(levels[page], _level(data))
            places[page].add(organ)
    return {p: Rule(levels[p], frozenset(places[p])) for p in levels}, replaced


def ho_so_rules(db: Database, codes: Iterable[str], places_too: bool = True) -> dict[str, Rule]:
    wanted = sorted(set(codes))
    con = db.read()
    communes = progress.device_communes(db) if places_too else {}
    out: dict[str, Rule] = {}
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i : i + CHUNK]
        query = (
            "SELECT h.ma_ho_so, h.organ_id, h.data, (SELECT p.device_id FROM pages p"
            " WHERE p.batch_pk = h.batch_pk LIMIT 1) AS device_id FROM ho_so h"
            " WHERE h.ma_ho_so IN ("
        )
        for r in con.execute(query + _marks(len(chunk)) + ")", chunk):
            places = {r["organ_id"], communes.get(r["device_id"] or "", "")} - {""}
            out[r["ma_ho_so"]] = Rule(_level(r["data"]), frozenset(places))
    return out


def batch_places(db: Database, batch_ids: Iterable[int]) -> dict[int, frozenset[str]]:
    """The places of each batch: its station's commune (a batch is one station's)."""
    ids = sorted(set(batch_ids))
    communes = progress.device_communes(db)
    out: dict[int, frozenset[str]] = {}
    con = db.read()
    for chunk in _chunks(ids):
        for r in con.execute(
            f"SELECT id, device_id FROM batches WHERE id IN ({_marks(len(chunk))})",  # noqa: S608
            chunk,
        ):
            out[r["id"]] = frozenset({communes.get(r["device_id"], "")} - {""})
    return out


def readable_pages(db: Database, principal: Principal, page_ids: Iterable[int]) -> set[int]:
    """The pages of ``page_ids`` that exist and ``principal`` may read."""
    rules = page_rules(db, page_ids, places_too=_scoped(principal))
    return {p for p, rule in rules.items() if may_read(principal, rule)}


def readable_ho_so(db: Database, principal: Principal, codes: Iterable[str]) -> set[str]:
    rules = ho_so_rules(db, codes, places_too=_scoped(principal))
    return {m for m, rule in rules.items() if may_read(principal, rule)}


def readable_batches(db: Database, principal: Principal, batch_ids: Iterable[int]) -> set[int]:
    """Batches (their lists of pages) are readable where their station's place is in scope."""
    ids = set(batch_ids)
    if not _scoped(principal):
        return ids
    return {
        b for b, places in batch_places(db, ids).items() if may_read(principal, Rule(0, places))
    }


@dataclass(frozen=True)
class PageFilter:
    """The pages a reader may see in a list, as one set: only ``ids`` (``only``: a scoped
    reader) or every page but ``ids``. Lists and their totals (search) count through it, so
    a total never counts a page its reader cannot open."""

    only: bool
    ids: frozenset[int]

    def allows(self, page: int) -> bool:
        return (page in self.ids) == self.only


def page_filter(db: Database, principal: Principal) -> PageFilter | None:
    """What :func:`readable_pages` decides page by page, for every page at once; None when
    ``principal`` reads every page. The same rules as :func:`page_rules` + :func:`may_read`:
    a page is hidden when a hồ sơ holding it (through a văn bản or its batch) has a regime
    above the role; a scoped reader sees a page whose station's commune or a holding hồ
    sơ's OrganId is within scope. Costs one pass over the hồ sơ and their pages (and, for a
    scoped reader, the ids of the pages of the stations in scope)."""
    if principal.role == "admin":
        return None
    con = db.read()
    rank = RANK[principal.role]
    # The pages hồ sơ hold, and every replacement (the sheets): one statement (a round trip
    # less per search; a round trip costs 1–6 ms of a search on a loaded server).
    held = (
        "SELECT vp.page_pk AS page, h.organ_id, h.data, CAST(NULL AS INTEGER) AS replaces"
        " FROM van_ban_pages vp"
        " JOIN van_ban v ON v.id = vp.van_ban_id JOIN ho_so h ON h.ma_ho_so = v.ma_ho_so"
        " UNION ALL SELECT p.id AS page, h.organ_id, h.data, NULL FROM pages p"
        " JOIN ho_so h ON h.batch_pk = p.batch_pk"
        " UNION ALL SELECT page_pk, NULL, NULL, replaces_pk FROM page_replacements"
        " WHERE replaces_pk IS NOT NULL"  # replacements.all_groups's edges
    )
    hidden: set[int] = set()
    organs: dict[int, set[str]] = {}
    edges: list[tuple[int, int]] = []
    for r in con.execute(held):
        if r["replaces"] is not None:
            edges.append((int(r["page"]), int(r["replaces"])))
            continue
        if _level(r["data"]) > rank:
            hidden.add(r["page"])
        organs.setdefault(r["page"], set()).add(r["organ_id"])
    sheets = replacements.components(edges)
    hidden |= {page for page, others in sheets.items() if not others.isdisjoint(hidden)}
    for page, others in sheets.items():
        organs.setdefault(page, set()).update(*(organs.get(other, set()) for other in others))
    if not principal.places:
        return PageFilter(False, frozenset(hidden)) if hidden else None

    def in_scope(place: str) -> bool:
        return any(_within(place, scope) for scope in principal.places)

    communes = progress.device_communes(db)
    devices = sorted(d for d, place in communes.items() if place and in_scope(place))
    seen = {page for page, places in organs.items() if any(in_scope(o) for o in places)}
    for i in range(0, len(devices), CHUNK):
        chunk = devices[i : i + CHUNK]
        sql = f"SELECT id FROM pages WHERE device_id IN ({_marks(len(chunk))})"  # noqa: S608
        seen.update(int(r["id"]) for r in con.execute(sql, chunk))
    seen |= {page for page, others in sheets.items() if not others.isdisjoint(seen)}
    return PageFilter(True, frozenset(seen - hidden))


def refused(
    db: Database | Connection, principal: Principal, what: str, target: str, ip: str
) -> None:
    """Write a refusal to the audit log."""
    detail = {"what": what, "role": principal.role}
    if isinstance(db, Database):
        audit.record(db, principal.name, "access.refused", target, detail, ip)
    else:
        audit.append(db, principal.name, "access.refused", target, detail, ip)


def page_access(db: Database, principal: Principal, page: int, ip: str) -> bool | None:
    """True: ``principal`` may read the page; False: refused (and audited); None: no such
    page."""
    rule = page_rules(db, [page], places_too=_scoped(principal)).get(page)
    if rule is None:
        return None
    if may_read(principal, rule):
        return True
    refused(db, principal, "page", str(page), ip)
    return False


def ho_so_access(db: Database, principal: Principal, ma: str, ip: str) -> bool | None:
    """As :func:`page_access`, for a hồ sơ."""
    rule = ho_so_rules(db, [ma], places_too=_scoped(principal)).get(ma)
    if rule is None:
        return None
    if may_read(principal, rule):
        return True
    refused(db, principal, "ho_so", ma, ip)
    return False


def batch_access(db: Database, principal: Principal, batch: int, ip: str) -> bool:
    if batch in readable_batches(db, principal, [batch]):
        return True
    refused(db, principal, "batch", str(batch), ip)
    return False


def bulk_exportable(db: Database, principal: Principal, codes: Iterable[str]) -> set[str]:
    """Hồ sơ that may leave in a bulk export: readable, and never secret (Mật)."""
    rules = ho_so_rules(db, codes, places_too=_scoped(principal))
    return {m for m, rule in rules.items() if not rule.secret and may_read(principal, rule)}


def may_file_as(principal: Principal, regime: str) -> bool:
    """Whether ``principal`` may give a hồ sơ this regime (only one they could read)."""
    return LEVEL.get(regime, LEVEL[SECRET]) <= RANK[principal.role]
