"""A station whose clock is days off (a Pi has no RTC; without network time it starts where
it stopped) still syncs, and the archive keeps both clocks: the batch's creation time as
the station saw it, its arrival as the archive did. The station's wall clock is shifted
by tests/clockshift/sitecustomize.py (monotonic time untouched, as on a Pi that booted
without network time); the archive's is the machine's."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from harness import Broker, ServerProcess, agent_env, run_agent
from PIL import Image

pytestmark = [pytest.mark.mqtt, pytest.mark.tesseract, pytest.mark.slow]

CLOCKSHIFT = Path(__file__).parent / "clockshift"  # a sitecustomize that shifts time.time
DAY = 86400.0


@pytest.mark.parametrize("days", [-4.0, 9.0])
def test_a_station_days_off_still_syncs_and_both_clocks_are_kept(
    tmp_path: Path, broker: Broker, server: ServerProcess, days: float
) -> None:
    env = agent_env(tmp_path / "agent", broker.url, SOHOA_SYNC_MASTERS="true")
    path = os.pathsep.join(p for p in (str(CLOCKSHIFT), env.get("PYTHONPATH")) if p)
    env.update(PYTHONPATH=path, CLOCKSHIFT_SECONDS=str(days * DAY))
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(3)
    shas = set()
    for i in range(2):
        path = folder / f"{i}.png"
        pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, dpi=(200, 200))
        shas.add(hashlib.sha256(path.read_bytes()).hexdigest())
    run_agent(env, "import", str(folder), check=True)
    index = json.loads((tmp_path / "agent" / "index.json").read_text())["_default"]
    (batch,) = index.values()
    assert abs(batch["created_at"] - (time.time() + days * DAY)) < 3600, "clock not shifted"

    out = run_agent(env, "sync", "--wait", "--timeout", "120")
    assert out.returncode == 0, out.stdout + out.stderr

    con = sqlite3.connect(server.data_dir / "archive.sqlite3")
    try:
        created, received, complete = con.execute(
            "SELECT created_at, received_at, complete_at FROM batches WHERE batch_id = ?",
            (batch["batch_id"],),
        ).fetchone()
        stored = {
            r[0]
            for r in con.execute(
                "SELECT parts.sha256 FROM parts WHERE name = 'capture' AND state = 'committed'"
            )
        }
    finally:
        con.close()
    assert stored == shas
    assert created == pytest.approx(batch["created_at"])  # the station's clock
    assert abs(received - time.time()) < 3600  # the archive's clock
    assert complete is not None and abs(complete - time.time()) < 3600
    listed = server.get_json("/api/v1/batches")
    assert [b["complete"] for b in listed] == [True]
