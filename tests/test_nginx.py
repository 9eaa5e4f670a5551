"""The shipped nginx site (systemd/nginx/sohoa.conf) in front of the real server, with
Debian's nginx: HTTP only redirects, HTTPS carries the app, the app's cookies get ``Secure``,
HSTS is sent, and the audit log records the staff member's address, not the proxy's."""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import REPO, Broker, ServerProcess, free_port, wait_port

pytestmark = [pytest.mark.nginx, pytest.mark.mqtt]

CLIENT = "127.0.0.5"  # a loopback address that is neither nginx's nor the app's


def _site(tmp: Path, app_port: int, http_port: int, https_port: int) -> str:
    site = (REPO / "systemd" / "nginx" / "sohoa.conf").read_text()
    site = site.replace("/etc/sohoa/tls/", f"{tmp}/")
    site = site.replace("/var/www/html", str(tmp))
    site = site.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{app_port}")
    site = re.sub(r"listen \[::\]:\d+[^;]*;\n", "", site)  # IPv6 may be off here
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    return site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")


@pytest.fixture
def server(tmp_path: Path, broker: Broker) -> Iterator[ServerProcess]:
    """The server as install-server.sh configures it: nginx on this host is a trusted proxy."""
    s = ServerProcess(
        tmp_path / "server", broker.url, settings={"SOHOA_TRUSTED_PROXIES": "127.0.0.1"}
    ).start()
    yield s
    s.stop()


@pytest.fixture
def proxy(tmp_path: Path, server: ServerProcess) -> Iterator[tuple[int, int, Path]]:
    tmp = tmp_path / "nginx"
    tmp.mkdir()
    cert = tmp / "fullchain.pem"
    subj = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *subj]
    subprocess.run([*cmd, "-keyout", str(tmp / "privkey.pem"), "-out", str(cert)], check=True,
                   capture_output=True)  # fmt: skip
    http_port, https_port = free_port(), free_port()
    (tmp / "sohoa.conf").write_text(_site(tmp, server.port, http_port, https_port))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must enter pytest's tmp dir
    (tmp / "nginx.conf").write_text(
        f"{user}daemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events {}\nhttp {\n access_log off;\n"
        + "".join(f" {k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi",
                                                          "uwsgi", "scgi"))
        + f" include {tmp}/sohoa.conf;\n}}\n"
    )  # fmt: skip
    check = subprocess.run(
        ["nginx", "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "e.log")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "e.log")]
    )
    try:
        wait_port(https_port)
        yield http_port, https_port, cert
    finally:
        proc.terminate()
        proc.wait(10)


def _request(
    port: int, path: str, tls: Path | None, body: str | None = None, cookie: str = ""
) -> http.client.HTTPResponse:
    if tls is not None:
        ctx = ssl.create_default_context(cafile=str(tls))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "localhost", port, context=ctx, source_address=(CLIENT, 0), timeout=10
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, source_address=(CLIENT, 0))
    headers = {"Cookie": cookie} if cookie else {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request("GET" if body is None else "POST", path, body=body, headers=headers)
    return conn.getresponse()


def test_https_proxy_secures_cookies_and_passes_the_client_address(
    proxy: tuple[int, int, Path], server: ServerProcess
) -> None:
    http_port, https_port, cert = proxy
    plain = _request(http_port, "/login", None)
    assert plain.status == 301
    assert plain.getheader("Location", "").startswith("https://")

    # Log in as a browser does: the form (its CSRF value and cookie), then the token posted.
    form = _request(https_port, "/login", cert)
    html = form.read().decode()
    assert "max-age" in (form.getheader("Strict-Transport-Security") or "")
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf is not None
    cookies = form.headers.get_all("Set-Cookie") or []
    jar = "; ".join(c.split(";")[0] for c in cookies)
    body = urllib.parse.urlencode({"csrf": csrf.group(1), "token": server.token})
    resp = _request(https_port, "/login", cert, body=body, cookie=jar)
    resp.read()
    assert resp.status in (200, 302, 303), resp.status
    cookies += resp.headers.get_all("Set-Cookie") or []
    assert len(cookies) >= 2, "the login form's CSRF cookie and the session cookie"
    for cookie in cookies:
        assert re.search(r";\s*secure", cookie, re.I), cookie

    deadline = time.monotonic() + 10
    while True:  # the audit row is written before the response; read it back directly
        status, body, _ = server.get("/api/v1/audit?limit=20")
        logins = [r for r in json.loads(body) if r["action"] == "login"]
        if logins or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200 and logins
    assert logins[0]["ip"] == CLIENT  # X-Forwarded-For reached the app (else 127.0.0.1)
