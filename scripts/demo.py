"""`make demo`: the whole path on one machine with embedded defaults.

Starts a private Mosquitto, the archive server (SQLite + files under ./var/demo/server) and
the scan-station agent bound to SANE's `test` scanner; presses the button once (one ADF batch
from `test:0`), also imports a generated page of Vietnamese administrative text (the test
scanner only draws patterns), processes and syncs everything, then prints the address of the
staff page. Ctrl-C stops everything cleanly. Safe to run again: it reuses ./var/demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the page generator the tests use

from harness import (  # noqa: E402
    Broker,
    ServerProcess,
    enrolled_agent_env,
    run_agent,
    run_server,
)

VAR = REPO / "var" / "demo"
HTTP_PORT = int(os.environ.get("SOHOA_DEMO_PORT", "8080"))
MQTT_PORT = int(os.environ.get("SOHOA_DEMO_MQTT_PORT", "18830"))


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def sample_page(path: Path) -> Path:
    from corpus import PageSpec, render_page, save_png

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        page = render_page(PageSpec(dpi=300, skew_deg=1.2, noise_sigma=3.0, seal=True))
        save_png(page, path, dpi=300)
    return path


def main() -> int:
    VAR.mkdir(parents=True, exist_ok=True)
    say(f"Mosquitto on 127.0.0.1:{MQTT_PORT} (dynamic security: one identity per station)")
    # The broker's two server identities, kept for the next run (its plugin file keeps them).
    secrets_file = VAR / "broker" / "server-identities.json"
    if secrets_file.exists():
        known = json.loads(secrets_file.read_text())
    else:
        known = {"admin": os.urandom(16).hex(), "ingest": os.urandom(16).hex()}
        secrets_file.parent.mkdir(parents=True, exist_ok=True)
        secrets_file.write_text(json.dumps(known))
        secrets_file.chmod(0o600)
    broker = Broker(
        VAR / "broker",
        port=MQTT_PORT,
        dynsec=True,
        admin_password=known["admin"],
        ingest_password=known["ingest"],
    ).start()
    (VAR / "server").mkdir(parents=True, exist_ok=True)
    (VAR / "server" / "broker-admin-password").write_text(known["admin"])
    server = ServerProcess(VAR / "server", broker.ingest_url, port=HTTP_PORT, test_key=False)
    token_file = VAR / "server" / "demo-token"
    if token_file.exists():
        server.token = token_file.read_text().strip()
    try:
        say(f"Archive server on {server.url} (data in {server.data_dir})")
        server.start()
        token_file.write_text(server.token)
        env = enrolled_agent_env(VAR / "agent", SOHOA_SYNC_MASTERS="true")
        env["SOHOA_MIN_FREE_MB"] = "200"
        if not (VAR / "agent" / "enrolment" / "enrolment.json").exists():
            say("Enrolling the station: a one-time code from the archive, used by the agent")
            sheet = VAR / "enrol-xa-demo-01.pdf"
            out = run_server(
                server, "device", "add", "xa-demo-01", "--commune", "Xã Demo", "--sheet",
                str(sheet), "--replace",
            )  # fmt: skip
            print(out.stdout + out.stderr, end="")
            if out.returncode != 0:
                return out.returncode
            out = run_agent(env, "enrol", out.stdout.strip().splitlines()[-1])
            print(out.stdout + out.stderr, end="")
            if out.returncode != 0:
                print(server.log_tail(), file=sys.stderr)
                return out.returncode

        say("Button press: scanning one batch from SANE's test scanner (test:0)")
        out = run_agent(env, "scan")
        print(out.stdout + out.stderr, end="")
        say("Importing a sample page of Vietnamese text (as a scan-to-folder copier would)")
        out = run_agent(env, "import", str(sample_page(VAR / "samples" / "quyet-dinh.png")))
        print(out.stdout + out.stderr, end="")
        say("Cleaning up, OCR (tesseract vie), and syncing to the archive")
        out = run_agent(env, "sync", "--wait", "--timeout", "600")
        print(out.stdout + out.stderr, end="")
        if out.returncode != 0:
            print(server.log_tail(), file=sys.stderr)
            return out.returncode
        link = f"{server.url}/login?token={server.token}"
        say("Done. Open the staff page (Vietnamese; ?lang=en for English):")
        print(f"\n    {link}\n")
        print(f"    API: {server.url}/docs   (Authorization: Bearer {server.token})")
        print(f"    Search without diacritics, e.g.: {server.url}/search?q=phe+duyet+ke+hoach")
        print("\n    Ctrl-C stops the server and the broker.\n", flush=True)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop and server.proc is not None and server.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        say("Stopping")
        server.stop()
        broker.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
