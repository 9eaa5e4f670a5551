"""Matching by the cover sheet's mã hồ sơ, on material the real agent made: cover sheets
printed by `sohoa-agent coversheet` between drawn pages, read by the real pipeline
(tesseract, zbar), carried on a USB bundle into the real server (`import-bundle`, which
splits the batch at its sheets). The pages after the planned hồ sơ's sheet count for it by
themselves; the pages after a sheet whose code is not planned, and the page before any
sheet, count for nothing until matched by hand."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from corpus import PageSpec, render_page, save_png
from harness import BIN, agent_env, enrol_offline, run_agent
from inventories import csv_inventory

from server.archive import fonds, inventory, progress
from server.store.db import Database

PLANNED = "H06.XL.2019.01"
NOT_PLANNED = "H06.XL.2019.77"


@pytest.mark.slow
@pytest.mark.tesseract
def test_cover_sheets_match_batches_to_the_plan(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", "mqtt://127.0.0.1:1")
    pages = tmp_path / "in"
    pages.mkdir()
    for name, code in (("02-cover.pdf", PLANNED), ("05-cover.pdf", NOT_PLANNED)):
        run_agent(env, "coversheet", "--ma-ho-so", code, "--first", "1", "--count", "1",
                  "--out", str(pages / name), check=True)  # fmt: skip
    for name, seed in (("01", 1), ("03", 3), ("04", 4), ("06", 6)):
        save_png(
            render_page(PageSpec(dpi=200, n_lines=6, seed=seed)), pages / f"{name}.png", dpi=200
        )
    run_agent(env, "import", str(pages), check=True)
    server_dir = tmp_path / "server"
    enrol_offline(server_dir, tmp_path / "agent", "xa-test-01")
    usb = tmp_path / "usb"
    usb.mkdir()
    run_agent(env, "export", str(usb), check=True)

    db = Database(server_dir / "archive.sqlite3")
    fonds.create(db, "XL", "UBND xã Xuân La", organ_id="H06.XL", unit_code="old:01873")
    plan = inventory.read(
        csv_inventory(["TT;Mã hồ sơ;Tiêu đề hồ sơ;Số trang",
                       f"1;{PLANNED};Hồ sơ tiếp dân;4", "2;H06.XL.2019.02;Sổ hộ tịch;10"]),
        "muc-luc.csv", "H06.XL",
    )  # fmt: skip
    assert plan.ok, plan.problems
    inventory.import_plan(db, "XL", plan, "lan", "muc-luc.csv")
    out = subprocess.run(
        [str(BIN / "sohoa-server"), "import-bundle", str(next(usb.glob("sohoa-bundle-*")))],
        env={"SOHOA_SERVER_DATA_DIR": str(server_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr

    by_file = {
        Path(r["source_name"].split("#")[0]).stem: r["id"]
        for r in db.read().execute("SELECT id, source_name FROM pages")
    }
    found = inventory.attribute(db)
    assert {p: c for p, c in found.of_page.items()} == {
        by_file["03"]: PLANNED, by_file["04"]: PLANNED
    }  # fmt: skip
    assert found.batch_codes == {1: {PLANNED}}
    assert inventory.unmatched_batches(db, found) == []
    assert [p["code"] for p in inventory.unscanned(db, "XL", found)] == ["H06.XL.2019.02"]
    xl = {f.key: f for f in progress.plan(db).fonds}["XL"]
    assert xl.ho_so["scanned"] == xl.ho_so["catalogued"] == 1  # the split made its văn bản
    assert xl.pages["scanned"] == xl.pages["catalogued"] == 2
    # A hand match covers the pages no sheet claims (the first); sheet pages keep their code.
    inventory.match_batch(db, 1, "XL", "H06.XL.2019.02", "lan")
    found = inventory.attribute(db)
    assert found.of_page[by_file["01"]] == "H06.XL.2019.02"
    assert found.of_page[by_file["03"]] == PLANNED and by_file["06"] not in found.of_page
