"""`make demo`: the whole path on one machine, started by the product's own launcher.

Starts a private Mosquitto, the archive server (SQLite + files under ./var/demo/server) and
the scan-station agent bound to SANE's `test` scanner (`embedded/`); presses the button once
(one ADF batch from `test:0`, which draws a colour test pattern), imports the sample pages of
Vietnamese records shipped in `embedded/samples/` (as a scan-to-folder copier would), lets
the agent clean, OCR and sync everything, files the sample pages as văn bản in three hồ sơ
through the staff API, imports the commune's Mục lục hồ sơ as its plan (a fonds with a
handover deadline; /plan shows progress and a forecast), leaves the station's daemon
running (so the dashboard shows it online) and prints the address of the staff page.
Ctrl-C stops everything.

Safe to run again: it reuses ./var/demo, and scans, imports and catalogues only what it has
not done before (``var/demo/demo-state.json`` and the archive's own hồ sơ say what is done).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from embedded import (
    SAMPLES,
    AgentDaemon,
    Broker,
    ChildDied,
    ServerProcess,
    agent_env,
    run_agent,
)

REPO = Path(__file__).resolve().parent.parent
# SOHOA_DEMO_DIR: another place for it (tests/test_demo.py runs it in a temporary one).
VAR = Path(os.environ.get("SOHOA_DEMO_DIR") or REPO / "var" / "demo")
STATE = VAR / "demo-state.json"
HTTP_PORT = int(os.environ.get("SOHOA_DEMO_PORT", "8080"))
MQTT_PORT = int(os.environ.get("SOHOA_DEMO_MQTT_PORT", "18830"))
SCREEN_PORT = int(os.environ.get("SOHOA_DEMO_SCREEN_PORT", "8765"))  # the technician's screen
DEVICE = "xa-demo-01"
ORGAN = "000.00.00.H53"  # a commune's OrganId (13), as in the README's examples

# Three hồ sơ (NĐ 30/2020 Phụ lục VI), each văn bản made of sample pages (embedded/samples).
CATALOGUE: tuple[dict[str, Any], ...] = (
    {
        "ho_so": {
            "organ_id": ORGAN, "nam": 2024, "ky_hieu": "HS-01",
            "tieu_de": "Hồ sơ về việc chỉnh lý, số hóa tài liệu lưu trữ năm 2024",
            "thoi_han_bao_quan": "Vĩnh viễn", "nguoi_lap": "Trần Thị Mai",
            "thoi_gian_bat_dau": "2024-03-14", "thoi_gian_ket_thuc": "2024-03-20",
            "tu_khoa": "chỉnh lý; số hóa; lưu trữ",
        },
        "van_ban": (
            {"pages": ["quyet-dinh-125.png"], "ten_loai": "Quyết định", "so": "125",
             "ky_hieu": "QĐ-UBND", "ngay": "2024-03-14",
             "co_quan_ban_hanh": "Ủy ban nhân dân xã Tân Phú",
             "trich_yeu": "Phê duyệt kế hoạch chỉnh lý tài liệu lưu trữ năm 2024"},
            {"pages": ["ke-hoach-18.png"], "ten_loai": "Kế hoạch", "so": "18",
             "ky_hieu": "KH-UBND", "ngay": "2024-03-20",
             "co_quan_ban_hanh": "Ủy ban nhân dân xã Tân Phú",
             "trich_yeu": "Chỉnh lý và số hóa tài liệu lưu trữ năm 2024"},
        ),
    },
    {
        "ho_so": {
            "organ_id": ORGAN, "nam": 2023, "ky_hieu": "HS-02",
            "tieu_de": "Hồ sơ đăng ký khai sinh cho Lê Minh Khoa",
            "thoi_han_bao_quan": "Vĩnh viễn", "che_do_su_dung": "Sử dụng có điều kiện",
            "nguoi_lap": "Đỗ Văn Nam", "thoi_gian_bat_dau": "2023-11-10",
            "thoi_gian_ket_thuc": "2023-11-10", "tu_khoa": "hộ tịch; khai sinh",
        },
        "van_ban": (
            {"pages": ["to-khai-khai-sinh.png"], "ten_loai": "Tờ khai", "ngay": "2023-11-10",
             "co_quan_ban_hanh": "Lê Văn Bình", "trich_yeu": "Tờ khai đăng ký khai sinh"},
            {"pages": ["trich-luc-khai-sinh-215.png"], "ten_loai": "Trích lục", "so": "215",
             "ky_hieu": "TLKS-BS", "ngay": "2023-11-10",
             "co_quan_ban_hanh": "Ủy ban nhân dân xã Tân Phú",
             "trich_yeu": "Trích lục khai sinh của Lê Minh Khoa"},
        ),
    },
    {
        "ho_so": {
            "organ_id": ORGAN, "nam": 2024, "ky_hieu": "HS-03",
            "tieu_de": "Hồ sơ về quản lý đất đai, khoáng sản quý I năm 2024",
            "thoi_han_bao_quan": "20 năm", "nguoi_lap": "Trần Thị Mai",
            "thoi_gian_bat_dau": "2024-03-28", "thoi_gian_ket_thuc": "2024-03-28",
            "tu_khoa": "đất đai; khoáng sản",
        },
        "van_ban": (
            {"pages": ["bien-ban-hop-dat-dai.png"], "ten_loai": "Biên bản",
             "ngay": "2024-03-28", "co_quan_ban_hanh": "Ủy ban nhân dân xã Tân Phú",
             "trich_yeu": "Họp về công tác quản lý đất đai, khoáng sản quý I năm 2024"},
        ),
    },
)  # fmt: skip


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def load_state() -> dict[str, Any]:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def save_state(state: dict[str, Any]) -> None:
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(STATE)


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.png"))


def pages_by_capture(server: ServerProcess) -> dict[str, int]:
    """Archived page ids of this demo station's imported pages, by their capture's sha256
    (an imported image is kept byte for byte, so its sha256 is the sample file's)."""
    found: dict[str, int] = {}
    for batch in server.get_json("/api/v1/batches?limit=1000"):
        if batch["device_id"] == DEVICE and batch["source"] == "import":
            for page in server.get_json(f"/api/v1/batches/{batch['id']}")["pages"]:
                found.setdefault(page["capture_sha256"], page["id"])
    return found


def catalogue(server: ServerProcess) -> None:
    """File the sample pages into CATALOGUE's hồ sơ, skipping those already filed."""
    pages = pages_by_capture(server)
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sample_files()}
    for entry in CATALOGUE:
        ho_so = entry["ho_so"]
        ma = f"{ho_so['organ_id']}.{ho_so['nam']}.{ho_so['ky_hieu']}"
        status, body, _ = server.get(f"/api/v1/ho-so/{ma}")
        if status == 200 and json.loads(body)["van_ban"]:
            continue
        status, body, _ = server.request("PUT", f"/api/v1/ho-so/{ma}", ho_so)
        if status != 200:
            raise SystemExit(f"demo: hồ sơ {ma} refused: HTTP {status} {body[:300]!r}")
        for doc in entry["van_ban"]:
            ids = [pages.get(sha[name]) for name in doc["pages"]]
            if None in ids:
                raise SystemExit(f"demo: {doc['pages']} not in the archive yet")
            status, body, _ = server.request(
                "POST", f"/api/v1/ho-so/{ma}/van-ban", {**doc, "pages": ids}
            )
            if status != 201:
                raise SystemExit(f"demo: văn bản in {ma} refused: HTTP {status} {body[:300]!r}")
        print(f"    {ma}: {ho_so['tieu_de']} ({len(entry['van_ban'])} văn bản)")


def plan(server: ServerProcess) -> None:
    """The commune's fonds and its Mục lục hồ sơ as the plan: the three hồ sơ filed above and
    two still on the shelf, so /plan shows progress and a forecast (docs/plan.md)."""
    import datetime as dt

    from openpyxl import Workbook  # type: ignore[import-untyped]

    deadline = (dt.date.today() + dt.timedelta(days=120)).isoformat()
    out = server.cli("fonds", "add", "TP", "UBND xã Tân Phú", "--organ-id", ORGAN,
                     "--deadline", deadline, check=False)  # fmt: skip
    if out.returncode != 0 and "already exists" not in out.stderr:
        raise SystemExit(f"demo: fonds refused: {out.stderr.strip()}")
    wb = Workbook()
    ws = wb.active
    ws.append(["MỤC LỤC HỒ SƠ — UBND XÃ TÂN PHÚ"])
    ws.append([])
    ws.append(["Số TT", "Số và ký hiệu hồ sơ", "Tiêu đề hồ sơ", "Năm", "Số trang",
               "Thời hạn bảo quản"])  # fmt: skip
    rows = [(e["ho_so"]["ky_hieu"], e["ho_so"]["tieu_de"], e["ho_so"]["nam"], 4)
            for e in CATALOGUE]  # fmt: skip
    rows += [("HS-04", "Sổ đăng ký khai sinh", 2024, 120), ("HS-05", "Hồ sơ địa chính", 2023, 80)]
    for i, (ky_hieu, title, year, pages) in enumerate(rows, 1):
        ws.append([i, ky_hieu, title, year, pages, "Vĩnh viễn"])
    ws.append(["Tổng cộng", "", "", "", sum(r[3] for r in rows)])
    path = VAR / "muc-luc-tan-phu.xlsx"
    wb.save(path)
    out = server.cli("inventory", "import", str(path), "--fonds", "TP", check=False)
    if out.returncode != 0 and "already planned" not in out.stderr:
        raise SystemExit(f"demo: inventory refused: {out.stderr.strip()}")
    print(out.stdout, end="")


def main() -> int:
    # Ctrl-C is how the demo stops (it says so). A process started with SIGINT ignored (a
    # shell's background job, a test runner's worker) would inherit that, and Python then
    # leaves it ignored: the demo would not stop. CI saw it (tests/test_demo.py under xdist).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    VAR.mkdir(parents=True, exist_ok=True)
    state = load_state()
    say(f"Mosquitto on 127.0.0.1:{MQTT_PORT} (dynamic security: one identity per station)")
    broker = Broker(VAR / "broker", port=MQTT_PORT, dynsec=True).start()
    server = ServerProcess(
        VAR / "server",
        f"mqtt://sohoa-server@127.0.0.1:{MQTT_PORT}",
        port=HTTP_PORT,
        admin_user="demo",
        mqtt_password_file=broker.ingest_password_file,
        settings={"SOHOA_BROKER_ADMIN_PASSWORD_FILE": str(broker.admin_password_file)},
    )
    daemon: AgentDaemon | None = None
    token_file = VAR / "server" / "demo-token"
    if token_file.exists():
        server.token = token_file.read_text().strip()
    try:
        say(f"Archive server on {server.url} (data in {server.data_dir})")
        server.start()
        token_file.write_text(server.token)
        # Broker address, identity and the archive's key come from the station's enrolment.
        env = agent_env(
            VAR / "agent",
            None,
            None,
            SOHOA_SCANNER="test:0",
            SOHOA_SYNC_MASTERS="true",
            SOHOA_MIN_FREE_MB="200",
            SOHOA_PIPELINE_WORKERS="2",
            SOHOA_SCREEN_PORT=str(SCREEN_PORT),
        )
        if not (VAR / "agent" / "enrolment" / "enrolment.json").exists():
            say(f"Enrolling the station {DEVICE}: a one-time code from the archive, used once")
            out = server.cli(
                "device", "add", DEVICE, "--commune", "Xã Demo", "--replace",
                "--sheet", str(VAR / f"enrol-{DEVICE}.pdf"),
            )  # fmt: skip
            print(out.stdout, end="")
            out = run_agent(env, "enrol", out.stdout.strip().splitlines()[-1])
            print(out.stdout + out.stderr, end="")
            if out.returncode != 0:
                print(server.log_tail(), file=sys.stderr)
                return out.returncode
        if not state.get("scanned"):
            say("Button press: scanning one batch from SANE's test scanner (test:0)")
            out = run_agent(env, "scan")
            print(out.stdout + out.stderr, end="")
            state["scanned"] = out.returncode == 0
            save_state(state)
        if not state.get("imported"):
            say(f"Importing {len(sample_files())} pages of Vietnamese records (scan-to-folder)")
            out = run_agent(env, "import", *map(str, sample_files()))
            print(out.stdout + out.stderr, end="")
            state["imported"] = out.returncode == 0
            save_state(state)
        say("Cleaning up, OCR (tesseract vie), and syncing to the archive")
        out = run_agent(env, "sync", "--wait", "--timeout", "900")
        print(out.stdout + out.stderr, end="")
        if out.returncode != 0:
            print(server.log_tail(), file=sys.stderr)
            return out.returncode
        say("Filing the sample pages into hồ sơ (the staff API, as an archivist would)")
        catalogue(server)
        say("The plan: the commune's Mục lục hồ sơ, imported (sohoa-server inventory import)")
        plan(server)
        daemon = AgentDaemon(env, log_path=VAR / "agent" / "agent.log")
        daemon.start()  # the station as a service: online on the dashboard, telemetry
        # A one-time link valid for minutes: no long-lived token ever goes in a URL.
        link = server.cli("login-link", "--user", "demo", "--base-url", server.url).stdout.strip()
        say("Done. Open the staff page (Vietnamese; ?lang=en for English):")
        print(f"\n    {link}\n")
        print("    (one use, valid 10 minutes; for another:")
        print(f"     SOHOA_SERVER_DATA_DIR={server.data_dir} .venv/bin/sohoa-server login-link"
              f" --user demo --base-url {server.url})")  # fmt: skip
        print(f"    API: {server.url}/docs   (Authorization: Bearer {server.token})")
        print(f"    Search without diacritics, e.g.: {server.url}/search?q=phe+duyet+ke+hoach")
        print(f"    Progress against the plan, with a forecast: {server.url}/plan")
        print(
            "    The station's screen, as the technician sees it (the Quét button scans"
            f" again):\n      http://127.0.0.1:{SCREEN_PORT}/"
        )
        print(
            "\n    The batch from SANE's test scanner is its colour test pattern, not paper with"
            "\n    text: its pages are rightly flagged for review (no readable text; the staff"
            "\n    pages say so). The Vietnamese records are the imported batch, in three hồ sơ."
            "\n    (Lô từ máy quét thử SANE là ảnh mẫu màu, không phải giấy có chữ: các trang được"
            "\n    đánh dấu cần xem lại là đúng. Hồ sơ tiếng Việt là lô nhập từ thư mục.)"
        )
        print("\n    Ctrl-C stops the station, the server and the broker.\n", flush=True)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop:
                broker.check()
                server.check()
                daemon.check()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        except ChildDied as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        say("Stopping")
        if daemon is not None:
            daemon.stop(30)
        server.stop()
        broker.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
