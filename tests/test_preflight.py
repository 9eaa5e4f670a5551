"""Start-up checks (agent/preflight.py): the service refuses to start without its parts.

Each refusal is tried for real on the installed agent: a PATH without tesseract, a
TESSDATA_PREFIX without Vietnamese data, a python-sane whose C module cannot load, a broker
URL with an impossible port. Each must exit 78 with one operator line and the install hint,
before the outbox is even opened, and a page waiting for OCR must stay waiting (before the
checks, every page became a failed capture-only page).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import agent_env, run_agent
from PIL import Image

from agent import config, preflight
from agent.outbox import outbox as ob

pytestmark = [pytest.mark.sane, pytest.mark.tesseract]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return agent_env(tmp_path / "agent", "mqtt://127.0.0.1:1", **extra)


def _refused(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    out = run_agent(env, *args)
    assert out.returncode == 78, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    # One operator line; the log lines (timestamped, English) carry the detail.
    lines = [line for line in out.stderr.splitlines() if line and not LOG_LINE.match(line)]
    assert len(lines) == 1, out.stderr
    agent_dir = tmp_path / "agent"
    assert not agent_dir.exists() or not any(agent_dir.iterdir())  # the outbox never opened
    return lines[0]


def test_every_check_passes_on_a_complete_station(tmp_path: Path) -> None:
    settings = config.load(environ=_env(tmp_path))
    preflight.check(settings, tesseract=True, sane=True, broker=True)


def test_no_tesseract_on_path_refuses_to_start_with_the_install_hint(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    line = _refused(tmp_path, _env(tmp_path, PATH=str(empty_bin)), "run")
    assert line.startswith("Không khởi động được: thiếu tesseract")
    assert "apt install tesseract-ocr tesseract-ocr-vie" in line


def test_no_vietnamese_data_refuses_to_start_in_either_language(tmp_path: Path) -> None:
    empty = tmp_path / "tessdata"
    empty.mkdir()
    env = _env(tmp_path, TESSDATA_PREFIX=str(empty))
    line = _refused(tmp_path, env, "run")
    assert line.endswith("apt install tesseract-ocr-vie")
    english = _refused(tmp_path, {**env, "SOHOA_LANGUAGE": "en"}, "run")
    assert english.startswith("Cannot start: tesseract or its Vietnamese data is missing")
    assert english.endswith("apt install tesseract-ocr-vie")


def test_a_page_waiting_for_ocr_stays_waiting_when_tesseract_cannot_read_it(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    page = tmp_path / "page.png"
    Image.new("L", (800, 1100), 255).save(page, dpi=(300, 300))
    run_agent(env, "import", str(page), check=True)
    empty = tmp_path / "tessdata"
    empty.mkdir()
    out = run_agent({**env, "TESSDATA_PREFIX": str(empty)}, "process")
    assert out.returncode == 78, out.stderr
    assert "apt install tesseract-ocr-vie" in out.stderr
    with ob.Outbox(tmp_path / "agent", read_only=True) as outbox:
        (batch,) = outbox.batches()
        (record,) = outbox.pages(batch.batch_id)
    assert record.state == ob.CAPTURED  # not failed: it is processed once tesseract is back


def test_sane_that_cannot_load_refuses_to_start(tmp_path: Path) -> None:
    # python-sane's C extension missing (libsane not installed): `import _sane` fails.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "_sane.py").write_text("raise ImportError('libsane.so.1: cannot open')\n")
    env = _env(tmp_path, PYTHONPATH=str(shadow))
    line = _refused(tmp_path, env, "run")
    assert "SANE" in line and line.endswith(preflight.SANE_HINT)
    assert _refused(tmp_path, env, "scan").endswith("sane-utils")


def test_a_malformed_broker_url_refuses_to_start_without_showing_the_password(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path, SOHOA_MQTT_URL="mqtt://xa-01:bi-mat@127.0.0.1:99999")
    line = _refused(tmp_path, env, "run")
    assert "MQTT" in line and "SOHOA_MQTT_URL" in line
    assert "bi-mat" not in run_agent(env, "run").stderr
    assert _refused(tmp_path, env, "sync").startswith("Không khởi động được")
