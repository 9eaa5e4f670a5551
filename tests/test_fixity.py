"""Fixity proven, not assumed (issue 17): pages enter the store through the real ingest
(test_staff's ``staff`` fixture), then a byte is flipped in the store as bit rot would: the
export refuses and names the file, the staff app shows the damage, ``sohoa-server fixity
check`` reports it and records each check; once the file is repaired all of it clears."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import test_staff
from harness import BIN
from pgcluster import url_of
from test_staff import MA, Staff, make_ho_so

from server.archive import fixity
from server.store.db import Database

staff = test_staff.staff  # the fixture: the archive the real pipeline built (copy per test)


own_store = test_staff.own_store  # the fixture: a private copy of the store


def archival_parts(db: Database) -> list[tuple[int, Path, str]]:
    rows = db.read().execute(
        "SELECT id, path, sha256 FROM parts WHERE name = 'archival' AND state = 'committed'"
        " ORDER BY page_pk"
    )
    return [(r["id"], Path(r["path"]), r["sha256"]) for r in rows]


def flip_a_byte(path: Path) -> bytes:
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return original


def cli(staff: Staff, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "SOHOA_SERVER_DATA_DIR": str(staff.data_dir),
        "SOHOA_DATABASE_URL": url_of(staff.db.path or staff.db.url),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [str(BIN / "sohoa-server"), "fixity", "check", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.tesseract
@pytest.mark.mqtt
@pytest.mark.slow
def test_a_flipped_byte_stops_the_export_raises_an_alert_and_the_check_reports_it(
    staff: Staff, own_store: Path
) -> None:
    make_ho_so(staff)
    bag_url = f"/api/v1/ho-so/{MA}/bag"
    archivist = staff.bearer("archivist")
    assert staff.client.get(bag_url, headers=archivist).status_code == 200
    part_pk, path, recorded = archival_parts(staff.db)[0]  # page 1 of văn bản .001
    assert fixity.damaged(staff.db) == []

    original = flip_a_byte(path)
    r = staff.client.get(bag_url, headers=archivist)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert f"{MA}.001" in detail and str(path) in detail and recorded in detail

    # The staff app shows it on the dashboard, naming the văn bản and the file.
    staff.login("viewer")
    home = staff.client.get("/").text
    assert "Phát hiện tệp hỏng trong kho lưu trữ" in home
    assert f"{MA}.001" in home and str(path) in home and "Sai mã băm" in home
    alerts = staff.db.read().execute("SELECT detail FROM alerts WHERE kind = 'fixity'")
    assert any(str(path) in row["detail"] for row in alerts)

    # The scheduled check finds it too, names it, exits 1 and records every check.
    out = cli(staff, "--rate-mb", "0")
    assert out.returncode == 1, out.stderr
    assert f"DAMAGED part {part_pk}: {path}" in out.stderr
    committed = (
        staff.db.read()
        .execute("SELECT COUNT(*) FROM parts WHERE state = 'committed'")
        .fetchone()[0]
    )
    assert f"{committed} part(s)" in out.stdout
    recorded_events = fixity.events(staff.db, [part_pk])
    assert [e["outcome"] for e in recorded_events] == ["pass", "fail", "fail"]
    assert recorded_events[-1]["expected_sha256"] == recorded
    assert recorded_events[-1]["context"] == "fixity check"

    # Repaired (restored from backup): the check passes, the damage clears, export works.
    path.write_bytes(original)
    out = cli(staff)
    assert out.returncode == 0, out.stderr
    assert "0 damaged" in out.stdout
    assert fixity.damaged(staff.db) == []
    assert "Phát hiện tệp hỏng" not in staff.client.get("/").text
    assert staff.client.get(bag_url, headers=archivist).status_code == 200


@pytest.mark.tesseract
@pytest.mark.mqtt
@pytest.mark.slow
def test_a_missing_file_is_damage_too(staff: Staff, own_store: Path) -> None:
    make_ho_so(staff)
    _, path, _ = archival_parts(staff.db)[1]
    path.unlink()
    r = staff.client.get(f"/api/v1/ho-so/{MA}/bag", headers=staff.bearer("archivist"))
    assert r.status_code == 409 and "missing" in r.json()["detail"]
    report = fixity.check_store(staff.db)
    assert [(c.path, c.outcome) for c in report.damaged] == [(str(path), "missing")]


@pytest.mark.tesseract
@pytest.mark.mqtt
@pytest.mark.slow
def test_the_walk_is_resumable_and_checks_each_part_once_per_run(staff: Staff) -> None:
    db = staff.db
    parts = [r[0] for r in db.read().execute("SELECT id FROM parts ORDER BY id")]
    assert len(parts) >= 6

    first = fixity.check_store(db, limit=4, group=3)
    assert (first.checked, first.finished, first.resumed_after) == (4, False, None)
    second = fixity.check_store(db, group=3)  # goes on after the 4th part
    assert second.resumed_after == parts[3] and second.finished
    assert second.checked == len(parts) - 4
    checked = [e["part_pk"] for e in fixity.events(db, parts)]
    assert sorted(checked) == parts  # each part exactly once over the two runs

    third = fixity.check_store(db)  # a finished run left no position: starts afresh
    assert third.resumed_after is None and third.checked == len(parts)

    # --since: only what was committed from then on (nothing here is from the future).
    later = fixity.check_store(db, since=4_102_444_800.0)  # 2100-01-01
    assert later.checked == 0 and later.finished


def test_the_throttle_sleeps_to_the_rate_without_a_clock_in_the_test() -> None:
    slept: list[float] = []
    throttle = fixity.Throttle(1000.0, clock=lambda: 0.0, sleep=slept.append)
    throttle(500)
    throttle(1500)
    assert slept == [0.5, 2.0]
    unlimited = fixity.Throttle(0, clock=lambda: 0.0, sleep=slept.append)
    unlimited(10**9)
    assert slept == [0.5, 2.0]


def test_the_systemd_timer_runs_a_command_the_cli_knows() -> None:
    from server.cli import build_parser

    unit = (Path(__file__).parent.parent / "systemd" / "sohoa-fixity.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = exec_start.split("=", 1)[1].split()
    assert argv[0].endswith("/sohoa-server")
    args = build_parser().parse_args(argv[1:])
    assert args.func.__name__ == "cmd_fixity_check" and args.rate_mb > 0
    timer = (Path(__file__).parent.parent / "systemd" / "sohoa-fixity.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer
