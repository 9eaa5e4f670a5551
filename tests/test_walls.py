"""The walls of the house, enforced: which room may import which.

Read statically (every `import` in every module, including those inside functions), so a wall
holds even for a lazy import on a rarely used path. The rooms and their arrows are drawn in
docs/architecture.md ("Rooms"); this test is that drawing made strict: an arrow that runs
backwards fails here with the file and line that drew it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SIDES = ("protocol", "agent", "server", "embedded")

# Inside a side, a module belongs to a room (its first sub-package) or is at the top.
# Each room lists the rooms it may import; the top of a side (cli, daemon, app, …) may import
# every room of its side. "base" modules (settings, errors, words) may be imported by all.
AGENT_BASE = {"agent.config", "agent.errors", "agent.messages", "agent"}
AGENT_ROOMS: dict[str, set[str]] = {
    "profiles": set(),  # hardware as data: knows no other room
    "outbox": set(),  # durable pages and batches: knows no other room
    "pipeline": set(),  # cleanup, OCR, archival page: knows neither outbox nor uplink
    "buttons": {"profiles"},  # input devices and feedback
    "capture": {"profiles", "outbox"},  # scanner -> durable pages in the outbox
    "uplink": {"outbox"},  # outbox -> broker / USB disk
}
SERVER_BASE = {"server.config", "server"}
SERVER_ROOMS: dict[str, set[str]] = {
    "store": set(),  # files and the catalogue database engine
    "fleet": {"store"},  # stations: registry, broker identities, enrolment
    "ingest": {"store", "fleet"},  # broker / USB -> verified, committed pages
    "archive": {"store"},  # hồ sơ, search, review, export, staff accounts, audit
    "web": {"archive", "store", "fleet"},  # staff app and API: render what archive returns
}


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            # `from agent import outbox` imports a module too
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _modules() -> list[tuple[Path, str]]:
    out = []
    for side in SIDES:
        for path in sorted((REPO / side).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((path, ".".join(parts)))
    return out


def _room(module: str) -> str | None:
    """`agent.pipeline.ocr` -> `pipeline`; a module at the top of its side -> None."""
    parts = module.split(".")
    if len(parts) >= 2 and (REPO / parts[0] / parts[1]).is_dir():
        return parts[1]
    return None


def _is_module_of_side(name: str) -> bool:
    return name.split(".")[0] in SIDES


def test_every_room_is_drawn() -> None:
    """A new sub-package must be placed on the map (and so in the docs) before it is used."""
    for side, rooms in (("agent", AGENT_ROOMS), ("server", SERVER_ROOMS)):
        found = {
            p.name for p in (REPO / side).iterdir() if p.is_dir() and (p / "__init__.py").exists()
        }
        assert found == set(rooms), (
            f"{side}/ rooms on disk {sorted(found)} vs drawn {sorted(rooms)}"
        )
    arch = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    for side, rooms in (("agent", AGENT_ROOMS), ("server", SERVER_ROOMS)):
        for room in rooms:
            assert f"{side}/{room}/" in arch, (
                f"docs/architecture.md does not describe {side}/{room}/"
            )


def test_every_room_says_what_it_owns() -> None:
    for side in ("agent", "server"):
        for init in sorted((REPO / side).glob("*/__init__.py")):
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
            assert doc and len(doc) > 40, (
                f"{init.relative_to(REPO)} needs a docstring: what it owns, what it must not do"
            )


def _violations(modules: list[tuple[Path, str]] | None = None) -> list[str]:
    bad: list[str] = []
    for path, module in _modules() if modules is None else modules:
        side = module.split(".")[0]
        here = _room(module)
        for line, name in _imports(path, module):
            if not _is_module_of_side(name):
                continue
            other = name.split(".")[0]
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
            where = f"{shown}:{line} imports {name}"
            if side == "protocol" and other != "protocol":
                bad.append(f"{where}: protocol/ is pure and imports neither side")
            elif side in ("agent", "server", "embedded") and other not in (side, "protocol"):
                bad.append(f"{where}: {side}/ never imports {other}/ (they meet on the wire)")
            elif side in ("agent", "server") and other == side and here is not None:
                target = _room(name)
                base = AGENT_BASE if side == "agent" else SERVER_BASE
                rooms = AGENT_ROOMS if side == "agent" else SERVER_ROOMS
                if (
                    target is None
                    and name not in base
                    and not any(name.startswith(b + ".") for b in base if b != side)
                ):
                    bad.append(f"{where}: a room imports only rooms and base modules, not the top")
                elif target is not None and target != here and target not in rooms[here]:
                    bad.append(f"{where}: {side}/{here}/ may not import {side}/{target}/")
    return bad


def test_arrows_run_one_way() -> None:
    bad = _violations()
    assert not bad, "walls broken:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "target", "why"),
    [
        ("agent.pipeline.probe", "agent.outbox.storage", "may not import agent/outbox/"),
        ("agent.outbox.probe", "agent.uplink.sync", "may not import agent/uplink/"),
        ("agent.capture.probe", "agent.daemon", "not the top"),
        ("server.ingest.probe", "server.archive.audit", "may not import server/archive/"),
        ("server.archive.probe", "server.web.render", "may not import server/web/"),
        ("server.store.probe", "server.ingest", "may not import server/ingest/"),
        ("agent.probe", "server.app", "never imports server/"),
        ("protocol.probe", "agent.config", "imports neither side"),
        ("embedded.probe", "agent.cli", "never imports agent/"),
    ],
)
def test_a_backward_arrow_is_caught(tmp_path: Path, module: str, target: str, why: str) -> None:
    """The test can fail: a lazy import inside a function that draws a forbidden arrow."""
    probe = tmp_path / "probe.py"
    probe.write_text(f"def later():\n    import {target}\n")
    bad = _violations([(probe, module)])
    assert len(bad) == 1 and why in bad[0], bad
